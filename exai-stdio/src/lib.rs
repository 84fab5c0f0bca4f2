//! # exai-stdio
//!
//! The MCP server that Claude Code, Cursor, Codex and other MCP clients spawn: MCP over stdin and
//! stdout, through the official SDK (`rmcp`), with the gateway embedded. No daemon, no port, no
//! translation layer — and so nothing to orphan: the process ends when its client closes stdin,
//! or on SIGTERM/SIGINT, after a short drain.
//!
//! - `exai-mcp` (crate): the MCP handler shared with `exai-ws`: MCP requests → core calls,
//!   core progress and log records → MCP notifications.
//! - `lines.rs`: the transport — a JSON-RPC message per line, with an answer for a line that is
//!   not JSON (-32700), not a request (-32600) or over the frame limit.
//! - `eof.rs`: noticing at once that the client closed stdin.
//! - `main.rs`: logging to stderr, the gateway, the transport, the signals.
//!
//! stdout carries protocol frames only; every log line goes to stderr.

mod eof;
mod lines;

use std::time::Duration;

use exai_core::{FileAccess, Gateway, SessionOptions, ToolSuite};
use exai_mcp::{ExaiServer, LogTap, SessionSource};
use rmcp::ServiceExt;

/// How long in-flight calls may finish after the client goes away or a signal arrives (the
/// process must be gone within 2 s of its client).
pub const DRAIN: Duration = Duration::from_secs(1);

/// Serves MCP on this process's stdin and stdout until the client closes stdin or `shutdown`
/// resolves, then drains the gateway. The one client is counted as `stdio` against
/// `limits.requests_per_minute`, each call has `limits.call_timeout_secs`, and a line over
/// `limits.max_frame_bytes` is refused (the server keeps serving), as at every other front door.
pub async fn serve_stdio(gateway: Gateway, logs: LogTap, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // The client runs as this machine's user: its files are readable, within the roots it
    // declares if it declares any (the handler asks).
    let tools = ToolSuite::new(gateway.clone())
        .with_protocol("mcp", exai_mcp::protocol_versions())
        .with_file_access(FileAccess::local());
    let session = gateway.open_session(SessionOptions::new("stdio").client("stdio"));
    let server = ExaiServer::new(tools, SessionSource::Fixed(session), logs);
    let (read, write) = rmcp::transport::stdio_pipes();
    let transport = lines::Lines::new(read, write, gateway.config().limits.max_frame_bytes);
    let (transport, eof) = eof::EofSignal::new(transport);
    let running = server.serve(transport).await?;
    let cancel = running.cancellation_token();
    tokio::select! {
        reason = running.waiting() => tracing::info!(?reason, "the MCP service ended"),
        _ = eof => tracing::info!("the client closed stdin"),
        () = shutdown => tracing::info!("signal received; shutting down"),
    }
    cancel.cancel();
    gateway.shutdown_within(DRAIN).await;
    Ok(())
}
