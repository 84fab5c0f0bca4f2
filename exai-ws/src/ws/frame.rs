//! The EXAI protocol's client frames (spec in `docs/exai-ws-protocol.md`), read once into a
//! typed [`Frame`] before anything acts on them — as mini-redis reads a `Command` from a
//! `Frame`. `exai_protocol.rs` only matches on the result.
//!
//! A frame is one JSON object whose `op` names what it asks; the fields of that op are read by
//! type, a null counting as absent, and fields the protocol does not name are ignored. A frame
//! that cannot be read is refused with a [`FrameError`] that says what is wrong — not JSON, not
//! an object, no `op`, an unknown op, or which field is missing or of the wrong type — and never
//! read as something else. A call's `arguments` are any JSON: the tool's schema (in the core)
//! judges them.
//!
//! `fuzz.rs` holds the property tests: any text, every frame, every wrong field.

use serde_json::{Map, Value, json};

#[cfg(test)]
mod fuzz;

/// The ops a client may send, as the protocol spells them.
pub(crate) const OPS: [&str; 6] = ["hello", "list_tools", "call_tool", "cancel", "ping", "health"];

/// One frame from the client. Any frame may carry a `request_id`, which its answer echoes.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(serde::Serialize))]
#[cfg_attr(test, serde(tag = "op", rename_all = "snake_case"))]
pub(crate) enum Frame {
    /// Opens the connection: a token (else the upgrade's), and a session to resume.
    Hello {
        request_id: Option<String>,
        token: Option<String>,
        session_id: Option<String>,
    },
    /// Asks for the tools and their schemas.
    ListTools { request_id: Option<String> },
    /// Calls a tool; the call's frames carry `request_id`, which a retry repeats.
    CallTool {
        request_id: String,
        name: String,
        arguments: Value,
    },
    /// Cancels the call in flight with this `request_id`.
    Cancel { request_id: String },
    /// Asks for a `pong`.
    Ping { request_id: Option<String> },
    /// Asks for the daemon's health.
    Health { request_id: Option<String> },
}

/// A frame that cannot be read, and what its answer needs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{problem}")]
pub(crate) struct FrameError {
    /// The frame's `request_id` when it has one that is a string: the answer carries it.
    pub request_id: Option<String>,
    /// What is wrong.
    pub problem: Problem,
}

/// What is wrong with a frame.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Problem {
    /// Not JSON (serde_json's reason).
    #[error("invalid JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("a frame is a JSON object, not {0}")]
    NotAnObject(&'static str),
    /// No `op`, or an empty one.
    #[error("every frame needs an `op`")]
    NoOp,
    /// An op the protocol does not have.
    #[error("unknown op '{0}'")]
    UnknownOp(String),
    /// `op` lacks a field it needs.
    #[error("{op} needs a `{field}`")]
    Missing { op: &'static str, field: &'static str },
    /// A field of the wrong type (`op` is `None` when the field is `op` itself).
    #[error("`{field}` must be {expected}, not {found}")]
    WrongType {
        op: Option<&'static str>,
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
}

impl Frame {
    /// Reads a text frame.
    pub(crate) fn decode(text: &str) -> Result<Frame, FrameError> {
        let value = serde_json::from_str(text).map_err(|e| FrameError {
            request_id: None,
            problem: Problem::NotJson(e.to_string()),
        })?;
        Self::from_value(value)
    }

    /// Reads a frame already parsed as JSON (the first one, read to tell the dialect).
    pub(crate) fn from_value(value: Value) -> Result<Frame, FrameError> {
        let Value::Object(fields) = value else {
            return Err(FrameError {
                request_id: None,
                problem: Problem::NotAnObject(kind(&value)),
            });
        };
        let request_id = fields.get("request_id").and_then(Value::as_str).map(str::to_string);
        read(fields).map_err(|problem| FrameError { request_id, problem })
    }
}

impl FrameError {
    /// The op the frame was read as, when its `op` is one the protocol has.
    pub(crate) fn op(&self) -> Option<&'static str> {
        match self.problem {
            Problem::Missing { op, .. } | Problem::WrongType { op: Some(op), .. } => Some(op),
            _ => None,
        }
    }

    /// The protocol's error code: a `call_tool` that does not fit is a `VALIDATION_ERROR`,
    /// anything else unreadable an `INVALID_REQUEST`.
    pub(crate) fn code(&self) -> &'static str {
        match self.op() {
            Some("call_tool") => "VALIDATION_ERROR",
            _ => "INVALID_REQUEST",
        }
    }

    /// The error's `details`: the known ops, for an unknown one.
    pub(crate) fn details(&self) -> Value {
        match self.problem {
            Problem::UnknownOp(_) => json!({"known_ops": OPS}),
            _ => Value::Null,
        }
    }
}

/// Reads an object's op and the fields that op takes.
fn read(mut fields: Map<String, Value>) -> Result<Frame, Problem> {
    let op = match fields.remove("op") {
        None | Some(Value::Null) => return Err(Problem::NoOp),
        Some(Value::String(op)) if op.is_empty() => return Err(Problem::NoOp),
        Some(Value::String(op)) => op,
        Some(other) => {
            return Err(Problem::WrongType {
                op: None,
                field: "op",
                expected: "a string",
                found: kind(&other),
            });
        }
    };
    let mut fields = Fields(fields);
    Ok(match op.as_str() {
        "hello" => Frame::Hello {
            request_id: fields.optional("hello", "request_id")?,
            token: fields.optional("hello", "token")?,
            session_id: fields.optional("hello", "session_id")?,
        },
        "list_tools" => Frame::ListTools {
            request_id: fields.optional("list_tools", "request_id")?,
        },
        "call_tool" => Frame::CallTool {
            request_id: fields.required("call_tool", "request_id")?,
            name: fields.required("call_tool", "name")?,
            arguments: fields.0.remove("arguments").unwrap_or(Value::Null),
        },
        "cancel" => Frame::Cancel {
            request_id: fields.required("cancel", "request_id")?,
        },
        "ping" => Frame::Ping {
            request_id: fields.optional("ping", "request_id")?,
        },
        "health" => Frame::Health {
            request_id: fields.optional("health", "request_id")?,
        },
        _ => return Err(Problem::UnknownOp(op)),
    })
}

/// A frame's fields, taken out one by one as its op reads them.
struct Fields(Map<String, Value>);

impl Fields {
    /// A string field of `op` that may be absent (or null).
    fn optional(&mut self, op: &'static str, field: &'static str) -> Result<Option<String>, Problem> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(Problem::WrongType {
                op: Some(op),
                field,
                expected: "a string",
                found: kind(&other),
            }),
        }
    }

    /// A string field `op` cannot do without.
    fn required(&mut self, op: &'static str, field: &'static str) -> Result<String, Problem> {
        self.optional(op, field)?.ok_or(Problem::Missing { op, field })
    }
}

/// A JSON value's type, as an error names it.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
