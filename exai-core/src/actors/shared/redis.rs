//! The shared limits on Redis: every daemon on one Redis (or Redis Cluster).
//!
//! - A lease is a member of a sorted set (`exai:{lease:glm}`) scored by its expiry. One Lua
//!   script drops expired leases, refuses while the scope cools, and adds one if the set is
//!   under the limit — atomically, on the server's clock. Each lease is renewed by a task of
//!   its own and removed (`ZREM`) when its guard drops.
//! - `rpm`: one script keeps the theoretical arrival time of the next call (GCRA, with a burst
//!   of `rpm` as the local governor limiter allows) and answers how long to wait.
//! - `tpm`: a hash per scope (`exai:{tpm:glm#1:…}`) of tokens per wall-clock minute on the
//!   server's clock; one script adds and answers the minute's total, dropping older minutes.
//! - A cool-down (a provider's circuit opened by one daemon) is a key with the cool-down as its
//!   lifetime (`exai:{lease:glm}:circuit`); the lease script refuses while it exists.
//!
//! Every key of one script carries one hash tag, so each script runs on one slot of a cluster.
//! Each round trip gives up after [`OP_TIMEOUT`]: the call then goes on under its local limits.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{Lease, Try};
use crate::memory::{MemoryError, RedisConn, renew_every};

/// How long one Redis round trip may take before the local limits take over for this call.
const OP_TIMEOUT: Duration = Duration::from_millis(500);

/// Drops expired leases, refuses while the scope cools (a negative answer: minus the
/// milliseconds left, minus one), and adds a lease under the limit (1) or not (0).
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

/// Adds ARGV[1] tokens to this minute's field (older minutes go) and answers its total.
const TOKENS: &str = r"
local t = redis.call('TIME')
local minute = math.floor(tonumber(t[1]) / 60)
local total = redis.call('HINCRBY', KEYS[1], minute, tonumber(ARGV[1]))
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if tonumber(field) < minute then
    redis.call('HDEL', KEYS[1], field)
  end
end
redis.call('EXPIRE', KEYS[1], 120)
return total
";

/// The shared limits on one Redis.
pub(super) struct RedisLimits {
    conn: RedisConn,
    prefix: String,
    lease: Duration,
    acquire: redis::Script,
    renew: Arc<redis::Script>,
    pace: redis::Script,
    tokens: redis::Script,
}

/// A lease held in Redis: renewed by its task while it lives, removed when it drops.
#[derive(Debug)]
pub(super) struct RedisLease {
    renewing: JoinHandle<()>,
    release: Option<(RedisConn, String, String)>,
}

impl Drop for RedisLease {
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

impl RedisLimits {
    pub fn new(conn: RedisConn, prefix: &str, lease: Duration) -> Self {
        Self {
            conn,
            prefix: prefix.to_string(),
            lease,
            acquire: redis::Script::new(ACQUIRE),
            renew: Arc::new(redis::Script::new(RENEW)),
            pace: redis::Script::new(PACE),
            tokens: redis::Script::new(TOKENS),
        }
    }

    /// The key of `scope` (`global`, a provider's name, …) under one hash tag per scope.
    fn key(&self, kind: &str, scope: &str) -> String {
        format!("{}{{{kind}:{scope}}}", self.prefix)
    }

    /// The key whose life is `scope`'s cool-down (in the lease's slot).
    fn circuit(&self, scope: &str) -> String {
        format!("{}:circuit", self.key("lease", scope))
    }

    /// One try at a lease named `id` on `scope`.
    pub async fn try_lease(&self, scope: &str, limit: usize, id: &str) -> Result<Try, MemoryError> {
        let key = self.key("lease", scope);
        let mut conn = self.conn.clone();
        let mut call = self.acquire.key(&key);
        call.key(self.circuit(scope))
            .arg(limit)
            .arg(self.lease.as_millis() as u64)
            .arg(id);
        let answer: i64 = run("lease", call.invoke_async(&mut conn)).await?;
        Ok(match answer {
            1 => Try::Held(Lease::from(self.hold(key, id.to_string()))),
            cooling if cooling < 0 => Try::Cooling(Duration::from_millis((-cooling - 1) as u64)),
            _ => Try::Full,
        })
    }

    /// A held lease, renewed every third of the lease time until it drops.
    fn hold(&self, key: String, id: String) -> RedisLease {
        let lease_ms = (self.lease.as_millis() as u64).to_string();
        let renewing = renew_every(
            self.lease / 3,
            OP_TIMEOUT,
            self.conn.clone(),
            self.renew.clone(),
            key.clone(),
            vec![lease_ms, id.clone()],
        );
        RedisLease {
            renewing,
            release: Some((self.conn.clone(), key, id)),
        }
    }

    /// Counts a call against `scope`'s GCRA if it may go now (0), else the milliseconds to wait.
    pub async fn try_pace(&self, scope: &str, interval_ms: u64, burst_ms: u64) -> Result<u64, MemoryError> {
        let mut conn = self.conn.clone();
        let mut call = self.pace.key(self.key("rate", scope));
        call.arg(interval_ms).arg(burst_ms);
        let wait: i64 = run("pace", call.invoke_async(&mut conn)).await?;
        Ok(wait.max(0) as u64)
    }

    /// Adds `add` tokens to `scope`'s count for this minute; the minute's total.
    pub async fn tokens(&self, scope: &str, add: u64) -> Result<u64, MemoryError> {
        let mut conn = self.conn.clone();
        let mut call = self.tokens.key(self.key("tpm", scope));
        call.arg(add);
        let total: i64 = run("tokens", call.invoke_async(&mut conn)).await?;
        Ok(total.max(0) as u64)
    }

    /// Sets `scope`'s cool-down key to live `for_`.
    pub async fn cool(&self, scope: &str, for_: Duration) -> Result<(), MemoryError> {
        let mut conn = self.conn.clone();
        let mut set = redis::cmd("SET");
        set.arg(self.circuit(scope))
            .arg(1)
            .arg("PX")
            .arg(for_.as_millis().max(1) as u64);
        run("cool", set.query_async::<()>(&mut conn)).await
    }

    /// What is left of `scope`'s cool-down key's life.
    pub async fn cooling(&self, scope: &str) -> Result<Option<Duration>, MemoryError> {
        let mut conn = self.conn.clone();
        let mut pttl = redis::cmd("PTTL");
        pttl.arg(self.circuit(scope));
        let left: i64 = run("cooling", pttl.query_async(&mut conn)).await?;
        Ok((left > 0).then(|| Duration::from_millis(left as u64)))
    }
}

/// One round trip, bounded by [`OP_TIMEOUT`], its failure as a [`MemoryError`].
async fn run<T>(op: &'static str, call: impl Future<Output = Result<T, redis::RedisError>>) -> Result<T, MemoryError> {
    match tokio::time::timeout(OP_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(MemoryError::Redis {
            op,
            message: e.to_string(),
        }),
        Err(_) => Err(MemoryError::Redis {
            op,
            message: format!("no answer within {OP_TIMEOUT:?}"),
        }),
    }
}
