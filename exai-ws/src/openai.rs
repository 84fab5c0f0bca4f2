//! The OpenAI-compatible API: `POST /v1/chat/completions` (plain, and SSE streaming ending in
//! `data: [DONE]`) and `GET /v1/models`, with errors in OpenAI's JSON shape ([`OpenAiError`],
//! `openai/error.rs`) — so any OpenAI SDK or tool gets exai's routing, limits, fallbacks and
//! usage ledger.
//!
//! This file is the wire mapping only: the body goes to the core as it came
//! ([`exai_core::Session::relay`]), which relays it to a provider that speaks OpenAI chat (the
//! reply's bytes come back untouched but for an `exai` object in a whole reply: who answered,
//! the cost, the fallbacks) or answers in OpenAI's wire itself. The client keeps the history (it
//! sends it every time), so nothing is stored in exai's memory; usage is recorded as for any
//! call.

mod error;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use exai_core::{CacheDirective, WireRequest};
use serde_json::{Value, json};

pub(crate) use error::OpenAiError;

use crate::state::AppState;

pub(crate) async fn chat_completions(State(state): State<AppState>, request: Request) -> Result<Response, OpenAiError> {
    let received = crate::body_limit::receive(&state, request).await?;
    let trace = exai_core::TraceContext::from_headers(&received.headers);
    let chat = WireRequest::chat(received.body)?
        .trace_context(trace)
        .cache_directive(CacheDirective::from_headers(&received.headers));
    let session = state.client_session(received.ip, None, received.caller);
    // Admitted, routed and answered (or refused) before the 200: a refusal is an HTTP status,
    // not a stream.
    let reply = session.relay(chat).await?;
    Ok(crate::reply::wire_response(reply, |e| {
        OpenAiError::from(e).stream_event()
    }))
}

pub(crate) async fn models(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    // Anthropic's clients send `anthropic-version`; they get Anthropic's list shape.
    if headers.contains_key("anthropic-version") {
        return crate::anthropic::models(&state);
    }
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut data: Vec<Value> = vec![json!({"id": "auto", "object": "model", "created": created, "owned_by": "exai"})];
    for entry in state.gateway.models().into_iter().filter(|m| m.configured) {
        data.push(
            json!({"id": entry.model.id, "object": "model", "created": created, "owned_by": entry.model.provider,
            "context_window": entry.model.context_window}),
        );
    }
    axum::Json(json!({"object": "list", "data": data})).into_response()
}
