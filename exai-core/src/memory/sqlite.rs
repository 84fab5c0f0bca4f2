//! The SQLite store: the durable default when no Redis is configured. Conversations outlive the
//! process and are shared by every exai process on the machine (`exai chat --continue` in a new
//! shell, two editors' exai-stdio, a daemon) with the Redis store's semantics: the lifetime is
//! refreshed on every save, `max_turns` kept, listings newest first, expired threads purged.
//!
//! A turn is a row, and [`MemoryStore::append`] adds a call's turns in one immediate
//! transaction, so processes writing to one conversation at once lose no turn. Like the Redis
//! store, every thread is mirrored in process: when the file fails mid-run (removed, made
//! read-only, disk full) the failure is logged once and counted, and conversations carry on in
//! memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::db::Db;
use super::{LocalStore, MemoryError, MemoryStore, StoredResponse, Thread, ThreadSummary, Turn};
use crate::actors::session::now_ms;

/// Conversations in a SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
    ttl: Duration,
    mirror: LocalStore,
    /// Whether the last operation failed (so a failure is logged once, and a recovery once).
    degraded: Arc<AtomicBool>,
    /// When this process last dropped the expired threads (ms since the epoch).
    purged_ms: Arc<AtomicU64>,
}

/// How often a process drops expired threads, on the back of a write.
const PURGE_EVERY_MS: u64 = 60_000;

impl SqliteStore {
    /// Opens (creating and migrating) the file at `path`; threads live `ttl` after their last
    /// save.
    pub fn open(path: &std::path::Path, ttl: Duration) -> Result<Self, MemoryError> {
        Ok(Self {
            db: Db::open(path)?,
            ttl,
            mirror: LocalStore::new(ttl),
            degraded: Arc::default(),
            purged_ms: Arc::default(),
        })
    }

    /// Whether this write should also drop the expired threads: the first write of the process,
    /// then one a minute (a scan on every write cost more than the write itself).
    fn purge_due(&self) -> bool {
        let (now, last) = (now_ms(), self.purged_ms.load(Ordering::Relaxed));
        now.saturating_sub(last) >= PURGE_EVERY_MS
            && self
                .purged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// The database, shared with the usage ledger.
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Notes how an operation went: a failure is counted, and logged when it starts a run of
    /// failures; the first success after one is logged too.
    fn note<T>(&self, op: &'static str, result: &Result<T, MemoryError>) {
        match result {
            Ok(_) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!(path = %self.db.path().display(), "the SQLite file works again");
                }
            }
            Err(e) => {
                metrics::counter!("exai_memory_errors_total", "op" => op).increment(1);
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "SQLite failed; conversations continue in process memory");
                }
            }
        }
    }

    /// Writes `turns` to the mirror and the file (`thread`'s own turns are the mirror's base
    /// when appending); a file failure is logged and counted, not fatal — the mirror has them.
    async fn write(
        &self,
        op: &'static str,
        thread: &Thread,
        turns: &[Turn],
        mode: Turns,
        max_turns: usize,
    ) -> Result<(), MemoryError> {
        let mut mirrored = Thread {
            turns: match mode {
                Turns::Append => thread.turns.clone(),
                Turns::Replace => Vec::new(),
            },
            ..thread.clone()
        };
        mirrored.turns.extend_from_slice(turns);
        mirrored.trim(max_turns);
        self.mirror.save(&mirrored).await?;
        let head = Thread {
            turns: Vec::new(),
            ..thread.clone()
        };
        let json = to_json(turns)?;
        let expires = thread.updated_ms + self.ttl.as_millis() as u64;
        let purge = self.purge_due();
        let result = self
            .db
            .call(op, move |conn| {
                write_turns(conn, &head, &json, mode, max_turns, expires, purge)
            })
            .await;
        self.note(op, &result);
        Ok(())
    }

    async fn load_db(&self, id: &str) -> Result<Option<Thread>, MemoryError> {
        let id = id.to_string();
        self.db.call("load", move |conn| load_thread(conn, &id, now_ms())).await
    }
}

/// Reads a thread that has not expired, its turns in order.
fn load_thread(conn: &rusqlite::Connection, id: &str, now: u64) -> rusqlite::Result<Option<Thread>> {
    let head = conn
        .query_row(
            "SELECT parent, tool, created_ms, updated_ms, owner FROM threads WHERE id = ?1 AND expires_ms > ?2",
            params![id, now as i64],
            |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((parent, tool, created_ms, updated_ms, owner)) = head else {
        return Ok(None);
    };
    let mut statement = conn.prepare_cached("SELECT turn FROM turns WHERE thread_id = ?1 ORDER BY seq")?;
    let turns = statement
        .query_map(params![id], |r| r.get::<_, String>(0))?
        .map(|json| {
            json.and_then(|j| {
                serde_json::from_str::<Turn>(&j)
                    .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
            })
        })
        .collect::<rusqlite::Result<Vec<Turn>>>()?;
    Ok(Some(Thread {
        id: id.to_string(),
        parent,
        tool,
        owner,
        created_ms: created_ms as u64,
        updated_ms: updated_ms as u64,
        turns,
    }))
}

/// How a write treats the turns already stored.
#[derive(Clone, Copy)]
enum Turns {
    /// Keeps them and adds the new ones after (a call's turns).
    Append,
    /// Drops them first (a whole thread saved).
    Replace,
}

/// Writes `thread`'s row (new, or its times refreshed) and `turns`, keeping the newest
/// `max_turns`; with `purge`, drops the threads that expired. One immediate transaction, of
/// statements prepared once per connection.
fn write_turns(
    conn: &mut rusqlite::Connection,
    thread: &Thread,
    turns: &[String],
    mode: Turns,
    max_turns: usize,
    expires_ms: u64,
    purge: bool,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let now = now_ms() as i64;
    if purge {
        tx.prepare_cached("DELETE FROM threads WHERE expires_ms <= ?1")?
            .execute(params![now])?;
    }
    if let Turns::Replace = mode {
        tx.prepare_cached("DELETE FROM turns WHERE thread_id = ?1")?
            .execute(params![thread.id])?;
    }
    tx.prepare_cached(
        "INSERT INTO threads (id, parent, tool, created_ms, updated_ms, expires_ms, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(id) DO UPDATE SET updated_ms = excluded.updated_ms, expires_ms = excluded.expires_ms",
    )?
    .execute(params![
        thread.id,
        thread.parent,
        thread.tool,
        thread.created_ms as i64,
        thread.updated_ms as i64,
        expires_ms as i64,
        thread.owner
    ])?;
    {
        let mut insert = tx.prepare_cached("INSERT INTO turns (thread_id, turn) VALUES (?1, ?2)")?;
        for turn in turns {
            insert.execute(params![thread.id, turn])?;
        }
    }
    tx.prepare_cached(
        "DELETE FROM turns WHERE thread_id = ?1 AND seq NOT IN
             (SELECT seq FROM turns WHERE thread_id = ?1 ORDER BY seq DESC LIMIT ?2)",
    )?
    .execute(params![thread.id, max_turns as i64])?;
    tx.commit()
}

fn to_json(turns: &[Turn]) -> Result<Vec<String>, MemoryError> {
    turns
        .iter()
        .map(|t| {
            serde_json::to_string(t).map_err(|e| MemoryError::Corrupt {
                id: String::new(),
                message: e.to_string(),
            })
        })
        .collect()
}

#[async_trait]
impl MemoryStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn load(&self, id: &str) -> Result<Option<Thread>, MemoryError> {
        let result = self.load_db(id).await;
        self.note("load", &result);
        match result {
            Ok(Some(thread)) => Ok(Some(thread)),
            // Not in the file, or the file failed: a thread written while it failed is here.
            Ok(None) | Err(_) => self.mirror.load(id).await,
        }
    }

    async fn save(&self, thread: &Thread) -> Result<(), MemoryError> {
        let kept = thread.turns.len().max(1);
        self.write("save", thread, &thread.turns, Turns::Replace, kept).await
    }

    async fn append(&self, thread: &Thread, turns: &[Turn], max_turns: usize) -> Result<(), MemoryError> {
        self.write("append", thread, turns, Turns::Append, max_turns).await
    }

    async fn list(&self, limit: usize) -> Result<Vec<ThreadSummary>, MemoryError> {
        let result = self
            .db
            .call("list", move |conn| {
                let now = now_ms();
                let ids = conn
                    .prepare_cached(
                        "SELECT id FROM threads WHERE expires_ms > ?1 ORDER BY updated_ms DESC, rowid DESC LIMIT ?2",
                    )?
                    .query_map(params![now as i64, limit as i64], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                let mut out = Vec::new();
                for id in ids {
                    if let Some(thread) = load_thread(conn, &id, now)? {
                        out.push(thread.summary());
                    }
                }
                Ok(out)
            })
            .await;
        self.note("list", &result);
        match result {
            Ok(list) => Ok(list),
            Err(_) => self.mirror.list(limit).await,
        }
    }

    async fn put_response(&self, response: &StoredResponse) -> Result<(), MemoryError> {
        self.mirror.put_response(response).await?;
        let body = corrupt_if_err(&response.id, serde_json::to_string(response))?;
        let (id, expires) = (response.id.clone(), response.expires_ms as i64);
        let result = self
            .db
            .call("put_response", move |conn| {
                conn.execute(
                    "INSERT OR REPLACE INTO responses (id, expires_ms, body) VALUES (?1, ?2, ?3)",
                    params![id, expires, body],
                )?;
                conn.execute("DELETE FROM responses WHERE expires_ms <= ?1", params![now_ms() as i64])?;
                Ok(())
            })
            .await;
        self.note("put_response", &result);
        // The mirror has it when the file failed.
        Ok(())
    }

    async fn get_response(&self, id: &str) -> Result<Option<StoredResponse>, MemoryError> {
        let key = id.to_string();
        let result = self
            .db
            .call("get_response", move |conn| {
                conn.query_row(
                    "SELECT body FROM responses WHERE id = ?1 AND expires_ms > ?2",
                    params![key, now_ms() as i64],
                    |r| r.get::<_, String>(0),
                )
                .optional()
            })
            .await;
        self.note("get_response", &result);
        match result {
            Ok(Some(body)) => corrupt_if_err(id, serde_json::from_str(&body)).map(Some),
            Ok(None) | Err(_) => self.mirror.get_response(id).await,
        }
    }

    async fn delete_response(&self, id: &str) -> Result<bool, MemoryError> {
        let mirrored = self.mirror.delete_response(id).await?;
        let key = id.to_string();
        let result = self
            .db
            .call("delete_response", move |conn| {
                conn.execute(
                    "DELETE FROM responses WHERE id = ?1 AND expires_ms > ?2",
                    params![key, now_ms() as i64],
                )
            })
            .await;
        self.note("delete_response", &result);
        Ok(result.map_or(mirrored, |n| n > 0 || mirrored))
    }

    async fn ping(&self) -> Result<(), MemoryError> {
        self.db
            .call("ping", |conn| {
                conn.query_row("SELECT count(*) FROM threads", [], |_| Ok(()))
            })
            .await
    }

    async fn probe(&self) -> Result<(), MemoryError> {
        // A write, so a file that became read-only is found out.
        self.db
            .call("probe", |conn| {
                conn.execute_batch(
                    "BEGIN IMMEDIATE; INSERT INTO usage (day, provider, model) VALUES ('probe', '', ''); ROLLBACK;",
                )
            })
            .await
    }
}

/// A stored response that could not be written or read back as JSON.
fn corrupt_if_err<T>(id: &str, result: serde_json::Result<T>) -> Result<T, MemoryError> {
    result.map_err(|e| MemoryError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    })
}
