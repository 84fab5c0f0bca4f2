//! The request-body limit (`daemon.max_body_bytes`), one layer for every HTTP route: a body
//! announced larger is refused at once with 413, and one that grows past the limit while being
//! read fails its read — whichever route, and whoever reads it (axum, or rmcp for `/mcp`).
//!
//! The layer is generic over the front door's error type ([`DoorError`]): the router puts
//! `limit_body::<OpenAiError>` on the OpenAI routes, `::<AnthropicError>` on the Messages
//! routes, `::<McpError>` on `/mcp`, so a refusal is in the caller's protocol.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::Limited;

use crate::failure::{DoorError, Failure};
use crate::state::AppState;

/// Refuses a body announced over the limit with `E`'s 413, and caps what the route reads.
pub(crate) async fn limit_body<E: DoorError>(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let max = state.gateway.config().daemon.max_body_bytes;
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return E::from(Failure::too_large(max)).into_response();
    }
    next.run(request.map(|body| Body::new(Limited::new(body, max)))).await
}

/// A request to a JSON route, read whole: who sent it (address, caller) and what.
pub(crate) struct Received {
    pub headers: axum::http::HeaderMap,
    pub body: axum::body::Bytes,
    pub ip: std::net::IpAddr,
    pub caller: exai_core::Caller,
}

/// Reads a request whole. The layer above caps what this reads: a body that grew past the limit
/// fails here, a failure the route answers with 413 in its protocol.
pub(crate) async fn receive(state: &AppState, request: Request) -> Result<Received, Failure> {
    let ip = crate::client::client_ip(request.extensions());
    let caller = crate::auth::caller_of(request.extensions());
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|_| Failure::too_large(state.gateway.config().daemon.max_body_bytes))?;
    Ok(Received {
        headers: parts.headers,
        body,
        ip,
        caller,
    })
}
