//! MCP over stdio, one JSON-RPC message per line, answering what it cannot take.
//!
//! rmcp's own stdio transport ignores a line that is not JSON (and drops an oversized one in
//! silence), so a client author who sends a broken line waits forever. This transport answers
//! each line as `exai_mcp::read_frame` says (`-32700` for a line that is not JSON, `-32600` for
//! JSON that is not a request; a response is never answered), and a line over
//! `limits.max_frame_bytes` is dropped unread and answered with `-32600`. The server keeps
//! serving after every one of these.
//!
//! Reads are cancellation-safe: `receive` runs inside rmcp's `select!`, so a partial line stays
//! in the buffer until its newline arrives.

use std::sync::Arc;

use exai_mcp::{INVALID_REQUEST, Incoming, error_response, read_frame};
use rmcp::service::{RoleServer, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

/// The transport: lines in, lines out.
pub(crate) struct Lines<R, W> {
    read: BufReader<R>,
    line: Vec<u8>,
    max: usize,
    /// Skipping the rest of an oversized line.
    discarding: bool,
    write: Arc<Mutex<W>>,
}

/// What one bounded read found.
enum Read {
    Line,
    Oversized,
    Eof,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Lines<R, W> {
    /// Reads `read`, writes `write`; lines longer than `max` bytes are refused.
    pub fn new(read: R, write: W, max: usize) -> Self {
        Self {
            read: BufReader::new(read),
            line: Vec::new(),
            max,
            discarding: false,
            write: Arc::new(Mutex::new(write)),
        }
    }

    async fn read_line(&mut self) -> std::io::Result<Read> {
        loop {
            let available = self.read.fill_buf().await?;
            if available.is_empty() {
                return Ok(Read::Eof);
            }
            let end = available.iter().position(|b| *b == b'\n');
            let taken = end.map_or(available.len(), |i| i + 1);
            if !self.discarding {
                if self.line.len() + taken > self.max {
                    self.discarding = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(&available[..taken]);
                }
            }
            self.read.consume(taken);
            if end.is_some() {
                return Ok(if std::mem::take(&mut self.discarding) {
                    Read::Oversized
                } else {
                    Read::Line
                });
            }
        }
    }
}

/// Writes one error response.
async fn answer<W: AsyncWrite + Unpin>(write: Arc<Mutex<W>>, frame: Value) -> std::io::Result<()> {
    let mut bytes = frame.to_string().into_bytes();
    bytes.push(b'\n');
    let mut write = write.lock().await;
    write.write_all(&bytes).await?;
    write.flush().await
}

impl<R, W> Transport<RoleServer> for Lines<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let write = self.write.clone();
        async move {
            let mut bytes = serde_json::to_vec(&item)?;
            bytes.push(b'\n');
            let mut write = write.lock().await;
            write.write_all(&bytes).await?;
            write.flush().await
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            let answered = match self.read_line().await {
                Ok(Read::Eof) => return None,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read stdin");
                    return None;
                }
                Ok(Read::Oversized) => {
                    let message = format!(
                        "the line is over this server's limit of {} bytes (limits.max_frame_bytes); dropped",
                        self.max
                    );
                    answer(
                        self.write.clone(),
                        error_response(Value::Null, INVALID_REQUEST, message),
                    )
                    .await
                }
                Ok(Read::Line) => {
                    let incoming = read_frame(&self.line);
                    self.line.clear();
                    match incoming {
                        Incoming::Message(message) => return Some(*message),
                        Incoming::Answer(frame) => answer(self.write.clone(), frame).await,
                        _ => Ok(()),
                    }
                }
            };
            if answered.is_err() {
                return None;
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.write.lock().await.flush().await
    }
}
