//! The request-body limit (`daemon.max_body_bytes`), one layer for every HTTP route: a body
//! announced larger is refused at once with 413, and one that grows past the limit while being
//! read fails its read — whichever route, and whoever reads it (axum, or rmcp for `/mcp`).
//! The refusal is in the caller's protocol: JSON-RPC for `/mcp`, Anthropic's error shape for
//! `/v1/messages`, OpenAI's elsewhere.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::Limited;
use serde_json::json;

use crate::state::AppState;

pub(crate) async fn limit_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let max = state.gateway.config().daemon.max_body_bytes;
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return too_large(request.uri().path(), max);
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
/// fails here, answered with 413 in the route's protocol.
pub(crate) async fn receive(state: &AppState, request: Request) -> Result<Received, Response> {
    let ip = crate::client::client_ip(request.extensions());
    let caller = crate::auth::caller_of(request.extensions());
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|_| too_large(parts.uri.path(), state.gateway.config().daemon.max_body_bytes))?;
    Ok(Received {
        headers: parts.headers,
        body,
        ip,
        caller,
    })
}

/// 413 in the protocol of the route.
pub(crate) fn too_large(path: &str, max: usize) -> Response {
    let message = format!("the request body is over this server's limit of {max} bytes (daemon.max_body_bytes)");
    let body = if path.starts_with("/mcp") {
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": message}})
    } else if path.starts_with("/v1/messages") {
        json!({"type": "error", "error": {"type": "request_too_large", "message": message}})
    } else {
        json!({"error": {"message": message, "type": "invalid_request_error", "code": "body_too_large", "param": null}})
    };
    (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response()
}
