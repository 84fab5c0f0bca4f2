//! What the ledger counts and reports: a [`UsageRow`] of counters per provider and model, the
//! reports made of them ([`UsageReport`], and broken down per key or per deployment,
//! [`UsageBreakdown`]), whose call a line counts ([`Who`]) and how counters fold into rows
//! ([`Rows`], [`row`]). Every store — this process (`local.rs`), the SQLite file
//! (`sqlite.rs`), Redis (`redis.rs`) — gives back these.

use std::collections::BTreeMap;

use serde::Serialize;

/// Counters for one provider and model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageRow {
    /// Provider name.
    pub provider: String,
    /// Model id.
    pub model: String,
    /// Calls a provider answered.
    pub requests: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Of which reasoning.
    pub reasoning_tokens: u64,
    /// USD, from the catalog's prices (shown to 6 decimals).
    #[serde(serialize_with = "crate::usage::usd")]
    pub cost_usd: f64,
    /// Calls answered from the response cache: no provider called, nothing charged (not in
    /// `requests`, the tokens or the cost).
    pub cached: u64,
    /// What the cached calls would have cost (shown to 6 decimals).
    #[serde(serialize_with = "crate::usage::usd")]
    pub saved_usd: f64,
}

/// The ledger as reported.
#[derive(Debug, Clone, Serialize)]
pub struct UsageReport {
    /// `redis` (shared by every process) or `local` (this process only).
    pub backend: &'static str,
    /// Since this process started.
    pub since_start: Vec<UsageRow>,
    /// Today (UTC).
    pub today: Vec<UsageRow>,
    /// All time (`redis`), or since start (`local`).
    pub all_time: Vec<UsageRow>,
}

/// A key's counters for one provider and model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KeyUsageRow {
    /// The key's name.
    pub key: String,
    /// Its counters.
    #[serde(flatten)]
    pub usage: UsageRow,
}

/// A deployment's counters for one provider and model: the calls it answered or failed
/// (`cached` stays 0: the cache calls no deployment).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeploymentUsageRow {
    /// Its label (`glm#1`, `glm#eu`), never its key.
    pub deployment: String,
    /// Its counters.
    #[serde(flatten)]
    pub usage: UsageRow,
}

/// The ledger broken down beyond provider and model: per key ([`KeyUsageReport`]) or per
/// deployment ([`DeploymentUsageReport`]).
#[derive(Debug, Clone, Serialize)]
pub struct UsageBreakdown<R> {
    /// `sqlite`, `redis` (shared by every process) or `local` (this process only).
    pub backend: &'static str,
    /// Today (UTC).
    pub today: Vec<R>,
    /// All time (or since start, `local`).
    pub all_time: Vec<R>,
}

/// The ledger of calls made with keys.
pub type KeyUsageReport = UsageBreakdown<KeyUsageRow>;

/// The ledger per deployment: which endpoint and key answered.
pub type DeploymentUsageReport = UsageBreakdown<DeploymentUsageRow>;

/// A row of a breakdown, made from the name it is broken down by and its counters.
pub(super) trait SplitRow: Clone {
    fn new(name: String, usage: UsageRow) -> Self;
}

impl SplitRow for KeyUsageRow {
    fn new(key: String, usage: UsageRow) -> Self {
        Self { key, usage }
    }
}

impl SplitRow for DeploymentUsageRow {
    fn new(deployment: String, usage: UsageRow) -> Self {
        Self { deployment, usage }
    }
}

/// What the ledger is broken down by, beyond provider and model; each has its table in the
/// SQLite file and its hashes in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Split {
    /// The key a call was made with.
    Key,
    /// The deployment that answered (or failed).
    Deployment,
}

impl Split {
    /// Its table in the SQLite file.
    pub fn table(self) -> &'static str {
        match self {
            Split::Key => "key_usage",
            Split::Deployment => "deployment_usage",
        }
    }

    /// The table's column naming it.
    pub fn column(self) -> &'static str {
        match self {
            Split::Key => "key",
            Split::Deployment => "deployment",
        }
    }

    /// Its hashes' segment in Redis (`{usage}:keys:all`).
    pub fn segment(self) -> &'static str {
        match self {
            Split::Key => "keys",
            Split::Deployment => "deployments",
        }
    }
}

/// Whose call a ledger line counts: the provider and model, the deployment that answered or
/// failed (none for a cache hit), and the key it was made with, if any.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Who<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    pub deployment: Option<&'a str>,
    pub key: Option<&'a str>,
}

impl<'a> Who<'a> {
    /// The breakdowns this call counts in, with its name in each.
    pub(super) fn splits(&self) -> impl Iterator<Item = (Split, &'a str)> + use<'a> {
        let key = self.key.map(|k| (Split::Key, k));
        let deployment = self.deployment.map(|d| (Split::Deployment, d));
        key.into_iter().chain(deployment)
    }
}

/// What one finished call adds to the ledger: named counters (`requests`, `errors`,
/// `input_tokens`, `output_tokens`, `reasoning_tokens`, `cached`), its cost and what a cached
/// call saved, for whom ([`Who`]).
pub(super) struct Entry<'a> {
    pub who: Who<'a>,
    pub counters: &'a [(&'a str, i64)],
    pub cost: f64,
    pub saved: f64,
}

/// Values by provider, then model: found by `&str` without allocating on the request path.
#[derive(Debug, Clone)]
pub(super) struct ByModel<T>(BTreeMap<String, BTreeMap<String, T>>);

impl<T> Default for ByModel<T> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<T> ByModel<T> {
    pub fn get_or_insert_with(&mut self, provider: &str, model: &str, new: impl FnOnce() -> T) -> &mut T {
        if !self.0.contains_key(provider) {
            self.0.insert(provider.to_string(), BTreeMap::new());
        }
        let models = self
            .0
            .get_mut(provider)
            .unwrap_or_else(|| unreachable!("inserted above"));
        if !models.contains_key(model) {
            models.insert(model.to_string(), new());
        }
        models.get_mut(model).unwrap_or_else(|| unreachable!("inserted above"))
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.0.values().flat_map(BTreeMap::values)
    }

    pub fn into_values(self) -> impl Iterator<Item = T> {
        self.0.into_values().flat_map(BTreeMap::into_values)
    }
}

/// Rows by provider and model.
pub(super) type Rows = ByModel<UsageRow>;

/// The row of `provider`/`model` in `rows`, made empty if it is not there yet.
pub(super) fn row<'a>(rows: &'a mut Rows, provider: &str, model: &str) -> &'a mut UsageRow {
    rows.get_or_insert_with(provider, model, || UsageRow {
        provider: provider.to_string(),
        model: model.to_string(),
        ..UsageRow::default()
    })
}

/// Rows per key (or deployment) as the report lists them: by name, then provider and model.
pub(super) fn flatten<R: SplitRow>(by_name: BTreeMap<String, Rows>) -> Vec<R> {
    by_name
        .into_iter()
        .flat_map(|(name, rows)| rows.into_values().map(move |usage| R::new(name.clone(), usage)))
        .collect()
}

/// Today's UTC date (shown as `YYYY-MM-DD`). A `Date` is compared without formatting; only the
/// shared stores' keys and rows format it.
pub(super) fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}
