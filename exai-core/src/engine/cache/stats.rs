//! What the response cache did since this process started, and what it holds now: the status
//! page's figures ([`CacheStats`]), counted beside the `/metrics` series they mirror.
//!
//! Each call is counted once: a **hit** (a kept reply answered it: the local level, the shared
//! level, or another daemon's reply waited for), a **miss** (it went to a provider), or
//! **coalesced** (it followed an identical call in flight, which was itself a hit or a miss).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::ResponseCache;

/// This process's counts (the metrics carry labels; these are the totals the page shows).
#[derive(Default)]
pub(super) struct Counts {
    hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
}

impl Counts {
    pub fn hit(&self, front_door: impl Into<metrics::SharedString>) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("exai_cache_hits_total", "front_door" => front_door.into()).increment(1);
    }

    pub fn miss(&self, front_door: impl Into<metrics::SharedString>) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("exai_cache_misses_total", "front_door" => front_door.into()).increment(1);
    }

    pub fn coalesced(&self) {
        self.coalesced.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("exai_coalesced_total").increment(1);
    }
}

/// The response cache as the status page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CacheStats {
    /// `exact`: every call is cached; `off`: only the calls of keys created with `--cache`.
    pub mode: &'static str,
    /// Calls answered from the cache since this process started.
    pub hits: u64,
    /// Calls the cache could not answer, sent to a provider.
    pub misses: u64,
    /// Calls that waited for an identical call in flight instead of calling a provider.
    pub coalesced: u64,
    /// Bytes held by the in-process level, as weighed against `max_bytes`.
    pub bytes: u64,
    /// `cache.max_bytes`.
    pub max_bytes: u64,
    /// Replies held by the in-process level.
    pub entries: u64,
    /// The Redis level every daemon shares.
    pub shared: SharedCacheStatus,
}

/// The state of the cache's Redis level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SharedCacheStatus {
    /// No Redis level (no `REDIS_URL`).
    Off,
    /// Redis answers.
    Ok,
    /// Redis does not answer: replies are cached in this process only until it does again.
    Degraded,
}

impl ResponseCache {
    /// What the cache did and holds now (pending evictions applied first; Redis pinged).
    pub async fn stats(&self) -> CacheStats {
        self.entries.run_pending_tasks().await;
        let counts = &self.counts;
        CacheStats {
            mode: if self.every_call { "exact" } else { "off" },
            hits: counts.hits.load(Ordering::Relaxed),
            misses: counts.misses.load(Ordering::Relaxed),
            coalesced: counts.coalesced.load(Ordering::Relaxed),
            bytes: self.entries.weighted_size(),
            max_bytes: self.max_bytes,
            entries: self.entries.entry_count(),
            shared: match &self.shared {
                None => SharedCacheStatus::Off,
                Some(level) if level.ping().await => SharedCacheStatus::Ok,
                Some(_) => SharedCacheStatus::Degraded,
            },
        }
    }
}
