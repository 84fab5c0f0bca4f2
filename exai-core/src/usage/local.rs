//! This process's figures: every finished call folded into rows since start, today (UTC), per
//! key and per deployment, and counted in the metrics (`exai_requests_total`, `exai_tokens_total`, … and the
//! per-key `exai_key_*`). They answer the report when no shared store does.

use std::collections::BTreeMap;
use std::time::Duration;

use super::report::{ByModel, Rows, Split, UsageRow, Who, row, today};
use crate::request::Usage;

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
pub(super) struct Local {
    pub since_start: Rows,
    /// Today's rows; `day` says which day they are for.
    today: Rows,
    day: Option<time::Date>,
    metrics: ByModel<ModelMetrics>,
    /// Since start, per key and per deployment (then provider and model).
    splits: BTreeMap<Split, BTreeMap<String, Rows>>,
}

impl Local {
    /// Today's rows, starting afresh when the UTC date has changed.
    pub fn today(&mut self) -> &mut Rows {
        let now = Some(today());
        if self.day != now {
            self.day = now;
            self.today = Rows::default();
        }
        &mut self.today
    }

    /// Since start, per key or per deployment (by name, then provider and model).
    pub fn split(&self, split: Split) -> BTreeMap<String, Rows> {
        self.splits.get(&split).cloned().unwrap_or_default()
    }

    /// Applies `f` to the since-start and today rows of `who`'s provider and model, and to its
    /// rows per key and per deployment.
    fn apply(&mut self, who: &Who<'_>, f: impl Fn(&mut UsageRow)) {
        f(row(&mut self.since_start, who.provider, who.model));
        f(row(self.today(), who.provider, who.model));
        for (split, name) in who.splits() {
            let by_name = self.splits.entry(split).or_default();
            if !by_name.contains_key(name) {
                by_name.insert(name.to_string(), Rows::default());
            }
            if let Some(rows) = by_name.get_mut(name) {
                f(row(rows, who.provider, who.model));
            }
        }
    }

    /// Counts a completed call that took `elapsed`.
    pub fn success(&mut self, who: &Who<'_>, usage: Usage, cost: f64, elapsed: Duration) {
        let (provider, model) = (who.provider, who.model);
        let m = self
            .metrics
            .get_or_insert_with(provider, model, || ModelMetrics::new(provider, model));
        m.requests_ok.increment(1);
        m.duration.record(elapsed.as_secs_f64());
        m.input_tokens.increment(usage.input_tokens);
        m.output_tokens.increment(usage.output_tokens);
        m.cost_usd.increment(cost);
        self.apply(who, |r| {
            r.requests += 1;
            r.input_tokens += usage.input_tokens;
            r.output_tokens += usage.output_tokens;
            r.reasoning_tokens += usage.reasoning_tokens;
            r.cost_usd += cost;
        });
        if let Some(key) = who.key {
            key_metrics(key, "ok", usage, cost);
        }
    }

    /// Counts a call the response cache answered (which would have cost `saved`).
    pub fn cached(&mut self, who: &Who<'_>, saved: f64) {
        self.apply(who, |r| {
            r.cached += 1;
            r.saved_usd += saved;
        });
        if let Some(key) = who.key {
            key_metrics(key, "cached", Usage::default(), 0.0);
        }
    }

    /// Counts a failed call.
    pub fn error(&mut self, who: &Who<'_>) {
        self.apply(who, |r| r.errors += 1);
        if let Some(key) = who.key {
            key_metrics(key, "error", Usage::default(), 0.0);
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
