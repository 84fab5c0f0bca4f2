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
//! `{"type":"error","error":{"type","message"}}` with its status/type pairs.

use std::convert::Infallible;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use exai_core::{Error, ProviderErrorKind, WireReply, WireRequest};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::body_limit::Received;
use crate::state::AppState;

/// An error in Anthropic's shape.
pub(crate) fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// The status and type Anthropic's clients expect for a gateway error.
fn status_of(e: &Error) -> (StatusCode, &'static str) {
    let overloaded = StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    match e {
        Error::InvalidRequest(_) | Error::ThreadNotFound(_) => (StatusCode::BAD_REQUEST, "invalid_request_error"),
        Error::UnknownModel { .. } => (StatusCode::NOT_FOUND, "not_found_error"),
        Error::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "authentication_error"),
        Error::Forbidden { .. } => (StatusCode::FORBIDDEN, "permission_error"),
        Error::BudgetExceeded { .. } => (StatusCode::PAYMENT_REQUIRED, "billing_error"),
        Error::RateLimited { .. } | Error::KeyLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
        Error::OverCapacity { .. } | Error::ShuttingDown | Error::SessionClosed(_) => (overloaded, "overloaded_error"),
        Error::DeadlineExceeded { .. } => (StatusCode::GATEWAY_TIMEOUT, "api_error"),
        Error::Provider(p) => match &p.kind {
            ProviderErrorKind::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
            ProviderErrorKind::InvalidRequest { status: 404, .. } => (StatusCode::NOT_FOUND, "not_found_error"),
            ProviderErrorKind::InvalidRequest { status: 413, .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large")
            }
            ProviderErrorKind::InvalidRequest { .. } => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            ProviderErrorKind::Transient { .. } | ProviderErrorKind::CircuitOpen { .. } => {
                (overloaded, "overloaded_error")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "api_error"),
        },
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "api_error"),
    }
}

fn gateway_error(e: &Error) -> Response {
    let (status, kind) = status_of(e);
    let mut response = error(status, kind, &e.to_string());
    if let Some(after) = e
        .retry_after()
        .and_then(|a| HeaderValue::from_str(&a.as_secs().max(1).to_string()).ok())
    {
        response.headers_mut().insert(header::RETRY_AFTER, after);
    }
    response
}

fn header_of(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

pub(crate) async fn messages(State(state): State<AppState>, request: Request) -> Response {
    let Received {
        headers,
        body,
        ip,
        caller,
    } = match crate::body_limit::receive(&state, request).await {
        Ok(received) => received,
        Err(response) => return response,
    };
    let request = match WireRequest::messages(body) {
        Ok(r) => r
            .anthropic_version(header_of(&headers, "anthropic-version"))
            .anthropic_beta(header_of(&headers, "anthropic-beta"))
            .trace_context(exai_core::TraceContext::from_headers(&headers)),
        Err(e) => return gateway_error(&e),
    };
    let session = state.client_session(ip, None, caller);
    let reply = match session.relay(request).await {
        Ok(reply) => reply,
        Err(e) => return gateway_error(&e),
    };
    let (mut response, provider, model) = match reply {
        WireReply::Whole { body, provider, model } => {
            let response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
            (response, provider, model)
        }
        WireReply::Stream(stream) => {
            let (provider, model) = (stream.provider.clone(), stream.model.clone());
            // The provider's events as they come (pings included while it is quiet); a failure
            // after the 200 is an `error` event.
            let body = stream.map(|item| {
                Ok::<_, Infallible>(match item {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        let (_, kind) = status_of(&e);
                        let body = json!({"type": "error", "error": {"type": kind, "message": e.to_string()}});
                        axum::body::Bytes::from(format!("event: error\ndata: {body}\n\n"))
                    }
                })
            });
            let response = (
                [
                    (header::CONTENT_TYPE, "text/event-stream"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                axum::body::Body::from_stream(body),
            )
                .into_response();
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

pub(crate) async fn count_tokens(State(state): State<AppState>, request: Request) -> Response {
    let Received {
        headers,
        body,
        ip,
        caller,
    } = match crate::body_limit::receive(&state, request).await {
        Ok(received) => received,
        Err(response) => return response,
    };
    let request = match WireRequest::count_tokens(body) {
        Ok(r) => r
            .anthropic_version(header_of(&headers, "anthropic-version"))
            .anthropic_beta(header_of(&headers, "anthropic-beta")),
        Err(e) => return gateway_error(&e),
    };
    let session = state.client_session(ip, None, caller);
    match session.count_tokens(request).await {
        Ok(count) => {
            let source = if count.from_provider { "provider" } else { "estimate" };
            let mut response = axum::Json(json!({"input_tokens": count.input_tokens})).into_response();
            response
                .headers_mut()
                .insert("x-exai-token-count", HeaderValue::from_static(source));
            response
        }
        Err(e) => gateway_error(&e),
    }
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
