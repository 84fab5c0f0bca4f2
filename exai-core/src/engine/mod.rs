//! The engine: one attempt loop for every call, whatever front door and wire it came by.
//!
//! - `attempts.rs`: the loop — per planned model its provider permit, the attempt through the
//!   provider's worker (circuit breaker) and client (pacing, retries, quirks), and fallback
//!   while nothing reached the caller.
//! - `deployment.rs`: a deployment's permit for one attempt (its cap, its shared lease and
//!   pacing), and publishing its cool-downs.
//! - `record.rs`: what is recorded once per call (ledger, key spend, status page, span).
//! - `wire_call.rs`: a call in a client's wire (OpenAI chat, Anthropic Messages, OpenAI
//!   Responses), relayed as bytes to a provider that speaks it, translated otherwise.
//! - `in_band.rs`: a provider's 200 looked at before its attempt counts as answered (an error
//!   inside it fails the attempt; a stream's first events).
//! - `cache.rs`: the exact-match response cache: a call's key, a hit written in the caller's
//!   wire, a miss's reply kept once whole.
//! - `count_tokens.rs`: a Messages request's token count, kept by a hash of the body so a
//!   burst of the same counts costs one.
//! - `responses.rs`: what a Responses call adds — the stored conversation it continues, its
//!   translation to chat, keeping its response; `unsaved.rs`: the responses whose store write
//!   is under way (readable at once, and bounded: new calls wait when the store falls behind).
//!
//! The gateway's own turns (`ChatRequest`: MCP tools, the EXAI protocol, `exai chat`,
//! embedders) run the same loop from `gateway/turn.rs`, which adds conversation memory around
//! it. `count_tokens` answers no prompt: it asks the first planned provider with a Messages
//! endpoint once (its client, within the call's deadline) and falls back to an estimate. No
//! other code sends HTTP to a provider: every request goes through the provider's client
//! (`providers/client.rs`).

mod attempts;
mod cache;
mod count_tokens;
mod deployment;
mod in_band;
mod record;
mod responses;
mod unsaved;
mod wire_call;

pub(crate) use attempts::{Attempted, Attempts, note};
pub use cache::{CacheStats, SharedCacheStatus};
pub(crate) use cache::{ResponseCache, turn as turn_cache};
pub(crate) use count_tokens::{CountCache, cache as count_cache, count_tokens};
pub(crate) use record::{record_cached, record_success};
pub(crate) use responses::{delete as delete_response, get as get_response};
pub(crate) use unsaved::Unsaved;
pub(crate) use wire_call::run as wire_call;
