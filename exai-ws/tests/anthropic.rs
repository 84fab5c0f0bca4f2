//! The Anthropic Messages API through the real daemon, passed through to the fake upstream's
//! Anthropic side: plain and streamed text, thinking blocks, a tool call whose input streams in
//! pieces, the model mapping, errors in Anthropic's shape, fallback on a 5xx before anything
//! streamed, a failure after the 200, count_tokens, the models list, unknown fields forwarded.

mod common;

use common::Daemon;
use exai_core::testing::{FakeReply, FakeUpstream};
use serde_json::{Value, json};

async fn daemon(fake: &FakeUpstream, tag: &str) -> Daemon {
    let mut env = fake.env_for(&["GLM", "KIMI"]);
    env.insert("EXAI_MEMORY".into(), "memory".into());
    env.insert("EXAI_MAX_RETRIES".into(), "0".into());
    env.insert("EXAI_ANTHROPIC_MODEL_MAP".into(), "claude-haiku-*=kimi".into());
    // GLM's allow-list of betas, widened by configuration (its default forwards none).
    env.insert(
        "GLM_ANTHROPIC_BETAS".into(),
        "fine-grained-tool-streaming-2025-05-14".into(),
    );
    common::start(&env, tag).await
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The SSE events: (event name, data).
    fn events(&self) -> Vec<(String, Value)> {
        self.text
            .split("\n\n")
            .filter_map(|block| {
                let mut name = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ").or_else(|| line.strip_prefix("event:")) {
                        name = Some(n.trim().to_string());
                    }
                    if let Some(d) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
                        data = serde_json::from_str(d.trim()).ok();
                    }
                }
                Some((name?, data?))
            })
            .collect()
    }
}

async fn post(d: &Daemon, path: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", d.base))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap_or_default(),
    }
}

async fn messages(d: &Daemon, body: Value) -> Answer {
    post(
        d,
        "/v1/messages",
        &body.to_string(),
        &[("anthropic-version", "2023-06-01")],
    )
    .await
}

fn ask(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 256, "stream": stream,
           "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]})
}

#[tokio::test]
async fn plain_and_streamed_messages_pass_through_with_the_model_rewritten() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(&fake, "anthropic-pass").await;

    // Plain, with fields exai does not know (forwarded untouched) and the client's headers.
    let mut body = ask("glm-4.6", false);
    body["metadata"] = json!({"user_id": "u-1"});
    body["some_future_field"] = json!({"x": 1});
    body["system"] = json!([{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}]);
    let answer = post(
        &d,
        "/v1/messages?beta=true",
        &body.to_string(),
        &[
            ("anthropic-version", "2023-06-01"),
            (
                "anthropic-beta",
                "fine-grained-tool-streaming-2025-05-14,context-1m-2025-08-07",
            ),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let message = answer.json();
    assert_eq!(message["type"], "message");
    assert_eq!(message["stop_reason"], "end_turn");
    assert!(
        message["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("hello there")),
        "{message}"
    );
    assert!(message["usage"]["input_tokens"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(answer.header("x-exai-provider"), "glm");
    let sent = fake.requests().pop().unwrap_or_else(|| panic!("nothing sent"));
    assert_eq!(sent.path, "/anthropic/v1/messages");
    assert_eq!(
        sent.x_api_key.as_deref(),
        Some("test-key"),
        "the provider's key, as x-api-key"
    );
    assert_eq!(sent.anthropic_version.as_deref(), Some("2023-06-01"));
    assert_eq!(
        sent.anthropic_beta.as_deref(),
        Some("fine-grained-tool-streaming-2025-05-14"),
        "only the betas on the provider's allow-list"
    );
    assert_eq!(sent.body["some_future_field"], json!({"x": 1}));
    assert_eq!(sent.body["metadata"]["user_id"], "u-1");
    assert_eq!(sent.body["model"], "glm-4.6");

    // Claude Code's own model names: a mapped one, and the rest to the default (`auto`).
    let haiku = messages(&d, ask("claude-haiku-4-5-20251001", false)).await;
    assert_eq!(
        (haiku.status, haiku.header("x-exai-provider")),
        (200, "kimi"),
        "{}",
        haiku.text
    );
    assert_eq!(
        fake.requests().pop().map(|r| r.body["model"].clone()),
        Some(json!("kimi-k2-0905-preview"))
    );
    let sonnet = messages(&d, ask("claude-sonnet-4-5-20250929", false)).await;
    assert_eq!(
        (sonnet.status, sonnet.header("x-exai-provider")),
        (200, "glm"),
        "{}",
        sonnet.text
    );

    // Streamed, with thinking: every event named as its type, in Anthropic's order.
    fake.push(
        FakeReply::text("streamed words here")
            .with_reasoning("let me think")
            .with_usage(30, 12),
    );
    let answer = messages(&d, ask("glm-4.6", true)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.header("content-type").starts_with("text/event-stream"));
    let events = answer.events();
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str(), "event name = JSON type");
    }
    let names: Vec<&str> = events
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "ping")
        .collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 30);
    let deltas: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| &d["delta"])
        .collect();
    assert!(
        deltas
            .iter()
            .any(|d| d["type"] == "thinking_delta" && d["thinking"] == "let me think")
    );
    assert!(deltas.iter().any(|d| d["type"] == "signature_delta"));
    let text: String = deltas
        .iter()
        .filter(|d| d["type"] == "text_delta")
        .filter_map(|d| d["text"].as_str())
        .collect();
    assert_eq!(text, "streamed words here");
    let delta = events
        .iter()
        .find(|(n, _)| n == "message_delta")
        .map(|(_, d)| d.clone())
        .unwrap_or_default();
    assert_eq!(
        (
            delta["delta"]["stop_reason"].clone(),
            delta["usage"]["output_tokens"].clone()
        ),
        (json!("end_turn"), json!(12))
    );

    // A tool call, its input streamed as input_json_delta pieces.
    fake.push(FakeReply::tool_use(
        "Read",
        json!({"file_path": "/tmp/notes.txt", "limit": 20}),
    ));
    let mut body = ask("glm-4.6", true);
    body["tools"] = json!([{"name": "Read", "description": "read a file", "input_schema": {"type": "object"}}]);
    body["tool_choice"] = json!({"type": "auto"});
    let answer = messages(&d, body).await;
    let events = answer.events();
    let start = events
        .iter()
        .find(|(n, _)| n == "content_block_start")
        .map(|(_, d)| d.clone())
        .unwrap_or_default();
    assert_eq!(
        (
            start["content_block"]["type"].clone(),
            start["content_block"]["name"].clone()
        ),
        (json!("tool_use"), json!("Read"))
    );
    let pieces: Vec<&str> = events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect();
    assert!(pieces.len() > 1, "{pieces:?}");
    let input: Value = serde_json::from_str(&pieces.concat()).unwrap_or_default();
    assert_eq!(input, json!({"file_path": "/tmp/notes.txt", "limit": 20}));
    let delta = events
        .iter()
        .find(|(n, _)| n == "message_delta")
        .map(|(_, d)| d.clone())
        .unwrap_or_default();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");

    // The ledger saw the calls.
    let metrics = reqwest::get(format!("{}/metrics", d.base))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("exai_tokens_total{") && l.contains("provider=\"glm\"") && l.contains("direction=\"output\"")
        })
        .unwrap_or_else(|| panic!("no output tokens for glm in {metrics}"));
    let counted: f64 = line.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0.0);
    assert!(counted >= 24.0, "{line}");
}

#[tokio::test]
async fn errors_come_in_anthropic_shape_and_a_5xx_before_streaming_falls_back() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(&fake, "anthropic-errors").await;
    let shape = |a: &Answer| {
        let body = a.json();
        assert_eq!(body["type"], "error", "{}", a.text);
        (
            a.status,
            body["error"]["type"].as_str().unwrap_or_default().to_string(),
            body["error"]["message"].as_str().unwrap_or_default().to_string(),
        )
    };

    let no_max = messages(
        &d,
        json!({"model": "glm-4.6", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    let (status, kind, message) = shape(&no_max);
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    assert!(message.contains("max_tokens"), "{message}");
    let (status, _, message) = shape(&messages(&d, json!({"model": "glm-4.6", "max_tokens": 5, "messages": []})).await);
    assert!(status == 400 && message.contains("messages"), "{message}");
    let (status, kind, _) = shape(&post(&d, "/v1/messages", "{not json", &[]).await);
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    let (status, kind, _) = shape(&messages(&d, ask("no-such-model", false)).await);
    assert_eq!((status, kind.as_str()), (404, "not_found_error"));
    assert_eq!(fake.requests().len(), 0, "nothing invalid reached a provider");

    fake.push(FakeReply::status(400));
    assert_eq!(shape(&messages(&d, ask("glm-4.6", false)).await).0, 400);
    fake.push(FakeReply::status(503));
    let (status, kind, _) = shape(&messages(&d, ask("glm-4.6", false)).await);
    assert_eq!((status, kind.as_str()), (529, "overloaded_error"));

    // `auto`: the first provider fails before anything streamed; the next one answers.
    fake.push(FakeReply::status(500));
    fake.push(FakeReply::text("from the second provider"));
    let answer = messages(&d, ask("auto", true)).await;
    assert_eq!(
        (answer.status, answer.header("x-exai-provider")),
        (200, "kimi"),
        "{}",
        answer.text
    );
    assert!(answer.text.contains("second"), "{}", answer.text);

    // A failure after the 200 is an `error` event.
    fake.push(FakeReply::drop_after(2));
    let broken = messages(&d, ask("glm-4.6", true)).await;
    assert_eq!(broken.status, 200);
    let events = broken.events();
    assert_eq!(
        events.last().map(|(n, d)| (n.clone(), d["type"].clone())),
        Some(("error".to_string(), json!("error"))),
        "{}",
        broken.text
    );

    // count_tokens: the provider's count, or the gateway's estimate.
    let body =
        json!({"model": "glm-4.6", "messages": [{"role": "user", "content": "count these words please"}]}).to_string();
    let counted = post(&d, "/v1/messages/count_tokens", &body, &[]).await;
    assert_eq!(
        (counted.status, counted.header("x-exai-token-count")),
        (200, "provider"),
        "{}",
        counted.text
    );
    assert!(counted.json()["input_tokens"].as_u64().is_some_and(|n| n > 1000));
    // A burst of the same count (Claude Code's editor extensions send dozens) costs no more
    // provider calls: the count is kept by a hash of the body.
    let counts_sent = || {
        fake.requests()
            .iter()
            .filter(|r| r.path.ends_with("/count_tokens"))
            .count()
    };
    let before = counts_sent();
    let burst = (0..20).map(|_| post(&d, "/v1/messages/count_tokens", &body, &[]));
    for again in futures::future::join_all(burst).await {
        assert_eq!((again.status, again.header("x-exai-token-count")), (200, "provider"));
        assert_eq!(again.json()["input_tokens"], counted.json()["input_tokens"]);
    }
    assert_eq!(counts_sent(), before, "the burst was answered from the kept count");
    fake.without_count_tokens();
    let body = json!({"model": "glm-4.6", "messages": [{"role": "user", "content": "count these too"}]}).to_string();
    let estimated = post(&d, "/v1/messages/count_tokens", &body, &[]).await;
    assert_eq!(
        (estimated.status, estimated.header("x-exai-token-count")),
        (200, "estimate")
    );
    assert!(
        estimated.json()["input_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0 && n < 1000)
    );

    // The models list, in Anthropic's shape for Anthropic's clients.
    let listed: Value = reqwest::Client::new()
        .get(format!("{}/v1/models", d.base))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(listed["has_more"], false);
    assert!(
        listed["data"]
            .as_array()
            .is_some_and(|d| d.iter().all(|m| m["type"] == "model")),
        "{listed}"
    );

    // A 429 whose `Retry-After` is longer than exai waits (`retry.max_wait_secs`) is the
    // caller's at once, and cools the key: the next call is a 429 too, without a provider call.
    fake.push(FakeReply::status(429).with_retry_after(7));
    let limited = messages(&d, ask("glm-4.6", false)).await;
    assert_eq!(shape(&limited).1, "rate_limit_error");
    assert_eq!((limited.status, limited.header("retry-after")), (429, "7"));
    let sent = fake.requests().len();
    let cooling = messages(&d, ask("glm-4.6", false)).await;
    assert_eq!((cooling.status, shape(&cooling).1.as_str()), (429, "rate_limit_error"));
    assert_eq!(fake.requests().len(), sent, "a cooling key was called");
}

/// A daemon whose providers have no Anthropic endpoint: requests are translated.
async fn translating(fake: &FakeUpstream, tag: &str) -> Daemon {
    let mut env = fake.env_for(&["GLM", "KIMI"]);
    env.insert("EXAI_MEMORY".into(), "memory".into());
    env.insert("EXAI_MAX_RETRIES".into(), "0".into());
    env.insert("GLM_ANTHROPIC_BASE_URL".into(), "none".into());
    env.insert("KIMI_ANTHROPIC_BASE_URL".into(), "none".into());
    common::start(&env, tag).await
}

#[tokio::test]
async fn providers_without_an_anthropic_endpoint_are_translated_both_ways() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = translating(&fake, "anthropic-translate").await;

    // Plain: the request mapped to OpenAI's chat format, the reply mapped back.
    // An image needs a vision model (routing refuses one that cannot read it).
    let body = json!({"model": "glm-4.5v", "max_tokens": 300, "temperature": 0.1, "top_k": 3,
    "stop_sequences": ["STOP"], "metadata": {"user_id": "u-9"}, "unknown_thing": true,
    "system": [{"type": "text", "text": "be exact"}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "what is in this picture?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "Read", "input": {"file_path": "/a"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "file text"}]}
    ]});
    let answer = messages(&d, body).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let message = answer.json();
    assert_eq!(
        (message["type"].clone(), message["stop_reason"].clone()),
        (json!("message"), json!("end_turn"))
    );
    assert_eq!(message["content"][0]["type"], "text");
    assert!(message["usage"]["output_tokens"].as_u64().is_some_and(|n| n > 0));
    let sent = fake.requests().pop().unwrap_or_else(|| panic!("nothing sent"));
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.authorization.as_deref(), Some("Bearer test-key"));
    let m = &sent.body["messages"];
    assert_eq!(m[0], json!({"role": "system", "content": "be exact"}));
    assert_eq!(m[1]["content"][1]["image_url"]["url"], "data:image/jpeg;base64,QUJD");
    assert_eq!(
        m[2]["tool_calls"][0]["function"],
        json!({"name": "Read", "arguments": "{\"file_path\":\"/a\"}"})
    );
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "toolu_9", "content": "file text"})
    );
    assert_eq!(
        (sent.body["stop"].clone(), sent.body["user"].clone()),
        (json!(["STOP"]), json!("u-9"))
    );
    assert!(sent.body.get("unknown_thing").is_none() && sent.body.get("top_k").is_none());

    // Streamed with reasoning: a thinking block, then text, as Anthropic's events.
    fake.push(
        FakeReply::text("translated stream works")
            .with_reasoning("pondering")
            .with_usage(40, 9),
    );
    let answer = messages(&d, ask("glm-4.6", true)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let events = answer.events();
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    assert_eq!(events.first().map(|(n, _)| n.as_str()), Some("message_start"));
    assert!(
        events[0].1["message"]["usage"]["input_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    let starts: Vec<Value> = events
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| d["content_block"]["type"].clone())
        .collect();
    assert_eq!(starts, [json!("thinking"), json!("text")]);
    let text: String = events.iter().filter_map(|(_, d)| d["delta"]["text"].as_str()).collect();
    assert_eq!(text, "translated stream works");
    let end = events
        .iter()
        .find(|(n, _)| n == "message_delta")
        .map(|(_, d)| d.clone())
        .unwrap_or_default();
    assert_eq!(
        (
            end["usage"]["output_tokens"].clone(),
            end["usage"]["input_tokens"].clone()
        ),
        (json!(9), json!(40))
    );
    assert_eq!(events.last().map(|(n, _)| n.as_str()), Some("message_stop"));
    assert_eq!(
        fake.requests()
            .pop()
            .map(|r| r.body["stream_options"]["include_usage"].clone()),
        Some(json!(true))
    );

    // A streamed tool call: input_json_delta pieces that add up to the input.
    fake.push(FakeReply::tool_use("Read", json!({"file_path": "/tmp/x.txt"})));
    let mut body = ask("glm-4.6", true);
    body["tools"] = json!([{"name": "Read", "description": "read", "input_schema": {"type": "object"}}]);
    body["tool_choice"] = json!({"type": "any"});
    let events = messages(&d, body).await.events();
    let start = events
        .iter()
        .find(|(n, _)| n == "content_block_start")
        .map(|(_, d)| d["content_block"].clone())
        .unwrap_or_default();
    assert_eq!(
        (start["type"].clone(), start["name"].clone()),
        (json!("tool_use"), json!("Read"))
    );
    let pieces: Vec<&str> = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect();
    assert!(pieces.len() > 1, "{pieces:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&pieces.concat()).ok(),
        Some(json!({"file_path": "/tmp/x.txt"}))
    );
    let end = events
        .iter()
        .find(|(n, _)| n == "message_delta")
        .map(|(_, d)| d.clone())
        .unwrap_or_default();
    assert_eq!(end["delta"]["stop_reason"], "tool_use");
    let sent = fake.requests().pop().map(|r| r.body).unwrap_or_default();
    assert_eq!(sent["tool_choice"], "required");
    assert_eq!(sent["tools"][0]["function"]["name"], "Read");

    // Fallback on a 5xx before anything streamed, and errors in Anthropic's shape.
    fake.push(FakeReply::status(502));
    fake.push(FakeReply::text("second provider"));
    let answer = messages(&d, ask("auto", false)).await;
    assert_eq!(
        (answer.status, answer.header("x-exai-provider")),
        (200, "kimi"),
        "{}",
        answer.text
    );
    fake.push(FakeReply::status(429).with_retry_after(3));
    let limited = messages(&d, ask("glm-4.6", false)).await;
    assert_eq!(
        (limited.status, limited.json()["error"]["type"].clone()),
        (429, json!("rate_limit_error"))
    );

    // count_tokens: the gateway's estimate (an OpenAI endpoint has no count).
    let counted = post(&d, "/v1/messages/count_tokens", &ask("glm-4.6", false).to_string(), &[]).await;
    assert_eq!(
        (counted.status, counted.header("x-exai-token-count")),
        (200, "estimate")
    );
}

#[tokio::test]
async fn a_provider_failing_on_the_messages_api_opens_its_circuit_as_on_any_other_call() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_MEMORY".into(), "memory".into());
    env.insert("EXAI_CIRCUIT_FAILURE_THRESHOLD".into(), "2".into());
    env.insert("EXAI_CIRCUIT_COOLDOWN_SECS".into(), "60".into());
    // One try per call (Messages calls are retried like every call), so each 500 is a failure.
    env.insert("EXAI_MAX_RETRIES".into(), "0".into());
    let d = common::start(&env, "anthropic-circuit").await;
    for _ in 0..2 {
        fake.push(FakeReply::status(500));
        assert_eq!(messages(&d, ask("glm-4.6", false)).await.status, 529);
    }
    let sent = fake.requests().len();
    let refused = messages(&d, ask("glm-4.6", false)).await;
    assert_eq!(refused.status, 529, "{}", refused.text);
    assert!(refused.text.contains("temporarily disabled"), "{}", refused.text);
    assert_eq!(fake.requests().len(), sent, "an open circuit sends nothing");
    // The same circuit refuses OpenAI-API calls too: one provider, one breaker.
    let openai = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", d.base))
        .json(&json!({"model": "glm-4.6", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(openai.status().as_u16(), 503);
}
