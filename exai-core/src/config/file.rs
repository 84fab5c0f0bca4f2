//! The `exai.toml` file as it is written, before environment overlay and validation.
//!
//! Every table denies unknown fields, so a typo (`global_max_inflght`) fails at start with the
//! file name and the offending key instead of being silently ignored. See README's configuration
//! reference for an annotated example.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub default_model: Option<String>,
    #[serde(default)]
    pub limits: FileLimits,
    #[serde(default)]
    pub memory: FileMemory,
    #[serde(default)]
    pub retry: FileRetry,
    #[serde(default)]
    pub routing: FileRouting,
    #[serde(default)]
    pub sessions: FileSessions,
    /// Providers by name. `glm`, `kimi` and `minimax` are built in; any other name declares an
    /// OpenAI-compatible provider and needs `base_url`.
    #[serde(default)]
    pub providers: BTreeMap<String, FileProvider>,
    #[serde(default)]
    pub tools: FileTools,
    #[serde(default)]
    pub daemon: FileDaemon,
    /// Extra aliases: `fast = "glm-4.5-flash"`.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    #[serde(default)]
    pub log: FileLog,
    pub state_dir: Option<std::path::PathBuf>,
    #[serde(default)]
    pub anthropic: FileAnthropic,
}

/// The Anthropic-compatible front door.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileAnthropic {
    /// `claude-*` model ids the catalog does not know → exai models, by glob:
    /// `"claude-haiku-*" = "glm-4.5-air"`. Checked in order of the table (most specific first).
    pub model_map: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLog {
    pub format: Option<super::LogFormat>,
    pub otel_content: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLimits {
    pub global_max_inflight: Option<usize>,
    pub session_max_inflight: Option<usize>,
    pub queue_timeout_ms: Option<u64>,
    pub requests_per_minute: Option<u32>,
    pub call_timeout_secs: Option<u64>,
    pub shared: Option<bool>,
    pub lease_secs: Option<u64>,
    pub max_frame_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileMemory {
    pub backend: Option<super::MemoryBackend>,
    pub redis_url: Option<String>,
    pub ttl_secs: Option<u64>,
    pub max_turns: Option<usize>,
    pub key_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRetry {
    pub max_retries: Option<u32>,
    pub base_delay_ms: Option<u64>,
    pub max_delay_ms: Option<u64>,
    pub max_retry_after_secs: Option<u64>,
    pub circuit_failure_threshold: Option<u32>,
    pub circuit_cooldown_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRouting {
    pub fallback: Option<Vec<String>>,
    pub long_context_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSessions {
    pub idle_timeout_secs: Option<u64>,
    pub conversation_idle_secs: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTools {
    pub profile: Option<String>,
    pub disabled: Option<Vec<String>>,
    pub max_output_chars: Option<usize>,
    pub max_prompt_chars: Option<usize>,
    pub file_token_budget: Option<u64>,
    pub file_roots: Option<Vec<String>>,
    pub heartbeat_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDaemon {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub token: Option<String>,
    pub admin_token: Option<String>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_body_bytes: Option<usize>,
    pub threads: Option<usize>,
}

/// One provider entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileProvider {
    /// `glm`, `kimi`, `minimax` or `openai_compat`; defaults to the name for built-ins and to
    /// `openai_compat` otherwise.
    pub kind: Option<String>,
    pub enabled: Option<bool>,
    /// Discouraged (prefer `api_key_env`), but accepted; redacted when printed.
    pub api_key: Option<String>,
    /// Name of an environment variable holding the key.
    pub api_key_env: Option<String>,
    pub base_url: Option<String>,
    /// The provider's Anthropic-compatible endpoint (`none` for none).
    pub anthropic_base_url: Option<String>,
    /// The wires its endpoints speak (`chat`, `messages`), comma-separated in the environment.
    pub wires: Option<Vec<String>>,
    pub max_inflight: Option<usize>,
    pub rpm: Option<u32>,
    pub timeout_secs: Option<u64>,
    pub default_model: Option<String>,
    /// Models this provider serves, in addition to (or, for OpenAI-compatible providers,
    /// instead of) the built-in catalog.
    #[serde(default)]
    pub models: Vec<FileModel>,
}

/// A model declared or overridden in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileModel {
    pub id: String,
    pub context_window: Option<u32>,
    pub max_output: Option<u32>,
    pub thinking: Option<bool>,
    pub vision: Option<bool>,
    pub web_search: Option<bool>,
    pub input_per_m: Option<f64>,
    pub output_per_m: Option<f64>,
    #[serde(default)]
    pub aliases: Vec<String>,
}
