//! The shared limits in the SQLite state file: every exai process of one machine that uses it
//! (`$EXAI_STATE_DIR/exai.db`) — exai-stdio for each editor window, `exai chat`, exai-ws.
//!
//! Four tables, created if missing. Their rows live seconds, so they stay out of `db.rs`'s
//! versioned migrations: a new shape would take new tables, with nothing to carry over.
//! - `limit_leases(scope, holder, expires_ms)`: one row per lease. A take runs in a
//!   `BEGIN IMMEDIATE` transaction — drop the scope's expired leases, refuse while it cools,
//!   count, insert under the limit — so two processes never both take the last place.
//! - `limit_pacing(scope, tat_ms)`: GCRA's theoretical arrival time, as the Redis `PACE` script.
//! - `limit_cooldowns(scope, until_ms)`: a scope cools until then.
//! - `limit_tokens(scope, minute, tokens)`: tokens used per wall-clock minute (a deployment's
//!   `tpm`).
//!
//! Times are wall-clock unix milliseconds: every process reads the same machine clock.
//!
//! rusqlite is synchronous, so the connection lives on a thread of its own, the keeper
//! (`sqlite/keeper.rs`); this file is the async side that asks it. The keeper serves requests that
//! arrive together in one transaction (one commit, however many calls start at once), renews every
//! lease this process holds each third of the lease time on its own clock (a busy runtime cannot
//! starve renewals), and deletes a lease when its guard drops: the guard's drop is a channel
//! send, which works on any thread, even outside a runtime. One lease alone costs the same as
//! with `spawn_blocking` and the connection behind a mutex (docs/performance.md); the batches,
//! the renewals of every lease in one transaction and the ordered releases are what the thread
//! buys. Dropping the limits closes the file once no lease is left (else when the last one
//! drops), so a process that exits leaves no write-ahead log behind.

mod keeper;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Lease, Try};
use crate::memory::MemoryError;

#[cfg(test)]
pub(super) use keeper::SCHEMA;

/// How long a caller waits for the keeper's answer (it may be queued behind other requests, or
/// wait for another process's write).
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// How long dropping the limits waits for the keeper to close the file.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The shared limits in one SQLite file: a handle to its keeper thread.
pub(super) struct SqliteLimits {
    keeper: mpsc::Sender<Request>,
    path: PathBuf,
}

/// Closes the file before the process ends, so that it leaves no write-ahead log behind: a
/// process exits right after dropping its gateway, before a thread of its own would notice.
impl Drop for SqliteLimits {
    fn drop(&mut self) {
        let (closed, wait) = mpsc::channel();
        if self.keeper.send(Request::Close { closed }).is_ok() {
            let _ = wait.recv_timeout(CLOSE_TIMEOUT);
        }
    }
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

/// Where the keeper answers: a value, or what SQLite said.
type Reply<T> = oneshot::Sender<Result<T, String>>;

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
    /// `add` tokens used by `scope` this minute (0 to read): the minute's total.
    Tokens {
        scope: String,
        add: i64,
        reply: Reply<u64>,
    },
    /// The limits are dropped: close the file once no lease is left, and say so on `closed`.
    Close {
        closed: mpsc::Sender<()>,
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
        Ok(Self {
            keeper: keeper::start(path, lease)?,
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
            Ok(Ok(answer)) => answer.map_err(fail),
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

    /// Adds `add` tokens to `scope`'s count for this minute; the minute's total.
    pub async fn tokens(&self, scope: &str, add: u64) -> Result<u64, MemoryError> {
        self.ask("tokens", |reply| Request::Tokens {
            scope: scope.to_string(),
            add: add as i64,
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
