//! [`AnthropicError`]: a failure in Anthropic's shape, `{"type":"error","error":{type,message}}`,
//! with Anthropic's status/type pairs for its [`ErrorClass`] (529 `overloaded_error`, 402
//! `billing_error`, …) — as an HTTP answer, or as the `event: error` of a stream that already
//! began.

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use exai_core::{Error, ErrorClass};
use serde_json::{Value, json};

use crate::failure::Failure;

/// Anthropic's status for a server that is overloaded.
const OVERLOADED: u16 = 529;

/// The error of the Anthropic Messages door (`/v1/messages`, `/v1/messages/count_tokens`).
#[derive(Debug)]
pub(crate) struct AnthropicError(Failure);

impl From<Failure> for AnthropicError {
    fn from(failure: Failure) -> Self {
        Self(failure)
    }
}

impl From<Error> for AnthropicError {
    fn from(e: Error) -> Self {
        Self(e.into())
    }
}

/// Anthropic's status and error type for a failure of `class`.
fn status_and_type(class: ErrorClass) -> (u16, &'static str) {
    match class {
        ErrorClass::InvalidRequest => (400, "invalid_request_error"),
        ErrorClass::UnknownModel | ErrorClass::NotFound => (404, "not_found_error"),
        ErrorClass::TooLarge => (413, "request_too_large"),
        ErrorClass::Unauthorized => (401, "authentication_error"),
        ErrorClass::Forbidden => (403, "permission_error"),
        ErrorClass::OverBudget => (402, "billing_error"),
        ErrorClass::RateLimited | ErrorClass::UpstreamRateLimited => (429, "rate_limit_error"),
        ErrorClass::OverCapacity
        | ErrorClass::Unavailable
        | ErrorClass::UpstreamFailed
        | ErrorClass::UpstreamUnavailable => (OVERLOADED, "overloaded_error"),
        ErrorClass::UpstreamRejected { .. } => match class.http_status() {
            404 => (404, "not_found_error"),
            413 => (413, "request_too_large"),
            status => (status, "invalid_request_error"),
        },
        // 503 as on every HTTP API, with x-should-retry: false: retrying cannot configure one.
        ErrorClass::NotConfigured | ErrorClass::UpstreamKeyMissing => (503, "api_error"),
        ErrorClass::DeadlineExceeded | ErrorClass::KeysUnavailable => (class.http_status(), "api_error"),
        _ => (500, "api_error"),
    }
}

impl AnthropicError {
    /// The error object both renderings carry.
    fn body(&self) -> Value {
        let (_, kind) = status_and_type(self.0.class);
        json!({"type": "error", "error": {"type": kind, "message": self.0.message}})
    }

    /// A failure after the stream began: an `error` event.
    pub fn stream_event(&self) -> Bytes {
        Bytes::from(format!("event: error\ndata: {}\n\n", self.body()))
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let (status, _) = status_and_type(self.0.class);
        self.0.respond(status, self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_providers_404_and_413_keep_their_status_and_overload_is_529() {
        assert_eq!(
            status_and_type(ErrorClass::UpstreamRejected { status: 404 }),
            (404, "not_found_error")
        );
        assert_eq!(
            status_and_type(ErrorClass::UpstreamRejected { status: 413 }),
            (413, "request_too_large")
        );
        assert_eq!(
            status_and_type(ErrorClass::UpstreamRejected { status: 422 }),
            (400, "invalid_request_error")
        );
        assert_eq!(status_and_type(ErrorClass::OverCapacity), (529, "overloaded_error"));
        let event = AnthropicError::from(Failure::internal("gone")).stream_event();
        let text = String::from_utf8_lossy(&event);
        assert!(
            text.starts_with("event: error\ndata: {") && text.contains("api_error"),
            "{text}"
        );
    }
}
