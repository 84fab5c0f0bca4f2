//! The SQLite store's kept responses against real files: group writes that a second store on
//! the file reads, reads before the write, the bound on what waits to be written, deletions,
//! and the sweep of expired rows through its index.

use std::path::{Path, PathBuf};

use super::*;

const TTL: Duration = Duration::from_secs(3600);

/// A fresh file for one test.
fn file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exai-sqlite-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("exai.db")
}

fn response(id: &str, expires_ms: u64) -> StoredResponse {
    StoredResponse {
        id: id.to_string(),
        owner: Some("alice".to_string()),
        expires_ms,
        response: serde_json::json!({"id": id, "object": "response", "output": []}),
        items: vec![serde_json::json!({"role": "user", "content": "ping"})],
    }
}

fn in_an_hour() -> u64 {
    now_ms() + 3_600_000
}

/// Another connection holding the file's write lock until dropped: the store's writes wait.
fn write_lock(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    Ok(conn)
}

/// The ids in the file's table, expired or not.
fn rows_in_file(path: &Path) -> rusqlite::Result<Vec<String>> {
    let conn = rusqlite::Connection::open(path)?;
    let mut select = conn.prepare("SELECT id FROM responses ORDER BY id")?;
    select.query_map([], |r| r.get(0))?.collect()
}

#[tokio::test]
async fn many_puts_at_once_share_transactions_and_a_second_store_reads_them_all() -> anyhow::Result<()> {
    let path = file("many");
    let store = SqliteStore::open(&path, TTL)?;
    let ids: Vec<String> = (0..500).map(|n| format!("resp_{n:03}")).collect();
    let puts: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, response) = (store.clone(), response(id, in_an_hour()));
            tokio::spawn(async move { store.put_response(&response).await })
        })
        .collect();
    for put in puts {
        put.await??;
    }
    let batches = store.responses.batches_written();
    assert!(batches < 50, "500 puts at once took {batches} transactions");

    let other = SqliteStore::open(&path, TTL)?;
    for id in &ids {
        let found = other.get_response(id).await?;
        assert_eq!(found.map(|r| r.owner), Some(Some("alice".to_string())), "{id}");
    }
    Ok(())
}

#[tokio::test]
async fn a_response_is_read_back_before_its_write_reaches_the_file() -> anyhow::Result<()> {
    let path = file("early");
    let store = SqliteStore::open(&path, TTL)?;
    let other = SqliteStore::open(&path, TTL)?;
    let lock = write_lock(&path)?;
    let put = {
        let store = store.clone();
        tokio::spawn(async move { store.put_response(&response("resp_early", in_an_hour())).await })
    };
    while store.responses.rows_batched() == 0 {
        tokio::task::yield_now().await;
    }
    assert!(
        store.get_response("resp_early").await?.is_some(),
        "answered from the batch"
    );
    assert!(other.get_response("resp_early").await?.is_none(), "not in the file yet");
    assert!(!put.is_finished(), "the put returns once written");

    drop(lock);
    put.await??;
    assert!(
        other.get_response("resp_early").await?.is_some(),
        "in the file once written"
    );
    Ok(())
}

#[tokio::test]
async fn puts_wait_for_room_when_the_file_does_not_keep_up() -> anyhow::Result<()> {
    let path = file("room");
    let ids: Vec<String> = (0..10).map(|n| format!("resp_{n:02}")).collect();
    let weight = ids[0].len() + serde_json::to_string(&response(&ids[0], in_an_hour()))?.len() + 128;
    // Room for two rows and a half.
    let store = SqliteStore::open_with_room(&path, TTL, TaskTracker::new(), 2 * weight + weight / 2)?;
    let lock = write_lock(&path)?;
    let puts: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, response) = (store.clone(), response(id, in_an_hour()));
            tokio::spawn(async move { store.put_response(&response).await })
        })
        .collect();
    while store.responses.rows_batched() < 2 {
        tokio::task::yield_now().await;
    }
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    assert_eq!(store.responses.rows_batched(), 2, "the others wait for room");
    assert!(puts.iter().all(|p| !p.is_finished()));

    drop(lock);
    for put in puts {
        put.await??;
    }
    let other = SqliteStore::open(&path, TTL)?;
    for id in &ids {
        assert!(other.get_response(id).await?.is_some(), "{id}");
    }
    Ok(())
}

#[tokio::test]
async fn the_write_tracker_waits_for_a_put_its_caller_gave_up_on() -> anyhow::Result<()> {
    let path = file("tracked");
    let writes = TaskTracker::new();
    let store = SqliteStore::open_tracked(&path, TTL, writes.clone())?;
    let lock = write_lock(&path)?;
    let put = {
        let store = store.clone();
        tokio::spawn(async move { store.put_response(&response("resp_orphan", in_an_hour())).await })
    };
    while store.responses.rows_batched() == 0 {
        tokio::task::yield_now().await;
    }
    put.abort();
    writes.close();
    let shutdown = tokio::spawn(async move { writes.wait().await });
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    assert!(!shutdown.is_finished(), "the write is still under way");

    drop(lock);
    shutdown.await?;
    assert_eq!(rows_in_file(&path)?, ["resp_orphan"]);
    Ok(())
}

#[tokio::test]
async fn a_deleted_response_is_gone_for_every_store_on_the_file() -> anyhow::Result<()> {
    let path = file("delete");
    let (store, other) = (SqliteStore::open(&path, TTL)?, SqliteStore::open(&path, TTL)?);
    store.put_response(&response("resp_gone", in_an_hour())).await?;
    assert!(other.get_response("resp_gone").await?.is_some());
    assert!(other.delete_response("resp_gone").await?, "there was one");
    assert!(!other.delete_response("resp_gone").await?, "no longer");
    assert!(store.get_response("resp_gone").await?.is_none());
    assert!(rows_in_file(&path)?.is_empty());
    Ok(())
}

#[tokio::test]
async fn expired_responses_are_swept_by_a_later_process() -> anyhow::Result<()> {
    let path = file("sweep");
    let first = SqliteStore::open(&path, TTL)?;
    first.put_response(&response("resp_old", now_ms() - 1_000)).await?;
    first.put_response(&response("resp_live", in_an_hour())).await?;
    assert_eq!(
        rows_in_file(&path)?,
        ["resp_live", "resp_old"],
        "written, expired or not"
    );
    assert!(
        first.get_response("resp_old").await?.is_none(),
        "an expired one is not answered"
    );

    // A process's first write sweeps.
    let second = SqliteStore::open(&path, TTL)?;
    second.put_response(&response("resp_new", in_an_hour())).await?;
    assert_eq!(rows_in_file(&path)?, ["resp_live", "resp_new"]);
    Ok(())
}

#[test]
fn the_sweep_reads_the_expiry_index() -> anyhow::Result<()> {
    let path = file("plan");
    drop(SqliteStore::open(&path, TTL)?);
    let conn = rusqlite::Connection::open(&path)?;
    let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", responses::SWEEP))?;
    let plan: Vec<String> = explain
        .query_map([now_ms() as i64], |r| r.get::<_, String>(3))?
        .collect::<rusqlite::Result<_>>()?;
    assert!(plan.iter().any(|step| step.contains("responses_expires")), "{plan:?}");
    Ok(())
}

#[test]
fn a_periodic_chore_is_due_at_the_first_write_then_once_a_period() {
    let every = Every::new(60_000);
    let start = 1_000_000;
    assert!(every.due_at(start));
    assert!(!every.due_at(start + 1));
    assert!(!every.due_at(start + 59_999));
    assert!(every.due_at(start + 60_000));
    assert!(!every.due_at(start + 60_001));
}
