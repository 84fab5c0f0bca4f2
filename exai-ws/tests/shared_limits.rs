//! Several real exai-ws daemons on one real redis-server: the limits hold across all of them
//! (in-flight leases, `rpm`), a daemon killed with SIGKILL gives its leases back within
//! `limits.lease_secs`, and a conversation and the usage ledger are one for all of them.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Daemon, start, text_of, tool};
use exai_core::testing::{FakeReply, FakeUpstream, RedisServer};
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

/// The environment of daemons sharing `redis`, with `extra` settings.
fn env(fake: &FakeUpstream, redis: &RedisServer, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = fake.env_for(&["GLM"]);
    env.insert("REDIS_URL".into(), redis.url());
    env.insert("EXAI_RETRY_BASE_DELAY_MS".into(), "10".into());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

async fn complete(client: &reqwest::Client, d: &Daemon, prompt: &str) -> (u16, Value) {
    let response = client
        .post(format!("{}/v1/chat/completions", d.base))
        .json(&json!({"messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_provider_limit_of_two_holds_across_three_daemons() {
    let redis = RedisServer::start();
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    for _ in 0..30 {
        fake.push(FakeReply::text("done").with_delay(Duration::from_millis(100)));
    }
    let env = env(
        &fake,
        &redis,
        &[("GLM_MAX_INFLIGHT", "2"), ("EXAI_QUEUE_TIMEOUT_MS", "30000")],
    );
    let mut daemons = Vec::new();
    for i in 0..3 {
        daemons.push(start(&env, &format!("shared-{i}")).await);
    }
    let client = reqwest::Client::new();
    let calls = (0..30).map(|i| {
        let (client, d) = (client.clone(), &daemons[i % 3]);
        async move { complete(&client, d, &format!("call {i}")).await }
    });
    let results = futures::future::join_all(calls).await;
    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
    }
    assert_eq!(fake.completed(), 30);
    assert_eq!(
        fake.max_in_flight(),
        2,
        "the upstream never sees more than the provider's limit, whichever daemon sends"
    );
}

#[tokio::test]
async fn a_daemon_killed_mid_call_gives_its_lease_back_within_lease_secs() {
    let redis = RedisServer::start();
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::hang());
    let env = env(
        &fake,
        &redis,
        &[
            ("GLM_MAX_INFLIGHT", "1"),
            ("EXAI_LEASE_SECS", "2"),
            ("EXAI_QUEUE_TIMEOUT_MS", "20000"),
        ],
    );
    let mut holder = start(&env, "lease-holder").await;
    let other = start(&env, "lease-waiter").await;
    let client = reqwest::Client::new();
    let stuck = {
        let (client, base) = (client.clone(), holder.base.clone());
        tokio::spawn(async move {
            let _ = client
                .post(format!("{base}/v1/chat/completions"))
                .json(&json!({"messages": [{"role": "user", "content": "hang"}]}))
                .send()
                .await;
        })
    };
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.requests().len() == 1)
            .await
    );
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { complete(&client, &other, "after the kill").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.requests().len(), 1, "the other daemon waits for the only lease");
    let pid = holder.child.id().unwrap_or_default().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .is_ok_and(|s| s.success())
    );
    let killed = Instant::now();
    let (status, body) = waiting.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "{body}");
    assert!(
        killed.elapsed() < Duration::from_secs(4),
        "lease back within lease_secs: {:?}",
        killed.elapsed()
    );
    let _ = holder.child.wait().await;
    stuck.abort();
}

#[tokio::test]
async fn rpm_is_paced_across_daemons() {
    let redis = RedisServer::start();
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let env = env(&fake, &redis, &[("GLM_RPM", "2"), ("EXAI_QUEUE_TIMEOUT_MS", "2000")]);
    let (a, b) = (start(&env, "rpm-a").await, start(&env, "rpm-b").await);
    let client = reqwest::Client::new();
    assert_eq!(complete(&client, &a, "one").await.0, 200);
    assert_eq!(complete(&client, &b, "two").await.0, 200);
    let started = Instant::now();
    let (status, body) = complete(&client, &a, "three").await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| m.contains("rpm")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once: the wait is past the queue timeout"
    );
    assert_eq!(fake.requests().len(), 2, "two calls a minute, whichever daemon sends");
}

#[tokio::test]
async fn a_conversation_and_the_usage_ledger_are_one_across_daemons() {
    let redis = RedisServer::start();
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let env = env(&fake, &redis, &[]);
    let (a, b) = (start(&env, "conv-a").await, start(&env, "conv-b").await);
    one_conversation_and_one_ledger(&fake, &a, &b, 2).await;
}

/// A conversation started through daemon `a` continues through daemon `b`, and `b`'s ledger
/// counts `calls` calls in all (a's and b's).
async fn one_conversation_and_one_ledger(fake: &FakeUpstream, a: &Daemon, b: &Daemon, calls: u64) {
    let connect = |d: &Daemon| StreamableHttpClientTransport::from_uri(format!("{}/mcp", d.base));
    let first = ().serve(connect(a)).await.unwrap_or_else(|e| panic!("{e}"));
    let reply = first
        .call_tool(tool("chat", json!({"prompt": "remember: blue"})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = reply.structured_content.unwrap_or_default()["continuation_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let second = ().serve(connect(b)).await.unwrap_or_else(|e| panic!("{e}"));
    let args = json!({"prompt": "what colour?", "continuation_id": id});
    let continued = second
        .call_tool(tool("chat", args))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(continued.is_error, Some(false), "{}", text_of(&continued));
    let sent = fake.requests().last().map(|r| r.messages()).unwrap_or_default();
    assert!(
        sent.iter()
            .any(|m| m["content"].as_str().is_some_and(|c| c.contains("remember: blue"))),
        "daemon b sent the history daemon a stored: {sent:?}"
    );
    let mut requests = 0;
    for _ in 0..50 {
        let status = second
            .call_tool(tool("status", json!({})))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let usage = &status.structured_content.unwrap_or_default()["gateway"]["usage"];
        assert_eq!(usage["backend"], "redis");
        requests = usage["all_time"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["requests"].as_u64())
            .sum();
        if requests == calls {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(requests, calls, "one ledger for both daemons");
    let _ = first.cancel().await;
    let _ = second.cancel().await;
}

#[tokio::test]
async fn with_redis_down_a_daemon_serves_on_its_local_limits_and_says_so() {
    let mut redis = RedisServer::start();
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = start(&env(&fake, &redis, &[]), "redis-down").await;
    let client = reqwest::Client::new();
    let ready = |client: reqwest::Client, base: String| async move {
        let r = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (r.status().as_u16(), r.json::<Value>().await.unwrap_or_default())
    };
    assert_eq!(complete(&client, &d, "before").await.0, 200);
    assert_eq!(ready(client.clone(), d.base.clone()).await.1["limits"], "shared");
    redis.kill();
    let (status, body) = complete(&client, &d, "during").await;
    assert_eq!(status, 200, "served on the local limits: {body}");
    // (Not ready either: the Redis memory is unreachable too.)
    let (_, body) = ready(client.clone(), d.base.clone()).await;
    assert_eq!(body["limits"], "degraded", "{body}");
    redis.restart();
    let mut limits = Value::Null;
    for _ in 0..50 {
        assert_eq!(complete(&client, &d, "after").await.0, 200);
        limits = ready(client.clone(), d.base.clone()).await.1["limits"].clone();
        if limits == "shared" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(limits, "shared", "back on the shared limits once redis returns");
}

#[tokio::test]
async fn on_a_redis_cluster_the_limit_the_conversation_and_the_ledger_hold_too() {
    let cluster = exai_core::testing::RedisCluster::start(3);
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    for _ in 0..12 {
        fake.push(FakeReply::text("done").with_delay(Duration::from_millis(100)));
    }
    let mut env = fake.env_for(&["GLM"]);
    env.insert("REDIS_URL".into(), cluster.url());
    env.insert("GLM_MAX_INFLIGHT".into(), "2".into());
    env.insert("EXAI_QUEUE_TIMEOUT_MS".into(), "30000".into());
    let (a, b) = (start(&env, "cluster-a").await, start(&env, "cluster-b").await);
    let client = reqwest::Client::new();
    let calls = (0..12).map(|i| {
        let (client, d) = (client.clone(), if i % 2 == 0 { &a } else { &b });
        async move { complete(&client, d, &format!("call {i}")).await }
    });
    for (status, body) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(fake.max_in_flight(), 2, "the lease limit holds on the cluster");

    one_conversation_and_one_ledger(&fake, &a, &b, 14).await;
}

#[tokio::test]
async fn redis_over_tls_with_a_password_carries_memory_and_the_shared_limits() {
    let redis = RedisServer::start_tls("s3cret-pw");
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut env = env(&fake, &redis, &[]);
    assert!(env["REDIS_URL"].starts_with("rediss://"));
    let ca = redis.ca_file().map(|p| p.display().to_string()).unwrap_or_default();
    env.insert("SSL_CERT_FILE".into(), ca);
    let d = start(&env, "redis-tls").await;
    let client = reqwest::Client::new();
    assert_eq!(complete(&client, &d, "over tls").await.0, 200);
    let ready: Value = client
        .get(format!("{}/readyz", d.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(
        (ready["ready"].as_bool(), ready["memory"].as_str()),
        (Some(true), Some("redis")),
        "{ready}"
    );
    assert_eq!(ready["limits"], "shared", "{ready}");
    assert_eq!(ready["limits_through"], "redis", "{ready}");
}

#[tokio::test]
async fn a_circuit_opened_by_one_daemon_stops_the_others_sending() {
    let redis = RedisServer::start();
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::status(500));
    let env = env(
        &fake,
        &redis,
        &[
            ("EXAI_MAX_RETRIES", "0"),
            ("EXAI_CIRCUIT_FAILURE_THRESHOLD", "1"),
            ("EXAI_CIRCUIT_COOLDOWN_SECS", "30"),
        ],
    );
    let (a, b) = (start(&env, "circuit-a").await, start(&env, "circuit-b").await);
    let client = reqwest::Client::new();
    let (status, body) = complete(&client, &a, "fails").await;
    assert_eq!(status, 502, "{body}");
    // The open circuit reaches Redis off the request path.
    let mut refused = (0, Value::Null);
    for _ in 0..50 {
        refused = complete(&client, &b, "elsewhere").await;
        if refused.0 == 429 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(refused.0, 429, "{}", refused.1);
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cooling down") && m.contains("another process")),
        "{}",
        refused.1
    );
    assert_eq!(
        fake.requests().len(),
        1,
        "daemon b sent nothing to the failing provider"
    );
}
