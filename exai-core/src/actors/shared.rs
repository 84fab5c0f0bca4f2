//! Limits shared by every daemon on one Redis (`limits.shared`): the global and per-provider
//! in-flight limits as leases, a provider's `rpm` as one GCRA limiter, and a provider's open
//! circuit, published so that the other daemons stop sending to it too.
//!
//! - A lease is a member of a sorted set (`exai:{lease:glm}`) scored by its expiry. One Lua
//!   script drops expired leases and adds one if the set is under the limit — atomically, on the
//!   server's clock. A lease is renewed every third of `limits.lease_secs` while its call runs
//!   and removed when the call ends (its guard drops), so a daemon killed with SIGKILL frees its
//!   leases within `lease_secs`.
//! - `rpm`: one script keeps the theoretical arrival time of the next call (GCRA, with a burst
//!   of `rpm` as the local governor limiter allows) and answers how long to wait.
//! - A provider's circuit opened by one daemon is a key with the cooldown as its lifetime; the
//!   lease script refuses while it exists.
//!
//! Every key of one script carries one hash tag, so each script runs on one slot of a cluster.
//! If Redis fails, the call goes on under the local limits (which always apply too): the failure
//! is logged once, counted in `exai_shared_limits_errors_total`, and reported by
//! [`SharedLimits::is_degraded`] until a script succeeds again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::memory::RedisConn;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::Error;

/// How long one Redis round trip may take before the local limits take over for this call.
const OP_TIMEOUT: Duration = Duration::from_millis(500);

/// Between two tries for a full limit.
const POLL: Duration = Duration::from_millis(20);

/// Drops expired leases, refuses while the scope's circuit is open elsewhere (a negative
/// answer: minus the milliseconds left, minus one), and adds a lease under the limit (1) or not
/// (0).
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -redis.call('PTTL', KEYS[2]) - 1
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  return 1
end
return 0
";

/// Pushes a held lease's expiry out by the lease time.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
return 1
";

/// GCRA: 0 when a call may go now (and counts it), else the milliseconds to wait.
const PACE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
if tat - now > burst then
  return tat - now - burst
end
redis.call('SET', KEYS[1], tat + interval, 'PX', tat + interval - now + 1000)
return 0
";

/// The shared limits of one gateway.
pub(crate) struct SharedLimits {
    conn: RedisConn,
    prefix: String,
    lease: Duration,
    /// Names this process's leases (`pid-uuid:n`).
    holder: String,
    next: std::sync::atomic::AtomicU64,
    acquire: redis::Script,
    renew: Arc<redis::Script>,
    pace: redis::Script,
    degraded: AtomicBool,
}

/// What a shared acquire came to.
pub(crate) enum Leased {
    /// Held until the guard drops.
    Held(Lease),
    /// Redis failed: the local limits alone apply to this call.
    Local,
    /// The scope is cooling (its circuit opened, or a 429) elsewhere, for this long still.
    Cooling(Duration),
}

/// A held lease: renewed while it lives, removed when it drops.
#[derive(Debug)]
pub(crate) struct Lease {
    renewing: JoinHandle<()>,
    release: Option<(RedisConn, String, String)>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewing.abort();
        // Outside a runtime (a process tearing down) the lease simply expires.
        if let (Some((mut conn, key, id)), Ok(runtime)) = (self.release.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move {
                let mut zrem = redis::cmd("ZREM");
                zrem.arg(&key).arg(&id);
                // An unanswered release expires with the lease.
                let _ = tokio::time::timeout(OP_TIMEOUT, zrem.query_async::<i64>(&mut conn)).await;
            });
        }
    }
}

impl SharedLimits {
    pub fn new(conn: RedisConn, prefix: &str, lease: Duration) -> Self {
        Self {
            conn,
            prefix: prefix.to_string(),
            lease: lease.max(Duration::from_secs(1)),
            holder: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()),
            next: Default::default(),
            acquire: redis::Script::new(ACQUIRE),
            renew: Arc::new(redis::Script::new(RENEW)),
            pace: redis::Script::new(PACE),
            degraded: AtomicBool::new(false),
        }
    }

    /// Whether the last shared operation failed (local limits only, until one succeeds).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Notes a script's outcome: a failure is counted and starts the degraded state (logged
    /// once); the first success after it ends it (logged once).
    fn note<T>(&self, result: Result<Result<T, redis::RedisError>, tokio::time::error::Elapsed>) -> Option<T> {
        match result {
            Ok(Ok(value)) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("redis answers again; the shared limits apply");
                }
                Some(value)
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {OP_TIMEOUT:?}"),
                };
                metrics::counter!("exai_shared_limits_errors_total").increment(1);
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %why, "redis failed; each daemon falls back to its local limits");
                }
                None
            }
        }
    }

    /// The key of `scope` (`global`, or a provider's name) under one hash tag per scope.
    fn key(&self, kind: &str, scope: &str) -> String {
        format!("{}{{{kind}:{scope}}}", self.prefix)
    }

    /// Takes a lease on `scope`, one of at most `limit` across every daemon, waiting until
    /// `deadline`.
    pub async fn lease(&self, scope: &str, limit: usize, deadline: Instant) -> Result<Leased, Error> {
        let (key, circuit) = (
            self.key("lease", scope),
            format!("{}:circuit", self.key("lease", scope)),
        );
        let id = format!("{}:{}", self.holder, self.next.fetch_add(1, Ordering::Relaxed));
        let lease_ms = self.lease.as_millis() as u64;
        let started = Instant::now();
        loop {
            let mut conn = self.conn.clone();
            let mut call = self.acquire.key(&key);
            call.key(&circuit).arg(limit).arg(lease_ms).arg(&id);
            let answer = tokio::time::timeout(OP_TIMEOUT, call.invoke_async::<i64>(&mut conn)).await;
            let Some(answer) = self.note(answer) else {
                return Ok(Leased::Local);
            };
            if answer == 1 {
                return Ok(Leased::Held(self.hold(key, id)));
            }
            if answer < 0 {
                return Ok(Leased::Cooling(Duration::from_millis((-answer - 1).max(1) as u64)));
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

    /// A held lease, renewed every third of the lease time until it drops.
    fn hold(&self, key: String, id: String) -> Lease {
        let (conn, renew, every) = (self.conn.clone(), self.renew.clone(), self.lease / 3);
        let lease_ms = self.lease.as_millis() as u64;
        let (renew_key, renew_id) = (key.clone(), id.clone());
        let renewing = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let mut conn = conn.clone();
                let mut call = renew.key(&renew_key);
                call.arg(lease_ms).arg(&renew_id);
                let _ = tokio::time::timeout(OP_TIMEOUT, call.invoke_async::<i64>(&mut conn)).await;
            }
        });
        Lease {
            renewing,
            release: Some((self.conn.clone(), key, id)),
        }
    }

    /// Waits for `provider`'s shared `rpm` budget (a burst of `rpm`, then one call every
    /// minute / `rpm`), until `deadline`. Redis failing leaves the pacing to the local limiter.
    pub async fn pace(&self, provider: &str, rpm: u32, deadline: Instant) -> Result<(), Error> {
        let key = self.key("rate", provider);
        let interval = 60_000 / u64::from(rpm.max(1));
        let burst = interval * u64::from(rpm.max(1) - 1);
        let started = Instant::now();
        loop {
            let mut conn = self.conn.clone();
            let mut call = self.pace.key(&key);
            call.arg(interval).arg(burst);
            let answer = tokio::time::timeout(OP_TIMEOUT, call.invoke_async::<i64>(&mut conn)).await;
            let Some(wait) = self.note(answer) else {
                return Ok(());
            };
            if wait <= 0 {
                return Ok(());
            }
            let wait = Duration::from_millis(wait as u64);
            if Instant::now() + wait > deadline {
                metrics::counter!("exai_over_capacity_total", "scope" => format!("rpm {provider}")).increment(1);
                return Err(Error::OverCapacity {
                    scope: format!("{provider} rpm ({rpm} per minute, shared)"),
                    limit: rpm as usize,
                    waited: started.elapsed(),
                    retry_after: wait,
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Tells every daemon that `scope` is cooling for `for_`.
    pub async fn cool(&self, scope: &str, for_: Duration) {
        self.publish_open(scope, for_).await;
    }

    /// Tells every daemon that `provider`'s circuit is open for `cooldown`.
    pub async fn publish_open(&self, provider: &str, cooldown: Duration) {
        let key = format!("{}:circuit", self.key("lease", provider));
        let mut conn = self.conn.clone();
        let ms = cooldown.as_millis().max(1) as u64;
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(1).arg("PX").arg(ms);
        let result = tokio::time::timeout(OP_TIMEOUT, set.query_async::<()>(&mut conn)).await;
        self.note(result);
    }
}
