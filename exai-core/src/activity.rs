//! What the gateway did lately, for a status page: the last 100 requests (each as one
//! [`RequestRecord`], also sent live to whoever watches), and per provider and model over the
//! last hour, requests, errors and latency percentiles, minute by minute.
//!
//! Kept in process memory, bounded: 100 records, and per model 60 one-minute buckets of counts
//! and a latency histogram (p50 and p95 are read from the histogram, to within a bucket's width:
//! bounds grow by a quarter, from 1 ms to 20 min). Recording is a short lock and no allocation
//! beyond the record itself.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::error::Error;
use crate::request::Usage;

/// How many requests the recent list keeps.
pub const RECENT: usize = 100;
/// Minutes of per-model history.
const WINDOW_MINUTES: u64 = 60;
/// Latency histogram: bucket `i` holds latencies up to `1 ms × 1.25^i`.
const BUCKETS: usize = 64;
const GROWTH: f64 = 1.25;

/// One finished request, as the status page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// When it finished (unix ms).
    pub at_ms: u64,
    /// Who asked: the front door or tool (`openai`, `anthropic`, `cli`, a tool's name…).
    pub front_door: String,
    /// The key it was made with, by name.
    pub key: Option<String>,
    /// The model asked for (`auto`, an alias, an id).
    pub model_asked: String,
    /// The provider that answered (or last failed).
    pub provider: Option<String>,
    /// The model that answered (or last failed).
    pub model: Option<String>,
    /// The deployment that answered (or last failed), by label (`glm#1`, `glm#eu`): none when
    /// no provider was called (a cache hit) or the failure came before one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// `provider/model` of each attempt that failed before the answer.
    pub fallbacks: Vec<String>,
    /// `ok`, `cached` (the response cache answered), or the error's type (`rate_limited`,
    /// `transient`, `over_capacity`…).
    pub status: String,
    /// From admission to the last byte, in milliseconds.
    pub latency_ms: f64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// USD, from the catalog's prices (shown to 6 decimals).
    #[serde(serialize_with = "crate::usage::usd")]
    pub cost_usd: f64,
}

/// One provider and model over the last hour.
#[derive(Debug, Clone, Serialize)]
pub struct ModelActivity {
    /// The provider.
    pub provider: String,
    /// The model.
    pub model: String,
    /// Requests in the window (failed ones included).
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Median latency, ms (`None` with no request).
    pub p50_ms: Option<f64>,
    /// 95th percentile latency, ms.
    pub p95_ms: Option<f64>,
    /// Per minute, oldest first: `[minute start (unix ms), requests, errors]`.
    pub minutes: Vec<(u64, u64, u64)>,
}

/// The recent requests and the last hour per model.
#[derive(Debug, Clone, Serialize)]
pub struct ActivityReport {
    /// The last requests, newest first.
    pub recent: Vec<RequestRecord>,
    /// The last hour, per provider and model.
    pub models: Vec<ModelActivity>,
}

impl RequestRecord {
    /// A request that started at `started`, asked of `model_asked` through `front_door`, with
    /// `key` if any: `ok` until told otherwise.
    pub(crate) fn new(front_door: String, model_asked: String, key: Option<String>, started: Instant) -> Self {
        Self {
            at_ms: crate::actors::session::now_ms(),
            front_door,
            key,
            model_asked,
            provider: None,
            model: None,
            deployment: None,
            fallbacks: Vec::new(),
            status: "ok".to_string(),
            latency_ms: millis(started.elapsed()),
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: 0.0,
        }
    }

    /// Who answered (after `fallbacks` failed), and what it used and cost.
    pub(crate) fn answered(
        mut self,
        provider: &str,
        model: &str,
        fallbacks: Vec<String>,
        usage: Usage,
        cost: f64,
    ) -> Self {
        self.provider = Some(provider.to_string());
        self.model = Some(model.to_string());
        self.fallbacks = fallbacks;
        self.input_tokens = usage.input_tokens;
        self.output_tokens = usage.output_tokens;
        self.cost_usd = cost;
        self
    }

    /// At `deployment` (its label).
    pub(crate) fn at(mut self, deployment: Option<&str>) -> Self {
        self.deployment = deployment.map(str::to_string);
        self
    }

    /// Whether the request was answered (by a provider, the response cache, or an identical
    /// call in flight).
    pub fn succeeded(&self) -> bool {
        matches!(self.status.as_str(), "ok" | "cached" | "coalesced")
    }

    /// Failed with `error` (its type as the status; the provider and model when a provider
    /// failed).
    pub(crate) fn failed(mut self, error: &Error) -> Self {
        self.status = crate::trace::error_type(error).to_string();
        if let Error::Provider(p) = error {
            self.provider = Some(p.provider.clone());
            self.model = Some(p.model.clone());
            self.deployment = p.deployment.clone();
        }
        self
    }
}

#[derive(Clone)]
struct Minute {
    start_ms: u64,
    requests: u64,
    errors: u64,
    latencies: [u32; BUCKETS],
}

#[derive(Default)]
struct State {
    recent: VecDeque<RequestRecord>,
    minutes: BTreeMap<(String, String), VecDeque<Minute>>,
}

/// The recorder.
pub(crate) struct Activity {
    state: Mutex<State>,
    live: broadcast::Sender<RequestRecord>,
}

fn bucket_of(latency_ms: f64) -> usize {
    if latency_ms <= 1.0 {
        return 0;
    }
    ((latency_ms.ln() / GROWTH.ln()).ceil() as usize).min(BUCKETS - 1)
}

fn upper_bound_ms(bucket: usize) -> f64 {
    GROWTH.powi(bucket as i32)
}

/// The latency at quantile `q` of `histogram`: the upper bound of the bucket it falls in.
fn quantile(histogram: &[u32; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = histogram.iter().map(|n| u64::from(*n)).sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in histogram.iter().enumerate() {
        seen += u64::from(*n);
        if seen >= rank {
            return Some((upper_bound_ms(i) * 10.0).round() / 10.0);
        }
    }
    None
}

impl Activity {
    pub fn new() -> Self {
        Self {
            state: Mutex::default(),
            live: broadcast::channel(256).0,
        }
    }

    /// Records a finished request and sends it to the watchers.
    pub fn record(&self, record: RequestRecord) {
        if let Ok(mut state) = self.state.lock() {
            if let (Some(provider), Some(model)) = (&record.provider, &record.model) {
                let minute = record.at_ms - record.at_ms % 60_000;
                let window = state.minutes.entry((provider.clone(), model.clone())).or_default();
                if window.back().is_none_or(|m| m.start_ms != minute) {
                    window.push_back(Minute {
                        start_ms: minute,
                        requests: 0,
                        errors: 0,
                        latencies: [0; BUCKETS],
                    });
                }
                while window
                    .front()
                    .is_some_and(|m| m.start_ms + WINDOW_MINUTES * 60_000 <= minute)
                {
                    window.pop_front();
                }
                if let Some(m) = window.back_mut() {
                    m.requests += 1;
                    if !record.succeeded() {
                        m.errors += 1;
                    }
                    m.latencies[bucket_of(record.latency_ms)] += 1;
                }
            }
            if state.recent.len() == RECENT {
                state.recent.pop_back();
            }
            state.recent.push_front(record.clone());
        }
        let _ = self.live.send(record);
    }

    /// The requests recorded from now on, as they finish. A watcher that falls more than 256
    /// behind misses the oldest (and is told so by the channel).
    pub fn watch(&self) -> broadcast::Receiver<RequestRecord> {
        self.live.subscribe()
    }

    /// The recent requests and the last hour per model, as of `now_ms`.
    pub fn report(&self, now_ms: u64) -> ActivityReport {
        let Ok(state) = self.state.lock() else {
            return ActivityReport {
                recent: Vec::new(),
                models: Vec::new(),
            };
        };
        let since = now_ms.saturating_sub(WINDOW_MINUTES * 60_000);
        let models = state
            .minutes
            .iter()
            .map(|((provider, model), window)| {
                let live: Vec<&Minute> = window.iter().filter(|m| m.start_ms + 60_000 > since).collect();
                let mut histogram = [0u32; BUCKETS];
                for m in &live {
                    for (total, n) in histogram.iter_mut().zip(m.latencies) {
                        *total += n;
                    }
                }
                ModelActivity {
                    provider: provider.clone(),
                    model: model.clone(),
                    requests: live.iter().map(|m| m.requests).sum(),
                    errors: live.iter().map(|m| m.errors).sum(),
                    p50_ms: quantile(&histogram, 0.5),
                    p95_ms: quantile(&histogram, 0.95),
                    minutes: live.iter().map(|m| (m.start_ms, m.requests, m.errors)).collect(),
                }
            })
            .filter(|m| m.requests > 0)
            .collect();
        ActivityReport {
            recent: state.recent.iter().cloned().collect(),
            models,
        }
    }
}

/// Milliseconds, with a tenth: what the page shows.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_ms: u64, status: &str, latency_ms: f64) -> RequestRecord {
        RequestRecord {
            at_ms,
            front_door: "openai".into(),
            key: None,
            model_asked: "auto".into(),
            provider: Some("glm".into()),
            model: Some("glm-4.6".into()),
            deployment: Some("glm#1".into()),
            fallbacks: Vec::new(),
            status: status.into(),
            latency_ms,
            input_tokens: 1,
            output_tokens: 1,
            cost_usd: 0.0,
        }
    }

    #[test]
    fn keeps_the_last_hundred_newest_first_and_the_hour_per_model() {
        let activity = Activity::new();
        let start = 1_700_000_000_000;
        for i in 0..150u64 {
            let status = match i % 10 {
                0 => "transient",
                5 => "cached",
                _ => "ok",
            };
            activity.record(record(start + i * 1_000, status, 10.0 + i as f64));
        }
        let report = activity.report(start + 150_000);
        assert_eq!(report.recent.len(), RECENT);
        assert_eq!(report.recent[0].at_ms, start + 149_000);
        let glm = &report.models[0];
        assert_eq!((glm.requests, glm.errors), (150, 15), "a cached answer is no error");
        assert_eq!(glm.minutes.iter().map(|m| m.1).sum::<u64>(), 150);
        // Latencies 10..159 ms: the median near 85, p95 near 152, each within a bucket (+25%).
        let (p50, p95) = (glm.p50_ms.unwrap_or(0.0), glm.p95_ms.unwrap_or(0.0));
        assert!((84.0..=107.0).contains(&p50), "{p50}");
        assert!((151.0..=190.0).contains(&p95), "{p95}");
        // An hour later, the minutes have left the window.
        let later = activity.report(start + 2 * 3_600_000);
        assert!(later.models.is_empty());
        assert_eq!(later.recent.len(), RECENT);
    }

    #[test]
    fn watchers_get_each_record() {
        let activity = Activity::new();
        let mut watch = activity.watch();
        activity.record(record(1, "ok", 5.0));
        assert_eq!(watch.try_recv().map(|r| r.at_ms).ok(), Some(1));
    }
}
