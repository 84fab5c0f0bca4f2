//! The values of key management: what a key may do ([`KeyLimits`]) and a change to it
//! ([`KeyUpdate`]), a key as stored ([`StoredKey`]: its name, the SHA-256 of its secret, its
//! limits) and as shown ([`KeyInfo`], [`KeyStatus`], [`CreatedKey`] with its secret, once), and
//! what managing keys can fail with ([`KeyError`]). No I/O here: `admin.rs` and `store.rs` do it.

use serde::{Deserialize, Deserializer, Serialize};
use time::{Date, OffsetDateTime};

use super::period::Period;

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
    /// The response cache answers this key's calls even when `cache.mode` is off (a record
    /// without it is read as off; it is written only when on, so older processes still read
    /// the keys that do not use it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub cache: bool,
}

fn is_false(b: &bool) -> bool {
    !b
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
    /// The response cache on or off for the key's calls.
    #[serde(default)]
    pub cache: Option<bool>,
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

    pub(super) fn apply(self, limits: &mut KeyLimits) {
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
        if let Some(cache) = self.cache {
            limits.cache = cache;
        }
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
    pub(super) fn refusal(&self, now: OffsetDateTime) -> Option<String> {
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
    /// USD spent in the current period (shown to 6 decimals).
    #[serde(serialize_with = "crate::usage::usd")]
    pub spent_usd: f64,
    /// What is left of the budget, if it has one.
    #[serde(serialize_with = "crate::usage::usd_opt")]
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
    #[error("a key named {0} exists already (a revoked key keeps its name; `exai keys delete {0}` frees it)")]
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
