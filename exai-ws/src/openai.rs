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

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use exai_core::{WireReply, WireRequest};
use futures::StreamExt;
use serde_json::{Value, json};

pub(crate) use error::OpenAiError;

use crate::failure::Failure;
use crate::state::AppState;

pub(crate) async fn chat_completions(State(state): State<AppState>, request: Request) -> Result<Response, OpenAiError> {
    let received = crate::body_limit::receive(&state, request).await?;
    let trace = exai_core::TraceContext::from_headers(&received.headers);
    let chat = WireRequest::chat(received.body)?.trace_context(trace);
    let session = state.client_session(received.ip, None, received.caller);
    // Admitted, routed and answered (or refused) before the 200: a refusal is an HTTP status,
    // not a stream.
    Ok(reply_response(session.relay(chat).await?))
}

/// The reply in OpenAI's wire: the JSON, or the stream's bytes as they come (one hop: the body
/// polls the gateway's stream, which polls the provider's), with who answered in headers.
fn reply_response(reply: WireReply) -> Response {
    let (mut response, provider, model) = match reply {
        WireReply::Whole { body, provider, model } => {
            let response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
            (response, provider, model)
        }
        WireReply::Stream(stream) => {
            let (provider, model) = (stream.provider.clone(), stream.model.clone());
            let body = stream.map(|item| {
                Ok::<_, Infallible>(match item {
                    Ok(bytes) => bytes,
                    Err(e) => OpenAiError::from(e).stream_event(),
                })
            });
            let response = Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .header(header::CACHE_CONTROL, "no-cache")
                .body(axum::body::Body::from_stream(body))
                .unwrap_or_else(|_| OpenAiError::from(Failure::internal("cannot build the stream")).into_response());
            (response, provider, model)
        }
    };
    for (name, value) in [("x-exai-provider", provider), ("x-exai-model", model)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
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
