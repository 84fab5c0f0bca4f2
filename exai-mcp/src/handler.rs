//! The MCP handler: each request becomes one core call, each core event one MCP message.
//!
//! - `tools/list` → `ToolSuite::list` (honouring the profile).
//! - `tools/call` → `ToolSuite::call` in the client's session, with the client's `progressToken`
//!   receiving every progress report, and `notifications/cancelled` (rmcp cancels the request's
//!   token) dropping the call — which cancels the upstream request and frees its permits.
//! - `logging/setLevel` → from then on, log records at or above that level are sent as
//!   `notifications/message`.
//! - A client that declares the `roots` capability is asked for them (`roots/list`) at its first
//!   tool call and again after `notifications/roots/list_changed`; a suite that reads local files
//!   (exai-stdio) then reads only below them. The rule is the core's
//!   ([`exai_core::FileAccess::within_client_roots`]); a daemon's suite keeps its own roots.
//!
//! A tool's own failure (provider down, bad key, unreadable file, arguments that do not fit, the
//! client over its rate, a call past its deadline) comes back as a result with `isError: true`,
//! so the client's model can read it and act; only an unknown tool is a protocol error (-32602).
//! Which failure it was is decided in the core (`ToolOutput::failure`); nothing here reads it
//! back out of JSON.

#![allow(deprecated)] // MCP logging is deprecated by SEP-2577 but still part of the versions we serve.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exai_core::{Session, ToolOutput, ToolSuite};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion,
    ServerCapabilities, ServerConfig, SetLevelRequestParams, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, Peer, RoleServer, ServerHandler};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc};

use crate::logs::{LogRecord, LogTap};

/// The newest protocol version served (the last with the `initialize` handshake).
pub const MAX_PROTOCOL: ProtocolVersion = ProtocolVersion::V_2025_11_25;

/// The MCP protocol versions served, oldest first (rmcp's list up to [`MAX_PROTOCOL`]).
pub fn protocol_versions() -> Vec<String> {
    ProtocolVersion::known_up_to(&MAX_PROTOCOL)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Which gateway session a request runs in.
#[derive(Clone)]
pub enum SessionSource {
    /// One session for the whole connection (stdio, a WebSocket): its client's rate and
    /// deadline.
    Fixed(Session),
    /// A session chosen per request from its HTTP request (MCP over streamable HTTP: the
    /// client's address decides, as for every HTTP route of the daemon).
    PerRequest(Arc<dyn Fn(&http::request::Parts) -> Session + Send + Sync>),
}

/// How long the client has to answer `roots/list` before the call goes on without its roots.
const ROOTS_TIMEOUT: Duration = Duration::from_secs(5);

/// The server: one per MCP connection.
#[derive(Clone)]
pub struct ExaiServer {
    tools: ToolSuite,
    sessions: SessionSource,
    logs: LogTap,
    /// The level the client asked for with `logging/setLevel`; `None` sends no log messages.
    level: Arc<Mutex<Option<LoggingLevel>>>,
    /// `tools` narrowed to the roots the client declared, once asked; cleared when they change.
    narrowed: Arc<tokio::sync::Mutex<Option<ToolSuite>>>,
}

impl ExaiServer {
    /// A server running `tools` in the sessions `sessions` gives, forwarding records from `logs`
    /// once the client sets a level.
    pub fn new(tools: ToolSuite, sessions: SessionSource, logs: LogTap) -> Self {
        Self {
            tools,
            sessions,
            logs,
            level: Arc::new(Mutex::new(None)),
            narrowed: Arc::default(),
        }
    }

    /// The tools for this client: narrowed to its roots when it declares some and the tools read
    /// local files. A client that does not answer `roots/list` is logged and not narrowed (its
    /// user's files are theirs); it is asked again at the next call.
    async fn tools_for(&self, peer: &Peer<RoleServer>) -> ToolSuite {
        let declares_roots = peer.peer_info().is_some_and(|info| info.capabilities.roots.is_some());
        if !declares_roots || !self.tools.file_access().is_local() {
            return self.tools.clone();
        }
        let mut narrowed = self.narrowed.lock().await;
        if let Some(tools) = narrowed.as_ref() {
            return tools.clone();
        }
        match tokio::time::timeout(ROOTS_TIMEOUT, peer.list_roots()).await {
            Ok(Ok(list)) => {
                let uris: Vec<String> = list.roots.into_iter().map(|r| r.uri).collect();
                let tools = self.tools.within_client_roots(&uris);
                *narrowed = Some(tools.clone());
                tools
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the client declares roots but roots/list failed; files are not narrowed");
                self.tools.clone()
            }
            Err(_) => {
                tracing::warn!("the client declares roots but did not answer roots/list; files are not narrowed");
                self.tools.clone()
            }
        }
    }

    /// The session this request runs in.
    fn session(&self, context: &RequestContext<RoleServer>) -> Result<Session, McpError> {
        match &self.sessions {
            SessionSource::Fixed(session) => Ok(session.clone()),
            SessionSource::PerRequest(choose) => context
                .extensions
                .get::<http::request::Parts>()
                .map(|parts| choose(parts))
                .ok_or_else(|| McpError::internal_error("no HTTP request to choose a session by", None)),
        }
    }
}

fn to_mcp_tool(def: exai_core::ToolDef) -> Tool {
    let schema: Map<String, Value> = match def.input_schema {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    Tool::new(def.name, def.description, Arc::new(schema))
}

fn to_result(out: ToolOutput) -> CallToolResult {
    let failed = out.is_error();
    let content = vec![ContentBlock::text(out.text)];
    let mut result = if failed {
        CallToolResult::error(content)
    } else {
        CallToolResult::success(content)
    };
    result.structured_content = Some(out.structured);
    result
}

fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

fn mcp_level(level: tracing::Level) -> LoggingLevel {
    match level {
        tracing::Level::ERROR => LoggingLevel::Error,
        tracing::Level::WARN => LoggingLevel::Warning,
        tracing::Level::INFO => LoggingLevel::Info,
        _ => LoggingLevel::Debug,
    }
}

/// Sends log records at or above the client's level, for as long as the connection lives.
async fn forward_logs(
    peer: Peer<RoleServer>,
    mut records: broadcast::Receiver<LogRecord>,
    level: Arc<Mutex<Option<LoggingLevel>>>,
) {
    loop {
        let record = match records.recv().await {
            Ok(r) => r,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let wanted = level.lock().ok().and_then(|l| *l);
        let record_level = mcp_level(record.level);
        if wanted.is_none_or(|w| rank(record_level) < rank(w)) {
            continue;
        }
        let mut data = record.fields;
        data.insert("message".into(), Value::String(record.message));
        let param = LoggingMessageNotificationParam::new(record_level, Value::Object(data)).with_logger(record.target);
        if peer.notify_logging_message(param).await.is_err() {
            return;
        }
    }
}

impl ServerHandler for ExaiServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder().enable_logging().enable_tools().build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("exai", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "exai: GLM, Kimi, MiniMax and OpenAI-compatible models behind one gateway. Use `chat` for second \
                 opinions, the workflow tools (debug, codereview, thinkdeep, …) step by step, and pass \
                 continuation_id to continue any conversation. `status` shows health, usage and cost.",
            )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&MAX_PROTOCOL))
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        tokio::spawn(forward_logs(context.peer, self.logs.subscribe(), self.level.clone()));
    }

    async fn on_roots_list_changed(&self, _context: NotificationContext<RoleServer>) {
        *self.narrowed.lock().await = None;
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let Ok(mut level) = self.level.lock() {
            *level = Some(request.level);
        }
        Ok(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let tools = self.tools.list().into_iter().map(to_mcp_tool).collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let session = self.session(&context)?;
        let args = Value::Object(request.arguments.unwrap_or_default());
        let (progress, mut reports) = mpsc::unbounded_channel::<exai_core::Progress>();
        if let Some(token) = context.meta.get_progress_token() {
            let peer = context.peer.clone();
            tokio::spawn(async move {
                while let Some(p) = reports.recv().await {
                    if p.delta.is_some() {
                        continue; // reply text arrives with the result; progress carries stages
                    }
                    let param =
                        ProgressNotificationParam::new(token.clone(), p.progress as f64).with_message(p.message);
                    if peer.notify_progress(param).await.is_err() {
                        return;
                    }
                }
            });
        }
        let trace = trace_of(&context);
        let call = async {
            let tools = self.tools_for(&context.peer).await;
            tools
                .call_traced(&session, &request.name, args, Some(progress), trace)
                .await
        };
        let outcome = tokio::select! {
            () = context.ct.cancelled() => return Err(McpError::internal_error("request cancelled", None)),
            outcome = call => outcome,
        };
        match outcome {
            Ok(out) => Ok(to_result(out).into()),
            // An unknown tool: the one failure that is the protocol's, not the tool's.
            Err(e) => Err(McpError::invalid_params(e.to_string(), None)),
        }
    }
}

/// The caller's W3C trace: `_meta.traceparent` (MCP's SEP-414), else the HTTP request's
/// `traceparent` header (MCP over streamable HTTP).
fn trace_of(context: &RequestContext<RoleServer>) -> Option<exai_core::TraceContext> {
    if let Some(parent) = context.meta.get_traceparent() {
        let state = context.meta.get_tracestate().map(str::to_string);
        return Some(exai_core::TraceContext::new(parent, state));
    }
    exai_core::TraceContext::from_headers(&context.extensions.get::<http::request::Parts>()?.headers)
}
