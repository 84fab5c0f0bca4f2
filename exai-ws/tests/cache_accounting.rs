//! The response cache beyond the HTTP wires, against the real daemon and the fake upstream,
//! counting the calls that reach the fake: a key created with `cache` has its calls cached
//! with `cache.mode` off (and a key without it does not); the MCP `chat` and `consensus` tools
//! take a `cache` argument and say whether the cache answered; a hit is in the usage ledger as
//! `cached` with what it saved, costs the key nothing, and the status page counts it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::Daemon;
use exai_core::testing::{FakeReply, FakeUpstream};
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret";

async fn daemon(fake: &FakeUpstream, tag: &str, settings: &[(&str, &str)]) -> Daemon {
    let mut env: HashMap<String, String> = fake.env_for(&["GLM", "KIMI"]);
    env.insert("EXAI_MAX_RETRIES".into(), "0".into());
    env.insert("EXAI_ADMIN_TOKEN".into(), ADMIN.into());
    env.insert("EXAI_MEMORY".into(), "sqlite".into());
    for (k, v) in settings {
        env.insert((*k).into(), (*v).into());
    }
    common::start(&env, tag).await
}

fn upstream_calls(fake: &FakeUpstream) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.ends_with("/messages") || r.path.ends_with("/completions"))
        .count()
}

/// A chat completion of `prompt` with `secret`: its status and `x-exai-cache` header.
async fn ask(d: &Daemon, secret: &str, prompt: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", d.base))
        .bearer_auth(secret)
        .json(&json!({"model": "glm-4.6", "max_tokens": 64, "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cache = response
        .headers()
        .get("x-exai-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (response.status().as_u16(), cache)
}

async fn status(d: &Daemon) -> Value {
    let text = common::get_text(d, "/ui/api/status", Some(ADMIN)).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Reads the status page until `ready` holds for it (the ledger's writes leave the request
/// path), for 5 s at most.
async fn status_until(d: &Daemon, ready: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..50 {
        let s = status(d).await;
        if ready(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    status(d).await
}

async fn key_info(d: &Daemon, name: &str) -> Value {
    let text = common::get_text(d, &format!("/admin/keys/{name}"), Some(ADMIN)).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn a_key_created_with_cache_is_cached_with_the_mode_off_and_its_hits_cost_it_nothing() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(&fake, "cache-per-key", &[]).await;
    let cached = common::create_key(&d, ADMIN, "cached", json!({"cache": true})).await;
    let plain = common::create_key(&d, ADMIN, "plain", json!({})).await;
    assert_eq!(key_info(&d, "cached").await["cache"], true);
    assert_eq!(key_info(&d, "plain").await.get("cache"), None);

    // A million tokens each way at glm-4.6's prices: a cost the ledger cannot round away.
    fake.push(FakeReply::text("expensive").with_usage(1_000_000, 1_000_000));
    assert_eq!(ask(&d, &cached, "once").await, (200, "miss".into()));
    assert_eq!(ask(&d, &cached, "once").await, (200, "hit".into()));
    assert_eq!(upstream_calls(&fake), 1);
    for _ in 0..2 {
        assert_eq!(
            ask(&d, &plain, "once").await,
            (200, String::new()),
            "the cache is off for the other key"
        );
    }
    assert_eq!(upstream_calls(&fake), 3);

    let s = status_until(&d, |s| s["today"]["models"][0]["cached"] == 1).await;
    let row = &s["today"]["models"][0];
    let cost = row["cost_usd"].as_f64().unwrap_or_default();
    let saved = row["saved_usd"].as_f64().unwrap_or_default();
    assert_eq!(
        (row["requests"].as_u64(), row["cached"].as_u64()),
        (Some(3), Some(1)),
        "{row}"
    );
    assert!(saved > 1.0, "the hit would have cost the first call's price: {row}");
    let key_row = s["today"]["keys"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["key"] == "cached").cloned())
        .unwrap_or_default();
    assert_eq!(
        (key_row["requests"].as_u64(), key_row["cached"].as_u64()),
        (Some(1), Some(1))
    );
    assert!((key_row["saved_usd"].as_f64().unwrap_or_default() - saved).abs() < 1e-6);
    assert!(cost > saved, "three paid calls, one of them expensive: {row}");
    // The key paid for its one provider call, not for the hit (its meter is written off the
    // request path too).
    let mut spent = 0.0;
    for _ in 0..50 {
        spent = key_info(&d, "cached").await["spent_usd"].as_f64().unwrap_or_default();
        if spent > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!((spent - saved).abs() < 1e-6, "spent {spent}, the miss cost {saved}");

    let cache = &s["cache"];
    assert_eq!(
        (cache["hits"].as_u64(), cache["misses"].as_u64()),
        (Some(1), Some(1)),
        "{cache}"
    );
    assert_eq!(
        (cache["mode"].as_str(), cache["shared"].as_str()),
        (Some("off"), Some("off"))
    );
    assert_eq!(cache["entries"], 1);
    let bytes = cache["bytes"].as_u64().unwrap_or_default();
    assert!(
        bytes > 0 && bytes <= cache["max_bytes"].as_u64().unwrap_or_default(),
        "{cache}"
    );
    let hit = s["activity"]["recent"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["status"] == "cached").cloned());
    assert!(hit.is_some_and(|h| h["key"] == "cached"), "{}", s["activity"]);

    // The key's setting changes as any limit does.
    let off = reqwest::Client::new()
        .patch(format!("{}/admin/keys/cached", d.base))
        .bearer_auth(ADMIN)
        .json(&json!({"cache": false}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(off.status().as_u16(), 200);
    assert_eq!(ask(&d, &cached, "once").await, (200, String::new()));
    assert_eq!(upstream_calls(&fake), 4);
}

/// An MCP session on the daemon (initialized): the URL and its id.
async fn mcp_session(d: &Daemon) -> (String, String) {
    let client = reqwest::Client::new();
    let url = format!("{}/mcp", d.base);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});
    let (_, session) = common::mcp(&client, &url, None, init).await;
    let session = session.unwrap_or_else(|| panic!("no mcp-session-id"));
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    common::mcp(&client, &url, Some(&session), initialized).await;
    (url, session)
}

/// Calls `tool` with `arguments`: the result.
async fn call_tool(session: &(String, String), tool: &str, arguments: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}});
    let (frame, _) = common::mcp(&reqwest::Client::new(), &session.0, Some(&session.1), body).await;
    frame["result"].clone()
}

#[tokio::test]
async fn the_mcp_chat_and_consensus_tools_take_a_cache_argument_and_say_when_the_cache_answered() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(&fake, "cache-mcp", &[("EXAI_CACHE", "exact")]).await;
    let session = mcp_session(&d).await;

    let tools = common::mcp(
        &reqwest::Client::new(),
        &session.0,
        Some(&session.1),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
    )
    .await
    .0;
    let schema_of = |name: &str| {
        tools["result"]["tools"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == name))
            .map(|t| t["inputSchema"]["properties"]["cache"].clone())
            .unwrap_or_default()
    };
    for name in ["chat", "consensus"] {
        assert_eq!(
            schema_of(name)["enum"],
            json!(["use", "no-cache", "no-store", "bypass"]),
            "{name}"
        );
    }
    assert_eq!(schema_of("thinkdeep"), Value::Null, "a workflow tool does not take it");

    let chat = |cache: Option<&str>| {
        let mut args = json!({"prompt": "what is a cache?", "model": "glm-4.6"});
        if let Some(c) = cache {
            args["cache"] = json!(c);
        }
        args
    };
    let first = call_tool(&session, "chat", chat(None)).await;
    assert_eq!(first["structuredContent"]["cache"], "miss", "{first}");
    let again = call_tool(&session, "chat", chat(Some("use"))).await;
    assert_eq!(again["structuredContent"]["cache"], "hit", "{again}");
    assert_eq!(again["structuredContent"]["cost_usd"], 0.0);
    let text = again["content"][0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("what is a cache?") && text.contains("(from the cache)"),
        "{text}"
    );
    assert_eq!(upstream_calls(&fake), 1);
    // The hit was stored as a turn: the conversation goes on from it.
    let id = again["structuredContent"]["continuation_id"]
        .as_str()
        .unwrap_or_default();
    let next = call_tool(&session, "chat", json!({"prompt": "and then?", "continuation_id": id})).await;
    assert_eq!(next["structuredContent"]["cache"], "miss", "{next}");
    assert_eq!(upstream_calls(&fake), 2);

    fake.push(FakeReply::text("fresh"));
    let fresh = call_tool(&session, "chat", chat(Some("no-cache"))).await;
    assert_eq!(fresh["structuredContent"]["cache"], "miss");
    let kept = call_tool(&session, "chat", chat(None)).await;
    assert_eq!(kept["structuredContent"]["cache"], "hit");
    assert!(
        kept["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with("fresh")
    );
    let bypass = call_tool(&session, "chat", chat(Some("bypass"))).await;
    assert_eq!(bypass["structuredContent"].get("cache"), None, "{bypass}");
    assert_eq!(upstream_calls(&fake), 4);
    let unkept = json!({"prompt": "not kept", "cache": "no-store"});
    for _ in 0..2 {
        let r = call_tool(&session, "chat", unkept.clone()).await;
        assert_eq!(r["structuredContent"]["cache"], "miss");
    }
    assert_eq!(upstream_calls(&fake), 6);
    let wrong = call_tool(&session, "chat", chat(Some("sometimes"))).await;
    assert_eq!(wrong["isError"], true, "{wrong}");
    assert!(
        wrong["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("no-cache")),
        "{wrong}"
    );

    // Consensus: two consultations and a synthesis, each a miss, then each a hit.
    let consensus = json!({"prompt": "should we cache?", "models": [
        {"model": "glm-4.6", "stance": "for"}, {"model": "kimi-k2-0905-preview", "stance": "against"}]});
    let first = call_tool(&session, "consensus", consensus.clone()).await;
    assert_eq!(first["structuredContent"]["cache"], "miss", "{first}");
    assert_eq!(upstream_calls(&fake), 9);
    let again = call_tool(&session, "consensus", consensus).await;
    let consulted = again["structuredContent"]["consulted"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(consulted.len(), 2);
    assert!(consulted.iter().all(|c| c["cache"] == "hit"), "{again}");
    assert_eq!(again["structuredContent"]["cache"], "hit");
    assert_eq!(upstream_calls(&fake), 9);

    let s = status_until(&d, |s| {
        s["today"]["models"]
            .as_array()
            .is_some_and(|rows| rows.iter().map(|r| r["cached"].as_u64().unwrap_or(0)).sum::<u64>() == 5)
    })
    .await;
    assert_eq!(s["cache"]["hits"], 5, "{}", s["cache"]);
}
