//! The in-process store: a moka cache of threads, bounded in count, with the conversation TTL
//! reset on every save. The embedded default, and the Redis store's fallback mirror.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;

use super::{MemoryError, MemoryStore, StoredResponse, Thread, ThreadSummary};
use crate::actors::session::now_ms;

/// Threads kept in process at most; the least recently used go first.
const CAPACITY: u64 = 10_000;

/// The in-process store.
#[derive(Clone)]
pub struct LocalStore {
    threads: Cache<String, Arc<Thread>>,
    /// Kept responses (each checked against its own expiry when read).
    responses: Cache<String, Arc<StoredResponse>>,
}

impl LocalStore {
    /// A store whose threads expire `ttl` after their last save.
    pub fn new(ttl: Duration) -> Self {
        Self {
            threads: Cache::builder().max_capacity(CAPACITY).time_to_live(ttl).build(),
            responses: Cache::builder().max_capacity(CAPACITY).build(),
        }
    }
}

#[async_trait]
impl MemoryStore for LocalStore {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn load(&self, id: &str) -> Result<Option<Thread>, MemoryError> {
        Ok(self.threads.get(id).await.map(|t| (*t).clone()))
    }

    async fn save(&self, thread: &Thread) -> Result<(), MemoryError> {
        self.threads.insert(thread.id.clone(), Arc::new(thread.clone())).await;
        Ok(())
    }

    async fn list(&self, limit: usize) -> Result<Vec<ThreadSummary>, MemoryError> {
        let mut all: Vec<ThreadSummary> = self.threads.iter().map(|(_, t)| t.summary()).collect();
        all.sort_by_key(|t| std::cmp::Reverse(t.updated_ms));
        all.truncate(limit);
        Ok(all)
    }

    async fn ping(&self) -> Result<(), MemoryError> {
        Ok(())
    }

    async fn put_response(&self, response: &StoredResponse) -> Result<(), MemoryError> {
        self.responses
            .insert(response.id.clone(), Arc::new(response.clone()))
            .await;
        Ok(())
    }

    async fn get_response(&self, id: &str) -> Result<Option<StoredResponse>, MemoryError> {
        Ok(self
            .responses
            .get(id)
            .await
            .filter(|r| r.expires_ms > now_ms())
            .map(|r| (*r).clone()))
    }

    async fn delete_response(&self, id: &str) -> Result<bool, MemoryError> {
        let live = self.get_response(id).await?.is_some();
        self.responses.invalidate(id).await;
        Ok(live)
    }
}
