//! A turn the response cache answered: recorded as cached (the ledger's `cached` and
//! `saved_usd`; nothing charged to the key), told to a streaming caller as one piece, and stored
//! in the conversation like any other turn, so it can be continued.

use super::{Answered, Call, Sink, finish, status};
use crate::catalog::ModelInfo;
use crate::engine::record_cached;
use crate::gateway::Gateway;
use crate::memory::Thread;
use crate::providers::Completed;
use crate::request::{ChatEvent, ChatRequest, ChatResponse, Message};
use crate::wire::CacheStatus;

/// A turn answered from the cache with `done`, a reply `model` gave earlier: recorded as cached
/// (the key charged nothing), told to a streaming caller as one piece, stored in the
/// conversation like any turn.
#[allow(clippy::too_many_arguments)]
pub(super) async fn answer_from_cache(
    gateway: &Gateway,
    request: &ChatRequest,
    call: &Call,
    sink: &Sink,
    thread: Option<Thread>,
    turn: &[Message],
    model: ModelInfo,
    done: Completed,
    request_id: String,
) -> ChatResponse {
    record_cached(gateway, &model, call.key_name(), model.price.cost_of(&done.usage));
    status(sink, format_args!("answered from the cache"));
    if let Some(sink) = sink {
        let pieces = [
            ChatEvent::Reasoning(done.reasoning.clone()),
            ChatEvent::Text(done.text.clone()),
        ];
        for piece in pieces {
            if matches!(&piece, ChatEvent::Reasoning(t) | ChatEvent::Text(t) if !t.is_empty()) {
                // A caller that left is told nothing more; the turn is still stored.
                let _ = sink.send(Ok(piece)).await;
            }
        }
    }
    let answered = Answered {
        model: &model,
        deployment: None,
        done,
        cost: 0.0,
        fallbacks: Vec::new(),
        cache: Some(CacheStatus::Hit),
    };
    let response = finish(
        gateway,
        request,
        call.key_name(),
        thread,
        turn.to_vec(),
        answered,
        request_id,
    )
    .await;
    if let Some(sink) = sink {
        let _ = sink.send(Ok(ChatEvent::Done(response.clone()))).await;
    }
    response
}
