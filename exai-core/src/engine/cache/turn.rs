//! The cache of the gateway's own turns ([`ChatRequest`](crate::ChatRequest): the MCP tools,
//! the EXAI protocol, `exai chat`, embedders), in the same two levels as wire calls' replies.
//!
//! A turn's key is taken after routing and fitting: the first planned model, the scope, the
//! messages that model would be sent (the system prompt, the history that fits its window, this
//! turn with its embedded files) and the turn's parameters — so a continued conversation is
//! its own call, and an edited file is a new one. The request's [`CacheDirective`] (the MCP
//! tools' `cache` argument) reads and keeps as on HTTP. A hit is told to a streaming caller as
//! one piece; the turn is still stored in the conversation, so it can be continued.
//!
//! In-flight coalescing and the cross-daemon lock are for wire calls: a turn that misses calls
//! its provider.

use super::key::{TurnCall, turn_key_of};
use super::{CacheKey, ResponseCache};
use crate::catalog::ModelInfo;
use crate::keys::StoredKey;
use crate::providers::Completed;
use crate::request::{Message, ThinkingMode};
use crate::wire::{CacheDirective, StoredReply};

/// A turn, as far as the cache needs it.
pub(crate) struct TurnAsked<'a> {
    pub directive: CacheDirective,
    /// The caller's key, which may turn the cache on for its calls.
    pub key: Option<&'a StoredKey>,
    /// The model the turn was routed to first, and the messages it would be sent.
    pub model: &'a ModelInfo,
    pub messages: &'a [Message],
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub thinking: Option<ThinkingMode>,
    pub web_search: bool,
    /// The tool (or `api`), for the metrics.
    pub front_door: &'a str,
}

/// What the cache found for a turn.
pub(crate) enum TurnLooked {
    /// A kept reply: no provider is called.
    Hit(Completed),
    /// None: the turn goes to a provider, and its reply is kept through the ticket (`None`
    /// when the cache is off or left out).
    Miss(Option<TurnTicket>),
}

/// Keeps a missed turn's reply.
pub(crate) struct TurnTicket {
    key: CacheKey,
    /// The reply may be kept (not with `no-store`).
    keeps: bool,
}

impl ResponseCache {
    /// Looks a turn up: a hit is counted and handed back whole; a miss (counted) gets the
    /// ticket that keeps its reply.
    pub(crate) async fn lookup_turn(&self, asked: &TurnAsked<'_>) -> TurnLooked {
        let directive = asked.directive;
        if !self.is_on_for(asked.key) || directive == CacheDirective::Bypass {
            return TurnLooked::Miss(None);
        }
        let call = TurnCall {
            messages: asked.messages,
            temperature: asked.temperature,
            max_tokens: asked.max_tokens,
            thinking: asked.thinking,
            web_search: asked.web_search,
        };
        let owner = self.owner(asked.key.map(|k| k.name.as_str()));
        let Some(key) = turn_key_of(&call, asked.model, owner) else {
            return TurnLooked::Miss(None);
        };
        if directive.reads()
            && let Some(stored) = self.get(&key).await
        {
            self.counts.hit(asked.front_door.to_string());
            return TurnLooked::Hit(Completed {
                text: stored.text.clone(),
                reasoning: stored.reasoning.clone(),
                usage: stored.usage,
                finish_reason: Some(stored.finish_reason.clone()),
            });
        }
        self.counts.miss(asked.front_door.to_string());
        TurnLooked::Miss(Some(TurnTicket {
            key,
            keeps: directive.writes(),
        }))
    }
}

impl TurnTicket {
    /// Keeps `done`, answered by `model`, unless the turn asked not to.
    pub async fn keep(&self, cache: &ResponseCache, model: &str, done: &Completed) {
        if !self.keeps || done.finish_reason.as_deref() == Some("tool_calls") {
            return;
        }
        let stored = StoredReply {
            model: model.to_string(),
            text: done.text.clone(),
            reasoning: done.reasoning.clone(),
            finish_reason: done.finish_reason.clone().unwrap_or_else(|| "stop".into()),
            usage: done.usage,
        };
        cache.insert(self.key, stored).await;
    }
}
