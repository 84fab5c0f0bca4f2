//! `chat`: a conversation with another model — a second opinion, brainstorming, explanations.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::args::{Common, parse};
use super::{Failure, Tool, ToolCtx, ToolOutput, files, output, reply, schema};

const SYSTEM: &str = "You are a senior engineer consulted by another AI agent working with a developer. \
Answer precisely and concretely; say when you are unsure; prefer short, actionable answers with code where it helps. \
Embedded files are shown with line numbers for reference only.";

/// The tool.
pub(crate) struct Chat;

#[derive(Deserialize)]
struct Args {
    prompt: String,
    #[serde(flatten)]
    common: Common,
}

#[async_trait]
impl Tool for Chat {
    fn name(&self) -> &'static str {
        "chat"
    }

    fn description(&self) -> &'static str {
        "Talk to another model: second opinions, brainstorming, explanations, checking an approach. \
         Include files or images for context; continue any earlier conversation with continuation_id."
    }

    fn schema(&self, models: &[String]) -> Value {
        let mut props = schema::common(models, &["prompt"]);
        props.extend(schema::common(models, &schema::MODEL_PARAMS));
        props.extend(schema::common(models, &["cache"]));
        schema::object(props, &["prompt"])
    }

    async fn run(&self, ctx: &ToolCtx<'_>, args: Value) -> Result<ToolOutput, Failure> {
        let args: Args = parse(&self.schema(&[]), args)?;
        output::check_prompt(&args.prompt, ctx.config().max_prompt_chars)?;
        let c = &args.common;
        let prepared = files::prepare(ctx, &c.files, &c.images, c.continuation_id.as_deref()).await?;
        let response = ctx
            .chat(c.request(self.name(), SYSTEM, args.prompt.clone(), &prepared))
            .await?;
        Ok(reply("complete", &response, &prepared, response.text.clone()))
    }
}
