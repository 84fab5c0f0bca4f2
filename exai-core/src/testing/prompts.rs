//! What a prompt asks of the fake upstream, read by [`super::FakeUpstream::answer_prompts`] (and
//! so by `exai mock-upstream`): a fault (`[fault:500]`, see [`FakeReply::fault_in`]), or a call of
//! the client's tool (`[tool:get_weather]`) — and, once that tool's result comes back, a text
//! answer quoting it, so an SDK's tool round trip ends as it would with a real model.
//!
//! Requests arrive in the OpenAI chat shape (`role: "tool"` results, tools under `function`) or
//! in Anthropic's (`tool_result` blocks, tools with an `input_schema`); both are read here.

use serde_json::{Map, Value, json};

use super::FakeReply;

/// The reply `request` asks for, if it asks for one: text after a tool result, else the fault
/// or the tool call its last user message names.
pub(super) fn answer(request: &Value) -> Option<FakeReply> {
    if let Some(result) = tool_result(request) {
        return Some(FakeReply::text(format!("The tool answered: {result}")));
    }
    let prompt = last_prompt(request);
    FakeReply::fault_in(&prompt).or_else(|| tool_call_in(&prompt, request))
}

/// The last user message's text, from an OpenAI or an Anthropic request (blocks joined).
pub(super) fn last_prompt(request: &Value) -> String {
    let messages = request.get("messages").and_then(Value::as_array);
    let last = messages.and_then(|m| m.iter().rev().find(|m| m["role"] == "user"));
    last.map(|m| text_of(&m["content"])).unwrap_or_default()
}

/// The text of a message's or a tool result's content: a string, or text blocks joined.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// What the tools returned, when the request ends with their results: an OpenAI `tool`
/// message, or an Anthropic user message carrying `tool_result` blocks.
fn tool_result(request: &Value) -> Option<String> {
    let last = request.get("messages")?.as_array()?.last()?;
    if last["role"] == "tool" {
        return Some(text_of(&last["content"]));
    }
    let results: Vec<String> = last["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| text_of(&b["content"]))
        .collect();
    (last["role"] == "user" && !results.is_empty()).then(|| results.join(" "))
}

/// `[tool:NAME]` in `prompt`: a call of NAME, its arguments filled from the schema the request
/// declares for it (`{}` when it declares none).
fn tool_call_in(prompt: &str, request: &Value) -> Option<FakeReply> {
    let start = prompt.find("[tool:")? + "[tool:".len();
    let name = prompt[start..start + prompt[start..].find(']')?].trim();
    if name.is_empty() {
        return None;
    }
    let schema = declared_schema(request, name);
    Some(FakeReply::tool_use(name, arguments_for(schema.unwrap_or(&Value::Null))))
}

/// The JSON Schema of the tool `name` among the request's tools: OpenAI chat (`function.
/// parameters`), Responses (`parameters`) or Anthropic (`input_schema`).
fn declared_schema<'a>(request: &'a Value, name: &str) -> Option<&'a Value> {
    request.get("tools")?.as_array()?.iter().find_map(|tool| {
        let function = tool.get("function").unwrap_or(tool);
        (function["name"] == name).then(|| {
            function
                .get("parameters")
                .or_else(|| function.get("input_schema"))
                .unwrap_or(&Value::Null)
        })
    })
}

/// Arguments that satisfy `schema`'s required properties: a property's first `enum` value, or a
/// placeholder of its type ("mock", 1, true, [], {}).
fn arguments_for(schema: &Value) -> Value {
    let mut arguments = Map::new();
    for name in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let property = &schema["properties"][name];
        let value = match (property["enum"].get(0), property["type"].as_str()) {
            (Some(first), _) => first.clone(),
            (None, Some("integer" | "number")) => json!(1),
            (None, Some("boolean")) => json!(true),
            (None, Some("array")) => json!([]),
            (None, Some("object")) => json!({}),
            (None, _) => json!("mock"),
        };
        arguments.insert(name.to_string(), value);
    }
    Value::Object(arguments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::reply::ReplyKind;

    fn called(request: &Value) -> Option<(String, Value)> {
        match answer(request)?.kind {
            ReplyKind::ToolUse { name, input, .. } => Some((name, input)),
            _ => None,
        }
    }

    #[test]
    fn the_last_prompt_is_read_from_either_shape() {
        let anthropic = json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]});
        assert_eq!(last_prompt(&anthropic), "a");
        let openai = json!({"messages": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]});
        assert_eq!(last_prompt(&openai), "b");
    }

    #[test]
    fn a_tool_named_in_the_prompt_is_called_with_arguments_its_schema_requires() {
        let openai = json!({
            "messages": [{"role": "user", "content": "weather? [tool:get_weather]"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object", "required": ["city", "days", "unit"],
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "note": {"type": "string"}}}}}],
        });
        assert_eq!(
            called(&openai),
            Some((
                "get_weather".into(),
                json!({"city": "mock", "days": 1, "unit": "celsius"})
            ))
        );
        let anthropic = json!({
            "messages": [{"role": "user", "content": [{"type": "text", "text": "[tool: lookup ]"}]}],
            "tools": [{"name": "lookup", "input_schema": {"type": "object", "required": ["ok"],
                "properties": {"ok": {"type": "boolean"}}}}],
        });
        assert_eq!(called(&anthropic), Some(("lookup".into(), json!({"ok": true}))));
        let undeclared = json!({"messages": [{"role": "user", "content": "[tool:anything]"}]});
        assert_eq!(called(&undeclared), Some(("anything".into(), json!({}))));
        for plain in ["hello", "[tool:]", "[tool:unclosed"] {
            let request = json!({"messages": [{"role": "user", "content": plain}]});
            assert!(answer(&request).is_none(), "{plain}");
        }
    }

    #[test]
    fn after_the_tool_result_the_answer_is_text_that_quotes_it() {
        let text = |request: &Value| match answer(request).map(|r| r.kind) {
            Some(ReplyKind::Text { content, .. }) => content,
            other => panic!("{other:?}"),
        };
        let openai = json!({"messages": [
            {"role": "user", "content": "weather? [tool:get_weather] [fault:500]"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ]});
        assert_eq!(text(&openai), "The tool answered: sunny");
        let anthropic = json!({"messages": [
            {"role": "user", "content": "weather? [tool:get_weather]"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": "rainy"}]}]},
        ]});
        assert_eq!(text(&anthropic), "The tool answered: rainy");
    }
}
