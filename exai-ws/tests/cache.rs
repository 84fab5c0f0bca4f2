//! The response cache and in-flight coalescing against the real daemon and the fake upstream,
//! counting the calls that reach the fake: a hit in each wire and across wires, a miss when any
//! part of the call changes, a key's scope, `no-cache`, `no-store` and `bypass`, TTL expiry,
//! replies never kept (a tool call, a broken stream), and identical calls in flight at once
//! answered by one upstream call, streams fanned out to a late joiner and a caller that leaves.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::Daemon;
use exai_core::testing::{FakeReply, FakeUpstream};
use serde_json::{Value, json};

async fn daemon(fake: &FakeUpstream, tag: &str, settings: &[(&str, &str)]) -> Daemon {
    let mut env: HashMap<String, String> = fake.env_for(&["GLM", "KIMI"]);
    env.insert("EXAI_MEMORY".into(), "memory".into());
    env.insert("EXAI_MAX_RETRIES".into(), "0".into());
    for (k, v) in settings {
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
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

async fn post(d: &Daemon, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", d.base))
        .header("anthropic-version", "2023-06-01")
        .json(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
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

fn chat(prompt: &str, stream: bool) -> Value {
    json!({"model": "glm-4.6", "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": prompt}]})
}

fn messages(prompt: &str, stream: bool) -> Value {
    json!({"model": "glm-4.6", "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}]})
}

fn responses(prompt: &str, stream: bool) -> Value {
    json!({"model": "glm-4.6", "input": prompt, "stream": stream, "store": false})
}

/// The text of a chat reply, whole or streamed.
fn chat_text(answer: &Answer) -> String {
    if let Some(text) = answer
        .json()
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
    {
        return text.to_string();
    }
    data_lines(&answer.text)
        .filter_map(|d| {
            d.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

fn data_lines(text: &str) -> impl Iterator<Item = Value> + '_ {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
}

fn upstream_calls(fake: &FakeUpstream) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.ends_with("/messages") || r.path.ends_with("/completions"))
        .count()
}

#[tokio::test]
async fn each_wire_is_answered_from_the_cache_and_a_call_shares_its_reply_across_wires() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(&fake, "cache-wires", &[("EXAI_CACHE", "exact")]).await;

    let first = post(&d, "/v1/chat/completions", &chat("one", false), &[]).await;
    assert_eq!((first.status, first.cache.as_str()), (200, "miss"), "{}", first.text);
    let again = post(&d, "/v1/chat/completions", &chat("one", false), &[]).await;
    assert_eq!((again.status, again.cache.as_str()), (200, "hit"), "{}", again.text);
    assert_eq!(chat_text(&again), chat_text(&first));
    assert!(chat_text(&first).contains("one"), "{}", first.text);
    assert_eq!(upstream_calls(&fake), 1);

    // The same call in Messages, whole and streamed: the chat reply, in Anthropic's wire.
    let whole = post(&d, "/v1/messages", &messages("one", false), &[]).await;
    assert_eq!((whole.status, whole.cache.as_str()), (200, "hit"), "{}", whole.text);
    assert_eq!(
        whole.json()["content"][0]["text"].as_str(),
        Some(chat_text(&first).as_str())
    );
    assert_eq!(whole.json()["stop_reason"], "end_turn");
    let streamed = post(&d, "/v1/messages", &messages("one", true), &[]).await;
    assert_eq!(streamed.cache, "hit");
    let deltas: String = data_lines(&streamed.text)
        .filter_map(|e| e.pointer("/delta/text").and_then(Value::as_str).map(str::to_string))
        .collect();
    assert_eq!(deltas, chat_text(&first));
    assert!(streamed.text.contains("message_stop"), "{}", streamed.text);
    assert_eq!(upstream_calls(&fake), 1);

    // A stream relayed in Messages is kept when it ends, and replayed in chat.
    let relayed = post(&d, "/v1/messages", &messages("two", true), &[]).await;
    assert_eq!(relayed.cache, "miss");
    let replayed = post(&d, "/v1/chat/completions", &chat("two", true), &[]).await;
    assert_eq!(replayed.cache, "hit", "{}", replayed.text);
    assert!(chat_text(&replayed).contains("two"), "{}", replayed.text);
    assert!(replayed.text.trim_end().ends_with("data: [DONE]"));
    assert_eq!(upstream_calls(&fake), 2);

    // Responses, whole then streamed.
    let whole = post(&d, "/v1/responses", &responses("three", false), &[]).await;
    assert_eq!(whole.cache, "miss", "{}", whole.text);
    let text = whole.json()["output"][0]["content"][0]["text"]
        .as_str()
        .map(str::to_string);
    assert!(text.as_deref().is_some_and(|t| t.contains("three")), "{}", whole.text);
    let streamed = post(&d, "/v1/responses", &responses("three", true), &[]).await;
    assert_eq!(streamed.cache, "hit", "{}", streamed.text);
    let completed = data_lines(&streamed.text).find(|e| e["type"] == "response.completed");
    assert_eq!(
        completed.and_then(|e| e.pointer("/response/output/0/content/0/text").cloned()),
        text.map(Value::String)
    );
    assert_eq!(upstream_calls(&fake), 3);

    let metrics = common::get_text(&d, "/metrics", None).await;
    for series in ["exai_cache_hits_total", "exai_cache_misses_total", "exai_cache_bytes"] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
}

#[tokio::test]
async fn a_change_to_any_part_of_the_call_is_a_miss() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(&fake, "cache-miss", &[("EXAI_CACHE", "exact")]).await;
    let base = chat("same", false);
    assert_eq!(post(&d, "/v1/chat/completions", &base, &[]).await.cache, "miss");
    assert_eq!(post(&d, "/v1/chat/completions", &base, &[]).await.cache, "hit");
    let mut changes = Vec::new();
    for (field, value) in [
        ("model", json!("kimi")),
        ("temperature", json!(0.2)),
        ("max_tokens", json!(65)),
        ("response_format", json!({"type": "json_object"})),
        ("tool_choice", json!("none")),
        ("messages", json!([{"role": "user", "content": "same!"}])),
    ] {
        let mut changed = base.clone();
        changed[field] = value;
        changes.push(changed);
    }
    for changed in &changes {
        let answer = post(&d, "/v1/chat/completions", changed, &[]).await;
        assert_eq!(
            (answer.status, answer.cache.as_str()),
            (200, "miss"),
            "{changed}: {}",
            answer.text
        );
    }
    assert_eq!(upstream_calls(&fake), 1 + changes.len());
}

#[tokio::test]
async fn a_reply_is_shared_within_a_key_unless_the_scope_is_global() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    for (scope, expected) in [("key", 2), ("global", 1)] {
        let d = daemon(
            &fake,
            &format!("cache-scope-{scope}"),
            &[
                ("EXAI_CACHE", "exact"),
                ("EXAI_CACHE_SCOPE", scope),
                ("EXAI_ADMIN_TOKEN", "admin"),
                ("EXAI_MEMORY", "sqlite"),
            ],
        )
        .await;
        let before = upstream_calls(&fake);
        let a = common::create_key(&d, "admin", &format!("a-{scope}"), json!({})).await;
        let b = common::create_key(&d, "admin", &format!("b-{scope}"), json!({})).await;
        let prompt = format!("scoped {scope}");
        for secret in [&a, &b, &a, &b] {
            let auth = format!("Bearer {secret}");
            let answer = post(
                &d,
                "/v1/chat/completions",
                &chat(&prompt, false),
                &[("authorization", &auth)],
            )
            .await;
            assert_eq!(answer.status, 200, "{}", answer.text);
        }
        assert_eq!(upstream_calls(&fake) - before, expected, "scope {scope}");
    }
}

#[tokio::test]
async fn no_cache_asks_again_and_keeps_the_fresh_reply_and_no_store_and_bypass_keep_nothing() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(&fake, "cache-directives", &[("EXAI_CACHE", "exact")]).await;
    let ask = chat("directives", false);
    assert_eq!(post(&d, "/v1/chat/completions", &ask, &[]).await.cache, "miss");
    fake.push(FakeReply::text("fresh"));
    let fresh = post(&d, "/v1/chat/completions", &ask, &[("cache-control", "no-cache")]).await;
    assert_eq!((fresh.cache.as_str(), chat_text(&fresh).as_str()), ("miss", "fresh"));
    let kept = post(&d, "/v1/chat/completions", &ask, &[]).await;
    assert_eq!((kept.cache.as_str(), chat_text(&kept).as_str()), ("hit", "fresh"));
    assert_eq!(upstream_calls(&fake), 2);

    let bypass = post(&d, "/v1/chat/completions", &ask, &[("x-exai-cache", "bypass")]).await;
    assert_eq!((bypass.status, bypass.cache.as_str()), (200, ""));
    assert_eq!(upstream_calls(&fake), 3);

    let unkept = chat("not kept", false);
    for _ in 0..2 {
        let answer = post(&d, "/v1/chat/completions", &unkept, &[("cache-control", "no-store")]).await;
        assert_eq!(answer.cache, "miss");
    }
    assert_eq!(post(&d, "/v1/chat/completions", &unkept, &[]).await.cache, "miss");
    assert_eq!(upstream_calls(&fake), 6);
}

#[tokio::test]
async fn a_kept_reply_expires_after_its_ttl() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(
        &fake,
        "cache-ttl",
        &[("EXAI_CACHE", "exact"), ("EXAI_CACHE_TTL_SECS", "1")],
    )
    .await;
    let ask = chat("short-lived", false);
    assert_eq!(post(&d, "/v1/chat/completions", &ask, &[]).await.cache, "miss");
    assert_eq!(post(&d, "/v1/chat/completions", &ask, &[]).await.cache, "hit");
    // The daemon is another process: its clock cannot be paused.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(post(&d, "/v1/chat/completions", &ask, &[]).await.cache, "miss");
    assert_eq!(upstream_calls(&fake), 2);
}

#[tokio::test]
async fn a_tool_call_and_a_broken_stream_are_never_kept() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(&fake, "cache-never", &[("EXAI_CACHE", "exact")]).await;
    let ask = chat("call a tool", false);
    for _ in 0..2 {
        fake.push(FakeReply::tool_use("get_weather", json!({"city": "Paris"})));
        let answer = post(&d, "/v1/chat/completions", &ask, &[]).await;
        assert_eq!(answer.cache, "miss", "{}", answer.text);
        assert_eq!(answer.json()["choices"][0]["finish_reason"], "tool_calls");
    }
    let streamed = chat("break", true);
    fake.push(FakeReply::drop_after(2));
    assert_eq!(post(&d, "/v1/chat/completions", &streamed, &[]).await.cache, "miss");
    let after = post(&d, "/v1/chat/completions", &streamed, &[]).await;
    assert_eq!(after.cache, "miss", "{}", after.text);
    assert_eq!(upstream_calls(&fake), 4);
}

#[tokio::test]
async fn a_hundred_identical_calls_at_once_make_one_upstream_call_with_the_cache_off() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(&fake, "coalesce-hundred", &[("EXAI_CACHE_COALESCE", "true")]).await;
    fake.push(FakeReply::text("one answer for all").with_delay(Duration::from_millis(1_000)));
    let ask = chat("the same question", false);
    let answers = futures::future::join_all((0..100).map(|_| post(&d, "/v1/chat/completions", &ask, &[]))).await;
    for answer in &answers {
        assert_eq!(
            (answer.status, chat_text(answer).as_str()),
            (200, "one answer for all"),
            "{}",
            answer.text
        );
        assert_eq!(answer.cache, "", "the cache is off");
    }
    assert_eq!(upstream_calls(&fake), 1);
    // Once answered, the flight is over: the next call asks again (no cache).
    assert_eq!(post(&d, "/v1/chat/completions", &ask, &[]).await.status, 200);
    assert_eq!(upstream_calls(&fake), 2);
    // The ledger: two provider calls, and 99 callers answered without one (charged nothing).
    let mut row = Value::Null;
    for _ in 0..100 {
        let status = common::get_json(&d, "/ui/api/status").await;
        row = status["today"]["models"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["provider"] == "glm")
            .cloned()
            .unwrap_or_default();
        if row["requests"] == 2 && row["cached"] == 99 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((&row["requests"], &row["cached"]), (&json!(2), &json!(99)), "{row}");
}

/// A streamed chat call that leaves once it has read for `leave_after` (`None`), or reads to
/// the end: its text.
async fn stream_reader(d: &Daemon, ask: Value, leave_after: Option<Duration>) -> Option<String> {
    let started = tokio::time::Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", d.base))
        .json(&ask)
        .send()
        .await
        .ok()?;
    let mut body = response.bytes_stream();
    let mut text = Vec::new();
    while let Some(Ok(chunk)) = futures::StreamExt::next(&mut body).await {
        text.extend_from_slice(&chunk);
        if leave_after.is_some_and(|after| started.elapsed() >= after) {
            return None;
        }
    }
    let answer = Answer {
        status: 200,
        cache: String::new(),
        text: String::from_utf8_lossy(&text).into_owned(),
    };
    Some(chat_text(&answer))
}

#[tokio::test]
async fn a_coalesced_stream_reaches_a_late_joiner_and_outlives_a_caller_that_leaves() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(&fake, "coalesce-stream", &[("EXAI_CACHE_COALESCE", "true")]).await;
    let words = "one two three four five six seven eight";
    fake.push(FakeReply::text(words).with_chunk_delay(Duration::from_millis(150)));
    let ask = chat("stream it", true);
    // The caller that started the flight leaves after a few words, once another follows it.
    let leader = stream_reader(&d, ask.clone(), Some(Duration::from_millis(300)));
    let follower = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream_reader(&d, ask.clone(), None).await
    };
    let late = async {
        // Joins with several words already sent: it gets them, then the rest.
        tokio::time::sleep(Duration::from_millis(600)).await;
        stream_reader(&d, ask.clone(), None).await
    };
    let (left, first, late) = tokio::join!(leader, follower, late);
    assert_eq!(left, None);
    assert_eq!(first.as_deref(), Some(words));
    assert_eq!(late.as_deref(), Some(words));
    assert_eq!(upstream_calls(&fake), 1);
    assert_eq!(fake.cut_short(), 0, "the upstream reply was read to its end");

    // When every caller leaves, the upstream request is cancelled.
    fake.push(FakeReply::text(words).with_chunk_delay(Duration::from_millis(300)));
    let ask = chat("everyone leaves", true);
    let leave = Some(Duration::from_millis(200));
    let (a, b) = tokio::join!(stream_reader(&d, ask.clone(), leave), stream_reader(&d, ask, leave));
    assert_eq!((a, b), (None, None));
    assert!(fake.wait_until(Duration::from_secs(5), |f| f.cut_short() == 1).await);
    assert_eq!(upstream_calls(&fake), 2);
}

#[tokio::test]
async fn a_failure_reaches_every_coalesced_caller_and_a_transient_one_is_asked_again() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let settings = [("EXAI_CACHE_COALESCE", "true"), ("EXAI_FALLBACK", "glm")];
    let d = daemon(&fake, "coalesce-failure", &settings).await;
    let slow = Duration::from_millis(500);
    fake.push(FakeReply::status(400).with_delay(slow));
    let ask = chat("refused", false);
    let (a, b) = tokio::join!(post(&d, "/v1/chat/completions", &ask, &[]), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        post(&d, "/v1/chat/completions", &ask, &[]).await
    });
    assert_eq!((a.status, b.status), (400, 400), "{} {}", a.text, b.text);
    assert_eq!(upstream_calls(&fake), 1);

    fake.push(FakeReply::status(503).with_delay(slow));
    fake.push(FakeReply::text("asked again"));
    let ask = chat("unavailable", false);
    let (a, b) = tokio::join!(post(&d, "/v1/chat/completions", &ask, &[]), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        post(&d, "/v1/chat/completions", &ask, &[]).await
    });
    assert_eq!(a.status, 502, "the provider's 503, as a bad gateway: {}", a.text);
    assert_eq!((b.status, chat_text(&b).as_str()), (200, "asked again"), "{}", b.text);
    assert_eq!(upstream_calls(&fake), 3);
}
