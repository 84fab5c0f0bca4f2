//! # exai-mcp
//!
//! The MCP server, once, for every MCP transport exai offers: `exai-stdio` runs it over stdin and
//! stdout, `exai-ws` over streamable HTTP and WebSocket. Following rmcp's own split, the protocol
//! (this handler) is separate from the transports, and the handler only maps MCP to core calls:
//! every tool, limit, memory and usage decision is made in `exai-core`.
//!
//! - `frames.rs`: reading one incoming frame, with the JSON-RPC error a bad one deserves.
//! - `handler.rs`: [`ExaiServer`], the rmcp `ServerHandler` over a [`exai_core::ToolSuite`].
//! - `logs.rs`: [`LogTap`], the tracing layer whose records become MCP log notifications.
//! - `ports.rs`: [`port_holder`], who listens on a busy port (for exai-ws and `exai doctor`).
//! - `telemetry.rs`: [`traces`], the OTLP export of the core's spans when `OTEL_*` asks for it.
//! - `signals.rs`: [`shutdown_signal`] and [`reload_on_sighup`], the signals of the server processes that embed
//!   this crate (`exai-stdio`, `exai-ws`).

mod frames;
mod handler;
mod logs;
mod ports;
mod signals;
mod telemetry;

pub use frames::{INVALID_REQUEST, Incoming, PARSE_ERROR, error_response, read_frame};
pub use handler::{ExaiServer, MAX_PROTOCOL, SessionSource, protocol_versions};
pub use logs::{LogRecord, LogTap};
pub use ports::{PortHolder, port_holder};
pub use signals::{reload_on_sighup, shutdown_signal};
pub use telemetry::{Traces, traces};
