//! The response cache of gateway turns (`Session::chat`, what the MCP tools call), against the
//! fake upstream: a key created with `cache` has its turns cached while `cache.mode` is off —
//! with the keys in the SQLite file and in a real redis-server — and a hit is charged nothing
//! (a budget with room for one more paid call admits two hits), is in the ledger as `cached`
//! with what it saved, and answers a stream as one piece; `no-cache` asks afresh.

mod common;

use std::time::Duration;

use exai_core::testing::{FakeReply, FakeUpstream, RedisServer};
use exai_core::{
    CacheDirective, CacheStatus, ChatEvent, ChatRequest, Gateway, KeyLimits, KeyUpdate, Period, Session, SessionOptions,
};
use futures::StreamExt;

fn state_dir(tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("exai-cache-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.display().to_string()
}

async fn keyed(gateway: &Gateway, name: &str, limits: KeyLimits) -> anyhow::Result<Session> {
    let key = gateway.keys().create(name, limits).await?;
    let caller = gateway.authenticate(Some(&key.secret)).await?;
    Ok(gateway.open_session(SessionOptions::new("test").caller(caller)))
}

async fn a_key_with_cache_is_answered_from_it_and_charged_only_for_its_miss(
    gateway: &Gateway,
    fake: &FakeUpstream,
) -> anyhow::Result<()> {
    let ci = keyed(
        gateway,
        "ci",
        KeyLimits {
            period: Period::Day,
            cache: true,
            ..KeyLimits::default()
        },
    )
    .await?;
    let people = keyed(gateway, "people", KeyLimits::default()).await?;
    fake.push(FakeReply::text("paid once").with_usage(1_000_000, 1_000_000));
    let ask = || ChatRequest::new("the same question").model("glm-4.6");

    let first = ci.chat(ask()).await?;
    assert_eq!(first.cache, Some(CacheStatus::Miss));
    assert!(first.cost_usd > 0.1, "{}", first.cost_usd);
    // A budget with room for one more such call: were a hit charged, the second hit would be
    // refused.
    let budget = KeyUpdate {
        budget_usd: Some(Some(first.cost_usd * 1.5)),
        ..KeyUpdate::default()
    };
    gateway.keys().update("ci", budget).await?;
    let hit = ci.chat(ask()).await?;
    assert_eq!((hit.cache, hit.cost_usd), (Some(CacheStatus::Hit), 0.0));
    assert_eq!((hit.text.as_str(), hit.usage), ("paid once", first.usage));
    assert_ne!(hit.continuation_id, first.continuation_id, "a turn of its own");
    let again = ci.chat(ask()).await?;
    assert_eq!(
        again.cache,
        Some(CacheStatus::Hit),
        "within the budget: the hit cost nothing"
    );
    assert_eq!(fake.completed(), 1);

    // A stream is told the kept reply as one piece, then done.
    let mut stream = ci.chat_stream(ask()).await?;
    let mut pieces = Vec::new();
    while let Some(event) = stream.next().await {
        match event? {
            ChatEvent::Text(text) => pieces.push(text),
            ChatEvent::Done(done) => assert_eq!(done.cache, Some(CacheStatus::Hit)),
            _ => {}
        }
    }
    assert_eq!(pieces, ["paid once"]);

    // `no-cache` asks afresh (a miss, charged); a key without the cache never meets it.
    let fresh = ci.chat(ask().cache(CacheDirective::Refresh)).await?;
    assert_eq!(fresh.cache, Some(CacheStatus::Miss));
    let other = people.chat(ask()).await?;
    assert_eq!(other.cache, None, "the cache is off for a key without it");
    assert_eq!(fake.completed(), 3);

    tokio::time::sleep(Duration::from_millis(600)).await;
    let shown = gateway.keys().show("ci").await?;
    let paid = first.cost_usd + fresh.cost_usd;
    assert!((shown.spent_usd - paid).abs() < 1e-9, "{shown:?}");
    let rows = gateway.usage_by_key().await.today;
    let ci_row = rows
        .iter()
        .find(|r| r.key == "ci")
        .map(|r| r.usage.clone())
        .unwrap_or_default();
    assert_eq!((ci_row.requests, ci_row.cached), (2, 3), "{ci_row:?}");
    assert!((ci_row.saved_usd - 3.0 * first.cost_usd).abs() < 1e-6, "{ci_row:?}");
    let stats = gateway.cache_stats().await;
    assert_eq!((stats.hits, stats.misses, stats.entries), (3, 2, 1), "{stats:?}");
    Ok(())
}

#[tokio::test]
async fn a_key_with_cache_has_its_turns_cached_with_the_mode_off_sqlite() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let dir = state_dir("key-sqlite");
    let env = [("EXAI_MEMORY", "sqlite"), ("EXAI_STATE_DIR", dir.as_str())];
    let gateway = common::gateway(&fake, &["GLM"], &env).await;
    a_key_with_cache_is_answered_from_it_and_charged_only_for_its_miss(&gateway, &fake).await
}

#[tokio::test]
async fn a_key_with_cache_has_its_turns_cached_with_the_mode_off_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start();
    let fake = FakeUpstream::start().await?;
    let url = redis.url();
    let env = [("EXAI_MEMORY", "redis"), ("REDIS_URL", url.as_str())];
    let gateway = common::gateway(&fake, &["GLM"], &env).await;
    a_key_with_cache_is_answered_from_it_and_charged_only_for_its_miss(&gateway, &fake).await
}
