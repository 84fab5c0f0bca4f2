//! API keys through the real daemon: two exai-ws on one real redis-server (a key's `rpm`
//! across both, a budget spent on one refused on the other, a revoke seen by the other within a
//! second, the model allow-list, `/admin/keys` and `/metrics`), and one daemon on SQLite alone
//! where a key is accepted at every front door — OpenAI API, MCP over HTTP (the official rmcp
//! client), MCP over WebSocket, the EXAI protocol — and its secret is in no log line and not in
//! the store.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::ws::{close_code, frame, hello, send, until};
use common::{Daemon, state_dir, text_of, tool};
use exai_core::testing::{FakeReply, FakeUpstream, RedisServer};
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const ADMIN: &str = "admin-token-for-tests";

fn env(fake: &FakeUpstream, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = fake.env_for(&["GLM", "KIMI"]);
    env.insert("EXAI_ADMIN_TOKEN".into(), ADMIN.into());
    env.insert("EXAI_RETRY_BASE_DELAY_MS".into(), "10".into());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// A daemon whose log (stderr, at debug) goes to `log`.
async fn start_logged(env: &HashMap<String, String>, tag: &str, log: &std::path::Path) -> Daemon {
    let mut env = env.clone();
    env.insert("RUST_LOG".into(), "debug".into());
    let file = std::fs::File::create(log).unwrap_or_else(|e| panic!("{e}"));
    common::start_logging(&env, tag, Stdio::from(file)).await
}

async fn admin(d: &Daemon, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/admin/keys{path}", d.base))
        .bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// Creates a key over `/admin/keys` and returns its secret.
async fn create(d: &Daemon, mut body: Value) -> String {
    let name = body["name"].as_str().unwrap_or_default().to_string();
    if let Some(o) = body.as_object_mut() {
        o.remove("name");
    }
    common::create_key(d, ADMIN, &name, body).await
}

async fn complete(d: &Daemon, key: Option<&str>, model: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", d.base))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, response.json().await.unwrap_or_default(), headers)
}

/// Calls on `d` with `key` until the answer's status is `want`; how long that took.
async fn refused_within(d: &Daemon, key: &str, want: u16, limit: Duration) -> (Duration, Value) {
    let started = Instant::now();
    loop {
        let (status, body, _) = complete(d, Some(key), "glm-4.6").await;
        if status == want {
            return (started.elapsed(), body);
        }
        assert!(started.elapsed() < limit, "still {status} after {limit:?}: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn keys_hold_across_two_daemons_on_one_redis() {
    let redis = RedisServer::start();
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let url = redis.url();
    let env = env(&fake, &[("REDIS_URL", &url), ("EXAI_REQUESTS_PER_MINUTE", "1000")]);
    let a = common::start(&env, "keys-a").await;
    let b = common::start(&env, "keys-b").await;

    // Key management needs the admin token.
    let anonymous = reqwest::get(format!("{}/admin/keys", a.base))
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(anonymous.ok(), Some(401));
    let team = create(&a, json!({"name": "team", "rpm": 3})).await;
    assert!(team.starts_with("exai-sk-") && team.len() >= 40, "{team}");

    // Once a key exists, a request without one is refused on both daemons.
    for d in [&a, &b] {
        let (status, body, _) = complete(d, None, "glm-4.6").await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }

    // rpm 3 across both daemons: two calls on one, one on the other, the fourth refused.
    for d in [&a, &a, &b] {
        let (status, body, _) = complete(d, Some(&team), "glm-4.6").await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body, headers) = complete(&b, Some(&team), "glm-4.6").await;
    assert_eq!(status, 429, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("key team") && message.contains("3 requests per minute"),
        "{message}"
    );
    assert!(headers.get("retry-after").is_some());

    // A budget spent through one daemon is refused by the other within a second.
    let spender = create(&b, json!({"name": "spender", "budget_usd": 0.01, "period": "day"})).await;
    fake.push(FakeReply::text("costly").with_usage(100_000, 100_000));
    let (status, body, _) = complete(&a, Some(&spender), "glm-4.6").await;
    assert_eq!(status, 200, "{body}");
    let (took, body) = refused_within(&b, &spender, 429, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(1), "seen by the other daemon after {took:?}");
    assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    for part in ["key spender", "$0.01 daily budget", "resets at"] {
        assert!(message.contains(part), "{message}");
    }

    // The Anthropic API says so with its own code.
    let billing = reqwest::Client::new()
        .post(format!("{}/v1/messages", b.base))
        .header("x-api-key", &spender)
        .json(&json!({"model": "glm-4.6", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(billing.status().as_u16(), 402);
    let billing: Value = billing.json().await.unwrap_or_default();
    assert_eq!(billing["error"]["type"], "billing_error", "{billing}");

    // A key revoked through one daemon is refused by the other within a second.
    let gone = create(&a, json!({"name": "gone"})).await;
    let (status, _, _) = complete(&b, Some(&gone), "glm-4.6").await;
    assert_eq!(status, 200);
    let (status, revoked) = admin(&a, reqwest::Method::POST, "/gone/revoke", None).await;
    assert_eq!(
        (status, revoked["status"].as_str()),
        (200, Some("revoked")),
        "{revoked}"
    );
    let (took, body) = refused_within(&b, &gone, 401, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(1), "revoke seen after {took:?}: {body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| m.contains("revoked")),
        "{body}"
    );

    // The model allow-list.
    let glm_only = create(&b, json!({"name": "glm-only", "models": ["glm-4.6"]})).await;
    let (status, body, _) = complete(&a, Some(&glm_only), "kimi").await;
    assert_eq!(status, 403, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("glm-only") && message.contains("kimi"), "{message}");
    let (status, _, _) = complete(&a, Some(&glm_only), "glm-4.6").await;
    assert_eq!(status, 200);
    let forbidden = reqwest::Client::new()
        .post(format!("{}/v1/messages", a.base))
        .header("x-api-key", &glm_only)
        .json(&json!({"model": "kimi", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(forbidden.status().as_u16(), 403);
    let forbidden: Value = forbidden.json().await.unwrap_or_default();
    assert_eq!(forbidden["error"]["type"], "permission_error", "{forbidden}");

    // A limit changed at runtime applies on the other daemon within a second.
    let (status, updated) = admin(&b, reqwest::Method::PATCH, "/glm-only", Some(json!({"models": null}))).await;
    assert_eq!(status, 200, "{updated}");
    let started = Instant::now();
    while complete(&a, Some(&glm_only), "kimi").await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "update not seen after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Listing never shows a secret; /metrics names keys, for operators only.
    let (status, listed) = admin(&b, reqwest::Method::GET, "", None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(names, ["glm-only", "gone", "spender", "team"]);
    let listed = listed.to_string();
    let metrics_for = |token: &str| {
        let (base, token) = (a.base.clone(), token.to_string());
        async move {
            let r = reqwest::Client::new()
                .get(format!("{base}/metrics"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    assert_eq!(
        metrics_for(&team).await.0,
        403,
        "a key's holder does not see other keys"
    );
    let (status, metrics) = metrics_for(ADMIN).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("exai_key_requests_total{key=\"team\""), "{metrics}");
    for secret in [&team, &spender, &gone, &glm_only] {
        assert!(!listed.contains(secret.as_str()) && !metrics.contains(secret.as_str()));
        assert!(!metrics.contains(&secret["exai-sk-".len()..]));
    }
}

async fn mcp_ws(d: &Daemon, key: Option<&str>) -> common::ws::Ws {
    let mut request = format!("ws://127.0.0.1:{}/ws", d.port)
        .into_client_request()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(key) = key {
        let value = format!("Bearer {key}").parse().unwrap_or_else(|_| panic!("header"));
        request.headers_mut().insert("authorization", value);
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    ws
}

#[tokio::test]
async fn a_key_is_accepted_at_every_front_door_and_its_secret_is_nowhere() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let dir = state_dir("keys-doors");
    let log = std::path::Path::new(&dir).join("daemon.log");
    let d = start_logged(&env(&fake, &[("EXAI_MEMORY", "sqlite")]), "keys-doors", &log).await;
    let secret = create(&d, json!({"name": "everywhere"})).await;

    // The OpenAI API: Bearer, x-api-key, streamed; nothing and a wrong key refused.
    let (status, body, _) = complete(&d, Some(&secret), "glm-4.6").await;
    assert_eq!(status, 200, "{body}");
    let http = reqwest::Client::new();
    let with_x_api_key = http
        .post(format!("{}/v1/chat/completions", d.base))
        .header("x-api-key", &secret)
        .json(&json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(with_x_api_key.status().as_u16(), 200);
    assert!(with_x_api_key.text().await.unwrap_or_default().contains("[DONE]"));
    let (status, _, _) = complete(&d, Some("exai-sk-wrong"), "glm-4.6").await;
    assert_eq!(status, 401);

    // The Anthropic API: x-api-key (Anthropic's SDKs) or Bearer (Claude Code's
    // ANTHROPIC_AUTH_TOKEN); refusals in Anthropic's shape.
    let anthropic = |key: Option<(&'static str, String)>, model: &'static str| {
        let (base, http) = (d.base.clone(), http.clone());
        async move {
            let mut request = http
                .post(format!("{base}/v1/messages"))
                .header("anthropic-version", "2023-06-01")
                .json(&json!({"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}));
            if let Some((name, value)) = key {
                request = request.header(name, value);
            }
            let r = request.send().await.unwrap_or_else(|e| panic!("{e}"));
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or_default())
        }
    };
    let (status, body) = anthropic(Some(("x-api-key", secret.clone())), "glm-4.6").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = anthropic(Some(("authorization", format!("Bearer {secret}"))), "glm-4.6").await;
    assert_eq!(status, 200);
    let (status, body) = anthropic(None, "glm-4.6").await;
    assert_eq!(
        (status, body["type"].clone(), body["error"]["type"].clone()),
        (401, json!("error"), json!("authentication_error")),
        "{body}"
    );

    // A rotated key: the old secret is refused, the new one works from the same address at once.
    let spare = create(&d, json!({"name": "spare"})).await;
    assert_eq!(complete(&d, Some(&spare), "glm-4.6").await.0, 200);
    let (status, rotated) = admin(&d, reqwest::Method::POST, "/spare/rotate", None).await;
    assert_eq!(status, 200, "{rotated}");
    let fresh = rotated["secret"].as_str().unwrap_or_default().to_string();
    assert_eq!(complete(&d, Some(&spare), "glm-4.6").await.0, 401);
    assert_eq!(complete(&d, Some(&fresh), "glm-4.6").await.0, 200);

    // MCP over HTTP, with the official rmcp client and the key as its bearer token.
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", d.base)).auth_header(secret.clone());
    let client =
        ().serve(StreamableHttpClientTransport::from_config(config))
            .await
            .unwrap_or_else(|e| panic!("initialize with a key: {e}"));
    let reply = client
        .call_tool(tool("chat", json!({"prompt": "over mcp"})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(reply.is_error, Some(true), "{}", text_of(&reply));
    let _ = client.cancel().await;
    let keyless = ().serve(StreamableHttpClientTransport::from_uri(format!("{}/mcp", d.base))).await;
    assert!(keyless.is_err(), "MCP over HTTP without a key must not initialise");

    // MCP over WebSocket: the key in the upgrade's header.
    let mut ws = mcp_ws(&d, Some(&secret)).await;
    send(
        &mut ws,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await;
    assert!(frame(&mut ws).await["result"].is_object());
    send(
        &mut ws,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    send(
        &mut ws,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "chat", "arguments": {"prompt": "ws"}}}),
    )
    .await;
    let reply = loop {
        let f = frame(&mut ws).await;
        if f["id"] == 2 {
            break f;
        }
    };
    assert_ne!(reply["result"]["isError"], true, "{reply}");
    let mut keyless = mcp_ws(&d, None).await;
    send(
        &mut keyless,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
    )
    .await;
    assert_eq!(close_code(&mut keyless).await, Some(4003));

    // The EXAI protocol: the key as `hello.token`.
    let mut exai = common::ws::connect(&d).await;
    let ack = hello(&mut exai, json!({"token": secret})).await;
    assert_eq!(ack["op"], "hello_ack", "{ack}");
    send(
        &mut exai,
        json!({"op": "call_tool", "request_id": "k1", "name": "chat", "arguments": {"prompt": "exai"}}),
    )
    .await;
    let res = until(&mut exai, "call_tool_res", &mut Vec::new()).await;
    assert!(res.get("error").is_none(), "{res}");
    let mut wrong = common::ws::connect(&d).await;
    let refused = hello(&mut wrong, json!({"token": "exai-sk-wrong"})).await;
    assert_eq!(refused["error"]["code"], "UNAUTHORIZED", "{refused}");

    // Every call above is the key's, in the ledger and the metrics.
    let metrics = http
        .get(format!("{}/metrics", d.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    let ok_line = metrics
        .lines()
        .find(|l| l.starts_with("exai_key_requests_total{") && l.contains("key=\"everywhere\"") && l.contains("ok"))
        .unwrap_or_else(|| panic!("no key line in {metrics}"));
    assert!(ok_line.ends_with(" 7"), "{ok_line}");

    drop(exai);
    drop(ws);
    d.sigterm();
    let mut d = d;
    d.exits_cleanly().await;
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log.contains("everywhere") || log.lines().count() > 10,
        "the debug log was written"
    );
    assert!(
        !log.contains(&secret) && !log.contains(&secret["exai-sk-".len()..]),
        "a secret in the log"
    );
    // The store: only the hash.
    let mut stored = Vec::new();
    for file in ["exai.db", "exai.db-wal"] {
        stored.extend(std::fs::read(std::path::Path::new(&dir).join(file)).unwrap_or_default());
    }
    let stored = String::from_utf8_lossy(&stored);
    assert!(stored.contains("everywhere"), "the key is in the file");
    assert!(!stored.contains(&secret["exai-sk-".len()..]), "a secret in the store");
}
