//! MCP over stdio, one JSON-RPC message per line, answering what it cannot take.
//!
//! rmcp's own stdio transport ignores a line that is not JSON (and drops an oversized one in
//! silence), so a client author who sends a broken line waits forever. This transport answers
//! as JSON-RPC 2.0 §5.1 says: a line that is not JSON gets `-32700` (parse error) and well-formed
//! JSON that is not a request or notification gets `-32600` (invalid request), both with the id
//! when one can be read, else `null`; a line over `limits.max_frame_bytes` is dropped unread and
//! answered with `-32600`. A response is never answered (so two peers cannot start an error
//! storm), and the server keeps serving after every one of these.
//!
//! Reads are cancellation-safe: `receive` runs inside rmcp's `select!`, so a partial line stays
//! in the buffer until its newline arrives.

use std::sync::Arc;

use rmcp::service::{RoleServer, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

/// JSON-RPC's "the input is not JSON".
const PARSE_ERROR: i64 = -32700;
/// JSON-RPC's "this JSON is not a valid request".
const INVALID_REQUEST: i64 = -32600;

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

    /// The message on the line just read, or the error response it deserves.
    fn parse(&self) -> Result<Option<RxJsonRpcMessage<RoleServer>>, (Value, i64, String)> {
        let text = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let value: Value =
            serde_json::from_slice(text).map_err(|e| (Value::Null, PARSE_ERROR, format!("Parse error: {e}")))?;
        let id = value.get("id").cloned().unwrap_or(Value::Null);
        let is_response =
            value.get("method").is_none() && (value.get("result").is_some() || value.get("error").is_some());
        match serde_json::from_value::<RxJsonRpcMessage<RoleServer>>(value) {
            Ok(message) => Ok(Some(message)),
            // A response that fits no request of ours is dropped, never answered.
            Err(_) if is_response => Ok(None),
            Err(e) => Err((id, INVALID_REQUEST, format!("Invalid request: {e}"))),
        }
    }
}

/// Writes one error response.
async fn answer<W: AsyncWrite + Unpin>(
    write: Arc<Mutex<W>>,
    id: Value,
    code: i64,
    message: String,
) -> std::io::Result<()> {
    let frame = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
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
                    answer(self.write.clone(), Value::Null, INVALID_REQUEST, message).await
                }
                Ok(Read::Line) => {
                    let parsed = self.parse();
                    self.line.clear();
                    match parsed {
                        Ok(Some(message)) => return Some(message),
                        Ok(None) => Ok(()),
                        Err((id, code, message)) => answer(self.write.clone(), id, code, message).await,
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
