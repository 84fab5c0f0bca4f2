//! MCP JSON-RPC over WebSocket: one text frame per message, the same MCP server as exai-stdio
//! (exai-mcp's handler), one gateway session per connection. A frame that is not JSON is
//! answered with -32700 and JSON that is not a request with -32600 (`exai_mcp::read_frame`, as
//! on stdio); a response is never answered; the connection keeps serving.

use std::net::IpAddr;

use axum::extract::ws::{Message, WebSocket};
use exai_mcp::{Incoming, read_frame};
use futures::{SinkExt, StreamExt};
use rmcp::ServiceExt;
use rmcp::service::{RoleServer, TxJsonRpcMessage};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use crate::state::AppState;

/// Frames queued for the connection's writer (the server's and the error answers).
const OUTBOX: usize = 64;

pub(crate) async fn run(socket: WebSocket, state: AppState, first: String, ip: IpAddr, caller: exai_core::Caller) {
    let (sink, stream) = socket.split();
    let (out, outbox) = mpsc::channel::<Message>(OUTBOX);
    let writer = super::writer::spawn(sink, outbox);
    let answers = out.clone();
    let incoming = futures::stream::once(async move { Ok(Message::Text(first.into())) })
        .chain(stream)
        .take_while(|m| {
            std::future::ready(matches!(
                m,
                Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_) | Message::Binary(_))
            ))
        })
        .filter_map(move |m| {
            let message = match m {
                Ok(Message::Text(t)) => match read_frame(t.as_bytes()) {
                    Incoming::Message(message) => Some(*message),
                    Incoming::Answer(frame) => {
                        let _ = answers.try_send(Message::Text(frame.to_string().into()));
                        None
                    }
                    _ => None,
                },
                _ => None,
            };
            std::future::ready(message)
        });
    let outgoing = PollSender::new(out)
        .sink_map_err(|_| std::io::Error::other("the WebSocket writer is gone"))
        .with(|m: TxJsonRpcMessage<RoleServer>| {
            std::future::ready(
                serde_json::to_string(&m)
                    .map(|s| Message::Text(s.into()))
                    .map_err(std::io::Error::other),
            )
        });
    let session = exai_mcp::SessionSource::Fixed(state.open_session("mcp-ws", ip, caller));
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
    // The last frames go out once the service has let go of its senders.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
}
