//! # exai-ws
//!
//! The daemon many clients share — one set of limits, one memory, one usage ledger — on one
//! port (`EXAI_WS_HOST`:`EXAI_WS_PORT`, 127.0.0.1:8079 by default):
//! - `/mcp`: MCP over streamable HTTP (rmcp's transport, exai-mcp's handler), so MCP clients
//!   connect with no shim: `claude mcp add --transport http exai http://127.0.0.1:8079/mcp`;
//! - `/v1/chat/completions`, `/v1/models`: the OpenAI-compatible API (`openai.rs`);
//! - `/v1/messages`, `/v1/messages/count_tokens`: the Anthropic Messages API (`anthropic.rs`),
//!   for Claude Code and Anthropic's SDKs;
//! - `/` and `/ws`: WebSocket — the EXAI protocol or MCP JSON-RPC, decided by the first frame
//!   (`ws/`);
//! - `/healthz`, `/readyz`, `/metrics` (`ops.rs`);
//! - `/ui`: the status page, and its JSON at `/ui/api/status` and `/ui/api/events` (`ui/`).
//!
//! Transports stay thin: every route parses its protocol, calls the gateway, maps the reply.
//! Admission is applied once for every front door: the client's rate and each call's deadline
//! in the core session every route opens for its client (`state.rs`), the body limit as one
//! layer over every HTTP route (`body_limit.rs`), the frame limit at the WebSocket upgrade.
//! `auth.rs` holds the token and `Origin` checks; `client.rs` says who a request comes from;
//! `main.rs` binds, locks and handles signals.

mod admin;
mod anthropic;
mod auth;
mod body_limit;
mod client;
mod openai;
mod ops;
mod state;
mod ui;
mod ws;

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use exai_mcp::SessionSource;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

pub use state::{AppState, Shared};
pub use ws::EXAI_WS_PROTOCOL;

/// The daemon's routes.
pub fn router(state: AppState) -> Router {
    let mcp_state = state.clone();
    let mcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts([
            "localhost",
            "127.0.0.1",
            "::1",
            state.gateway.config().daemon.host.as_str(),
        ])
        .with_cancellation_token(state.shutdown.child_token());
    // MCP over HTTP runs each call in a gateway session of its MCP session, counted for the
    // client's address: the same rate and deadline as the OpenAI API, a per-session limit each.
    let choose = {
        let state = state.clone();
        Arc::new(move |parts: &axum::http::request::Parts| {
            let mcp = parts.headers.get("mcp-session-id").and_then(|v| v.to_str().ok());
            let caller = auth::caller_of(&parts.extensions);
            state.client_session(client::client_ip(&parts.extensions), mcp, caller)
        })
    };
    let mcp = StreamableHttpService::new(
        move || {
            Ok(exai_mcp::ExaiServer::new(
                mcp_state.tools.clone(),
                SessionSource::PerRequest(choose.clone()),
                mcp_state.logs.clone(),
            ))
        },
        LocalSessionManager::default().into(),
        mcp_config,
    );
    let protected = Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(openai::models))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    // The status page and its JSON: the admin or master token, or loopback when neither is set.
    let status_page = Router::new()
        .route("/ui", get(ui::page))
        .route("/ui/", get(ui::page))
        .route("/ui/api/status", get(ui::status))
        .route("/ui/api/events", get(ui::events))
        .route_layer(middleware::from_fn_with_state(state.clone(), ui::operators));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        // WebSocket checks its token itself: in the upgrade's header or in `hello`.
        .route("/", get(ws::upgrade))
        .route("/ws", get(ws::upgrade))
        // The admin token, or a caller who is not a key.
        .route(
            "/metrics",
            get(ops::metrics).layer(middleware::from_fn_with_state(state.clone(), auth::operators_only)),
        )
        // Key management checks EXAI_ADMIN_TOKEN itself.
        .nest("/admin/keys", admin::routes(state.clone()))
        .merge(status_page)
        .merge(protected)
        .layer(middleware::from_fn(auth::check_origin))
        .layer(middleware::from_fn_with_state(state.clone(), body_limit::limit_body))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish within the gateway's grace period.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.shutdown.clone();
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    // Replies go out in several small writes (SSE events, the last chunk of a body): without
    // TCP_NODELAY, Nagle holds the last one back until the client's delayed ACK, ~40 ms on
    // every request of a keep-alive connection after the first.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted socket");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            token.cancel();
        })
        .await?;
    // WebSocket connections finish their calls (within the grace period) and close with 1001.
    let grace = state.gateway.config().sessions.shutdown_grace + Duration::from_secs(1);
    state.connections_tracker.close();
    let _ = tokio::time::timeout(grace, state.connections_tracker.wait()).await;
    state.gateway.shutdown().await;
    Ok(())
}
