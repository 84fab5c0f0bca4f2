//! The MCP tool suite: what MCP clients see, defined once so every frontend offers the same set.
//!
//! A tool is a name, a description written for an LLM client, a JSON Schema for its input
//! (draft 2020-12, `additionalProperties: false`), and an implementation that goes through the
//! [`Gateway`] — so limits, memory, usage and routing apply to tools exactly as to chat.
//!
//! - `args.rs`: argument parsing against the schema (unknown keys are refused by name).
//! - `schema.rs`: the shared parameter schemas.
//! - `files.rs`: embedding files (newest turn first, within a token budget) and images.
//! - `output.rs`: cutting long output cleanly; refusing oversized prompts.
//! - `progress.rs`: progress reports and the heartbeat.
//! - `chat.rs`, `consensus.rs`, `challenge.rs`, `info.rs` (`listmodels`, `version`, `status`).
//! - `workflow.rs` and `workflows.rs`: the step protocol, and the eleven tools that follow it.
//!
//! Profiles keep tool definitions lean (they cost the client context on every turn):
//! `EXAI_TOOLS=lean|standard|name,name,…` and `EXAI_DISABLED_TOOLS`.

mod args;
mod challenge;
mod chat;
mod consensus;
mod files;
mod info;
mod output;
mod progress;
mod schema;
mod workflow;
mod workflows;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Value, json};

pub use files::{Attachments, attach_files};
pub use info::{EXAI_WS_PROTOCOL, MCP_PROTOCOL_VERSIONS};
pub use progress::{Progress, ProgressSender};

use crate::error::Error;
use crate::gateway::{Gateway, Session};
use crate::request::{ChatEvent, ChatRequest, ChatResponse};
use progress::Reporter;

/// The tools of the `lean` profile.
pub const LEAN: [&str; 9] = [
    "chat",
    "thinkdeep",
    "planner",
    "consensus",
    "codereview",
    "debug",
    "listmodels",
    "version",
    "status",
];

/// A tool as clients list it.
#[derive(Debug, Clone, Serialize)]
pub struct ToolDef {
    /// Its name.
    pub name: &'static str,
    /// What it does, for the client's model.
    pub description: &'static str,
    /// JSON Schema of its arguments.
    #[serde(rename = "inputSchema")]
    pub input_schema: Value,
}

/// What a tool call returns.
#[derive(Debug, Clone, Serialize)]
pub struct ToolOutput {
    /// Text for the client.
    pub text: String,
    /// The machine-readable part: status, model and provider that answered, usage, continuation.
    pub structured: Value,
    /// The call failed in a way the client should see as a tool error (MCP `isError`).
    pub is_error: bool,
}

/// A call that could not be made at all (protocol-level errors).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// No such tool, or disabled by the profile.
    #[error("unknown tool '{name}'; available: {available}")]
    UnknownTool {
        /// What was asked for.
        name: String,
        /// What this server offers.
        available: String,
    },
    /// The arguments do not match the schema.
    #[error("invalid arguments for {tool}: {message}")]
    InvalidArguments {
        /// The tool.
        tool: String,
        /// What is wrong.
        message: String,
    },
}

/// How a tool's run can end badly.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Arguments that do not fit (becomes [`ToolError::InvalidArguments`]).
    Arguments(String),
    /// The gateway failed (becomes an error result the client can act on).
    Gateway(Error),
    /// A tool-level refusal with a status and a message (oversized prompt, unreadable file).
    Refused { status: &'static str, message: String },
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Gateway(e)
    }
}

/// One tool.
#[async_trait]
pub(crate) trait Tool: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// Its schema; `models` is the enum for the `model` parameter.
    fn schema(&self, models: &[String]) -> Value;
    async fn run(&self, ctx: &ToolCtx<'_>, args: Value) -> Result<ToolOutput, Failure>;
}

/// What a running tool can use.
pub(crate) struct ToolCtx<'a> {
    pub session: &'a Session,
    pub reporter: &'a Reporter,
}

impl ToolCtx<'_> {
    pub fn gateway(&self) -> &Gateway {
        self.session.gateway()
    }

    pub fn config(&self) -> &crate::config::ToolsConfig {
        &self.gateway().config().tools
    }

    /// A chat turn, streamed so that progress can be reported as it moves.
    pub async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        use futures::StreamExt;
        let mut stream = self.session.chat_stream(request);
        let mut received = 0usize;
        while let Some(event) = stream.next().await {
            match event? {
                ChatEvent::Status(s) => self.reporter.report(s),
                ChatEvent::Reasoning(_) => self.reporter.streaming("thinking"),
                ChatEvent::Text(t) => {
                    self.reporter.text(&t);
                    received += t.len();
                    self.reporter
                        .streaming(&format!("streaming the reply ({received} characters so far)"));
                }
                ChatEvent::Done(response) => return Ok(response),
            }
        }
        Err(Error::Cancelled)
    }
}

fn all_tools() -> Vec<Arc<dyn Tool>> {
    let mut tools: Vec<Arc<dyn Tool>> = vec![Arc::new(chat::Chat)];
    tools.extend(workflows::all().into_iter().map(|w| Arc::new(w) as Arc<dyn Tool>));
    tools.push(Arc::new(consensus::Consensus));
    tools.push(Arc::new(challenge::Challenge));
    tools.push(Arc::new(info::ListModels));
    tools.push(Arc::new(info::Version));
    tools.push(Arc::new(info::Status));
    tools
}

/// The tools a configuration offers, in a stable order.
pub(crate) fn enabled(config: &crate::config::ToolsConfig) -> Vec<Arc<dyn Tool>> {
    let profile = config.profile.trim();
    let wanted: Option<Vec<&str>> = match profile {
        "standard" | "all" | "" => None,
        "lean" => Some(LEAN.to_vec()),
        list => Some(list.split(',').map(str::trim).collect()),
    };
    all_tools()
        .into_iter()
        .filter(|t| wanted.as_ref().is_none_or(|w| w.contains(&t.name())))
        .filter(|t| !config.disabled.iter().any(|d| d == t.name()))
        .collect()
}

impl Gateway {
    /// The tools this gateway offers (after profile and disabled list).
    pub fn tools(&self) -> Vec<ToolDef> {
        let mut models = vec!["auto".to_string()];
        models.extend(self.catalog().names());
        self.inner_tools()
            .iter()
            .map(|t| ToolDef {
                name: t.name(),
                description: t.description(),
                input_schema: t.schema(&models),
            })
            .collect()
    }

    /// Runs a tool in the built-in session.
    pub async fn call_tool(
        &self,
        name: &str,
        args: Value,
        progress: Option<ProgressSender>,
    ) -> Result<ToolOutput, ToolError> {
        self.default_session().call_tool(name, args, progress).await
    }
}

impl Session {
    /// Runs a tool in this session. Progress (if a sender is given) reports each stage and a
    /// heartbeat while the call runs.
    pub async fn call_tool(
        &self,
        name: &str,
        args: Value,
        progress: Option<ProgressSender>,
    ) -> Result<ToolOutput, ToolError> {
        let tools = self.gateway().inner_tools();
        let Some(tool) = tools.iter().find(|t| t.name() == name) else {
            let available = tools.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ");
            return Err(ToolError::UnknownTool {
                name: name.to_string(),
                available,
            });
        };
        let config = &self.gateway().config().tools;
        let reporter = Reporter::new(progress);
        let ctx = ToolCtx {
            session: self,
            reporter: &reporter,
        };
        let run = tool.run(&ctx, args);
        let result = tokio::select! {
            r = run => r,
            _ = reporter.heartbeat(config.heartbeat) => unreachable_heartbeat(),
        };
        match result {
            Ok(out) => Ok(output::limit(out, config.max_output_chars)),
            Err(Failure::Arguments(message)) => Err(ToolError::InvalidArguments {
                tool: name.to_string(),
                message,
            }),
            Err(Failure::Refused { status, message }) => Ok(error_output(status, message)),
            Err(Failure::Gateway(e)) => Ok(gateway_error(&e)),
        }
    }
}

/// The heartbeat loops forever; this arm of the select never completes.
fn unreachable_heartbeat() -> Result<ToolOutput, Failure> {
    Err(Failure::Gateway(Error::Internal(
        "the progress heartbeat stopped".into(),
    )))
}

fn error_output(status: &'static str, message: String) -> ToolOutput {
    ToolOutput {
        structured: json!({"status": status, "error": message}),
        text: message,
        is_error: true,
    }
}

/// A gateway failure as a tool result a person can act on.
fn gateway_error(e: &Error) -> ToolOutput {
    let mut structured = json!({"status": "error", "error": e.to_string(), "retryable": e.is_retryable()});
    if let Some(after) = e.retry_after() {
        structured["retry_after_secs"] = json!(after.as_secs().max(1));
    }
    if let Error::Provider(p) = e {
        structured["provider"] = json!(p.provider);
        structured["model"] = json!(p.model);
        structured["kind"] = json!(p.label());
    }
    ToolOutput {
        text: e.to_string(),
        structured,
        is_error: true,
    }
}

/// A model-backed result: the body, then a footer saying who answered, what it cost, how to
/// continue, and which files were left out.
pub(crate) fn reply(status: &str, r: &ChatResponse, prepared: &files::Prepared, body: String) -> ToolOutput {
    let mut text = body;
    text.push_str(&format!(
        "\n\n---\n[{} via {} · {} tokens in, {} out · ${:.6} · continuation_id: {}]",
        r.model, r.provider, r.usage.input_tokens, r.usage.output_tokens, r.cost_usd, r.continuation_id
    ));
    if !prepared.omitted.is_empty() {
        text.push_str(&format!("\n[files left out: {}]", prepared.omitted.join("; ")));
    }
    let mut structured = response_meta(status, r);
    structured["files_embedded"] = json!(prepared.embedded);
    structured["files_omitted"] = json!(prepared.omitted);
    ToolOutput {
        text,
        structured,
        is_error: false,
    }
}

/// The structured part every model-backed result carries.
pub(crate) fn response_meta(status: &str, r: &ChatResponse) -> Value {
    json!({
        "status": status,
        "continuation_id": r.continuation_id,
        "provider": r.provider,
        "model": r.model,
        "usage": r.usage,
        "cost_usd": r.cost_usd,
        "fallbacks": r.fallbacks,
    })
}
