//! A failure as a front door reports it, and the one trait the shared layers need to report it
//! in any door's protocol.
//!
//! [`Failure`] is what every door's error is made of: the core's [`ErrorClass`] (what went
//! wrong, decided once in `exai-core`), the message the client reads, and when a retry may
//! succeed. Each door has its own error type — `openai::OpenAiError`,
//! `anthropic::AnthropicError`, `mcp::McpError` — that renders a `Failure` in its protocol
//! through axum's `IntoResponse`. The layers every door shares (authentication in `auth.rs`,
//! the body limit in `body_limit.rs`) are generic over [`DoorError`]; the router instantiates
//! them per route group (`lib.rs`), so the protocol of a refusal is chosen by the route it is
//! on, never by the URL.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use exai_core::{Error, ErrorClass};
use serde_json::Value;

/// What a front door tells its client about a failure.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What kind of failure: each door picks its status and error type from it.
    pub class: ErrorClass,
    /// What happened and what to do, for the client.
    pub message: String,
    /// When a retry may succeed, sent as `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A request body over `daemon.max_body_bytes` (`max`).
    pub fn too_large(max: usize) -> Self {
        Self {
            class: ErrorClass::TooLarge,
            message: format!("the request body is over this server's limit of {max} bytes (daemon.max_body_bytes)"),
            retry_after: None,
        }
    }

    /// A failure of the daemon itself.
    #[cfg(test)]
    pub fn internal(message: &str) -> Self {
        Self {
            class: ErrorClass::Internal,
            message: message.to_string(),
            retry_after: None,
        }
    }

    /// `body` as JSON with `status`; `Retry-After` when the failure says when, and
    /// `x-should-retry: false` when a client's own retry would only stack on exai's
    /// ([`ErrorClass::client_should_retry`]).
    pub fn respond(&self, status: u16, body: Value) -> Response {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(after) = self
            .retry_after
            .and_then(|a| HeaderValue::from_str(&a.as_secs().max(1).to_string()).ok())
        {
            response.headers_mut().insert(header::RETRY_AFTER, after);
        }
        if !self.class.client_should_retry() {
            response
                .headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        response
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self {
            class: e.class(),
            retry_after: e.retry_after(),
            message: e.to_string(),
        }
    }
}

/// A front door's error type: made from a [`Failure`], answered in the door's protocol. The
/// shared layers are generic over it (`auth::authenticate::<E>`, `body_limit::limit_body::<E>`).
pub(crate) trait DoorError: From<Failure> + IntoResponse {}

impl<E: From<Failure> + IntoResponse> DoorError for E {}
