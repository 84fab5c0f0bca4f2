//! What a Responses API call (`POST /v1/responses`) needs beyond any wire call: the stored
//! conversation it continues (`previous_response_id`), its translation to the chat wire for a
//! provider with no Responses endpoint, and keeping its response (`store`, by default `true`).
//!
//! A stored response is the `response` object and every item of its conversation (earlier
//! items, this request's input, its output), kept for `responses.ttl_secs` in the memory store
//! (SQLite, or Redis when configured, so another daemon can continue it). It belongs to the key
//! that made it: another key is told it does not exist, as for an id never seen. `store: false`
//! (as Codex sends) keeps nothing.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::wire_call::{Answer, Warned, send_translated, unreadable, whole};
use crate::catalog::ModelInfo;
use crate::error::{Error, ProviderError};
use crate::gateway::{Gateway, context};
use crate::memory::StoredResponse;
use crate::providers::{ProviderHandle, ToolCap, translated_shape};
use crate::routing::Needs;
use crate::wire::responses::{self, ChatExtras, ResponseFrame};
use crate::wire::scan::Scanner;
use crate::wire::sse::EventCutter;
use crate::wire::{Kept, ResponsesTranslator, Source, Wire, WireRequest};

/// A Responses call, read: its body, the stored items it continues, its response's id, and
/// where a streamed reply leaves its finished response.
pub(crate) struct Prepared {
    pub body: Map<String, Value>,
    pub history: Vec<Value>,
    pub id: String,
    pub kept: Kept,
}

/// A stored response: one still being written, or the store's.
async fn load(gateway: &Gateway, id: &str) -> Result<Option<StoredResponse>, Error> {
    match gateway.unsaved_responses().get(id) {
        Some(stored) => Ok(Some((*stored).clone())),
        None => Ok(gateway.store().get_response(id).await?),
    }
}

/// Reads a Responses request and loads the conversation it continues, for the caller's key.
/// A call that will keep its response first waits while too many are still being written.
pub(crate) async fn prepare(gateway: &Gateway, request: &WireRequest, key: Option<&str>) -> Result<Prepared, Error> {
    if request.store {
        gateway.unsaved_responses().room().await;
    }
    let body = request.body_map()?;
    let history = match &request.previous {
        None => Vec::new(),
        Some(id) => match load(gateway, id).await? {
            Some(stored) if stored.belongs_to(key) => stored.items,
            _ => {
                return Err(Error::InvalidRequest(format!(
                    "Previous response with id '{id}' not found."
                )));
            }
        },
    };
    Ok(Prepared {
        body,
        history,
        id: responses::new_id(),
        kept: Kept::default(),
    })
}

/// Keeps `response` (when the request asked for it) with its whole conversation: at once for
/// the callers of this process, in the store by a task that `shutdown` waits for.
pub(crate) fn keep(
    gateway: &Gateway,
    request: &WireRequest,
    prepared: &Prepared,
    owner: Option<&str>,
    response: Value,
) {
    if !request.store {
        return;
    }
    let mut items = prepared.history.clone();
    items.extend(responses::input_items(&prepared.body));
    items.extend(
        response
            .get("output")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .cloned(),
    );
    let ttl = gateway.config().memory.responses_ttl;
    let stored = Arc::new(StoredResponse {
        id: prepared.id.clone(),
        owner: owner.map(str::to_string),
        expires_ms: crate::actors::session::now_ms() + ttl.as_millis() as u64,
        response,
        items,
    });
    let held = gateway.unsaved_responses().hold(stored.clone());
    let (gateway, tracked) = (gateway.clone(), gateway.track());
    let save = async move {
        let (_tracked, held) = (tracked, held);
        if let Err(e) = gateway.store().put_response(&stored).await {
            tracing::warn!(error = %e, id = %stored.id, "the response could not be stored");
        }
        if held.was_deleted() {
            // A DELETE came before this write landed: the write must not bring it back.
            if let Err(e) = gateway.store().delete_response(&stored.id).await {
                tracing::warn!(error = %e, id = %stored.id, "a deleted response could not be removed");
            }
        }
    };
    tokio::spawn(save);
}

/// A stored response, for the caller's key.
pub(crate) async fn get(gateway: &Gateway, id: &str, key: Option<&str>) -> Result<Value, Error> {
    match load(gateway, id).await? {
        Some(stored) if stored.belongs_to(key) => Ok(stored.response),
        _ => Err(Error::ResponseNotFound(id.to_string())),
    }
}

/// Deletes a stored response, for the caller's key.
pub(crate) async fn delete(gateway: &Gateway, id: &str, key: Option<&str>) -> Result<(), Error> {
    match load(gateway, id).await? {
        Some(stored) if stored.belongs_to(key) => {
            gateway.unsaved_responses().forget(id);
            gateway.store().delete_response(id).await?;
            Ok(())
        }
        _ => Err(Error::ResponseNotFound(id.to_string())),
    }
}

/// A Responses request to a provider that speaks only chat: translated there and back.
pub(crate) async fn translate(
    request: &WireRequest,
    prepared: &Prepared,
    model: &ModelInfo,
    handle: &ProviderHandle,
    scan: Scanner,
    cap: ToolCap,
) -> Result<Warned, ProviderError> {
    let client = handle.client();
    let quirks = client.quirks();
    let mut translated = {
        let shape = |thinking, search| translated_shape(quirks, model, thinking, search);
        let extras = ChatExtras {
            reasoning_content: quirks.takes_reasoning_back(),
            web_search: quirks.searches_in_one_round(),
            shape: Some(&shape),
        };
        responses::to_chat(&prepared.body, &prepared.history, &model.id, request.stream, &extras)
    };
    let (response, span, warning) = send_translated(handle, model, &mut translated.body, request.stream, cap).await?;
    let frame = ResponseFrame::new(prepared.id.clone(), &model.id, &prepared.body);
    let split_tags = quirks.splits_think_tags();
    if request.stream {
        let translator = ResponsesTranslator::new(frame, translated.names, split_tags, prepared.kept.clone());
        let source = Source::Translated {
            body: super::in_band::first_events(client, model, Wire::Chat, &span, response).await?,
            cutter: EventCutter::default(),
            translator: Box::new(translator),
        };
        return Ok(Warned(Answer::Stream(source, span), warning));
    }
    let reply = super::in_band::whole_reply(client, model, &span, response).await?;
    let reply = serde_json::from_slice::<Value>(&reply).map_err(|e| unreadable(model, e))?;
    let (object, _) = responses::from_chat(&reply, &frame, &translated.names, split_tags);
    if let Ok(mut kept) = prepared.kept.lock() {
        *kept = Some(object.clone());
    }
    Ok(Warned(
        whole(Bytes::from(object.to_string()), scan, model, &span),
        warning,
    ))
}

/// The response a relayed or translated reply left, once complete.
pub(crate) fn finished(prepared: &Prepared) -> Option<Value> {
    prepared.kept.lock().ok().and_then(|mut kept| kept.take())
}

/// What routing needs to know of a Responses request: its size with the conversation it
/// continues, and whether an input item carries an image (read from the items: a tool's
/// description that mentions images asks for no vision model).
pub(crate) fn needs(prepared: &Arc<Prepared>, request: &WireRequest) -> Needs {
    let history: usize = prepared.history.iter().map(|i| i.to_string().len()).sum();
    let items = responses::input_items(&prepared.body);
    let vision = prepared.history.iter().chain(&items).any(has_image);
    Needs {
        tokens: context::estimate(request.text()) + (history as u64) / 4,
        vision,
        ..Needs::default()
    }
}

/// Whether an input item carries an image (a message's part, or a tool output's).
fn has_image(item: &Value) -> bool {
    let parts = item.get("content").or_else(|| item.get("output"));
    parts
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|p| p.get("type").and_then(Value::as_str) == Some("input_image"))
}
