//! The real exai-stdio binary, driven over pipes as an MCP client would.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::McpChild;
use exai_core::testing::{FakeReply, FakeUpstream};
use serde_json::json;

fn env(fake: &FakeUpstream, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_RETRY_BASE_DELAY_MS".into(), "10".into());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

#[tokio::test]
async fn initialize_negotiates_versions_and_lists_the_profile_tools() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    for (asked, agreed) in [
        ("2024-11-05", "2024-11-05"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
    ] {
        let mut mcp = McpChild::spawn(&env(&fake, &[]));
        let init = mcp.initialize(asked).await;
        assert_eq!(init["result"]["protocolVersion"], agreed);
        assert_eq!(init["result"]["serverInfo"]["name"], "exai");
        assert!(init["result"]["capabilities"]["logging"].is_object());
        assert!(init["result"]["capabilities"]["tools"].is_object());
    }
    let mut mcp = McpChild::spawn(&env(&fake, &[]));
    mcp.initialize("2025-06-18").await;
    let tools = mcp.request(2, "tools/list", json!({})).await;
    assert_eq!(tools["result"]["tools"].as_array().map(Vec::len), Some(17));
    let mut lean = McpChild::spawn(&env(&fake, &[("EXAI_TOOLS", "lean")]));
    lean.initialize("2025-06-18").await;
    let tools = lean.request(2, "tools/list", json!({})).await;
    assert_eq!(tools["result"]["tools"].as_array().map(Vec::len), Some(9));
    assert_eq!(
        tools["result"]["tools"][0]["inputSchema"]["additionalProperties"],
        false
    );
}

#[tokio::test]
async fn chat_reaches_the_provider_and_the_result_names_who_answered() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::text("pong"));
    let mut mcp = McpChild::spawn(&env(&fake, &[]));
    mcp.initialize("2025-06-18").await;
    let reply = mcp
        .request(
            2,
            "tools/call",
            json!({"name": "chat", "arguments": {"prompt": "ping"}}),
        )
        .await;
    let result = &reply["result"];
    assert_eq!(result["isError"], false);
    assert!(
        result["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("pong"))
    );
    assert_eq!(result["structuredContent"]["provider"], "glm");
    assert_eq!(result["structuredContent"]["model"], "glm-4.6");
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(fake.requests()[0].authorization.as_deref(), Some("Bearer test-key"));
}

#[tokio::test]
async fn a_long_call_sends_progress_with_a_heartbeat() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::text("done after a while").with_delay(Duration::from_millis(2_200)));
    let mut mcp = McpChild::spawn(&env(&fake, &[("EXAI_PROGRESS_HEARTBEAT_SECS", "1")]));
    mcp.initialize("2025-06-18").await;
    let params = json!({"name": "chat", "arguments": {"prompt": "slow"}, "_meta": {"progressToken": "tok-1"}});
    let reply = mcp.request(2, "tools/call", params).await;
    assert_eq!(reply["result"]["isError"], false);
    let progress = mcp.notifications("notifications/progress");
    let messages: Vec<&str> = progress
        .iter()
        .map(|p| p["params"]["message"].as_str().unwrap_or(""))
        .collect();
    assert!(progress.iter().all(|p| p["params"]["progressToken"] == "tok-1"));
    assert!(
        messages.first().is_some_and(|m| m.starts_with("calling glm/glm-4.6")),
        "{messages:?}"
    );
    assert!(
        messages.iter().filter(|m| m.starts_with("still working")).count() >= 2,
        "{messages:?}"
    );
    let numbers: Vec<f64> = progress
        .iter()
        .filter_map(|p| p["params"]["progress"].as_f64())
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
}

#[tokio::test]
async fn a_cancelled_call_aborts_the_upstream_request_and_frees_its_permits() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::hang());
    let mut mcp = McpChild::spawn(&env(
        &fake,
        &[("EXAI_GLOBAL_MAX_INFLIGHT", "1"), ("EXAI_QUEUE_TIMEOUT_MS", "3000")],
    ));
    mcp.initialize("2025-06-18").await;
    mcp.send(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "chat", "arguments": {"prompt": "hang"}}})).await;
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.requests().len() == 1)
            .await
    );
    mcp.send(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7, "reason": "user"}}),
    )
    .await;
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.cut_short() == 1).await,
        "upstream request aborted"
    );
    let next = mcp
        .request(
            8,
            "tools/call",
            json!({"name": "chat", "arguments": {"prompt": "after"}}),
        )
        .await;
    assert_eq!(next["result"]["isError"], false, "{next}");
}

#[tokio::test]
async fn malformed_input_and_unknown_tools_get_errors_and_the_server_keeps_serving() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut mcp = McpChild::spawn(&env(&fake, &[]));
    mcp.initialize("2025-06-18").await;
    mcp.send_raw("this is not json").await;
    mcp.send_raw("{\"jsonrpc\": \"2.0\", \"id\": ").await;
    mcp.send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"wrong": true}}))
        .await;
    let bad_shape = mcp.response(3).await;
    // rmcp answers a tools/call without a name as an unroutable request.
    assert!(
        bad_shape["error"]["code"]
            .as_i64()
            .is_some_and(|c| (-32603..=-32600).contains(&c)),
        "{bad_shape}"
    );
    let unknown = mcp
        .request(4, "tools/call", json!({"name": "no_such_tool", "arguments": {}}))
        .await;
    assert_eq!(unknown["error"]["code"], -32602);
    assert!(
        unknown["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no_such_tool") && m.contains("chat"))
    );
    let typo = mcp
        .request(5, "tools/call", json!({"name": "chat", "arguments": {"promt": "x"}}))
        .await;
    assert_eq!(typo["result"]["isError"], true);
    assert!(
        typo["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("'promt'"))
    );
    let ping = mcp.request(6, "ping", json!({})).await;
    assert!(ping["result"].is_object(), "still serving: {ping}");
    // JSON-RPC 2.0 §5.1: a line that is not JSON is answered with -32700 and id null.
    let parse_errors: Vec<_> = mcp.seen.iter().filter(|f| f["error"]["code"] == -32700).collect();
    assert_eq!(parse_errors.len(), 2, "{:?}", mcp.seen);
    assert!(parse_errors.iter().all(|f| f["id"].is_null()));
    // JSON that is no request gets -32600; a stray response is never answered.
    mcp.send_raw("42").await;
    mcp.send(json!({"jsonrpc": "2.0", "id": 99, "result": {}})).await;
    let ping = mcp.request(7, "ping", json!({})).await;
    assert!(ping["result"].is_object(), "still serving: {ping}");
    assert!(
        mcp.seen
            .iter()
            .any(|f| f["error"]["code"] == -32600 && f["id"].is_null()),
        "{:?}",
        mcp.seen
    );
    assert!(mcp.seen.iter().all(|f| f["id"] != 99), "a response is not answered");
    assert!(mcp.child.try_wait().ok().flatten().is_none());
}

#[tokio::test]
async fn a_provider_failure_is_a_tool_error_a_person_can_act_on() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.require_key("the-real-key");
    let mut mcp = McpChild::spawn(&env(&fake, &[]));
    mcp.initialize("2025-06-18").await;
    let reply = mcp
        .request(2, "tools/call", json!({"name": "chat", "arguments": {"prompt": "hi"}}))
        .await;
    assert_eq!(reply["result"]["isError"], true);
    let text = reply["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("rejected the key from GLM_API_KEY"), "{text}");
    assert!(!text.contains("test-key"));
}

#[tokio::test]
async fn log_notifications_follow_the_level_the_client_sets() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::status(500));
    fake.push(FakeReply::text("recovered"));
    let mut mcp = McpChild::spawn(&env(&fake, &[]));
    mcp.initialize("2025-06-18").await;
    let set = mcp.request(2, "logging/setLevel", json!({"level": "warning"})).await;
    assert!(set["result"].is_object(), "{set}");
    let reply = mcp
        .request(3, "tools/call", json!({"name": "chat", "arguments": {"prompt": "hi"}}))
        .await;
    assert_eq!(reply["result"]["isError"], false);
    // The retry's warning may land just after the response.
    let deadline = Instant::now() + Duration::from_secs(5);
    while mcp.notifications("notifications/message").is_empty() && Instant::now() < deadline {
        if let Ok(Some(frame)) =
            tokio::time::timeout(Duration::from_millis(200), async { Some(mcp.next().await) }).await
        {
            mcp.seen.push(frame);
        }
    }
    let logs = mcp.notifications("notifications/message");
    assert!(
        logs.iter()
            .any(|l| l["params"]["level"] == "warning" && l["params"]["data"]["message"] == "retrying"),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .all(|l| l["params"]["level"] != "debug" && l["params"]["level"] != "info")
    );
}

#[tokio::test]
async fn closing_stdin_mid_call_exits_within_two_seconds_with_no_child_left() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::hang());
    let mut mcp = McpChild::spawn(&env(&fake, &[]));
    mcp.initialize("2025-06-18").await;
    mcp.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "chat", "arguments": {"prompt": "hang"}}})).await;
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.requests().len() == 1)
            .await
    );
    let pid = mcp.child.id().unwrap_or_default();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    assert_eq!(children.trim(), "", "exai-stdio runs no child process");
    let started = Instant::now();
    mcp.close_stdin();
    let status = tokio::time::timeout(Duration::from_secs(2), mcp.child.wait()).await;
    assert!(matches!(status, Ok(Ok(_))), "exited within 2 s");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.cut_short() == 1).await,
        "the upstream request died with it"
    );
}

#[tokio::test]
async fn sigterm_exits_promptly_and_cleanly() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut mcp = McpChild::spawn(&env(&fake, &[]));
    mcp.initialize("2025-06-18").await;
    let pid = mcp.child.id().unwrap_or_default();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(killed.is_ok_and(|s| s.success()));
    let status = tokio::time::timeout(Duration::from_secs(3), mcp.child.wait()).await;
    assert!(matches!(status, Ok(Ok(s)) if s.success()), "{status:?}");
}

#[tokio::test]
async fn sighup_rereads_the_deployments_and_later_calls_go_where_the_file_says() {
    let (Ok(first), Ok(second)) = (FakeUpstream::start().await, FakeUpstream::start().await) else {
        panic!("fake")
    };
    first.respond_with(|_| Some(FakeReply::text("from the first")));
    second.respond_with(|_| Some(FakeReply::text("from the second")));
    let file = std::env::temp_dir().join(format!("exai-stdio-sighup-{}.toml", std::process::id()));
    let at = |fake: &FakeUpstream| {
        format!(
            "[[providers.glm.deployments]]\nname = \"main\"\nbase_url = \"{}\"\n",
            fake.base_url()
        )
    };
    std::fs::write(&file, at(&first)).unwrap_or_else(|e| panic!("{e}"));
    let config = file.display().to_string();
    let mut mcp = McpChild::spawn(&env(&first, &[("EXAI_CONFIG", config.as_str())]));
    mcp.initialize("2025-06-18").await;
    let mut id = 1;
    let mut chat = async |mcp: &mut McpChild| {
        id += 1;
        let reply = mcp
            .request(
                id,
                "tools/call",
                json!({"name": "chat", "arguments": {"prompt": format!("call {id}")}}),
            )
            .await;
        reply["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(chat(&mut mcp).await.starts_with("from the first"));
    std::fs::write(&file, at(&second)).unwrap_or_else(|e| panic!("{e}"));
    let pid = mcp.child.id().unwrap_or_default();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status();
    assert!(hup.is_ok_and(|s| s.success()));
    // The reload runs beside the calls: within a few calls, they reach the endpoint in the file.
    let mut moved = false;
    for _ in 0..40 {
        if chat(&mut mcp).await.starts_with("from the second") {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(moved, "calls never reached the reloaded deployment");
    let before = first.requests().len();
    assert!(chat(&mut mcp).await.starts_with("from the second"));
    assert_eq!(
        first.requests().len(),
        before,
        "a call went to the old endpoint after the reload"
    );
    assert!(
        mcp.child.try_wait().is_ok_and(|s| s.is_none()),
        "SIGHUP stopped the server"
    );
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn two_processes_share_a_conversation_through_redis() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let redis = exai_core::testing::RedisServer::start();
    let url = redis.url();
    two_processes_share_a_conversation(&fake, env(&fake, &[("REDIS_URL", url.as_str())])).await;
}

#[tokio::test]
async fn two_processes_share_a_conversation_through_the_sqlite_file() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let state = std::env::temp_dir().join(format!("exai-stdio-sqlite-{}", std::process::id()));
    let state = state.display().to_string();
    two_processes_share_a_conversation(&fake, env(&fake, &[("EXAI_STATE_DIR", state.as_str())])).await;
    assert!(std::path::Path::new(&state).join("exai.db").is_file());
}

/// One exai-stdio starts a conversation and exits; a second one continues it.
async fn two_processes_share_a_conversation(fake: &FakeUpstream, env: HashMap<String, String>) {
    let mut first = McpChild::spawn(&env);
    first.initialize("2025-06-18").await;
    let reply = first
        .request(
            2,
            "tools/call",
            json!({"name": "chat", "arguments": {"prompt": "remember 42"}}),
        )
        .await;
    let id = reply["result"]["structuredContent"]["continuation_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    first.close_stdin();
    let _ = tokio::time::timeout(Duration::from_secs(3), first.child.wait()).await;
    let mut second = McpChild::spawn(&env);
    second.initialize("2025-06-18").await;
    let args = json!({"name": "chat", "arguments": {"prompt": "what number?", "continuation_id": id}});
    let reply = second.request(2, "tools/call", args).await;
    assert_eq!(reply["result"]["isError"], false, "{reply}");
    let sent = fake.requests()[1].messages();
    assert!(
        sent.iter().any(|m| m["content"] == "remember 42"),
        "history came from the other process"
    );
}

#[tokio::test]
async fn the_client_rate_and_the_call_deadline_hold_over_stdio() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::hang());
    let limits = [
        ("EXAI_REQUESTS_PER_MINUTE", "3"),
        ("EXAI_CALL_TIMEOUT_SECS", "1"),
        ("EXAI_MAX_FRAME_BYTES", "4096"),
    ];
    let mut mcp = McpChild::spawn(&env(&fake, &limits));
    mcp.initialize("2025-06-18").await;
    let started = Instant::now();
    let late = mcp
        .request(
            2,
            "tools/call",
            json!({"name": "chat", "arguments": {"prompt": "hang"}}),
        )
        .await;
    assert_eq!(late["result"]["isError"], true, "{late}");
    assert!(
        late["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("ran longer than 1 s")),
        "{late}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "stopped at the deadline");
    for id in [3, 4] {
        let ok = mcp
            .request(id, "tools/call", json!({"name": "version", "arguments": {}}))
            .await;
        assert_eq!(ok["result"]["isError"], false, "{ok}");
    }
    let limited = mcp
        .request(5, "tools/call", json!({"name": "version", "arguments": {}}))
        .await;
    assert_eq!(limited["result"]["isError"], true, "{limited}");
    assert!(
        limited["result"]["structuredContent"]["retry_after_secs"]
            .as_u64()
            .is_some_and(|s| s >= 1),
        "{limited}"
    );
    assert!(
        limited["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("rate limited") && t.contains("3 requests per minute")),
        "{limited}"
    );
    let ping = mcp.request(6, "ping", json!({})).await;
    assert!(ping["result"].is_object(), "still serving: {ping}");
    // A line over the frame limit is dropped, unread; the server keeps serving.
    mcp.send(json!({"jsonrpc": "2.0", "id": 7, "method": "ping", "params": {"pad": "x".repeat(5_000)}}))
        .await;
    let after = mcp.request(8, "ping", json!({})).await;
    assert!(after["result"].is_object(), "still serving: {after}");
    assert!(
        mcp.seen.iter().all(|f| f["id"] != 7),
        "the oversized request was not answered"
    );
}

#[tokio::test]
async fn help_version_and_unknown_flags_answer_without_serving() {
    let run = |arg: &'static str| async move {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_exai-stdio"))
            .arg(arg)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, stdout) = run("--version").await;
    assert_eq!(
        (code, stdout.trim()),
        (Some(0), concat!("exai-stdio ", env!("CARGO_PKG_VERSION")))
    );
    let (code, stdout) = run("--help").await;
    assert_eq!(code, Some(0));
    assert!(stdout.contains("claude mcp add exai"), "{stdout}");
    assert_eq!(run("--bogus-flag").await.0, Some(2));
}

#[tokio::test]
async fn an_invalid_configuration_exits_with_the_shared_code_3_naming_the_key() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_exai-stdio"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("EXAI_MEMORY", "bogus")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("memory.backend") && stderr.contains("EXAI_MEMORY"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "stdout is for protocol frames only");
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT`, a tool call is a SERVER span `execute_tool chat`; its turn
/// an INTERNAL `chat …` under it, and the provider attempt a CLIENT span under that — received
/// by an OTLP/HTTP receiver, the last spans sent as the process exits. The client's
/// `_meta.traceparent` is continued.
#[tokio::test]
async fn a_tool_call_is_exported_as_a_trace() {
    use exai_core::testing::otlp::{Receiver, SpanKind, attr};
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let receiver = Receiver::start().await.unwrap_or_else(|e| panic!("{e}"));
    fake.push(FakeReply::text("traced"));
    // RUST_LOG=info: other crates' spans (rmcp's) do not change where the trace starts.
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("RUST_LOG", "info"),
    ];
    let mut mcp = McpChild::spawn(&env(&fake, &otel));
    mcp.initialize("2025-06-18").await;
    // The client's trace, in `_meta` (MCP's SEP-414): the tool call continues it.
    let (trace_id, caller_span) = ("5bf92f3577b34da6a3ce929d0e0e4736", "10f067aa0ba902b7");
    let meta = json!({"traceparent": format!("00-{trace_id}-{caller_span}-01")});
    let reply = mcp
        .request(
            2,
            "tools/call",
            json!({"name": "chat", "arguments": {"prompt": "ping"}, "_meta": meta}),
        )
        .await;
    assert_eq!(reply["result"]["isError"], false, "{reply}");
    mcp.close_stdin();
    let spans = receiver.until(|all| all.len() >= 3).await;
    assert!(spans.iter().all(|(service, _)| service == "exai-stdio"), "{spans:#?}");
    let find = |kind: SpanKind| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.kind == kind as i32)
            .unwrap_or_else(|| panic!("no {kind:?} span: {spans:#?}"))
    };
    let (tool, turn, attempt) = (find(SpanKind::Server), find(SpanKind::Internal), find(SpanKind::Client));
    assert_eq!(tool.name, "execute_tool chat");
    assert_eq!(exai_core::testing::otlp::hex(&tool.trace_id), trace_id);
    assert_eq!(exai_core::testing::otlp::hex(&tool.parent_span_id), caller_span);
    assert_eq!(attr(tool, "gen_ai.tool.name").as_deref(), Some("chat"));
    assert_eq!(turn.name, "chat auto");
    assert_eq!(turn.parent_span_id, tool.span_id);
    assert_eq!(attempt.name, "chat glm-4.6");
    assert_eq!(attempt.parent_span_id, turn.span_id);
    assert_eq!(attr(turn, "gen_ai.response.model").as_deref(), Some("glm-4.6"));
}
