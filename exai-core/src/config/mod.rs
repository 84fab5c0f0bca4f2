//! Configuration: one [`Config`], loaded once, printable with its sources.
//!
//! Loading order (later wins): built-in defaults → the TOML file → environment variables. The
//! file is `$EXAI_CONFIG` if set (it must exist), else `./exai.toml`, else `exai/exai.toml` in the
//! user config dir, else none. Only [`Config::from_env`] reads the process environment; everything
//! below takes the environment as a map, so tests and embedders can pass their own.
//!
//! - `source.rs`: [`Source`], [`Secret`], [`ConfigEntry`] and the resolver that records them.
//! - `file.rs`: the raw TOML structs (`deny_unknown_fields`).
//! - `providers.rs`: provider entries (built-ins plus OpenAI-compatible ones).

mod file;
mod providers;
mod source;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
pub struct LimitsConfig {
    /// Requests in flight across the whole gateway.
    pub global_max_inflight: usize,
    /// Requests in flight per session (one client).
    pub session_max_inflight: usize,
    /// How long a request may wait for a permit before failing with `OverCapacity`.
    pub queue_timeout: Duration,
}

/// Conversation memory.
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    /// Redis URL; when absent, memory is in-process.
    pub redis_url: Option<Secret>,
    /// Conversation lifetime, refreshed on every turn.
    pub ttl: Duration,
    /// Turns kept per conversation (oldest dropped first).
    pub max_turns: usize,
    /// Prefix of every Redis key.
    pub key_prefix: String,
}

/// Retries and circuit breaking, shared by all providers.
#[derive(Debug, Clone)]
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
pub struct RoutingConfig {
    /// Providers tried in order after the first choice fails transiently.
    pub fallback: Vec<String>,
    /// Estimated prompt tokens above which `auto` prefers the longest-context provider.
    pub long_context_tokens: u64,
}

/// Sessions, conversations and shutdown.
#[derive(Debug, Clone)]
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
    /// Progress heartbeat period while a tool runs.
    pub heartbeat: Duration,
}

/// The daemon (`exai-ws`): where it listens and the token clients present.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Bind address (`127.0.0.1` by default; another address requires a token).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The token clients must present, if any.
    pub token: Option<Secret>,
    /// WebSocket connections at once, in total.
    pub max_connections: usize,
    /// WebSocket connections at once, per client address.
    pub max_connections_per_ip: usize,
    /// Largest WebSocket frame or message accepted.
    pub max_frame_bytes: usize,
    /// Longest a tool call may run before it is answered with a timeout.
    pub call_timeout: Duration,
    /// Requests per minute per client address (tool calls and completions).
    pub requests_per_minute: u32,
    /// Runtime threads (one per CPU by default); `1` runs the daemon on one thread.
    pub threads: usize,
}

/// The effective configuration.
#[derive(Debug, Clone)]
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
    /// The file that was loaded, if any.
    pub file: Option<PathBuf>,
    entries: Vec<ConfigEntry>,
}

impl Config {
    /// Loads from the process environment and the config file it points to.
    pub fn from_env() -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load(&env)
    }

    /// Loads with `env` standing in for the process environment (the file is still searched).
    pub fn load(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        match find_file(env)? {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                Self::from_parts(env, Some((&path, &text)))
            }
            None => Self::from_parts(env, None),
        }
    }

    /// Loads from `env` and, optionally, a file's path and text.
    pub fn from_parts(env: &HashMap<String, String>, file: Option<(&Path, &str)>) -> Result<Self, ConfigError> {
        let parsed: FileConfig = match file {
            Some((path, text)) => toml::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.display().to_string(),
                message: e.to_string().trim().to_string(),
            })?,
            None => FileConfig::default(),
        };
        let mut r = Resolver::new(env);
        let default_model = r.required(
            "default_model",
            &["EXAI_DEFAULT_MODEL"],
            parsed.default_model.clone(),
            "auto".to_string(),
        )?;
        let limits = LimitsConfig {
            global_max_inflight: positive(
                r.required(
                    "limits.global_max_inflight",
                    &["EXAI_GLOBAL_MAX_INFLIGHT"],
                    parsed.limits.global_max_inflight,
                    24,
                )?,
                "limits.global_max_inflight",
            )?,
            session_max_inflight: positive(
                r.required(
                    "limits.session_max_inflight",
                    &["EXAI_SESSION_MAX_INFLIGHT"],
                    parsed.limits.session_max_inflight,
                    8,
                )?,
                "limits.session_max_inflight",
            )?,
            queue_timeout: Duration::from_millis(r.required(
                "limits.queue_timeout_ms",
                &["EXAI_QUEUE_TIMEOUT_MS"],
                parsed.limits.queue_timeout_ms,
                30_000,
            )?),
        };
        let (redis_url, _) = r.secret("memory.redis_url", &["REDIS_URL"], parsed.memory.redis_url);
        let memory = MemoryConfig {
            redis_url,
            ttl: Duration::from_secs(r.required(
                "memory.ttl_secs",
                &["EXAI_MEMORY_TTL_SECS"],
                parsed.memory.ttl_secs,
                3 * 24 * 3600,
            )?),
            max_turns: positive(
                r.required("memory.max_turns", &["EXAI_MAX_TURNS"], parsed.memory.max_turns, 50)?,
                "memory.max_turns",
            )?,
            key_prefix: r.required(
                "memory.key_prefix",
                &["EXAI_REDIS_PREFIX"],
                parsed.memory.key_prefix,
                "exai:".to_string(),
            )?,
        };
        let retry = RetryConfig {
            max_retries: r.required("retry.max_retries", &["EXAI_MAX_RETRIES"], parsed.retry.max_retries, 2)?,
            base_delay: Duration::from_millis(r.required(
                "retry.base_delay_ms",
                &["EXAI_RETRY_BASE_DELAY_MS"],
                parsed.retry.base_delay_ms,
                250,
            )?),
            max_delay: Duration::from_millis(r.required(
                "retry.max_delay_ms",
                &["EXAI_RETRY_MAX_DELAY_MS"],
                parsed.retry.max_delay_ms,
                8_000,
            )?),
            max_retry_after: Duration::from_secs(r.required(
                "retry.max_retry_after_secs",
                &["EXAI_MAX_RETRY_AFTER_SECS"],
                parsed.retry.max_retry_after_secs,
                30,
            )?),
            circuit_failure_threshold: r.required(
                "retry.circuit_failure_threshold",
                &["EXAI_CIRCUIT_FAILURE_THRESHOLD"],
                parsed.retry.circuit_failure_threshold,
                5,
            )?,
            circuit_cooldown: Duration::from_secs(r.required(
                "retry.circuit_cooldown_secs",
                &["EXAI_CIRCUIT_COOLDOWN_SECS"],
                parsed.retry.circuit_cooldown_secs,
                30,
            )?),
        };
        let sessions = SessionConfig {
            idle_timeout: Duration::from_secs(r.required(
                "sessions.idle_timeout_secs",
                &["EXAI_SESSION_IDLE_SECS"],
                parsed.sessions.idle_timeout_secs,
                3600,
            )?),
            conversation_idle: Duration::from_secs(r.required(
                "sessions.conversation_idle_secs",
                &["EXAI_CONVERSATION_IDLE_SECS"],
                parsed.sessions.conversation_idle_secs,
                300,
            )?),
            shutdown_grace: Duration::from_secs(r.required(
                "sessions.shutdown_grace_secs",
                &["EXAI_SHUTDOWN_GRACE_SECS"],
                parsed.sessions.shutdown_grace_secs,
                30,
            )?),
        };
        let tools = resolve_tools(&mut r, parsed.tools)?;
        let daemon = DaemonConfig {
            host: r.required(
                "daemon.host",
                &["EXAI_WS_HOST"],
                parsed.daemon.host,
                "127.0.0.1".to_string(),
            )?,
            port: r.required("daemon.port", &["EXAI_WS_PORT"], parsed.daemon.port, 8079)?,
            token: r.secret("daemon.token", &["EXAI_WS_TOKEN"], parsed.daemon.token).0,
            max_connections: positive(
                r.required(
                    "daemon.max_connections",
                    &["EXAI_WS_MAX_CONNECTIONS"],
                    parsed.daemon.max_connections,
                    1_024,
                )?,
                "daemon.max_connections",
            )?,
            max_connections_per_ip: positive(
                r.required(
                    "daemon.max_connections_per_ip",
                    &["EXAI_WS_MAX_CONNECTIONS_PER_IP"],
                    parsed.daemon.max_connections_per_ip,
                    1_024,
                )?,
                "daemon.max_connections_per_ip",
            )?,
            max_frame_bytes: positive(
                r.required(
                    "daemon.max_frame_bytes",
                    &["EXAI_WS_MAX_FRAME_BYTES"],
                    parsed.daemon.max_frame_bytes,
                    4 << 20,
                )?,
                "daemon.max_frame_bytes",
            )?,
            call_timeout: Duration::from_secs(r.required(
                "daemon.call_timeout_secs",
                &["EXAI_WS_CALL_TIMEOUT_SECS"],
                parsed.daemon.call_timeout_secs,
                600,
            )?),
            requests_per_minute: r
                .required(
                    "daemon.requests_per_minute",
                    &["EXAI_WS_REQUESTS_PER_MINUTE"],
                    parsed.daemon.requests_per_minute,
                    6_000,
                )?
                .max(1),
            threads: positive(
                r.required(
                    "daemon.threads",
                    &["EXAI_WS_THREADS"],
                    parsed.daemon.threads,
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                )?,
                "daemon.threads",
            )?,
        };
        let providers = providers::resolve(&mut r, parsed.providers)?;
        let fallback = resolve_fallback(&mut r, parsed.routing.fallback, &providers)?;
        let routing = RoutingConfig {
            fallback,
            long_context_tokens: r.required(
                "routing.long_context_tokens",
                &["EXAI_LONG_CONTEXT_TOKENS"],
                parsed.routing.long_context_tokens,
                100_000,
            )?,
        };
        for (alias, target) in &parsed.aliases {
            r.record(&format!("aliases.{alias}"), Some(target.clone()), Source::File);
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
            aliases: parsed.aliases,
            file: file.map(|(p, _)| p.to_path_buf()),
            entries: r.entries,
        })
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

fn positive(value: usize, key: &str) -> Result<usize, ConfigError> {
    if value == 0 {
        return Err(ConfigError::Invalid {
            key: key.to_string(),
            origin: Source::Default,
            message: "must be at least 1".into(),
        });
    }
    Ok(value)
}

fn resolve_tools(r: &mut Resolver<'_>, file: file::FileTools) -> Result<ToolsConfig, ConfigError> {
    let profile = r.required("tools.profile", &["EXAI_TOOLS"], file.profile, "standard".to_string())?;
    let (disabled, source) = match r.env_var(&["EXAI_DISABLED_TOOLS"]) {
        Some((name, raw)) => (
            raw.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            Source::Env(name),
        ),
        None => match file.disabled {
            Some(list) => (list, Source::File),
            None => (Vec::new(), Source::Default),
        },
    };
    r.record("tools.disabled", Some(disabled.join(",")), source);
    Ok(ToolsConfig {
        profile,
        disabled,
        max_output_chars: positive(
            r.required(
                "tools.max_output_chars",
                &["EXAI_MAX_OUTPUT_CHARS"],
                file.max_output_chars,
                80_000,
            )?,
            "tools.max_output_chars",
        )?,
        max_prompt_chars: positive(
            r.required(
                "tools.max_prompt_chars",
                &["EXAI_MAX_PROMPT_CHARS"],
                file.max_prompt_chars,
                50_000,
            )?,
            "tools.max_prompt_chars",
        )?,
        file_token_budget: r.required(
            "tools.file_token_budget",
            &["EXAI_FILE_TOKEN_BUDGET"],
            file.file_token_budget,
            60_000,
        )?,
        heartbeat: Duration::from_secs(
            r.required(
                "tools.heartbeat_secs",
                &["EXAI_PROGRESS_HEARTBEAT_SECS"],
                file.heartbeat_secs,
                5,
            )?
            .max(1),
        ),
    })
}

fn resolve_fallback(
    r: &mut Resolver<'_>,
    file: Option<Vec<String>>,
    providers: &[ProviderConfig],
) -> Result<Vec<String>, ConfigError> {
    let (list, source) = if let Some((name, raw)) = r.env_var(&["EXAI_FALLBACK"]) {
        let list = raw.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        (list.collect::<Vec<_>>(), Source::Env(name))
    } else if let Some(list) = file {
        (list, Source::File)
    } else {
        (providers.iter().map(|p| p.name.clone()).collect(), Source::Default)
    };
    if let Some(unknown) = list.iter().find(|n| !providers.iter().any(|p| &&p.name == n)) {
        return Err(ConfigError::Invalid {
            key: "routing.fallback".into(),
            origin: source,
            message: format!(
                "unknown provider '{unknown}'; known: {}",
                providers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    r.record("routing.fallback", Some(list.join(",")), source);
    Ok(list)
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
    let local = PathBuf::from("exai.toml");
    if local.is_file() {
        return Ok(Some(local));
    }
    Ok(dirs::config_dir()
        .map(|d| d.join("exai").join("exai.toml"))
        .filter(|p| p.is_file()))
}

#[cfg(test)]
mod tests;
