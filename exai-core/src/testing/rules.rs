//! What the fake upstream refuses, as each provider does when a rule of its API is broken —
//! so a test can show that exai keeps to the rule, not just that the fake accepts anything.
//! Set with [`super::FakeUpstream::enforce`]; each refusal is a 400 in the shape the provider
//! answers with.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The rules one provider's endpoints enforce.
#[derive(Debug, Clone, Default)]
pub struct ProviderRules {
    /// The Anthropic endpoint refuses a tool whose `type` is missing or empty (GLM).
    pub tool_type_required: bool,
    /// Both endpoints refuse more tools than this (Kimi: 128).
    pub max_tools: Option<usize>,
    /// The Anthropic endpoint refuses any `anthropic-beta` value not listed (an endpoint that
    /// does not know a beta). `None`: every beta is taken.
    pub known_betas: Option<Vec<String>>,
    /// The chat endpoint refuses an assistant turn with tool calls that comes back without its
    /// `reasoning_content` (Kimi with thinking on).
    pub reasoning_required: bool,
}

impl ProviderRules {
    /// Z.ai GLM's: tool types required, no betas known.
    pub fn glm() -> Self {
        Self {
            tool_type_required: true,
            known_betas: Some(Vec::new()),
            ..Self::default()
        }
    }

    /// Moonshot Kimi's: at most 128 tools, reasoning back on tool turns, no betas known.
    pub fn kimi() -> Self {
        Self {
            max_tools: Some(128),
            known_betas: Some(Vec::new()),
            reasoning_required: true,
            ..Self::default()
        }
    }

    /// MiniMax's: no betas known.
    pub fn minimax() -> Self {
        Self {
            known_betas: Some(Vec::new()),
            ..Self::default()
        }
    }
}

fn refuse(body: Value) -> Option<Response> {
    Some((StatusCode::BAD_REQUEST, axum::Json(body)).into_response())
}

/// The refusal of an Anthropic Messages request that breaks `rules`, if it does.
pub(super) fn messages(rules: &ProviderRules, headers: &HeaderMap, request: &Value) -> Option<Response> {
    let error =
        |message: String| json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}});
    if let (Some(known), Some(beta)) = (&rules.known_betas, headers.get("anthropic-beta")) {
        let beta = beta.to_str().unwrap_or_default();
        let unknown: Vec<&str> = beta
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty() && !known.iter().any(|k| k == b))
            .collect();
        if !unknown.is_empty() {
            return refuse(error(format!(
                "Unexpected value(s) `{}` for the `anthropic-beta` header.",
                unknown.join(", ")
            )));
        }
    }
    let tools = request.get("tools").and_then(Value::as_array);
    if rules.tool_type_required {
        for (i, tool) in tools.into_iter().flatten().enumerate() {
            if tool.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
                return refuse(json!({"type": "error", "error": {"type": "1214",
                    "message": format!("tools[{i}].type: must not be empty")}}));
            }
        }
    }
    too_many_tools(rules, tools.map_or(0, Vec::len)).and_then(|m| refuse(error(m)))
}

/// The refusal of an OpenAI chat request that breaks `rules`, if it does.
pub(super) fn chat(rules: &ProviderRules, request: &Value) -> Option<Response> {
    let error = |message: String| json!({"error": {"message": message, "type": "invalid_request_error"}});
    let tools = request.get("tools").and_then(Value::as_array).map_or(0, Vec::len);
    if let Some(message) = too_many_tools(rules, tools) {
        return refuse(error(message));
    }
    if rules.reasoning_required {
        let messages = request.get("messages").and_then(Value::as_array);
        for (i, m) in messages.into_iter().flatten().enumerate() {
            let calls = m
                .get("tool_calls")
                .is_some_and(|c| c.as_array().is_some_and(|c| !c.is_empty()));
            let reasoning = m
                .get("reasoning_content")
                .and_then(Value::as_str)
                .is_some_and(|r| !r.is_empty());
            if m["role"] == "assistant" && calls && !reasoning {
                return refuse(error(format!(
                    "thinking is enabled but reasoning_content is missing in assistant tool call message at index {i}"
                )));
            }
        }
    }
    None
}

fn too_many_tools(rules: &ProviderRules, count: usize) -> Option<String> {
    let max = rules.max_tools?;
    (count > max).then(|| format!("Invalid request: tools count {count} exceeds the maximum of {max}"))
}
