//! Every fixed setting, declared once: dotted key (as in `exai.toml`), the environment variables
//! that set it (the first one set wins), the built-in default, and the check its value must pass.
//! `mod.rs` resolves them in this order; provider settings, whose keys carry the provider's name,
//! are declared in `providers.rs`.

use super::source::{Check, Key, any, positive};

const fn key<T>(key: &'static str, env: &'static [&'static str], default: &'static str, check: Check<T>) -> Key<T> {
    Key {
        key,
        env,
        default: Some(default),
        check,
    }
}

pub(super) const DEFAULT_MODEL: Key<String> = key("default_model", &["EXAI_DEFAULT_MODEL"], "auto", any);

pub(super) const GLOBAL_MAX_INFLIGHT: Key<usize> = key(
    "limits.global_max_inflight",
    &["EXAI_GLOBAL_MAX_INFLIGHT"],
    "24",
    positive,
);
pub(super) const SESSION_MAX_INFLIGHT: Key<usize> = key(
    "limits.session_max_inflight",
    &["EXAI_SESSION_MAX_INFLIGHT"],
    "8",
    positive,
);
pub(super) const QUEUE_TIMEOUT_MS: Key<u64> = key("limits.queue_timeout_ms", &["EXAI_QUEUE_TIMEOUT_MS"], "30000", any);
pub(super) const REQUESTS_PER_MINUTE: Key<u32> = key(
    "limits.requests_per_minute",
    &["EXAI_REQUESTS_PER_MINUTE", "EXAI_WS_REQUESTS_PER_MINUTE"],
    "6000",
    positive,
);
pub(super) const CALL_TIMEOUT_SECS: Key<u64> = key(
    "limits.call_timeout_secs",
    &["EXAI_CALL_TIMEOUT_SECS", "EXAI_WS_CALL_TIMEOUT_SECS"],
    "600",
    positive,
);

/// Its default is on when a Redis URL is set, filled in by `mod.rs`.
pub(super) const SHARED_LIMITS: Key<bool> = Key {
    key: "limits.shared",
    env: &["EXAI_SHARED_LIMITS"],
    default: None,
    check: any,
};
pub(super) const LEASE_SECS: Key<u64> = key("limits.lease_secs", &["EXAI_LEASE_SECS"], "15", positive);

pub(super) const REDIS_URL: (&str, &[&str]) = ("memory.redis_url", &["REDIS_URL"]);
/// Its default is `redis` when a Redis URL is set, else `sqlite`, filled in by `mod.rs`.
pub(super) const MEMORY_BACKEND: Key<MemoryBackend> = Key {
    key: "memory.backend",
    env: &["EXAI_MEMORY"],
    default: None,
    check: any,
};
pub(super) const MEMORY_TTL_SECS: Key<u64> = key("memory.ttl_secs", &["EXAI_MEMORY_TTL_SECS"], "259200", positive);
pub(super) const MAX_TURNS: Key<usize> = key("memory.max_turns", &["EXAI_MAX_TURNS"], "50", positive);
pub(super) const KEY_PREFIX: Key<String> = key("memory.key_prefix", &["EXAI_REDIS_PREFIX"], "exai:", any);

pub(super) const MAX_RETRIES: Key<u32> = key("retry.max_retries", &["EXAI_MAX_RETRIES"], "2", any);
pub(super) const BASE_DELAY_MS: Key<u64> = key("retry.base_delay_ms", &["EXAI_RETRY_BASE_DELAY_MS"], "250", any);
pub(super) const MAX_DELAY_MS: Key<u64> = key("retry.max_delay_ms", &["EXAI_RETRY_MAX_DELAY_MS"], "8000", any);
pub(super) const MAX_RETRY_AFTER_SECS: Key<u64> =
    key("retry.max_retry_after_secs", &["EXAI_MAX_RETRY_AFTER_SECS"], "30", any);
pub(super) const CIRCUIT_FAILURE_THRESHOLD: Key<u32> = key(
    "retry.circuit_failure_threshold",
    &["EXAI_CIRCUIT_FAILURE_THRESHOLD"],
    "5",
    positive,
);
pub(super) const CIRCUIT_COOLDOWN_SECS: Key<u64> = key(
    "retry.circuit_cooldown_secs",
    &["EXAI_CIRCUIT_COOLDOWN_SECS"],
    "30",
    any,
);

pub(super) const FALLBACK: (&str, &[&str]) = ("routing.fallback", &["EXAI_FALLBACK"]);
pub(super) const LONG_CONTEXT_TOKENS: Key<u64> = key(
    "routing.long_context_tokens",
    &["EXAI_LONG_CONTEXT_TOKENS"],
    "100000",
    any,
);

pub(super) const IDLE_TIMEOUT_SECS: Key<u64> = key(
    "sessions.idle_timeout_secs",
    &["EXAI_SESSION_IDLE_SECS"],
    "3600",
    positive,
);
pub(super) const CONVERSATION_IDLE_SECS: Key<u64> = key(
    "sessions.conversation_idle_secs",
    &["EXAI_CONVERSATION_IDLE_SECS"],
    "300",
    positive,
);
pub(super) const SHUTDOWN_GRACE_SECS: Key<u64> =
    key("sessions.shutdown_grace_secs", &["EXAI_SHUTDOWN_GRACE_SECS"], "30", any);

pub(super) const TOOLS_PROFILE: Key<String> = key("tools.profile", &["EXAI_TOOLS"], "standard", any);
pub(super) const DISABLED_TOOLS: (&str, &[&str]) = ("tools.disabled", &["EXAI_DISABLED_TOOLS"]);
pub(super) const FILE_ROOTS: (&str, &[&str]) = ("tools.file_roots", &["EXAI_FILE_ROOTS"]);
pub(super) const MAX_OUTPUT_CHARS: Key<usize> =
    key("tools.max_output_chars", &["EXAI_MAX_OUTPUT_CHARS"], "80000", positive);
pub(super) const MAX_PROMPT_CHARS: Key<usize> =
    key("tools.max_prompt_chars", &["EXAI_MAX_PROMPT_CHARS"], "50000", positive);
pub(super) const FILE_TOKEN_BUDGET: Key<u64> =
    key("tools.file_token_budget", &["EXAI_FILE_TOKEN_BUDGET"], "60000", any);
pub(super) const HEARTBEAT_SECS: Key<u64> =
    key("tools.heartbeat_secs", &["EXAI_PROGRESS_HEARTBEAT_SECS"], "5", positive);

pub(super) const HOST: Key<String> = key("daemon.host", &["EXAI_WS_HOST"], "127.0.0.1", any);
pub(super) const PORT: Key<u16> = key("daemon.port", &["EXAI_WS_PORT"], "8079", any);
pub(super) const TOKEN: (&str, &[&str]) = ("daemon.token", &["EXAI_WS_TOKEN"]);
pub(super) const ADMIN_TOKEN: (&str, &[&str]) = ("daemon.admin_token", &["EXAI_ADMIN_TOKEN"]);
pub(super) const MAX_CONNECTIONS: Key<usize> =
    key("daemon.max_connections", &["EXAI_WS_MAX_CONNECTIONS"], "1024", positive);
pub(super) const MAX_CONNECTIONS_PER_IP: Key<usize> = key(
    "daemon.max_connections_per_ip",
    &["EXAI_WS_MAX_CONNECTIONS_PER_IP"],
    "1024",
    positive,
);
pub(super) const MAX_FRAME_BYTES: Key<usize> = key(
    "limits.max_frame_bytes",
    &["EXAI_MAX_FRAME_BYTES", "EXAI_WS_MAX_FRAME_BYTES"],
    "4194304",
    positive,
);
pub(super) const MAX_BODY_BYTES: Key<usize> = key(
    "daemon.max_body_bytes",
    &["EXAI_WS_MAX_BODY_BYTES"],
    "4194304",
    positive,
);
/// Its default is the machine's CPU count, filled in by `mod.rs`.
pub(super) const THREADS: Key<usize> = Key {
    key: "daemon.threads",
    env: &["EXAI_WS_THREADS"],
    default: None,
    check: positive,
};

pub(super) const ANTHROPIC_MODEL_MAP: (&str, &[&str]) = ("anthropic.model_map", &["EXAI_ANTHROPIC_MODEL_MAP"]);
pub(super) const LOG_FORMAT: Key<LogFormat> = key("log.format", &["EXAI_LOG_FORMAT"], "text", any);
pub(super) const OTEL_CONTENT: Key<bool> = key("log.otel_content", &["EXAI_OTEL_CONTENT"], "false", any);
/// Its default is the user's state directory, filled in by `mod.rs`.
pub(super) const STATE_DIR: (&str, &[&str]) = ("state_dir", &["EXAI_STATE_DIR"]);

use super::{LogFormat, MemoryBackend};
