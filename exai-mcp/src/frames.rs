//! Reading one incoming JSON-RPC frame (a stdio line, a WebSocket text frame) as JSON-RPC 2.0
//! §5.1 asks: a frame that is not JSON is answered with `-32700` (parse error), well-formed JSON
//! that is not a request or notification with `-32600` (invalid request) — with the frame's id
//! when it has one of JSON-RPC's id types (a string or a number), else `null`. A response is
//! never answered, so two peers cannot start an error storm. Shared by every MCP transport that
//! reads frames itself; `frames/fuzz.rs` holds its property tests.

use rmcp::service::{RoleServer, RxJsonRpcMessage};
use serde_json::{Value, json};

/// JSON-RPC's "the input is not JSON".
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC's "this JSON is not a valid request".
pub const INVALID_REQUEST: i64 = -32600;

/// What an incoming frame comes to.
#[derive(Debug)]
#[non_exhaustive]
pub enum Incoming {
    /// A message for the server.
    Message(Box<RxJsonRpcMessage<RoleServer>>),
    /// Nothing to do (a blank line, a stray response).
    Ignore,
    /// An error response to send back.
    Answer(Value),
}

/// An error response with `id` (`null` when unknown).
pub fn error_response(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

/// Reads one frame.
pub fn read_frame(text: &[u8]) -> Incoming {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    if text.iter().all(u8::is_ascii_whitespace) {
        return Incoming::Ignore;
    }
    let value: Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        Err(e) => return Incoming::Answer(error_response(Value::Null, PARSE_ERROR, format!("Parse error: {e}"))),
    };
    // The answer names the frame's id only when it is one JSON-RPC allows (a string or a
    // number): an object, an array or a boolean is no id, and is not sent back.
    let id = value
        .get("id")
        .filter(|id| id.is_string() || id.is_number())
        .cloned()
        .unwrap_or(Value::Null);
    let is_response = value.get("method").is_none() && (value.get("result").is_some() || value.get("error").is_some());
    match serde_json::from_value::<RxJsonRpcMessage<RoleServer>>(value) {
        Ok(message) => Incoming::Message(Box::new(message)),
        Err(_) if is_response => Incoming::Ignore,
        Err(e) => Incoming::Answer(error_response(id, INVALID_REQUEST, format!("Invalid request: {e}"))),
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn code(frame: &[u8]) -> Option<i64> {
        match read_frame(frame) {
            Incoming::Answer(v) => v["error"]["code"].as_i64(),
            _ => None,
        }
    }

    #[test]
    fn frames_get_the_answers_json_rpc_asks_for() {
        assert_eq!(code(b"not json"), Some(PARSE_ERROR));
        assert_eq!(code(b"{\"jsonrpc\": \"2.0\", \"id\": "), Some(PARSE_ERROR));
        assert_eq!(code(b"42"), Some(INVALID_REQUEST));
        match read_frame(br#"{"jsonrpc": "2.0", "id": 5}"#) {
            Incoming::Answer(v) => assert_eq!(
                (v["id"].as_i64(), v["error"]["code"].as_i64()),
                (Some(5), Some(INVALID_REQUEST))
            ),
            other => panic!("{other:?}"),
        }
        // A response goes to rmcp (it may answer a request of ours), and a malformed one is
        // dropped: neither is ever answered.
        assert!(matches!(
            read_frame(br#"{"jsonrpc": "2.0", "id": 9, "result": {}}"#),
            Incoming::Message(_)
        ));
        assert!(matches!(
            read_frame(br#"{"jsonrpc": "2.0", "id": 9, "error": "not an error object"}"#),
            Incoming::Ignore
        ));
        assert!(matches!(read_frame(b"  \r\n"), Incoming::Ignore));
        assert!(matches!(
            read_frame(br#"{"jsonrpc": "2.0", "id": 1, "method": "ping"}"#),
            Incoming::Message(_)
        ));
    }
}
