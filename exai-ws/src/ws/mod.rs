//! WebSocket at `/` and `/ws`. The first frame decides the dialect: a frame with `jsonrpc` is
//! MCP JSON-RPC (`mcp_ws.rs`, the same MCP server as exai-stdio, one session per connection); a
//! frame with `op` is the EXAI protocol (`exai_protocol.rs`, the old daemon's, so existing
//! clients keep working; its frames are read by `frame.rs`). Anything else closes with 4000.
//!
//! Limits: connections in total and per address (over them: close 1008), frame and message size
//! (over it: the WebSocket layer closes with 1009), and — through the core session each
//! connection opens for its address — the client's request rate and each call's deadline.

mod exai_protocol;
mod frame;
mod mcp_ws;
mod writer;

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use crate::state::{AppState, ConnectionGuard};
use exai_core::Caller;

/// Initial read buffer per connection.
const READ_BUFFER: usize = 4 * 1024;

/// How long a new connection may take to send its first frame.
const FIRST_FRAME: Duration = Duration::from_secs(30);

/// Close codes of the EXAI protocol.
pub(crate) mod close {
    /// The frame was not JSON (or not a known dialect).
    pub const INVALID_JSON: u16 = 4000;
    /// The first EXAI frame was not `hello`.
    pub const NO_HELLO: u16 = 4001;
    /// Missing or wrong token.
    pub const UNAUTHORIZED: u16 = 4003;
    /// Over the connection limits.
    pub const POLICY: u16 = 1008;
    /// A frame over the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// The daemon is going away.
    pub const GOING_AWAY: u16 = 1001;
}

pub(crate) async fn close_with(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.to_string().into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// Whether a read failed on a frame or message over the size limit (the one read error worth
/// answering, with close 1009).
pub(crate) fn is_too_big(error: axum::Error) -> bool {
    matches!(
        error.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

pub(crate) async fn upgrade(State(state): State<AppState>, request: Request) -> Response {
    let ip = crate::client::client_ip(request.extensions());
    // The token of the upgrade request (EXAI's `hello.token` may still name another).
    // Only a token that was sent counts as a failure: an EXAI client may send it in `hello`.
    let header = match crate::auth::presented(request.headers()) {
        Some(token) => state.gateway.authenticate_from(&ip.to_string(), Some(token)).await,
        None => state.gateway.authenticate(None).await,
    };
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let max = state.gateway.config().limits.max_frame_bytes;
    let guard = state.admit(ip);
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        // Buffers grow with the traffic; starting small keeps an idle connection cheap (the
        // 128 KiB default made 1,000 idle sessions cost ~140 MB).
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            // Tracked: axum's graceful shutdown does not wait for upgraded connections, and the
            // daemon must not exit before they have sent their last results and close frames.
            let tracker = state.connections_tracker.clone();
            tracker.track_future(connection(socket, state, ip, header, guard))
        })
}

async fn connection(
    mut socket: WebSocket,
    state: AppState,
    ip: IpAddr,
    header: Result<Caller, exai_core::Error>,
    guard: Option<ConnectionGuard>,
) {
    let Some(_guard) = guard else {
        close_with(&mut socket, close::POLICY, "over the connection limits; retry later").await;
        return;
    };
    let first = loop {
        match tokio::time::timeout(FIRST_FRAME, socket.recv()).await {
            Ok(Some(Ok(Message::Text(text)))) => break text.to_string(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(Message::Binary(_)))) => {
                close_with(&mut socket, close::INVALID_JSON, "frames are JSON text").await;
                return;
            }
            Ok(Some(Ok(Message::Close(_))) | Some(Err(_)) | None) => return,
            Err(_) => {
                close_with(&mut socket, close::NO_HELLO, "no first frame").await;
                return;
            }
        }
    };
    let value: serde_json::Value = match serde_json::from_str(&first) {
        Ok(v) => v,
        Err(e) => {
            close_with(&mut socket, close::INVALID_JSON, &format!("invalid JSON: {e}")).await;
            return;
        }
    };
    if value.get("jsonrpc").is_some() {
        let caller = match header {
            Ok(caller) => caller,
            Err(e) => {
                // A close reason is at most 123 bytes.
                let reason: String = format!("send Authorization: Bearer <key> with the upgrade ({e})")
                    .chars()
                    .take(120)
                    .collect();
                close_with(&mut socket, close::UNAUTHORIZED, &reason).await;
                return;
            }
        };
        mcp_ws::run(socket, state, first, ip, caller).await;
    } else if value.get("op").is_some() {
        exai_protocol::run(socket, state, value, ip, header).await;
    } else {
        close_with(
            &mut socket,
            close::INVALID_JSON,
            "unknown dialect: send an EXAI `op` frame or MCP JSON-RPC",
        )
        .await;
    }
}
