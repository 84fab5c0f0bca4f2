//! A tool round trip against the fake upstream answering prompts as `exai mock-upstream` does
//! (`[tool:NAME]` in a prompt calls the client's tool NAME; the tool's result gets a text answer
//! quoting it), through the real daemon on each of its HTTP APIs: OpenAI chat completions (plain
//! and streamed), Anthropic Messages (passed through to the fake's Anthropic side, and translated
//! to its chat side) and the Responses API (translated to the chat side).

mod common;

use std::collections::HashMap;

use common::Daemon;
use exai_core::testing::FakeUpstream;
use serde_json::{Value, json};

const PROMPT: &str = "what is the weather in Paris? [tool:get_weather]";

/// The tool as JSON Schema: its required `city` is what the fake fills in.
fn schema() -> Value {
    json!({"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}})
}

async fn daemon(fake: &FakeUpstream, tag: &str, extra: &[(&str, &str)]) -> Daemon {
    fake.answer_prompts();
    let mut env: HashMap<String, String> = fake.env_for(&["GLM"]);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    common::start(&env, tag).await
}

async fn post(d: &Daemon, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", d.base))
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn json_of(d: &Daemon, path: &str, body: &Value) -> Value {
    let response = post(d, path, body).await;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or_default();
    assert_eq!(status, 200, "{path}: {answer}");
    answer
}

#[tokio::test]
async fn openai_chat_gets_the_tool_call_the_prompt_asks_for_then_text() {
    let fake = FakeUpstream::start().await.unwrap_or_else(|e| panic!("{e}"));
    let d = daemon(&fake, "mock-tools-chat", &[]).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": schema()}}]);
    let mut messages = vec![json!({"role": "user", "content": PROMPT})];
    let asked = json!({"model": "glm-4.6", "messages": messages, "tools": tools});
    let called = json_of(&d, "/v1/chat/completions", &asked).await;
    assert_eq!(called["choices"][0]["finish_reason"], "tool_calls", "{called}");
    let call = &called["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather", "{called}");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap_or_default()).unwrap_or_default();
    assert_eq!(arguments, json!({"city": "mock"}));

    messages.push(called["choices"][0]["message"].clone());
    messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 °C"}));
    let answered = json_of(
        &d,
        "/v1/chat/completions",
        &json!({"model": "glm-4.6", "messages": messages, "tools": tools}),
    )
    .await;
    assert_eq!(answered["choices"][0]["finish_reason"], "stop", "{answered}");
    assert_eq!(
        answered["choices"][0]["message"]["content"],
        "The tool answered: sunny, 21 °C"
    );

    let streamed = post(
        &d,
        "/v1/chat/completions",
        &json!({"model": "glm-4.6", "messages": [{"role": "user", "content": PROMPT}], "tools": tools, "stream": true}),
    )
    .await
    .text()
    .await
    .unwrap_or_default();
    assert!(
        streamed.contains(r#""name":"get_weather""#) && streamed.contains(r#""finish_reason":"tool_calls""#),
        "{streamed}"
    );
}

#[tokio::test]
async fn anthropic_messages_get_the_tool_call_passed_through_and_translated() {
    for (tag, translate) in [("mock-tools-pass", false), ("mock-tools-translate", true)] {
        let fake = FakeUpstream::start().await.unwrap_or_else(|e| panic!("{e}"));
        let extra: &[(&str, &str)] = if translate {
            &[("GLM_ANTHROPIC_BASE_URL", "none")]
        } else {
            &[]
        };
        let d = daemon(&fake, tag, extra).await;
        let tools = json!([{"name": "get_weather", "input_schema": schema()}]);
        let mut messages = vec![json!({"role": "user", "content": PROMPT})];
        let asked = json!({"model": "glm-4.6", "max_tokens": 256, "messages": messages, "tools": tools});
        let called = json_of(&d, "/v1/messages", &asked).await;
        assert_eq!(called["stop_reason"], "tool_use", "{tag}: {called}");
        let call = called["content"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["type"] == "tool_use")
            .cloned()
            .unwrap_or_else(|| panic!("{tag}: no tool_use in {called}"));
        assert_eq!(
            (call["name"].clone(), call["input"].clone()),
            (json!("get_weather"), json!({"city": "mock"}))
        );
        let wire = if translate {
            "/v1/chat/completions"
        } else {
            "/anthropic/v1/messages"
        };
        assert_eq!(fake.requests()[0].path, wire, "{tag}");

        messages.push(json!({"role": "assistant", "content": called["content"]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call["id"], "content": "rainy, 12 °C"}]}));
        let answered = json_of(
            &d,
            "/v1/messages",
            &json!({"model": "glm-4.6", "max_tokens": 256, "messages": messages, "tools": tools}),
        )
        .await;
        assert_eq!(answered["stop_reason"], "end_turn", "{tag}: {answered}");
        assert_eq!(
            answered["content"][0]["text"], "The tool answered: rainy, 12 °C",
            "{tag}: {answered}"
        );
    }
}

#[tokio::test]
async fn responses_get_the_tool_call_through_the_chat_side_then_text() {
    let fake = FakeUpstream::start().await.unwrap_or_else(|e| panic!("{e}"));
    let d = daemon(&fake, "mock-tools-responses", &[]).await;
    let tools = json!([{"type": "function", "name": "get_weather", "parameters": schema()}]);
    let called = json_of(
        &d,
        "/v1/responses",
        &json!({"model": "glm-4.6", "input": PROMPT, "tools": tools}),
    )
    .await;
    let call = called["output"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|item| item["type"] == "function_call")
        .cloned()
        .unwrap_or_else(|| panic!("no function_call in {called}"));
    assert_eq!(call["name"], "get_weather", "{called}");
    let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap_or_default()).unwrap_or_default();
    assert_eq!(arguments, json!({"city": "mock"}));
    assert_eq!(fake.requests()[0].path, "/v1/chat/completions");

    let input = json!([
        {"role": "user", "content": PROMPT},
        {"type": "function_call", "call_id": call["call_id"], "name": "get_weather", "arguments": call["arguments"]},
        {"type": "function_call_output", "call_id": call["call_id"], "output": "foggy, 9 °C"},
    ]);
    let answered = json_of(
        &d,
        "/v1/responses",
        &json!({"model": "glm-4.6", "input": input, "tools": tools}),
    )
    .await;
    let text = answered["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["type"] == "message")
        .flat_map(|item| item["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|part| part["text"].as_str().map(str::to_string))
        .collect::<String>();
    assert_eq!(text, "The tool answered: foggy, 9 °C", "{answered}");
    assert_eq!(
        fake.requests()[1].messages().last().map(|m| m["role"].clone()),
        Some(json!("tool"))
    );
}
