//! The step protocol of workflow tools (`debug`, `codereview`, `thinkdeep`, …).
//!
//! The client's agent drives the investigation: it calls the tool once per step with what it
//! looked at (`step`) and what it found (`findings`, `relevant_files`, `issues_found`,
//! `hypothesis`, `confidence`). Intermediate steps are recorded in the conversation — no provider
//! call — and answered with concrete guidance for the next step. The final step
//! (`next_step_required: false`, or `confidence: certain`) sends the finding of that step, with
//! every earlier step as conversation history and the relevant files embedded, to the expert
//! model with the tool's system prompt. `use_assistant_model: false` skips the expert call.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::args::{Common, parse};
use super::{Failure, Tool, ToolCtx, ToolOutput, files, output, reply, schema};
use crate::request::Message;

/// What makes one workflow tool different from another.
pub(crate) struct WorkflowSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// The expert model's system prompt.
    pub system: &'static str,
    /// What to do before the next step, one action per line.
    pub guidance: &'static str,
    /// What the expert is asked for at the end.
    pub expert_task: &'static str,
}

/// A workflow tool.
pub(crate) struct Workflow(pub &'static WorkflowSpec);

#[derive(Debug, Deserialize)]
struct IssueFound {
    severity: String,
    description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Confidence {
    Exploring,
    Low,
    Medium,
    High,
    VeryHigh,
    AlmostCertain,
    Certain,
}

#[derive(Deserialize)]
struct Args {
    step: String,
    step_number: u32,
    total_steps: u32,
    next_step_required: bool,
    findings: String,
    #[serde(default)]
    relevant_files: Vec<String>,
    #[serde(default)]
    issues_found: Vec<IssueFound>,
    hypothesis: Option<String>,
    confidence: Option<Confidence>,
    use_assistant_model: Option<bool>,
    #[serde(flatten)]
    common: Common,
}

impl Args {
    /// The step as recorded in the conversation.
    fn record(&self, tool: &str, total: u32) -> String {
        let mut r = format!(
            "[{tool} step {}/{total}] {}\nFindings: {}",
            self.step_number, self.step, self.findings
        );
        if let Some(h) = &self.hypothesis {
            r.push_str(&format!("\nHypothesis: {h}"));
        }
        if let Some(c) = self.confidence {
            r.push_str(&format!("\nConfidence: {c:?}"));
        }
        for issue in &self.issues_found {
            r.push_str(&format!("\nIssue [{}]: {}", issue.severity, issue.description));
        }
        if !self.relevant_files.is_empty() {
            r.push_str(&format!("\nRelevant files: {}", self.relevant_files.join(", ")));
        }
        r
    }

    fn all_files(&self) -> Vec<String> {
        let mut files = self.relevant_files.clone();
        for f in &self.common.files {
            if !files.contains(f) {
                files.push(f.clone());
            }
        }
        files
    }
}

#[async_trait]
impl Tool for Workflow {
    fn name(&self) -> &'static str {
        self.0.name
    }

    fn description(&self) -> &'static str {
        self.0.description
    }

    fn schema(&self, models: &[String]) -> Value {
        schema::object(schema::workflow(models), &schema::WORKFLOW_REQUIRED)
    }

    async fn run(&self, ctx: &ToolCtx<'_>, args: Value) -> Result<ToolOutput, Failure> {
        let args: Args = parse(&self.schema(&[]), args)?;
        if args.step_number == 0 || args.total_steps == 0 {
            return Err(Failure::Arguments("step_number and total_steps start at 1".into()));
        }
        output::check_prompt(
            &format!("{}{}", args.step, args.findings),
            ctx.config().max_prompt_chars,
        )?;
        let spec = self.0;
        let total = args.total_steps.max(args.step_number);
        let record = args.record(spec.name, total);
        let expert = args.use_assistant_model.unwrap_or(true);
        let certain = args.confidence == Some(Confidence::Certain);
        let last = !args.next_step_required || (certain && expert);
        let step_meta = json!({"step_number": args.step_number, "total_steps": total, "next_step_required": !last});

        if !last || !expert {
            let id = ctx
                .session
                .note(
                    args.common.continuation_id.clone(),
                    Some(spec.name.into()),
                    vec![Message::user(record)],
                    args.all_files(),
                )
                .await?;
            let (status, text) = if last {
                (
                    "complete",
                    format!(
                        "{} complete after {} steps; no expert model was consulted (use_assistant_model: false). continuation_id: {id}",
                        spec.name, args.step_number
                    ),
                )
            } else {
                ("pause_for_investigation", guidance(spec, args.step_number, total, &id))
            };
            let mut structured = json!({"status": status, "continuation_id": id});
            merge(&mut structured, &step_meta);
            if !last {
                structured["required_actions"] = json!(spec.guidance.lines().collect::<Vec<_>>());
            }
            return Ok(ToolOutput::ok(text, structured));
        }

        ctx.reporter
            .report(format!("{}: consulting the expert model", spec.name));
        let files = args.all_files();
        let c = &args.common;
        let prepared = files::prepare(ctx, &files, &c.images, c.continuation_id.as_deref()).await?;
        let prompt = format!(
            "{record}\n\nThe investigation is complete after {} steps; the earlier steps are in the conversation above and the \
             relevant files are below. {}",
            args.step_number, spec.expert_task
        );
        let mut request = c.request(spec.name, spec.system, prompt, &prepared);
        request.files = files;
        let response = ctx.chat(request).await?;
        let body = format!(
            "## {} — expert analysis ({})\n\n{}",
            spec.name, response.model, response.text
        );
        let mut out = reply("complete", &response, &prepared, body);
        merge(&mut out.structured, &step_meta);
        Ok(out)
    }
}

fn merge(into: &mut Value, from: &Value) {
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        into.extend(from.clone());
    }
}

fn guidance(spec: &WorkflowSpec, step: u32, total: u32, id: &str) -> String {
    let actions: String = spec.guidance.lines().map(|l| format!("- {l}\n")).collect();
    format!(
        "{} step {step} of {total} recorded. Before calling {} again with step_number {}:\n{actions}\
         - Put what you actually found in `findings` and the files that matter in `relevant_files`.\n\
         - On the final step set next_step_required to false: exai then sends everything recorded to the expert model.\n\
         Pass continuation_id: {id}",
        spec.name,
        spec.name,
        step + 1
    )
}
