//! Z.ai GLM quirks.
//!
//! - Thinking is a switch: `thinking: {"type": "enabled" | "disabled"}` (`minimal` disables it).
//! - Web search is a built-in tool: `{"type": "web_search", "web_search": {…}}`.
//! - Temperature must lie in [0, 1].
//! - A 429 with business code 1113 means the account has no balance: not a rate limit, and not
//!   worth retrying.
//! - Anthropic endpoint: a tool with no `type` is refused (it is set to `custom`); no
//!   `anthropic-beta` is forwarded; earlier turns' reasoning goes back as `reasoning_content`
//!   on chat.

use serde_json::json;

use super::openai_wire::ChatBody;
use super::{ProviderCall, Quirks};
use crate::error::ProviderErrorKind;
use crate::request::ThinkingMode;

/// The temperatures the endpoint accepts.
const TEMPERATURE: (f32, f32) = (0.0, 1.0);

/// GLM's adjustments.
pub(crate) struct Glm;

impl Quirks for Glm {
    fn takes_reasoning_back(&self) -> bool {
        true
    }

    fn searches_in_one_round(&self) -> bool {
        true
    }

    /// z.ai's Anthropic endpoint documents no beta: none is forwarded.
    fn anthropic_betas(&self) -> Option<&'static [&'static str]> {
        Some(&[])
    }

    /// It refuses `tools[i].type` when empty; Anthropic lets a custom tool leave it out.
    fn tool_type_required(&self) -> bool {
        true
    }

    fn temperature_range(&self) -> Option<(f32, f32)> {
        Some(TEMPERATURE)
    }

    fn shape(&self, call: &ProviderCall, body: &mut ChatBody) {
        if let (Some(mode), true) = (call.thinking, call.model.capabilities.thinking) {
            let kind = if mode == ThinkingMode::Minimal {
                "disabled"
            } else {
                "enabled"
            };
            body.extra.insert("thinking".into(), json!({ "type": kind }));
        }
        if call.web_search {
            body.tools.push(json!({
                "type": "web_search",
                "web_search": { "enable": true, "search_result": true }
            }));
        }
    }

    fn classify(&self, status: u16, body: &str) -> Option<ProviderErrorKind> {
        let code = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.pointer("/error/code").cloned())?;
        let code = code.as_str().map(str::to_string).unwrap_or_else(|| code.to_string());
        (status == 429 && code == "1113").then(|| ProviderErrorKind::InvalidRequest {
            status,
            message: "the GLM account has no balance left (code 1113); top it up at z.ai".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::tests::call_for;

    #[test]
    fn thinking_web_search_and_temperature_follow_glm_rules() {
        let mut call = call_for("glm-4.6", true);
        call.thinking = Some(ThinkingMode::High);
        call.web_search = true;
        call.temperature = Some(1.7);
        let v = serde_json::to_value(super::super::shaped_body(&Glm, &call)).unwrap_or_default();
        assert_eq!(v["thinking"]["type"], "enabled");
        assert_eq!(v["tools"][0]["type"], "web_search");
        assert_eq!(v["temperature"], 1.0);
        call.thinking = Some(ThinkingMode::Minimal);
        let v = serde_json::to_value(super::super::shaped_body(&Glm, &call)).unwrap_or_default();
        assert_eq!(v["thinking"]["type"], "disabled");
    }

    #[test]
    fn no_balance_is_not_a_rate_limit() {
        let kind = Glm.classify(429, r#"{"error":{"code":"1113","message":"余额不足"}}"#);
        assert!(matches!(kind, Some(ProviderErrorKind::InvalidRequest { .. })));
        assert!(
            Glm.classify(429, r#"{"error":{"code":"1302","message":"busy"}}"#)
                .is_none()
        );
    }
}
