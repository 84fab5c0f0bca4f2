//! MCP over stdio, one JSON-RPC message per line, answering what it cannot take.
//!
//! rmcp's own stdio transport ignores a line that is not JSON (and drops an oversized one in
//! silence), so a client author who sends a broken line waits forever. This transport answers
//! each line as `exai_mcp::read_frame` says (`-32700` for a line that is not JSON, `-32600` for
//! JSON that is not a request; a response is never answered), and a line over
//! `limits.max_frame_bytes` (its bytes before the newline) is dropped unread and answered with
//! `-32600`. The server keeps serving after every one of these. Whatever the bytes, the reader
//! holds at most its read buffer and one line of the limit.
//!
//! `receive` runs inside rmcp's `select!`, which drops it whenever another branch is ready, so
//! it keeps nothing that matters in its own future: a partial line stays in the buffer until its
//! newline arrives, and an error answer is written by a task of its own, awaited by the next
//! `receive` (or `close`) — never lost or cut short, and always out before the end of input.
//!
//! `fuzz.rs` holds the property tests: input in any pieces, any line, any cancellation.

use std::io;
use std::sync::Arc;

use exai_mcp::{INVALID_REQUEST, Incoming, error_response, read_frame};
use rmcp::service::{RoleServer, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

#[cfg(test)]
mod fuzz;

/// The transport: lines in, lines out.
pub(crate) struct Lines<R, W> {
    read: BufReader<R>,
    /// The line being read, without its newline: never more than `max` bytes.
    line: Vec<u8>,
    max: usize,
    /// Skipping the rest of an oversized line.
    discarding: bool,
    write: Arc<Mutex<W>>,
    /// The error answer being written, by its own task so that a dropped `receive` cannot lose
    /// it; the next `receive` waits for it before reading on.
    answering: Option<JoinHandle<io::Result<()>>>,
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
            answering: None,
        }
    }

    /// Reads up to the next newline. Cancellation-safe: between awaits, every byte taken from
    /// the buffer is already in `line` (or skipped, if the line is over `max`).
    async fn read_line(&mut self) -> io::Result<Read> {
        loop {
            let available = self.read.fill_buf().await?;
            if available.is_empty() {
                return Ok(Read::Eof);
            }
            let end = available.iter().position(|b| *b == b'\n');
            let content = end.unwrap_or(available.len());
            if !self.discarding {
                if self.line.len() + content > self.max {
                    self.discarding = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(&available[..content]);
                }
            }
            self.read.consume(end.map_or(content, |i| i + 1));
            if end.is_some() {
                return Ok(if std::mem::take(&mut self.discarding) {
                    Read::Oversized
                } else {
                    Read::Line
                });
            }
        }
    }

    /// Waits for the error answer being written, if any: `false` when it could not be written.
    async fn answered(&mut self) -> bool {
        let Some(answering) = &mut self.answering else {
            return true;
        };
        let written = answering.await;
        self.answering = None;
        match written {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot write stdout");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "the answer's writer failed");
                false
            }
        }
    }
}

/// The answer to a line over `max` bytes.
fn oversized(max: usize) -> Value {
    let message = format!("the line is over this server's limit of {max} bytes (limits.max_frame_bytes); dropped");
    error_response(Value::Null, INVALID_REQUEST, message)
}

/// Writes one line whole: the lock keeps lines from interleaving.
async fn write_line<W: AsyncWrite + Unpin>(write: Arc<Mutex<W>>, bytes: Vec<u8>) -> io::Result<()> {
    let mut write = write.lock().await;
    write.write_all(&bytes).await?;
    write.flush().await
}

impl<R, W> Transport<RoleServer> for Lines<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let write = self.write.clone();
        let bytes = serde_json::to_vec(&item);
        async move {
            let mut bytes = bytes?;
            bytes.push(b'\n');
            write_line(write, bytes).await
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            if !self.answered().await {
                return None;
            }
            let answer = match self.read_line().await {
                Ok(Read::Eof) => return None,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read stdin");
                    return None;
                }
                Ok(Read::Oversized) => oversized(self.max),
                Ok(Read::Line) => {
                    let incoming = read_frame(&self.line);
                    self.line.clear();
                    match incoming {
                        Incoming::Message(message) => return Some(*message),
                        Incoming::Answer(frame) => frame,
                        _ => continue,
                    }
                }
            };
            let mut bytes = answer.to_string().into_bytes();
            bytes.push(b'\n');
            self.answering = Some(tokio::spawn(write_line(self.write.clone(), bytes)));
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.answered().await;
        self.write.lock().await.flush().await
    }
}
