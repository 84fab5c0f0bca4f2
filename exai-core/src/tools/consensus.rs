//! `consensus`: several models, each arguing an assigned stance, consulted in parallel (as far as
//! the limits allow), then one synthesis. One model failing is reported in the result, not fatal;
//! only when every consultation fails is the call an error.
//!
//! Consultations are ephemeral turns (they read the conversation, store nothing); the prompt and
//! the synthesis are stored, so the conversation can go on with any tool.

use async_trait::async_trait;
use futures::future::join_all;
use serde::Deserialize;
use serde_json::{Value, json};

use super::args::{Common, parse};
use super::{Failure, Tool, ToolCtx, ToolOutput, files, output, reply, schema};
use crate::error::Error;

const CONSULT: &str = "You are one of several experts asked for an opinion; others argue other stances. \
Give a rigorous, evidence-based assessment. Be concrete about risks, costs and alternatives. \
Your assigned stance: ";

const SYNTHESIS: &str = "You synthesise the opinions of several expert models into one recommendation. \
Weigh the arguments on their merits, not on how many voices hold them. Say where they agree, where they disagree \
and why, then give a clear recommendation with its main risks and the next concrete steps.";

/// The tool.
pub(crate) struct Consensus;

#[derive(Deserialize)]
struct Voice {
    model: String,
    #[serde(default = "neutral")]
    stance: String,
    stance_prompt: Option<String>,
}

fn neutral() -> String {
    "neutral".into()
}

#[derive(Deserialize)]
struct Args {
    prompt: String,
    models: Vec<Voice>,
    #[serde(flatten)]
    common: Common,
}

fn stance_text(v: &Voice) -> String {
    match (v.stance.as_str(), &v.stance_prompt) {
        (_, Some(custom)) => custom.clone(),
        ("for", _) => {
            "FOR — make the strongest honest case in favour, while naming fatal flaws if you find any.".into()
        }
        ("against", _) => "AGAINST — make the strongest honest case against, while conceding real strengths.".into(),
        _ => "NEUTRAL — weigh both sides evenly.".into(),
    }
}

#[async_trait]
impl Tool for Consensus {
    fn name(&self) -> &'static str {
        "consensus"
    }

    fn description(&self) -> &'static str {
        "Ask two or more models, each with a stance (for, against, neutral), in parallel, then get one synthesis. \
         For decisions and proposals where independent views help. A model that fails is reported, not fatal."
    }

    fn schema(&self, models: &[String]) -> Value {
        let mut props = schema::common(models, &["prompt"]);
        props.insert(
            "models".into(),
            json!({
                "type": "array",
                "minItems": 2,
                "description": "Who to consult; each (model, stance) pair once.",
                "items": {
                    "type": "object",
                    "properties": {
                        "model": {"type": "string", "enum": models},
                        "stance": {"type": "string", "enum": ["for", "against", "neutral"]},
                        "stance_prompt": {"type": "string", "description": "Replaces the stance's default instructions."}
                    },
                    "required": ["model"],
                    "additionalProperties": false
                }
            }),
        );
        // The models consulted answer from the prompt and files alone: no web search.
        let params: Vec<&str> = schema::MODEL_PARAMS
            .into_iter()
            .filter(|p| *p != "use_websearch")
            .collect();
        props.extend(schema::common(models, &params));
        props.extend(schema::common(models, &["cache"]));
        if let Some(m) = props.get_mut("model") {
            m["description"] = json!("Model for the synthesis; 'auto' by default.");
        }
        schema::object(props, &["prompt", "models"])
    }

    async fn run(&self, ctx: &ToolCtx<'_>, args: Value) -> Result<ToolOutput, Failure> {
        let args: Args = parse(&self.schema(&[]), args)?;
        output::check_prompt(&args.prompt, ctx.config().max_prompt_chars)?;
        if args.models.len() < 2 {
            return Err(Failure::Arguments("consensus needs at least two models".into()));
        }
        let gw = ctx.gateway();
        let mut pairs = Vec::new();
        for v in &args.models {
            if !["for", "against", "neutral"].contains(&v.stance.as_str()) {
                return Err(Failure::Arguments(format!(
                    "stance must be for, against or neutral; got '{}'",
                    v.stance
                )));
            }
            let id = gw
                .catalog()
                .resolve(&v.model, gw.config())
                .map(|m| m.id)
                .unwrap_or_else(|| v.model.clone());
            if pairs.contains(&(id.clone(), v.stance.clone())) {
                return Err(Failure::Arguments(format!(
                    "{} with stance '{}' is listed twice",
                    v.model, v.stance
                )));
            }
            pairs.push((id, v.stance.clone()));
        }
        let c = &args.common;
        let prepared = files::prepare(ctx, &c.files, &c.images, c.continuation_id.as_deref()).await?;
        ctx.reporter.report(format!("consulting {} models", args.models.len()));
        let consultations = args.models.iter().map(|v| {
            let mut request = c.request(
                self.name(),
                &format!("{CONSULT}{}", stance_text(v)),
                args.prompt.clone(),
                &prepared,
            );
            request.model = Some(v.model.clone());
            request.ephemeral = true;
            ctx.chat(request)
        });
        let results: Vec<Result<_, Error>> = join_all(consultations).await;
        let mut opinions = Vec::new();
        let mut report = Vec::new();
        let mut failures = Vec::new();
        for (v, r) in args.models.iter().zip(results) {
            match r {
                Ok(resp) => {
                    report.push(json!({"model": resp.model, "provider": resp.provider, "stance": v.stance, "status": "ok", "usage": resp.usage, "cost_usd": crate::usage::round_usd(resp.cost_usd), "cache": resp.cache}));
                    opinions.push(format!(
                        "### {} ({}, stance: {})\n{}",
                        resp.model, resp.provider, v.stance, resp.text
                    ));
                }
                Err(e) => {
                    report
                        .push(json!({"model": v.model, "stance": v.stance, "status": "error", "error": e.to_string()}));
                    failures.push(format!("{} ({}): {e}", v.model, v.stance));
                }
            }
        }
        if opinions.is_empty() {
            return Err(Failure::Refused {
                status: "error",
                message: format!("every model failed: {}", failures.join("; ")),
            });
        }
        ctx.reporter.report("synthesising the opinions");
        let mut synthesis = c.request(self.name(), SYNTHESIS, args.prompt.clone(), &prepared);
        synthesis.context = vec![format!("Opinions gathered:\n\n{}", opinions.join("\n\n"))];
        if !failures.is_empty() {
            synthesis
                .context
                .push(format!("Could not be consulted: {}", failures.join("; ")));
        }
        let response = ctx.chat(synthesis).await?;
        let mut body = opinions.join("\n\n");
        if !failures.is_empty() {
            body.push_str(&format!("\n\n### Not consulted\n{}", failures.join("\n")));
        }
        body.push_str(&format!("\n\n## Synthesis\n{}", response.text));
        let mut out = reply("complete", &response, &prepared, body);
        out.structured["consulted"] = json!(report);
        Ok(out)
    }
}
