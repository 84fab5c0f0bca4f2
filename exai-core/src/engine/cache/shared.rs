//! The shared level of the response cache: one Redis for every daemon (`REDIS_URL` with
//! `cache.mode = exact`), below the in-process level, and the lock that lets one daemon call a
//! provider while the others wait for its reply.
//!
//! **Layout** (prefix `exai:` by default): `exai:{cache:HEX}` holds a kept reply — a format
//! byte, then the [`StoredReply`] as JSON compressed with LZ4 — with the cache's TTL;
//! `exai:{cache:HEX}:lock` names the daemon calling for that key, with a lease of
//! `cache.lease_secs`. The braces are hash tags: a reply and its lock live on one slot, so the
//! claim script below works on a Redis Cluster.
//!
//! **Across daemons**, a miss claims the key: one script reads the reply and, when there is
//! none, takes the lock (`SET NX PX`). The daemon that took it calls the provider and renews
//! the lease every third of it while the call runs; it keeps the reply (which writes both
//! levels), then lets the lock go. Every other daemon claims again every [`POLL`] until it
//! finds the reply, or finds the lock gone with no reply — its holder died, or its reply could
//! not be kept — and takes the lock itself; it gives up at its own deadline. The lock is only
//! taken by a call that reads and keeps (not `no-cache`, not `no-store`): only a kept reply can
//! end anyone's wait. Waiters get whole replies: a stream is kept once it ended, and a daemon
//! that waited for it replays it as a stream in its caller's wire.
//!
//! **Redis failing** (down, slow, a reply it cannot read) never fails a call: a read is a miss,
//! a write is skipped, a claim calls the provider. Each failure is counted
//! (`exai_cache_redis_errors_total`) and the first of a run logged, like the memory store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::CacheKey;
use crate::error::Error;
use crate::memory::{RedisConn, renew_every};
use crate::wire::StoredReply;

/// The longest a Redis command may take before it counts as failed (a cache read must never
/// cost more than a provider call saves).
const OP_TIMEOUT: Duration = Duration::from_millis(500);

/// How often a waiting daemon claims the key again.
const POLL: Duration = Duration::from_millis(50);

/// The first byte of a kept value: the layout of what follows (LZ4, size prepended, of JSON).
const FORMAT: u8 = 1;

/// The reply of `KEYS[1]` if kept (a bulk string), else takes the lock `KEYS[2]` for `ARGV[1]`
/// for `ARGV[2]` ms (1), or says another holds it (0).
const CLAIM: &str = r"
local kept = redis.call('GET', KEYS[1])
if kept then return kept end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
";

/// Pushes the lock's expiry out, if this holder still has it.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// Lets the lock go, if this holder still has it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Why a shared-level operation did not happen (logged and counted, never returned to a
/// caller).
#[derive(Debug, thiserror::Error)]
enum SharedError {
    #[error("redis failed on {op}: {message}")]
    Redis { op: &'static str, message: String },
    #[error("redis gave no answer to {op} within {OP_TIMEOUT:?}")]
    Timeout { op: &'static str },
    #[error("a kept reply cannot be read ({0}); it is treated as a miss")]
    Corrupt(String),
}

/// The Redis level of one gateway's cache.
pub(crate) struct SharedCache {
    conn: RedisConn,
    prefix: String,
    ttl_ms: u64,
    lease: Duration,
    /// A kept value that says it is larger than this is not read (`cache.max_bytes`).
    max_bytes: u64,
    /// Names this process's locks (`pid-uuid:n`).
    holder: String,
    next: AtomicU64,
    claim: redis::Script,
    renew: Arc<redis::Script>,
    release: Arc<redis::Script>,
    /// The last operation failed (logged once per run of failures).
    degraded: AtomicBool,
}

/// What claiming a key came to.
pub(crate) enum Claim {
    /// This daemon calls; the lock is held until the guard drops.
    Held(Lock),
    /// Another daemon's reply.
    Found(StoredReply),
    /// Redis failed: this daemon calls, as if alone.
    Alone,
}

/// A held lock on a key: renewed while it lives, let go when it drops.
pub(crate) struct Lock {
    renewing: JoinHandle<()>,
    release: Option<(RedisConn, Arc<redis::Script>, String, String)>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.renewing.abort();
        // Outside a runtime (a process tearing down) the lock simply expires.
        if let (Some((mut conn, script, key, id)), Ok(runtime)) =
            (self.release.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(async move {
                let mut call = script.key(&key);
                call.arg(&id);
                // An unanswered release expires with the lease.
                let _ = tokio::time::timeout(OP_TIMEOUT, call.invoke_async::<i64>(&mut conn)).await;
            });
        }
    }
}

impl SharedCache {
    /// The level on `conn`, with the cache's TTL and `lease` for its locks.
    pub fn new(conn: RedisConn, prefix: &str, ttl: Duration, lease: Duration, max_bytes: u64) -> Self {
        Self {
            conn,
            prefix: prefix.to_string(),
            ttl_ms: (ttl.as_millis() as u64).max(1),
            lease: lease.max(Duration::from_secs(1)),
            max_bytes,
            holder: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()),
            next: AtomicU64::new(0),
            claim: redis::Script::new(CLAIM),
            renew: Arc::new(redis::Script::new(RENEW)),
            release: Arc::new(redis::Script::new(RELEASE)),
            degraded: AtomicBool::new(false),
        }
    }

    /// The kept reply of `key`, if Redis has one and answers.
    pub async fn get(&self, key: &CacheKey) -> Option<StoredReply> {
        let mut get = redis::cmd("GET");
        get.arg(reply_key(&self.prefix, key));
        let mut conn = self.conn.clone();
        let value = self.run("get", get.query_async::<Option<Vec<u8>>>(&mut conn)).await??;
        self.decode(&value)
    }

    /// Whether Redis answers now (a `PING`, counted and noted like any other operation).
    pub async fn ping(&self) -> bool {
        let ping = redis::cmd("PING");
        let mut conn = self.conn.clone();
        self.run("ping", ping.query_async::<()>(&mut conn)).await.is_some()
    }

    /// Keeps `reply` under `key` for the cache's TTL (skipped, and counted, when Redis fails).
    pub async fn put(&self, key: &CacheKey, reply: &StoredReply) {
        let Some(value) = pack(reply) else {
            return;
        };
        let mut set = redis::cmd("SET");
        set.arg(reply_key(&self.prefix, key))
            .arg(value)
            .arg("PX")
            .arg(self.ttl_ms);
        let mut conn = self.conn.clone();
        self.run("set", set.query_async::<()>(&mut conn)).await;
    }

    /// Claims `key` for this daemon's call, waiting while another daemon holds it, until
    /// `deadline` (when this caller's time is up, and how long it had).
    pub async fn claim(&self, key: &CacheKey, deadline: (Instant, Duration)) -> Result<Claim, Error> {
        let reply_key = reply_key(&self.prefix, key);
        let lock_key = format!("{reply_key}:lock");
        let id = format!("{}:{}", self.holder, self.next.fetch_add(1, Ordering::Relaxed));
        let lease_ms = self.lease.as_millis() as u64;
        loop {
            let mut call = self.claim.key(&reply_key);
            call.key(&lock_key).arg(&id).arg(lease_ms);
            let mut conn = self.conn.clone();
            match self.run("claim", call.invoke_async::<redis::Value>(&mut conn)).await {
                None => return Ok(Claim::Alone),
                Some(redis::Value::BulkString(value)) => {
                    return Ok(match self.decode(&value) {
                        Some(reply) => Claim::Found(reply),
                        None => Claim::Alone,
                    });
                }
                Some(redis::Value::Int(1)) => return Ok(Claim::Held(self.hold(lock_key, id))),
                Some(_) => {}
            }
            if Instant::now() + POLL >= deadline.0 {
                return Err(Error::DeadlineExceeded { after: deadline.1 });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A held lock, renewed every third of the lease until it drops.
    fn hold(&self, key: String, id: String) -> Lock {
        let lease_ms = (self.lease.as_millis() as u64).to_string();
        let renewing = renew_every(
            self.lease / 3,
            OP_TIMEOUT,
            self.conn.clone(),
            self.renew.clone(),
            key.clone(),
            vec![id.clone(), lease_ms],
        );
        Lock {
            renewing,
            release: Some((self.conn.clone(), self.release.clone(), key, id)),
        }
    }

    /// A kept value read back (`None`, counted, when it cannot be).
    fn decode(&self, value: &[u8]) -> Option<StoredReply> {
        self.note("decode", unpack(value, self.max_bytes))
    }

    /// Runs one Redis command, bounded by [`OP_TIMEOUT`]; `None` when it failed.
    async fn run<T>(&self, op: &'static str, command: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
        let result = match tokio::time::timeout(OP_TIMEOUT, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(SharedError::Redis {
                op,
                message: e.to_string(),
            }),
            Err(_) => Err(SharedError::Timeout { op }),
        };
        self.note(op, result)
    }

    /// Notes an operation's outcome: a failure is counted and starts the degraded state (logged
    /// once); the first success after it ends it (logged once).
    fn note<T>(&self, op: &'static str, result: Result<T, SharedError>) -> Option<T> {
        match result {
            Ok(value) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("redis answers again; the shared cache is back");
                }
                Some(value)
            }
            Err(error) => {
                metrics::counter!("exai_cache_redis_errors_total", "op" => op).increment(1);
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "the shared cache failed; replies are cached in this process only until it answers");
                }
                None
            }
        }
    }
}

/// `exai:{cache:HEX}`: one hash tag per key, shared by its lock.
fn reply_key(prefix: &str, key: &CacheKey) -> String {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{{cache:{hex}}}")
}

/// A reply as it is kept: the format byte, then its JSON compressed with its size prepended.
fn pack(reply: &StoredReply) -> Option<Vec<u8>> {
    let json = serde_json::to_vec(reply).ok()?;
    let mut value = vec![FORMAT];
    value.extend(lz4_flex::compress_prepend_size(&json));
    Some(value)
}

/// A kept value read back; one that says it unpacks to more than `max_bytes` is refused unread.
fn unpack(value: &[u8], max_bytes: u64) -> Result<StoredReply, SharedError> {
    let packed = match value.split_first() {
        Some((&FORMAT, packed)) => packed,
        Some((format, _)) => return Err(SharedError::Corrupt(format!("unknown format {format}"))),
        None => return Err(SharedError::Corrupt("empty value".into())),
    };
    let size = packed
        .get(..4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| SharedError::Corrupt("no size".into()))?;
    if u64::from(size) > max_bytes {
        return Err(SharedError::Corrupt(format!("{size} bytes, over cache.max_bytes")));
    }
    let json = lz4_flex::decompress_size_prepended(packed).map_err(|e| SharedError::Corrupt(e.to_string()))?;
    serde_json::from_slice(&json).map_err(|e| SharedError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> StoredReply {
        StoredReply {
            model: "glm-4.6".into(),
            text: "the same answer ".repeat(100),
            reasoning: String::new(),
            finish_reason: "stop".into(),
            usage: crate::request::Usage::default(),
        }
    }

    #[test]
    fn a_kept_value_is_compressed_and_reads_back() {
        let json = serde_json::to_vec(&reply()).unwrap_or_default();
        let value = pack(&reply()).unwrap_or_default();
        assert!(value.len() < json.len() / 4, "{} of {}", value.len(), json.len());
        assert_eq!(unpack(&value, 1 << 20).ok(), Some(reply()));
    }

    #[test]
    fn an_unreadable_value_is_refused() {
        let value = pack(&reply()).unwrap_or_default();
        assert!(unpack(&value, 100).is_err(), "larger than max_bytes");
        assert!(unpack(&[], 1 << 20).is_err());
        assert!(unpack(&[9, 1, 2], 1 << 20).is_err(), "an unknown format");
        assert!(unpack(&[FORMAT, 3, 0, 0, 0, 1], 1 << 20).is_err(), "cut short");
    }

    #[test]
    fn a_reply_and_its_lock_share_one_hash_tag() {
        let key = reply_key("exai:", &[0xab; 32]);
        assert_eq!(key, format!("exai:{{cache:{}}}", "ab".repeat(32)));
    }
}
