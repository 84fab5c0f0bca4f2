//! The response cache's shared level against real daemons on one real redis-server and the
//! fake upstream, counting the calls that reach the fake: a reply kept by one daemon is a hit on
//! another, a Redis killed while a reply is kept turns hits into misses (never errors) and the
//! status page's shared level `degraded`, identical calls spread over three daemons make one
//! upstream call (each counted once: one miss, the rest hits or coalesced), and a daemon killed
//! (SIGKILL) while it holds a key's lock leaves its waiters to take over once the lease runs
//! out.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::Daemon;
use exai_core::testing::{FakeReply, FakeUpstream, RedisServer};
use serde_json::{Value, json};

/// A daemon with the cache on, sharing `redis`, with `extra` settings.
async fn daemon(fake: &FakeUpstream, redis: &RedisServer, tag: &str, extra: &[(&str, &str)]) -> Daemon {
    let mut env: HashMap<String, String> = fake.env_for(&["GLM"]);
    env.insert("REDIS_URL".into(), redis.url());
    env.insert("EXAI_CACHE".into(), "exact".into());
    env.insert("EXAI_MAX_RETRIES".into(), "0".into());
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    common::start(&env, tag).await
}

struct Answer {
    status: u16,
    cache: String,
    text: String,
}

impl Answer {
    /// The reply's text: a chat body's, or a Messages stream's deltas.
    fn content(&self) -> String {
        if let Some(text) = serde_json::from_str::<Value>(&self.text)
            .ok()
            .and_then(|v| v.pointer("/choices/0/message/content").cloned())
            .and_then(|v| v.as_str().map(str::to_string))
        {
            return text;
        }
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .filter_map(|e| e.pointer("/delta/text").and_then(Value::as_str).map(str::to_string))
            .collect()
    }
}

async fn post(d: &Daemon, path: &str, body: &Value) -> Answer {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", d.base))
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cache = response
        .headers()
        .get("x-exai-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Answer {
        status: response.status().as_u16(),
        cache,
        text: response.text().await.unwrap_or_default(),
    }
}

fn chat(prompt: &str) -> Value {
    json!({"model": "glm-4.6", "max_tokens": 64,
           "messages": [{"role": "user", "content": prompt}]})
}

fn upstream_calls(fake: &FakeUpstream) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.ends_with("/messages") || r.path.ends_with("/completions"))
        .count()
}

fn sigkill(d: &Daemon) {
    let pid = d.child.id().unwrap_or_default().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .is_ok_and(|s| s.success())
    );
}

#[tokio::test]
async fn a_reply_kept_by_one_daemon_is_a_hit_on_another_in_any_wire() {
    let redis = RedisServer::start();
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let a = daemon(&fake, &redis, "shared-cache-a", &[]).await;
    let b = daemon(&fake, &redis, "shared-cache-b", &[]).await;

    let first = post(&a, "/v1/chat/completions", &chat("kept once")).await;
    assert_eq!((first.status, first.cache.as_str()), (200, "miss"), "{}", first.text);
    let other = post(&b, "/v1/chat/completions", &chat("kept once")).await;
    assert_eq!((other.status, other.cache.as_str()), (200, "hit"), "{}", other.text);
    assert_eq!(other.content(), first.content());
    assert!(first.content().contains("kept once"), "{}", first.text);

    // The same call as a Messages stream on the other daemon: replayed from the shared reply.
    let streamed = json!({"model": "glm-4.6", "max_tokens": 64, "stream": true,
                          "messages": [{"role": "user", "content": "kept once"}]});
    let replayed = post(&b, "/v1/messages", &streamed).await;
    assert_eq!(
        (replayed.status, replayed.cache.as_str()),
        (200, "hit"),
        "{}",
        replayed.text
    );
    assert_eq!(replayed.content(), first.content());
    assert_eq!(upstream_calls(&fake), 1);
}

#[tokio::test]
async fn a_redis_killed_while_a_reply_is_kept_turns_hits_into_misses_never_errors() {
    let mut redis = RedisServer::start();
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    // Conversations and keys in process: what is under test is the cache (a key store in
    // Redis refuses calls while it cannot check keys).
    let local = [("EXAI_MEMORY", "memory")];
    let a = daemon(&fake, &redis, "shared-cache-kill-a", &local).await;
    let b = daemon(&fake, &redis, "shared-cache-kill-b", &local).await;
    assert_eq!(
        post(&a, "/v1/chat/completions", &chat("before the kill")).await.status,
        200
    );
    assert_eq!(upstream_calls(&fake), 1);

    let shared_status = |d: &Daemon| {
        let url = format!("{}/ui/api/status", d.base);
        async move {
            let status: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
            status["cache"]["shared"].as_str().map(str::to_string)
        }
    };
    assert_eq!(shared_status(&a).await.as_deref(), Some("ok"));
    redis.kill();
    assert_eq!(
        shared_status(&a).await.as_deref(),
        Some("degraded"),
        "the status page says so"
    );
    // B never saw the reply: with Redis gone, a miss answered by the provider.
    let missed = post(&b, "/v1/chat/completions", &chat("before the kill")).await;
    assert_eq!((missed.status, missed.cache.as_str()), (200, "miss"), "{}", missed.text);
    assert_eq!(upstream_calls(&fake), 2);
    // A still has it in process.
    let local = post(&a, "/v1/chat/completions", &chat("before the kill")).await;
    assert_eq!((local.status, local.cache.as_str()), (200, "hit"), "{}", local.text);
    // A new call is answered and kept locally.
    let fresh = post(&a, "/v1/chat/completions", &chat("during the outage")).await;
    assert_eq!((fresh.status, fresh.cache.as_str()), (200, "miss"), "{}", fresh.text);
    let again = post(&a, "/v1/chat/completions", &chat("during the outage")).await;
    assert_eq!((again.status, again.cache.as_str()), (200, "hit"), "{}", again.text);
    assert_eq!(upstream_calls(&fake), 3);

    // Redis back (empty): replies are shared again.
    redis.restart();
    let mut shared = false;
    for attempt in 0..20 {
        let prompt = format!("after the restart {attempt}");
        assert_eq!(post(&a, "/v1/chat/completions", &chat(&prompt)).await.status, 200);
        let on_b = post(&b, "/v1/chat/completions", &chat(&prompt)).await;
        assert_eq!(on_b.status, 200, "{}", on_b.text);
        if on_b.cache == "hit" {
            shared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(shared, "a reply kept by A is a hit on B once Redis is back");
    assert_eq!(shared_status(&b).await.as_deref(), Some("ok"));
}

#[tokio::test]
async fn a_hundred_identical_calls_over_three_daemons_make_one_upstream_call() {
    let redis = RedisServer::start();
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut daemons = Vec::new();
    for i in 0..3 {
        daemons.push(daemon(&fake, &redis, &format!("shared-cache-hundred-{i}"), &[]).await);
    }
    fake.push(FakeReply::text("one answer for all").with_delay(Duration::from_millis(1_000)));
    let ask = chat("the same question everywhere");
    let calls = (0..100).map(|i| post(&daemons[i % 3], "/v1/chat/completions", &ask));
    let answers = futures::future::join_all(calls).await;
    for answer in &answers {
        assert_eq!(
            (answer.status, answer.content().as_str()),
            (200, "one answer for all"),
            "{}",
            answer.text
        );
    }
    assert_eq!(upstream_calls(&fake), 1);
    let hits = answers.iter().filter(|a| a.cache == "hit").count();
    assert!(hits > 0, "the daemons that waited answered from the shared reply");

    // Each call counted once, on its daemon: one miss (the call that went to the provider), a
    // hit for each daemon that found the shared reply, the rest coalesced behind them.
    let mut counted = HashMap::new();
    for d in &daemons {
        let cache = common::get_json(d, "/ui/api/status").await["cache"].clone();
        assert_eq!(cache["shared"], "ok", "{cache}");
        for what in ["hits", "misses", "coalesced"] {
            *counted.entry(what).or_insert(0) += cache[what].as_u64().unwrap_or_default();
        }
    }
    assert_eq!(counted["misses"], 1, "{counted:?}");
    assert_eq!(
        counted["hits"] + counted["misses"] + counted["coalesced"],
        100,
        "{counted:?}"
    );
    // Every call no provider answered for — the hits and the coalesced — is in the ledger
    // every daemon shares (Redis), as cached: 99, beside the one request.
    let mut row = Value::Null;
    for _ in 0..50 {
        let today = common::get_json(&daemons[0], "/ui/api/status").await["today"]["models"].clone();
        row = today[0].clone();
        if row["cached"] == counted["hits"] + counted["coalesced"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!((&row["requests"], &row["cached"]), (&json!(1), &json!(99)), "{row}");
}

#[tokio::test]
async fn a_daemon_killed_holding_the_lock_leaves_a_waiter_to_take_over_after_the_lease() {
    let redis = RedisServer::start();
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::hang());
    let lease = [("EXAI_CACHE_LEASE_SECS", "1")];
    let holder = daemon(&fake, &redis, "shared-cache-holder", &lease).await;
    let other = daemon(&fake, &redis, "shared-cache-waiter", &lease).await;
    let ask = chat("asked while the holder hangs");
    let stuck = {
        let (base, ask) = (holder.base.clone(), ask.clone());
        tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .post(format!("{base}/v1/chat/completions"))
                .json(&ask)
                .send()
                .await;
        })
    };
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.requests().len() == 1)
            .await
    );
    let waiting = tokio::spawn(async move { post(&other, "/v1/chat/completions", &ask).await });
    // Longer than the lease: the holder renews it while its call runs.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        upstream_calls(&fake),
        1,
        "the other daemon waits for the holder's reply"
    );
    assert!(!waiting.is_finished());

    sigkill(&holder);
    let killed = Instant::now();
    let answer = waiting.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((answer.status, answer.cache.as_str()), (200, "miss"), "{}", answer.text);
    assert!(
        answer.content().contains("asked while the holder hangs"),
        "{}",
        answer.text
    );
    assert!(
        killed.elapsed() < Duration::from_secs(3),
        "taken over within the lease: {:?}",
        killed.elapsed()
    );
    assert_eq!(upstream_calls(&fake), 2);
    stuck.abort();
}

#[tokio::test]
async fn a_daemon_waiting_for_another_gives_up_at_its_own_deadline() {
    let redis = RedisServer::start();
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::hang());
    let holder = daemon(&fake, &redis, "shared-cache-slow-holder", &[]).await;
    let hurried = daemon(
        &fake,
        &redis,
        "shared-cache-hurried",
        &[("EXAI_CALL_TIMEOUT_SECS", "1")],
    )
    .await;
    let ask = chat("asked of a hung holder");
    let stuck = {
        let (base, ask) = (holder.base.clone(), ask.clone());
        tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .post(format!("{base}/v1/chat/completions"))
                .json(&ask)
                .send()
                .await;
        })
    };
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.requests().len() == 1)
            .await
    );
    let started = Instant::now();
    let answer = post(&hurried, "/v1/chat/completions", &ask).await;
    assert_eq!(answer.status, 504, "{}", answer.text);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "gave up at its deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(upstream_calls(&fake), 1, "the waiter never called the provider");
    stuck.abort();
}
