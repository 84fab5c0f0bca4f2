//! The Anthropic Messages API: `POST /v1/messages` (also with `?beta=true`),
//! `POST /v1/messages/count_tokens`, and `GET /v1/models` in Anthropic's list shape when the
//! request carries `anthropic-version` — so Claude Code and Anthropic's SDKs run on exai's
//! providers (`ANTHROPIC_BASE_URL=http://127.0.0.1:8079`).
//!
//! This file is the wire mapping only: it hands the body to the core as it came
//! ([`exai_core::Session::relay`]: admission, keys, routing, retries, fallback, limits, the
//! usage ledger, the relay itself) and writes the answer — the provider's message, or its
//! events as the provider's bytes (a `ping` every 10 s while it is quiet), and an `error` event
//! for a failure after the 200. Errors are Anthropic's
//! `{"type":"error","error":{"type","message"}}` with its status/type pairs ([`AnthropicError`],
//! `anthropic/error.rs`).

mod error;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use exai_core::{CacheDirective, WireRequest};
use serde_json::{Value, json};

pub(crate) use error::AnthropicError;

use crate::body_limit::Received;
use crate::state::AppState;

fn header_of(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

pub(crate) async fn messages(State(state): State<AppState>, request: Request) -> Result<Response, AnthropicError> {
    let Received {
        headers,
        body,
        ip,
        caller,
    } = crate::body_limit::receive(&state, request).await?;
    let request = WireRequest::messages(body)?
        .anthropic_version(header_of(&headers, "anthropic-version"))
        .anthropic_beta(header_of(&headers, "anthropic-beta"))
        .trace_context(exai_core::TraceContext::from_headers(&headers))
        .cache_directive(CacheDirective::from_headers(&headers));
    let session = state.client_session(ip, None, caller);
    let reply = session.relay(request).await?;
    // The provider's events as they come (pings included while it is quiet); a failure after
    // the 200 is an `error` event.
    Ok(crate::reply::wire_response(reply, |e| {
        AnthropicError::from(e).stream_event()
    }))
}

pub(crate) async fn count_tokens(State(state): State<AppState>, request: Request) -> Result<Response, AnthropicError> {
    let Received {
        headers,
        body,
        ip,
        caller,
    } = crate::body_limit::receive(&state, request).await?;
    let request = WireRequest::count_tokens(body)?
        .anthropic_version(header_of(&headers, "anthropic-version"))
        .anthropic_beta(header_of(&headers, "anthropic-beta"));
    let session = state.client_session(ip, None, caller);
    let count = session.count_tokens(request).await?;
    let source = if count.from_provider { "provider" } else { "estimate" };
    let mut response = axum::Json(json!({"input_tokens": count.input_tokens})).into_response();
    response
        .headers_mut()
        .insert("x-exai-token-count", HeaderValue::from_static(source));
    Ok(response)
}

/// `GET /v1/models` in Anthropic's shape.
pub(crate) fn models(state: &AppState) -> Response {
    let data: Vec<Value> = state
        .gateway
        .models()
        .into_iter()
        .filter(|m| m.configured)
        .map(|m| {
            json!({"type": "model", "id": m.model.id, "display_name": format!("{} ({})", m.model.id, m.model.provider),
                   "created_at": "2025-01-01T00:00:00Z"})
        })
        .collect();
    let first = data.first().map(|m| m["id"].clone()).unwrap_or(Value::Null);
    let last = data.last().map(|m| m["id"].clone()).unwrap_or(Value::Null);
    axum::Json(json!({"data": data, "has_more": false, "first_id": first, "last_id": last})).into_response()
}
