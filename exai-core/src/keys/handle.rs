//! The [`Keys`] handle: the store the keys live in, this process's copy of them (`view.rs`), the
//! per-key limiters, and the poll that keeps the copy fresh. Opening the store and the poll's
//! life live here; what the handle does is in `admin.rs` (managing keys), `auth.rs` (who is
//! calling), `admit.rs` (the checks of one call) and `meter.rs` (what calls spent).

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admit::Limiters;
use super::period;
use super::store::KeyStore;
use super::types::KeyError;
use super::view::View;
use crate::actors::shared::SharedLimits;
use crate::config::{Config, MemoryBackend};
use crate::memory::{Db, connect_redis};

/// How often a process rereads the keys' generation and meters.
pub(crate) const POLL: Duration = Duration::from_millis(250);

/// The wall clock budgets are reckoned by (replaceable in tests).
pub(crate) type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The keys of one gateway (or of `exai keys`): management, and the checks every call passes.
/// Cheap to clone.
#[derive(Clone)]
pub struct Keys {
    pub(super) inner: Arc<KeysInner>,
}

pub(super) struct KeysInner {
    pub(super) store: Option<KeyStore>,
    clock: Clock,
    pub(super) view: View,
    pub(super) limiters: Limiters,
    /// Per-key requests per minute and calls in flight across processes (keys in Redis, or in
    /// the SQLite file with `limits.shared` on).
    pub(super) shared: Option<Arc<SharedLimits>>,
    /// Keys used since the last poll, and when.
    pub(super) used: Mutex<HashMap<String, i64>>,
    /// The gateway's tracker: meter writes run off the request path, and `shutdown` waits for them.
    pub(super) writes: TaskTracker,
    stop: CancellationToken,
    /// The minute old meters were last dropped in.
    pruned: AtomicI64,
}

impl Drop for KeysInner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl KeysInner {
    /// One poll: the keys and meters reread, when keys were last used written.
    async fn poll(&self) {
        let Some(store) = &self.store else { return };
        let now = (self.clock)();
        self.view.refresh(store, now, false).await;
        // Once a minute: meters of ended periods go.
        let minute = now.unix_timestamp().div_euclid(60);
        if self.pruned.swap(minute, std::sync::atomic::Ordering::Relaxed) != minute {
            let old_minute = period::minute_id(now - time::Duration::minutes(3));
            if let Err(e) = store.prune(now.unix_timestamp() * 1000, old_minute).await {
                tracing::debug!(error = %e, "cannot drop old key meters");
            }
        }
        let used: Vec<(String, i64)> = self.used.lock().map(|mut u| u.drain().collect()).unwrap_or_default();
        if !used.is_empty()
            && let Err(e) = store.touch(used).await
        {
            tracing::debug!(error = %e, "cannot record when keys were last used");
        }
    }
}

pub(crate) fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

impl Keys {
    pub(crate) fn new(
        store: Option<KeyStore>,
        shared: Option<Arc<SharedLimits>>,
        clock: Clock,
        writes: TaskTracker,
    ) -> Self {
        Self {
            inner: Arc::new(KeysInner {
                store,
                clock,
                view: View::default(),
                limiters: Limiters::default(),
                shared,
                used: Mutex::default(),
                writes,
                stop: CancellationToken::new(),
                pruned: Default::default(),
            }),
        }
    }

    /// The keys of the state store `config` selects, for managing them (`exai keys`).
    pub async fn open(config: &Config) -> Result<Self, KeyError> {
        let store = match (config.memory.backend, &config.memory.redis_url) {
            (MemoryBackend::Redis, Some(url)) => KeyStore::Redis {
                conn: connect_redis(url).await?,
                prefix: config.memory.key_prefix.clone(),
            },
            (MemoryBackend::Sqlite, _) => {
                let path = config.memory.sqlite_path.clone();
                let db = tokio::task::spawn_blocking(move || Db::open(&path))
                    .await
                    .map_err(|e| KeyError::Store(e.to_string()))??;
                KeyStore::Sqlite(db)
            }
            _ => return Err(KeyError::NoStore),
        };
        Ok(Self::new(Some(store), None, system_clock(), TaskTracker::new()))
    }

    /// Stops the poll (the gateway is shutting down).
    /// Rereads the keys from the store now (a configuration reload).
    pub(crate) async fn reload(&self) {
        if let Some(store) = &self.inner.store {
            self.inner.view.refresh(store, self.now(), true).await;
        }
    }

    pub(crate) fn stop(&self) {
        self.inner.stop.cancel();
    }

    pub(super) fn store(&self) -> Result<&KeyStore, KeyError> {
        self.inner.store.as_ref().ok_or(KeyError::NoStore)
    }

    pub(super) fn now(&self) -> OffsetDateTime {
        (self.inner.clock)()
    }

    /// Loads the keys the first time they are needed and starts polling them.
    pub(super) async fn start(&self) {
        let Some(store) = &self.inner.store else {
            self.inner.view.mark_empty();
            return;
        };
        let first = async {
            self.inner.view.refresh(store, self.now(), true).await;
            let weak = Arc::downgrade(&self.inner);
            let stop = self.inner.stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(POLL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let Some(inner) = weak.upgrade() else { return };
                    inner.poll().await;
                }
            });
        };
        self.inner.view.once(first).await;
    }
}
