//! MCP JSON-RPC over WebSocket: one text frame per message, the same MCP server as exai-stdio
//! (exai-mcp's handler), one gateway session per connection. Frames that are not JSON-RPC are
//! ignored, as the MCP SDKs do on every transport.

use std::net::IpAddr;

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use rmcp::ServiceExt;
use rmcp::service::{RoleServer, RxJsonRpcMessage, TxJsonRpcMessage};

use crate::state::AppState;

pub(crate) async fn run(socket: WebSocket, state: AppState, first: String, ip: IpAddr) {
    let (sink, stream) = socket.split();
    let incoming = futures::stream::once(async move { Ok(Message::Text(first.into())) })
        .chain(stream)
        .take_while(|m| {
            std::future::ready(matches!(
                m,
                Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_) | Message::Binary(_))
            ))
        })
        .filter_map(|m| {
            std::future::ready(match m {
                Ok(Message::Text(t)) => serde_json::from_str::<RxJsonRpcMessage<RoleServer>>(&t).ok(),
                _ => None,
            })
        });
    let outgoing = sink.with(|m: TxJsonRpcMessage<RoleServer>| {
        std::future::ready(
            serde_json::to_string(&m)
                .map(|s| Message::Text(s.into()))
                .map_err(axum::Error::new),
        )
    });
    let session = exai_mcp::SessionSource::Fixed(state.open_session("mcp-ws", ip));
    let server = exai_mcp::ExaiServer::new(state.tools.clone(), session, state.logs.clone());
    let running = match server.serve((outgoing, Box::pin(incoming))).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "MCP over WebSocket ended during initialisation");
            return;
        }
    };
    let cancel = running.cancellation_token();
    tokio::select! {
        _ = running.waiting() => {}
        () = state.shutdown.cancelled() => cancel.cancel(),
    }
}
