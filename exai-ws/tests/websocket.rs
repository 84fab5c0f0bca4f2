//! The WebSocket dialects of the real exai-ws binary, with tokio-tungstenite as the client.

mod common;

use std::time::Duration;

use common::ws::{Ws, connect, frame, hello, next, send, until};
use common::{lifecycle, start};

use exai_core::testing::{FakeReply, FakeUpstream};
use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn exai_protocol_end_to_end_with_progress_chunks_and_errors() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::text("a streamed reply in pieces").with_chunk_delay(Duration::from_millis(10)));
    let daemon = start(&fake.env_for(&["GLM"]), "e2e").await;
    let mut ws = connect(&daemon).await;
    let ack = hello(&mut ws, json!({})).await;
    assert_eq!(
        (ack["op"].as_str(), ack["ok"].as_bool()),
        (Some("hello_ack"), Some(true))
    );
    send(&mut ws, json!({"op": "ping", "request_id": "p1"})).await;
    assert_eq!(frame(&mut ws).await, json!({"op": "pong", "request_id": "p1"}));
    send(&mut ws, json!({"op": "list_tools"})).await;
    let tools = frame(&mut ws).await;
    assert_eq!(tools["tools"].as_array().map(Vec::len), Some(17));
    send(
        &mut ws,
        json!({"op": "call_tool", "request_id": "r1", "name": "chat", "arguments": {"prompt": "hi"}}),
    )
    .await;
    let mut seen = Vec::new();
    let res = until(&mut ws, "call_tool_res", &mut seen).await;
    assert_eq!(seen.first().map(|f| f["op"].clone()), Some(json!("call_tool_ack")));
    assert!(seen.iter().any(|f| f["op"] == "progress" && f["request_id"] == "r1"));
    let chunks: String = seen
        .iter()
        .filter(|f| f["op"] == "stream_chunk")
        .filter_map(|f| f["text"].as_str())
        .collect();
    assert_eq!(chunks, "a streamed reply in pieces");
    assert_eq!(res["request_id"], "r1");
    assert!(
        res["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("a streamed reply in pieces"))
    );
    assert_eq!(res["outputs"][0]["type"], "text");
    assert!(res.get("error").is_none_or(Value::is_null));
    send(
        &mut ws,
        json!({"op": "call_tool", "request_id": "r2", "name": "nope", "arguments": {}}),
    )
    .await;
    let err = until(&mut ws, "error", &mut Vec::new()).await;
    assert_eq!(
        (err["request_id"].as_str(), err["error"]["code"].as_str()),
        (Some("r2"), Some("TOOL_NOT_FOUND"))
    );
    send(&mut ws, json!({"op": "fly"})).await;
    let unknown = frame(&mut ws).await;
    assert_eq!(unknown["error"]["code"], "INVALID_REQUEST");
    assert!(
        unknown["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown op 'fly'"))
    );
    ws.send(Message::Text("{broken".into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let malformed = frame(&mut ws).await;
    assert_eq!(
        (malformed["op"].as_str(), malformed["error"]["code"].as_str()),
        (Some("error"), Some("INVALID_REQUEST"))
    );
    send(&mut ws, json!({"op": "health", "request_id": "h"})).await;
    let health = frame(&mut ws).await;
    assert_eq!(health["op"], "health_res");
    assert!(!health.to_string().contains("test-key"), "no secret in health");
}

#[tokio::test]
async fn the_first_frame_decides_and_bad_openings_close_with_their_codes() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_WS_TOKEN".into(), "ws-token".into());
    env.insert("EXAI_WS_MAX_FRAME_BYTES".into(), "65536".into());
    let daemon = start(&env, "close").await;
    let mut ws = connect(&daemon).await;
    ws.send(Message::Text("not json".into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next(&mut ws).await.err().flatten(), Some(4000));
    let mut ws = connect(&daemon).await;
    send(&mut ws, json!({"op": "list_tools"})).await;
    assert_eq!(next(&mut ws).await.err().flatten(), Some(4001));
    let mut ws = connect(&daemon).await;
    send(&mut ws, json!({"op": "hello", "token": "wrong"})).await;
    let refused = frame(&mut ws).await;
    assert_eq!(refused["error"]["code"], "UNAUTHORIZED");
    assert_eq!(next(&mut ws).await.err().flatten(), Some(4003));
    let mut ws = connect(&daemon).await;
    let ack = hello(&mut ws, json!({"token": "ws-token"})).await;
    assert_eq!(ack["ok"], true);
    let huge =
        json!({"op": "call_tool", "request_id": "big", "name": "chat", "arguments": {"prompt": "x".repeat(100_000)}});
    let _ = ws.send(Message::Text(huge.to_string().into())).await;
    assert_eq!(
        next(&mut ws).await.err().flatten(),
        Some(u16::from(CloseCode::Size)),
        "oversize frame closes with 1009"
    );
    let mut ws = connect(&daemon).await;
    assert_eq!(
        hello(&mut ws, json!({"token": "ws-token"})).await["ok"],
        true,
        "still serving"
    );
}

#[tokio::test]
async fn mcp_json_rpc_over_websocket() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let env = lifecycle(&fake, "mcp over ws");
    let daemon = start(&env, "mcpws").await;
    let mut ws = connect(&daemon).await;
    let mut seen = Vec::new();
    // Frames until the response to `id`, keeping the notifications in `seen`.
    async fn response(ws: &mut Ws, id: u64, seen: &mut Vec<Value>) -> Value {
        loop {
            let f = frame(ws).await;
            if f["id"] == id {
                return f;
            }
            seen.push(f);
        }
    }
    send(
        &mut ws,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await;
    let init = frame(&mut ws).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert!(init["result"]["capabilities"]["logging"].is_object(), "{init}");
    send(
        &mut ws,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    send(&mut ws, json!({"jsonrpc": "2.0", "id": 2, "method": "ping"})).await;
    assert!(response(&mut ws, 2, &mut seen).await["result"].is_object());

    // A long call: progress on its token, with heartbeats.
    send(
        &mut ws,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "chat",
        "arguments": {"prompt": "x"}, "_meta": {"progressToken": "ws-1"}}}),
    )
    .await;
    let reply = response(&mut ws, 3, &mut seen).await;
    assert!(
        reply["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("mcp over ws")),
        "{reply}"
    );
    let progress: Vec<&Value> = seen
        .iter()
        .filter(|f| f["method"] == "notifications/progress")
        .collect();
    assert!(
        progress.iter().all(|p| p["params"]["progressToken"] == "ws-1"),
        "{progress:?}"
    );
    assert!(
        progress
            .iter()
            .filter(|p| p["params"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("still working")))
            .count()
            >= 2,
        "{progress:?}"
    );

    // Logging at `warning`: the retry after a 500 is reported.
    send(
        &mut ws,
        json!({"jsonrpc": "2.0", "id": 4, "method": "logging/setLevel", "params": {"level": "warning"}}),
    )
    .await;
    assert!(response(&mut ws, 4, &mut seen).await["result"].is_object());
    seen.clear();
    send(&mut ws, json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "chat", "arguments": {"prompt": "flaky"}}})).await;
    assert_eq!(response(&mut ws, 5, &mut seen).await["result"]["isError"], false);
    let retried = |seen: &[Value]| {
        seen.iter().any(|f| {
            f["method"] == "notifications/message"
                && f["params"]["level"] == "warning"
                && f["params"]["data"]["message"] == "retrying"
        })
    };
    // The retry's warning may land just after the response.
    while !retried(&seen) {
        seen.push(frame(&mut ws).await);
    }
    assert!(
        seen.iter()
            .all(|f| f["params"]["level"] != "debug" && f["params"]["level"] != "info")
    );

    // Cancellation aborts the upstream request and frees the only global permit.
    let before = fake.requests().len();
    send(&mut ws, json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "chat", "arguments": {"prompt": "hang"}}})).await;
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.requests().len() == before + 1)
            .await
    );
    send(
        &mut ws,
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 6, "reason": "user"}}),
    )
    .await;
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.cut_short() == 1).await,
        "upstream request aborted"
    );
    send(&mut ws, json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "chat", "arguments": {"prompt": "after"}}})).await;
    let after = response(&mut ws, 7, &mut seen).await;
    assert!(
        after["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("after the cancel")),
        "{after}"
    );
}

#[tokio::test]
async fn a_retry_with_the_same_request_id_gets_the_stored_result() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::text("only once"));
    let daemon = start(&fake.env_for(&["GLM"]), "retry").await;
    let mut ws = connect(&daemon).await;
    let session = hello(&mut ws, json!({})).await["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let call = json!({"op": "call_tool", "request_id": "same-1", "name": "chat", "arguments": {"prompt": "hi"}});
    send(&mut ws, call.clone()).await;
    let first = until(&mut ws, "call_tool_res", &mut Vec::new()).await;
    drop(ws);
    let mut again = connect(&daemon).await;
    assert_eq!(
        hello(&mut again, json!({"session_id": session})).await["session_id"],
        json!(session)
    );
    send(&mut again, call).await;
    let second = until(&mut again, "call_tool_res", &mut Vec::new()).await;
    assert_eq!(second["text"], first["text"]);
    assert_eq!(second["replayed"], true);
    assert_eq!(fake.requests().len(), 1, "no second provider call");
}

#[tokio::test]
async fn two_clients_continue_one_conversation_and_a_vanishing_client_cancels_its_call() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::text("first answer"));
    let daemon = start(&fake.env_for(&["GLM"]), "two").await;
    let mut a = connect(&daemon).await;
    hello(&mut a, json!({})).await;
    send(
        &mut a,
        json!({"op": "call_tool", "request_id": "a1", "name": "chat", "arguments": {"prompt": "remember 7"}}),
    )
    .await;
    let res = until(&mut a, "call_tool_res", &mut Vec::new()).await;
    let id = res["structured"]["continuation_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut b = connect(&daemon).await;
    hello(&mut b, json!({})).await;
    send(&mut b, json!({"op": "call_tool", "request_id": "b1", "name": "chat", "arguments": {"prompt": "which?", "continuation_id": id}})).await;
    until(&mut b, "call_tool_res", &mut Vec::new()).await;
    assert!(
        fake.requests()[1]
            .messages()
            .iter()
            .any(|m| m["content"] == "remember 7"),
        "b saw a's turn"
    );
    fake.push(FakeReply::hang());
    send(
        &mut b,
        json!({"op": "call_tool", "request_id": "b2", "name": "chat", "arguments": {"prompt": "hang"}}),
    )
    .await;
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.requests().len() == 3)
            .await
    );
    drop(b);
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.cut_short() == 1).await,
        "the vanished client's call was cancelled upstream"
    );
    fake.push(FakeReply::hang());
    send(
        &mut a,
        json!({"op": "call_tool", "request_id": "a2", "name": "chat", "arguments": {"prompt": "hang too"}}),
    )
    .await;
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.requests().len() == 4)
            .await
    );
    send(&mut a, json!({"op": "cancel", "request_id": "a2"})).await;
    let cancelled = until(&mut a, "cancelled", &mut Vec::new()).await;
    assert_eq!(cancelled["request_id"], "a2");
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.cut_short() == 2).await,
        "cancel really cancels"
    );
}

#[tokio::test]
async fn connection_limits_close_with_1008_and_sigterm_closes_with_1001_after_the_call() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::text("done in time").with_delay(Duration::from_millis(600)));
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_WS_MAX_CONNECTIONS".into(), "1".into());
    let mut daemon = start(&env, "limits").await;
    let mut first = connect(&daemon).await;
    hello(&mut first, json!({})).await;
    let mut second = connect(&daemon).await;
    assert_eq!(next(&mut second).await.err().flatten(), Some(1008));
    send(
        &mut first,
        json!({"op": "call_tool", "request_id": "slow", "name": "chat", "arguments": {"prompt": "slow"}}),
    )
    .await;
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.requests().len() == 1)
            .await
    );
    daemon.sigterm();
    let res = until(&mut first, "call_tool_res", &mut Vec::new()).await;
    assert!(res["text"].as_str().is_some_and(|t| t.starts_with("done in time")));
    assert_eq!(next(&mut first).await.err().flatten(), Some(1001));
    daemon.exits_cleanly().await;
}
