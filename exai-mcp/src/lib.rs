//! # exai-mcp
//!
//! The MCP server, once, for every MCP transport exai offers: `exai-stdio` runs it over stdin and
//! stdout, `exai-ws` over streamable HTTP and WebSocket. Following rmcp's own split, the protocol
//! (this handler) is separate from the transports, and the handler only maps MCP to core calls:
//! every tool, limit, memory and usage decision is made in `exai-core`.

mod handler;

pub use handler::{ExaiServer, MAX_PROTOCOL};
