//! The OpenAI Responses API — what Codex and the openai SDK's `client.responses` speak:
//! `POST /v1/responses` (plain, or SSE events ending in `response.completed`),
//! `GET /v1/responses/{id}` and `DELETE /v1/responses/{id}` for responses kept with
//! `store: true`, each scoped to the key that made it. Errors are in OpenAI's JSON shape
//! ([`OpenAiError`]).
//!
//! This file is the wire mapping only: the body goes to the core as it came
//! ([`exai_core::Session::relay`]), which relays it to a provider that speaks Responses or
//! translates it to the provider's chat wire, and keeps or loads the stored conversation.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use exai_core::{CacheDirective, WireRequest};
use serde_json::json;

use crate::openai::OpenAiError;
use crate::state::AppState;

pub(crate) async fn create(State(state): State<AppState>, request: Request) -> Result<Response, OpenAiError> {
    let received = crate::body_limit::receive(&state, request).await?;
    let trace = exai_core::TraceContext::from_headers(&received.headers);
    let call = WireRequest::responses(received.body)?
        .trace_context(trace)
        .cache_directive(CacheDirective::from_headers(&received.headers));
    let session = state.client_session(received.ip, None, received.caller);
    // Admitted, routed and answered (or refused) before the 200; a failure after it is the
    // stream's own `response.failed` event.
    let reply = session.relay(call).await?;
    Ok(crate::reply::wire_response(reply, stream_error))
}

/// A failure after the stream began that the core did not write as `response.failed` (a
/// relayed Responses stream): the API's `error` event.
fn stream_error(e: exai_core::Error) -> Bytes {
    let body = json!({"type": "error", "code": "server_error", "message": e.to_string(), "param": null});
    Bytes::from(format!("event: error\ndata: {body}\n\n"))
}

pub(crate) async fn retrieve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, OpenAiError> {
    let session = session_of(&state, &request);
    let response = session.stored_response(&id).await?;
    Ok(axum::Json(response).into_response())
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, OpenAiError> {
    let session = session_of(&state, &request);
    session.delete_stored_response(&id).await?;
    Ok(axum::Json(json!({"id": id, "object": "response", "deleted": true})).into_response())
}

fn session_of(state: &AppState, request: &Request) -> exai_core::Session {
    let ip = crate::client::client_ip(request.extensions());
    let caller = crate::auth::caller_of(request.extensions());
    state.client_session(ip, None, caller)
}
