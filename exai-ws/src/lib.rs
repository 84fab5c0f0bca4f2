//! # exai-ws
//!
//! The daemon many clients share — one set of limits, one memory, one usage ledger — on one
//! port (`EXAI_WS_HOST`:`EXAI_WS_PORT`, 127.0.0.1:8079 by default):
//! - `/mcp`: MCP over streamable HTTP (rmcp's transport, exai-mcp's handler; `mcp.rs`), so MCP
//!   clients connect with no shim: `claude mcp add --transport http exai http://127.0.0.1:8079/mcp`;
//! - `/v1/chat/completions`, `/v1/models`: the OpenAI-compatible API (`openai.rs`);
//! - `/v1/messages`, `/v1/messages/count_tokens`: the Anthropic Messages API (`anthropic.rs`),
//!   for Claude Code and Anthropic's SDKs;
//! - `/v1/responses`, `/v1/responses/{id}`: the OpenAI Responses API (`responses.rs`), for Codex
//!   and the openai SDK's `client.responses`;
//! - `/` and `/ws`: WebSocket — the EXAI protocol or MCP JSON-RPC, decided by the first frame
//!   (`ws/`);
//! - `/healthz`, `/readyz`, `/metrics` (`ops.rs`);
//! - `/ui`: the status page, and its JSON at `/ui/api/status` and `/ui/api/events` (`ui/`).
//!
//! Transports stay thin: every route parses its protocol, calls the gateway, maps the reply.
//! Admission is applied once for every front door: the client's rate and each call's deadline
//! in the core session every route opens for its client (`state.rs`), the key (`auth.rs`) and
//! the body limit (`body_limit.rs`) as layers over each door's routes, the frame limit at the
//! WebSocket upgrade.
//!
//! Errors: the core classifies a failure once ([`exai_core::ErrorClass`]); each HTTP door has
//! its own error type rendering it in the door's protocol (`openai/error.rs`,
//! `anthropic/error.rs`, `mcp/error.rs`, all made of a `failure::Failure`), and the shared
//! layers are instantiated per door with it — the router, not the URL, decides the shape.
//!
//! `auth.rs` also holds the `Origin` check; `client.rs` says who a request comes from;
//! `protocols.rs` the versions the tools announce; `main.rs` binds, locks and handles signals.

mod admin;
mod anthropic;
mod auth;
mod body_limit;
mod client;
mod failure;
mod mcp;
mod openai;
mod ops;
mod protocols;
mod reply;
mod responses;
mod state;
mod ui;
mod ws;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use anthropic::AnthropicError;
use failure::DoorError;
use mcp::McpError;
use openai::OpenAiError;

pub use protocols::EXAI_WS_PROTOCOL;
pub use state::{AppState, Shared};

/// The daemon's routes, grouped by front door: each door's group is admitted by the same
/// layers, instantiated with the door's error type so a refusal is in its protocol.
pub fn router(state: AppState) -> Router {
    // `/v1/models` answers in Anthropic's list shape to a request with `anthropic-version`,
    // but it is refused in OpenAI's shape, as it always was.
    let openai = Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/responses", post(responses::create))
        .route("/v1/responses/{id}", get(responses::retrieve).delete(responses::delete))
        .route("/v1/models", get(openai::models));
    let anthropic = Router::new()
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens));
    let mcp = Router::new()
        .nest_service("/mcp", mcp::service(&state))
        .layer(axum::middleware::from_fn(mcp::session_closed_is_no_content));
    // The status page and its JSON: the admin or master token, or loopback when neither is set.
    let status_page = Router::new()
        .route("/ui", get(ui::page))
        .route("/ui/", get(ui::page))
        .route("/ui/api/status", get(ui::status))
        .route("/ui/api/events", get(ui::events))
        .route_layer(middleware::from_fn_with_state(state.clone(), ui::operators));
    let own = Router::new()
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
        .nest("/admin/reload", admin::reload_route(state.clone()))
        .merge(status_page)
        // The daemon's own routes refuse a body over the limit in OpenAI's shape, like their
        // other refusals (`auth::refuse`).
        .layer(middleware::from_fn_with_state(
            state.clone(),
            body_limit::limit_body::<OpenAiError>,
        ));
    Router::new()
        .merge(own)
        .merge(door::<OpenAiError>(openai, &state))
        .merge(door::<AnthropicError>(anthropic, &state))
        .merge(door::<McpError>(mcp, &state))
        .layer(middleware::from_fn(auth::check_origin))
        .with_state(state)
}

/// A front door's `routes`, admitted: the body limit, then the caller's key — each refusing in
/// the protocol of `E`, the door's error type.
fn door<E: DoorError + 'static>(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate::<E>))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            body_limit::limit_body::<E>,
        ))
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
