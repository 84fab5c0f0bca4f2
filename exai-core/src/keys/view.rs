//! This process's copy of the keys and their meters. Loaded the first time a request is
//! authenticated, then refreshed every [`POLL`](super::handle::POLL): the generation counter is read, the keys
//! reloaded only when it moved, the meters of the current periods read every time. Checks read
//! this copy, never the store. If the store stops answering, the last copy stays in force (a
//! revoked key stays revoked) and the failure is logged once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::period::{Period, minute_id};
use super::store::{KeyStore, Meter, Meters};
use super::types::{KeyError, StoredKey};

/// The meter ids of `now`: each budget period's, and the minute's.
pub(crate) fn meter_ids(now: OffsetDateTime) -> Vec<String> {
    let mut ids: Vec<String> = Period::ALL.iter().map(|p| p.id(now)).collect();
    ids.push(minute_id(now));
    ids
}

#[derive(Default)]
struct State {
    loaded: bool,
    generation: u64,
    by_name: HashMap<String, Arc<StoredKey>>,
    by_hash: HashMap<String, Arc<StoredKey>>,
    /// Keys are required even with none left (one was made or deleted, see `store.rs`).
    required: bool,
    meters: Meters,
    /// The store's last failure while it fails.
    error: Option<String>,
}

/// At most one reread of the store per this long for keys this process does not know.
const MISS_REFRESH: Duration = Duration::from_millis(100);

#[derive(Default)]
pub(super) struct View {
    state: RwLock<State>,
    init: tokio::sync::OnceCell<()>,
    /// When an unknown key last made this process reread the store.
    last_miss: Mutex<Option<Instant>>,
}

impl View {
    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.write().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `first` once, the first time any caller gets here; later callers wait for it.
    pub async fn once(&self, first: impl Future<Output = ()>) {
        self.init.get_or_init(|| first).await;
    }

    /// Whether an unknown key may make this process reread the store now.
    pub fn may_refresh_on_miss(&self) -> bool {
        let mut last = self.last_miss.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < MISS_REFRESH) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    pub fn is_started(&self) -> bool {
        self.init.initialized()
    }

    /// No store: no key can exist.
    pub fn mark_empty(&self) {
        self.write(|s| s.loaded = true);
    }

    pub fn is_loaded(&self) -> bool {
        self.read(|s| s.loaded)
    }

    pub fn last_error(&self) -> String {
        self.read(|s| s.error.clone())
            .unwrap_or_else(|| "the key store has not answered yet".into())
    }

    /// Whether a caller needs a key (or the master token): a key exists, or one did.
    pub fn keys_required(&self) -> bool {
        self.read(|s| s.required || !s.by_name.is_empty())
    }

    pub fn by_hash(&self, hash: &str) -> Option<Arc<StoredKey>> {
        self.read(|s| s.by_hash.get(hash).cloned())
    }

    pub fn by_name(&self, name: &str) -> Option<Arc<StoredKey>> {
        self.read(|s| s.by_name.get(name).cloned())
    }

    pub fn meter(&self, name: &str, id: &str) -> Meter {
        self.read(|s| s.meters.get(name).and_then(|m| m.get(id)).copied().unwrap_or_default())
    }

    pub fn key_and_meters(&self, name: &str) -> Option<(StoredKey, Meters)> {
        self.read(|s| {
            let key = s.by_name.get(name)?;
            let meters = s
                .meters
                .get(name)
                .map(|m| (name.to_string(), m.clone()))
                .into_iter()
                .collect();
            Some(((**key).clone(), meters))
        })
    }

    /// Adds a call's cost and tokens to `name`'s meters for `ids`.
    pub fn add(&self, name: &str, ids: &[String], cost_usd: f64, tokens: u64) {
        self.write(|s| {
            let mine = s.meters.entry(name.to_string()).or_default();
            for id in ids {
                let m = mine.entry(id.clone()).or_default();
                m.cost_usd += cost_usd;
                m.tokens += tokens;
            }
        });
    }

    /// Rereads the store: the keys if their generation moved (or `force`), the meters always.
    pub async fn refresh(&self, store: &KeyStore, now: OffsetDateTime, force: bool) {
        if let Err(e) = self.try_refresh(store, now, force).await {
            let first = self.write(|s| s.error.replace(e.to_string()).is_none());
            if first {
                tracing::warn!(error = %e, "the key store does not answer; keys stay as last read");
            }
            metrics::counter!("exai_memory_errors_total", "op" => "keys").increment(1);
        } else if self.write(|s| s.error.take().is_some()) {
            tracing::info!("the key store answers again");
        }
    }

    async fn try_refresh(&self, store: &KeyStore, now: OffsetDateTime, force: bool) -> Result<(), KeyError> {
        let stale = force || !self.is_loaded() || store.generation().await? != self.read(|s| s.generation);
        if stale {
            let loaded = store.load().await?;
            let keys: Vec<Arc<StoredKey>> = loaded.keys.into_iter().map(Arc::new).collect();
            self.write(|s| {
                s.generation = loaded.generation;
                s.by_name = keys.iter().map(|k| (k.name.clone(), k.clone())).collect();
                s.by_hash = keys.iter().map(|k| (k.hash.clone(), k.clone())).collect();
                s.required = loaded.required;
                s.loaded = true;
            });
        }
        if !self.read(|s| s.by_name.is_empty()) {
            let ids = meter_ids(now);
            let meters = store.meters(ids.clone()).await?;
            self.write(|s| {
                // A spend added here whose write to the store is still under way must not be
                // read back out: within a period a meter only grows, so the larger value wins
                // (unless the keys themselves were reloaded — a deleted key's spend goes).
                s.meters = if stale {
                    meters
                } else {
                    larger_of(&s.meters, meters, &ids)
                };
            });
        }
        Ok(())
    }
}

/// `read` (the store's meters), each value no smaller than the one already held: spends added
/// in process whose store write has not landed yet are kept.
fn larger_of(held: &Meters, mut read: Meters, current: &[String]) -> Meters {
    for (name, periods) in held {
        let mine = read.entry(name.clone()).or_default();
        // Only the current periods: a past one is not read again, and is let go.
        for (id, m) in periods.iter().filter(|(id, _)| current.contains(id)) {
            let stored = mine.entry(id.clone()).or_default();
            if m.cost_usd > stored.cost_usd {
                stored.cost_usd = m.cost_usd;
            }
            if m.tokens > stored.tokens {
                stored.tokens = m.tokens;
            }
        }
    }
    read
}
