//! API keys in the core, against the SQLite file and a real redis-server: who gets in, the
//! allow-lists, the budget reached and reset at its period's end (an injected clock), tokens per
//! minute, calls in flight, rotate and revoke — and only hashes in the store.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use exai_core::testing::{FakeReply, FakeUpstream, RedisServer};
use exai_core::{
    Caller, ChatRequest, Error, FailureKind, Gateway, KeyLimits, Period, Session, SessionOptions, ToolSuite,
};

/// A clock a test moves by hand.
#[derive(Clone)]
struct Clock(Arc<Mutex<SystemTime>>);

impl Clock {
    fn at(rfc3339: &str) -> Self {
        let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{e}"));
        Self(Arc::new(Mutex::new(t.into())))
    }

    fn advance(&self, by: Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }

    fn now(&self) -> SystemTime {
        self.0.lock().map(|t| *t).unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

fn state_dir(tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("exai-keys-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.display().to_string()
}

async fn gateway(fake: &FakeUpstream, extra: &[(&str, &str)], clock: &Clock) -> Gateway {
    let config = common::config(fake, &["GLM", "KIMI"], extra);
    let clock = clock.clone();
    Gateway::builder()
        .config(config)
        .clock(move || clock.now())
        .build()
        .await
        .unwrap_or_else(|e| panic!("gateway: {e}"))
}

fn sqlite(dir: &str) -> Vec<(&'static str, String)> {
    vec![("EXAI_MEMORY", "sqlite".into()), ("EXAI_STATE_DIR", dir.to_string())]
}

fn session(gateway: &Gateway, caller: Caller) -> Session {
    gateway.open_session(SessionOptions::new("test").caller(caller))
}

async fn caller(gateway: &Gateway, secret: &str) -> Caller {
    gateway
        .authenticate(Some(secret))
        .await
        .unwrap_or_else(|e| panic!("authenticate: {e}"))
}

/// Waits for the ledger's and meters' writes, which leave the request path.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(600)).await;
}

async fn budget_is_refused_then_resets(gateway: &Gateway, clock: &Clock, fake: &FakeUpstream) -> anyhow::Result<()> {
    let limits = KeyLimits {
        budget_usd: Some(0.5),
        period: Period::Day,
        ..KeyLimits::default()
    };
    let key = gateway.keys().create("alice", limits).await?;
    let alice = session(gateway, caller(gateway, &key.secret).await);
    // A million tokens in and out at glm-4.6's price: well past $0.50 in one call.
    fake.push(FakeReply::text("expensive").with_usage(1_000_000, 1_000_000));
    let first = alice.chat(ChatRequest::new("one").model("glm-4.6")).await?;
    assert!(first.cost_usd > 0.5, "{}", first.cost_usd);
    match alice.chat(ChatRequest::new("two").model("glm-4.6")).await {
        Err(e @ Error::BudgetExceeded { .. }) => {
            let message = e.to_string();
            for part in ["key alice", "$0.50 daily budget", "resets at 2026-11-26T00:00:00Z"] {
                assert!(message.contains(part), "{message}");
            }
            assert!(message.contains(&format!("${:.4}", first.cost_usd)), "{message}");
        }
        other => panic!("expected the budget refusal, got {other:?}"),
    }
    assert_eq!(fake.completed(), 1, "the refused call never reached the provider");
    settle().await;
    let shown = gateway.keys().show("alice").await?;
    assert_eq!(shown.remaining_usd, Some(0.0));
    assert!((shown.spent_usd - first.cost_usd).abs() < 1e-9, "{shown:?}");
    // The day ends: the budget is whole again.
    clock.advance(Duration::from_secs(3600));
    settle().await;
    let again = alice.chat(ChatRequest::new("three").model("glm-4.6")).await?;
    assert!(!again.text.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_budget_is_refused_with_its_message_and_resets_at_the_period_end_sqlite() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let clock = Clock::at("2026-11-25T23:30:00Z");
    let dir = state_dir("budget");
    let env = sqlite(&dir);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gateway = gateway(&fake, &env, &clock).await;
    budget_is_refused_then_resets(&gateway, &clock, &fake).await
}

#[tokio::test]
async fn a_budget_is_refused_with_its_message_and_resets_at_the_period_end_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start();
    let fake = FakeUpstream::start().await?;
    let clock = Clock::at("2026-11-25T23:30:00Z");
    let url = redis.url();
    let gateway = gateway(&fake, &[("EXAI_MEMORY", "redis"), ("REDIS_URL", &url)], &clock).await;
    budget_is_refused_then_resets(&gateway, &clock, &fake).await
}

#[tokio::test]
async fn who_gets_in_and_what_a_key_may_do() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let clock = Clock::at("2026-11-25T12:00:00Z");
    let dir = state_dir("who");
    let env = sqlite(&dir);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gateway = gateway(&fake, &env, &clock).await;

    // No key yet: open to anyone.
    let open = gateway.authenticate(None).await?;
    assert!(open.key_name().is_none() && !open.is_master());

    let limits = KeyLimits {
        models: Some(vec!["glm-4.6".into()]),
        tools: Some(vec!["chat".into(), "version".into()]),
        ..KeyLimits::default()
    };
    let bob = gateway.keys().create("bob", limits).await?;
    // Now a key is needed.
    for presented in [None, Some("sk-anything"), Some("exai-sk-not-a-real-key")] {
        match gateway.authenticate(presented).await {
            Err(Error::Unauthorized { .. }) => {}
            other => panic!("{presented:?} must be refused, got {other:?}"),
        }
    }
    let bob_session = session(&gateway, caller(&gateway, &bob.secret).await);

    match bob_session.chat(ChatRequest::new("hi").model("kimi")).await {
        Err(e @ Error::Forbidden { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("key bob") && m.contains("kimi") && m.contains("glm-4.6"),
                "{m}"
            );
        }
        other => panic!("expected forbidden, got {other:?}"),
    }
    // `auto` routes within the allow-list.
    let auto = bob_session.chat(ChatRequest::new("hi").model("auto")).await?;
    assert_eq!(auto.model, "glm-4.6");

    let tools = ToolSuite::new(gateway.clone());
    let refused = tools
        .call(&bob_session, "consensus", serde_json::json!({}), None)
        .await?;
    assert!(
        matches!(refused.failure.as_ref().map(|f| &f.kind), Some(FailureKind::Forbidden)),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("consensus"), "{}", refused.text);
    let allowed = tools.call(&bob_session, "version", serde_json::json!({}), None).await?;
    assert!(allowed.failure.is_none(), "{}", allowed.text);

    // Rotate: the old secret stops working, the session opened with it too.
    let rotated = gateway.keys().rotate("bob").await?;
    assert!(matches!(
        gateway.authenticate(Some(&bob.secret)).await,
        Err(Error::Unauthorized { .. })
    ));
    assert!(matches!(
        bob_session.chat(ChatRequest::new("hi").model("glm-4.6")).await,
        Err(Error::Unauthorized { .. })
    ));
    let bob_again = session(&gateway, caller(&gateway, &rotated.secret).await);
    bob_again.chat(ChatRequest::new("hi").model("glm-4.6")).await?;
    // Revoke: refused.
    gateway.keys().revoke("bob").await?;
    match gateway.authenticate(Some(&rotated.secret)).await {
        Err(e @ Error::Unauthorized { .. }) => assert_eq!(e.to_string(), unknown_key_answer(&gateway).await),
        other => panic!("expected revoked, got {other:?}"),
    }
    assert!(matches!(
        bob_again.chat(ChatRequest::new("hi")).await,
        Err(Error::Unauthorized { .. })
    ));

    // A key past its last day.
    let old = KeyLimits {
        expires: Some(exai_core::parse_date("2026-11-24").map_err(anyhow::Error::msg)?),
        ..KeyLimits::default()
    };
    let old = gateway.keys().create("old", old).await?;
    match gateway.authenticate(Some(&old.secret)).await {
        Err(e @ Error::Unauthorized { .. }) => assert_eq!(e.to_string(), unknown_key_answer(&gateway).await),
        other => panic!("expected expired, got {other:?}"),
    }

    // The file holds hashes, never a secret.
    let db = rusqlite::Connection::open(std::path::Path::new(&dir).join("exai.db"))?;
    let mut rows = db.prepare("SELECT name, hash, record FROM keys")?;
    let rows: Vec<(String, String, String)> = rows
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    assert_eq!(rows.len(), 2);
    let (_, hash, record) = &rows[0];
    for secret in [&bob.secret, &rotated.secret] {
        assert!(!record.contains(secret.as_str()) && hash != secret);
        assert!(!record.contains(&secret["exai-sk-".len()..]));
    }
    assert_eq!(hash.len(), 64);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
    Ok(())
}

#[tokio::test]
async fn tokens_per_minute_and_calls_in_flight_are_held_per_key() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let clock = Clock::at("2026-11-25T12:00:10Z");
    let dir = state_dir("tpm");
    let env = sqlite(&dir);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gateway = gateway(&fake, &env, &clock).await;
    let limits = KeyLimits {
        tpm: Some(100),
        max_inflight: Some(1),
        ..KeyLimits::default()
    };
    let carol = gateway.keys().create("carol", limits).await?;
    let other = gateway.keys().create("dave", KeyLimits::default()).await?;
    let carol = session(&gateway, caller(&gateway, &carol.secret).await);
    let dave = session(&gateway, caller(&gateway, &other.secret).await);

    // One call in flight at a time.
    fake.push(
        FakeReply::text("slow")
            .with_usage(10, 10)
            .with_delay(Duration::from_millis(800)),
    );
    let slow = {
        let carol = carol.clone();
        tokio::spawn(async move { carol.chat(ChatRequest::new("slow")).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    match carol.chat(ChatRequest::new("second")).await {
        Err(e @ Error::KeyLimited { .. }) => assert!(e.to_string().contains("1 calls in flight"), "{e}"),
        other => panic!("expected the in-flight limit, got {other:?}"),
    }
    dave.chat(ChatRequest::new("another key is not limited")).await?;
    slow.await??;

    // 100 tokens a minute: a call of 150 spends them.
    fake.push(FakeReply::text("big").with_usage(100, 50));
    carol.chat(ChatRequest::new("big")).await?;
    match carol.chat(ChatRequest::new("over")).await {
        Err(e @ Error::KeyLimited { .. }) => {
            assert!(e.to_string().contains("100 tokens per minute"), "{e}");
            assert!(e.retry_after().is_some_and(|d| d <= Duration::from_secs(50)), "{e:?}");
        }
        other => panic!("expected the token limit, got {other:?}"),
    }
    clock.advance(Duration::from_secs(60));
    settle().await;
    carol.chat(ChatRequest::new("next minute")).await?;

    // The ledger knows whose calls they were.
    settle().await;
    let by_key = gateway.usage_by_key().await;
    assert_eq!(by_key.backend, "sqlite");
    let requests = |key: &str| {
        by_key
            .all_time
            .iter()
            .filter(|r| r.key == key)
            .map(|r| r.usage.requests)
            .sum::<u64>()
    };
    assert_eq!((requests("carol"), requests("dave")), (3, 1));

    // The `status` tool shows the caller its own key and what it spent.
    let status = ToolSuite::new(gateway.clone())
        .call(&dave, "status", serde_json::json!({}), None)
        .await?;
    assert!(status.text.contains("your key: dave"), "{}", status.text);
    assert_eq!(status.structured["key"]["name"], "dave");
    Ok(())
}

/// What a made-up key is answered: a revoked or expired key gets the same.
async fn unknown_key_answer(gateway: &exai_core::Gateway) -> String {
    match gateway
        .authenticate(Some("exai-sk-made-up-000000000000000000000000"))
        .await
    {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a made-up key was accepted"),
    }
}
