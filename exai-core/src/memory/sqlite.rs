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
//!
//! Kept responses (the Responses API) are written in groups, one transaction per flush:
//! `sqlite/responses.rs`.

mod responses;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use tokio_util::task::TaskTracker;

use super::db::Db;
use super::{LocalStore, MemoryError, MemoryStore, StoredResponse, Thread, ThreadSummary, Turn};
use crate::actors::session::now_ms;
use responses::Responses;

/// Conversations in a SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
    ttl: Duration,
    mirror: LocalStore,
    health: Arc<Health>,
    /// Drops the expired threads now and then.
    purge: Arc<Every>,
    /// Kept responses, written in groups.
    responses: Responses,
}

/// How often a process drops expired threads (and kept responses), on the back of a write.
const PURGE_EVERY_MS: u64 = 60_000;

impl SqliteStore {
    /// Opens (creating and migrating) the file at `path`; threads live `ttl` after their last
    /// save. Writes of kept responses run on a tracker of the store's own.
    pub fn open(path: &Path, ttl: Duration) -> Result<Self, MemoryError> {
        Self::open_tracked(path, ttl, TaskTracker::new())
    }

    /// [`SqliteStore::open`], its group writes run on `writes` (the gateway's, so `shutdown`
    /// waits for them).
    pub(crate) fn open_tracked(path: &Path, ttl: Duration, writes: TaskTracker) -> Result<Self, MemoryError> {
        Self::open_with_room(path, ttl, writes, responses::ROOM_BYTES)
    }

    /// [`SqliteStore::open_tracked`], with room for `room_bytes` of responses waiting to be
    /// written.
    fn open_with_room(path: &Path, ttl: Duration, writes: TaskTracker, room_bytes: usize) -> Result<Self, MemoryError> {
        let db = Db::open(path)?;
        let health = Arc::new(Health::new(path));
        let mirror = LocalStore::new(ttl);
        Ok(Self {
            responses: Responses::new(db.clone(), health.clone(), mirror.clone(), writes, room_bytes),
            db,
            ttl,
            mirror,
            health,
            purge: Arc::new(Every::new(PURGE_EVERY_MS)),
        })
    }

    /// The database, shared with the usage ledger.
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    fn note<T>(&self, op: &'static str, result: &Result<T, MemoryError>) {
        self.health.note(op, result);
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
        let purge = self.purge.due();
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
        self.responses.put(response).await
    }

    async fn get_response(&self, id: &str) -> Result<Option<StoredResponse>, MemoryError> {
        self.responses.get(id).await
    }

    async fn delete_response(&self, id: &str) -> Result<bool, MemoryError> {
        self.responses.delete(id).await
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

/// Whether the file works: a failure is counted, and logged when it starts a run of failures;
/// the first success after one is logged too.
struct Health {
    path: PathBuf,
    /// Whether the last operation failed.
    degraded: AtomicBool,
}

impl Health {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            degraded: AtomicBool::new(false),
        }
    }

    /// Notes how an operation went.
    fn note<T>(&self, op: &'static str, result: &Result<T, MemoryError>) {
        match result {
            Ok(_) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!(path = %self.path.display(), "the SQLite file works again");
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
}

/// A chore done on the back of a write at most once a period: the first write of the process,
/// then one a period (a scan on every write cost more than the write itself).
struct Every {
    period_ms: u64,
    /// When it was last due (ms since the epoch).
    last_ms: AtomicU64,
}

impl Every {
    fn new(period_ms: u64) -> Self {
        Self {
            period_ms,
            last_ms: AtomicU64::new(0),
        }
    }

    /// Whether this write should do the chore.
    fn due(&self) -> bool {
        self.due_at(now_ms())
    }

    /// Whether a write at `now` should do it (only one of the writes racing for it does).
    fn due_at(&self, now: u64) -> bool {
        let last = self.last_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= self.period_ms
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}
