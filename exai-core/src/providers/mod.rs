//! Providers: one worker actor per provider, one file per provider's quirks.
//!
//! - `openai_wire.rs`: the chat-completions wire format every provider speaks, and the folding of
//!   plain and streamed replies.
//! - `client.rs`: one HTTP round trip and the retry loop around it (taxonomy, backoff,
//!   `Retry-After`, governor rate limit).
//! - `circuit.rs`: the per-provider circuit breaker.
//! - `check.rs`: the on-demand key check (`GET /models`).
//! - `pool.rs`: a provider's deployments (endpoints and keys), their cool-downs, and the
//!   strategy that picks one per call.
//! - `worker.rs`: the actor that owns a provider's health and circuit breaker, and the handle
//!   whose calls run in the caller's task.
//! - `glm.rs`, `kimi.rs`, `minimax.rs`, `openai_compat.rs`: each provider's [`Quirks`], and
//!   nothing else.
//! - `think_tags.rs`: splitting `<think>` reasoning out of streamed text.
//! - `anthropic_rules.rs`: the Anthropic-wire quirks (betas, tool types, the tool cap) applied
//!   to a Messages body on its way to a provider, relayed or translated.

mod anthropic_rules;
mod check;
mod circuit;
mod client;
mod glm;
mod kimi;
mod minimax;
mod openai_compat;
pub(crate) mod openai_wire;
mod pool;
mod sse;
mod think_tags;
mod worker;

pub(crate) use think_tags::ThinkSplitter;

pub(crate) use anthropic_rules::{ToolCap, cap_chat_tools, forwarded_betas, messages_edits};
pub use check::ProviderCheck;
pub(crate) use client::{ProviderClient, WireHeaders};
pub use pool::DeploymentStatus;
#[cfg(any(test, feature = "testing"))]
pub(crate) use pool::idle_pool;
pub(crate) use pool::{Deployment, DeploymentState, InFlight, Pool, RECHECK, minute_left, order_models};
pub(crate) use sse::events as sse_events;
pub use worker::ProviderHealth;
pub(crate) use worker::{ProviderHandle, spawn_worker};

use crate::catalog::ModelInfo;
use crate::config::ProviderKind;
use crate::error::ProviderErrorKind;
use crate::request::{Message, ThinkingMode, Usage};
use crate::wire::Wire;
use crate::wire::json::{Edit, Fields};
use openai_wire::{ChatBody, InBand, RoundOutput, WireMessage};

/// Everything a provider needs for one call, already routed and with history attached.
#[derive(Debug, Clone)]
pub(crate) struct ProviderCall {
    pub model: ModelInfo,
    /// System prompt, history and this turn, in order.
    pub messages: Vec<Message>,
    pub stream: bool,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub thinking: Option<ThinkingMode>,
    pub web_search: bool,
}

/// A piece of a streamed reply, as it arrives.
#[derive(Debug)]
pub(crate) enum ProviderEvent {
    Text(String),
    Reasoning(String),
}

/// A finished call.
#[derive(Debug, Default, Clone)]
pub(crate) struct Completed {
    pub text: String,
    pub reasoning: String,
    pub usage: Usage,
    pub finish_reason: Option<String>,
}

/// A provider's deviations from the plain OpenAI wire format. Each provider file implements
/// this and holds every quirk of that provider; nothing else in the crate knows about them.
pub(crate) trait Quirks: Send + Sync + 'static {
    /// Adjusts the request body: thinking switch, web search, parameter ranges.
    fn shape(&self, call: &ProviderCall, body: &mut ChatBody);

    /// Classifies an error status differently from the generic taxonomy, when the provider's
    /// body says more (a 429 that is really "no balance").
    fn classify(&self, _status: u16, _body: &str) -> Option<ProviderErrorKind> {
        None
    }

    /// Finds an error reported inside a successful (HTTP 200) JSON body.
    fn error_in_body(&self, _reply: &InBand<'_>) -> Option<ProviderErrorKind> {
        None
    }

    /// Whether reply text may carry `<think>…</think>` reasoning inline.
    fn splits_think_tags(&self) -> bool {
        false
    }

    /// Messages for another round after this one (Kimi's `$web_search` echo), if needed.
    fn follow_up(&self, _out: &RoundOutput) -> Option<Vec<WireMessage>> {
        None
    }

    /// Whether a request in `wire` that this provider's endpoint speaks is relayed as it is.
    /// `false` when the provider's replies in that wire must be rewritten (MiniMax's `<think>`
    /// tags in chat): such a request is read into the gateway's own call instead.
    fn relays(&self, _wire: Wire) -> bool {
        true
    }

    /// The temperatures the provider accepts on its chat endpoint; a value outside is clamped,
    /// on every path (built, relayed or translated bodies).
    fn temperature_range(&self) -> Option<(f32, f32)> {
        None
    }

    /// Whether its chat endpoint reads earlier assistant turns' reasoning back from
    /// `reasoning_content` (a translated history carries it there; a plain OpenAI server gets
    /// none, as it may reject the field).
    fn takes_reasoning_back(&self) -> bool {
        false
    }

    /// The `anthropic-beta` values its Anthropic endpoint is known to accept: the default
    /// allow-list, which `providers.NAME.anthropic_betas` replaces. `None`: every beta.
    fn anthropic_betas(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// The most tools one request may carry, on every wire.
    fn max_tools(&self) -> Option<usize> {
        None
    }

    /// Whether its Anthropic endpoint refuses a tool whose `type` is missing or empty.
    fn tool_type_required(&self) -> bool {
        false
    }

    /// Whether its web search is a hosted tool answered within one round, so that a translated
    /// request (which cannot make the extra rounds Kimi's search needs) can use it.
    fn searches_in_one_round(&self) -> bool {
        false
    }
}

/// What a provider's quirks add to a chat body translated from another wire for `thinking` and
/// a web search: its extra fields (`thinking`, `reasoning_split`, `reasoning_effort`…) and
/// hosted tools.
pub(crate) fn translated_shape(
    quirks: &dyn Quirks,
    model: &ModelInfo,
    thinking: Option<ThinkingMode>,
    web_search: bool,
) -> (serde_json::Map<String, serde_json::Value>, Vec<serde_json::Value>) {
    let call = ProviderCall {
        model: model.clone(),
        messages: Vec::new(),
        stream: false,
        temperature: None,
        max_tokens: None,
        thinking,
        web_search: web_search && quirks.searches_in_one_round(),
    };
    let mut body = openai_wire::build_body(&call);
    quirks.shape(&call, &mut body);
    (body.extra, body.tools)
}

/// The edits a provider's quirks make to a chat body it is sent as bytes (relayed, or
/// translated from another wire): a temperature outside its range, clamped.
pub(crate) fn chat_body_edits(quirks: &dyn Quirks, fields: &Fields<'_>) -> Vec<Edit> {
    let mut edits = Vec::new();
    if let (Some((low, high)), Ok(Some(t))) = (quirks.temperature_range(), fields.parsed::<f64>("temperature")) {
        let clamped = t.clamp(f64::from(low), f64::from(high));
        if clamped != t {
            edits.push(Edit::set(fields, "temperature", &format!("{}", clamped as f32)));
        }
    }
    edits
}

/// The quirks of a provider kind.
pub(crate) fn quirks_for(kind: ProviderKind) -> Box<dyn Quirks> {
    match kind {
        ProviderKind::Glm => Box::new(glm::Glm),
        ProviderKind::Kimi => Box::new(kimi::Kimi),
        ProviderKind::Minimax => Box::new(minimax::Minimax),
        ProviderKind::OpenaiCompat => Box::new(openai_compat::OpenaiCompat),
    }
}

/// The body for `call` at a provider with `quirks`.
pub(crate) fn shaped_body(quirks: &dyn Quirks, call: &ProviderCall) -> ChatBody {
    let mut body = openai_wire::build_body(call);
    if let (Some((low, high)), Some(t)) = (quirks.temperature_range(), body.temperature) {
        body.temperature = Some(t.clamp(low, high));
    }
    quirks.shape(call, &mut body);
    body
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::catalog::{Capabilities, Price};

    /// A call to `model` with one user message.
    pub(crate) fn call_for(model: &str, thinking: bool) -> ProviderCall {
        ProviderCall {
            model: ModelInfo {
                id: model.into(),
                provider: "test".into(),
                context_window: 100_000,
                max_output: 8_000,
                capabilities: Capabilities {
                    thinking,
                    vision: false,
                    web_search: true,
                },
                price: Price::default(),
                aliases: vec![],
            },
            messages: vec![Message::user("hi")],
            stream: false,
            temperature: None,
            max_tokens: None,
            thinking: None,
            web_search: false,
        }
    }
}
