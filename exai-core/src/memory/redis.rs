//! The Redis store.
//!
//! Layout (prefix `exai:` by default): `exai:{thread:ID}` holds the thread as JSON with the
//! conversation TTL, reset on every save; `exai:{threads}` is a sorted set of ids by last update,
//! for listings (entries whose thread expired are pruned when listed). The braces are hash tags:
//! on a cluster, each thread lives on its own slot, and no command spans two slots (a save is
//! two commands, thread then index).
//!
//! Redis going away must not take requests with it. Every operation is bounded by a timeout; a
//! failure is logged, counted (`exai_memory_errors_total`) and absorbed by the local mirror, which
//! holds every thread this process saved. Loads take whichever copy is newer, so a conversation
//! continued during an outage is written back whole once Redis returns. The connection manager
//! reconnects by itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::redis_conn::RedisConn;
use super::{LocalStore, MemoryError, MemoryStore, StoredResponse, Thread, ThreadSummary};
use crate::config::MemoryConfig;
use async_trait::async_trait;

/// Longest any single Redis operation may take before it counts as failed.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// The Redis store with its local mirror.
pub struct RedisStore {
    conn: RedisConn,
    prefix: String,
    ttl_secs: u64,
    mirror: LocalStore,
    degraded: AtomicBool,
}

impl RedisStore {
    /// Creates the store. The connection is made lazily, so a Redis that is down at start only
    /// degrades memory to the mirror until it comes up.
    pub(crate) fn new(conn: RedisConn, config: &MemoryConfig) -> Result<Self, MemoryError> {
        Ok(Self {
            conn,
            prefix: config.key_prefix.clone(),
            ttl_secs: config.ttl.as_secs().max(1),
            mirror: LocalStore::new(config.ttl),
            degraded: AtomicBool::new(false),
        })
    }

    /// The connection, shared with the usage ledger.
    pub(crate) fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// The key prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the last operation failed (memory is running on the local mirror).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    fn thread_key(&self, id: &str) -> String {
        format!("{}{{thread:{id}}}", self.prefix)
    }

    fn response_key(&self, id: &str) -> String {
        format!("{}{{response:{id}}}", self.prefix)
    }

    fn index_key(&self) -> String {
        format!("{}{{threads}}", self.prefix)
    }

    async fn run<T: redis::FromRedisValue>(&self, op: &'static str, cmd: &redis::Pipeline) -> Result<T, MemoryError> {
        let mut conn = self.conn.clone();
        let result = match tokio::time::timeout(OP_TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(MemoryError::Redis {
                op,
                message: e.to_string(),
            }),
            Err(_) => Err(MemoryError::Redis {
                op,
                message: format!("no answer within {OP_TIMEOUT:?}"),
            }),
        };
        match &result {
            Ok(_) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("redis is reachable again");
                }
            }
            Err(e) => {
                metrics::counter!("exai_memory_errors_total", "op" => op).increment(1);
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "redis failed; conversations continue in process until it returns");
                }
            }
        }
        result
    }
}

#[async_trait]
impl MemoryStore for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn load(&self, id: &str) -> Result<Option<Thread>, MemoryError> {
        let local = self.mirror.load(id).await?;
        let mut pipe = redis::pipe();
        pipe.get(self.thread_key(id));
        let remote = match self.run::<(Option<String>,)>("get", &pipe).await {
            Ok((Some(json),)) => Some(serde_json::from_str::<Thread>(&json).map_err(|e| MemoryError::Corrupt {
                id: id.to_string(),
                message: e.to_string(),
            })?),
            Ok((None,)) => None,
            Err(_) => None,
        };
        Ok(match (local, remote) {
            (Some(l), Some(r)) => Some(if l.updated_ms > r.updated_ms { l } else { r }),
            (l, r) => r.or(l),
        })
    }

    async fn save(&self, thread: &Thread) -> Result<(), MemoryError> {
        self.mirror.save(thread).await?;
        let json = serde_json::to_string(thread).map_err(|e| MemoryError::Corrupt {
            id: thread.id.clone(),
            message: e.to_string(),
        })?;
        // Two commands, never one spanning two slots: the thread, then the index.
        let mut set = redis::pipe();
        set.set_ex(self.thread_key(&thread.id), json, self.ttl_secs).ignore();
        let mut index = redis::pipe();
        index.zadd(self.index_key(), &thread.id, thread.updated_ms).ignore();
        // The mirror has it; a Redis failure was logged and counted in `run`.
        if self.run::<()>("set", &set).await.is_ok() {
            let _ = self.run::<()>("index", &index).await;
        }
        Ok(())
    }

    async fn put_response(&self, response: &StoredResponse) -> Result<(), MemoryError> {
        self.mirror.put_response(response).await?;
        let json = serde_json::to_string(response).map_err(|e| MemoryError::Corrupt {
            id: response.id.clone(),
            message: e.to_string(),
        })?;
        let ttl_ms = response
            .expires_ms
            .saturating_sub(crate::actors::session::now_ms())
            .max(1);
        let mut set = redis::pipe();
        set.pset_ex(self.response_key(&response.id), json, ttl_ms).ignore();
        // The mirror has it; a Redis failure was logged and counted in `run`.
        let _ = self.run::<()>("set", &set).await;
        Ok(())
    }

    async fn get_response(&self, id: &str) -> Result<Option<StoredResponse>, MemoryError> {
        let mut get = redis::pipe();
        get.get(self.response_key(id));
        match self.run::<(Option<String>,)>("get", &get).await {
            Ok((Some(json),)) => serde_json::from_str(&json).map(Some).map_err(|e| MemoryError::Corrupt {
                id: id.to_string(),
                message: e.to_string(),
            }),
            // Deleted or expired everywhere (another daemon may have deleted it).
            Ok((None,)) => Ok(None),
            Err(_) => self.mirror.get_response(id).await,
        }
    }

    async fn delete_response(&self, id: &str) -> Result<bool, MemoryError> {
        let mirrored = self.mirror.delete_response(id).await?;
        let mut del = redis::pipe();
        del.del(self.response_key(id));
        match self.run::<(u64,)>("del", &del).await {
            Ok((n,)) => Ok(n > 0),
            Err(_) => Ok(mirrored),
        }
    }

    async fn list(&self, limit: usize) -> Result<Vec<ThreadSummary>, MemoryError> {
        let mut pipe = redis::pipe();
        pipe.zrevrange(self.index_key(), 0, limit.saturating_sub(1) as isize);
        let Ok((ids,)) = self.run::<(Vec<String>,)>("list", &pipe).await else {
            return self.mirror.list(limit).await;
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One read per thread (each on its own slot), all at once.
        let reads = ids.iter().map(|id| {
            let mut get = redis::pipe();
            get.get(self.thread_key(id));
            async move { self.run::<(Option<String>,)>("list", &get).await.map(|(v,)| v) }
        });
        let Ok(values) = futures::future::join_all(reads)
            .await
            .into_iter()
            .collect::<Result<Vec<Option<String>>, _>>()
        else {
            return self.mirror.list(limit).await;
        };
        let mut out = Vec::new();
        let mut expired = Vec::new();
        for (id, value) in ids.iter().zip(values) {
            match value.and_then(|json| serde_json::from_str::<Thread>(&json).ok()) {
                Some(thread) => out.push(thread.summary()),
                None => expired.push(id.clone()),
            }
        }
        if !expired.is_empty() {
            let mut prune = redis::pipe();
            prune.zrem(self.index_key(), expired).ignore();
            let _ = self.run::<()>("prune", &prune).await;
        }
        Ok(out)
    }

    async fn probe(&self) -> Result<(), MemoryError> {
        let key = format!("{}{{probe:{}}}", self.prefix, uuid::Uuid::new_v4());
        let mut pipe = redis::pipe();
        pipe.set_ex(&key, "ok", 10).ignore().get(&key).del(&key).ignore();
        let (value,): (Option<String>,) = self.run("probe", &pipe).await?;
        match value.as_deref() {
            Some("ok") => Ok(()),
            other => Err(MemoryError::Redis {
                op: "probe",
                message: format!("wrote 'ok' but read back {other:?}"),
            }),
        }
    }

    async fn ping(&self) -> Result<(), MemoryError> {
        let mut pipe = redis::pipe();
        pipe.cmd("PING");
        self.run::<(String,)>("ping", &pipe).await.map(|_| ())
    }
}
