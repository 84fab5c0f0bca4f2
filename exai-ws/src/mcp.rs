//! `/mcp`: MCP over streamable HTTP — rmcp's transport around exai-mcp's handler, the same MCP
//! server as exai-stdio's — so MCP clients connect with no shim:
//! `claude mcp add --transport http exai http://127.0.0.1:8079/mcp`. Refusals before the MCP
//! server sees a request (a key, the body limit) are JSON-RPC errors ([`McpError`],
//! `mcp/error.rs`). Closing a session (`DELETE /mcp`) answers 204, which MCP clients accept
//! (rmcp's transport says 202, on which the MCP Python SDK warns at every close).

mod error;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use exai_mcp::SessionSource;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

pub(crate) use error::McpError;

use crate::state::AppState;

/// `DELETE /mcp` closed the session: 204 No Content rather than the transport's 202.
pub(crate) async fn session_closed_is_no_content(request: Request, next: Next) -> Response {
    let delete = request.method() == Method::DELETE;
    let response = next.run(request).await;
    if delete && response.status() == StatusCode::ACCEPTED {
        return StatusCode::NO_CONTENT.into_response();
    }
    response
}

/// The MCP service for `state`'s gateway.
pub(crate) fn service(state: &AppState) -> StreamableHttpService<exai_mcp::ExaiServer, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts([
            "localhost",
            "127.0.0.1",
            "::1",
            state.gateway.config().daemon.host.as_str(),
        ])
        .with_cancellation_token(state.shutdown.child_token());
    // Each call runs in a gateway session of its MCP session, counted for the client's address:
    // the same rate and deadline as the OpenAI API, a per-session limit each.
    let choose = {
        let state = state.clone();
        Arc::new(move |parts: &axum::http::request::Parts| {
            let mcp = parts.headers.get("mcp-session-id").and_then(|v| v.to_str().ok());
            let caller = crate::auth::caller_of(&parts.extensions);
            state.client_session(crate::client::client_ip(&parts.extensions), mcp, caller)
        })
    };
    let state = state.clone();
    StreamableHttpService::new(
        move || {
            Ok(exai_mcp::ExaiServer::new(
                state.tools.clone(),
                SessionSource::PerRequest(choose.clone()),
                state.logs.clone(),
            ))
        },
        LocalSessionManager::default().into(),
        config,
    )
}
