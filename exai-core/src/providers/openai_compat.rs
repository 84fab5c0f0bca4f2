//! Any OpenAI-compatible endpoint (vLLM, Ollama, LM Studio, OpenRouter, …).
//!
//! - Thinking maps to `reasoning_effort`, sent only to models declared with `thinking = true`
//!   (many servers reject unknown fields).
//! - Reasoning models served this way often inline `<think>` tags; they are split out of the
//!   gateway's own calls. A client speaking OpenAI chat is relayed as it is: it gets what the
//!   server would have answered it directly.
//! - Temperature must lie in [0, 2].

use serde_json::json;

use super::openai_wire::ChatBody;
use super::{ProviderCall, Quirks};
use crate::request::ThinkingMode;

const TEMPERATURE: (f32, f32) = (0.0, 2.0);

/// The generic adjustments.
pub(crate) struct OpenaiCompat;

impl Quirks for OpenaiCompat {
    fn temperature_range(&self) -> Option<(f32, f32)> {
        Some(TEMPERATURE)
    }

    fn shape(&self, call: &ProviderCall, body: &mut ChatBody) {
        if let (Some(mode), true) = (call.thinking, call.model.capabilities.thinking) {
            let effort = match mode {
                ThinkingMode::Minimal => "minimal",
                ThinkingMode::Low => "low",
                ThinkingMode::Medium => "medium",
                ThinkingMode::High | ThinkingMode::Max => "high",
            };
            body.extra.insert("reasoning_effort".into(), json!(effort));
        }
    }

    fn splits_think_tags(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::tests::call_for;

    #[test]
    fn effort_is_sent_only_to_thinking_models() {
        let mut call = call_for("local-model", true);
        call.thinking = Some(ThinkingMode::Max);
        let v = serde_json::to_value(super::super::shaped_body(&OpenaiCompat, &call)).unwrap_or_default();
        assert_eq!(v["reasoning_effort"], "high");
        let mut call = call_for("local-model", false);
        call.thinking = Some(ThinkingMode::Max);
        let v = serde_json::to_value(super::super::shaped_body(&OpenaiCompat, &call)).unwrap_or_default();
        assert!(v.get("reasoning_effort").is_none());
    }
}
