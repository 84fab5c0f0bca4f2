//! Configuration: one [`Config`], loaded once, printable with its sources.
//!
//! Loading order (later wins): built-in defaults → the TOML file → environment variables. The
//! file is `$EXAI_CONFIG` if set (it must exist), else `./exai.toml`, else `exai/exai.toml` in the
//! user config dir, else none. Only [`Config::from_env`] reads the process environment; everything
//! below takes the environment as a map, so tests and embedders can pass their own.
//!
//! - `keys.rs`: every fixed setting, declared once (key, variables, default, check); `resolve`
//!   below turns each into its `Config` field.
//! - `source.rs`: [`Source`], [`Secret`], [`ConfigEntry`] and the resolver that records them.
//! - `file.rs`: the file as a TOML table whose leaves must be declared keys, plus the provider
//!   and alias tables (`deny_unknown_fields`).
//! - `providers.rs`: provider entries (built-ins plus OpenAI-compatible ones).

mod deployments;
mod file;
mod keys;
mod providers;
mod source;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use deployments::{DeploymentConfig, ModelGroup, Strategy};
pub use providers::{ModelDecl, ProviderConfig, ProviderKind};
pub use source::{ConfigEntry, Secret, Source};

use file::FileConfig;
use source::Resolver;

/// Why the configuration could not be loaded. Each message names the key and its source.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value is present but wrong.
    #[error("invalid configuration: {key} (from {origin}): {message}")]
    Invalid {
        /// Dotted key.
        key: String,
        /// Where the bad value came from.
        origin: Source,
        /// What is wrong and what would be right.
        message: String,
    },
    /// The file could not be read.
    #[error("cannot read config file {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The file is not valid TOML for exai (unknown key, wrong type).
    #[error("config file {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
}

/// Concurrency limits.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Requests in flight across the whole gateway.
    pub global_max_inflight: usize,
    /// Requests in flight per session (one client).
    pub session_max_inflight: usize,
    /// How long a request may wait for a permit before failing with `OverCapacity`.
    pub queue_timeout: Duration,
    /// Requests per minute per client (an address, or one stdio client) at every front door:
    /// completions and tool calls.
    pub requests_per_minute: u32,
    /// Failed authentications per minute from one client address before its attempts are
    /// refused unread (429) for the rest of the minute.
    pub auth_failures_per_minute: u32,
    /// Longest a call (a completion or a tool call) may run before it is stopped and answered
    /// with a timeout, at every front door.
    pub call_timeout: Duration,
    /// Whether the global and provider limits (in flight, `rpm`, open circuits) are shared by
    /// every daemon on the Redis when a Redis URL is set, else by every process using the SQLite
    /// state file (on by default with either; nothing to share with `memory.backend = memory`).
    pub shared: bool,
    /// How long a shared lease lives unless its holder renews it: what a daemon killed
    /// mid-call holds at most.
    pub lease: Duration,
    /// Largest protocol frame accepted: a WebSocket frame or message (closed with 1009), a line
    /// of MCP over stdio (dropped; the server keeps serving).
    pub max_frame_bytes: usize,
}

/// Where conversations and the usage ledger are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum MemoryBackend {
    /// A SQLite file in the state directory, shared by the processes of one machine (default).
    Sqlite,
    /// Redis, shared by many machines and daemons (default when a Redis URL is set).
    Redis,
    /// This process only (tests, throwaway runs).
    Memory,
}

impl std::str::FromStr for MemoryBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "redis" => Ok(Self::Redis),
            "memory" | "local" => Ok(Self::Memory),
            other => Err(format!(
                "unknown memory backend '{other}'; expected sqlite, redis or memory"
            )),
        }
    }
}

impl std::fmt::Display for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Redis => "redis",
            Self::Memory => "memory",
        })
    }
}

/// Conversation memory.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Where conversations and the usage ledger live.
    pub backend: MemoryBackend,
    /// The SQLite file (`state_dir/exai.db`), for the `sqlite` backend.
    pub sqlite_path: PathBuf,
    /// Redis URL, for the `redis` backend.
    pub redis_url: Option<Secret>,
    /// Conversation lifetime, refreshed on every turn.
    pub ttl: Duration,
    /// Turns kept per conversation (oldest dropped first).
    pub max_turns: usize,
    /// How long a stored Responses API response is kept (`responses.ttl_secs`).
    pub responses_ttl: Duration,
    /// Prefix of every Redis key.
    pub key_prefix: String,
}

/// Retries and circuit breaking, shared by all providers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Retries after the first attempt, for transient failures and 429s.
    pub max_retries: u32,
    /// First backoff delay (doubled each time, with jitter).
    pub base_delay: Duration,
    /// Largest backoff delay.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited out; the error goes to the caller.
    pub max_retry_after: Duration,
    /// Consecutive failures that open a provider's circuit.
    pub circuit_failure_threshold: u32,
    /// How long an open circuit stays open before a trial request.
    pub circuit_cooldown: Duration,
}

/// `auto` routing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RoutingConfig {
    /// Providers tried in order after the first choice fails transiently.
    pub fallback: Vec<String>,
    /// Estimated prompt tokens above which `auto` prefers the longest-context provider.
    pub long_context_tokens: u64,
}

/// Sessions, conversations and shutdown.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// A session idle this long (no request in flight) is closed.
    pub idle_timeout: Duration,
    /// A conversation queue idle this long is evicted (its history stays in memory).
    pub conversation_idle: Duration,
    /// How long `shutdown` waits for in-flight work.
    pub shutdown_grace: Duration,
}

/// The MCP tool suite.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToolsConfig {
    /// `lean`, `standard` (all tools), or a comma-separated list of tool names.
    pub profile: String,
    /// Tools removed from whatever the profile offers.
    pub disabled: Vec<String>,
    /// Tool output longer than this is cut cleanly, with a note.
    pub max_output_chars: usize,
    /// A prompt longer than this is refused with "put it in a file".
    pub max_prompt_chars: usize,
    /// Estimated tokens of file contents a tool call may embed.
    pub file_token_budget: u64,
    /// The directories below which a daemon's tools may read files (none: no file at all).
    pub file_roots: Vec<PathBuf>,
    /// Progress heartbeat period while a tool runs.
    pub heartbeat: Duration,
}

/// The daemon (`exai-ws`): where it listens and the token clients present.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DaemonConfig {
    /// Bind address (`127.0.0.1` by default; another address requires a token).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The master token clients may present, if any (`EXAI_WS_TOKEN`): it passes every key check.
    pub token: Option<Secret>,
    /// The token that allows managing keys over HTTP (`/admin/keys`), if any.
    pub admin_token: Option<Secret>,
    /// WebSocket connections at once, in total.
    pub max_connections: usize,
    /// WebSocket connections at once, per client address.
    pub max_connections_per_ip: usize,
    /// Largest HTTP request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// Runtime threads (one per CPU by default); `1` runs the daemon on one thread.
    pub threads: usize,
}

impl DaemonConfig {
    /// Whether `host` is only reachable from this machine (`localhost` or a loopback address).
    /// Beyond it, the daemon never serves a call without a key or the master token.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// The Anthropic-compatible front door.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AnthropicConfig {
    /// `claude-*` ids the catalog does not know → exai models, as (glob, model), the longest
    /// glob first. A `claude-*` id no glob matches goes to `default_model`.
    pub model_map: Vec<(String, String)>,
    /// A request over a provider's tool cap (Kimi: 128) has the tools past it dropped (built-in
    /// tools kept first) with a warning header, instead of a 400 naming the cap.
    pub trim_tools: bool,
}

impl AnthropicConfig {
    /// The exai model a `claude-*` id maps to, if a glob matches it.
    pub fn map_model(&self, id: &str) -> Option<&str> {
        self.model_map
            .iter()
            .find(|(glob, _)| glob_match(glob, id))
            .map(|(_, model)| model.as_str())
    }
}

/// `*` matches any run of characters; everything else matches itself (ASCII case-insensitive).
fn glob_match(glob: &str, text: &str) -> bool {
    let (glob, text) = (glob.to_ascii_lowercase(), text.to_ascii_lowercase());
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() == 1 {
        return glob == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Whether replies are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CacheMode {
    /// No cache (default).
    Off,
    /// Whole replies kept by a hash of the call: the same call gets the same reply.
    Exact,
}

impl std::str::FromStr for CacheMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "off" | "none" | "false" => Ok(Self::Off),
            "exact" => Ok(Self::Exact),
            other => Err(format!("unknown cache mode '{other}'; expected off or exact")),
        }
    }
}

impl std::fmt::Display for CacheMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Exact => "exact",
        })
    }
}

/// Who shares a cached reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CacheScope {
    /// The calls of one key (default): a key never gets a reply another key paid for.
    Key,
    /// Every caller.
    Global,
}

impl std::str::FromStr for CacheScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "key" => Ok(Self::Key),
            "global" => Ok(Self::Global),
            other => Err(format!("unknown cache scope '{other}'; expected key or global")),
        }
    }
}

impl std::fmt::Display for CacheScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Key => "key",
            Self::Global => "global",
        })
    }
}

/// The response cache and in-flight coalescing of wire calls.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheConfig {
    /// `exact` keeps replies; `off` (default) keeps none.
    pub mode: CacheMode,
    /// How long a reply is kept.
    pub ttl: Duration,
    /// The most the in-process level holds, in bytes (keys and replies).
    pub max_bytes: u64,
    /// Who shares a kept reply.
    pub scope: CacheScope,
    /// Identical calls in flight at once wait for the first (on by default with the cache).
    pub coalesce: bool,
    /// How long the Redis lock of a call in flight lasts unrenewed (the shared level).
    pub lease: Duration,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format '{other}'; expected text or json")),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// The effective configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The model used when a request names none (`auto` by default).
    pub default_model: String,
    /// Concurrency limits.
    pub limits: LimitsConfig,
    /// Conversation memory.
    pub memory: MemoryConfig,
    /// Retries and circuit breaking.
    pub retry: RetryConfig,
    /// `auto` routing.
    pub routing: RoutingConfig,
    /// Sessions and shutdown.
    pub sessions: SessionConfig,
    /// The tool suite.
    pub tools: ToolsConfig,
    /// The daemon.
    pub daemon: DaemonConfig,
    /// Every provider, configured or not (see [`ProviderConfig::is_ready`]).
    pub providers: Vec<ProviderConfig>,
    /// Aliases from the file (they extend the built-in ones).
    pub aliases: BTreeMap<String, String>,
    /// Aliases over several models (`[aliases] coder = { models = […], strategy = … }`).
    pub groups: BTreeMap<String, ModelGroup>,
    /// The Anthropic-compatible front door (`/v1/messages`).
    pub anthropic: AnthropicConfig,
    /// The response cache and in-flight coalescing.
    pub cache: CacheConfig,
    /// How the binaries write log lines to stderr.
    pub log_format: LogFormat,
    /// Whether trace spans carry the messages and replies (`gen_ai.input.messages`,
    /// `gen_ai.output.messages`); off by default.
    pub otel_content: bool,
    /// Where state files live (the daemon's lock files).
    pub state_dir: PathBuf,
    /// The file that was loaded, if any.
    pub file: Option<PathBuf>,
    entries: Vec<ConfigEntry>,
    /// The environment and code values it was built from, to read it again.
    origin: Origin,
}

/// What a configuration was built from: the environment, the values set in code, and whether
/// the file was searched for. Never printed (the environment holds secrets).
#[derive(Clone)]
struct Origin(std::sync::Arc<Sources>);

/// The environment, the values set in code, and whether the file was searched for.
type Sources = (HashMap<String, String>, HashMap<String, String>, bool);

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Origin([redacted])")
    }
}

impl Default for Config {
    /// Built-in defaults only: no file is read and no environment variable consulted.
    fn default() -> Self {
        match Self::builder().without_file().build() {
            Ok(config) => config,
            // The defaults are checked by a test; reaching this is a bug in `keys.rs`.
            Err(e) => unreachable!("the built-in defaults do not load: {e}"),
        }
    }
}

impl Config {
    /// Builds a configuration in code: values set by key, over an optional environment map and
    /// file. Nothing is read from the process environment unless asked for.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// Loads from the process environment and the config file it points to.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::builder().env(std::env::vars().collect()).build()
    }

    /// Loads with `env` standing in for the process environment (the file is still searched).
    pub fn load(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::builder().env(env.clone()).build()
    }

    /// Loads from `env` and, optionally, a file's path and text.
    pub fn from_parts(env: &HashMap<String, String>, file: Option<(&Path, &str)>) -> Result<Self, ConfigError> {
        let builder = Self::builder().env(env.clone());
        match file {
            Some((path, text)) => builder.file_text(path, text),
            None => builder.without_file(),
        }
        .build()
    }

    fn resolve(
        env: &HashMap<String, String>,
        code: HashMap<String, String>,
        file: Option<(&Path, &str)>,
        file_searched: bool,
    ) -> Result<Self, ConfigError> {
        let code_given = code.clone();
        let f = match file {
            Some((path, text)) => FileConfig::parse(path, text)?,
            None => FileConfig::default(),
        };
        // A key set in code must be declared; a provider's keys are declared by the provider
        // (`providers.rs`), so one that no provider took is refused after resolving.
        let undeclared = code
            .keys()
            .filter(|key| !keys::is_declared(key) && !key.starts_with("providers."))
            .min();
        if let Some(key) = undeclared {
            return Err(no_such_setting(key));
        }
        let mut r = Resolver::new(env, code, f.values);
        let default_model = r.get(&keys::DEFAULT_MODEL)?;
        let state_dir = r.get_path(&keys::STATE_DIR, default_state_dir())?;
        let redis_url = r.get_secret(&keys::REDIS_URL)?;
        let default_backend = if redis_url.is_some() {
            MemoryBackend::Redis
        } else {
            MemoryBackend::Sqlite
        };
        let backend = r.get_or(&keys::MEMORY_BACKEND, default_backend)?;
        if backend == MemoryBackend::Redis && redis_url.is_none() {
            return Err(ConfigError::Invalid {
                key: keys::MEMORY_BACKEND.key.into(),
                origin: r.entries.last().map_or(Source::Default, |e| e.source.clone()),
                message: "redis needs memory.redis_url (REDIS_URL)".into(),
            });
        }
        let can_share = redis_url.is_some() || backend == MemoryBackend::Sqlite;
        let shared = r.get_or(&keys::SHARED_LIMITS, can_share)?;
        if shared && !can_share {
            return Err(ConfigError::Invalid {
                key: keys::SHARED_LIMITS.key.into(),
                origin: r.entries.last().map_or(Source::Default, |e| e.source.clone()),
                message:
                    "shared limits need memory.redis_url (REDIS_URL) or the SQLite state file (memory.backend = sqlite)"
                        .into(),
            });
        }
        let limits = LimitsConfig {
            global_max_inflight: r.get(&keys::GLOBAL_MAX_INFLIGHT)?,
            session_max_inflight: r.get(&keys::SESSION_MAX_INFLIGHT)?,
            queue_timeout: Duration::from_millis(r.get(&keys::QUEUE_TIMEOUT_MS)?),
            requests_per_minute: r.get(&keys::REQUESTS_PER_MINUTE)?,
            auth_failures_per_minute: r.get(&keys::AUTH_FAILURES_PER_MINUTE)?,
            call_timeout: Duration::from_secs(r.get(&keys::CALL_TIMEOUT_SECS)?),
            shared,
            lease: Duration::from_secs(r.get(&keys::LEASE_SECS)?),
            max_frame_bytes: r.get(&keys::MAX_FRAME_BYTES)?,
        };
        let memory = MemoryConfig {
            backend,
            sqlite_path: state_dir.join("exai.db"),
            redis_url,
            ttl: Duration::from_secs(r.get(&keys::MEMORY_TTL_SECS)?),
            max_turns: r.get(&keys::MAX_TURNS)?,
            responses_ttl: Duration::from_secs(r.get(&keys::RESPONSES_TTL_SECS)?),
            key_prefix: r.get(&keys::KEY_PREFIX)?,
        };
        let retry = RetryConfig {
            max_retries: r.get(&keys::MAX_RETRIES)?,
            base_delay: Duration::from_millis(r.get(&keys::BASE_DELAY_MS)?),
            max_delay: Duration::from_millis(r.get(&keys::MAX_DELAY_MS)?),
            max_retry_after: Duration::from_secs(r.get(&keys::MAX_WAIT_SECS)?),
            circuit_failure_threshold: r.get(&keys::CIRCUIT_FAILURE_THRESHOLD)?,
            circuit_cooldown: Duration::from_secs(r.get(&keys::CIRCUIT_COOLDOWN_SECS)?),
        };
        let sessions = SessionConfig {
            idle_timeout: Duration::from_secs(r.get(&keys::IDLE_TIMEOUT_SECS)?),
            conversation_idle: Duration::from_secs(r.get(&keys::CONVERSATION_IDLE_SECS)?),
            shutdown_grace: Duration::from_secs(r.get(&keys::SHUTDOWN_GRACE_SECS)?),
        };
        let tools = ToolsConfig {
            profile: r.get(&keys::TOOLS_PROFILE)?,
            disabled: r.get_list(&keys::DISABLED_TOOLS, Vec::new())?.0,
            max_output_chars: r.get(&keys::MAX_OUTPUT_CHARS)?,
            max_prompt_chars: r.get(&keys::MAX_PROMPT_CHARS)?,
            file_token_budget: r.get(&keys::FILE_TOKEN_BUDGET)?,
            file_roots: r
                .get_list(&keys::FILE_ROOTS, Vec::new())?
                .0
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            heartbeat: Duration::from_secs(r.get(&keys::HEARTBEAT_SECS)?),
        };
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let daemon = DaemonConfig {
            host: r.get(&keys::HOST)?,
            port: r.get(&keys::PORT)?,
            token: r.get_secret(&keys::TOKEN)?,
            admin_token: r.get_secret(&keys::ADMIN_TOKEN)?,
            max_connections: r.get(&keys::MAX_CONNECTIONS)?,
            max_connections_per_ip: r.get(&keys::MAX_CONNECTIONS_PER_IP)?,
            max_body_bytes: r.get(&keys::MAX_BODY_BYTES)?,
            threads: r.get_or(&keys::THREADS, cpus)?,
        };
        let mode = r.get(&keys::CACHE_MODE)?;
        let cache = CacheConfig {
            mode,
            ttl: Duration::from_secs(r.get(&keys::CACHE_TTL_SECS)?),
            max_bytes: r.get(&keys::CACHE_MAX_BYTES)?,
            scope: r.get(&keys::CACHE_SCOPE)?,
            coalesce: r.get_or(&keys::CACHE_COALESCE, mode == CacheMode::Exact)?,
            lease: Duration::from_secs(r.get(&keys::CACHE_LEASE_SECS)?),
        };
        let log_format = r.get(&keys::LOG_FORMAT)?;
        let otel_content = r.get(&keys::OTEL_CONTENT)?;
        let providers = providers::resolve(&mut r, f.providers)?;
        let all: Vec<String> = providers.iter().map(|p| p.name.clone()).collect();
        let (fallback, source) = r.get_list(&keys::FALLBACK, all.clone())?;
        if let Some(unknown) = fallback.iter().find(|n| !all.contains(n)) {
            return Err(ConfigError::Invalid {
                key: keys::FALLBACK.key.into(),
                origin: source,
                message: format!("unknown provider '{unknown}'; known: {}", all.join(", ")),
            });
        }
        let routing = RoutingConfig {
            fallback,
            long_context_tokens: r.get(&keys::LONG_CONTEXT_TOKENS)?,
        };
        let (pairs, map_source) = r.get_table(&keys::ANTHROPIC_MODEL_MAP)?;
        let mut model_map = Vec::new();
        for pair in pairs {
            let Some((glob, model)) = pair.split_once('=') else {
                return Err(ConfigError::Invalid {
                    key: keys::ANTHROPIC_MODEL_MAP.key.into(),
                    origin: map_source,
                    message: format!("'{pair}' is not GLOB=MODEL (e.g. claude-haiku-*=glm-4.5-air)"),
                });
            };
            model_map.push((glob.trim().to_string(), model.trim().to_string()));
        }
        // The most specific (longest) glob is tried first.
        model_map.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        let anthropic = AnthropicConfig {
            model_map,
            trim_tools: r.get(&keys::ANTHROPIC_TRIM_TOOLS)?,
        };
        for (alias, target) in &f.aliases {
            r.record(&format!("aliases.{alias}"), Some(target.clone()), Source::File);
        }
        let mut groups = BTreeMap::new();
        for (alias, group) in &f.groups {
            let strategy = match &group.strategy {
                Some(s) => s.parse::<Strategy>().map_err(|message| ConfigError::Invalid {
                    key: format!("aliases.{alias}.strategy"),
                    origin: Source::File,
                    message,
                })?,
                None => Strategy::default(),
            };
            if group.models.is_empty() {
                return Err(ConfigError::Invalid {
                    key: format!("aliases.{alias}.models"),
                    origin: Source::File,
                    message: "name at least one model".into(),
                });
            }
            r.record(
                &format!("aliases.{alias}"),
                Some(format!("{} ({strategy})", group.models.join(", "))),
                Source::File,
            );
            groups.insert(
                alias.clone(),
                ModelGroup {
                    models: group.models.clone(),
                    strategy,
                },
            );
        }
        if let Some(key) = r.unused_code_keys().first() {
            return Err(no_such_setting(key));
        }
        Ok(Config {
            default_model,
            limits,
            memory,
            retry,
            routing,
            sessions,
            tools,
            daemon,
            providers,
            aliases: f.aliases,
            groups,
            anthropic,
            cache,
            log_format,
            otel_content,
            state_dir,
            file: file.map(|(p, _)| p.to_path_buf()),
            entries: r.entries,
            origin: Origin(std::sync::Arc::new((env.clone(), code_given, file_searched))),
        })
    }

    /// The configuration again: the same environment and values set in code, and the file
    /// read anew from disk (a reload: `SIGHUP`, `POST /admin/reload`).
    pub fn reread(&self) -> Result<Config, ConfigError> {
        let (env, code, searched) = &*self.origin.0;
        let mut builder = Config::builder().env(env.clone());
        builder.code = code.clone();
        match (&self.file, searched) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                builder.file_text(path, &text).build()
            }
            (None, true) => builder.build(),
            (None, false) => builder.without_file().build(),
        }
    }

    /// Where a config file is looked for when `EXAI_CONFIG` is not set, in order:
    /// `./exai.toml`, then `exai/exai.toml` in the user's config directory.
    pub fn search_paths() -> Vec<PathBuf> {
        let mut paths = vec![PathBuf::from("exai.toml")];
        paths.extend(dirs::config_dir().map(|d| d.join("exai").join("exai.toml")));
        paths
    }

    /// The effective configuration, one entry per setting, secrets redacted.
    pub fn entries(&self) -> &[ConfigEntry] {
        &self.entries
    }

    /// The provider named `name`.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// Providers that can take requests (enabled, with a key where one is needed).
    pub fn ready_providers(&self) -> impl Iterator<Item = &ProviderConfig> {
        self.providers.iter().filter(|p| p.is_ready())
    }
}

/// The error for a key set in code that is not a setting.
fn no_such_setting(key: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        origin: Source::Code,
        message: "no such setting (see `exai config` for every key)".into(),
    }
}

/// Where exai keeps state by default: the user's state directory (`~/.local/state/exai`), or
/// the local data directory, or a temporary one.
fn default_state_dir() -> PathBuf {
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .map(|d| d.join("exai"))
        .unwrap_or_else(|| std::env::temp_dir().join("exai"))
}

/// Builds a [`Config`] in code.
///
/// ```
/// # fn demo() -> Result<(), exai_core::ConfigError> {
/// let config = exai_core::Config::builder()
///     .set("providers.glm.api_key", "sk-…")
///     .set("limits.global_max_inflight", 4)
///     .build()?;
/// assert_eq!(config.limits.global_max_inflight, 4);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct ConfigBuilder {
    env: HashMap<String, String>,
    code: HashMap<String, String>,
    file: FileChoice,
}

/// Which file a builder reads.
#[derive(Debug, Default)]
enum FileChoice {
    /// `$EXAI_CONFIG` (from the builder's environment), `./exai.toml`, the user config dir.
    #[default]
    Search,
    /// None.
    Without,
    /// This path and text.
    Text(PathBuf, String),
}

impl ConfigBuilder {
    /// Sets `key` (as in `exai.toml`: `limits.global_max_inflight`, `providers.glm.api_key`) to
    /// `value`, over the environment and the file; `exai config` shows it as set in `code`. An
    /// unknown key fails [`ConfigBuilder::build`].
    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.code.insert(key.to_string(), value.to_string());
        self
    }

    /// Uses `env` as the environment (none by default).
    pub fn env(mut self, env: HashMap<String, String>) -> Self {
        self.env = env;
        self
    }

    /// Reads no configuration file.
    pub fn without_file(mut self) -> Self {
        self.file = FileChoice::Without;
        self
    }

    /// Uses this file text (and names `path` in messages) instead of searching for a file.
    pub fn file_text(mut self, path: &Path, text: &str) -> Self {
        self.file = FileChoice::Text(path.to_path_buf(), text.to_string());
        self
    }

    /// Resolves and checks every setting.
    pub fn build(self) -> Result<Config, ConfigError> {
        match self.file {
            FileChoice::Without => Config::resolve(&self.env, self.code, None, false),
            FileChoice::Text(path, text) => Config::resolve(&self.env, self.code, Some((&path, &text)), false),
            FileChoice::Search => match find_file(&self.env)? {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?;
                    Config::resolve(&self.env, self.code, Some((&path, &text)), true)
                }
                None => Config::resolve(&self.env, self.code, None, true),
            },
        }
    }
}

fn find_file(env: &HashMap<String, String>) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(path) = env.get("EXAI_CONFIG").filter(|p| !p.trim().is_empty()) {
        let path = PathBuf::from(path.trim());
        if !path.is_file() {
            return Err(ConfigError::Read {
                path: path.display().to_string(),
                message: "EXAI_CONFIG points to a file that does not exist".into(),
            });
        }
        return Ok(Some(path));
    }
    Ok(Config::search_paths().into_iter().find(|p| p.is_file()))
}

#[cfg(test)]
mod tests;
