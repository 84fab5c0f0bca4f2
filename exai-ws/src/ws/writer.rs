//! The one writer task of a WebSocket connection: frames queued by the connection's calls go out
//! in order; the frames that are ready together are written with one flush (a burst of stream
//! chunks or progress notes costs one syscall, not one each), and a lone frame goes at once.
//! A close frame is the last.

use axum::extract::ws::{Message, WebSocket};
use futures::SinkExt;
use futures::stream::SplitSink;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Most frames written before one flush.
const BATCH: usize = 64;

/// Spawns the writer of `sink`, fed by `outbox`.
pub(crate) fn spawn(mut sink: SplitSink<WebSocket, Message>, mut outbox: mpsc::Receiver<Message>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(first) = outbox.recv().await {
            let mut closing = matches!(first, Message::Close(_));
            if sink.feed(first).await.is_err() {
                return;
            }
            let mut fed = 1;
            while !closing && fed < BATCH {
                let Ok(next) = outbox.try_recv() else { break };
                closing = matches!(next, Message::Close(_));
                if sink.feed(next).await.is_err() {
                    return;
                }
                fed += 1;
            }
            if sink.flush().await.is_err() || closing {
                return;
            }
        }
    })
}
