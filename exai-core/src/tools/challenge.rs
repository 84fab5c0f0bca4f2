//! `challenge`: makes the calling agent re-examine a statement critically instead of agreeing
//! with it. No provider call: the statement is wrapped in instructions for the client's own
//! model, and recorded in the conversation (so a later turn of any tool sees it).

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::args::parse;
use super::{Failure, Tool, ToolCtx, ToolOutput, output, schema};
use crate::request::Message;

/// The tool.
pub(crate) struct Challenge;

#[derive(Deserialize)]
struct Args {
    prompt: String,
    continuation_id: Option<String>,
}

#[async_trait]
impl Tool for Challenge {
    fn name(&self) -> &'static str {
        "challenge"
    }

    fn description(&self) -> &'static str {
        "Use when a claim or a pushback should be examined, not accepted: returns the statement wrapped in \
         instructions to check it critically against the evidence before agreeing or disagreeing."
    }

    fn schema(&self, models: &[String]) -> Value {
        let mut props = schema::common(models, &["prompt", "continuation_id"]);
        props.insert(
            "prompt".into(),
            json!({"type": "string", "description": "The statement to examine."}),
        );
        schema::object(props, &["prompt"])
    }

    async fn run(&self, ctx: &ToolCtx<'_>, args: Value) -> Result<ToolOutput, Failure> {
        let args: Args = parse(&self.schema(&[]), args)?;
        output::check_prompt(&args.prompt, ctx.config().max_prompt_chars)?;
        let wrapped = format!(
            "CRITICAL REASSESSMENT – do not simply agree.\n\n\"{}\"\n\n\
             Examine this statement against the code, the facts and what was said before. Is it correct? \
             What evidence supports or contradicts it? If it is wrong or only partly right, say so plainly and \
             explain why; if it is right, say what makes you confident. Do not defer to it just because it was asserted.",
            args.prompt
        );
        let message = Message::user(format!("[challenge] {}", args.prompt));
        let id = ctx
            .session
            .note(args.continuation_id, Some(self.name().into()), vec![message], vec![])
            .await?;
        let structured =
            json!({"status": "challenge_created", "original_statement": args.prompt, "continuation_id": id});
        Ok(ToolOutput::ok(
            format!("{wrapped}\n\n[continuation_id: {id}]"),
            structured,
        ))
    }
}
