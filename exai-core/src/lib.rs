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
//! Every module is private; what callers use is re-exported here, once.
//! - `gateway`: [`Gateway`], [`GatewayBuilder`], [`Session`] and [`SessionOptions`],
//!   [`ChatStream`] — the public API; per-client admission (rate, deadline) lives here.
//! - `config`: [`Config`] (loaded from `exai.toml` and the environment, or built in code with
//!   [`Config::builder`]), every value with its [`Source`]; secrets redacted.
//! - `request`: [`ChatRequest`] (a builder), [`ChatResponse`], [`ChatEvent`], [`Usage`].
//! - `catalog`: models, aliases, capabilities and prices.
//! - `actors`: sessions, the conversation queue, the semaphore manager.
//! - `providers`: one worker actor per provider; the shared OpenAI wire format; one file of
//!   quirks per provider; retries and the circuit breaker.
//! - `routing`: `auto` selection and the fallback chain.
//! - `memory`: conversation threads behind [`MemoryStore`] (Redis or in process).
//! - `wire`: the API formats ([`Wire`]: OpenAI chat, Anthropic Messages) — a client's request
//!   as it came ([`WireRequest`]), the reply in its wire ([`WireReply`], [`WireStream`]),
//!   relayed as bytes or translated.
//! - `engine`: one attempt loop for every call (permits, circuit, retries, quirks, fallback),
//!   what is recorded once per call, and wire calls (relay or translation).
//! - `deadline`: the call's deadline where the waits inside it can see it (no wait that would
//!   end past it is started).
//! - `keys`: API keys ([`Keys`]): who may call, with what limits and budget, and what each spent.
//! - `activity`: the last 100 requests and the last hour per model ([`ActivityReport`]), live
//!   too — what exai-ws's status page shows.
//! - `usage`: the ledger of tokens, requests, errors and cost (per key and per deployment too).
//! - `metrics_catalog`: what each metric means ([`describe_metrics`]), the histogram buckets of
//!   durations, which `_total` series are float counters — for the exporters of the front doors.
//! - `tools`: the MCP tool suite, [`ToolSuite`] — built on a gateway by the front doors; the
//!   gateway knows nothing of it.
//! - `trace`: the spans of a request, with OpenTelemetry's GenAI attributes ([`TraceContext`]
//!   continues a caller's trace); the binaries export them.
//! - `testing` (feature `testing`): a fake upstream for tests, benches and the quickstart.
//! - `error`: [`Error`] and the provider failure taxonomy.
//!
//! Process concerns stay with the binaries: log notifications and stop signals are in
//! `exai-mcp`, protocol versions come from the crates that speak the protocols.
//!
//! # The path of a request
//! front door → [`Session`] (admission: the gateway runs, the session is open, the client is
//! under `limits.requests_per_minute`; the call's deadline; cancellation scope; per-session
//! limit) → conversation queue (turns of one conversation in order; new conversations skip it)
//! → limits (session, global, then the provider's) → router (plan, fallback chain) → provider
//! worker (circuit breaker, rate limit, retries, HTTP/SSE) → memory (the turn is stored) and
//! usage (the ledger) → the reply, which names the provider and model that actually answered.
//! A tool call takes the same path: [`ToolSuite::call`] admits it once, then the tool's turns run
//! inside that admission.
//!
//! Every request runs in a tracing span (`chat`: request id, session, conversation, provider,
//! model) and records metrics through the `metrics` facade: `exai_requests_total`,
//! `exai_request_duration_seconds`, `exai_tokens_total`, `exai_cost_usd_total`,
//! `exai_provider_retries_total`, `exai_inflight`, `exai_queue_wait_seconds`,
//! `exai_over_capacity_total`, `exai_sessions`, `exai_memory_errors_total`. Frontends install the
//! exporter, with [`describe_metrics`] and [`DURATION_BUCKETS`].

mod activity;
mod actors;
mod catalog;
mod config;
mod deadline;
mod engine;
mod error;
mod gateway;
mod keys;
mod memory;
mod metrics_catalog;
mod providers;
mod request;
mod routing;
#[cfg(feature = "testing")]
pub mod testing;
mod tools;
mod trace;
mod usage;
mod wire;

pub use activity::{ActivityReport, ModelActivity, RequestRecord};
pub use actors::conversation::QueueStats;
pub use actors::limits::LimitUsage;
pub use actors::session::SessionInfo;
pub use catalog::{Capabilities, Catalog, ModelInfo, Price};
pub use config::{
    AnthropicConfig, CacheConfig, CacheMode, CacheScope, Config, ConfigBuilder, ConfigEntry, ConfigError, DaemonConfig,
    DeploymentConfig, LimitsConfig, LogFormat, MemoryBackend, MemoryConfig, ModelDecl, ProviderConfig, ProviderKind,
    RetryConfig, RoutingConfig, Secret, SessionConfig, Source, Strategy, ToolsConfig,
};
pub use engine::{CacheStats, SharedCacheStatus};
pub use error::{EXIT_CODES, Error, ErrorClass, ProviderError, ProviderErrorKind, Result};
pub use gateway::{
    ChatStream, Gateway, GatewayBuilder, GatewayStatus, MemoryStatus, ModelEntry, Reloaded, Session, SessionOptions,
    SharedLimitsStatus,
};
pub use keys::{Caller, CreatedKey, KeyError, KeyInfo, KeyLimits, KeyStatus, KeyUpdate, Keys, Period, parse_date};
pub use memory::{
    LocalStore, MemoryError, MemoryStore, RedisStore, SqliteStore, StoredResponse, Thread, ThreadSummary, Turn,
};
pub use metrics_catalog::{DURATION_BUCKETS, FLOAT_COUNTERS, describe_metrics};
pub use providers::{DeploymentStatus, ProviderCheck, ProviderHealth};
pub use request::{
    Attachments, ChatEvent, ChatRequest, ChatResponse, FallbackNote, Message, Role, ThinkingMode, Usage,
};
pub use tools::{
    AttachError, FailureKind, FileAccess, Progress, ProgressSender, ToolDef, ToolError, ToolFailure, ToolOutput,
    ToolSuite, attach_files,
};
pub use trace::TraceContext;
pub use usage::{
    DeploymentUsageReport, DeploymentUsageRow, KeyUsageReport, KeyUsageRow, UsageBreakdown, UsageReport, UsageRow,
};
pub use wire::{CacheDirective, CacheStatus, TokenCount, Wire, WireReply, WireRequest, WireStream};

/// README's Rust snippets, compiled as doc tests so they cannot drift from the API.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
