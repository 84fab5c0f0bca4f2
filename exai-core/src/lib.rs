//! # exai-core
//!
//! Several LLM providers — Z.ai GLM, Moonshot Kimi, MiniMax M2 and any OpenAI-compatible
//! endpoint — behind one fast, bounded, observable, fault-tolerant gateway. This crate holds all
//! the logic; `exai-stdio`, `exai-ws` and `exai-cli` only translate their protocols to it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), exai_core::Error> {
//! use exai_core::{ChatRequest, Gateway};
//! let gateway = Gateway::from_env().await?;
//! let reply = gateway.chat(ChatRequest::new("Say hello").model("auto")).await?;
//! println!("{} (from {} / {})", reply.text, reply.provider, reply.model);
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`gateway`]: [`Gateway`], [`Session`], [`ChatStream`] — the public API.
//! - [`config`]: [`Config`], loaded from `exai.toml` and the environment, every value with its
//!   source; secrets redacted.
//! - [`catalog`]: models, aliases, capabilities and prices.
//! - `actors`: sessions, the conversation queue, the semaphore manager.
//! - `providers`: one worker actor per provider; the shared OpenAI wire format; one file of
//!   quirks per provider; retries and the circuit breaker.
//! - `routing`: `auto` selection and the fallback chain.
//! - [`memory`]: conversation threads in Redis or in process.
//! - [`usage`]: the ledger of tokens, requests, errors and cost.
//! - [`tools`]: the MCP tool suite (17 tools, profiles), the same for every frontend.
//! - [`testing`] (feature `testing`): a fake upstream for tests, benches and the quickstart.
//! - [`logs`]: a tracing layer that hands log events to frontends (MCP log notifications).
//! - [`error`]: the error types.
//!
//! # The path of a request
//! frontend → [`Session`] (cancellation scope, per-session limit) → conversation queue (turns of
//! one conversation in order; new conversations skip it) → limits (session, global, then the
//! provider's) → router (plan, fallback chain) → provider worker (circuit breaker, rate limit,
//! retries, HTTP/SSE) → memory (the turn is stored) and usage (the ledger) → the reply, which
//! names the provider and model that actually answered.
//!
//! Every request runs in a tracing span (`chat`: request id, session, conversation, provider,
//! model) and records metrics through the `metrics` facade: `exai_requests_total`,
//! `exai_request_duration_seconds`, `exai_tokens_total`, `exai_cost_usd_total`,
//! `exai_provider_retries_total`, `exai_inflight`, `exai_queue_wait_seconds`,
//! `exai_over_capacity_total`, `exai_sessions`, `exai_memory_errors_total`. Frontends install the
//! exporter.

mod actors;
mod catalog;
mod config;
mod error;
mod gateway;
mod memory;
mod providers;
mod request;
mod routing;
#[cfg(feature = "testing")]
pub mod testing;
mod tools;
mod usage;

pub use actors::conversation::QueueStats;
pub use actors::limits::LimitUsage;
pub use actors::session::SessionInfo;
pub use catalog::{Capabilities, Catalog, ModelInfo, Price};
pub use config::{
    Config, ConfigBuilder, ConfigEntry, ConfigError, DaemonConfig, LimitsConfig, LogFormat, MemoryConfig, ModelDecl,
    ProviderConfig, ProviderKind, RetryConfig, RoutingConfig, Secret, SessionConfig, Source, ToolsConfig,
};
pub use error::{Error, ProviderError, ProviderErrorKind, Result};
pub use gateway::{
    ChatStream, Gateway, GatewayBuilder, GatewayStatus, MemoryStatus, ModelEntry, Session, SessionOptions,
};
pub use memory::{LocalStore, MemoryError, MemoryStore, RedisStore, Thread, ThreadSummary, Turn};
pub use providers::{ProviderCheck, ProviderHealth};
pub use request::{ChatEvent, ChatRequest, ChatResponse, FallbackNote, Message, Role, ThinkingMode, Usage};
pub use tools::{
    AttachError, Attachments, FailureKind, Progress, ProgressSender, ToolDef, ToolError, ToolFailure, ToolOutput,
    ToolSuite, attach_files,
};
pub use usage::{UsageReport, UsageRow};
