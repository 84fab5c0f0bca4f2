//! The in-process store: a moka cache of threads, bounded in bytes, with the conversation TTL
//! reset on every save, and one of kept responses, bounded in bytes, each gone at its own
//! `expires_ms`. The embedded default, and the Redis and SQLite stores' fallback mirror.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache;

use super::{MemoryError, MemoryStore, StoredResponse, Thread, ThreadSummary};
use crate::actors::session::now_ms;

/// Bytes of threads (their turns' text, files and images) held in process at most; the least
/// recently used go first. A count bounded nothing: one thread of long tool outputs or images
/// can weigh megabytes.
const THREAD_BYTES: u64 = 256 << 20;

/// What a thread and each of its turns weigh beyond their strings (the entry, the vectors).
const THREAD_OVERHEAD: usize = 256;
const TURN_OVERHEAD: usize = 128;

/// Bytes of kept responses (as JSON) held in process at most: a response carries its whole
/// conversation, so a count alone bounds nothing.
const RESPONSE_BYTES: u64 = 64 << 20;

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
            threads: Cache::builder()
                .max_capacity(THREAD_BYTES)
                .weigher(|id: &String, t: &Arc<Thread>| thread_weight(id, t))
                .time_to_live(ttl)
                .build(),
            responses: Cache::builder()
                .max_capacity(RESPONSE_BYTES)
                .weigher(|id: &String, r: &Arc<StoredResponse>| weight(id, r))
                .expire_after(UntilExpiry)
                .build(),
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

/// A thread's weight against [`THREAD_BYTES`]: its strings, and an overhead per thread and turn.
fn thread_weight(id: &str, thread: &Thread) -> u32 {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let turns: usize = thread
        .turns
        .iter()
        .map(|t| {
            let lists: usize = t.files.iter().chain(&t.images).map(String::len).sum();
            TURN_OVERHEAD + t.content.len() + lists + opt(&t.provider) + opt(&t.model) + opt(&t.tool)
        })
        .sum();
    let bytes = THREAD_OVERHEAD + id.len() + opt(&thread.parent) + opt(&thread.tool) + opt(&thread.owner) + turns;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// A kept response's weight against [`RESPONSE_BYTES`]: its id and its JSON, in bytes.
fn weight(id: &str, response: &StoredResponse) -> u32 {
    let mut json = ByteCount(0);
    let bytes = serde_json::to_writer(&mut json, response).map_or(0, |()| json.0);
    u32::try_from(id.len() + bytes).unwrap_or(u32::MAX)
}

/// Counts what is written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A kept response leaves the cache at its own `expires_ms`.
struct UntilExpiry;

impl UntilExpiry {
    fn left(response: &StoredResponse) -> Option<Duration> {
        Some(Duration::from_millis(response.expires_ms.saturating_sub(now_ms())))
    }
}

impl Expiry<String, Arc<StoredResponse>> for UntilExpiry {
    fn expire_after_create(&self, _: &String, response: &Arc<StoredResponse>, _: Instant) -> Option<Duration> {
        Self::left(response)
    }

    fn expire_after_update(
        &self,
        _: &String,
        response: &Arc<StoredResponse>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Self::left(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(id: &str, text_bytes: usize) -> StoredResponse {
        StoredResponse {
            id: id.to_string(),
            owner: None,
            expires_ms: now_ms() + 3_600_000,
            response: serde_json::json!({"id": id}),
            items: vec![serde_json::Value::String("x".repeat(text_bytes))],
        }
    }

    #[tokio::test]
    async fn kept_responses_are_bounded_in_bytes_not_only_in_count() -> Result<(), MemoryError> {
        let store = LocalStore::new(Duration::from_secs(60));
        // 80 responses of 1 MiB: more than RESPONSE_BYTES.
        for n in 0..80 {
            store.put_response(&response(&format!("resp_{n}"), 1 << 20)).await?;
        }
        store.responses.run_pending_tasks().await;
        assert!(store.responses.weighted_size() <= RESPONSE_BYTES);
        assert!(store.responses.entry_count() < 80);
        Ok(())
    }

    fn thread(id: &str, text_bytes: usize) -> Thread {
        Thread {
            id: id.to_string(),
            parent: None,
            tool: None,
            owner: None,
            created_ms: now_ms(),
            updated_ms: now_ms(),
            turns: vec![super::super::Turn {
                role: crate::request::Role::User,
                content: "x".repeat(text_bytes),
                provider: None,
                model: None,
                files: Vec::new(),
                images: Vec::new(),
                usage: None,
                tool: None,
                timestamp_ms: now_ms(),
            }],
        }
    }

    #[tokio::test]
    async fn threads_are_bounded_in_bytes_and_the_least_recently_used_go() -> Result<(), MemoryError> {
        let store = LocalStore::new(Duration::from_secs(60));
        // 300 threads of 1 MiB each: more than THREAD_BYTES.
        for n in 0..300 {
            store.save(&thread(&format!("t{n}"), 1 << 20)).await?;
        }
        store.threads.run_pending_tasks().await;
        assert!(store.threads.weighted_size() <= THREAD_BYTES);
        assert!(store.threads.entry_count() < 300);
        // Small ones are many: a count of 10,000 would have refused the rest.
        let small = LocalStore::new(Duration::from_secs(60));
        for n in 0..12_000 {
            small.save(&thread(&format!("s{n}"), 10)).await?;
        }
        small.threads.run_pending_tasks().await;
        assert_eq!(small.threads.entry_count(), 12_000);
        Ok(())
    }

    #[tokio::test]
    async fn a_kept_response_is_gone_once_expired() -> Result<(), MemoryError> {
        let store = LocalStore::new(Duration::from_secs(60));
        let mut expired = response("resp_old", 10);
        expired.expires_ms = now_ms().saturating_sub(1);
        store.put_response(&expired).await?;
        store.put_response(&response("resp_new", 10)).await?;
        assert!(!store.responses.contains_key("resp_old"), "expired in the cache itself");
        assert!(store.responses.contains_key("resp_new"));
        assert_eq!(store.get_response("resp_old").await?, None);
        Ok(())
    }
}
