//! API keys: who may call a shared gateway, with what limits, and what each has spent.
//!
//! A team shares one exai by giving each person or service a key (`exai keys create NAME`). A
//! key's secret (`exai-sk-…`) is shown once; the state store keeps only its SHA-256, its
//! [`KeyLimits`], when it was created and last used, and what it spent per period. Every front
//! door authenticates with [`Gateway::authenticate`](crate::Gateway::authenticate) and opens its
//! session with the [`Caller`] it got; the session then admits each call the same way whichever
//! door it came through (`admit.rs`): revoked or expired keys, the model and tool allow-lists,
//! the budget, tokens and requests per minute, calls in flight.
//!
//! - `store.rs`: the keys in the SQLite file or in Redis, and their meters.
//! - `view.rs`: this process's copy of the keys and meters, polled every
//!   [`POLL`] so that a change made anywhere (another daemon, `exai keys` in a shell) applies
//!   everywhere within a second, without reading the store on the hot path.
//! - `admit.rs`: the checks of one call, and the per-key limiters (shared through Redis when
//!   keys live there).
//! - `period.rs`: budget periods; `secret.rs`: generating and hashing secrets.
//!
//! Once any key exists, a request without a valid key is refused; the master token
//! (`EXAI_WS_TOKEN`) passes every check. With no key and no master token the gateway is open, as
//! it was before keys.

mod admit;
mod period;
mod secret;
mod store;
mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use time::{Date, OffsetDateTime};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use period::Period;

pub(crate) use admit::{Ask, KeyPass, narrow_plan};
pub(crate) use store::KeyStore;

/// SHA-256 of `text`, hex (also used to shorten long tool names).
pub(crate) fn sha256_hex(text: &str) -> String {
    secret::hash(text)
}

use crate::actors::shared::SharedLimits;
use crate::config::{Config, MemoryBackend, Secret};
use crate::error::Error;
use crate::memory::{Db, MemoryError, connect_redis};
use view::View;

/// How often a process rereads the keys' generation and meters.
pub(crate) const POLL: Duration = Duration::from_millis(250);

/// The wall clock budgets are reckoned by (replaceable in tests).
pub(crate) type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// What a key may do. `None` everywhere means no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLimits {
    /// Most USD the key may spend in its period.
    #[serde(default)]
    pub budget_usd: Option<f64>,
    /// The budget's period (a month by default).
    #[serde(default)]
    pub period: Period,
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Tokens (input and output) per minute.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Calls in flight at once.
    #[serde(default)]
    pub max_inflight: Option<u32>,
    /// The models it may use (ids, aliases or `provider/model`); `None` allows every model.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// The MCP tools it may call; `None` allows every tool.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// The last day (UTC) the key works; refused from the day after.
    #[serde(default, with = "date_opt")]
    pub expires: Option<Date>,
}

/// A change to a key's limits: only the fields given change; `null` removes a limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUpdate {
    /// New budget, or `Some(None)` for none.
    #[serde(default, deserialize_with = "double")]
    pub budget_usd: Option<Option<f64>>,
    /// New budget period.
    #[serde(default)]
    pub period: Option<Period>,
    /// New requests per minute.
    #[serde(default, deserialize_with = "double")]
    pub rpm: Option<Option<u32>>,
    /// New tokens per minute.
    #[serde(default, deserialize_with = "double")]
    pub tpm: Option<Option<u64>>,
    /// New calls in flight.
    #[serde(default, deserialize_with = "double")]
    pub max_inflight: Option<Option<u32>>,
    /// New model allow-list.
    #[serde(default, deserialize_with = "double")]
    pub models: Option<Option<Vec<String>>>,
    /// New tool allow-list.
    #[serde(default, deserialize_with = "double")]
    pub tools: Option<Option<Vec<String>>>,
    /// New expiry date.
    #[serde(default, deserialize_with = "double_date")]
    pub expires: Option<Option<Date>>,
}

/// `null` as `Some(None)`, absent as `None`.
fn double<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn double_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Date>>, D::Error> {
    date_opt::deserialize(d).map(Some)
}

/// Dates as `YYYY-MM-DD`.
mod date_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    pub fn serialize<S: Serializer>(date: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
        match date {
            Some(d) => s.serialize_str(&d.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => super::parse_date(&s).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// A date as `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s.trim(), format).map_err(|e| format!("'{s}' is not a date (YYYY-MM-DD): {e}"))
}

impl KeyUpdate {
    /// `limits` with this update applied.
    pub fn applied_to(self, mut limits: KeyLimits) -> KeyLimits {
        self.apply(&mut limits);
        limits
    }

    fn apply(self, limits: &mut KeyLimits) {
        fn set<T>(field: &mut Option<T>, new: Option<Option<T>>) {
            if let Some(v) = new {
                *field = v;
            }
        }
        set(&mut limits.budget_usd, self.budget_usd);
        if let Some(p) = self.period {
            limits.period = p;
        }
        set(&mut limits.rpm, self.rpm);
        set(&mut limits.tpm, self.tpm);
        set(&mut limits.max_inflight, self.max_inflight);
        set(&mut limits.models, self.models);
        set(&mut limits.tools, self.tools);
        set(&mut limits.expires, self.expires);
    }
}

/// A key as stored: its name, the SHA-256 of its secret, its limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredKey {
    pub name: String,
    pub hash: String,
    pub limits: KeyLimits,
    pub created_ms: i64,
    #[serde(default)]
    pub revoked_ms: Option<i64>,
    /// Kept apart in the store (written as calls come), filled in on load.
    #[serde(skip)]
    pub last_used_ms: Option<i64>,
}

impl StoredKey {
    /// Why the key no longer works at `now`, if it doesn't.
    fn refusal(&self, now: OffsetDateTime) -> Option<String> {
        if self.revoked_ms.is_some() {
            return Some(format!("key {} was revoked", self.name));
        }
        match self.limits.expires {
            Some(last) if now.date() > last => Some(format!("key {} expired after {last}", self.name)),
            _ => None,
        }
    }
}

/// Whether a key works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// It works.
    Active,
    /// Revoked: refused everywhere.
    Revoked,
    /// Past its expiry date.
    Expired,
}

/// A key as shown: never its secret.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Its name.
    pub name: String,
    /// Whether it works.
    pub status: KeyStatus,
    /// Its limits.
    #[serde(flatten)]
    pub limits: KeyLimits,
    /// When it was created (RFC 3339).
    pub created: String,
    /// When it was last used, if ever.
    pub last_used: Option<String>,
    /// When it was revoked, if it was.
    pub revoked: Option<String>,
    /// USD spent in the current period.
    pub spent_usd: f64,
    /// What is left of the budget, if it has one.
    pub remaining_usd: Option<f64>,
    /// When the period's spend starts again from zero (`None` for `total`).
    pub period_resets: Option<String>,
    /// Tokens used in the current minute.
    pub tokens_this_minute: u64,
}

/// A key just created or rotated, with its secret — shown this once.
#[derive(Clone, Serialize)]
pub struct CreatedKey {
    /// The key.
    #[serde(flatten)]
    pub info: KeyInfo,
    /// The secret to give its user. Not stored anywhere.
    pub secret: String,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("info", &self.info)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// What key management can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key of that name exists (perhaps revoked: names are never reused).
    #[error("a key named {0} exists already (names are not reused, even after revoke)")]
    Exists(String),
    /// No key of that name.
    #[error("no key named {0}; `exai keys list` shows the keys")]
    NotFound(String),
    /// The name or a limit is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// Keys live in the state store, and there is none.
    #[error("keys need a state store: set memory.backend (EXAI_MEMORY) to sqlite or redis")]
    NoStore,
    /// The store failed.
    #[error("the key store failed: {0}")]
    Store(String),
}

impl From<MemoryError> for KeyError {
    fn from(e: MemoryError) -> Self {
        Self::Store(e.to_string())
    }
}

/// Who is calling: a key (its name), the master token, or anyone (no key exists and no master
/// token is set). Two callers are equal when they are the same key with the same secret (a
/// rotated key is another caller), so front doors can keep a session per caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Caller(Who);

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
enum Who {
    #[default]
    Open,
    Master,
    Key {
        name: Arc<str>,
        hash: Arc<str>,
    },
}

impl Caller {
    /// The key's name, when a key is calling.
    pub fn key_name(&self) -> Option<&str> {
        match &self.0 {
            Who::Key { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Whether the master token was presented.
    pub fn is_master(&self) -> bool {
        matches!(self.0, Who::Master)
    }

    fn key(name: &str, hash: &str) -> Self {
        Self(Who::Key {
            name: Arc::from(name),
            hash: Arc::from(hash),
        })
    }
}

fn check_name(name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::Invalid(format!(
            "'{name}' is not a key name: 1 to 64 letters, digits, '-', '_', '.' or '@', starting with a letter or digit"
        )))
    }
}

fn check_limits(limits: &KeyLimits) -> Result<(), KeyError> {
    if limits.budget_usd.is_some_and(|b| !b.is_finite() || b < 0.0) {
        return Err(KeyError::Invalid("the budget must be a positive number of USD".into()));
    }
    for (what, zero) in [
        ("rpm", limits.rpm == Some(0)),
        ("tpm", limits.tpm == Some(0)),
        ("max-inflight", limits.max_inflight == Some(0)),
    ] {
        if zero {
            return Err(KeyError::Invalid(format!(
                "{what} must be at least 1 (revoke the key to refuse it everything)"
            )));
        }
    }
    Ok(())
}

/// The keys of one gateway (or of `exai keys`): management, and the checks every call passes.
/// Cheap to clone.
#[derive(Clone)]
pub struct Keys {
    inner: Arc<KeysInner>,
}

struct KeysInner {
    store: Option<KeyStore>,
    clock: Clock,
    view: View,
    limiters: admit::Limiters,
    /// Per-key requests per minute and calls in flight across daemons (keys in Redis).
    shared: Option<Arc<SharedLimits>>,
    /// Keys used since the last poll, and when.
    used: Mutex<HashMap<String, i64>>,
    writes: TaskTracker,
    stop: CancellationToken,
    /// The minute old meters were last dropped in.
    pruned: std::sync::atomic::AtomicI64,
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
                limiters: admit::Limiters::default(),
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
    pub(crate) fn stop(&self) {
        self.inner.stop.cancel();
    }

    fn store(&self) -> Result<&KeyStore, KeyError> {
        self.inner.store.as_ref().ok_or(KeyError::NoStore)
    }

    fn now(&self) -> OffsetDateTime {
        (self.inner.clock)()
    }

    /// Creates a key; its secret is in the answer and nowhere else.
    pub async fn create(&self, name: &str, limits: KeyLimits) -> Result<CreatedKey, KeyError> {
        check_name(name)?;
        check_limits(&limits)?;
        let secret = secret::generate().map_err(|e| KeyError::Store(format!("no randomness: {e}")))?;
        let key = StoredKey {
            name: name.to_string(),
            hash: secret::hash(&secret),
            limits,
            created_ms: self.now().unix_timestamp() * 1000,
            revoked_ms: None,
            last_used_ms: None,
        };
        self.store()?.insert(&key).await?;
        self.changed().await;
        Ok(CreatedKey {
            info: self.describe(&key, &Default::default()),
            secret,
        })
    }

    /// Every key, by name (never a secret).
    pub async fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        let store = self.store()?;
        let loaded = store.load().await?;
        let meters = store.meters(view::meter_ids(self.now())).await?;
        Ok(loaded.keys.iter().map(|k| self.describe(k, &meters)).collect())
    }

    /// One key.
    pub async fn show(&self, name: &str) -> Result<KeyInfo, KeyError> {
        self.list()
            .await?
            .into_iter()
            .find(|k| k.name == name)
            .ok_or_else(|| KeyError::NotFound(name.to_string()))
    }

    async fn stored(&self, name: &str) -> Result<StoredKey, KeyError> {
        self.store()?
            .load()
            .await?
            .keys
            .into_iter()
            .find(|k| k.name == name)
            .ok_or_else(|| KeyError::NotFound(name.to_string()))
    }

    /// Changes a key's limits; every process applies them within a second.
    pub async fn update(&self, name: &str, update: KeyUpdate) -> Result<KeyInfo, KeyError> {
        let mut key = self.stored(name).await?;
        update.apply(&mut key.limits);
        check_limits(&key.limits)?;
        self.store()?.replace(&key).await?;
        self.changed().await;
        self.show(name).await
    }

    /// Revokes a key: refused everywhere within a second. Its record (and what it spent) stays.
    pub async fn revoke(&self, name: &str) -> Result<KeyInfo, KeyError> {
        let mut key = self.stored(name).await?;
        if key.revoked_ms.is_none() {
            key.revoked_ms = Some(self.now().unix_timestamp() * 1000);
            self.store()?.replace(&key).await?;
            self.changed().await;
        }
        self.show(name).await
    }

    /// Gives a key a new secret (the old one stops working within a second); its limits and
    /// spend stay.
    pub async fn rotate(&self, name: &str) -> Result<CreatedKey, KeyError> {
        let mut key = self.stored(name).await?;
        if key.revoked_ms.is_some() {
            return Err(KeyError::Invalid(format!(
                "key {name} is revoked; create a new key instead"
            )));
        }
        let secret = secret::generate().map_err(|e| KeyError::Store(format!("no randomness: {e}")))?;
        key.hash = secret::hash(&secret);
        self.store()?.replace(&key).await?;
        self.changed().await;
        Ok(CreatedKey {
            info: self.show(name).await?,
            secret,
        })
    }

    /// After a change made here: this process sees it at once (others at their next poll).
    async fn changed(&self) {
        if self.inner.view.is_started()
            && let Some(store) = &self.inner.store
        {
            self.inner.view.refresh(store, self.now(), true).await;
        }
    }

    /// A key as shown, with its meters.
    fn describe(&self, key: &StoredKey, meters: &store::Meters) -> KeyInfo {
        let now = self.now();
        let mine = meters.get(&key.name);
        let meter = |id: String| mine.and_then(|m| m.get(&id)).copied().unwrap_or_default();
        let spent = meter(key.limits.period.id(now)).cost_usd;
        let status = match key.refusal(now) {
            None => KeyStatus::Active,
            Some(_) if key.revoked_ms.is_some() => KeyStatus::Revoked,
            Some(_) => KeyStatus::Expired,
        };
        let at = |ms: i64| {
            OffsetDateTime::from_unix_timestamp(ms / 1000)
                .map(period::rfc3339)
                .unwrap_or_default()
        };
        KeyInfo {
            name: key.name.clone(),
            status,
            limits: key.limits.clone(),
            created: at(key.created_ms),
            last_used: key.last_used_ms.map(at),
            revoked: key.revoked_ms.map(at),
            spent_usd: spent,
            remaining_usd: key.limits.budget_usd.map(|b| (b - spent).max(0.0)),
            period_resets: key.limits.period.resets_at(now).map(period::rfc3339),
            tokens_this_minute: meter(period::minute_id(now)).tokens,
        }
    }

    /// The caller's key as it stands now (for the `status` tool).
    pub(crate) fn info(&self, caller: &Caller) -> Option<KeyInfo> {
        let Who::Key { name, .. } = &caller.0 else {
            return None;
        };
        let (key, meters) = self.inner.view.key_and_meters(name)?;
        Some(self.describe(&key, &meters))
    }

    /// Who presented `token` (`None` when nothing was presented). `master` is the master token.
    pub(crate) async fn authenticate(&self, token: Option<&str>, master: Option<&Secret>) -> Result<Caller, Error> {
        if let (Some(t), Some(m)) = (token, master)
            && secret::same(t, m.expose())
        {
            return Ok(Caller(Who::Master));
        }
        self.start().await;
        let view = &self.inner.view;
        if let Some(t) = token.filter(|t| t.starts_with(secret::PREFIX)) {
            let hash = secret::hash(t);
            let mut found = view.by_hash(&hash);
            // A key made a moment ago elsewhere: reread now rather than at the next poll (at
            // most every MISS_REFRESH, so unknown keys cannot hammer the store).
            if found.is_none()
                && let Some(store) = &self.inner.store
                && view.may_refresh_on_miss()
            {
                view.refresh(store, self.now(), false).await;
                found = view.by_hash(&hash);
            }
            if let Some(key) = found.filter(|k| secret::same(&k.hash, &hash)) {
                if let Some(reason) = key.refusal(self.now()) {
                    metrics::counter!("exai_key_refusals_total", "key" => key.name.clone(), "reason" => "revoked_or_expired")
                        .increment(1);
                    return Err(Error::Unauthorized { reason });
                }
                return Ok(Caller::key(&key.name, &key.hash));
            }
        }
        if !view.is_loaded() {
            return Err(Error::KeysUnavailable(view.last_error()));
        }
        if master.is_none() && !view.any_key() {
            return Ok(Caller::default());
        }
        Err(Error::Unauthorized {
            reason: match token {
                None | Some("") => "no key: send Authorization: Bearer <your exai key>".into(),
                Some(_) => "unknown key: send Authorization: Bearer <your exai key>".into(),
            },
        })
    }

    /// Loads the keys the first time they are needed and starts polling them.
    async fn start(&self) {
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

    /// Adds a finished call's cost and tokens to its key's meters, here at once and in the store
    /// off the request path.
    pub(crate) fn record(&self, name: &str, cost_usd: f64, tokens: u64) {
        let now = self.now();
        let ids = view::meter_ids(now);
        self.inner.view.add(name, &ids, cost_usd, tokens);
        let Some(store) = self.inner.store.clone() else {
            return;
        };
        let mut periods: Vec<(String, Option<Duration>)> = Period::ALL.iter().map(|p| (p.id(now), p.keep())).collect();
        periods.push((period::minute_id(now), Some(Duration::from_secs(180))));
        let name = name.to_string();
        let now_ms = now.unix_timestamp() * 1000;
        self.inner.writes.spawn(async move {
            if let Err(e) = store.add(&name, periods, cost_usd, tokens, now_ms).await {
                metrics::counter!("exai_memory_errors_total", "op" => "key_meter").increment(1);
                tracing::warn!(key = %name, error = %e, "cannot record the key's spend");
            }
        });
    }
}
