//! Limits shared by every exai process that uses one store (`limits.shared`): the global and
//! per-provider in-flight limits — and any other scope a caller names (`key:NAME`, a
//! deployment) — as leases, a provider's `rpm` as one GCRA limiter, a deployment's tokens per
//! minute (its `tpm`), and cool-downs (a provider's open circuit), published so that every
//! process stops sending too.
//!
//! Two stores, one behaviour, chosen once when the gateway starts:
//! - `redis.rs`: every daemon on one Redis (Lua scripts on the server's clock) — when a Redis
//!   URL is set.
//! - `sqlite.rs`: every process of one machine on the state file (`exai.db`): exai-stdio for
//!   each editor window, `exai chat` in a shell, an exai-ws daemon — the default without Redis.
//!
//! A lease is one of at most `limit` places on its scope. It lives `limits.lease_secs` unless
//! its holder renews it, is renewed every third of that while its [`Lease`] guard lives, and is
//! removed when the guard drops: a process killed with SIGKILL frees its places within
//! `lease_secs`. A scope cooling elsewhere refuses leases ([`Leased::Cooling`]) until the
//! cool-down ends; what that means is the caller's business (limits.rs turns it into
//! [`Error::OverCapacity`] for a provider).
//!
//! If the store fails, the call goes on under the local limits (which always apply too): the
//! failure is logged once, counted in `exai_shared_limits_errors_total`, and reported by
//! [`SharedLimits::is_degraded`] until an operation succeeds again.

mod redis;
mod sqlite;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;
use crate::memory::{MemoryError, RedisConn};

/// Between two tries for a full limit.
const POLL: Duration = Duration::from_millis(20);

/// The shared limits of one gateway. Cheap to share behind an `Arc`.
pub(crate) struct SharedLimits {
    store: Store,
    /// Names this process's leases (`pid-uuid:n`), so no two holders anywhere share a name.
    holder: String,
    next: AtomicU64,
    /// Whether the last operation failed: the local limits alone apply until one succeeds.
    degraded: AtomicBool,
}

enum Store {
    Redis(redis::RedisLimits),
    Sqlite(sqlite::SqliteLimits),
}

/// What a shared acquire came to.
pub(crate) enum Leased {
    /// Held until the guard drops.
    Held(Lease),
    /// The scope is cooling (marked by [`SharedLimits::cool`] here or in another process) for
    /// this much longer: no lease until then.
    Cooling(Duration),
    /// The store failed: the local limits alone apply to this call.
    Local,
}

/// A held lease: renewed while it lives, given back when it drops.
#[derive(Debug)]
pub(crate) struct Lease {
    _held: Held,
}

/// Held only to be dropped: each store's lease gives itself back then.
#[derive(Debug)]
enum Held {
    Redis { _lease: redis::RedisLease },
    Sqlite { _lease: sqlite::SqliteLease },
}

/// One try at a lease, as a store answers it.
enum Try {
    Held(Lease),
    Full,
    Cooling(Duration),
}

impl SharedLimits {
    /// Limits shared by every daemon on the Redis behind `conn`, under `prefix`.
    pub fn redis(conn: RedisConn, prefix: &str, lease: Duration) -> Self {
        let lease = lease.max(Duration::from_secs(1));
        Self::with(Store::Redis(redis::RedisLimits::new(conn, prefix, lease)))
    }

    /// Limits shared by every process using the SQLite file at `path` (created if missing).
    /// Blocking: call it off the runtime.
    pub fn sqlite(path: &Path, lease: Duration) -> Result<Self, MemoryError> {
        let lease = lease.max(Duration::from_secs(1));
        Ok(Self::with(Store::Sqlite(sqlite::SqliteLimits::open(path, lease)?)))
    }

    fn with(store: Store) -> Self {
        Self {
            store,
            holder: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()),
            next: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
        }
    }

    /// Which store shares them: `redis` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        match self.store {
            Store::Redis(_) => "redis",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// Whether the last shared operation failed (local limits only, until one succeeds).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Notes an operation's outcome: a failure is counted and starts the degraded state (logged
    /// once); the first success after it ends it (logged once).
    fn note<T>(&self, result: Result<T, MemoryError>) -> Option<T> {
        match result {
            Ok(value) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        store = self.backend(),
                        "the shared limits' store answers again; they apply"
                    );
                }
                Some(value)
            }
            Err(e) => {
                metrics::counter!("exai_shared_limits_errors_total").increment(1);
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "the shared limits failed; each process falls back to its local limits");
                }
                None
            }
        }
    }

    /// Takes a lease on `scope`, one of at most `limit` across every process, waiting until
    /// `deadline` while the limit is full. A cooling scope answers at once.
    pub async fn lease(&self, scope: &str, limit: usize, deadline: Instant) -> Result<Leased, Error> {
        let id = format!("{}:{}", self.holder, self.next.fetch_add(1, Ordering::Relaxed));
        let started = Instant::now();
        loop {
            let tried = match &self.store {
                Store::Redis(redis) => redis.try_lease(scope, limit, &id).await,
                Store::Sqlite(sqlite) => sqlite.try_lease(scope, limit, &id).await,
            };
            match self.note(tried) {
                None => return Ok(Leased::Local),
                Some(Try::Held(lease)) => return Ok(Leased::Held(lease)),
                Some(Try::Cooling(left)) => return Ok(Leased::Cooling(left)),
                Some(Try::Full) => {}
            }
            if Instant::now() + POLL >= deadline {
                metrics::counter!("exai_over_capacity_total", "scope" => format!("shared {scope}")).increment(1);
                return Err(Error::OverCapacity {
                    scope: format!("shared {scope}"),
                    limit,
                    waited: started.elapsed(),
                    retry_after: Duration::from_secs(1),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for `scope`'s shared `rpm` budget (a burst of `rpm`, then one call every
    /// minute / `rpm`), until `deadline`. The store failing leaves the pacing to the local
    /// limiter.
    pub async fn pace(&self, scope: &str, rpm: u32, deadline: Instant) -> Result<(), Error> {
        let interval = 60_000 / u64::from(rpm.max(1));
        let burst = interval * u64::from(rpm.max(1) - 1);
        let started = Instant::now();
        loop {
            let wait = match &self.store {
                Store::Redis(redis) => redis.try_pace(scope, interval, burst).await,
                Store::Sqlite(sqlite) => sqlite.try_pace(scope, interval, burst).await,
            };
            let Some(wait) = self.note(wait).filter(|ms| *ms > 0) else {
                return Ok(());
            };
            let wait = Duration::from_millis(wait);
            if Instant::now() + wait > deadline {
                metrics::counter!("exai_over_capacity_total", "scope" => format!("rpm {scope}")).increment(1);
                return Err(Error::OverCapacity {
                    scope: format!("{scope} rpm ({rpm} per minute, shared)"),
                    limit: rpm as usize,
                    waited: started.elapsed(),
                    retry_after: wait,
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Marks `scope` cooling for `for_` in every process: their leases on it answer
    /// [`Leased::Cooling`] until then. A later mark replaces an earlier one.
    pub async fn cool(&self, scope: &str, for_: Duration) {
        let for_ = for_.max(Duration::from_millis(1));
        let marked = match &self.store {
            Store::Redis(redis) => redis.cool(scope, for_).await,
            Store::Sqlite(sqlite) => sqlite.cool(scope, for_).await,
        };
        self.note(marked);
    }

    /// Adds `add` tokens (0 to read) to what `scope` used this wall-clock minute in every
    /// process, and answers the minute's total; none when the store fails.
    pub async fn tokens(&self, scope: &str, add: u64) -> Option<u64> {
        let total = match &self.store {
            Store::Redis(redis) => redis.tokens(scope, add).await,
            Store::Sqlite(sqlite) => sqlite.tokens(scope, add).await,
        };
        self.note(total)
    }

    /// How much longer `scope` cools, if it does (one read; none when the store fails).
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "the call path learns a cool-down from its lease; this one read is for the tests"
        )
    )]
    pub async fn cooling(&self, scope: &str) -> Option<Duration> {
        let left = match &self.store {
            Store::Redis(redis) => redis.cooling(scope).await,
            Store::Sqlite(sqlite) => sqlite.cooling(scope).await,
        };
        self.note(left).flatten()
    }
}

impl From<redis::RedisLease> for Lease {
    fn from(held: redis::RedisLease) -> Self {
        Self {
            _held: Held::Redis { _lease: held },
        }
    }
}

impl From<sqlite::SqliteLease> for Lease {
    fn from(held: sqlite::SqliteLease) -> Self {
        Self {
            _held: Held::Sqlite { _lease: held },
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests;
