//! Wires: the API formats a front door speaks to its clients and a provider speaks to exai —
//! OpenAI chat completions ([`Wire::Chat`]), Anthropic Messages ([`Wire::Messages`]) and OpenAI
//! Responses ([`Wire::Responses`]).
//!
//! A front door hands the gateway a [`WireRequest`]: the client's body as it came, checked for
//! the few fields the gateway needs (the model, whether it streams) without building a tree.
//! When the chosen provider speaks the same wire, the engine relays it: the body goes upstream
//! with only the model (and what exai must add) spliced in, and the reply comes back as the
//! upstream's bytes ([`WireReply`]), cut only at event boundaries. Otherwise it is translated.
//!
//! - `json.rs`: a JSON object's top-level fields, and edits spliced into its bytes.
//! - `sse.rs`: a body cut at event boundaries (any line end the SSE spec allows, the held tail
//!   capped); the events of a block.
//! - `scan.rs`: usage, stop reason and completion read from relayed bytes.
//! - `in_band.rs`: errors a provider reports inside a 200 reply, and the HTTP status each
//!   stands for; what the gateway does with them.
//! - `request.rs`: [`WireRequest`], and the body each provider receives.
//! - `reply.rs`: [`WireReply`] and [`WireStream`].
//! - `replay.rs`: a reply kept in no wire (the cache's), read from any wire and written in any.
//! - `openai_chat.rs`: OpenAI chat bodies ⇄ the gateway's own call, for providers whose chat
//!   replies must be rewritten (MiniMax's `<think>` tags).
//! - `anthropic.rs`: Anthropic Messages ⇄ OpenAI chat, for providers with no Messages endpoint.
//! - `responses.rs`, `responses_stream.rs`: OpenAI Responses ⇄ OpenAI chat, for providers with
//!   no Responses endpoint (all the built-in ones).

mod anthropic;
#[cfg(test)]
mod fuzz;
pub(crate) mod in_band;
pub(crate) mod json;
pub(crate) mod openai_chat;
mod replay;
mod reply;
mod request;
pub(crate) mod responses;
mod responses_stream;
pub(crate) mod scan;
pub(crate) mod sse;

pub(crate) use anthropic::{StreamTranslator, from_openai, to_openai};
pub(crate) use replay::{ResponsesOut, StoredReply};
pub(crate) use reply::{AbortOnDrop, Ended, Finish, Piece, Source, Tap};
pub use reply::{CacheStatus, WireReply, WireStream};
pub(crate) use request::DEFAULT_VERSION;
pub use request::{CacheDirective, TokenCount, WireRequest};
pub(crate) use responses_stream::{Kept, ResponsesTranslator};

use serde::{Deserialize, Serialize};

/// An API format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Wire {
    /// OpenAI chat completions (`POST …/chat/completions`).
    Chat,
    /// Anthropic Messages (`POST …/v1/messages`).
    Messages,
    /// OpenAI Responses (`POST …/responses`).
    Responses,
}

impl Wire {
    /// Its name in configuration (`chat`, `messages`, `responses`).
    pub fn name(self) -> &'static str {
        match self {
            Wire::Chat => "chat",
            Wire::Messages => "messages",
            Wire::Responses => "responses",
        }
    }
}

impl std::str::FromStr for Wire {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "chat" | "openai" => Ok(Wire::Chat),
            "messages" | "anthropic" => Ok(Wire::Messages),
            "responses" => Ok(Wire::Responses),
            other => Err(format!("unknown wire {other:?}: use chat, messages or responses")),
        }
    }
}

impl std::fmt::Display for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
