//! The shared limits in the SQLite state file: every exai process of one machine that uses it
//! (`$EXAI_STATE_DIR/exai.db`) — exai-stdio for each editor window, `exai chat`, exai-ws.
//!
//! Three tables, created if missing. Their rows live seconds, so they stay out of `db.rs`'s
//! versioned migrations: a change here drops and recreates them.
//! - `limit_leases(scope, holder, expires_ms)`: one row per lease. A take is one
//!   `BEGIN IMMEDIATE` transaction — drop the scope's expired leases, refuse while it cools,
//!   count, insert under the limit — so two processes never both take the last place.
//! - `limit_pacing(scope, tat_ms)`: GCRA's theoretical arrival time, as the Redis `PACE` script.
//! - `limit_cooldowns(scope, until_ms)`: a scope cools until then.
//!
//! Times are wall-clock unix milliseconds: every process reads the same machine clock.
//!
//! rusqlite is synchronous, so the connection lives on a thread of its own — the keeper. It
//! answers requests in order, renews every lease this process holds each third of the lease time
//! on its own clock (a busy runtime cannot starve renewals), and deletes a lease when its guard
//! drops: the guard's drop is a channel send, which works on any thread, even outside a runtime.
//! Measured against `spawn_blocking` with the connection behind a mutex, the keeper takes and
//! gives back a lease faster (docs/performance.md). The keeper stops when the last handle to it
//! (the limits and every lease) is dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::{Lease, Try};
use crate::actors::session::now_ms;
use crate::memory::{MemoryError, connect_sqlite};

/// How long a take waits for another process's write before the call falls back to its local
/// limits.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a caller waits for the keeper's answer (it may be queued behind other requests).
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// The tables, created if missing by every process that opens the file.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS limit_leases (
    scope TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, holder)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS limit_pacing (scope TEXT PRIMARY KEY, tat_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS limit_cooldowns (scope TEXT PRIMARY KEY, until_ms INTEGER NOT NULL) WITHOUT ROWID;
";

/// The shared limits in one SQLite file: a handle to its keeper thread.
pub(super) struct SqliteLimits {
    keeper: mpsc::Sender<Request>,
    path: PathBuf,
}

/// A lease held in the file: the keeper renews it while it lives and deletes it when it drops.
#[derive(Debug)]
pub(super) struct SqliteLease {
    keeper: mpsc::Sender<Request>,
    scope: String,
    holder: String,
}

impl Drop for SqliteLease {
    fn drop(&mut self) {
        let (scope, holder) = (std::mem::take(&mut self.scope), std::mem::take(&mut self.holder));
        // A keeper gone has no connection left: the row expires.
        let _ = self.keeper.send(Request::Release { scope, holder });
    }
}

type Reply<T> = oneshot::Sender<rusqlite::Result<T>>;

/// What the keeper is asked.
enum Request {
    /// A lease named `holder` on `scope`, one of at most `limit`. The keeper builds the guard
    /// (with `keeper`, a handle to itself) so that a lease nobody receives gives itself back.
    Take {
        scope: String,
        limit: usize,
        holder: String,
        keeper: mpsc::Sender<Request>,
        reply: Reply<Taken>,
    },
    Release {
        scope: String,
        holder: String,
    },
    /// A call against `scope`'s GCRA: 0 if it may go now, else the milliseconds to wait.
    Pace {
        scope: String,
        interval_ms: i64,
        burst_ms: i64,
        reply: Reply<u64>,
    },
    Cool {
        scope: String,
        for_ms: i64,
        reply: Reply<()>,
    },
    Cooling {
        scope: String,
        reply: Reply<Option<u64>>,
    },
}

enum Taken {
    Held(SqliteLease),
    Full,
    Cooling(u64),
}

impl SqliteLimits {
    /// Opens the file (creating the tables) and starts its keeper; leases live `lease`.
    pub fn open(path: &Path, lease: Duration) -> Result<Self, MemoryError> {
        let fail = |op: &'static str, e: &dyn std::fmt::Display| MemoryError::Sqlite {
            path: path.display().to_string(),
            op,
            message: e.to_string(),
        };
        let conn = connect_sqlite(path, BUSY_TIMEOUT)?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| fail("create the shared limits' tables", &e))?;
        forget_the_expired(&conn, now()).map_err(|e| fail("drop expired leases", &e))?;
        let (keeper, requests) = mpsc::channel();
        std::thread::Builder::new()
            .name("exai-shared-limits".into())
            .spawn(move || keep(conn, &requests, lease))
            .map_err(|e| fail("start the shared limits' thread", &e))?;
        Ok(Self {
            keeper,
            path: path.to_path_buf(),
        })
    }

    /// Sends the keeper a request and waits for its answer, at most [`OP_TIMEOUT`].
    async fn ask<T>(&self, op: &'static str, request: impl FnOnce(Reply<T>) -> Request) -> Result<T, MemoryError> {
        let fail = |message: String| MemoryError::Sqlite {
            path: self.path.display().to_string(),
            op,
            message,
        };
        let (reply, answer) = oneshot::channel();
        self.keeper
            .send(request(reply))
            .map_err(|_| fail("the shared limits' thread has stopped".into()))?;
        match tokio::time::timeout(OP_TIMEOUT, answer).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(fail(e.to_string())),
            Ok(Err(_)) => Err(fail("the shared limits' thread has stopped".into())),
            Err(_) => Err(fail(format!("no answer within {OP_TIMEOUT:?}"))),
        }
    }

    /// One try at a lease named `holder` on `scope`.
    pub async fn try_lease(&self, scope: &str, limit: usize, holder: &str) -> Result<Try, MemoryError> {
        let taken = self
            .ask("lease", |reply| Request::Take {
                scope: scope.to_string(),
                limit,
                holder: holder.to_string(),
                keeper: self.keeper.clone(),
                reply,
            })
            .await?;
        Ok(match taken {
            Taken::Held(lease) => Try::Held(Lease::from(lease)),
            Taken::Full => Try::Full,
            Taken::Cooling(ms) => Try::Cooling(Duration::from_millis(ms)),
        })
    }

    /// Counts a call against `scope`'s GCRA if it may go now (0), else the milliseconds to wait.
    pub async fn try_pace(&self, scope: &str, interval_ms: u64, burst_ms: u64) -> Result<u64, MemoryError> {
        self.ask("pace", |reply| Request::Pace {
            scope: scope.to_string(),
            interval_ms: interval_ms as i64,
            burst_ms: burst_ms as i64,
            reply,
        })
        .await
    }

    /// Marks `scope` cooling for `for_` from now.
    pub async fn cool(&self, scope: &str, for_: Duration) -> Result<(), MemoryError> {
        self.ask("cool", |reply| Request::Cool {
            scope: scope.to_string(),
            for_ms: for_.as_millis() as i64,
            reply,
        })
        .await
    }

    /// What is left of `scope`'s cool-down.
    pub async fn cooling(&self, scope: &str) -> Result<Option<Duration>, MemoryError> {
        let left = self
            .ask("cooling", |reply| Request::Cooling {
                scope: scope.to_string(),
                reply,
            })
            .await?;
        Ok(left.map(Duration::from_millis))
    }
}

/// The keeper: serves requests in order and renews the held leases every third of `lease`,
/// until every sender is gone.
fn keep(mut conn: Connection, requests: &mpsc::Receiver<Request>, lease: Duration) {
    let lease_ms = lease.as_millis() as i64;
    // This process's leases: holder → scope.
    let mut held: HashMap<String, String> = HashMap::new();
    let every = lease / 3;
    let mut renew_at = std::time::Instant::now() + every;
    loop {
        match requests.recv_timeout(renew_at.saturating_duration_since(std::time::Instant::now())) {
            Ok(request) => serve(&mut conn, &mut held, request, lease_ms),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if std::time::Instant::now() >= renew_at {
            if !held.is_empty()
                && let Err(e) = renew(&mut conn, &held, now() + lease_ms)
            {
                // Unrenewed leases expire, as an unanswered Redis renewal's do.
                tracing::debug!(error = %e, "cannot renew the shared leases");
            }
            renew_at = std::time::Instant::now() + every;
        }
    }
}

fn serve(conn: &mut Connection, held: &mut HashMap<String, String>, request: Request, lease_ms: i64) {
    match request {
        Request::Take {
            scope,
            limit,
            holder,
            keeper,
            reply,
        } => {
            let taken = take(conn, &scope, limit, &holder, now(), lease_ms).map(|taken| match taken {
                Take::Held => {
                    held.insert(holder.clone(), scope.clone());
                    Taken::Held(SqliteLease { keeper, scope, holder })
                }
                Take::Full => Taken::Full,
                Take::Cooling(ms) => Taken::Cooling(ms),
            });
            // A lease the caller no longer waits for drops here, and gives itself back.
            let _ = reply.send(taken);
        }
        Request::Release { scope, holder } => {
            held.remove(&holder);
            let deleted = conn
                .prepare_cached("DELETE FROM limit_leases WHERE scope = ?1 AND holder = ?2")
                .and_then(|mut delete| delete.execute(params![scope, holder]));
            if let Err(e) = deleted {
                tracing::debug!(error = %e, scope, "cannot give a shared lease back; it expires");
            }
        }
        Request::Pace {
            scope,
            interval_ms,
            burst_ms,
            reply,
        } => {
            let _ = reply.send(pace(conn, &scope, interval_ms, burst_ms, now()));
        }
        Request::Cool { scope, for_ms, reply } => {
            let marked = conn
                .prepare_cached(
                    "INSERT INTO limit_cooldowns (scope, until_ms) VALUES (?1, ?2)
                     ON CONFLICT (scope) DO UPDATE SET until_ms = excluded.until_ms",
                )
                .and_then(|mut upsert| upsert.execute(params![scope, now() + for_ms]))
                .map(drop);
            let _ = reply.send(marked);
        }
        Request::Cooling { scope, reply } => {
            let _ = reply.send(cooling(conn, &scope, now()));
        }
    }
}

enum Take {
    Held,
    Full,
    Cooling(u64),
}

/// One take, in one immediate transaction: the scope's expired leases go, a cooling scope
/// refuses, and a lease is added under the limit.
fn take(
    conn: &mut Connection,
    scope: &str,
    limit: usize,
    holder: &str,
    now: i64,
    lease_ms: i64,
) -> rusqlite::Result<Take> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let answer = {
        tx.prepare_cached("DELETE FROM limit_leases WHERE scope = ?1 AND expires_ms <= ?2")?
            .execute(params![scope, now])?;
        match cooling(&tx, scope, now)? {
            Some(left) => Take::Cooling(left),
            None => {
                let count: i64 = tx
                    .prepare_cached("SELECT count(*) FROM limit_leases WHERE scope = ?1")?
                    .query_row([scope], |row| row.get(0))?;
                if (count as usize) < limit {
                    tx.prepare_cached("INSERT INTO limit_leases (scope, holder, expires_ms) VALUES (?1, ?2, ?3)")?
                        .execute(params![scope, holder, now + lease_ms])?;
                    Take::Held
                } else {
                    Take::Full
                }
            }
        }
    };
    tx.commit()?;
    Ok(answer)
}

/// GCRA, as the Redis `PACE` script: 0 when a call may go now (and counts it), else the
/// milliseconds to wait.
fn pace(conn: &mut Connection, scope: &str, interval_ms: i64, burst_ms: i64, now: i64) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let wait = {
        let tat: Option<i64> = tx
            .prepare_cached("SELECT tat_ms FROM limit_pacing WHERE scope = ?1")?
            .query_row([scope], |row| row.get(0))
            .optional()?;
        let tat = tat.unwrap_or(0).max(now);
        if tat - now > burst_ms {
            (tat - now - burst_ms) as u64
        } else {
            tx.prepare_cached(
                "INSERT INTO limit_pacing (scope, tat_ms) VALUES (?1, ?2)
                 ON CONFLICT (scope) DO UPDATE SET tat_ms = excluded.tat_ms",
            )?
            .execute(params![scope, tat + interval_ms])?;
            0
        }
    };
    tx.commit()?;
    Ok(wait)
}

/// The milliseconds left of `scope`'s cool-down, if it cools.
fn cooling(conn: &Connection, scope: &str, now: i64) -> rusqlite::Result<Option<u64>> {
    let until: Option<i64> = conn
        .prepare_cached("SELECT until_ms FROM limit_cooldowns WHERE scope = ?1")?
        .query_row([scope], |row| row.get(0))
        .optional()?;
    Ok(until.filter(|until| *until > now).map(|until| (until - now) as u64))
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
    Ok(())
}

/// The wall clock, in unix milliseconds.
fn now() -> i64 {
    now_ms() as i64
}
