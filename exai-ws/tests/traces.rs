//! OpenTelemetry traces from the real exai-ws: an OTLP/HTTP receiver in this test decodes the
//! protobuf spans the daemon exports (`opentelemetry-proto`) and checks their names, kinds,
//! GenAI attributes and links — a call retried then answered by a fallback, under a
//! `traceparent` the client sent.

mod common;

use std::collections::HashMap;

use common::{create_key, start};
use exai_core::testing::otlp::{Receiver, Span, SpanKind, attr, hex};
use exai_core::testing::{FakeReply, FakeUpstream};
use serde_json::json;

fn otel_env(fake: &FakeUpstream, collector: &str) -> HashMap<String, String> {
    let mut env = fake.env_for(&["GLM", "KIMI"]);
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), collector.to_string());
    env.insert("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into());
    env.insert("EXAI_MAX_RETRIES".into(), "1".into());
    env.insert("EXAI_RETRY_BASE_DELAY_MS".into(), "10".into());
    env.insert("EXAI_FALLBACK".into(), "glm,kimi".into());
    env
}

#[tokio::test]
async fn a_retried_call_and_its_fallback_are_children_of_the_continued_request_span() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let receiver = Receiver::start().await.unwrap_or_else(|e| panic!("{e}"));
    let daemon = start(&otel_env(&fake, receiver.endpoint()), "traces").await;
    // `auto` tries GLM first: it fails twice (the call and its one retry); KIMI answers.
    fake.push(FakeReply::status(503));
    fake.push(FakeReply::status(503));
    fake.push(FakeReply::text("answered by the fallback"));
    let (trace_id, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let reply: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", daemon.base))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": "secret prompt text"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(
        reply["choices"][0]["message"]["content"], "answered by the fallback",
        "{reply}"
    );

    let trace = receiver.trace(trace_id, |s| s.len() >= 4).await;
    let server: Vec<&Span> = trace.iter().filter(|s| s.kind == SpanKind::Server as i32).collect();
    assert_eq!(server.len(), 1, "{trace:#?}");
    let server = server[0];
    assert_eq!(server.name, "chat auto");
    assert_eq!(
        hex(&server.parent_span_id),
        caller_span,
        "the caller's traceparent is continued"
    );
    for (key, want) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "auto"),
        ("gen_ai.provider.name", "kimi"),
    ] {
        assert_eq!(attr(server, key).as_deref(), Some(want), "{key}: {server:#?}");
    }
    let from = attr(server, "exai.fallback_from").unwrap_or_default();
    assert!(from.starts_with("glm/"), "{server:#?}");
    assert!(
        attr(server, "gen_ai.response.model").is_some_and(|m| m.starts_with("kimi")),
        "{server:#?}"
    );
    assert!(
        attr(server, "gen_ai.usage.input_tokens").is_some_and(|n| n != "0"),
        "{server:#?}"
    );
    assert!(
        attr(server, "gen_ai.usage.output_tokens").is_some_and(|n| n != "0"),
        "{server:#?}"
    );
    assert!(attr(server, "exai.cost_usd").is_some(), "{server:#?}");
    assert_eq!(
        attr(server, "gen_ai.response.finish_reasons").as_deref(),
        Some("[\"stop\"]")
    );
    assert!(
        attr(server, "gen_ai.input.messages").is_none(),
        "content only when asked"
    );

    let clients: Vec<&Span> = trace.iter().filter(|s| s.kind == SpanKind::Client as i32).collect();
    assert_eq!(clients.len(), 3, "two GLM attempts and the fallback: {trace:#?}");
    for client in &clients {
        assert_eq!(
            client.parent_span_id, server.span_id,
            "every attempt is a child of the request"
        );
    }
    let glm: Vec<&&Span> = clients
        .iter()
        .filter(|s| attr(s, "gen_ai.provider.name").as_deref() == Some("glm"))
        .collect();
    assert_eq!(glm.len(), 2, "{clients:#?}");
    for attempt in glm {
        assert_eq!(attempt.name, format!("chat {}", &from["glm/".len()..]));
        assert_eq!(
            attr(attempt, "error.type").as_deref(),
            Some("transient"),
            "{attempt:#?}"
        );
        assert_eq!(attr(attempt, "http.response.status_code").as_deref(), Some("503"));
        assert_eq!(attempt.status.as_ref().map(|s| s.code), Some(2), "status ERROR");
    }
    let kimi = clients
        .iter()
        .find(|s| attr(s, "gen_ai.provider.name").as_deref() == Some("kimi"))
        .unwrap_or_else(|| panic!("{clients:#?}"));
    assert!(kimi.name.starts_with("chat kimi"), "{kimi:#?}");
    assert!(attr(kimi, "error.type").is_none());
    assert!(attr(kimi, "gen_ai.usage.output_tokens").is_some());
    assert_eq!(attr(kimi, "server.address").as_deref(), Some("127.0.0.1"));
    // The daemon names itself.
    let services: Vec<String> = receiver.spans().into_iter().map(|(n, _)| n).collect();
    assert!(services.iter().all(|s| s == "exai-ws"), "{services:?}");
}

#[tokio::test]
async fn content_only_when_asked_and_the_key_by_name() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let receiver = Receiver::start().await.unwrap_or_else(|e| panic!("{e}"));
    let mut env = otel_env(&fake, receiver.endpoint());
    env.insert("EXAI_OTEL_CONTENT".into(), "true".into());
    env.insert("EXAI_ADMIN_TOKEN".into(), "admin-token-for-traces".into());
    let daemon = start(&env, "traces-content").await;
    let secret = create_key(&daemon, "admin-token-for-traces", "team-a", json!({})).await;
    fake.push(FakeReply::text("the reply text"));
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let status = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", daemon.base))
        .bearer_auth(&secret)
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&json!({"model": "glm-4.6", "messages": [{"role": "user", "content": "what the user typed"}]}))
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200);
    let trace = receiver
        .trace(trace_id, |s| s.iter().any(|s| s.kind == SpanKind::Server as i32))
        .await;
    let server = trace
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| panic!("{trace:#?}"));
    assert_eq!(attr(server, "exai.key").as_deref(), Some("team-a"));
    assert!(
        attr(server, "gen_ai.input.messages").is_some_and(|m| m.contains("what the user typed")),
        "{server:#?}"
    );
    assert!(attr(server, "gen_ai.output.messages").is_some_and(|m| m.contains("the reply text")));
    let everything = format!("{:?}", receiver.spans());
    assert!(!everything.contains(&secret), "no secret in any span");
}

#[tokio::test]
async fn an_unreachable_collector_is_logged_once_counted_and_never_blocks_a_request() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    // A port nobody listens on.
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let mut env = otel_env(&fake, &closed);
    env.insert("RUST_LOG".into(), "warn".into());
    let log = std::env::temp_dir().join(format!("exai-ws-otel-down-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
    let daemon = common::start_logging(&env, "traces-down", std::process::Stdio::from(file)).await;
    let client = reqwest::Client::new();
    for round in 0..3 {
        for _ in 0..3 {
            fake.push(FakeReply::text("still served"));
            let status = client
                .post(format!("{}/v1/chat/completions", daemon.base))
                .json(&json!({"model": "glm-4.6", "messages": [{"role": "user", "content": "hi"}]}))
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await
                .map(|r| r.status())
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(status, 200);
        }
        // A batch goes out every 100 ms.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let metrics = client
        .get(format!("{}/metrics", daemon.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    let failed: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("exai_otel_export_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(failed >= 2.0, "{metrics}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(text.matches("cannot export traces").count(), 1, "logged once: {text}");
}

#[tokio::test]
async fn an_mcp_tool_call_over_http_continues_the_traceparent_header() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let receiver = Receiver::start().await.unwrap_or_else(|e| panic!("{e}"));
    let daemon = start(&otel_env(&fake, receiver.endpoint()), "traces-mcp").await;
    fake.push(FakeReply::text("traced over mcp"));
    let (client, url) = (reqwest::Client::new(), format!("{}/mcp", daemon.base));
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});
    let (_, session) = common::mcp(&client, &url, None, init).await;
    let session = session.unwrap_or_else(|| panic!("no mcp-session-id"));
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    common::mcp(&client, &url, Some(&session), initialized).await;
    let (trace_id, caller_span) = ("6bf92f3577b34da6a3ce929d0e0e4736", "20f067aa0ba902b7");
    let response = client
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "chat", "arguments": {"prompt": "hi"}}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 200);
    let _ = response.text().await;
    let trace = receiver
        .trace(trace_id, |s| s.iter().any(|s| s.kind == SpanKind::Client as i32))
        .await;
    let tool = trace
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| panic!("{trace:#?}"));
    assert_eq!(tool.name, "execute_tool chat");
    assert_eq!(hex(&tool.parent_span_id), caller_span);
}
