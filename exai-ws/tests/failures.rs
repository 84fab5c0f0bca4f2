//! How a failed call reads at every front door of the real daemon, against the fake upstream: a
//! call whose every model fails names each attempt (provider, model, why) on the OpenAI API, the
//! Anthropic API, an MCP tool error and the EXAI protocol; once exai has retried, its HTTP
//! error carries `x-should-retry: false` (which the openai and anthropic SDKs honour) while its
//! own rate limit leaves the retry to the client; no provider configured is one 503 with the
//! reason on every HTTP API; and closing an MCP session answers 204.

mod common;

use std::collections::HashMap;

use common::ws::{connect, hello, send, until};
use common::{Daemon, mcp};
use exai_core::testing::FakeUpstream;
use serde_json::{Value, json};

fn env(fake: &FakeUpstream, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = fake.env_for(&["GLM", "KIMI", "MINIMAX"]);
    env.insert("EXAI_RETRY_BASE_DELAY_MS".into(), "5".into());
    env.insert("EXAI_MAX_RETRIES".into(), "1".into());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// A POST of `body` to `path`: status, headers, body.
async fn post(d: &Daemon, path: &str, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", d.base))
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.json().await.unwrap_or_default())
}

fn chat(model: &str, prompt: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": prompt}]})
}

fn anthropic(model: &str, prompt: &str) -> Value {
    json!({"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": prompt}]})
}

/// Whether `text` names the attempt at each of the three providers, with its model and why.
fn names_every_attempt(text: &str) -> bool {
    text.contains("3 attempts failed")
        && ["glm (glm-4.6)", "kimi (", "minimax (MiniMax-M2)"]
            .iter()
            .all(|who| text.contains(who))
        && text.matches("unavailable (500)").count() == 3
}

fn should_retry(headers: &reqwest::header::HeaderMap) -> Option<&str> {
    headers.get("x-should-retry").and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_call_whose_every_model_fails_names_each_attempt_at_every_front_door() {
    let fake = FakeUpstream::start().await.unwrap_or_else(|e| panic!("{e}"));
    fake.answer_prompts();
    let d = common::start(&env(&fake, &[]), "failures-attempts").await;

    let (status, headers, body) = post(&d, "/v1/chat/completions", chat("auto", "hi [fault:500]")).await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(status, 502, "{body}");
    assert!(names_every_attempt(message), "OpenAI: {message}");
    assert_eq!(should_retry(&headers), Some("false"), "exai retried already");

    let (status, headers, body) = post(&d, "/v1/messages", anthropic("auto", "hi [fault:500]")).await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(body["type"], "error", "{status} {body}");
    assert!(names_every_attempt(message), "Anthropic: {message}");
    assert_eq!(should_retry(&headers), Some("false"));

    // MCP over HTTP: the chat tool's error result.
    let client = reqwest::Client::new();
    let url = format!("{}/mcp", d.base);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (_, session) = mcp(&client, &url, None, init).await;
    let session = session.unwrap_or_else(|| panic!("no MCP session"));
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    mcp(&client, &url, Some(&session), initialized).await;
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "chat", "arguments": {"prompt": "hi [fault:500]", "model": "auto"}}});
    let (result, _) = mcp(&client, &url, Some(&session), call).await;
    assert_eq!(result["result"]["isError"], true, "{result}");
    let text = result["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(names_every_attempt(text), "MCP: {result}");
    let attempts = &result["result"]["structuredContent"]["attempts"];
    assert_eq!(attempts.as_array().map(Vec::len), Some(3), "{result}");
    assert_eq!(attempts[0]["provider"], "glm", "{attempts}");

    // Closing the session: 204, which MCP clients accept (202 makes the Python SDK warn).
    let closed = client
        .delete(&url)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(closed.status().as_u16(), 204);

    // The EXAI protocol over WebSocket.
    let mut ws = connect(&d).await;
    hello(&mut ws, json!({})).await;
    let call = json!({"op": "call_tool", "request_id": "f1", "name": "chat",
        "arguments": {"prompt": "hi [fault:500]", "model": "auto"}});
    send(&mut ws, call).await;
    let mut seen = Vec::new();
    let res = until(&mut ws, "call_tool_res", &mut seen).await;
    let message = res["error"]["message"].as_str().unwrap_or_default();
    assert!(names_every_attempt(message), "EXAI: {res}");
}

#[tokio::test]
async fn exais_own_rate_limit_leaves_the_retry_to_the_client() {
    let fake = FakeUpstream::start().await.unwrap_or_else(|e| panic!("{e}"));
    let d = common::start(&env(&fake, &[("EXAI_REQUESTS_PER_MINUTE", "1")]), "failures-rpm").await;
    assert_eq!(post(&d, "/v1/chat/completions", chat("glm-4.6", "hi")).await.0, 200);
    let (status, headers, body) = post(&d, "/v1/chat/completions", chat("glm-4.6", "hi")).await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(should_retry(&headers), None, "exai retried nothing: {body}");
}

#[tokio::test]
async fn a_retry_after_that_would_outlast_the_deadline_is_not_waited_and_the_429_comes_back() {
    let fake = FakeUpstream::start().await.unwrap_or_else(|e| panic!("{e}"));
    fake.answer_prompts();
    // Every provider answers 429 with `Retry-After: 1`; a call has 3 s. Waited out in place on
    // each provider, the waits would add up past the deadline and the client would get a
    // timeout (504) it cannot act on.
    let settings = [("EXAI_CALL_TIMEOUT_SECS", "3"), ("EXAI_MAX_RETRIES", "3")];
    let d = common::start(&env(&fake, &settings), "failures-deadline-429").await;
    let (status, headers, body) = post(&d, "/v1/chat/completions", chat("auto", "hi [fault:429]")).await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("3 attempts failed"), "{message}");
}

#[tokio::test]
async fn no_provider_configured_is_the_same_503_on_every_http_api() {
    let d = common::start(&HashMap::new(), "failures-none").await;
    for (path, body) in [
        ("/v1/chat/completions", chat("auto", "hi")),
        ("/v1/messages", anthropic("auto", "hi")),
        ("/v1/responses", json!({"model": "auto", "input": "hi"})),
    ] {
        let (status, headers, body) = post(&d, path, body).await;
        assert_eq!(status, 503, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("no provider configured") && message.contains("GLM_API_KEY"),
            "{path}: {body}"
        );
        assert_eq!(
            should_retry(&headers),
            Some("false"),
            "{path}: retrying cannot configure one"
        );
    }
}
