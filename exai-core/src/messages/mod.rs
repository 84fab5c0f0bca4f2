//! Anthropic Messages requests (`/v1/messages`): the front door's parsed request, and what the
//! gateway answers — passed through to a provider's own Anthropic-compatible endpoint (Z.ai,
//! Moonshot and MiniMax each serve one), or translated to its OpenAI chat endpoint when it has
//! none, with the gateway's admission, key limits, routing, fallback before anything streamed,
//! provider limits and usage ledger around it.
//!
//! - `passthrough.rs`: one request: the model resolved (a `claude-*` id through
//!   `anthropic.model_map`, else `default_model`), the plan, then per provider the body forwarded
//!   with the model rewritten (or translated), the reply or stream relayed event by event while
//!   its usage is read.
//! - `translate.rs`: Anthropic ⇄ OpenAI, request, reply and stream.
//!
//! The wire shapes (errors, SSE framing, `ping`) are the front door's (`exai-ws`'s
//! `anthropic.rs`); this module never builds an Anthropic error body.

mod passthrough;
mod translate;

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::error::Error;

pub(crate) use passthrough::{count_tokens, run};

/// The `anthropic-version` sent when the client sent none.
pub(crate) const DEFAULT_VERSION: &str = "2023-06-01";

/// A Messages request as a client sent it. Unknown fields are kept and forwarded.
#[derive(Debug, Clone)]
pub struct MessagesRequest {
    pub(crate) body: Map<String, Value>,
    pub(crate) model: String,
    pub(crate) stream: bool,
    pub(crate) version: Option<String>,
    pub(crate) beta: Option<String>,
    pub(crate) trace: Option<crate::trace::TraceContext>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidRequest(message.into())
}

impl MessagesRequest {
    /// A `POST /v1/messages` body: `model`, `max_tokens` and a non-empty `messages` are
    /// required (the error names the field).
    pub fn from_json(body: Value) -> Result<Self, Error> {
        let request = Self::parse(body)?;
        match request.body.get("max_tokens") {
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => {}
            Some(_) => return Err(invalid("max_tokens: must be a positive integer")),
            None => return Err(invalid("max_tokens: field required")),
        }
        Ok(request)
    }

    /// A `POST /v1/messages/count_tokens` body (`max_tokens` not needed).
    pub fn for_count(body: Value) -> Result<Self, Error> {
        Self::parse(body)
    }

    fn parse(body: Value) -> Result<Self, Error> {
        let Value::Object(body) = body else {
            return Err(invalid("the body must be a JSON object"));
        };
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.trim().is_empty() => m.trim().to_string(),
            Some(_) => return Err(invalid("model: must be a non-empty string")),
            None => return Err(invalid("model: field required")),
        };
        match body.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => {}
            Some(Value::Array(_)) => return Err(invalid("messages: at least one message is required")),
            Some(_) => return Err(invalid("messages: must be an array")),
            None => return Err(invalid("messages: field required")),
        }
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        Ok(Self {
            body,
            model,
            stream,
            version: None,
            beta: None,
            trace: None,
        })
    }

    /// Forwards the client's `anthropic-version`.
    pub fn anthropic_version(mut self, version: Option<String>) -> Self {
        self.version = version;
        self
    }

    /// Continues the caller's trace (its W3C `traceparent`): the call's span is its child.
    pub fn trace_context(mut self, trace: Option<crate::trace::TraceContext>) -> Self {
        self.trace = trace;
        self
    }
    /// The `anthropic-beta` header, passed through.
    pub fn anthropic_beta(mut self, beta: Option<String>) -> Self {
        self.beta = beta;
        self
    }

    /// The model as asked.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream
    }
}

/// The answer to a Messages request.
#[derive(Debug)]
pub enum MessagesReply {
    /// A whole message, as the provider answered it.
    Message {
        /// The provider's JSON.
        body: Value,
        /// Which provider answered.
        provider: String,
        /// Its model.
        model: String,
    },
    /// A stream of events, relayed as they come.
    Stream(MessagesStream),
}

/// One server-sent event of a Messages stream: its name and its JSON data, as the provider sent
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagesEvent {
    /// `message_start`, `content_block_delta`, …
    pub event: String,
    /// The JSON payload.
    pub data: String,
}

/// A relayed stream: events, then the end — or an error after some events (the front door sends
/// it as an `error` event). Dropping it stops the upstream request.
#[derive(Debug)]
pub struct MessagesStream {
    pub(crate) events: mpsc::Receiver<Result<MessagesEvent, Error>>,
    /// Which provider answers.
    pub provider: String,
    /// Its model.
    pub model: String,
}

impl futures::Stream for MessagesStream {
    type Item = Result<MessagesEvent, Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

/// How many tokens a request's input is, and who counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCount {
    /// The count.
    pub input_tokens: u64,
    /// `true` when the provider counted; `false` for the gateway's estimate.
    pub from_provider: bool,
}
