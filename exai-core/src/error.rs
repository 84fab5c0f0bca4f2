//! The library's error types.
//!
//! Everything `exai-core` can fail with is a variant of [`Error`]. Provider failures carry a
//! [`ProviderError`] that names the provider, the model, the HTTP status when there was one, and
//! what kind of failure it was ([`ProviderErrorKind`]) — which decides whether a retry or a
//! fallback makes sense.
//!
//! [`Error::class`] says once what kind of failure an error is for whoever answers the caller
//! ([`ErrorClass`]: an invalid request, a rate limit, a provider that refused its key, …). The
//! exit codes, the tools' [`FailureKind`](crate::FailureKind) and every front door's wire error
//! (OpenAI's and Anthropic's JSON, JSON-RPC, WebSocket frames) are derived from it at the edge;
//! nothing here knows about those wires.
//!
//! Messages say what happened and what to do, and never contain a secret: upstream error bodies
//! are shortened and scrubbed of anything that looks like a key before they land here.

use std::time::Duration;

use crate::config::ConfigError;
use crate::memory::MemoryError;

/// The exit codes every exai binary uses, for `--help` and README.
pub const EXIT_CODES: &str = "Exit codes (the same for exai, exai-ws and exai-stdio):
  0    success
  1    a check or a tool call failed (doctor, call), or an unexpected error
  2    wrong usage (unknown flag, bad value); exai-ws: its port or state directory is taken
  3    the configuration is invalid
  4    no provider configured (or not the one the model needs)
  5    the provider rejected the key
  6    temporarily unavailable: rate limited, provider down, over capacity, timed out (retry later)
  7    the request was refused: unknown model, unreadable file, prompt too large, a key's limit
  130  interrupted (Ctrl-C)";

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a gateway call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message names the key and where it came from.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A provider failed (after retries, and after fallback when fallback applied). Boxed:
    /// it names every attempt, and every `Result<_, Error>` carries room for it.
    #[error(transparent)]
    Provider(Box<ProviderError>),
    /// The model name is neither a known model, an alias, `auto`, nor `provider/model`.
    #[error("unknown model '{model}'; known models and aliases: {known}")]
    UnknownModel {
        /// What the caller asked for.
        model: String,
        /// A comma-separated list of what would have worked.
        known: String,
    },
    /// The model is known but its provider has no key (or is disabled).
    #[error("model '{model}' belongs to provider {provider}, which is not configured: {hint}")]
    ProviderNotConfigured {
        /// The requested model.
        model: String,
        /// Its provider.
        provider: String,
        /// What to set to configure it.
        hint: String,
    },
    /// No provider at all can take requests.
    #[error(
        "no provider configured: set GLM_API_KEY, KIMI_API_KEY or MINIMAX_API_KEY, \
         or declare an OpenAI-compatible provider in exai.toml"
    )]
    NoProviderConfigured,
    /// The request itself is malformed or asks for something the model cannot do.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A concurrency limit stayed full for longer than the queue timeout.
    #[error(
        "over capacity: the {scope} limit of {limit} concurrent requests stayed full for {} ms; \
         retry after {} s",
        waited.as_millis(),
        retry_after.as_secs().max(1)
    )]
    OverCapacity {
        /// Which limit: `global`, `session`, or `provider <name>`.
        scope: String,
        /// The configured size of that limit.
        limit: usize,
        /// How long the request waited before giving up.
        waited: Duration,
        /// A suggested delay before retrying.
        retry_after: Duration,
    },
    /// The client made more requests per minute than `limits.requests_per_minute` allows.
    #[error(
        "rate limited: client {client} is over its limit of {per_minute} requests per minute; retry after {} s",
        retry_after.as_secs().max(1)
    )]
    RateLimited {
        /// The client the limit is counted for (an address, `stdio`, …).
        client: String,
        /// The configured limit.
        per_minute: u32,
        /// When the next request will be admitted.
        retry_after: Duration,
    },
    /// The call ran longer than its session's deadline (`limits.call_timeout_secs`).
    #[error(
        "the call ran longer than {} s (limits.call_timeout_secs) and was stopped; ask for less, or raise the limit",
        after.as_secs()
    )]
    DeadlineExceeded {
        /// The deadline that passed.
        after: Duration,
    },
    /// No valid key was presented (or the key was revoked, rotated or expired).
    #[error("unauthorized: {reason}")]
    Unauthorized {
        /// What was wrong, naming the key when there was one (never its secret).
        reason: String,
    },
    /// The key may not use this model or tool.
    #[error("forbidden: key {key} may not {what}")]
    Forbidden {
        /// The key's name.
        key: String,
        /// What it asked for, and what it may do instead.
        what: String,
    },
    /// The key's spend in its period has reached its budget.
    #[error(
        "key {key} has spent ${spent_usd:.4} of its ${budget_usd:.2} {} budget; {}",
        period_name(*period),
        resets_at.as_ref().map_or_else(
            || "it does not reset: raise it with `exai keys update` or use another key".to_string(),
            |at| format!("it resets at {at}")
        )
    )]
    BudgetExceeded {
        /// The key's name.
        key: String,
        /// Its budget.
        budget_usd: f64,
        /// What it spent in the period.
        spent_usd: f64,
        /// The budget's period.
        period: crate::keys::Period,
        /// When the period ends (RFC 3339), unless it is `total`.
        resets_at: Option<String>,
    },
    /// The key is over one of its own limits (requests or tokens per minute, calls in flight).
    #[error(
        "rate limited: key {key} is over its limit of {limit}; retry after {} s",
        retry_after.as_secs().max(1)
    )]
    KeyLimited {
        /// The key's name.
        key: String,
        /// Which limit, with its value.
        limit: String,
        /// When a call may succeed again.
        retry_after: Duration,
    },
    /// The keys could not be read, so no key can be checked.
    #[error("keys cannot be checked: {0}")]
    KeysUnavailable(String),
    /// Managing keys failed.
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    /// The continuation id names no stored conversation.
    #[error("conversation '{0}' not found (it may have expired); start a new one without a continuation id")]
    ThreadNotFound(String),
    /// No stored response has this id for this caller (it expired, was deleted, was never
    /// stored, or belongs to another key: the same answer, so an id is no oracle).
    #[error("No response found with id '{0}'.")]
    ResponseNotFound(String),
    /// The caller went away, or the request was cancelled explicitly.
    #[error("request cancelled")]
    Cancelled,
    /// The gateway is draining and takes no new work.
    #[error("the gateway is shutting down; retry against a running instance")]
    ShuttingDown,
    /// The session was closed or expired after being idle.
    #[error("session {0} is closed (closed by its client or expired after being idle)")]
    SessionClosed(String),
    /// The memory store failed in a way that could not be absorbed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// A bug or an actor that died; the message says which.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Provider(e) => e.is_retryable(),
            Error::OverCapacity { .. }
            | Error::RateLimited { .. }
            | Error::KeyLimited { .. }
            | Error::KeysUnavailable(_)
            | Error::ShuttingDown => true,
            _ => false,
        }
    }

    /// What kind of failure this is, for whoever answers the caller: front doors render their
    /// wire error from it, binaries their exit code, tools their
    /// [`FailureKind`](crate::FailureKind).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Config(_) => ErrorClass::InvalidConfig,
            Error::Provider(p) => p.class(),
            Error::UnknownModel { .. } => ErrorClass::UnknownModel,
            Error::ProviderNotConfigured { .. } | Error::NoProviderConfigured => ErrorClass::NotConfigured,
            Error::InvalidRequest(_) | Error::ThreadNotFound(_) => ErrorClass::InvalidRequest,
            Error::ResponseNotFound(_) => ErrorClass::NotFound,
            Error::OverCapacity { .. } => ErrorClass::OverCapacity,
            Error::RateLimited { .. } | Error::KeyLimited { .. } => ErrorClass::RateLimited,
            Error::DeadlineExceeded { .. } => ErrorClass::DeadlineExceeded,
            Error::Unauthorized { .. } => ErrorClass::Unauthorized,
            Error::Forbidden { .. } => ErrorClass::Forbidden,
            Error::BudgetExceeded { .. } => ErrorClass::OverBudget,
            Error::KeysUnavailable(_) => ErrorClass::KeysUnavailable,
            Error::ShuttingDown | Error::SessionClosed(_) => ErrorClass::Unavailable,
            Error::Cancelled => ErrorClass::Cancelled,
            Error::Keys(_) | Error::Memory(_) | Error::Internal(_) => ErrorClass::Internal,
        }
    }

    /// The process exit code for this error, the same in every exai binary (`exai`, `exai-ws`,
    /// `exai-stdio`): see [`EXIT_CODES`].
    pub fn exit_code(&self) -> i32 {
        self.class().exit_code()
    }

    /// A suggested delay before retrying, when the failure says so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::OverCapacity { retry_after, .. }
            | Error::RateLimited { retry_after, .. }
            | Error::KeyLimited { retry_after, .. } => Some(*retry_after),
            Error::Provider(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// The kinds of failure a front door tells apart: what [`Error::class`] says an error is, so
/// that an OpenAI, Anthropic, MCP or EXAI client each hears of the same failure in its own
/// protocol, and a binary exits with the same code. Decided here once; rendered only at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The request is malformed, asks for what the model cannot do, or names a conversation
    /// that expired.
    InvalidRequest,
    /// The model is neither a known model, an alias, `auto`, nor `provider/model`.
    UnknownModel,
    /// What the request names (a stored response) does not exist for this caller.
    NotFound,
    /// The request is over one of this server's size limits (`daemon.max_body_bytes`); front
    /// doors refuse it before the core sees it.
    TooLarge,
    /// No valid key was presented, or the key was revoked, rotated or expired.
    Unauthorized,
    /// The key may not use this model or tool.
    Forbidden,
    /// The key has spent its budget for the period.
    OverBudget,
    /// The client or its key is over a rate limit; retry later.
    RateLimited,
    /// A concurrency limit stayed full for the queue timeout; retry later.
    OverCapacity,
    /// The call ran past its deadline.
    DeadlineExceeded,
    /// No provider can take the model: none is configured, or not the model's.
    NotConfigured,
    /// The keys cannot be read, so no key can be checked; retry later.
    KeysUnavailable,
    /// The gateway takes no new work: it is shutting down, or the session closed.
    Unavailable,
    /// The provider answered 429 after the allowed retries.
    UpstreamRateLimited,
    /// The provider refused the request as malformed.
    UpstreamRejected {
        /// The provider's HTTP status (400, 404, 413, 422, …).
        status: u16,
    },
    /// The provider rejected its key (the provider's key, not the caller's).
    UpstreamAuth,
    /// The provider has no API key configured.
    UpstreamKeyMissing,
    /// The provider is skipped for now: its circuit breaker is open after repeated failures.
    UpstreamUnavailable,
    /// The provider failed: a 5xx, no connection, a timeout, after the allowed retries.
    UpstreamFailed,
    /// The provider's stream stopped after part of the reply.
    UpstreamInterrupted,
    /// The configuration is invalid.
    InvalidConfig,
    /// The caller went away, or cancelled the request.
    Cancelled,
    /// A bug, an actor that died, a store that failed.
    Internal,
}

impl ErrorClass {
    /// The HTTP status most front doors answer with; a door whose protocol says otherwise
    /// (Anthropic's 529 for an overloaded server, OpenAI's 429 for a spent quota) decides so
    /// itself.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorClass::InvalidRequest => 400,
            ErrorClass::Unauthorized => 401,
            ErrorClass::OverBudget => 402,
            ErrorClass::Forbidden => 403,
            ErrorClass::UnknownModel | ErrorClass::NotFound => 404,
            ErrorClass::TooLarge => 413,
            ErrorClass::RateLimited | ErrorClass::OverCapacity | ErrorClass::UpstreamRateLimited => 429,
            ErrorClass::UpstreamRejected {
                status: status @ (404 | 413),
            } => status,
            ErrorClass::UpstreamRejected { .. } => 400,
            ErrorClass::UpstreamAuth | ErrorClass::UpstreamFailed | ErrorClass::UpstreamInterrupted => 502,
            ErrorClass::NotConfigured
            | ErrorClass::KeysUnavailable
            | ErrorClass::Unavailable
            | ErrorClass::UpstreamKeyMissing
            | ErrorClass::UpstreamUnavailable => 503,
            ErrorClass::DeadlineExceeded => 504,
            ErrorClass::InvalidConfig | ErrorClass::Cancelled | ErrorClass::Internal => 500,
        }
    }

    /// Whether a client's own retry of the same call may help. Not once exai's retry policy has
    /// run on the provider (every `Upstream…` class: retried, fallen back, or not worth it), nor
    /// after the call's whole deadline, nor while nothing is configured: HTTP front doors then
    /// answer `x-should-retry: false`, which the OpenAI and Anthropic SDKs honour, so retries do
    /// not stack. Yes for exai's own limits and a daemon going away, which say when to retry.
    pub fn client_should_retry(self) -> bool {
        matches!(
            self,
            ErrorClass::RateLimited | ErrorClass::OverCapacity | ErrorClass::KeysUnavailable | ErrorClass::Unavailable
        )
    }

    /// The process exit code for a failure of this class: see [`EXIT_CODES`].
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorClass::InvalidConfig => 3,
            ErrorClass::NotConfigured | ErrorClass::UpstreamKeyMissing => 4,
            ErrorClass::UpstreamAuth => 5,
            ErrorClass::RateLimited
            | ErrorClass::OverCapacity
            | ErrorClass::DeadlineExceeded
            | ErrorClass::KeysUnavailable
            | ErrorClass::Unavailable
            | ErrorClass::UpstreamRateLimited
            | ErrorClass::UpstreamUnavailable
            | ErrorClass::UpstreamFailed
            | ErrorClass::UpstreamInterrupted => 6,
            ErrorClass::InvalidRequest
            | ErrorClass::UnknownModel
            | ErrorClass::NotFound
            | ErrorClass::TooLarge
            | ErrorClass::Unauthorized
            | ErrorClass::Forbidden
            | ErrorClass::OverBudget
            | ErrorClass::UpstreamRejected { .. } => 7,
            ErrorClass::Cancelled => 130,
            ErrorClass::Internal => 1,
        }
    }
}

/// `monthly`, `weekly`, …, as a budget is named.
fn period_name(period: crate::keys::Period) -> &'static str {
    use crate::keys::Period;
    match period {
        Period::Day => "daily",
        Period::Week => "weekly",
        Period::Month => "monthly",
        Period::Total => "total",
    }
}

/// A failure at one provider, for one model — the last attempt of a call, with the attempts
/// that failed before it (`earlier`), so that the message names every one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{} ({model}): {kind}", attempts_before(earlier), deployment.as_deref().unwrap_or(provider))]
pub struct ProviderError {
    /// The provider's configured name (`glm`, `kimi`, `minimax`, or a custom name).
    pub provider: String,
    /// The deployment that failed (`glm#2`), when the provider has several.
    pub deployment: Option<String>,
    /// The upstream model id.
    pub model: String,
    /// What went wrong.
    pub kind: ProviderErrorKind,
    /// The models the call tried before this one, and why each was left (the attempt loop
    /// fills it in when it gives up). Boxed: every `Result<_, Error>` carries room for it.
    pub earlier: Box<[crate::request::FallbackNote]>,
}

impl From<ProviderError> for Error {
    fn from(error: ProviderError) -> Self {
        Error::Provider(Box::new(error))
    }
}

/// `N attempts failed: A; B; ` before the last attempt's own message, when there were others.
fn attempts_before(earlier: &[crate::request::FallbackNote]) -> String {
    if earlier.is_empty() {
        return String::new();
    }
    let mut text = format!("{} attempts failed: ", earlier.len() + 1);
    for note in earlier {
        text.push_str(&note.error);
        text.push_str("; ");
    }
    text
}

/// The failure taxonomy that decides retries, fallback and circuit breaking.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderErrorKind {
    /// The provider has no API key configured.
    #[error("no API key: set {env}")]
    MissingKey {
        /// The environment variable(s) to set.
        env: String,
    },
    /// The key was rejected (401/403). Never retried.
    #[error("rejected the key from {key_source} ({status}): {message}")]
    Auth {
        /// HTTP status.
        status: u16,
        /// Where the key came from (`GLM_API_KEY (env)`), never the key.
        key_source: String,
        /// The provider's message, shortened and scrubbed.
        message: String,
    },
    /// 429 after the allowed retries.
    #[error("rate limited (429){}: {message}", retry_after.map(|d| format!(", retry after {} s", d.as_secs().max(1))).unwrap_or_default())]
    RateLimited {
        /// The provider's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
        /// The provider's message.
        message: String,
    },
    /// 5xx, connection failures and timeouts, after the allowed retries.
    #[error("unavailable{}: {message}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
    Transient {
        /// HTTP status, when the provider answered at all.
        status: Option<u16>,
        /// What happened.
        message: String,
    },
    /// The provider refused the request as malformed (400, 404, 422). Never retried.
    #[error("rejected the request ({status}): {message}")]
    InvalidRequest {
        /// HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// A streamed reply stopped before it was complete.
    #[error("the stream was interrupted after part of the reply: {message}")]
    StreamInterrupted {
        /// What happened.
        message: String,
    },
    /// The circuit breaker is open after repeated failures.
    #[error("temporarily disabled after repeated failures; retry after {} s", retry_after.as_secs().max(1))]
    CircuitOpen {
        /// Time until the breaker lets a trial request through.
        retry_after: Duration,
    },
}

impl ProviderError {
    /// Builds an error for `provider`/`model`.
    pub fn new(provider: &str, model: &str, kind: ProviderErrorKind) -> Self {
        Self {
            provider: provider.to_string(),
            deployment: None,
            model: model.to_string(),
            kind,
            earlier: Box::default(),
        }
    }

    /// Whether the same request may succeed if retried later at this provider.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ProviderErrorKind::RateLimited { .. }
                | ProviderErrorKind::Transient { .. }
                | ProviderErrorKind::CircuitOpen { .. }
        )
    }

    /// Whether another provider should be tried (when nothing has been streamed yet).
    pub fn allows_fallback(&self) -> bool {
        self.is_retryable() || matches!(self.kind, ProviderErrorKind::MissingKey { .. })
    }

    /// Whether this failure counts against the provider's health (circuit breaker).
    pub fn counts_against_provider(&self) -> bool {
        matches!(
            self.kind,
            ProviderErrorKind::Transient { .. } | ProviderErrorKind::StreamInterrupted { .. }
        )
    }

    /// What kind of failure this is for the caller (see [`Error::class`]).
    pub fn class(&self) -> ErrorClass {
        match &self.kind {
            ProviderErrorKind::MissingKey { .. } => ErrorClass::UpstreamKeyMissing,
            ProviderErrorKind::Auth { .. } => ErrorClass::UpstreamAuth,
            ProviderErrorKind::RateLimited { .. } => ErrorClass::UpstreamRateLimited,
            ProviderErrorKind::Transient { .. } => ErrorClass::UpstreamFailed,
            ProviderErrorKind::InvalidRequest { status, .. } => ErrorClass::UpstreamRejected { status: *status },
            ProviderErrorKind::StreamInterrupted { .. } => ErrorClass::UpstreamInterrupted,
            ProviderErrorKind::CircuitOpen { .. } => ErrorClass::UpstreamUnavailable,
        }
    }

    /// The HTTP status the provider answered with, if any.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            ProviderErrorKind::Auth { status, .. } | ProviderErrorKind::InvalidRequest { status, .. } => Some(*status),
            ProviderErrorKind::RateLimited { .. } => Some(429),
            ProviderErrorKind::Transient { status, .. } => *status,
            _ => None,
        }
    }

    /// A suggested delay before retrying.
    pub fn retry_after(&self) -> Option<Duration> {
        match &self.kind {
            ProviderErrorKind::RateLimited { retry_after, .. } => *retry_after,
            ProviderErrorKind::CircuitOpen { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// A short, stable label for metrics and logs (`auth`, `rate_limited`, …).
    pub fn label(&self) -> &'static str {
        match self.kind {
            ProviderErrorKind::MissingKey { .. } => "missing_key",
            ProviderErrorKind::Auth { .. } => "auth",
            ProviderErrorKind::RateLimited { .. } => "rate_limited",
            ProviderErrorKind::Transient { .. } => "transient",
            ProviderErrorKind::InvalidRequest { .. } => "invalid_request",
            ProviderErrorKind::StreamInterrupted { .. } => "stream_interrupted",
            ProviderErrorKind::CircuitOpen { .. } => "circuit_open",
        }
    }
}

/// Shortens an upstream message and removes anything that looks like a credential, so that
/// provider error bodies can be shown to users and logged.
pub(crate) fn scrub(message: &str) -> String {
    const MAX: usize = 300;
    let mut out: String = message
        .split_whitespace()
        .map(|word| {
            let bare = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            let looks_secret = bare.len() >= 24
                && bare.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && bare.chars().any(|c| c.is_ascii_digit())
                && bare.chars().any(|c| c.is_ascii_alphabetic());
            if looks_secret || bare.starts_with("sk-") {
                "[redacted]"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    if out.len() > MAX {
        let cut = (0..=MAX).rev().find(|i| out.is_char_boundary(*i)).unwrap_or(0);
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_key_like_tokens_and_keeps_words() {
        let s = scrub("invalid api key sk-abc123 provided: 9f8e7d6c5b4a39281706f5e4d3c2b1a0.xyz end");
        assert!(!s.contains("sk-abc123"));
        assert!(!s.contains("9f8e7d6c5b4a"));
        assert!(s.starts_with("invalid api key [redacted] provided:"));
        assert!(s.ends_with("end"));
    }

    #[test]
    fn scrub_cuts_long_messages_on_a_char_boundary() {
        let s = scrub(&"é".repeat(400));
        assert!(s.ends_with('…'));
        assert!(s.len() <= 304);
    }

    #[test]
    fn exit_codes_and_statuses_follow_the_class() {
        let provider = |kind| Error::from(ProviderError::new("glm", "glm-4.6", kind));
        let rejected = |status| {
            provider(ProviderErrorKind::InvalidRequest {
                status,
                message: String::new(),
            })
        };
        assert_eq!(rejected(404).class(), ErrorClass::UpstreamRejected { status: 404 });
        assert_eq!(rejected(404).class().http_status(), 404);
        assert_eq!(rejected(422).class().http_status(), 400);
        assert_eq!(rejected(422).exit_code(), 7);
        let auth = provider(ProviderErrorKind::Auth {
            status: 401,
            key_source: "GLM_API_KEY (env)".into(),
            message: String::new(),
        });
        assert_eq!((auth.class(), auth.exit_code()), (ErrorClass::UpstreamAuth, 5));
        assert_eq!(
            provider(ProviderErrorKind::MissingKey { env: "X".into() }).exit_code(),
            4
        );
        assert_eq!(Error::NoProviderConfigured.exit_code(), 4);
        assert_eq!(Error::Cancelled.exit_code(), 130);
        assert_eq!(Error::Internal("x".into()).exit_code(), 1);
        assert_eq!(Error::ShuttingDown.class(), ErrorClass::Unavailable);
        assert_eq!(Error::ShuttingDown.exit_code(), 6);
    }

    #[test]
    fn retryability_follows_the_taxonomy() {
        let e = |kind| ProviderError::new("glm", "glm-4.6", kind);
        assert!(
            e(ProviderErrorKind::Transient {
                status: Some(503),
                message: String::new()
            })
            .is_retryable()
        );
        assert!(
            !e(ProviderErrorKind::Auth {
                status: 401,
                key_source: "GLM_API_KEY (env)".into(),
                message: String::new()
            })
            .allows_fallback()
        );
        assert!(e(ProviderErrorKind::MissingKey { env: "X".into() }).allows_fallback());
    }
}
