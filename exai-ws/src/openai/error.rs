//! [`OpenAiError`]: a failure in OpenAI's shape, `{"error": {message, type, code, param}}`, with
//! the status OpenAI's clients expect for its [`ErrorClass`] — as an HTTP answer, or as the
//! `error` chunk of a stream that already began.

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use exai_core::{Error, ErrorClass};
use serde_json::json;

use crate::failure::Failure;

/// The error of the OpenAI-compatible door (`/v1/chat/completions`, `/v1/models`).
#[derive(Debug)]
pub(crate) struct OpenAiError(Failure);

impl From<Failure> for OpenAiError {
    fn from(failure: Failure) -> Self {
        Self(failure)
    }
}

impl From<Error> for OpenAiError {
    fn from(e: Error) -> Self {
        Self(e.into())
    }
}

impl OpenAiError {
    /// A failure after the stream began: an `error` chunk, then `[DONE]`.
    pub fn stream_event(&self) -> Bytes {
        let body = json!({"error": {"message": self.0.message, "type": "server_error", "code": "stream_failed"}});
        Bytes::from(format!("data: {body}\n\ndata: [DONE]\n\n"))
    }
}

/// OpenAI's `type` and `code` for a failure of `class`.
fn type_and_code(class: ErrorClass) -> (&'static str, &'static str) {
    match class {
        ErrorClass::InvalidRequest => ("invalid_request_error", "invalid_request"),
        ErrorClass::UnknownModel => ("invalid_request_error", "model_not_found"),
        ErrorClass::NotFound => ("invalid_request_error", "not_found"),
        ErrorClass::TooLarge => ("invalid_request_error", "body_too_large"),
        ErrorClass::Unauthorized => ("invalid_request_error", "invalid_api_key"),
        ErrorClass::Forbidden => ("permission_error", "forbidden"),
        // OpenAI's own answer when an account's quota is spent.
        ErrorClass::OverBudget => ("insufficient_quota", "insufficient_quota"),
        ErrorClass::RateLimited => ("rate_limit_error", "rate_limited"),
        ErrorClass::OverCapacity => ("rate_limit_error", "over_capacity"),
        ErrorClass::DeadlineExceeded => ("server_error", "timeout"),
        ErrorClass::NotConfigured => ("server_error", "provider_not_configured"),
        ErrorClass::KeysUnavailable => ("server_error", "keys_unavailable"),
        ErrorClass::Unavailable => ("server_error", "shutting_down"),
        ErrorClass::UpstreamRateLimited => ("rate_limit_error", "upstream_rate_limited"),
        ErrorClass::UpstreamRejected { .. } => ("invalid_request_error", "upstream_rejected_request"),
        ErrorClass::UpstreamAuth => ("server_error", "upstream_auth_failed"),
        ErrorClass::UpstreamKeyMissing | ErrorClass::UpstreamUnavailable => ("server_error", "upstream_unavailable"),
        ErrorClass::UpstreamFailed | ErrorClass::UpstreamInterrupted => ("server_error", "upstream_error"),
        _ => ("server_error", "internal_error"),
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let class = self.0.class;
        let status = match class {
            // A spent quota is a 429 at OpenAI, and a provider's refusal is the request's fault.
            ErrorClass::OverBudget => 429,
            ErrorClass::UpstreamRejected { .. } => 400,
            _ => class.http_status(),
        };
        let (kind, code) = type_and_code(class);
        let body = json!({"error": {"message": self.0.message, "type": kind, "code": code, "param": null}});
        self.0.respond(status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_budget_is_openais_insufficient_quota_and_a_stream_failure_ends_with_done() {
        let over_budget = Failure {
            class: ErrorClass::OverBudget,
            message: "spent".into(),
            retry_after: None,
        };
        let response = OpenAiError::from(over_budget).into_response();
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(type_and_code(ErrorClass::OverBudget).1, "insufficient_quota");
        let event = OpenAiError::from(Failure::internal("gone")).stream_event();
        let text = String::from_utf8_lossy(&event);
        assert!(
            text.starts_with("data: {\"error\":") && text.ends_with("data: [DONE]\n\n"),
            "{text}"
        );
    }
}
