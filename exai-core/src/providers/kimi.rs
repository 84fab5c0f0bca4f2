//! Moonshot Kimi quirks.
//!
//! - Reasoning (kimi-k2-thinking) arrives in `reasoning_content`, handled by the shared wire code.
//! - Web search is the built-in function `$web_search`: the model answers with a tool call, the
//!   client echoes the call's arguments back as the tool result, and the model then answers with
//!   the search folded in. [`Quirks::follow_up`] performs that echo.
//! - Temperature must lie in [0, 1].
//! - At most 128 tools per request (a 400 naming the cap, or the rest dropped with
//!   `anthropic.trim_tools`); an assistant turn with tool calls needs its reasoning back
//!   (`reasoning_content`, else a 400); no `anthropic-beta` is forwarded.

use serde_json::{Value, json};

use super::openai_wire::{ChatBody, RoundOutput, WireMessage};
use super::{ProviderCall, Quirks};

/// The temperatures the endpoint accepts.
const TEMPERATURE: (f32, f32) = (0.0, 1.0);
const WEB_SEARCH: &str = "$web_search";

/// Kimi's adjustments.
pub(crate) struct Kimi;

impl Quirks for Kimi {
    fn takes_reasoning_back(&self) -> bool {
        true
    }

    /// Moonshot's Anthropic endpoint documents no beta: none is forwarded.
    fn anthropic_betas(&self) -> Option<&'static [&'static str]> {
        Some(&[])
    }

    /// Kimi refuses a request with more than 128 tools.
    fn max_tools(&self) -> Option<usize> {
        Some(128)
    }

    fn temperature_range(&self) -> Option<(f32, f32)> {
        Some(TEMPERATURE)
    }

    fn shape(&self, call: &ProviderCall, body: &mut ChatBody) {
        if call.web_search {
            body.tools.push(json!({
                "type": "builtin_function",
                "function": { "name": WEB_SEARCH }
            }));
        }
    }

    fn follow_up(&self, out: &RoundOutput) -> Option<Vec<WireMessage>> {
        let searches: Vec<_> = out
            .tool_calls
            .iter()
            .filter(|c| c.function.name == WEB_SEARCH)
            .cloned()
            .collect();
        if out.finish_reason.as_deref() != Some("tool_calls") || searches.is_empty() {
            return None;
        }
        let mut messages = vec![WireMessage {
            role: "assistant",
            content: Value::String(out.text.clone()),
            tool_calls: Some(searches.clone()),
            tool_call_id: None,
            name: None,
        }];
        messages.extend(searches.into_iter().map(|c| WireMessage {
            role: "tool",
            content: Value::String(c.function.arguments),
            tool_calls: None,
            tool_call_id: Some(c.id),
            name: Some(WEB_SEARCH.into()),
        }));
        Some(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::openai_wire::{FunctionCall, ToolCall};
    use crate::providers::tests::call_for;

    #[test]
    fn web_search_is_the_builtin_function() {
        let mut call = call_for("kimi-k2-0905-preview", false);
        call.web_search = true;
        let v = serde_json::to_value(super::super::shaped_body(&Kimi, &call)).unwrap_or_default();
        assert_eq!(v["tools"][0]["function"]["name"], "$web_search");
    }

    #[test]
    fn a_web_search_call_is_echoed_back_as_the_tool_result() {
        let out = RoundOutput {
            finish_reason: Some("tool_calls".into()),
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                kind: "builtin_function".into(),
                function: FunctionCall {
                    name: WEB_SEARCH.into(),
                    arguments: "{\"q\":\"rust\"}".into(),
                },
            }],
            ..RoundOutput::default()
        };
        let msgs = Kimi.follow_up(&out).unwrap_or_default();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].role, "tool");
        assert_eq!(msgs[1].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(msgs[1].content, Value::String("{\"q\":\"rust\"}".into()));
        let done = RoundOutput {
            finish_reason: Some("stop".into()),
            ..RoundOutput::default()
        };
        assert!(Kimi.follow_up(&done).is_none());
    }
}
