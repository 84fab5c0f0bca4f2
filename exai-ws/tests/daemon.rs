//! The real exai-ws binary, spoken to over HTTP with reqwest.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::{command, exits_with, free_port, mcp, start, state_dir};
use exai_core::testing::{FakeReply, FakeUpstream};
use serde_json::{Value, json};

/// `/metrics` read by a Prometheus text parser (`prometheus-parse`): every series has `# HELP`,
/// durations are histograms with buckets from 5 ms to 10 min, totals are counters.
fn parsed_as_prometheus_would(text: &str) {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("unparsable: {e}\n{text}"));
    assert!(!scrape.samples.is_empty(), "{text}");
    for sample in &scrape.samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| sample.metric.strip_suffix(s).filter(|f| scrape.docs.contains_key(*f)))
            .unwrap_or(&sample.metric);
        assert!(
            scrape.docs.contains_key(family),
            "no # HELP for {}:\n{text}",
            sample.metric
        );
        if family.ends_with("_total") {
            assert!(
                matches!(sample.value, prometheus_parse::Value::Counter(_)),
                "{} is not a counter: {:?}",
                sample.metric,
                sample.value
            );
        }
    }
    let histogram = |name: &str| {
        scrape.samples.iter().find_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) if s.metric == name => Some(buckets.clone()),
            _ => None,
        })
    };
    let buckets = histogram("exai_request_duration_seconds")
        .unwrap_or_else(|| panic!("exai_request_duration_seconds is not a histogram:\n{text}"));
    let bounds: Vec<f64> = buckets.iter().map(|b| b.less_than).collect();
    assert!(bounds.contains(&0.005) && bounds.contains(&600.0), "{bounds:?}");
    assert!(
        buckets.iter().any(|b| b.count >= 1.0),
        "the call made is in a bucket: {buckets:?}"
    );
    assert!(histogram("exai_queue_wait_seconds").is_some(), "{text}");
    let cost = scrape.samples.iter().find(|s| s.metric == "exai_cost_usd_total");
    assert!(
        cost.is_some_and(|s| matches!(s.value, prometheus_parse::Value::Counter(_))),
        "{text}"
    );
}

#[tokio::test]
async fn health_readiness_metrics_and_models() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let daemon = start(&fake.env_for(&["GLM"]), "ops").await;
    let health: Value = reqwest::get(format!("{}/healthz", daemon.base))
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(
        (health["status"].as_str(), health["service"].as_str()),
        (Some("ok"), Some("exai-ws"))
    );
    let ready = reqwest::get(format!("{}/readyz", daemon.base))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap_or_default();
    assert_eq!(
        (ready["limits"].as_str(), ready["limits_through"].as_str()),
        (Some("shared"), Some("sqlite")),
        "without Redis the limits are shared through the state file: {ready}"
    );
    let models: Value = reqwest::get(format!("{}/v1/models", daemon.base))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"auto") && ids.contains(&"glm-4.6") && !ids.contains(&"kimi-k2-0905-preview"),
        "{ids:?}"
    );
    let client = reqwest::Client::new();
    client
        .post(format!("{}/v1/chat/completions", daemon.base))
        .json(&json!({"messages": [{"role": "user", "content": "count me"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let metrics = reqwest::get(format!("{}/metrics", daemon.base))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    assert!(
        metrics.contains("exai_requests_total") && metrics.contains("exai_tokens_total"),
        "{metrics}"
    );
    parsed_as_prometheus_would(&metrics);
    let unready = start(&HashMap::new(), "unready").await;
    let response = reqwest::get(format!("{}/readyz", unready.base))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap_or_default();
    assert!(body["reasons"][0].as_str().is_some_and(|r| r.contains("GLM_API_KEY")));
}

#[tokio::test]
async fn openai_clients_get_plain_and_streamed_completions_and_openai_shaped_errors() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::text("plain answer").with_usage(9, 2));
    fake.push(FakeReply::text("streamed answer here").with_usage(5, 3));
    let daemon = start(&fake.env_for(&["GLM"]), "openai").await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", daemon.base);
    let plain: Value = client
        .post(&url)
        .json(&json!({"model": "glm", "messages": [{"role": "system", "content": "brief"}, {"role": "user", "content": "hi"}]}))
        .send().await.unwrap_or_else(|e| panic!("{e}"))
        .json().await.unwrap_or_default();
    assert_eq!(plain["object"], "chat.completion");
    assert_eq!(plain["choices"][0]["message"]["content"], "plain answer");
    assert_eq!(plain["model"], "glm-4.6");
    assert_eq!(plain["usage"]["prompt_tokens"], 9);
    assert_eq!(plain["exai"]["provider"], "glm");
    let streamed = client
        .post(&url)
        .json(&json!({"stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "go"}]}))
        .send().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        streamed.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/event-stream")
    );
    let body = streamed.text().await.unwrap_or_default();
    let data: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(data.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = data
        .iter()
        .filter(|d| **d != "[DONE]")
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "streamed answer here");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
    assert_eq!(
        chunks.last().map(|c| c["usage"]["completion_tokens"].clone()),
        Some(json!(3))
    );
    let unknown = client
        .post(&url)
        .json(&json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unknown.status(), 404);
    let err: Value = unknown.json().await.unwrap_or_default();
    assert_eq!(err["error"]["code"], "model_not_found");
    let bad = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bad.status(), 400);
    let evil = client
        .post(&url)
        .header("origin", "https://evil.example")
        .json(&json!({"messages": []}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(evil.status(), 403);
    assert!(fake.requests().iter().all(|r| !r.messages().is_empty()));
    assert_eq!(fake.requests().len(), 2, "errors never reached the provider");
}

#[tokio::test]
async fn a_token_is_required_when_configured_and_never_echoed() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_WS_TOKEN".into(), "daemon-secret-token".into());
    let daemon = start(&env, "token").await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", daemon.base);
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});
    let none = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(none.status(), 401);
    let wrong = client
        .post(&url)
        .bearer_auth("nope")
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wrong.status(), 401);
    let text = wrong.text().await.unwrap_or_default();
    assert!(!text.contains("daemon-secret-token"));
    let ok = client
        .post(&url)
        .bearer_auth("daemon-secret-token")
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.status(), 200);
    assert_eq!(
        reqwest::get(format!("{}/healthz", daemon.base))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0),
        200
    );
    let metrics = client
        .get(format!("{}/metrics", daemon.base))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(metrics, 401);
}

#[tokio::test]
async fn mcp_clients_connect_over_http_with_no_shim() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::text("hello over http"));
    let daemon = start(&fake.env_for(&["GLM"]), "mcp").await;
    let client = reqwest::Client::new();
    let url = format!("{}/mcp", daemon.base);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});
    let (reply, session) = mcp(&client, &url, None, init).await;
    assert_eq!(reply["result"]["serverInfo"]["name"], "exai", "{reply}");
    let session = session.unwrap_or_else(|| panic!("no mcp-session-id"));
    mcp(
        &client,
        &url,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    let (tools, _) = mcp(
        &client,
        &url,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    assert_eq!(tools["result"]["tools"].as_array().map(Vec::len), Some(17));
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "chat", "arguments": {"prompt": "hi"}}});
    let (result, _) = mcp(&client, &url, Some(&session), call).await;
    assert_eq!(result["result"]["isError"], false, "{result}");
    assert!(
        result["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("hello over http"))
    );
}

#[tokio::test]
async fn refuses_to_start_on_a_busy_port_a_locked_state_dir_or_an_open_address() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let env = fake.env_for(&["GLM"]);
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = squatter.local_addr().map(|a| a.port()).unwrap_or(0);
    let (code, stderr) = exits_with(command(&env, port, &state_dir("busy"))).await;
    assert_eq!(code, 2);
    // The squatter is this test process: named with its pid.
    assert!(
        stderr.contains(&format!("127.0.0.1:{port} is already in use by "))
            && stderr.contains(&format!("(pid {})", std::process::id()))
            && stderr.contains("EXAI_WS_PORT"),
        "{stderr}"
    );
    let lock_file = |tag: &str, port: u16| Path::new(&state_dir(tag)).join(format!("exai-ws-{port}.lock"));
    assert!(!lock_file("busy", port).exists(), "a failed start leaves no lock file");
    let first = start(&env, "locked").await;
    // Another exai-ws holds the port, with another state directory: named as such.
    let (code, stderr) = exits_with(command(&env, first.port, &state_dir("elsewhere"))).await;
    assert_eq!(code, 2);
    let pid = first.child.id().unwrap_or_default();
    assert!(
        stderr.contains(&format!(
            "in use by another exai-ws (pid {pid}) with a different state directory"
        )),
        "{stderr}"
    );
    assert!(!lock_file("elsewhere", first.port).exists(), "{stderr}");
    let (code, stderr) = exits_with(command(&env, first.port, &state_dir("locked"))).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("another exai-ws (pid {pid}) already runs")),
        "{stderr}"
    );
    assert!(lock_file("locked", first.port).exists(), "the holder's lock file stays");
    let mut invalid = command(&env, free_port(), &state_dir("invalid"));
    invalid.env("EXAI_MEMORY", "bogus");
    let (code, stderr) = exits_with(invalid).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("memory.backend"), "{stderr}");
    let mut open = command(&env, free_port(), &state_dir("open"));
    open.env("EXAI_WS_HOST", "0.0.0.0");
    let (code, stderr) = exits_with(open).await;
    assert_eq!(code, 3, "a configuration refused: the exit code every exai binary uses");
    assert!(
        stderr.contains("neither a master token nor keys") && stderr.contains("EXAI_WS_TOKEN"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sigterm_lets_the_call_in_flight_finish_then_exits_cleanly() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::text("finished after the signal").with_delay(Duration::from_millis(800)));
    let mut daemon = start(&fake.env_for(&["GLM"]), "sigterm").await;
    let url = format!("{}/v1/chat/completions", daemon.base);
    let call = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&json!({"messages": [{"role": "user", "content": "slow"}]}))
            .send()
            .await?
            .json::<Value>()
            .await
    });
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.requests().len() == 1)
            .await
    );
    daemon.sigterm();
    let reply = call
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply["choices"][0]["message"]["content"], "finished after the signal");
    daemon.exits_cleanly().await;
    let lock = Path::new(&state_dir("sigterm")).join(format!("exai-ws-{}.lock", daemon.port));
    assert!(!lock.exists(), "a stopped daemon leaves no lock file");
}

#[tokio::test]
async fn warns_at_start_when_no_provider_is_configured() {
    let log = std::env::temp_dir().join(format!("exai-ws-noprovider-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
    let mut env = HashMap::new();
    env.insert("RUST_LOG".to_string(), "info".to_string());
    let mut daemon = common::start_logging(&env, "noprovider", std::process::Stdio::from(file)).await;
    daemon.sigterm();
    daemon.exits_cleanly().await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let warning = text.lines().find(|l| l.contains("WARN")).unwrap_or_default();
    assert!(
        warning.contains("no provider configured")
            && warning.contains("GLM_API_KEY")
            && warning.contains("mock-upstream"),
        "{text}"
    );
}

#[tokio::test]
async fn streamed_replies_on_one_keep_alive_connection_are_not_held_back() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let daemon = start(&fake.env_for(&["GLM"]), "nodelay").await;
    // One connection, reused: what every OpenAI SDK does.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("{}/v1/chat/completions", daemon.base);
    let body = json!({"stream": true, "messages": [{"role": "user", "content": "a reply in many pieces, streamed"}]});
    let mut took = Vec::new();
    for _ in 0..9 {
        let started = std::time::Instant::now();
        let text = client
            .post(&url)
            .json(&body)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_default();
        took.push(started.elapsed());
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    }
    // The first request opens the connection; Nagle held back every later one by ~40 ms.
    let mut later = took[1..].to_vec();
    later.sort();
    let median = later[later.len() / 2];
    assert!(median < Duration::from_millis(20), "streamed replies took {took:?}");
}

#[tokio::test]
async fn help_version_and_unknown_flags_answer_before_anything_starts() {
    let state = state_dir("flags");
    let port = free_port();
    let run = |args: &'static [&'static str]| {
        let mut cmd = command(&HashMap::new(), port, &state);
        cmd.args(args);
        async move {
            let out = cmd.output().await.unwrap_or_else(|e| panic!("{e}"));
            (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
        }
    };
    let (code, stdout) = run(&["--version"]).await;
    assert_eq!(
        (code, stdout.trim()),
        (Some(0), concat!("exai-ws ", env!("CARGO_PKG_VERSION")))
    );
    let (code, stdout) = run(&["--help"]).await;
    assert_eq!(code, Some(0));
    assert!(stdout.contains("Usage: exai-ws"), "{stdout}");
    let (code, _) = run(&["--bogus-flag"]).await;
    assert_eq!(code, Some(2));
    assert!(
        !std::path::Path::new(&state)
            .join(format!("exai-ws-{port}.lock"))
            .exists(),
        "nothing started: no lock file"
    );
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "the port is free"
    );
}
