//! Every fixed setting, declared once: dotted key (as in `exai.toml`), the environment variables
//! that set it (the first one set wins), the built-in default, and the check its value must pass.
//!
//! This table is the only place a setting is named. [`ALL`] lists the keys for the two checks
//! that refuse unknown ones (a file's leaves in `file.rs`, [`super::ConfigBuilder::set`] in
//! `mod.rs`); `mod.rs` resolves each key into its `Config` field, and the resolver reads the file
//! value by the key's dotted name, so no other struct spells the file's shape. A key's type says
//! how the file writes it: a value for `Key<T>` (parsed from its text like an environment value),
//! an array for a list, a string for a secret or a path. Provider settings, whose keys carry the
//! provider's name, are declared in `providers.rs`.

use std::path::PathBuf;

use super::source::{Check, Key, Secret, any, positive};
use super::{CacheMode, CacheScope, LogFormat, MemoryBackend};

const fn key<T>(key: &'static str, env: &'static [&'static str], default: &'static str, check: Check<T>) -> Key<T> {
    Key {
        key,
        env,
        default: Some(default),
        check,
    }
}

/// A key without a declared default: `mod.rs` computes it, or the setting may stay unset.
const fn no_default<T>(key: &'static str, env: &'static [&'static str], check: Check<T>) -> Key<T> {
    Key {
        key,
        env,
        default: None,
        check,
    }
}

/// Declares each key as a constant and lists its dotted name in [`ALL`].
macro_rules! declare {
    ($($(#[$doc:meta])* $name:ident: $ty:ty = $value:expr;)*) => {
        $($(#[$doc])* pub(super) const $name: $ty = $value;)*

        /// Every declared key, by dotted name: what a file's leaf or a key set in code may be
        /// (besides a provider's keys and the file's `providers` and `aliases` tables).
        pub(super) const ALL: &[&str] = &[$($name.key),*];
    };
}

declare! {
    DEFAULT_MODEL: Key<String> = key("default_model", &["EXAI_DEFAULT_MODEL"], "auto", any);
    /// Its default is the user's state directory, filled in by `mod.rs`.
    STATE_DIR: Key<PathBuf> = no_default("state_dir", &["EXAI_STATE_DIR"], any);

    GLOBAL_MAX_INFLIGHT: Key<usize> =
        key("limits.global_max_inflight", &["EXAI_GLOBAL_MAX_INFLIGHT"], "24", positive);
    SESSION_MAX_INFLIGHT: Key<usize> =
        key("limits.session_max_inflight", &["EXAI_SESSION_MAX_INFLIGHT"], "8", positive);
    QUEUE_TIMEOUT_MS: Key<u64> = key("limits.queue_timeout_ms", &["EXAI_QUEUE_TIMEOUT_MS"], "30000", any);
    AUTH_FAILURES_PER_MINUTE: Key<u32> = key(
        "limits.auth_failures_per_minute",
        &["EXAI_AUTH_FAILURES_PER_MINUTE"],
        "10",
        positive,
    );
    REQUESTS_PER_MINUTE: Key<u32> = key(
        "limits.requests_per_minute",
        &["EXAI_REQUESTS_PER_MINUTE", "EXAI_WS_REQUESTS_PER_MINUTE"],
        "6000",
        positive,
    );
    CALL_TIMEOUT_SECS: Key<u64> = key(
        "limits.call_timeout_secs",
        &["EXAI_CALL_TIMEOUT_SECS", "EXAI_WS_CALL_TIMEOUT_SECS"],
        "600",
        positive,
    );
    /// Its default is on with a Redis URL or the SQLite memory, filled in by `mod.rs`.
    SHARED_LIMITS: Key<bool> = no_default("limits.shared", &["EXAI_SHARED_LIMITS"], any);
    LEASE_SECS: Key<u64> = key("limits.lease_secs", &["EXAI_LEASE_SECS"], "15", positive);
    MAX_FRAME_BYTES: Key<usize> = key(
        "limits.max_frame_bytes",
        &["EXAI_MAX_FRAME_BYTES", "EXAI_WS_MAX_FRAME_BYTES"],
        "4194304",
        positive,
    );

    REDIS_URL: Key<Secret> = no_default("memory.redis_url", &["REDIS_URL"], any);
    /// Its default is `redis` when a Redis URL is set, else `sqlite`, filled in by `mod.rs`.
    MEMORY_BACKEND: Key<MemoryBackend> = no_default("memory.backend", &["EXAI_MEMORY"], any);
    MEMORY_TTL_SECS: Key<u64> = key("memory.ttl_secs", &["EXAI_MEMORY_TTL_SECS"], "259200", positive);
    /// How long a Responses API response with `store: true` is kept (30 days, as OpenAI).
    RESPONSES_TTL_SECS: Key<u64> =
        key("responses.ttl_secs", &["EXAI_RESPONSES_TTL_SECS"], "2592000", positive);
    MAX_TURNS: Key<usize> = key("memory.max_turns", &["EXAI_MAX_TURNS"], "50", positive);
    KEY_PREFIX: Key<String> = key("memory.key_prefix", &["EXAI_REDIS_PREFIX"], "exai:", any);

    MAX_RETRIES: Key<u32> = key("retry.max_retries", &["EXAI_MAX_RETRIES"], "2", any);
    BASE_DELAY_MS: Key<u64> = key("retry.base_delay_ms", &["EXAI_RETRY_BASE_DELAY_MS"], "250", any);
    MAX_DELAY_MS: Key<u64> = key("retry.max_delay_ms", &["EXAI_RETRY_MAX_DELAY_MS"], "8000", any);
    MAX_WAIT_SECS: Key<u64> =
        key("retry.max_wait_secs", &["EXAI_MAX_WAIT_SECS", "EXAI_MAX_RETRY_AFTER_SECS"], "5", any);
    CIRCUIT_FAILURE_THRESHOLD: Key<u32> =
        key("retry.circuit_failure_threshold", &["EXAI_CIRCUIT_FAILURE_THRESHOLD"], "5", positive);
    CIRCUIT_COOLDOWN_SECS: Key<u64> =
        key("retry.circuit_cooldown_secs", &["EXAI_CIRCUIT_COOLDOWN_SECS"], "30", any);

    /// Its default is every provider, in order, filled in by `mod.rs`.
    FALLBACK: Key<Vec<String>> = no_default("routing.fallback", &["EXAI_FALLBACK"], any);
    LONG_CONTEXT_TOKENS: Key<u64> =
        key("routing.long_context_tokens", &["EXAI_LONG_CONTEXT_TOKENS"], "100000", any);

    IDLE_TIMEOUT_SECS: Key<u64> =
        key("sessions.idle_timeout_secs", &["EXAI_SESSION_IDLE_SECS"], "3600", positive);
    CONVERSATION_IDLE_SECS: Key<u64> =
        key("sessions.conversation_idle_secs", &["EXAI_CONVERSATION_IDLE_SECS"], "300", positive);
    SHUTDOWN_GRACE_SECS: Key<u64> =
        key("sessions.shutdown_grace_secs", &["EXAI_SHUTDOWN_GRACE_SECS"], "30", any);

    TOOLS_PROFILE: Key<String> = key("tools.profile", &["EXAI_TOOLS"], "standard", tool_profile);
    DISABLED_TOOLS: Key<Vec<String>> =
        no_default("tools.disabled", &["EXAI_DISABLED_TOOLS"], tool_names);
    /// The directories below which a daemon's tools may read files (none by default: no file).
    FILE_ROOTS: Key<Vec<String>> = no_default("tools.file_roots", &["EXAI_FILE_ROOTS"], any);
    MAX_OUTPUT_CHARS: Key<usize> =
        key("tools.max_output_chars", &["EXAI_MAX_OUTPUT_CHARS"], "80000", positive);
    MAX_PROMPT_CHARS: Key<usize> =
        key("tools.max_prompt_chars", &["EXAI_MAX_PROMPT_CHARS"], "50000", positive);
    FILE_TOKEN_BUDGET: Key<u64> = key("tools.file_token_budget", &["EXAI_FILE_TOKEN_BUDGET"], "60000", any);
    HEARTBEAT_SECS: Key<u64> =
        key("tools.heartbeat_secs", &["EXAI_PROGRESS_HEARTBEAT_SECS"], "5", positive);

    HOST: Key<String> = key("daemon.host", &["EXAI_WS_HOST"], "127.0.0.1", any);
    PORT: Key<u16> = key("daemon.port", &["EXAI_WS_PORT"], "8079", any);
    TOKEN: Key<Secret> = no_default("daemon.token", &["EXAI_WS_TOKEN"], any);
    ADMIN_TOKEN: Key<Secret> = no_default("daemon.admin_token", &["EXAI_ADMIN_TOKEN"], any);
    MAX_CONNECTIONS: Key<usize> =
        key("daemon.max_connections", &["EXAI_WS_MAX_CONNECTIONS"], "1024", positive);
    MAX_CONNECTIONS_PER_IP: Key<usize> =
        key("daemon.max_connections_per_ip", &["EXAI_WS_MAX_CONNECTIONS_PER_IP"], "1024", positive);
    MAX_BODY_BYTES: Key<usize> =
        key("daemon.max_body_bytes", &["EXAI_WS_MAX_BODY_BYTES"], "4194304", positive);
    /// Its default is the machine's CPU count, filled in by `mod.rs`.
    THREADS: Key<usize> = no_default("daemon.threads", &["EXAI_WS_THREADS"], positive);

    /// A table in the file (`"claude-haiku-*" = "glm-4.5-air"`), `GLOB=MODEL,…` in the
    /// environment; read as `GLOB=MODEL` items either way.
    ANTHROPIC_MODEL_MAP: Key<Vec<String>> =
        no_default("anthropic.model_map", &["EXAI_ANTHROPIC_MODEL_MAP"], any);
    /// Over a provider's tool cap (Kimi: 128), drop the tools past it instead of refusing.
    ANTHROPIC_TRIM_TOOLS: Key<bool> =
        key("anthropic.trim_tools", &["EXAI_ANTHROPIC_TRIM_TOOLS"], "false", any);

    /// `exact` keeps whole replies of wire calls by a hash of the call (off by default).
    CACHE_MODE: Key<CacheMode> = key("cache.mode", &["EXAI_CACHE"], "off", any);
    CACHE_TTL_SECS: Key<u64> = key("cache.ttl_secs", &["EXAI_CACHE_TTL_SECS"], "3600", positive);
    /// What the in-process level holds at most (64 MiB).
    CACHE_MAX_BYTES: Key<u64> = key("cache.max_bytes", &["EXAI_CACHE_MAX_BYTES"], "67108864", positive);
    CACHE_SCOPE: Key<CacheScope> = key("cache.scope", &["EXAI_CACHE_SCOPE"], "key", any);
    /// Its default is on with the cache, filled in by `mod.rs`.
    CACHE_COALESCE: Key<bool> = no_default("cache.coalesce", &["EXAI_CACHE_COALESCE"], any);
    /// How long the daemon calling for identical calls across daemons holds its Redis lock
    /// without renewing it: a daemon that dies leaves its waiters this long.
    CACHE_LEASE_SECS: Key<u64> = key("cache.lease_secs", &["EXAI_CACHE_LEASE_SECS"], "10", positive);

    LOG_FORMAT: Key<LogFormat> = key("log.format", &["EXAI_LOG_FORMAT"], "text", any);
    OTEL_CONTENT: Key<bool> = key("log.otel_content", &["EXAI_OTEL_CONTENT"], "false", any);
}

/// A profile (`lean`, `standard`, `all`) or a comma-separated list of tools.
#[allow(clippy::ptr_arg, reason = "a Check<String> takes &String")]
fn tool_profile(profile: &String) -> Result<(), String> {
    let profile = profile.trim();
    if profile.is_empty() || crate::tools::PROFILES.contains(&profile) {
        return Ok(());
    }
    let names: Vec<String> = profile
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    tool_names(&names).map_err(|e| format!("{e}; or a profile: {}", crate::tools::PROFILES.join(", ")))
}

/// Tool names, each one of [`crate::tools::NAMES`].
#[allow(clippy::ptr_arg, reason = "a Check<Vec<String>> takes &Vec")]
fn tool_names(names: &Vec<String>) -> Result<(), String> {
    match names.iter().find(|n| !crate::tools::NAMES.contains(&n.as_str())) {
        Some(unknown) => Err(format!(
            "unknown tool '{unknown}'; the tools: {}",
            crate::tools::NAMES.join(", ")
        )),
        None => Ok(()),
    }
}

/// Whether `key` is declared.
pub(super) fn is_declared(key: &str) -> bool {
    ALL.contains(&key)
}

/// The names directly under `section` (`limits` → `global_max_inflight`, …; `""` → the top
/// level's keys and sections), in declaration order: what a message about an unknown key offers.
pub(super) fn names_under(section: &str) -> Vec<&'static str> {
    let mut names = Vec::new();
    for key in ALL {
        let rest = match section {
            "" => Some(*key),
            _ => key.strip_prefix(section).and_then(|rest| rest.strip_prefix('.')),
        };
        if let Some(name) = rest.and_then(|rest| rest.split('.').next())
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names
}
