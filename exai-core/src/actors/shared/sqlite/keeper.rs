//! The keeper: the thread that owns one process's connection to the state file for the shared
//! limits. It reads requests off a channel; those that arrive together are served in one
//! `BEGIN IMMEDIATE` transaction and answered once it is committed — under load the file's write
//! lock is taken once per batch, not once per lease. Between requests it renews the leases this
//! process holds, each third of the lease time. Its tables and their SQL are here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Reply, Request, SqliteLease, Taken};
use crate::actors::session::now_ms;
use crate::memory::{MemoryError, connect_sqlite};

/// How long a batch waits for another connection's write before its calls fall back to their
/// local limits.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Between two looks at the write lock while another connection holds it. SQLite's own busy
/// timeout sleeps 1 ms, then longer — many times the ~100 µs a write of the ledger or a turn
/// holds the lock, and each collision with one cost a call a millisecond.
const BUSY_STEP: Duration = Duration::from_micros(50);

/// Most requests served in one transaction.
const BATCH: usize = 64;

/// The tables, created if missing by every process that opens the file.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS limit_leases (
    scope TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, holder)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS limit_pacing (scope TEXT PRIMARY KEY, tat_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS limit_cooldowns (scope TEXT PRIMARY KEY, until_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS limit_tokens (
    scope TEXT NOT NULL,
    minute INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    PRIMARY KEY (scope, minute)
) WITHOUT ROWID;
";

/// Opens the file at `path` (creating the tables, dropping what has expired) and starts the
/// keeper on it; leases live `lease`. Returns the channel to it.
pub(super) fn start(path: &Path, lease: Duration) -> Result<mpsc::Sender<Request>, MemoryError> {
    let fail = |op: &'static str, e: &dyn std::fmt::Display| MemoryError::Sqlite {
        path: path.display().to_string(),
        op,
        message: e.to_string(),
    };
    let conn = connect_sqlite(path, BUSY_TIMEOUT)?;
    conn.busy_handler(Some(wait_a_step))
        .map_err(|e| fail("configure", &e))?;
    conn.execute_batch(SCHEMA)
        .map_err(|e| fail("create the shared limits' tables", &e))?;
    forget_the_expired(&conn, now()).map_err(|e| fail("drop expired leases", &e))?;
    let (keeper, requests) = mpsc::channel();
    std::thread::Builder::new()
        .name("exai-shared-limits".into())
        .spawn(move || keep(conn, &requests, lease))
        .map_err(|e| fail("start the shared limits' thread", &e))?;
    Ok(keeper)
}

/// SQLite's busy handler: `tries` steps waited so far for this lock; one more, until
/// [`BUSY_TIMEOUT`].
fn wait_a_step(tries: i32) -> bool {
    std::thread::sleep(BUSY_STEP);
    u128::from(tries.unsigned_abs()) < BUSY_TIMEOUT.as_micros() / BUSY_STEP.as_micros()
}

/// Serves requests in batches and renews the held leases every third of `lease`, until every
/// sender is gone.
fn keep(mut conn: Connection, requests: &mpsc::Receiver<Request>, lease: Duration) {
    let lease_ms = lease.as_millis() as i64;
    // This process's leases: holder → scope.
    let mut held: HashMap<String, String> = HashMap::new();
    let mut batch = Vec::with_capacity(BATCH);
    let every = lease / 3;
    let mut renew_at = Instant::now() + every;
    loop {
        match requests.recv_timeout(renew_at.saturating_duration_since(Instant::now())) {
            Ok(first) => {
                let mut next = Some(first);
                let mut closing = None;
                while let Some(request) = next.take() {
                    match request {
                        Request::Close { closed } => closing = Some(closed),
                        request => batch.push(request),
                    }
                    if closing.is_none() && batch.len() < BATCH {
                        next = requests.try_recv().ok();
                    }
                }
                serve(&mut conn, &mut held, batch.drain(..), lease_ms);
                if let Some(closed) = closing {
                    // With no lease left to renew, the file is closed now — its write-ahead log
                    // folded back — rather than when the process is gone.
                    if held.is_empty() {
                        drop(conn);
                        let _ = closed.send(());
                        return;
                    }
                    let _ = closed.send(());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if Instant::now() >= renew_at {
            if !held.is_empty()
                && let Err(e) = renew(&mut conn, &held, now() + lease_ms)
            {
                // Unrenewed leases expire, as an unanswered Redis renewal's do.
                tracing::debug!(error = %e, "cannot renew the shared leases");
            }
            renew_at = Instant::now() + every;
        }
    }
}

/// An answer, sent once the batch is committed.
enum Answer {
    Take(Reply<Taken>, Result<Taken, String>),
    Pace(Reply<u64>, Result<u64, String>),
    Cool(Reply<()>, Result<(), String>),
    Cooling(Reply<Option<u64>>, Result<Option<u64>, String>),
    Tokens(Reply<u64>, Result<u64, String>),
}

impl Answer {
    /// Sends the answer, or the commit's failure. An answer nobody waits for any more is dropped
    /// here, and a lease in it gives itself back.
    fn send(self, committed: &Result<(), String>) {
        fn after<T>(reply: Reply<T>, answer: Result<T, String>, committed: &Result<(), String>) {
            let _ = reply.send(committed.clone().and(answer));
        }
        match self {
            Self::Take(reply, answer) => after(reply, answer, committed),
            Self::Pace(reply, answer) => after(reply, answer, committed),
            Self::Cool(reply, answer) => after(reply, answer, committed),
            Self::Cooling(reply, answer) => after(reply, answer, committed),
            Self::Tokens(reply, answer) => after(reply, answer, committed),
        }
    }
}

/// Serves `batch` in one immediate transaction, and answers once it is committed.
fn serve(
    conn: &mut Connection,
    held: &mut HashMap<String, String>,
    batch: impl Iterator<Item = Request>,
    lease_ms: i64,
) {
    let now = now();
    let (tx, began) = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => (Some(tx), Ok(())),
        Err(e) => (None, Err(e.to_string())),
    };
    let answers: Vec<Answer> = batch
        .filter_map(|request| match &tx {
            Some(tx) => answer(tx, held, request, now, lease_ms),
            None => refuse(request, held),
        })
        .collect();
    let committed = match tx {
        Some(tx) => tx.commit().map_err(|e| e.to_string()),
        None => began,
    };
    for answer in answers {
        answer.send(&committed);
    }
}

/// Runs one request in the batch's transaction; a release needs no answer.
fn answer(
    conn: &Connection,
    held: &mut HashMap<String, String>,
    request: Request,
    now: i64,
    lease_ms: i64,
) -> Option<Answer> {
    let text = |e: rusqlite::Error| e.to_string();
    Some(match request {
        Request::Take {
            scope,
            limit,
            holder,
            keeper,
            reply,
        } => {
            let taken = take(conn, &scope, limit, &holder, now, lease_ms).map(|taken| match taken {
                Take::Held => {
                    held.insert(holder.clone(), scope.clone());
                    Taken::Held(SqliteLease { keeper, scope, holder })
                }
                Take::Full => Taken::Full,
                Take::Cooling(ms) => Taken::Cooling(ms),
            });
            Answer::Take(reply, taken.map_err(text))
        }
        Request::Release { scope, holder } => {
            held.remove(&holder);
            let deleted = conn
                .prepare_cached("DELETE FROM limit_leases WHERE scope = ?1 AND holder = ?2")
                .and_then(|mut delete| delete.execute(params![scope, holder]));
            if let Err(e) = deleted {
                tracing::debug!(error = %e, scope, "cannot give a shared lease back; it expires");
            }
            return None;
        }
        Request::Pace {
            scope,
            interval_ms,
            burst_ms,
            reply,
        } => Answer::Pace(reply, pace(conn, &scope, interval_ms, burst_ms, now).map_err(text)),
        Request::Cool { scope, for_ms, reply } => Answer::Cool(reply, cool(conn, &scope, now + for_ms).map_err(text)),
        Request::Cooling { scope, reply } => Answer::Cooling(reply, cooling(conn, &scope, now).map_err(text)),
        Request::Tokens { scope, add, reply } => Answer::Tokens(reply, tokens(conn, &scope, add, now).map_err(text)),
        // `keep` handles it before a batch is served.
        Request::Close { closed } => {
            let _ = closed.send(());
            return None;
        }
    })
}

/// A request of a batch whose transaction could not begin: answered with that failure (by
/// [`Answer::send`]); a lease given back is forgotten here and expires in the file.
fn refuse(request: Request, held: &mut HashMap<String, String>) -> Option<Answer> {
    // The placeholder is never sent: the failure to begin replaces it.
    fn failed<T>() -> Result<T, String> {
        Err(String::new())
    }
    Some(match request {
        Request::Take { reply, .. } => Answer::Take(reply, failed()),
        Request::Release { holder, .. } => {
            held.remove(&holder);
            return None;
        }
        Request::Pace { reply, .. } => Answer::Pace(reply, failed()),
        Request::Cool { reply, .. } => Answer::Cool(reply, failed()),
        Request::Cooling { reply, .. } => Answer::Cooling(reply, failed()),
        Request::Tokens { reply, .. } => Answer::Tokens(reply, failed()),
        Request::Close { closed } => {
            let _ = closed.send(());
            return None;
        }
    })
}

enum Take {
    Held,
    Full,
    Cooling(u64),
}

/// One take: the scope's expired leases go, a cooling scope refuses, and a lease is added under
/// the limit.
fn take(conn: &Connection, scope: &str, limit: usize, holder: &str, now: i64, lease_ms: i64) -> rusqlite::Result<Take> {
    conn.prepare_cached("DELETE FROM limit_leases WHERE scope = ?1 AND expires_ms <= ?2")?
        .execute(params![scope, now])?;
    if let Some(left) = cooling(conn, scope, now)? {
        return Ok(Take::Cooling(left));
    }
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM limit_leases WHERE scope = ?1")?
        .query_row([scope], |row| row.get(0))?;
    if count as usize >= limit {
        return Ok(Take::Full);
    }
    conn.prepare_cached("INSERT INTO limit_leases (scope, holder, expires_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![scope, holder, now + lease_ms])?;
    Ok(Take::Held)
}

/// GCRA, as the Redis `PACE` script: 0 when a call may go now (and counts it), else the
/// milliseconds to wait.
fn pace(conn: &Connection, scope: &str, interval_ms: i64, burst_ms: i64, now: i64) -> rusqlite::Result<u64> {
    let tat: Option<i64> = conn
        .prepare_cached("SELECT tat_ms FROM limit_pacing WHERE scope = ?1")?
        .query_row([scope], |row| row.get(0))
        .optional()?;
    let tat = tat.unwrap_or(0).max(now);
    if tat - now > burst_ms {
        return Ok((tat - now - burst_ms) as u64);
    }
    conn.prepare_cached(
        "INSERT INTO limit_pacing (scope, tat_ms) VALUES (?1, ?2)
         ON CONFLICT (scope) DO UPDATE SET tat_ms = excluded.tat_ms",
    )?
    .execute(params![scope, tat + interval_ms])?;
    Ok(0)
}

/// Marks `scope` cooling until `until` (replacing an earlier mark).
fn cool(conn: &Connection, scope: &str, until: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO limit_cooldowns (scope, until_ms) VALUES (?1, ?2)
         ON CONFLICT (scope) DO UPDATE SET until_ms = excluded.until_ms",
    )?
    .execute(params![scope, until])?;
    Ok(())
}

/// The milliseconds left of `scope`'s cool-down, if it cools.
fn cooling(conn: &Connection, scope: &str, now: i64) -> rusqlite::Result<Option<u64>> {
    let until: Option<i64> = conn
        .prepare_cached("SELECT until_ms FROM limit_cooldowns WHERE scope = ?1")?
        .query_row([scope], |row| row.get(0))
        .optional()?;
    Ok(until.filter(|until| *until > now).map(|until| (until - now) as u64))
}

/// Adds `add` tokens to `scope`'s count for this wall-clock minute (its earlier minutes go) and
/// answers the minute's total.
fn tokens(conn: &Connection, scope: &str, add: i64, now: i64) -> rusqlite::Result<u64> {
    let minute = now / 60_000;
    conn.prepare_cached("DELETE FROM limit_tokens WHERE scope = ?1 AND minute < ?2")?
        .execute(params![scope, minute])?;
    let total: i64 = conn
        .prepare_cached(
            "INSERT INTO limit_tokens (scope, minute, tokens) VALUES (?1, ?2, ?3)
             ON CONFLICT (scope, minute) DO UPDATE SET tokens = tokens + excluded.tokens
             RETURNING tokens",
        )?
        .query_row(params![scope, minute, add], |row| row.get(0))?;
    Ok(total.max(0) as u64)
}

/// Pushes the expiry of every lease in `held` (holder → scope) out to `until`.
fn renew(conn: &mut Connection, held: &HashMap<String, String>, until: i64) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut update =
            tx.prepare_cached("UPDATE limit_leases SET expires_ms = ?1 WHERE scope = ?2 AND holder = ?3")?;
        for (holder, scope) in held {
            update.execute(params![until, scope, holder])?;
        }
    }
    tx.commit()
}

/// Drops what no longer counts: expired leases and cool-downs, and pacing that is in the past
/// (an absent row paces the same).
fn forget_the_expired(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM limit_leases WHERE expires_ms <= ?1", [now])?;
    conn.execute("DELETE FROM limit_cooldowns WHERE until_ms <= ?1", [now])?;
    conn.execute("DELETE FROM limit_pacing WHERE tat_ms <= ?1", [now])?;
    conn.execute("DELETE FROM limit_tokens WHERE minute < ?1", [now / 60_000])?;
    Ok(())
}

/// The wall clock, in unix milliseconds.
fn now() -> i64 {
    now_ms() as i64
}
