//! The MCP tool suite: what MCP clients see, defined once so every frontend offers the same set.
//!
//! A tool is a name, a description written for an LLM client, a JSON Schema for its input
//! (draft 2020-12, `additionalProperties: false`), and an implementation that goes through the
//! [`Gateway`] — so limits, memory, usage and routing apply to tools exactly as to chat.
//!
//! - `args.rs`: argument parsing against the schema (unknown keys are refused by name).
//! - `schema.rs`: the shared parameter schemas.
//! - `access.rs`: [`FileAccess`], which files the tools may read (all of them locally; below
//!   `tools.file_roots` on a daemon).
//! - `files.rs`: embedding files (newest turn first, within a token budget) and images.
//! - `output.rs`: cutting long output cleanly; refusing oversized prompts.
//! - `progress.rs`: progress reports and the heartbeat.
//! - `chat.rs`, `consensus.rs`, `challenge.rs`, `info.rs` (`listmodels`, `version`, `status`).
//!   `chat` and `consensus` take the response cache's `cache` argument (`use`, `no-cache`,
//!   `no-store`, `bypass`): they answer a free prompt, the calls worth asking again. The
//!   workflow tools do not: their expert call ends a step-by-step investigation that is rarely
//!   repeated word for word, and every parameter costs the client context on every turn.
//! - `workflow.rs` and `workflows.rs`: the step protocol, and the eleven tools that follow it.
//!
//! Profiles keep tool definitions lean (they cost the client context on every turn):
//! `EXAI_TOOLS=lean|standard|name,name,…` and `EXAI_DISABLED_TOOLS`.

mod access;
mod args;
mod challenge;
mod chat;
mod consensus;
mod files;
mod info;
mod output;
mod progress;
mod result;
mod schema;
mod suite;
mod workflow;
mod workflows;

use async_trait::async_trait;
use serde_json::{Value, json};

pub use access::FileAccess;
pub use files::{AttachError, attach_files};
pub use progress::{Progress, ProgressSender};
pub use result::{FailureKind, ToolDef, ToolError, ToolFailure, ToolOutput};
pub use suite::ToolSuite;

use crate::error::Error;
use crate::gateway::{Gateway, Session};
use crate::request::{ChatEvent, ChatRequest, ChatResponse};
use crate::wire::CacheStatus;
use progress::Reporter;

/// Every tool's name, in the order `tools/list` gives them: what `EXAI_TOOLS` and
/// `EXAI_DISABLED_TOOLS` may name (the configuration refuses any other).
pub const NAMES: [&str; 17] = [
    "chat",
    "thinkdeep",
    "planner",
    "codereview",
    "precommit",
    "debug",
    "secaudit",
    "docgen",
    "analyze",
    "refactor",
    "tracer",
    "testgen",
    "consensus",
    "challenge",
    "listmodels",
    "version",
    "status",
];

/// The profiles `EXAI_TOOLS` may name instead of a list of tools.
pub const PROFILES: [&str; 3] = ["lean", "standard", "all"];

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

/// How a tool's run can end badly.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Arguments that do not fit.
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
    pub suite: &'a ToolSuite,
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
        let mut stream = self.session.stream_within_call(request);
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

/// A model-backed result: the body, then a footer saying who answered, what it cost, how to
/// continue, and which files were left out.
pub(crate) fn reply(status: &str, r: &ChatResponse, prepared: &files::Prepared, body: String) -> ToolOutput {
    let mut text = body;
    let cached = if r.cache == Some(CacheStatus::Hit) {
        " (from the cache)"
    } else {
        ""
    };
    text.push_str(&format!(
        "\n\n---\n[{} via {} · {} tokens in, {} out · ${:.6}{cached} · continuation_id: {}]",
        r.model, r.provider, r.usage.input_tokens, r.usage.output_tokens, r.cost_usd, r.continuation_id
    ));
    if !prepared.omitted.is_empty() {
        text.push_str(&format!("\n[files left out: {}]", prepared.omitted.join("; ")));
    }
    let mut structured = response_meta(status, r);
    structured["files_embedded"] = json!(prepared.embedded);
    structured["files_omitted"] = json!(prepared.omitted);
    ToolOutput::ok(text, structured)
}

/// The structured part every model-backed result carries (`cache`: `hit` or `miss`, when the
/// response cache was asked).
pub(crate) fn response_meta(status: &str, r: &ChatResponse) -> Value {
    let mut meta = json!({
        "status": status,
        "continuation_id": r.continuation_id,
        "provider": r.provider,
        "model": r.model,
        "usage": r.usage,
        "cost_usd": r.cost_usd,
        "fallbacks": r.fallbacks,
    });
    if let Some(cache) = r.cache {
        meta["cache"] = json!(cache);
    }
    meta
}
