//! Memory and the usage ledger in stores that outlive a process: a real redis-server (sharing,
//! restarts, Redis dying mid-run) and the SQLite file (kept responses outliving a short-lived
//! process).

mod common;

use std::time::Duration;

use exai_core::testing::FakeUpstream;
use exai_core::testing::RedisServer;
use exai_core::{ChatRequest, Gateway, WireReply, WireRequest};

async fn redis_gateway(fake: &FakeUpstream, redis: &RedisServer, prefix: &str) -> Gateway {
    let url = redis.url();
    common::gateway(
        fake,
        &["GLM"],
        &[
            ("REDIS_URL", url.as_str()),
            ("EXAI_MEMORY", "redis"),
            ("EXAI_REDIS_PREFIX", prefix),
        ],
    )
    .await
}

#[tokio::test]
async fn a_conversation_continues_in_another_process_sharing_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start();
    let fake = FakeUpstream::start().await?;
    let first_process = redis_gateway(&fake, &redis, "exai:").await;
    let first = first_process.chat(ChatRequest::new("remember: blue")).await?;
    first_process.shutdown().await;
    drop(first_process);

    let second_process = redis_gateway(&fake, &redis, "exai:").await;
    assert_eq!(second_process.memory_status().await.backend, "redis");
    let reply = second_process
        .chat(ChatRequest::new("what colour?").continuation(&first.continuation_id))
        .await?;
    assert!(reply.text.starts_with("echo (3 messages)"), "{}", reply.text);
    let listed = second_process.threads(5).await?;
    assert_eq!(listed.first().map(|t| t.turns), Some(4));
    assert_eq!(listed[0].preview, "remember: blue");
    Ok(())
}

#[tokio::test]
async fn usage_is_one_ledger_for_every_process_on_the_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start();
    let fake = FakeUpstream::start().await?;
    let a = redis_gateway(&fake, &redis, "exai:").await;
    let b = redis_gateway(&fake, &redis, "exai:").await;
    a.chat(ChatRequest::new("one")).await?;
    b.chat(ChatRequest::new("two")).await?;
    b.chat(ChatRequest::new("three")).await?;
    // Ledger writes leave the request path; give them a moment.
    let mut requests = 0;
    for _ in 0..50 {
        let report = a.usage().await;
        assert_eq!(report.backend, "redis");
        requests = report.all_time.iter().map(|r| r.requests).sum::<u64>();
        if requests == 3 {
            let today: u64 = report.today.iter().map(|r| r.requests).sum();
            assert_eq!(today, 3);
            let since_start: u64 = report.since_start.iter().map(|r| r.requests).sum();
            assert_eq!(since_start, 1, "this process made one call");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(requests, 3);
    Ok(())
}

#[tokio::test]
async fn requests_keep_working_when_redis_dies_mid_run_and_memory_recovers_when_it_returns() -> anyhow::Result<()> {
    let mut redis = RedisServer::start();
    let fake = FakeUpstream::start().await?;
    let gw = redis_gateway(&fake, &redis, "exai:").await;
    let first = gw.chat(ChatRequest::new("before the crash")).await?;

    redis.kill();
    let during = gw
        .chat(ChatRequest::new("during the outage").continuation(&first.continuation_id))
        .await?;
    assert!(
        during.text.starts_with("echo (3 messages)"),
        "history still there: {}",
        during.text
    );
    let fresh = gw.chat(ChatRequest::new("a new conversation")).await?;
    assert!(fresh.text.starts_with("echo (1 messages)"));
    let status = gw.memory_status().await;
    assert!(!status.reachable && status.error.is_some());

    redis.restart();
    let mut back = false;
    for _ in 0..100 {
        if gw.memory_status().await.reachable {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "reconnected to the restarted redis");
    let after = gw
        .chat(ChatRequest::new("after").continuation(&first.continuation_id))
        .await?;
    assert!(after.text.starts_with("echo (5 messages)"), "{}", after.text);
    // The whole thread, including the outage's turns, is in Redis again: a new process sees it.
    let other = redis_gateway(&fake, &redis, "exai:").await;
    let thread = other
        .thread(&first.continuation_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("not in redis"))?;
    assert_eq!(thread.turns.len(), 6);
    Ok(())
}

#[tokio::test]
async fn conversations_expire_with_their_ttl() -> anyhow::Result<()> {
    let redis = RedisServer::start();
    let fake = FakeUpstream::start().await?;
    let url = redis.url();
    let gw = common::gateway(
        &fake,
        &["GLM"],
        &[
            ("REDIS_URL", url.as_str()),
            ("EXAI_MEMORY", "redis"),
            ("EXAI_MEMORY_TTL_SECS", "1"),
        ],
    )
    .await;
    let first = gw.chat(ChatRequest::new("short-lived")).await?;
    let other = common::gateway(
        &fake,
        &["GLM"],
        &[("REDIS_URL", url.as_str()), ("EXAI_MEMORY", "redis")],
    )
    .await;
    assert!(other.thread(&first.continuation_id).await?.is_some());
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert!(other.thread(&first.continuation_id).await?.is_none());
    assert!(other.threads(10).await?.is_empty(), "expired threads leave the listing");
    Ok(())
}

#[tokio::test]
async fn the_in_process_store_keeps_at_most_max_turns() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = common::gateway(&fake, &["GLM"], &[("EXAI_MAX_TURNS", "4")]).await;
    let first = gw.chat(ChatRequest::new("1")).await?;
    for i in 2..=4 {
        gw.chat(ChatRequest::new(i.to_string()).continuation(&first.continuation_id))
            .await?;
    }
    let thread = gw
        .thread(&first.continuation_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("gone"))?;
    let contents: Vec<_> = thread
        .turns
        .iter()
        .map(|t| t.content.chars().take(8).collect::<String>())
        .collect();
    assert_eq!(thread.turns.len(), 4);
    assert_eq!(contents[0], "3");
    assert_eq!(gw.memory_status().await.backend, "local");
    Ok(())
}

#[tokio::test]
async fn responses_kept_by_a_short_lived_process_are_all_in_the_sqlite_file() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let dir = std::env::temp_dir().join(format!("exai-memory-short-lived-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.to_string_lossy().to_string();
    let process = common::gateway(
        &fake,
        &["GLM"],
        // Limits of its own: shared ones would wait for the file too.
        &[
            ("EXAI_MEMORY", "sqlite"),
            ("EXAI_STATE_DIR", state.as_str()),
            ("EXAI_SHARED_LIMITS", "false"),
        ],
    )
    .await;
    let file = dir.join("exai.db");
    // Another process holds the file's write lock: every write of this one waits.
    let lock = rusqlite::Connection::open(&file)?;
    lock.execute_batch("BEGIN IMMEDIATE")?;
    let session = process.session("test");
    let mut ids = Vec::new();
    for n in 0..20 {
        let body = serde_json::json!({"model": "glm-4.6", "input": format!("question {n}")});
        let reply = session.relay(WireRequest::responses(body.to_string())?).await?;
        let WireReply::Whole { body, .. } = reply else {
            anyhow::bail!("a whole reply was asked for")
        };
        let reply: serde_json::Value = serde_json::from_slice(&body)?;
        ids.push(reply["id"].as_str().unwrap_or_default().to_string());
    }
    drop(session);
    let shutdown = tokio::spawn(async move { process.shutdown().await });
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    assert!(!shutdown.is_finished(), "shutdown waits for the writes");
    drop(lock);
    shutdown.await?;

    // Read at once, as the next process would: nothing of the first one runs any more.
    let file = rusqlite::Connection::open(&file)?;
    let mut kept = file.prepare("SELECT count(*) FROM responses WHERE id = ?1")?;
    for id in &ids {
        let count: i64 = kept.query_row([id], |r| r.get(0))?;
        assert_eq!(count, 1, "{id} was not written before the process ended");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_deleted_before_its_write_landed_stays_deleted() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let dir = std::env::temp_dir().join(format!("exai-memory-delete-early-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.to_string_lossy().to_string();
    let process = common::gateway(
        &fake,
        &["GLM"],
        &[("EXAI_MEMORY", "sqlite"), ("EXAI_STATE_DIR", state.as_str())],
    )
    .await;
    let session = process.session("test");
    let mut ids = Vec::new();
    // Deleted the moment each reply is in: the task writing it may not have run yet.
    for n in 0..50 {
        let body = serde_json::json!({"model": "glm-4.6", "input": format!("keep, then forget {n}")});
        let reply = session.relay(WireRequest::responses(body.to_string())?).await?;
        let WireReply::Whole { body, .. } = reply else {
            anyhow::bail!("a whole reply was asked for")
        };
        let id = serde_json::from_slice::<serde_json::Value>(&body)?["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        session.delete_stored_response(&id).await?;
        ids.push(id);
    }
    drop(session);
    process.shutdown().await;

    let file = rusqlite::Connection::open(dir.join("exai.db"))?;
    let mut kept = file.prepare("SELECT count(*) FROM responses WHERE id = ?1")?;
    for id in &ids {
        let count: i64 = kept.query_row([id], |r| r.get(0))?;
        assert_eq!(count, 0, "the write that came after the DELETE brought {id} back");
    }
    Ok(())
}
