//! What a tool call gives back, typed: [`ToolOutput`] with an optional [`ToolFailure`] that a
//! front door `match`es on to pick its own wire error (an MCP `isError` result, an EXAI error
//! code), and [`ToolError`] for a call that names no tool at all.
//!
//! The failure is decided here, once: `failure_output` turns a tool's `Failure` (bad
//! arguments, a refusal, a gateway error) into the text the client's model reads, the
//! structured part clients parse, and the typed failure front doors map — a gateway error's
//! kind and advice following from its [`ErrorClass`].

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::Failure;
use crate::error::{Error, ErrorClass};

/// A tool as clients list it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ToolDef {
    /// Its name.
    pub name: &'static str,
    /// What it does, for the client's model.
    pub description: &'static str,
    /// JSON Schema of its arguments.
    #[serde(rename = "inputSchema")]
    pub input_schema: Value,
}

/// What a tool call returns.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToolOutput {
    /// Text for the client.
    pub text: String,
    /// The machine-readable part: status, model and provider that answered, usage,
    /// continuation — or, for a failure, its status, message and retry time.
    pub structured: Value,
    /// Why the call failed, when it did (MCP `isError`).
    pub failure: Option<ToolFailure>,
}

impl ToolOutput {
    /// A successful result.
    pub(crate) fn ok(text: String, structured: Value) -> Self {
        Self {
            text,
            structured,
            failure: None,
        }
    }

    /// Whether the call failed (MCP `isError`).
    pub fn is_error(&self) -> bool {
        self.failure.is_some()
    }
}

/// Why a tool call failed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToolFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// When a retry may succeed, if the failure says.
    pub retry_after: Option<Duration>,
    /// What the caller can do about it.
    pub action: String,
}

/// The kinds of tool failure front doors tell apart.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The arguments do not fit the tool's schema.
    InvalidArguments,
    /// The tool refused its input (a prompt over the size limit, an unreadable file); the
    /// structured part's `status` says which.
    Refused,
    /// The client is over `limits.requests_per_minute`.
    RateLimited,
    /// A concurrency limit stayed full for the queue timeout.
    OverCapacity,
    /// The call outlived its session's deadline.
    DeadlineExceeded,
    /// A provider failed.
    Provider {
        /// The provider.
        provider: String,
        /// The model asked of it.
        model: String,
    },
    /// The gateway cannot take the call: shutting down, the session closed, no provider.
    Unavailable,
    /// The request cannot work as sent: an unknown model, a conversation that expired.
    InvalidRequest,
    /// No valid key, or the key was revoked, rotated or expired.
    Unauthorized,
    /// The caller's key may not call this tool or use this model.
    Forbidden,
    /// The caller's key has spent its budget for the period.
    OverBudget,
    /// A bug or a dead actor.
    Internal,
}

/// A call that could not be made at all: it names no tool this server offers.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// No such tool, or disabled by the profile.
    #[error("unknown tool '{name}'; available: {available}")]
    UnknownTool {
        /// What was asked for.
        name: String,
        /// What this server offers.
        available: String,
    },
}

/// A tool's failure as the result every front door maps.
pub(crate) fn failure_output(tool: &str, failure: Failure) -> ToolOutput {
    match failure {
        Failure::Arguments(message) => ToolOutput {
            text: format!("invalid arguments for {tool}: {message}"),
            structured: json!({"status": "invalid_arguments", "error": message}),
            failure: Some(ToolFailure {
                kind: FailureKind::InvalidArguments,
                retry_after: None,
                action: "fix the arguments the message names and call again".into(),
            }),
        },
        Failure::Refused { status, message } => ToolOutput {
            structured: json!({"status": status, "error": message}),
            failure: Some(ToolFailure {
                kind: FailureKind::Refused,
                retry_after: None,
                action: message.clone(),
            }),
            text: message,
        },
        Failure::Gateway(e) => gateway_failure(&e),
    }
}

/// A gateway error as a result a person can act on: its kind and the advice follow from its
/// [`ErrorClass`], the provider's name and the budget's reset from the error's details.
fn gateway_failure(e: &Error) -> ToolOutput {
    let class = e.class();
    let retry_after = e.retry_after();
    let mut structured = json!({"status": "error", "error": e.to_string(), "retryable": e.is_retryable()});
    if let Some(after) = retry_after {
        structured["retry_after_secs"] = json!(after.as_secs().max(1));
    }
    let kind = match e {
        Error::Provider(p) => {
            structured["provider"] = json!(p.provider);
            structured["model"] = json!(p.model);
            structured["kind"] = json!(p.label());
            // Every model the call tried, the last one included.
            let mut attempts: Vec<Value> = p
                .earlier
                .iter()
                .map(|n| json!({"provider": n.provider, "model": n.model, "error": n.error}))
                .collect();
            attempts.push(json!({"provider": p.provider, "model": p.model, "error": p.kind.to_string()}));
            structured["attempts"] = json!(attempts);
            FailureKind::Provider {
                provider: p.provider.clone(),
                model: p.model.clone(),
            }
        }
        _ => kind_of(class),
    };
    let action = action_for(e, class, retry_after);
    structured["action"] = json!(action);
    ToolOutput {
        text: e.to_string(),
        structured,
        failure: Some(ToolFailure {
            kind,
            retry_after,
            action,
        }),
    }
}

/// The tool failure kind of a gateway error that is not a provider's.
fn kind_of(class: ErrorClass) -> FailureKind {
    match class {
        ErrorClass::RateLimited => FailureKind::RateLimited,
        ErrorClass::Unauthorized | ErrorClass::KeysUnavailable => FailureKind::Unauthorized,
        ErrorClass::Forbidden => FailureKind::Forbidden,
        ErrorClass::OverBudget => FailureKind::OverBudget,
        ErrorClass::OverCapacity => FailureKind::OverCapacity,
        ErrorClass::DeadlineExceeded => FailureKind::DeadlineExceeded,
        ErrorClass::Unavailable | ErrorClass::NotConfigured => FailureKind::Unavailable,
        ErrorClass::UnknownModel | ErrorClass::InvalidRequest | ErrorClass::NotFound | ErrorClass::TooLarge => {
            FailureKind::InvalidRequest
        }
        _ => FailureKind::Internal,
    }
}

/// What the caller can do about a failure of `class`.
fn action_for(e: &Error, class: ErrorClass, retry_after: Option<Duration>) -> String {
    let retry = match retry_after {
        Some(after) => format!("retry after {} s", after.as_secs().max(1)),
        None => "retry later".to_string(),
    };
    match (class, e) {
        (ErrorClass::UpstreamAuth | ErrorClass::UpstreamKeyMissing, Error::Provider(p)) => {
            format!("check the key of provider {}", p.provider)
        }
        (
            ErrorClass::UpstreamRejected { .. }
            | ErrorClass::UnknownModel
            | ErrorClass::InvalidRequest
            | ErrorClass::TooLarge,
            _,
        ) => "change the request as the message says".into(),
        (
            ErrorClass::UpstreamRateLimited
            | ErrorClass::UpstreamFailed
            | ErrorClass::UpstreamInterrupted
            | ErrorClass::UpstreamUnavailable,
            _,
        ) => format!("{retry}, or choose another model"),
        (ErrorClass::RateLimited | ErrorClass::OverCapacity, _) => retry,
        (ErrorClass::Unauthorized | ErrorClass::KeysUnavailable, _) => {
            "present a valid key (ask whoever runs this exai)".into()
        }
        (ErrorClass::Forbidden, _) => "use what the key allows, as the message says".into(),
        (
            ErrorClass::OverBudget,
            Error::BudgetExceeded {
                resets_at: Some(at), ..
            },
        ) => {
            format!("wait for the budget to reset at {at}, or ask for a larger budget")
        }
        (ErrorClass::OverBudget, _) => "ask for a larger budget".into(),
        (ErrorClass::DeadlineExceeded, _) => "ask for less in one call, or raise limits.call_timeout_secs".into(),
        (ErrorClass::Unavailable, _) => "retry against a running exai".into(),
        (ErrorClass::NotConfigured, _) => "configure a provider as the message says".into(),
        _ => "report this with the server's log".into(),
    }
}
