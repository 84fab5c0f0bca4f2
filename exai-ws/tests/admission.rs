//! One admission for every front door of the real daemon: the client's rate
//! (`limits.requests_per_minute`), each call's deadline (`limits.call_timeout_secs`) and the
//! body and frame limits hold on the OpenAI API, MCP over HTTP (the official SDK's client), MCP
//! over WebSocket and the EXAI protocol alike. Each test runs one daemon with a rate of 3 calls
//! a minute and a 1 s deadline, sends a call the upstream never answers (stopped at the
//! deadline), two that pass, and a fourth that is refused with the time to retry.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::ws::{Ws, close_code, connect, frame, hello, send, until};
use common::{Daemon, start, text_of, tool};
use exai_core::testing::{FakeReply, FakeUpstream};
use futures::SinkExt;
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

/// A daemon whose upstream hangs on its first call, with the limits above and small bodies
/// and frames.
async fn daemon(fake: &FakeUpstream, tag: &str) -> Daemon {
    fake.push(FakeReply::hang());
    let mut env: HashMap<String, String> = fake.env_for(&["GLM"]);
    for (k, v) in [
        ("EXAI_REQUESTS_PER_MINUTE", "3"),
        ("EXAI_CALL_TIMEOUT_SECS", "1"),
        ("EXAI_WS_MAX_BODY_BYTES", "4096"),
        ("EXAI_WS_MAX_FRAME_BYTES", "4096"),
    ] {
        env.insert(k.into(), v.into());
    }
    start(&env, tag).await
}

fn within_deadline(started: Instant) {
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped at the deadline: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_openai_api_limits_rate_deadline_and_body() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(&fake, "admit-openai").await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", d.base);
    let post = |body: Value| client.post(&url).json(&body).send();
    let ask = json!({"messages": [{"role": "user", "content": "hi"}]});

    let big = "x".repeat(5_000);
    let too_big = post(json!({"messages": [{"role": "user", "content": big}]}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(too_big.status(), 413);
    let body: Value = too_big.json().await.unwrap_or_default();
    assert_eq!(body["error"]["code"], "body_too_large", "{body}");

    let started = Instant::now();
    let late = post(ask.clone()).await.unwrap_or_else(|e| panic!("{e}"));
    within_deadline(started);
    assert_eq!(late.status(), 504);
    let body: Value = late.json().await.unwrap_or_default();
    assert_eq!(body["error"]["code"], "timeout", "{body}");
    for _ in 0..2 {
        let ok = post(ask.clone()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.status(), 200);
    }
    let limited = post(ask).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().get("retry-after").is_some());
    let body: Value = limited.json().await.unwrap_or_default();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
}

#[tokio::test]
async fn mcp_over_http_limits_rate_deadline_and_body() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(&fake, "admit-mcp-http").await;
    let raw = reqwest::Client::new()
        .post(format!("{}/mcp", d.base))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(format!("{{\"pad\": \"{}\"}}", "x".repeat(5_000)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(raw.status(), 413);
    let body: Value = raw.json().await.unwrap_or_default();
    assert_eq!(body["error"]["code"], -32600, "{body}");

    let transport = StreamableHttpClientTransport::from_uri(format!("{}/mcp", d.base));
    let client = ().serve(transport).await.unwrap_or_else(|e| panic!("initialize: {e}"));
    let started = Instant::now();
    let late = client
        .call_tool(tool("chat", json!({"prompt": "hang"})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    within_deadline(started);
    assert_eq!(late.is_error, Some(true));
    assert!(text_of(&late).contains("ran longer than 1 s"), "{late:?}");
    for _ in 0..2 {
        let ok = client
            .call_tool(tool("version", json!({})))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.is_error, Some(false), "{ok:?}");
    }
    let limited = client
        .call_tool(tool("version", json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(limited.is_error, Some(true));
    assert!(text_of(&limited).contains("rate limited"), "{limited:?}");
    let structured = limited.structured_content.unwrap_or_default();
    assert!(
        structured["retry_after_secs"].as_u64().is_some_and(|s| s >= 1),
        "{structured}"
    );
    let _ = client.cancel().await;
}

/// The response to JSON-RPC request `id`, skipping notifications.
async fn response(ws: &mut Ws, id: u64) -> Value {
    loop {
        let f = frame(ws).await;
        if f["id"] == id && f.get("method").is_none() {
            return f;
        }
    }
}

#[tokio::test]
async fn mcp_over_websocket_limits_rate_deadline_and_frames() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(&fake, "admit-mcp-ws").await;
    let mut ws = connect(&d).await;
    let init =
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}});
    send(
        &mut ws,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}),
    )
    .await;
    assert!(response(&mut ws, 1).await["result"].is_object());
    send(
        &mut ws,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    let call = |id: u64, name: &str, arguments: Value| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}});
    let started = Instant::now();
    send(&mut ws, call(2, "chat", json!({"prompt": "hang"}))).await;
    let late = response(&mut ws, 2).await;
    within_deadline(started);
    assert_eq!(late["result"]["isError"], true, "{late}");
    assert!(
        late["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("ran longer than 1 s"))
    );
    for id in [3, 4] {
        send(&mut ws, call(id, "version", json!({}))).await;
        assert_eq!(response(&mut ws, id).await["result"]["isError"], false);
    }
    send(&mut ws, call(5, "version", json!({}))).await;
    let limited = response(&mut ws, 5).await;
    assert_eq!(limited["result"]["isError"], true, "{limited}");
    assert!(
        limited["result"]["structuredContent"]["retry_after_secs"]
            .as_u64()
            .is_some_and(|s| s >= 1)
    );
    // JSON-RPC 2.0 §5.1, as on stdio: not JSON → -32700, not a request → -32600, id null.
    ws.send(tokio_tungstenite::tungstenite::Message::Text("not json".into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let parse_error = frame(&mut ws).await;
    assert_eq!(
        (parse_error["id"].clone(), parse_error["error"]["code"].as_i64()),
        (Value::Null, Some(-32700))
    );
    send(&mut ws, json!(42)).await;
    assert_eq!(frame(&mut ws).await["error"]["code"], -32600);
    send(&mut ws, json!({"jsonrpc": "2.0", "id": 7, "method": "ping"})).await;
    assert!(response(&mut ws, 7).await["result"].is_object(), "still serving");
    send(
        &mut ws,
        json!({"jsonrpc": "2.0", "id": 6, "method": "ping", "pad": "x".repeat(5_000)}),
    )
    .await;
    let closed = close_code(&mut ws).await;
    assert!(
        matches!(closed, Some(1009) | None),
        "oversize frame ends the connection: {closed:?}"
    );
}

#[tokio::test]
async fn the_exai_protocol_limits_rate_deadline_and_frames() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(&fake, "admit-exai").await;
    let mut ws = connect(&d).await;
    assert_eq!(hello(&mut ws, json!({})).await["op"], "hello_ack");
    let mut seen = Vec::new();
    let started = Instant::now();
    send(
        &mut ws,
        json!({"op": "call_tool", "request_id": "late", "name": "chat", "arguments": {"prompt": "hang"}}),
    )
    .await;
    let late = until(&mut ws, "error", &mut seen).await;
    within_deadline(started);
    assert_eq!(
        (late["request_id"].as_str(), late["error"]["code"].as_str()),
        (Some("late"), Some("TIMEOUT")),
        "{late}"
    );
    for id in ["a", "b"] {
        send(
            &mut ws,
            json!({"op": "call_tool", "request_id": id, "name": "version", "arguments": {}}),
        )
        .await;
        let ok = until(&mut ws, "call_tool_res", &mut seen).await;
        assert!(ok.get("error").is_none(), "{ok}");
    }
    send(
        &mut ws,
        json!({"op": "call_tool", "request_id": "c", "name": "version", "arguments": {}}),
    )
    .await;
    let limited = until(&mut ws, "error", &mut seen).await;
    assert_eq!(limited["error"]["code"], "OVER_CAPACITY", "{limited}");
    assert!(
        limited["error"]["details"]["retry_after"]
            .as_u64()
            .is_some_and(|s| s >= 1),
        "{limited}"
    );
    send(&mut ws, json!({"op": "ping", "pad": "x".repeat(5_000)})).await;
    let closed = close_code(&mut ws).await;
    assert_eq!(closed, Some(1009), "an oversize frame closes with 1009");
}
