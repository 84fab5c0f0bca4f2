//! [`ToolSuite`]: the MCP tools on top of a [`Gateway`] — built once by a front door from the
//! gateway it serves, and shared by every client of that front door. The front door also says
//! which files the tools may read ([`FileAccess`]): by default only below `tools.file_roots`, as a
//! daemon must; exai-stdio and `exai call` choose [`FileAccess::local`].
//!
//! The suite depends on the gateway, never the reverse: the gateway knows nothing of tools,
//! prompts or the step protocol. A call is admitted once (the session's rate, the caller's key:
//! its tool allow-list, budget and limits — whatever turns the tool then makes), runs within the session's deadline, reports progress with a heartbeat, and
//! ends in a [`ToolOutput`] whose failure, if any, is typed.

use std::sync::Arc;

use serde_json::Value;
use tracing::Instrument;

use super::progress::Reporter;
use super::result::failure_output;
use super::{Failure, FileAccess, LEAN, Tool, ToolCtx, ToolDef, ToolError, ToolOutput, output};
use crate::error::Error;
use crate::gateway::{Gateway, Session};
use crate::trace::{self, TraceContext};

/// The tools a gateway's configuration offers (profile and disabled list applied), and the
/// protocols the front door serving them speaks (for the `version` tool). Cheap to clone.
#[derive(Clone)]
pub struct ToolSuite {
    gateway: Gateway,
    tools: Arc<[Arc<dyn Tool>]>,
    /// Protocol name → versions, as the `version` tool reports them.
    protocols: Arc<Vec<(String, Vec<String>)>>,
    /// Which files `files`, `relevant_files` and `images` may name.
    files: FileAccess,
}

impl ToolSuite {
    /// The tools `gateway`'s configuration offers, reading files only below its
    /// `tools.file_roots` ([`FileAccess::configured`]).
    pub fn new(gateway: Gateway) -> Self {
        let tools = enabled(&gateway.config().tools).into();
        let files = FileAccess::configured(gateway.config());
        Self {
            gateway,
            tools,
            protocols: Arc::default(),
            files,
        }
    }

    /// These tools reading the files `access` allows.
    pub fn with_file_access(mut self, access: FileAccess) -> Self {
        self.files = access;
        self
    }

    /// These tools narrowed to the roots an MCP client declared (`file://` URIs), when they
    /// read local files; see [`FileAccess::within_client_roots`].
    pub fn within_client_roots(&self, uris: &[String]) -> Self {
        let files = self.files.within_client_roots(uris, self.gateway.config());
        self.clone().with_file_access(files)
    }

    /// Which files the tools may read.
    pub fn file_access(&self) -> &FileAccess {
        &self.files
    }

    /// Adds a protocol the front door speaks, with its versions, to what `version` reports.
    pub fn with_protocol(mut self, name: &str, versions: Vec<String>) -> Self {
        Arc::make_mut(&mut self.protocols).push((name.to_string(), versions));
        self
    }

    /// The gateway the tools run on.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The protocols registered with [`ToolSuite::with_protocol`].
    pub(crate) fn protocols(&self) -> &[(String, Vec<String>)] {
        &self.protocols
    }

    /// The tools, as clients list them.
    pub fn list(&self) -> Vec<ToolDef> {
        let mut models = vec!["auto".to_string()];
        models.extend(self.gateway.catalog().names());
        self.tools
            .iter()
            .map(|t| ToolDef {
                name: t.name(),
                description: t.description(),
                input_schema: t.schema(&models),
            })
            .collect()
    }

    /// Runs a tool for `session`'s client. Progress (if a sender is given) reports each stage
    /// and a heartbeat while the call runs. Every failure but an unknown tool is a result
    /// with a typed [`super::ToolFailure`].
    pub async fn call(
        &self,
        session: &Session,
        name: &str,
        args: Value,
        progress: Option<super::ProgressSender>,
    ) -> Result<ToolOutput, ToolError> {
        self.call_traced(session, name, args, progress, None).await
    }

    /// [`ToolSuite::call`], continuing the caller's trace (an MCP request's `_meta.traceparent`,
    /// or its HTTP header): the call's span is a child of it.
    pub async fn call_traced(
        &self,
        session: &Session,
        name: &str,
        args: Value,
        progress: Option<super::ProgressSender>,
        trace: Option<TraceContext>,
    ) -> Result<ToolOutput, ToolError> {
        let Some(tool) = self.tools.iter().find(|t| t.name() == name) else {
            let available = self.tools.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ");
            return Err(ToolError::UnknownTool {
                name: name.to_string(),
                available,
            });
        };
        // One span per tool call (`execute_tool {name}`); the tool's turns are its children.
        let span = trace::request_span(trace::Operation::Tool { name }, trace.as_ref(), None);
        let output = self
            .run_tool(session, tool.as_ref(), name, args, progress)
            .instrument(span.clone())
            .await;
        if output.failure.is_some() {
            let status = output.structured["status"].as_str().unwrap_or("_OTHER").to_string();
            trace::record_error(&span, &status);
        }
        Ok(output)
    }

    async fn run_tool(
        &self,
        session: &Session,
        tool: &dyn Tool,
        name: &str,
        args: Value,
        progress: Option<super::ProgressSender>,
    ) -> ToolOutput {
        // Held until the call ends: the key's place among its calls in flight.
        let _pass = match session.admit_call(Some(name), None).await {
            Ok(pass) => pass,
            Err(e) => return failure_output(name, Failure::Gateway(e)),
        };
        if let Some(key) = session.caller().key_name() {
            tracing::Span::current().record("exai.key", key);
        }
        let config = &self.gateway.config().tools;
        let reporter = Reporter::new(progress);
        let ctx = ToolCtx {
            session,
            reporter: &reporter,
            suite: self,
        };
        let run = async {
            tokio::select! {
                r = tool.run(&ctx, args) => r,
                () = reporter.heartbeat(config.heartbeat) => Err(Failure::Gateway(Error::Internal(
                    "the progress heartbeat stopped".into(),
                ))),
            }
        };
        let result = session.within_deadline(run).await;
        match result {
            Ok(out) => output::limit(out, config.max_output_chars),
            Err(failure) => failure_output(name, failure),
        }
    }

    /// Runs a tool in the gateway's built-in session, as an embedder or a one-off command does
    /// (no client rate; the configured deadline).
    pub async fn call_embedded(
        &self,
        name: &str,
        args: Value,
        progress: Option<super::ProgressSender>,
    ) -> Result<ToolOutput, ToolError> {
        self.call(&self.gateway.default_session(), name, args, progress).await
    }
}

fn all_tools() -> Vec<Arc<dyn Tool>> {
    let mut tools: Vec<Arc<dyn Tool>> = vec![Arc::new(super::chat::Chat)];
    tools.extend(
        super::workflows::all()
            .into_iter()
            .map(|w| Arc::new(w) as Arc<dyn Tool>),
    );
    tools.push(Arc::new(super::consensus::Consensus));
    tools.push(Arc::new(super::challenge::Challenge));
    tools.push(Arc::new(super::info::ListModels));
    tools.push(Arc::new(super::info::Version));
    tools.push(Arc::new(super::info::Status));
    tools
}

/// The tools a configuration offers, in a stable order.
fn enabled(config: &crate::config::ToolsConfig) -> Vec<Arc<dyn Tool>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_the_configuration_accepts_are_the_tools_there_are() {
        let names: Vec<&str> = all_tools().iter().map(|t| t.name()).collect();
        assert_eq!(names, super::super::NAMES);
        assert!(super::super::LEAN.iter().all(|t| names.contains(t)));
    }
}
