//! The OpenAI-compatible API: `POST /v1/chat/completions` (plain, and SSE streaming ending in
//! `data: [DONE]`) and `GET /v1/models`, with errors in OpenAI's JSON shape — so any OpenAI SDK
//! or tool gets exai's routing, limits, fallbacks and usage ledger.
//!
//! This file is the wire mapping only: the body goes to the core as it came
//! ([`exai_core::Session::relay`]), which relays it to a provider that speaks OpenAI chat (the
//! reply's bytes come back untouched but for an `exai` object in a whole reply: who answered,
//! the cost, the fallbacks) or answers in OpenAI's wire itself. The client keeps the history (it
//! sends it every time), so nothing is stored in exai's memory; usage is recorded as for any
//! call.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use exai_core::{Error, ProviderErrorKind, WireReply, WireRequest};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::state::AppState;

/// An error in OpenAI's shape.
fn error(status: StatusCode, kind: &str, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": message, "type": kind, "code": code, "param": null}})),
    )
        .into_response()
}

fn gateway_error(e: &Error) -> Response {
    let (status, kind, code) = match e {
        Error::InvalidRequest(_) | Error::ThreadNotFound(_) => {
            (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_request")
        }
        Error::UnknownModel { .. } => (StatusCode::NOT_FOUND, "invalid_request_error", "model_not_found"),
        Error::NoProviderConfigured | Error::ProviderNotConfigured { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "provider_not_configured",
        ),
        Error::OverCapacity { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "over_capacity"),
        Error::RateLimited { .. } | Error::KeyLimited { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "rate_limited")
        }
        // OpenAI's own answer when an account's quota is spent.
        Error::BudgetExceeded { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "insufficient_quota",
        ),
        Error::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "invalid_request_error", "invalid_api_key"),
        Error::KeysUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "server_error", "keys_unavailable"),
        Error::Forbidden { .. } => (StatusCode::FORBIDDEN, "permission_error", "forbidden"),
        Error::DeadlineExceeded { .. } => (StatusCode::GATEWAY_TIMEOUT, "server_error", "timeout"),
        Error::ShuttingDown | Error::SessionClosed(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "server_error", "shutting_down")
        }
        Error::Provider(p) => match p.kind {
            ProviderErrorKind::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "upstream_rate_limited",
            ),
            ProviderErrorKind::InvalidRequest { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "upstream_rejected_request",
            ),
            ProviderErrorKind::CircuitOpen { .. } | ProviderErrorKind::MissingKey { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "server_error", "upstream_unavailable")
            }
            ProviderErrorKind::Auth { .. } => (StatusCode::BAD_GATEWAY, "server_error", "upstream_auth_failed"),
            _ => (StatusCode::BAD_GATEWAY, "server_error", "upstream_error"),
        },
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal_error"),
    };
    let mut response = error(status, kind, code, e.to_string());
    if let Some(after) = e
        .retry_after()
        .and_then(|a| HeaderValue::from_str(&a.as_secs().max(1).to_string()).ok())
    {
        response.headers_mut().insert(header::RETRY_AFTER, after);
    }
    response
}

pub(crate) async fn chat_completions(State(state): State<AppState>, request: Request) -> Response {
    let received = match crate::body_limit::receive(&state, request).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let trace = exai_core::TraceContext::from_headers(&received.headers);
    let (ip, caller) = (received.ip, received.caller);
    let chat = match WireRequest::chat(received.body) {
        Ok(c) => c.trace_context(trace),
        Err(e) => return gateway_error(&e),
    };
    let session = state.client_session(ip, None, caller);
    // Admitted, routed and answered (or refused) before the 200: a refusal is an HTTP status,
    // not a stream.
    match session.relay(chat).await {
        Ok(reply) => reply_response(reply),
        Err(e) => gateway_error(&e),
    }
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
                    Err(e) => stream_error(&e),
                })
            });
            let response = Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .header(header::CACHE_CONTROL, "no-cache")
                .body(axum::body::Body::from_stream(body))
                .unwrap_or_else(|_| {
                    error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        "internal_error",
                        "cannot build the stream".into(),
                    )
                });
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

/// A failure after the stream began: an `error` chunk, then `[DONE]`.
fn stream_error(e: &Error) -> axum::body::Bytes {
    let body = json!({"error": {"message": e.to_string(), "type": "server_error", "code": "stream_failed"}});
    axum::body::Bytes::from(format!("data: {body}\n\ndata: [DONE]\n\n"))
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
