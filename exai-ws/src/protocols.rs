//! The protocols this daemon speaks besides HTTP, with the versions its tools announce
//! (`server_info`): MCP's, and the EXAI WebSocket protocol's. Kept apart from `ws/` so that the
//! shared state can announce them without depending on a front door.

use exai_core::ToolSuite;

/// Version of the EXAI WebSocket protocol (`docs/exai-ws-protocol.md`).
pub const EXAI_WS_PROTOCOL: &str = "1";

/// `tools`, announcing the protocols this daemon serves them over.
pub(crate) fn announced(tools: ToolSuite) -> ToolSuite {
    tools
        .with_protocol("mcp", exai_mcp::protocol_versions())
        .with_protocol("exai_ws", vec![EXAI_WS_PROTOCOL.to_string()])
}
