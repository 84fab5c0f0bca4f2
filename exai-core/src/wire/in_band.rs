//! Errors a provider reports inside a successful (HTTP 200) reply, found in each wire's bytes.
//!
//! Some OpenAI-compatible providers answer 200 and put the error in the body:
//! - a whole reply: `{"error": {…}}` (any wire; Anthropic's `{"type":"error","error":{…}}`, a
//!   Responses object with `"status":"failed"` and its `error`);
//! - OpenAI chat stream: a `data: {"error": {…}}` event (or one named `error`);
//! - Anthropic Messages stream: an `event: error` (`{"type":"error","error":{"type":
//!   "overloaded_error",…}}`);
//! - Responses stream: an `error` event, or `response.failed` with the response's `error`.
//!
//! Each is read as the HTTP error it stands for ([`InBandError::status`]): a numeric `code` or
//! `status` as it is; else the error's `code`, then its `type`, by name — overloaded → 529,
//! rate limits and quota → 429, authentication → 401, permission → 403, not found → 404, too
//! large → 413, invalid request → 400 — and anything else 500 (the provider failed). The
//! provider's client classifies that status as it would the HTTP one
//! (`ProviderClient::in_band`), so the attempt loop retries, moves on or gives up alike.
//!
//! What the gateway does with one depends on whether the client has had anything yet:
//! - **before any byte reached the client** (a whole reply, or a stream's first events, which
//!   the engine reads before the attempt counts as answered): the attempt failed, exactly as
//!   with the HTTP error — retried on the next deployment or model when that status would be,
//!   counted as an error in the ledger and the metrics;
//! - **mid-stream**: a relayed stream hands the error event on as it came (the client's SDK
//!   reads its own wire's error event) and ends there, recorded as broken — never as a
//!   success; a translated stream ends with the failure in the client's wire.
//!
//! Looking costs little on the way: a chat block is searched for `error` (SIMD) before any
//! event of it is read, and only an event whose data holds `"error"` is parsed; Messages and
//! Responses events are told by their names.

use std::sync::LazyLock;

use memchr::memmem;
use serde::Deserialize;
use serde_json::Value;

use super::Wire;
use super::sse;

/// `"error"`, the key (or a value) a chat event or a whole reply must hold to carry one…
static ERROR: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"\"error\""));
/// …and `error`, what a chat block must hold (an event named `error` has no quotes).
static ERROR_WORD: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"error"));

/// An error a provider put inside a 200 reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the provider answered 200 with an error in its reply (read as {status}): {message}")]
pub(crate) struct InBandError {
    /// The HTTP status it stands for.
    pub status: u16,
    /// The provider's message.
    pub message: String,
    /// The error as JSON (`{"error": …}` or the error event's data), for the provider's
    /// classification.
    pub body: String,
}

/// The in-band error of a whole reply (any wire: a top-level `error` that is not `null`).
pub(crate) fn in_whole(body: &[u8]) -> Option<InBandError> {
    ERROR.find(body)?;
    let reply = serde_json::from_slice::<WithError>(body).ok()?;
    from_error(reply.error?, body)
}

/// The first in-band error among the events of `block` (whole events) of a stream in `wire`.
pub(crate) fn in_block(wire: Wire, block: &[u8]) -> Option<InBandError> {
    if wire == Wire::Chat {
        ERROR_WORD.find(block)?;
    }
    sse::events(block).find_map(|event| in_event(wire, event.name, &event.data))
}

/// The in-band error one event (`name`, `data`) of a stream in `wire` carries, if any.
pub(crate) fn in_event(wire: Wire, name: &[u8], data: &[u8]) -> Option<InBandError> {
    match (wire, name) {
        (Wire::Responses, b"response.failed") => {
            let failed = serde_json::from_slice::<Failed>(data).ok()?;
            let error = failed.response.error?;
            let body = serde_json::json!({ "error": error }).to_string();
            from_error(error, body.as_bytes())
        }
        // Anthropic's and a chat stream's `{"error": …}`; Responses' error is the data itself.
        (_, b"error") => {
            let value = serde_json::from_slice::<Value>(data).ok()?;
            let error = match value.get("error") {
                Some(error) => error.clone(),
                None => value,
            };
            from_error(error, data)
        }
        (Wire::Chat, _) => {
            ERROR.find(data)?;
            from_error(serde_json::from_slice::<WithError>(data).ok()?.error?, data)
        }
        _ => None,
    }
}

/// The error `error` (an object or a message), from a reply whose JSON is `body`.
fn from_error(error: Value, body: &[u8]) -> Option<InBandError> {
    let message = match &error {
        Value::Object(fields) => fields
            .get("message")
            .or_else(|| fields.get("msg"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        Value::String(message) => message.clone(),
        _ => return None,
    };
    Some(InBandError {
        status: status_of(&error),
        message: crate::error::scrub(&message),
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

/// The HTTP status an error object stands for.
fn status_of(error: &Value) -> u16 {
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    let numeric = ["code", "status", "status_code"]
        .iter()
        .filter_map(|key| error.get(key).and_then(number))
        .find(|status| (400..=599).contains(status));
    let named = || {
        ["code", "type"]
            .iter()
            .filter_map(|key| error.get(key).and_then(Value::as_str))
            .find_map(status_of_name)
    };
    numeric.or_else(named).unwrap_or(500)
}

/// The HTTP status an error's name (its `code` or `type`) stands for, when it is a known one.
fn status_of_name(name: &str) -> Option<u16> {
    Some(match name.to_ascii_lowercase().as_str() {
        "overloaded_error" | "overloaded" => 529,
        "rate_limit_error" | "rate_limit_exceeded" | "rate_limited" | "too_many_requests" | "insufficient_quota" => 429,
        "authentication_error" | "invalid_api_key" | "unauthorized" => 401,
        "permission_error" | "permission_denied" | "forbidden" => 403,
        "not_found_error" | "not_found" | "model_not_found" => 404,
        "request_too_large" => 413,
        "invalid_request_error" | "invalid_request" | "bad_request" | "invalid_prompt" | "context_length_exceeded" => {
            400
        }
        "api_error" | "server_error" | "internal_error" | "internal_server_error" | "service_unavailable" => 500,
        _ => return None,
    })
}

/// A reply or a chunk, as far as its `error` goes (`null` is none).
#[derive(Deserialize)]
struct WithError {
    #[serde(default)]
    error: Option<Value>,
}

/// A Responses `response.failed` event, as far as its error goes.
#[derive(Deserialize)]
struct Failed {
    response: WithError,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(wire: Wire, block: &str) -> Option<u16> {
        in_block(wire, block.as_bytes()).map(|e| e.status)
    }

    #[test]
    fn each_wire_s_error_events_are_found_with_the_status_they_stand_for() {
        let chat = "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n\
                    data: {\"error\":{\"message\":\"Too many\",\"type\":\"tokens\",\"code\":\"rate_limit_exceeded\"}}\n\n";
        let found = in_block(Wire::Chat, chat.as_bytes());
        assert_eq!(
            found.as_ref().map(|e| (e.status, e.message.as_str())),
            Some((429, "Too many"))
        );
        assert_eq!(
            status(Wire::Chat, "data: {\"error\":{\"code\":503,\"message\":\"x\"}}\n\n"),
            Some(503)
        );
        assert_eq!(status(Wire::Chat, "data: {\"error\":\"upstream died\"}\n\n"), Some(500));
        assert_eq!(
            status(
                Wire::Chat,
                "event: error\ndata: {\"message\":\"x\",\"type\":\"server_error\"}\n\n"
            ),
            Some(500)
        );
        let messages = "event: message_start\ndata: {\"type\":\"message_start\"}\n\n\
                        event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        assert_eq!(status(Wire::Messages, messages), Some(529));
        let auth = "event: error\r\ndata: {\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"bad key\"}}\r\n\r\n";
        assert_eq!(status(Wire::Messages, auth), Some(401));
        let invalid = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"no\"}}\n\n";
        assert_eq!(status(Wire::Messages, invalid), Some(400));
        let failed = "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}}\n\n";
        let found = in_block(Wire::Responses, failed.as_bytes());
        assert_eq!(
            found.as_ref().map(|e| (e.status, e.message.as_str())),
            Some((500, "boom"))
        );
        let error =
            "event: error\ndata: {\"type\":\"error\",\"code\":\"rate_limit_exceeded\",\"message\":\"slow\"}\n\n";
        assert_eq!(status(Wire::Responses, error), Some(429));
    }

    #[test]
    fn replies_that_only_mention_errors_are_no_error() {
        for (wire, block) in [
            (
                Wire::Chat,
                "data: {\"choices\":[{\"delta\":{\"content\":\"an \\\"error\\\" here\"}}]}\n\n",
            ),
            (
                Wire::Chat,
                "data: {\"choices\":[{\"delta\":{\"content\":\"error\"}}],\"error\":null}\n\n",
            ),
            (
                Wire::Messages,
                "event: content_block_delta\ndata: {\"error\":{\"type\":\"overloaded_error\"}}\n\n",
            ),
            (
                Wire::Responses,
                "event: response.completed\ndata: {\"response\":{\"status\":\"completed\",\"error\":null}}\n\n",
            ),
            (
                Wire::Responses,
                "event: response.failed\ndata: {\"response\":{\"status\":\"failed\",\"error\":null}}\n\n",
            ),
        ] {
            assert_eq!(in_block(wire, block.as_bytes()), None, "{wire}: {block}");
        }
        let completed = br#"{"id":"resp_1","object":"response","status":"completed","error":null,"output":[]}"#;
        assert_eq!(in_whole(completed), None);
        let chat = br#"{"choices":[{"message":{"content":"error"}}]}"#;
        assert_eq!(in_whole(chat), None);
    }

    #[test]
    fn whole_replies_with_an_error_are_found() {
        let chat = br#"{"error":{"message":"The server is overloaded","type":"server_error","code":null}}"#;
        assert_eq!(in_whole(chat).map(|e| e.status), Some(500));
        let messages = br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
        assert_eq!(in_whole(messages).map(|e| e.status), Some(429));
        let responses = br#"{"id":"resp_1","status":"failed","error":{"code":"invalid_prompt","message":"no"}}"#;
        assert_eq!(in_whole(responses).map(|e| e.status), Some(400));
        let quota = br#"{"error":{"message":"quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert_eq!(in_whole(quota).map(|e| e.status), Some(429));
        let keyed = br#"{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        assert_eq!(
            in_whole(keyed).map(|e| e.status),
            Some(401),
            "the code says more than the type"
        );
    }
}
