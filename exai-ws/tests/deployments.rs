//! Many keys and endpoints behind one provider, through the real daemon, against several fake
//! upstreams (one per deployment, so each sees only its own calls): a key answering 429 is
//! cooled and its calls move to the next key at once; a long `Retry-After` is never waited out
//! (the call falls back to another model, or answers 429 with the wait when nothing is left);
//! a rejected key is taken out until a reload brings a good one; `least-busy` keeps calls off a
//! slow deployment; each key's `rpm` spreads a burst over the keys; and over Redis, a key cooled
//! by one daemon is cooled for all of them.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::Daemon;
use exai_core::testing::{FakeReply, FakeUpstream, RedisServer};
use serde_json::{Value, json};

async fn fake() -> FakeUpstream {
    FakeUpstream::start()
        .await
        .unwrap_or_else(|e| panic!("fake upstream: {e}"))
}

/// Answers every request with `reply`.
fn always(fake: &FakeUpstream, reply: impl Fn() -> FakeReply + Send + Sync + 'static) {
    fake.respond_with(move |_| Some(reply()));
}

/// GLM over `fakes`, one deployment each (keys `k1`, `k2`, …), with `extra` settings.
fn env(fakes: &[&FakeUpstream], extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = HashMap::new();
    let keys: Vec<String> = (1..=fakes.len()).map(|i| format!("k{i}")).collect();
    let urls: Vec<String> = fakes.iter().map(|f| f.base_url()).collect();
    env.insert("GLM_API_KEYS".into(), keys.join(","));
    env.insert("GLM_BASE_URLS".into(), urls.join(","));
    env.insert("GLM_ANTHROPIC_BASE_URL".into(), "none".into());
    env.insert("EXAI_RETRY_BASE_DELAY_MS".into(), "5".into());
    env.insert("EXAI_MAX_RETRIES".into(), "1".into());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// GLM at `glm` and Kimi at `kimi`, one key each, no Anthropic endpoints.
fn glm_and_kimi(glm: &FakeUpstream, kimi: &FakeUpstream) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for (prefix, fake) in [("GLM", glm), ("KIMI", kimi)] {
        env.insert(format!("{prefix}_API_KEY"), prefix.to_ascii_lowercase());
        env.insert(format!("{prefix}_BASE_URL"), fake.base_url());
        env.insert(format!("{prefix}_ANTHROPIC_BASE_URL"), "none".into());
    }
    env
}

/// An OpenAI chat call: status, headers, body.
async fn chat(d: &Daemon, model: &str, prompt: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", d.base))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.json().await.unwrap_or_default())
}

/// The `Retry-After` seconds of an answer (0 without one).
fn retry_after(headers: &reqwest::header::HeaderMap) -> u64 {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

fn content(body: &Value) -> &str {
    body["choices"][0]["message"]["content"].as_str().unwrap_or_default()
}

fn chat_calls(fake: &FakeUpstream) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .count()
}

async fn metrics(d: &Daemon) -> String {
    common::get_text(d, "/metrics", None).await
}

/// Today's ledger per deployment (the status API's `today.deployments`) once `label` has
/// `(requests, errors)`: the ledger's writes land off the request path.
async fn ledger_reaches(d: &Daemon, label: &str, want: (u64, u64)) -> Value {
    let mut rows = Value::Null;
    for _ in 0..100 {
        rows = common::get_json(d, "/ui/api/status").await["today"]["deployments"].clone();
        let (requests, errors) = rows
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["deployment"] == label)
            .fold((0, 0), |(n, e), r| {
                (
                    n + r["requests"].as_u64().unwrap_or(0),
                    e + r["errors"].as_u64().unwrap_or(0),
                )
            });
        if (requests, errors) == want {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{label} never reached {want:?} in the ledger: {rows}")
}

#[tokio::test]
async fn a_key_answering_429_is_cooled_and_its_calls_move_to_the_next_key_at_once() {
    let (a, b) = (fake().await, fake().await);
    always(&a, || FakeReply::status(429).with_retry_after(30));
    always(&b, || FakeReply::text("from b"));
    let d = common::start(&env(&[&a, &b], &[]), "deploy-429").await;
    for i in 0..10 {
        let (status, _, body) = chat(&d, "glm-4.6", &format!("call {i}")).await;
        assert_eq!((status, content(&body)), (200, "from b"), "{body}");
    }
    assert!(chat_calls(&a) <= 1, "the cooled key got {} calls", chat_calls(&a));
    assert_eq!(chat_calls(&b), 10);
    let m = metrics(&d).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("exai_deployment_cooldowns_total") && l.contains("deployment=\"glm#1\"")),
        "{m}"
    );
    assert!(!m.contains("\"k1\"") && !m.contains("k2\""), "a key in the metrics");
    // The ledger says which deployment answered, and which failed, by label.
    ledger_reaches(&d, "glm#2", (10, 0)).await;
    let rows = ledger_reaches(&d, "glm#1", (0, chat_calls(&a) as u64)).await;
    assert!(!rows.to_string().contains("k1"), "a key in the ledger: {rows}");
    // And the status page's last requests.
    let recent = common::get_json(&d, "/ui/api/status").await["activity"]["recent"].clone();
    assert_eq!(recent[0]["deployment"], "glm#2", "{recent}");
}

#[tokio::test]
async fn a_long_retry_after_is_never_waited_out_and_nothing_left_answers_429_with_the_wait() {
    let (glm, kimi) = (fake().await, fake().await);
    always(&glm, || FakeReply::status(429).with_retry_after(30));
    always(&kimi, || FakeReply::text("from kimi"));
    let d = common::start(&glm_and_kimi(&glm, &kimi), "deploy-long-wait").await;
    let started = Instant::now();
    let (status, _, body) = chat(&d, "auto", "hello").await;
    assert_eq!((status, content(&body)), (200, "from kimi"), "{body}");
    // Not held for the 30 s (it was 60 s: two waits of 30 s).
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    // GLM is cooling: the next `auto` call goes straight to Kimi, and one for GLM alone is a
    // 429 with the wait, without a call upstream.
    let (status, _, _) = chat(&d, "auto", "again").await;
    assert_eq!(status, 200);
    let (status, headers, body) = chat(&d, "glm-4.6", "only glm").await;
    assert_eq!(status, 429, "{body}");
    let wait = retry_after(&headers);
    assert!((1..=30).contains(&wait), "retry-after {wait}");
    assert_eq!(chat_calls(&glm), 1, "GLM was called again while cooling");
}

#[tokio::test]
async fn a_rejected_key_is_taken_out_until_a_reload_brings_a_good_one() {
    let (a, b) = (fake().await, fake().await);
    a.require_key("good");
    always(&a, || FakeReply::text("from a"));
    always(&b, || FakeReply::text("from b"));
    let state = common::state_dir("deploy-reload");
    let file = std::path::Path::new(&state).join("exai.toml");
    let write = |key_a: &str| {
        let text = format!(
            "[providers.glm]\nstrategy = \"least-busy\"\nanthropic_base_url = \"none\"\n\n\
             [[providers.glm.deployments]]\nname = \"a\"\nbase_url = \"{}\"\napi_key_env = \"{key_a}\"\n\n\
             [[providers.glm.deployments]]\nname = \"b\"\nbase_url = \"{}\"\napi_key_env = \"KEY_GOOD\"\n",
            a.base_url(),
            b.base_url()
        );
        std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    };
    write("KEY_WRONG");
    let mut env = HashMap::new();
    for (k, v) in [
        ("KEY_WRONG", "wrong"),
        ("KEY_GOOD", "good"),
        ("EXAI_ADMIN_TOKEN", "admin-token"),
        ("EXAI_RETRY_BASE_DELAY_MS", "5"),
    ] {
        env.insert(k.to_string(), v.to_string());
    }
    env.insert("EXAI_CONFIG".into(), file.display().to_string());
    let d = common::start(&env, "deploy-reload").await;
    for i in 0..6 {
        let (status, _, body) = chat(&d, "glm-4.6", &format!("call {i}")).await;
        assert_eq!((status, content(&body)), (200, "from b"), "{body}");
    }
    assert_eq!(chat_calls(&a), 1, "the rejected key was tried again");

    // A file that no longer loads changes nothing.
    std::fs::write(&file, "[providers.glm\n").unwrap_or_else(|e| panic!("{e}"));
    let client = reqwest::Client::new();
    let reload = || {
        client
            .post(format!("{}/admin/reload", d.base))
            .bearer_auth("admin-token")
            .send()
    };
    let response = reload().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 400);
    let (status, _, _) = chat(&d, "glm-4.6", "still served").await;
    assert_eq!(status, 200);

    // The good key in its place: reloaded, deployment `a` takes calls again.
    write("KEY_GOOD");
    let response = reload().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 200);
    let report: Value = response.json().await.unwrap_or_default();
    assert_eq!(report["changed"], json!(["glm#a"]), "{report}");
    for i in 0..6 {
        let (status, _, _) = chat(&d, "glm-4.6", &format!("after {i}")).await;
        assert_eq!(status, 200);
    }
    let good_at_a = a
        .requests()
        .iter()
        .filter(|r| r.authorization.as_deref() == Some("Bearer good"))
        .count();
    // Rebuilt and never tried, it is `least-busy`'s first choice.
    assert!(good_at_a >= 1, "deployment a got no call after the reload");

    // SIGHUP reloads too, and the daemon keeps serving.
    let pid = d.child.id().unwrap_or_default().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .is_ok_and(|s| s.success())
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, _) = chat(&d, "glm-4.6", "after sighup").await;
    assert_eq!(status, 200);
    // Without the admin token, no reload.
    let response = client.post(format!("{}/admin/reload", d.base)).send().await;
    assert_eq!(response.map(|r| r.status().as_u16()).unwrap_or_default(), 401);
}

#[tokio::test]
async fn least_busy_keeps_calls_off_a_slow_deployment() {
    let (slow, quick) = (fake().await, fake().await);
    always(&slow, || FakeReply::text("slow").with_delay(Duration::from_secs(2)));
    always(&quick, || FakeReply::text("quick"));
    let d = common::start(&env(&[&slow, &quick], &[("GLM_STRATEGY", "least-busy")]), "deploy-busy").await;
    let mut calls = Vec::new();
    for i in 0..40 {
        let base = d.base.clone();
        calls.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/v1/chat/completions"))
                .json(&json!({"model": "glm-4.6", "messages": [{"role": "user", "content": format!("c{i}")}]}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or_default()
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for call in calls {
        assert_eq!(call.await.unwrap_or_default(), 200);
    }
    let (to_slow, to_quick) = (chat_calls(&slow), chat_calls(&quick));
    assert_eq!(to_slow + to_quick, 40);
    assert!(
        to_quick * 10 >= 40 * 9,
        "only {to_quick} of 40 calls went to the quick deployment"
    );
}

#[tokio::test]
async fn each_keys_rpm_spreads_a_burst_over_the_keys() {
    let fakes = [fake().await, fake().await, fake().await];
    for f in &fakes {
        always(f, || FakeReply::text("ok"));
    }
    let refs: Vec<&FakeUpstream> = fakes.iter().collect();
    let d = common::start(&env(&refs, &[("GLM_RPM", "5")]), "deploy-rpm").await;
    for i in 0..15 {
        let (status, _, body) = chat(&d, "glm-4.6", &format!("call {i}")).await;
        assert_eq!(status, 200, "{body}");
    }
    let seen: Vec<usize> = fakes.iter().map(chat_calls).collect();
    assert_eq!(seen, [5, 5, 5], "each key's upstream saw {seen:?}");
}

/// Waits, if need be, for a wall-clock minute with at least 10 s left: a deployment's `tpm`
/// counts tokens per minute, and a test must not straddle two.
async fn a_fresh_minute() {
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        % 60_000;
    if into > 50_000 {
        tokio::time::sleep(Duration::from_millis((60_000 - into + 50) as u64)).await;
    }
}

/// Two keys with `tpm` 50 and replies of 40 tokens, over `daemons` in turn: each key takes two
/// calls in a minute, then the call answers 429 with what is left of the minute.
async fn each_keys_tpm_holds(daemons: &[&Daemon], fakes: &[FakeUpstream; 2]) {
    for (i, d) in daemons.iter().cycle().take(4).enumerate() {
        let (status, _, body) = chat(d, "glm-4.6", &format!("call {i}")).await;
        assert_eq!(status, 200, "call {i}: {body}");
    }
    let seen: Vec<usize> = fakes.iter().map(chat_calls).collect();
    assert_eq!(seen, [2, 2], "each key's upstream saw {seen:?}");
    let (status, headers, body) = chat(daemons[0], "glm-4.6", "one more").await;
    assert_eq!(status, 429, "{body}");
    let wait = retry_after(&headers);
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("tpm (50 tokens a minute)"), "{message}");
    let seen: Vec<usize> = fakes.iter().map(chat_calls).collect();
    assert_eq!(seen, [2, 2], "a key out of tokens was called: {seen:?}");
}

#[tokio::test]
async fn each_keys_tpm_passes_calls_on_and_then_answers_429_until_the_minute_ends() {
    let fakes = [fake().await, fake().await];
    for f in &fakes {
        always(f, || FakeReply::text("ok").with_usage(30, 10));
    }
    let refs: Vec<&FakeUpstream> = fakes.iter().collect();
    let d = common::start(&env(&refs, &[("GLM_TPM", "50")]), "deploy-tpm").await;
    a_fresh_minute().await;
    each_keys_tpm_holds(&[&d], &fakes).await;
}

#[tokio::test]
async fn each_keys_tpm_is_shared_by_every_daemon_on_redis() {
    let redis = RedisServer::start();
    let fakes = [fake().await, fake().await];
    for f in &fakes {
        always(f, || FakeReply::text("ok").with_usage(30, 10));
    }
    let refs: Vec<&FakeUpstream> = fakes.iter().collect();
    let mut env = env(&refs, &[("GLM_TPM", "50")]);
    env.insert("REDIS_URL".into(), redis.url());
    let first = common::start(&env, "deploy-tpm-shared-1").await;
    let second = common::start(&env, "deploy-tpm-shared-2").await;
    a_fresh_minute().await;
    each_keys_tpm_holds(&[&first, &second], &fakes).await;
}

#[tokio::test]
async fn a_key_cooled_by_one_daemon_is_cooled_for_every_daemon() {
    let redis = RedisServer::start();
    let (a, b) = (fake().await, fake().await);
    always(&a, || FakeReply::status(429).with_retry_after(30));
    always(&b, || FakeReply::text("from b"));
    let mut env = env(&[&a, &b], &[]);
    env.insert("REDIS_URL".into(), redis.url());
    let first = common::start(&env, "deploy-shared-1").await;
    let second = common::start(&env, "deploy-shared-2").await;
    for i in 0..4 {
        let (status, _, body) = chat(&first, "glm-4.6", &format!("first {i}")).await;
        assert_eq!((status, content(&body)), (200, "from b"), "{body}");
    }
    assert_eq!(chat_calls(&a), 1);
    for i in 0..6 {
        let (status, _, body) = chat(&second, "glm-4.6", &format!("second {i}")).await;
        assert_eq!((status, content(&body)), (200, "from b"), "{body}");
    }
    assert_eq!(
        chat_calls(&a),
        1,
        "the second daemon called the key the first had cooled"
    );
    // One ledger in Redis: either daemon reports both daemons' calls per deployment.
    ledger_reaches(&first, "glm#2", (10, 0)).await;
    ledger_reaches(&second, "glm#1", (0, 1)).await;
}

#[tokio::test]
async fn an_alias_over_two_providers_spreads_its_calls_and_moves_on_from_a_429() {
    let (glm, kimi) = (fake().await, fake().await);
    always(&glm, || FakeReply::text("from glm"));
    always(&kimi, || FakeReply::text("from kimi"));
    let state = common::state_dir("deploy-alias");
    let file = std::path::Path::new(&state).join("exai.toml");
    let text = "[aliases]\ncoder = { models = [\"glm-4.6\", \"kimi-k2-0905-preview\"], strategy = \"least-busy\" }\n";
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    let mut env = glm_and_kimi(&glm, &kimi);
    env.insert("EXAI_CONFIG".into(), file.display().to_string());
    let d = common::start(&env, "deploy-alias").await;
    for i in 0..10 {
        let (status, _, body) = chat(&d, "coder", &format!("call {i}")).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!((chat_calls(&glm), chat_calls(&kimi)), (5, 5));
    // One provider rate limited: the alias's calls go to the other at once.
    always(&glm, || FakeReply::status(429).with_retry_after(30));
    for i in 0..6 {
        let (status, _, body) = chat(&d, "coder", &format!("limited {i}")).await;
        assert_eq!((status, content(&body)), (200, "from kimi"), "{body}");
    }
    assert_eq!(chat_calls(&glm), 6, "glm was called again while cooling");
}
