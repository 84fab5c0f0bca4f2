//! The usage ledger: requests, errors, tokens and cost per provider and model.
//!
//! This is what answers "are my credits actually being used?". Every finished call is recorded
//! in process (since this process started, and per UTC day) and added to shared counters so that
//! every exai process — stdio servers, the daemon, the CLI — contributes to one ledger: in the
//! SQLite file (`usage` rows per day and `all`), or in Redis (`exai:usage:all` and
//! `exai:usage:day:YYYY-MM-DD` hashes whose fields are `provider|model|counter`). Shared writes
//! happen off the request path; a failure is counted and the in-process figures remain. The
//! SQLite file's writes are committed in groups (`batch.rs`).

mod batch;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio_util::task::TaskTracker;

use crate::memory::{Db, RedisConn};
use crate::request::Usage;

/// A key's counters for one provider and model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KeyUsageRow {
    /// The key's name.
    pub key: String,
    /// Its counters.
    #[serde(flatten)]
    pub usage: UsageRow,
}

/// The ledger of calls made with keys.
#[derive(Debug, Clone, Serialize)]
pub struct KeyUsageReport {
    /// `sqlite`, `redis` (shared by every process) or `local` (this process only).
    pub backend: &'static str,
    /// Today (UTC).
    pub today: Vec<KeyUsageRow>,
    /// All time (or since start, `local`).
    pub all_time: Vec<KeyUsageRow>,
}

/// Day keys are kept this long in Redis.
const DAY_TTL_SECS: i64 = 40 * 24 * 3600;

/// Counters for one provider and model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageRow {
    /// Provider name.
    pub provider: String,
    /// Model id.
    pub model: String,
    /// Calls that completed.
    pub requests: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Of which reasoning.
    pub reasoning_tokens: u64,
    /// USD, from the catalog's prices.
    pub cost_usd: f64,
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

/// Values by provider, then model: found by `&str` without allocating on the request path.
#[derive(Debug, Clone)]
struct ByModel<T>(BTreeMap<String, BTreeMap<String, T>>);

impl<T> Default for ByModel<T> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<T> ByModel<T> {
    fn get_or_insert_with(&mut self, provider: &str, model: &str, new: impl FnOnce() -> T) -> &mut T {
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

    fn values(&self) -> impl Iterator<Item = &T> {
        self.0.values().flat_map(BTreeMap::values)
    }

    fn into_values(self) -> impl Iterator<Item = T> {
        self.0.into_values().flat_map(BTreeMap::into_values)
    }
}

type Rows = ByModel<UsageRow>;

/// The metric handles of one provider and model, registered once.
struct ModelMetrics {
    requests_ok: metrics::Counter,
    duration: metrics::Histogram,
    input_tokens: metrics::Counter,
    output_tokens: metrics::Counter,
    cost_usd: metrics::Gauge,
}

impl ModelMetrics {
    fn new(provider: &str, model: &str) -> Self {
        let labels = [("provider", provider.to_string()), ("model", model.to_string())];
        let direction = |d: &'static str| [&labels[..], &[("direction", d.to_string())]].concat();
        let status = [&labels[..], &[("status", "ok".to_string())]].concat();
        Self {
            requests_ok: metrics::counter!("exai_requests_total", &status),
            duration: metrics::histogram!("exai_request_duration_seconds", "provider" => provider.to_string()),
            input_tokens: metrics::counter!("exai_tokens_total", &direction("input")),
            output_tokens: metrics::counter!("exai_tokens_total", &direction("output")),
            cost_usd: metrics::gauge!("exai_cost_usd_total", &labels),
        }
    }
}

#[derive(Default)]
struct Local {
    since_start: Rows,
    /// Today's rows; `day` says which day they are for.
    today: Rows,
    day: Option<time::Date>,
    metrics: ByModel<ModelMetrics>,
    /// Since start, per key (then provider and model).
    by_key: BTreeMap<String, Rows>,
}

impl Local {
    /// Today's rows, starting afresh when the UTC date has changed.
    fn today(&mut self) -> &mut Rows {
        let now = Some(today());
        if self.day != now {
            self.day = now;
            self.today = Rows::default();
        }
        &mut self.today
    }

    /// Applies `f` to the since-start and today rows of `provider`/`model`.
    fn apply(&mut self, provider: &str, model: &str, f: impl Fn(&mut UsageRow)) {
        f(row(&mut self.since_start, provider, model));
        f(row(self.today(), provider, model));
    }
}

/// The ledger.
/// Where the shared ledger lives.
pub(crate) enum SharedLedger {
    /// Redis hashes under this prefix.
    Redis(RedisConn, String),
    /// The SQLite file's `usage` table.
    Sqlite(Db),
}

pub(crate) struct UsageLedger {
    local: Mutex<Local>,
    shared: Option<SharedLedger>,
    /// The gateway's tracker: shared writes run off the request path, and `shutdown` waits for
    /// them, so a short-lived process (`exai chat`) loses none.
    writes: TaskTracker,
    /// The SQLite file's writes, committed in groups.
    sqlite_batch: Option<batch::SqliteBatch>,
}

/// Today's UTC date (shown as `YYYY-MM-DD`). A `Date` is compared without formatting; only Redis
/// keys format it.
fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

fn row<'a>(rows: &'a mut Rows, provider: &str, model: &str) -> &'a mut UsageRow {
    rows.get_or_insert_with(provider, model, || UsageRow {
        provider: provider.to_string(),
        model: model.to_string(),
        ..UsageRow::default()
    })
}

impl UsageLedger {
    pub fn new(shared: Option<SharedLedger>, writes: TaskTracker) -> Self {
        let sqlite_batch = match &shared {
            Some(SharedLedger::Sqlite(db)) => Some(batch::SqliteBatch::new(db.clone())),
            _ => None,
        };
        Self {
            local: Mutex::new(Local::default()),
            shared,
            writes,
            sqlite_batch,
        }
    }

    /// Records a completed call that took `elapsed`, made with `key` if any.
    pub fn success(&self, provider: &str, model: &str, key: Option<&str>, usage: Usage, cost: f64, elapsed: Duration) {
        if let Ok(mut local) = self.local.lock() {
            let m = local
                .metrics
                .get_or_insert_with(provider, model, || ModelMetrics::new(provider, model));
            m.requests_ok.increment(1);
            m.duration.record(elapsed.as_secs_f64());
            m.input_tokens.increment(usage.input_tokens);
            m.output_tokens.increment(usage.output_tokens);
            m.cost_usd.increment(cost);
            let add = |r: &mut UsageRow| {
                r.requests += 1;
                r.input_tokens += usage.input_tokens;
                r.output_tokens += usage.output_tokens;
                r.reasoning_tokens += usage.reasoning_tokens;
                r.cost_usd += cost;
            };
            local.apply(provider, model, add);
            if let Some(key) = key {
                add(row(local.by_key.entry(key.to_string()).or_default(), provider, model));
                key_metrics(key, "ok", usage, cost);
            }
        }
        self.persist(
            provider,
            model,
            key,
            &[
                ("requests", 1),
                ("input_tokens", usage.input_tokens as i64),
                ("output_tokens", usage.output_tokens as i64),
                ("reasoning_tokens", usage.reasoning_tokens as i64),
            ],
            cost,
        );
    }

    /// Records a failed call, made with `key` if any.
    pub fn error(&self, provider: &str, model: &str, key: Option<&str>) {
        if let Ok(mut local) = self.local.lock() {
            local.apply(provider, model, |r| r.errors += 1);
            if let Some(key) = key {
                row(local.by_key.entry(key.to_string()).or_default(), provider, model).errors += 1;
                key_metrics(key, "error", Usage::default(), 0.0);
            }
        }
        self.persist(provider, model, key, &[("errors", 1)], 0.0);
    }

    fn persist(&self, provider: &str, model: &str, key: Option<&str>, counters: &[(&str, i64)], cost: f64) {
        let (conn, prefix) = match &self.shared {
            None => return,
            Some(SharedLedger::Sqlite(_)) => {
                if let Some(batch) = &self.sqlite_batch {
                    let count = |name: &str| counters.iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| *v);
                    let counts = [
                        "requests",
                        "errors",
                        "input_tokens",
                        "output_tokens",
                        "reasoning_tokens",
                    ]
                    .map(count);
                    let delta = batch::Delta { counts, cost };
                    batch.add(&self.writes, today().to_string(), key, provider, model, delta);
                }
                return;
            }
            Some(SharedLedger::Redis(conn, prefix)) => (conn, prefix),
        };
        let mut conn = conn.clone();
        // One hash tag for the ledger: its pipeline stays on one slot of a cluster.
        let all = format!("{prefix}{{usage}}:all");
        let day = format!("{prefix}{{usage}}:day:{}", today());
        let (keys_all, keys_day) = (
            format!("{prefix}{{usage}}:keys:all"),
            format!("{prefix}{{usage}}:keys:day:{}", today()),
        );
        let mut targets = vec![(&all, String::new()), (&day, String::new())];
        if let Some(key) = key {
            targets.push((&keys_all, format!("{key}|")));
            targets.push((&keys_day, format!("{key}|")));
        }
        let mut pipe = redis::pipe();
        for (hash, field_prefix) in &targets {
            for (name, n) in counters {
                pipe.hincr(*hash, format!("{field_prefix}{provider}|{model}|{name}"), *n)
                    .ignore();
            }
            if cost > 0.0 {
                pipe.cmd("HINCRBYFLOAT")
                    .arg(*hash)
                    .arg(format!("{field_prefix}{provider}|{model}|cost_usd"))
                    .arg(cost)
                    .ignore();
            }
        }
        pipe.expire(&day, DAY_TTL_SECS).ignore();
        if key.is_some() {
            pipe.expire(&keys_day, DAY_TTL_SECS).ignore();
        }
        self.writes.spawn(async move {
            let sent = tokio::time::timeout(std::time::Duration::from_secs(2), pipe.query_async::<()>(&mut conn)).await;
            if !matches!(sent, Ok(Ok(()))) {
                metrics::counter!("exai_memory_errors_total", "op" => "usage").increment(1);
            }
        });
    }

    /// The ledger now.
    pub async fn report(&self) -> UsageReport {
        let (since_start, today_local) = match self.local.lock() {
            Ok(mut l) => (
                l.since_start.values().cloned().collect::<Vec<_>>(),
                l.today().values().cloned().collect(),
            ),
            Err(_) => (Vec::new(), Vec::new()),
        };
        if let Some(SharedLedger::Sqlite(db)) = &self.shared {
            let day = today().to_string();
            let read = db
                .call("usage report", move |conn| {
                    Ok((read_sqlite(conn, "all")?, read_sqlite(conn, &day)?))
                })
                .await;
            match read {
                Ok((all_time, today)) => {
                    return UsageReport {
                        backend: "sqlite",
                        since_start,
                        today,
                        all_time,
                    };
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the usage ledger; showing this process's figures"),
            }
        }
        if let Some(SharedLedger::Redis(conn, prefix)) = &self.shared {
            let mut conn = conn.clone();
            let mut pipe = redis::pipe();
            pipe.hgetall(format!("{prefix}{{usage}}:all"))
                .hgetall(format!("{prefix}{{usage}}:day:{}", today()));
            let read = tokio::time::timeout(std::time::Duration::from_secs(2), pipe.query_async(&mut conn)).await;
            if let Ok(Ok((all, day))) = read {
                let (all, day): (BTreeMap<String, String>, BTreeMap<String, String>) = (all, day);
                return UsageReport {
                    backend: "redis",
                    since_start,
                    today: parse_rows(&day),
                    all_time: parse_rows(&all),
                };
            }
        }
        UsageReport {
            backend: "local",
            all_time: since_start.clone(),
            since_start,
            today: today_local,
        }
    }
}

/// A key's metrics: requests by status, tokens, cost — labelled with its name, never its secret.
fn key_metrics(key: &str, status: &'static str, usage: Usage, cost: f64) {
    let name = key.to_string();
    metrics::counter!("exai_key_requests_total", "key" => name.clone(), "status" => status).increment(1);
    if status == "ok" {
        metrics::counter!("exai_key_tokens_total", "key" => name.clone(), "direction" => "input")
            .increment(usage.input_tokens);
        metrics::counter!("exai_key_tokens_total", "key" => name.clone(), "direction" => "output")
            .increment(usage.output_tokens);
        metrics::gauge!("exai_key_cost_usd_total", "key" => name).increment(cost);
    }
}

impl UsageLedger {
    /// The ledger of calls made with keys.
    pub async fn report_by_key(&self) -> KeyUsageReport {
        let flatten = |by_key: BTreeMap<String, Rows>| -> Vec<KeyUsageRow> {
            by_key
                .into_iter()
                .flat_map(|(key, rows)| {
                    rows.into_values().map(move |usage| KeyUsageRow {
                        key: key.clone(),
                        usage,
                    })
                })
                .collect()
        };
        match &self.shared {
            Some(SharedLedger::Sqlite(db)) => {
                let day = today().to_string();
                let read = db
                    .call("usage by key", move |conn| {
                        Ok((read_sqlite_keys(conn, "all")?, read_sqlite_keys(conn, &day)?))
                    })
                    .await;
                match read {
                    Ok((all_time, today)) => {
                        return KeyUsageReport {
                            backend: "sqlite",
                            today,
                            all_time,
                        };
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the usage ledger; showing this process's figures")
                    }
                }
            }
            Some(SharedLedger::Redis(conn, prefix)) => {
                let mut conn = conn.clone();
                let mut pipe = redis::pipe();
                pipe.hgetall(format!("{prefix}{{usage}}:keys:all"))
                    .hgetall(format!("{prefix}{{usage}}:keys:day:{}", today()));
                let read = tokio::time::timeout(Duration::from_secs(2), pipe.query_async(&mut conn)).await;
                if let Ok(Ok((all, day))) = read {
                    let (all, day): (BTreeMap<String, String>, BTreeMap<String, String>) = (all, day);
                    return KeyUsageReport {
                        backend: "redis",
                        today: flatten(parse_key_rows(&day)),
                        all_time: flatten(parse_key_rows(&all)),
                    };
                }
            }
            None => {}
        }
        let since_start = self.local.lock().map(|l| l.by_key.clone()).unwrap_or_default();
        let rows = flatten(since_start);
        KeyUsageReport {
            backend: "local",
            today: rows.clone(),
            all_time: rows,
        }
    }
}

/// The file's rows per key for `day` (or `all`).
fn read_sqlite_keys(conn: &rusqlite::Connection, day: &str) -> rusqlite::Result<Vec<KeyUsageRow>> {
    let mut statement = conn.prepare_cached(
        "SELECT provider, model, requests, errors, input_tokens, output_tokens, reasoning_tokens, cost_usd, key
         FROM key_usage WHERE day = ?1 ORDER BY key, provider, model",
    )?;
    statement
        .query_map([day], |r| {
            Ok(KeyUsageRow {
                usage: usage_row(r)?,
                key: r.get(8)?,
            })
        })?
        .collect()
}

/// Rows per key from `key|provider|model|counter` hash fields (key names have no `|`).
fn parse_key_rows(fields: &BTreeMap<String, String>) -> BTreeMap<String, Rows> {
    let mut per_key: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (field, value) in fields {
        if let Some((key, rest)) = field.split_once('|') {
            per_key
                .entry(key.to_string())
                .or_default()
                .insert(rest.to_string(), value.clone());
        }
    }
    per_key
        .into_iter()
        .map(|(key, fields)| {
            let mut rows = Rows::default();
            for r in parse_rows(&fields) {
                let (provider, model) = (r.provider.clone(), r.model.clone());
                *row(&mut rows, &provider, &model) = r;
            }
            (key, rows)
        })
        .collect()
}

/// The file's rows for `day` (or `all`).
fn read_sqlite(conn: &rusqlite::Connection, day: &str) -> rusqlite::Result<Vec<UsageRow>> {
    let mut statement = conn.prepare_cached(
        "SELECT provider, model, requests, errors, input_tokens, output_tokens, reasoning_tokens, cost_usd
         FROM usage WHERE day = ?1 ORDER BY provider, model",
    )?;
    statement.query_map([day], usage_row)?.collect()
}

/// A row's counters, from the columns provider, model, requests, errors, input_tokens,
/// output_tokens, reasoning_tokens, cost_usd (in that order, first).
fn usage_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UsageRow> {
    Ok(UsageRow {
        provider: r.get(0)?,
        model: r.get(1)?,
        requests: r.get::<_, i64>(2)? as u64,
        errors: r.get::<_, i64>(3)? as u64,
        input_tokens: r.get::<_, i64>(4)? as u64,
        output_tokens: r.get::<_, i64>(5)? as u64,
        reasoning_tokens: r.get::<_, i64>(6)? as u64,
        cost_usd: r.get(7)?,
    })
}

fn parse_rows(fields: &BTreeMap<String, String>) -> Vec<UsageRow> {
    let mut rows = Rows::default();
    for (field, value) in fields {
        // Provider names have no `|`; model ids might.
        let Some((provider, rest)) = field.split_once('|') else {
            continue;
        };
        let Some((model, counter)) = rest.rsplit_once('|') else {
            continue;
        };
        let r = row(&mut rows, provider, model);
        let n = value.parse::<u64>().unwrap_or(0);
        match counter {
            "requests" => r.requests = n,
            "errors" => r.errors = n,
            "input_tokens" => r.input_tokens = n,
            "output_tokens" => r.output_tokens = n,
            "reasoning_tokens" => r.reasoning_tokens = n,
            "cost_usd" => r.cost_usd = value.parse().unwrap_or(0.0),
            _ => {}
        }
    }
    rows.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_ledger_adds_up_per_provider_and_model() {
        let l = UsageLedger::new(None, TaskTracker::new());
        let u = Usage {
            input_tokens: 10,
            output_tokens: 5,
            reasoning_tokens: 1,
        };
        l.success("glm", "glm-4.6", None, u, 0.5, Duration::from_millis(5));
        l.success("glm", "glm-4.6", None, u, 0.25, Duration::from_millis(5));
        l.error("kimi", "kimi-k2-0905-preview", None);
        let r = l.report().await;
        assert_eq!(r.backend, "local");
        let glm = r
            .today
            .iter()
            .find(|r| r.provider == "glm")
            .cloned()
            .unwrap_or_default();
        assert_eq!((glm.requests, glm.input_tokens, glm.output_tokens), (2, 20, 10));
        assert!((glm.cost_usd - 0.75).abs() < 1e-9);
        assert_eq!(
            r.since_start.iter().find(|r| r.provider == "kimi").map(|r| r.errors),
            Some(1)
        );
    }

    #[test]
    fn rows_are_rebuilt_from_hash_fields_even_with_pipes_in_model_names() {
        let fields = BTreeMap::from([
            ("glm|glm-4.6|requests".to_string(), "3".to_string()),
            ("glm|glm-4.6|cost_usd".to_string(), "0.125".to_string()),
            ("local|org|model|errors".to_string(), "2".to_string()),
        ]);
        let rows = parse_rows(&fields);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].requests, rows[0].cost_usd), (3, 0.125));
        assert_eq!(
            (rows[1].provider.as_str(), rows[1].model.as_str(), rows[1].errors),
            ("local", "org|model", 2)
        );
    }
}
