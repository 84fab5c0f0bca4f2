//! Kept responses (the Responses API's `store: true`) in the SQLite file, written in groups.
//!
//! A put joins the pending batch and waits until that batch is committed. One flush at a time
//! takes the pending batch and writes it in a single transaction; puts that arrive while it
//! writes make up the next one. An idle daemon so writes each response at once, and a busy one
//! one transaction (and one hop to the blocking pool) per flush instead of one per call — under
//! load the per-call writes queued up faster than they drained, each holding its response. The
//! flush runs on the gateway's write tracker, so `shutdown` waits for it.
//!
//! - Read-your-writes: until its batch is committed, a response (or its deletion) is answered
//!   from the batch — the pending one, or the one being written.
//! - Bounded: the rows pending or being written weigh at most [`ROOM_BYTES`]; a put that finds
//!   no room waits for a flush to make some (backpressure) rather than queue without limit.
//! - A flush the file refused leaves its responses in the in-process mirror (bounded in bytes,
//!   `local.rs`), which answers for them while the file fails.
//! - Expired rows are swept at most once a minute, in a flush, through the index on
//!   `expires_ms` (migration 7).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{OptionalExtension, params};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::task::TaskTracker;

use super::{Every, Health, PURGE_EVERY_MS};
use crate::actors::session::now_ms;
use crate::memory::db::Db;
use crate::memory::{LocalStore, MemoryError, MemoryStore, StoredResponse};

/// Bytes of responses pending or being written at most; a put beyond waits.
pub(super) const ROOM_BYTES: usize = 16 << 20;

/// What a row weighs beyond its id and JSON (its map entry, its permit).
const ROW_BYTES: usize = 128;

/// Drops the expired responses (of every process) — through `responses_expires`.
pub(super) const SWEEP: &str = "DELETE FROM responses WHERE expires_ms <= ?1";

/// What a batch does to one id; the last thing asked of it wins.
enum Row {
    /// Keeps this JSON until `expires_ms`.
    Put {
        expires_ms: u64,
        body: Arc<str>,
        _room: OwnedSemaphorePermit,
    },
    /// Deletes it.
    Delete { _room: OwnedSemaphorePermit },
}

type Rows = HashMap<String, Row>;

/// The batch filling and the batch being written.
#[derive(Default)]
struct Batches {
    pending: Rows,
    /// Being written now (`None` between flushes): it still answers reads until committed.
    writing: Option<Arc<Rows>>,
    /// Whether a flush is on its way, so one runs at a time.
    flushing: bool,
    /// How many batches were taken to be written; the pending one is the next.
    taken: u64,
}

/// Kept responses in the SQLite file. Cheap to clone.
#[derive(Clone)]
pub(super) struct Responses {
    shared: Arc<Shared>,
}

struct Shared {
    db: Db,
    health: Arc<Health>,
    /// Responses whose flush failed.
    mirror: LocalStore,
    /// Where flushes run (the gateway's tracker, so `shutdown` waits for them).
    writes: TaskTracker,
    batches: Mutex<Batches>,
    /// Bytes of room for rows: a row holds its weight until its batch is written.
    room: Arc<Semaphore>,
    room_bytes: usize,
    /// How many batches were written (committed, or given up on): a put waits for its own.
    written: watch::Sender<u64>,
    sweep: Every,
}

impl Responses {
    pub fn new(db: Db, health: Arc<Health>, mirror: LocalStore, writes: TaskTracker, room_bytes: usize) -> Self {
        let room_bytes = room_bytes.clamp(1, u32::MAX as usize);
        Self {
            shared: Arc::new(Shared {
                db,
                health,
                mirror,
                writes,
                batches: Mutex::default(),
                room: Arc::new(Semaphore::new(room_bytes)),
                room_bytes,
                written: watch::Sender::new(0),
                sweep: Every::new(PURGE_EVERY_MS),
            }),
        }
    }

    /// Keeps `response`: returns once its batch is written (or, the file failing, mirrored).
    pub async fn put(&self, response: &StoredResponse) -> Result<(), MemoryError> {
        let body: Arc<str> = corrupt_if_err(&response.id, serde_json::to_string(response))?.into();
        let room = self.room(response.id.len() + body.len()).await?;
        let row = Row::Put {
            expires_ms: response.expires_ms,
            body,
            _room: room,
        };
        self.write(response.id.clone(), row).await
    }

    /// A kept response, unless it expired or was deleted: the batches' word first, then the
    /// file's, then the mirror's (a response whose write failed).
    pub async fn get(&self, id: &str) -> Result<Option<StoredResponse>, MemoryError> {
        if let Some(batched) = self.batched(id) {
            return batched.map(|body| parse(id, &body)).transpose();
        }
        let key = id.to_string();
        let read = self
            .shared
            .db
            .call("get_response", move |conn| select(conn, &key))
            .await;
        self.shared.health.note("get_response", &read);
        match read {
            Ok(Some(body)) => parse(id, &body).map(Some),
            Ok(None) | Err(_) => self.shared.mirror.get_response(id).await,
        }
    }

    /// Deletes a kept response; whether there was one. Returns once the deletion is written.
    pub async fn delete(&self, id: &str) -> Result<bool, MemoryError> {
        let live = match self.batched(id) {
            Some(batched) => batched.is_some(),
            None => self.stored(id).await?,
        };
        let room = self.room(id.len()).await?;
        self.write(id.to_string(), Row::Delete { _room: room }).await?;
        Ok(live)
    }

    /// What the batches say of `id`: nothing (`None`), deleted or expired (`Some(None)`), or its
    /// JSON.
    fn batched(&self, id: &str) -> Option<Option<Arc<str>>> {
        let batches = self.lock();
        let row = batches
            .pending
            .get(id)
            .or_else(|| batches.writing.as_deref().and_then(|w| w.get(id)))?;
        Some(match row {
            Row::Put { expires_ms, body, .. } if *expires_ms > now_ms() => Some(body.clone()),
            Row::Put { .. } | Row::Delete { .. } => None,
        })
    }

    /// Whether the file (or, failing it, the mirror) keeps a live response `id`.
    async fn stored(&self, id: &str) -> Result<bool, MemoryError> {
        let key = id.to_string();
        let read = self
            .shared
            .db
            .call("delete_response", move |conn| {
                conn.prepare_cached("SELECT 1 FROM responses WHERE id = ?1 AND expires_ms > ?2")?
                    .exists(params![key, now_ms() as i64])
            })
            .await;
        self.shared.health.note("delete_response", &read);
        match read {
            Ok(true) => Ok(true),
            Ok(false) | Err(_) => Ok(self.shared.mirror.get_response(id).await?.is_some()),
        }
    }

    /// Room for a row of `bytes`, waiting for a flush to make some. A row heavier than all the
    /// room takes all of it, and is written alone.
    async fn room(&self, bytes: usize) -> Result<OwnedSemaphorePermit, MemoryError> {
        let weight = (bytes + ROW_BYTES).min(self.shared.room_bytes);
        let weight = u32::try_from(weight).unwrap_or(u32::MAX);
        self.shared
            .room
            .clone()
            .acquire_many_owned(weight)
            .await
            .map_err(|_| MemoryError::Sqlite {
                path: self.shared.db.path().display().to_string(),
                op: "put_response",
                message: "the store is closed".to_string(),
            })
    }

    /// Adds `row` to the pending batch, starts a flush unless one is on its way, and waits until
    /// the batch is written.
    async fn write(&self, id: String, row: Row) -> Result<(), MemoryError> {
        let (batch, start) = {
            let mut batches = self.lock();
            batches.pending.insert(id, row);
            let start = !std::mem::replace(&mut batches.flushing, true);
            (batches.taken + 1, start)
        };
        if start {
            self.shared.writes.spawn(self.clone().flush());
        }
        let mut written = self.shared.written.subscribe();
        // The sender lives as long as `self`: the wait ends with the batch.
        let _ = written.wait_for(|n| *n >= batch).await;
        Ok(())
    }

    /// Writes batches until none is pending.
    async fn flush(self) {
        loop {
            let (rows, batch) = {
                let mut batches = self.lock();
                if batches.pending.is_empty() {
                    batches.flushing = false;
                    return;
                }
                let rows = Arc::new(std::mem::take(&mut batches.pending));
                batches.writing = Some(rows.clone());
                batches.taken += 1;
                (rows, batches.taken)
            };
            let sweep = self.shared.sweep.due();
            let to_write = rows.clone();
            let written = self
                .shared
                .db
                .call("put_response", move |conn| write(conn, &to_write, sweep))
                .await;
            self.shared.health.note("put_response", &written);
            self.settle(&rows, written.is_ok()).await;
            self.lock().writing = None;
            // The last hold on the rows: their room is free again.
            drop(rows);
            self.shared.written.send_replace(batch);
        }
    }

    /// Brings the mirror in line with a written batch: deleted ids leave it, and when the file
    /// refused the batch, its responses go in.
    async fn settle(&self, rows: &Rows, committed: bool) {
        let mirror = &self.shared.mirror;
        for (id, row) in rows {
            match row {
                Row::Delete { .. } => {
                    let _ = mirror.delete_response(id).await;
                }
                Row::Put { body, .. } if !committed => {
                    if let Ok(response) = parse(id, body) {
                        let _ = mirror.put_response(&response).await;
                    }
                }
                Row::Put { .. } => {}
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Batches> {
        self.shared.batches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many batches were written (for tests: one per flush).
    #[cfg(test)]
    pub fn batches_written(&self) -> u64 {
        *self.shared.written.borrow()
    }

    /// How many rows the batches hold (for tests: never more than fit in the room).
    #[cfg(test)]
    pub fn rows_batched(&self) -> usize {
        let batches = self.lock();
        batches.pending.len() + batches.writing.as_ref().map_or(0, |w| w.len())
    }
}

/// One transaction: the expired rows swept (with `sweep`), then every row of the batch.
fn write(conn: &mut rusqlite::Connection, rows: &Rows, sweep: bool) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if sweep {
        tx.prepare_cached(SWEEP)?.execute(params![now_ms() as i64])?;
    }
    {
        let mut put =
            tx.prepare_cached("INSERT OR REPLACE INTO responses (id, expires_ms, body) VALUES (?1, ?2, ?3)")?;
        let mut delete = tx.prepare_cached("DELETE FROM responses WHERE id = ?1")?;
        for (id, row) in rows {
            match row {
                Row::Put { expires_ms, body, .. } => put.execute(params![id, *expires_ms as i64, &**body])?,
                Row::Delete { .. } => delete.execute(params![id])?,
            };
        }
    }
    tx.commit()
}

/// A live response's JSON in the file.
fn select(conn: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT body FROM responses WHERE id = ?1 AND expires_ms > ?2")?
        .query_row(params![id, now_ms() as i64], |r| r.get::<_, String>(0))
        .optional()
}

fn parse(id: &str, body: &str) -> Result<StoredResponse, MemoryError> {
    corrupt_if_err(id, serde_json::from_str(body))
}

/// A stored response that could not be written or read back as JSON.
fn corrupt_if_err<T>(id: &str, result: serde_json::Result<T>) -> Result<T, MemoryError> {
    result.map_err(|e| MemoryError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    })
}
