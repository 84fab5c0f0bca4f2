//! A provider's deployments at run time, and the choice of which one a call goes to.
//!
//! A [`Pool`] holds one [`Deployment`] per configured endpoint and key, each with its own
//! worker (and so its own circuit breaker), its own in-flight cap and its own
//! [`DeploymentState`]: calls in flight, a moving average of time to first byte, the headroom
//! its `x-ratelimit-*` headers last reported, and its cool-down. [`Pool::order`] ranks the
//! deployments a call may use now by the provider's [`Strategy`]; the attempt loop tries them
//! in that order before it falls back to another model.
//!
//! Cool-downs: a 429 cools its deployment for its `Retry-After` (else an exponential back-off
//! from 1 s to 60 s); a 401 or 403 takes it out until a reload or a check finds its key good
//! again. With shared limits, the cool-down is published so every process skips it, and a
//! process learns of one published elsewhere when it next asks for the deployment's lease.
//!
//! Nothing here reads a clock more than once per call, allocates more than the order's `Vec`,
//! or takes a lock: choosing is a few atomic loads per deployment (`benches/gateway_overhead.rs`
//! measures it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::ProviderHandle;
use crate::actors::limits::SessionLimit;
use crate::config::{DeploymentConfig, Strategy};
use crate::error::{ProviderError, ProviderErrorKind};

/// How long an auth failure keeps a deployment out, when nothing re-enables it sooner.
const AUTH_OUT: Duration = Duration::from_secs(24 * 3600);

/// How long a process trusts a cool-down it learned from the shared limits before it asks
/// again (a check elsewhere may have ended it).
pub(crate) const RECHECK: Duration = Duration::from_secs(10);

/// The longest back-off for a 429 that gave no `Retry-After`.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The weight of a new sample in the time-to-first-byte average.
const EWMA_NEW: f64 = 0.3;

/// How long a rate-limit header's report is trusted.
const HEADROOM_FRESH: Duration = Duration::from_secs(60);

/// A provider's deployments.
pub(crate) struct Pool {
    pub provider: String,
    strategy: Strategy,
    deployments: Vec<Arc<Deployment>>,
    /// Turns for the weighted draw and for breaking ties.
    turn: AtomicU64,
}

/// One deployment: its worker, its limits and what calls learned of it.
pub(crate) struct Deployment {
    /// `glm#1`, `glm#eu`.
    pub label: String,
    pub handle: ProviderHandle,
    pub state: Arc<DeploymentState>,
    weight: u32,
    /// Its own in-flight cap, when it has one.
    pub limit: Option<SessionLimit>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    /// Where its configuration came from, to tell a reload what changed.
    pub fingerprint: String,
    /// Its name in the shared limits: the label and a hash of its endpoint and key, so that
    /// processes whose `glm#1` is another key never share its cool-downs or leases.
    pub scope: String,
}

/// What calls learn about a deployment (shared with its client, which reads the headers).
pub(crate) struct DeploymentState {
    pub label: String,
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Microseconds; 0 before the first sample.
    ttfb_ewma_us: AtomicU64,
    /// Milliseconds since `epoch` until which it is cooling; 0 when not.
    cooling_until_ms: AtomicU64,
    /// 429s in a row, for the back-off.
    streak: AtomicU32,
    /// Taken out by a rejected key.
    auth_failed: AtomicBool,
    /// Requests and tokens left, as its rate-limit headers last said (`u64::MAX`: unknown),
    /// and when (ms since `epoch`).
    remaining_requests: AtomicU64,
    remaining_tokens: AtomicU64,
    headroom_at_ms: AtomicU64,
    /// Calls started in the current minute (`minute` counts minutes since `epoch`).
    minute: AtomicU64,
    minute_calls: AtomicU64,
    /// Its `rpm`, paced here (GCRA, a burst of `rpm`): the attempt loop asks it first, and
    /// moves on to another deployment rather than wait when this one is spent.
    limiter: Option<DefaultDirectRateLimiter>,
    metrics: DeploymentMetrics,
}

struct DeploymentMetrics {
    in_flight: metrics::Gauge,
    calls: metrics::Counter,
    errors: metrics::Counter,
    cooldowns: metrics::Counter,
    ttfb: metrics::Histogram,
}

/// Why a deployment is not taking calls now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Out {
    /// Cooling after a 429, for this long still.
    Cooling(Duration),
    /// Its key was rejected.
    KeyRejected,
}

/// A deployment's state for status pages.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeploymentStatus {
    /// `glm#1`, `glm#eu`: never the key.
    pub label: String,
    /// `ready`, `cooling` or `key_rejected`.
    pub state: &'static str,
    /// Seconds of cool-down left.
    pub cooling_secs: Option<f64>,
    /// Calls in flight now.
    pub in_flight: usize,
    /// Its own cap, if any.
    pub max_inflight: Option<usize>,
    /// Moving average of time to first byte, in milliseconds (none before a call).
    pub ttfb_ms: Option<f64>,
    /// Its weight under the `weighted` strategy.
    pub weight: u32,
    /// Its circuit breaker: `closed`, `open` or `half_open`.
    pub circuit: &'static str,
    /// Calls sent to it.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// The last error, and when (unix ms).
    pub last_error: Option<(String, u64)>,
}

impl DeploymentState {
    pub fn new(provider: &str, label: &str, rpm: Option<u32>) -> Self {
        let labels = [("provider", provider.to_string()), ("deployment", label.to_string())];
        Self {
            label: label.to_string(),
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            ttfb_ewma_us: AtomicU64::new(0),
            cooling_until_ms: AtomicU64::new(0),
            streak: AtomicU32::new(0),
            auth_failed: AtomicBool::new(false),
            remaining_requests: AtomicU64::new(u64::MAX),
            remaining_tokens: AtomicU64::new(u64::MAX),
            headroom_at_ms: AtomicU64::new(0),
            minute: AtomicU64::new(0),
            minute_calls: AtomicU64::new(0),
            limiter: rpm
                .and_then(NonZeroU32::new)
                .map(|rpm| RateLimiter::direct(Quota::per_minute(rpm))),
            metrics: DeploymentMetrics {
                in_flight: metrics::gauge!("exai_deployment_inflight", &labels),
                calls: metrics::counter!("exai_deployment_calls_total", &labels),
                errors: metrics::counter!("exai_deployment_errors_total", &labels),
                cooldowns: metrics::counter!("exai_deployment_cooldowns_total", &labels),
                ttfb: metrics::histogram!("exai_deployment_ttfb_seconds", &labels),
            },
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }

    /// Takes one call from its `rpm` if one is left now.
    pub fn try_pace(&self) -> bool {
        self.limiter.as_ref().is_none_or(|l| l.check().is_ok())
    }

    /// Waits for its `rpm` to allow one more call.
    pub async fn pace(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }

    /// Why it is out now, if it is.
    pub fn out(&self, now: Instant) -> Option<Out> {
        if self.auth_failed.load(Ordering::Relaxed) {
            return Some(Out::KeyRejected);
        }
        let until = self.cooling_until_ms.load(Ordering::Relaxed);
        let now = self.ms(now);
        (until > now).then(|| Out::Cooling(Duration::from_millis(until - now)))
    }

    /// Cools it for `for_` (at least; a longer cool-down already under way stays).
    pub fn cool(&self, for_: Duration) {
        let until = self.ms(Instant::now()) + for_.as_millis() as u64;
        if self.cooling_until_ms.fetch_max(until, Ordering::Relaxed) < until {
            self.metrics.cooldowns.increment(1);
        }
    }

    /// Takes it out for a rejected key.
    pub fn reject_key(&self) {
        if !self.auth_failed.swap(true, Ordering::Relaxed) {
            self.metrics.cooldowns.increment(1);
        }
    }

    /// Its key was found good again (a check): a rejection no longer keeps it out.
    pub fn key_accepted(&self) {
        self.auth_failed.store(false, Ordering::Relaxed);
    }

    /// Puts it back (a reload): its rejected key and its cool-down are forgotten.
    pub fn restore(&self) {
        self.auth_failed.store(false, Ordering::Relaxed);
        self.cooling_until_ms.store(0, Ordering::Relaxed);
        self.streak.store(0, Ordering::Relaxed);
    }

    /// A call starts: counted in flight until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.metrics.in_flight.increment(1.0);
        self.metrics.calls.increment(1);
        let minute = self.epoch.elapsed().as_secs() / 60;
        if self.minute.swap(minute, Ordering::Relaxed) != minute {
            self.minute_calls.store(0, Ordering::Relaxed);
        }
        self.minute_calls.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// It answered after `ttfb` (its headers, for a stream).
    pub fn answered(&self, ttfb: Duration) {
        self.streak.store(0, Ordering::Relaxed);
        self.metrics.ttfb.record(ttfb.as_secs_f64());
        let sample = ttfb.as_micros().max(1) as f64;
        let old = self.ttfb_ewma_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            EWMA_NEW * sample + (1.0 - EWMA_NEW) * old as f64
        };
        self.ttfb_ewma_us.store(new as u64, Ordering::Relaxed);
    }

    /// It failed: a 429 cools it, a rejected key takes it out. Returns the cool-down started,
    /// if any, for publishing. With `shared` limits the published cool-down is the one that
    /// counts: a rejected key is only cooled here for [`RECHECK`], then asked about again (so
    /// that a check run by another process, which clears it, puts it back here too).
    pub fn failed(&self, error: &ProviderError, shared: bool) -> Option<Duration> {
        self.metrics.errors.increment(1);
        match &error.kind {
            ProviderErrorKind::RateLimited { retry_after, .. } => {
                let streak = self.streak.fetch_add(1, Ordering::Relaxed).min(6);
                let wait = retry_after.unwrap_or_else(|| Duration::from_secs(1 << streak).min(MAX_BACKOFF));
                self.cool(wait);
                Some(wait)
            }
            ProviderErrorKind::Auth { .. } => {
                if shared {
                    self.cool(RECHECK);
                } else {
                    self.reject_key();
                }
                Some(AUTH_OUT)
            }
            _ => None,
        }
    }

    /// Reads what a response's rate-limit headers say is left (`x-ratelimit-remaining-requests`,
    /// `x-ratelimit-remaining-tokens`, as OpenAI and most compatible providers send them).
    pub fn observe(&self, headers: &HeaderMap) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let requests = number("x-ratelimit-remaining-requests");
        let tokens = number("x-ratelimit-remaining-tokens");
        if requests.is_none() && tokens.is_none() {
            return;
        }
        if let Some(r) = requests {
            self.remaining_requests.store(r, Ordering::Relaxed);
        }
        if let Some(t) = tokens {
            self.remaining_tokens.store(t, Ordering::Relaxed);
        }
        self.headroom_at_ms.store(self.ms(Instant::now()), Ordering::Relaxed);
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Its time to first byte for ranking: an idle deployment never tried comes first (0); one
    /// whose first call has not answered yet, last.
    fn ttfb_rank(&self) -> u64 {
        match self.ttfb_ewma_us.load(Ordering::Relaxed) {
            0 if self.in_flight() > 0 => u64::MAX,
            ewma => ewma,
        }
    }
}

/// A call in flight at a deployment.
pub(crate) struct InFlight(Arc<DeploymentState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.in_flight.decrement(1.0);
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InFlight({})", self.0.label)
    }
}

impl Deployment {
    /// A deployment of a pool of `of`.
    pub fn new(config: &DeploymentConfig, handle: ProviderHandle, state: Arc<DeploymentState>, of: usize) -> Self {
        Self {
            label: config.label.clone(),
            handle,
            state,
            weight: config.weight.max(1),
            limit: config.max_inflight.map(SessionLimit::new),
            rpm: config.rpm,
            tpm: config.tpm,
            fingerprint: Self::fingerprint_of(config, of),
            scope: scope_of(config),
        }
    }

    /// What identifies a deployment's configuration in a pool of `of` (its key as a hash,
    /// never the key): a reload keeps a deployment whose fingerprint did not change.
    pub fn fingerprint_of(config: &DeploymentConfig, of: usize) -> String {
        format!("{}|{of}", fingerprint(config))
    }

    /// The share of its rate left, 0 to 1: from its headers while fresh, else from the calls
    /// counted this minute against its `rpm`; 1 when nothing limits it.
    fn headroom(&self, now: Instant) -> f64 {
        let s = &self.state;
        let at = s.headroom_at_ms.load(Ordering::Relaxed);
        let fresh = at > 0 && s.ms(now).saturating_sub(at) < HEADROOM_FRESH.as_millis() as u64;
        let share = |left: u64, of: Option<u32>| match of {
            Some(of) if left != u64::MAX => (left as f64 / f64::from(of.max(1))).min(1.0),
            None if left != u64::MAX => (left as f64 / 1_000.0).min(1.0),
            _ => 1.0,
        };
        if fresh {
            let requests = share(s.remaining_requests.load(Ordering::Relaxed), self.rpm);
            let tokens = share(s.remaining_tokens.load(Ordering::Relaxed), self.tpm);
            return requests.min(tokens);
        }
        match self.rpm {
            Some(rpm) => {
                let minute = now.saturating_duration_since(s.epoch).as_secs() / 60;
                let used = if s.minute.load(Ordering::Relaxed) == minute {
                    s.minute_calls.load(Ordering::Relaxed)
                } else {
                    0
                };
                1.0 - (used as f64 / f64::from(rpm.max(1))).min(1.0)
            }
            None => 1.0,
        }
    }

    /// Its state for status pages.
    pub fn status(&self, now: Instant) -> DeploymentStatus {
        let out = self.state.out(now);
        let ttfb = self.state.ttfb_ewma_us.load(Ordering::Relaxed);
        DeploymentStatus {
            label: self.label.clone(),
            state: match out {
                None => "ready",
                Some(Out::Cooling(_)) => "cooling",
                Some(Out::KeyRejected) => "key_rejected",
            },
            cooling_secs: match out {
                Some(Out::Cooling(left)) => Some(left.as_secs_f64()),
                _ => None,
            },
            in_flight: self.state.in_flight(),
            max_inflight: self.limit.as_ref().map(|l| l.max),
            ttfb_ms: (ttfb > 0).then(|| ttfb as f64 / 1_000.0),
            weight: self.weight,
            circuit: "closed",
            calls: 0,
            failures: 0,
            last_error: None,
        }
    }
}

/// What identifies a deployment's configuration (its key as a hash, never the key).
fn fingerprint(config: &DeploymentConfig) -> String {
    use sha2::Digest;
    let key = config
        .api_key
        .as_ref()
        .map(|k| hex(&sha2::Sha256::digest(k.expose().as_bytes())[..8]))
        .unwrap_or_default();
    format!(
        "{}|{}|{:?}|{key}|{}|{:?}|{:?}|{:?}",
        config.label,
        config.base_url,
        config.anthropic_base_url,
        config.weight,
        config.max_inflight,
        config.rpm,
        config.tpm
    )
}

/// `glm#1:` and the first bytes of a SHA-256 of its endpoint and key (never the key).
fn scope_of(config: &DeploymentConfig) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(config.base_url.as_bytes());
    hash.update([0]);
    if let Some(key) = &config.api_key {
        hash.update(key.expose().as_bytes());
    }
    format!("{}:{}", config.label, hex(&hash.finalize()[..6]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Pool {
    pub fn new(provider: &str, strategy: Strategy, deployments: Vec<Arc<Deployment>>) -> Self {
        Self {
            provider: provider.to_string(),
            strategy,
            deployments,
            turn: AtomicU64::new(0),
        }
    }

    /// Every deployment, in configured order.
    pub fn deployments(&self) -> &[Arc<Deployment>] {
        &self.deployments
    }

    /// The first deployment: the provider's client for what does not depend on which one
    /// answers (its quirks, its wires).
    pub fn first(&self) -> &ProviderHandle {
        &self.deployments[0].handle
    }

    /// The deployments a call may use now, best first by the strategy; and, when none may,
    /// the shortest wait until one can (`None` when every key was rejected).
    pub fn order(&self, now: Instant) -> (Vec<Arc<Deployment>>, Option<Duration>) {
        let mut ready = Vec::with_capacity(self.deployments.len());
        let mut soonest: Option<Duration> = None;
        for d in &self.deployments {
            match d.state.out(now) {
                None => ready.push(d.clone()),
                Some(Out::Cooling(left)) => soonest = Some(soonest.map_or(left, |s| s.min(left))),
                Some(Out::KeyRejected) => {}
            }
        }
        if ready.len() > 1 {
            let turn = self.turn.fetch_add(1, Ordering::Relaxed);
            // Ties go round the deployments rather than always to the first.
            let by = (turn % ready.len() as u64) as usize;
            ready.rotate_left(by);
            match self.strategy {
                Strategy::Weighted => weighted(&mut ready, turn),
                // Ties go to the quicker one (a slow deployment's calls pile up less).
                Strategy::LeastBusy => ready.sort_by_key(|d| (d.state.in_flight(), d.state.ttfb_rank())),
                Strategy::Latency => ready.sort_by_key(|d| d.state.ttfb_rank()),
                Strategy::Usage => {
                    ready.sort_by(|a, b| b.headroom(now).total_cmp(&a.headroom(now)));
                }
            }
        }
        (ready, soonest)
    }

    /// The provider's health: each deployment's state and breaker, and the provider's as a
    /// whole (its circuit is the best of its deployments').
    pub async fn health(&self) -> Result<super::ProviderHealth, crate::error::Error> {
        let now = Instant::now();
        let mut deployments = Vec::with_capacity(self.deployments.len());
        let mut total: Option<super::ProviderHealth> = None;
        for d in &self.deployments {
            let health = d.handle.health().await?;
            let mut status = d.status(now);
            status.circuit = health.circuit;
            status.calls = health.calls;
            status.failures = health.failures;
            status.last_error = health.last_error.clone();
            deployments.push(status);
            total = Some(match total {
                None => health,
                Some(mut t) => {
                    let rank = |c: &str| match c {
                        "closed" => 0,
                        "half_open" => 1,
                        _ => 2,
                    };
                    if rank(health.circuit) < rank(t.circuit) {
                        t.circuit = health.circuit;
                    }
                    t.consecutive_failures = t.consecutive_failures.min(health.consecutive_failures);
                    t.calls += health.calls;
                    t.failures += health.failures;
                    if health.last_error.as_ref().map(|e| e.1) > t.last_error.as_ref().map(|e| e.1) {
                        t.last_error = health.last_error;
                    }
                    t
                }
            });
        }
        let mut health =
            total.ok_or_else(|| crate::error::Error::Internal(format!("{} has no deployment", self.provider)))?;
        health.strategy = self.strategy.to_string();
        health.deployments = deployments;
        Ok(health)
    }
}

/// Orders `ready` by a weighted draw without replacement: each deployment comes first with a
/// probability proportional to its weight.
fn weighted(ready: &mut [Arc<Deployment>], turn: u64) {
    let mut seed = splitmix(turn ^ 0x9e37_79b9_7f4a_7c15);
    for start in 0..ready.len().saturating_sub(1) {
        let total: u64 = ready[start..].iter().map(|d| u64::from(d.weight)).sum();
        seed = splitmix(seed);
        let mut pick = seed % total.max(1);
        let mut chosen = start;
        for (i, d) in ready[start..].iter().enumerate() {
            let w = u64::from(d.weight);
            if pick < w {
                chosen = start + i;
                break;
            }
            pick -= w;
        }
        ready.swap(start, chosen);
    }
}

/// A 64-bit mix (SplitMix64): a cheap, well-spread number from a counter.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Orders the models of an alias over several models by `strategy`, from what each one's
/// provider pool knows now: those with a deployment ready first, then by the fewest calls in
/// flight (`least-busy`), the quickest first byte (`latency`), the most headroom (`usage`), or
/// a draw (`weighted`, each model weighing the same).
pub(crate) fn order_models(
    strategy: Strategy,
    plan: &mut [crate::catalog::ModelInfo],
    pool_of: impl Fn(&str) -> Option<Arc<Pool>>,
    turn: u64,
) {
    let now = Instant::now();
    let mut seed = splitmix(turn);
    let mut keys: Vec<(bool, u64, usize, usize)> = Vec::with_capacity(plan.len());
    for (i, model) in plan.iter().enumerate() {
        let pool = pool_of(&model.provider);
        let ready: Vec<Arc<Deployment>> = pool.map(|p| p.order(now).0).unwrap_or_default();
        let metric = match strategy {
            Strategy::Weighted => {
                seed = splitmix(seed);
                seed
            }
            Strategy::LeastBusy => ready.iter().map(|d| d.state.in_flight() as u64).sum(),
            Strategy::Latency => ready.iter().map(|d| d.state.ttfb_rank()).min().unwrap_or(u64::MAX),
            // The most headroom first: sorted ascending, so its complement.
            Strategy::Usage => ready
                .iter()
                .map(|d| u64::MAX - (d.headroom(now) * 1e9) as u64)
                .min()
                .unwrap_or(u64::MAX),
        };
        // Ties go round the models rather than always to the first.
        let rotated = (i + (turn % plan.len().max(1) as u64) as usize) % plan.len().max(1);
        keys.push((ready.is_empty(), metric, rotated, i));
    }
    keys.sort();
    let order: Vec<usize> = keys.into_iter().map(|(_, _, _, i)| i).collect();
    apply_order(plan, &order);
}

/// Puts `plan[order[0]]` first, `plan[order[1]]` second, and so on.
fn apply_order<T>(plan: &mut [T], order: &[usize]) {
    let mut position: Vec<usize> = (0..plan.len()).collect(); // where each original item is now
    let mut at: Vec<usize> = (0..plan.len()).collect(); // which original item is at each place
    for (target, &item) in order.iter().enumerate() {
        let from = position[item];
        plan.swap(target, from);
        let displaced = at[target];
        at.swap(target, from);
        position[item] = target;
        position[displaced] = from;
    }
}

/// A pool of `weights.len()` deployments that no call reaches (for tests and the choice's
/// benchmark).
#[cfg(any(test, feature = "testing"))]
pub(crate) async fn idle_pool(strategy: Strategy, weights: &[u32]) -> Result<Pool, crate::error::Error> {
    let config = crate::config::Config::builder()
        .without_file()
        .set("providers.glm.api_key", "unused")
        .set("providers.glm.base_url", "http://127.0.0.1:9/v4")
        .build()?;
    let provider = config
        .provider("glm")
        .cloned()
        .ok_or_else(|| crate::error::Error::Internal("no glm".into()))?;
    let mut deployments = Vec::new();
    for (i, weight) in weights.iter().enumerate() {
        let mut d = provider.deployments[0].clone();
        d.label = format!("glm#{}", i + 1);
        d.weight = *weight;
        let state = Arc::new(DeploymentState::new("glm", &d.label, None));
        let client = super::ProviderClient::new(
            provider.for_deployment(&d),
            reqwest::Client::new(),
            config.retry.clone(),
        )
        .for_deployment(state.clone(), weights.len());
        let handle = super::spawn_worker(client, config.retry.clone()).await?;
        deployments.push(Arc::new(Deployment::new(&d, handle, state, weights.len())));
    }
    Ok(Pool::new("glm", strategy, deployments))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pool(strategy: Strategy, weights: &[u32]) -> Pool {
        idle_pool(strategy, weights).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// How often each deployment comes first over `n` choices.
    fn firsts(pool: &Pool, n: usize) -> Vec<usize> {
        let mut counts = vec![0; pool.deployments().len()];
        for _ in 0..n {
            let (order, _) = pool.order(Instant::now());
            let first = order.first().map(|d| d.label.clone()).unwrap_or_default();
            if let Some(i) = pool.deployments().iter().position(|d| d.label == first) {
                counts[i] += 1;
            }
        }
        counts
    }

    #[tokio::test]
    async fn weighted_choices_follow_the_weights_and_every_deployment_is_in_the_order() {
        let p = pool(Strategy::Weighted, &[1, 2, 1]).await;
        let counts = firsts(&p, 8_000);
        // Expected 2000, 4000, 2000.
        assert!((1_700..2_300).contains(&counts[0]), "{counts:?}");
        assert!((3_600..4_400).contains(&counts[1]), "{counts:?}");
        assert!((1_700..2_300).contains(&counts[2]), "{counts:?}");
        assert_eq!(p.order(Instant::now()).0.len(), 3);
    }

    #[tokio::test]
    async fn least_busy_picks_the_deployment_with_the_fewest_calls_in_flight() {
        let p = pool(Strategy::LeastBusy, &[1, 1, 1]).await;
        let held: Vec<InFlight> = vec![
            p.deployments()[0].state.start(),
            p.deployments()[0].state.start(),
            p.deployments()[2].state.start(),
        ];
        assert_eq!(firsts(&p, 30), [0, 30, 0]);
        drop(held);
        // Idle again: ties go round every deployment, then to the quicker one.
        assert_eq!(firsts(&p, 30), [10, 10, 10]);
        p.deployments()[1].state.answered(Duration::from_millis(300));
        p.deployments()[0].state.answered(Duration::from_millis(20));
        p.deployments()[2].state.answered(Duration::from_millis(80));
        assert_eq!(firsts(&p, 30), [30, 0, 0]);
    }

    #[tokio::test]
    async fn latency_prefers_the_quickest_first_byte_and_tries_an_untried_one_first() {
        let p = pool(Strategy::Latency, &[1, 1]).await;
        p.deployments()[0].state.answered(Duration::from_millis(900));
        assert_eq!(firsts(&p, 10), [0, 10], "the untried deployment first");
        p.deployments()[1].state.answered(Duration::from_millis(50));
        assert_eq!(firsts(&p, 10), [0, 10]);
    }

    #[tokio::test]
    async fn usage_prefers_the_most_headroom_its_headers_report() {
        let p = pool(Strategy::Usage, &[1, 1]).await;
        let mut low = HeaderMap::new();
        low.insert(
            "x-ratelimit-remaining-requests",
            "3".parse().unwrap_or_else(|_| panic!()),
        );
        let mut high = HeaderMap::new();
        high.insert(
            "x-ratelimit-remaining-requests",
            "900".parse().unwrap_or_else(|_| panic!()),
        );
        p.deployments()[0].state.observe(&low);
        p.deployments()[1].state.observe(&high);
        assert_eq!(firsts(&p, 10), [0, 10]);
    }

    #[tokio::test]
    async fn a_cooling_or_rejected_deployment_is_left_out_and_the_soonest_wait_reported() {
        let p = pool(Strategy::Weighted, &[1, 1, 1]).await;
        let rate_limited = ProviderError::new(
            "glm",
            "glm-4.6",
            ProviderErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(30)),
                message: "slow down".into(),
            },
        );
        assert_eq!(
            p.deployments()[0].state.failed(&rate_limited, false),
            Some(Duration::from_secs(30))
        );
        let rejected = ProviderError::new(
            "glm",
            "glm-4.6",
            ProviderErrorKind::Auth {
                status: 401,
                key_source: "GLM_API_KEYS[2] (env)".into(),
                message: "bad key".into(),
            },
        );
        p.deployments()[1].state.failed(&rejected, false);
        let (order, _) = p.order(Instant::now());
        let labels: Vec<_> = order.iter().map(|d| d.label.as_str()).collect();
        assert_eq!(labels, ["glm#3"]);
        p.deployments()[2].state.cool(Duration::from_secs(5));
        let (order, soonest) = p.order(Instant::now());
        assert!(order.is_empty());
        assert!(soonest.is_some_and(|s| s <= Duration::from_secs(5) && s > Duration::from_secs(4)));
        // A good check puts the rejected key back.
        p.deployments()[1].state.key_accepted();
        assert_eq!(p.order(Instant::now()).0.len(), 1);
        let status: Vec<_> = p.deployments().iter().map(|d| d.status(Instant::now()).state).collect();
        assert_eq!(status, ["cooling", "ready", "cooling"]);
    }

    #[tokio::test]
    async fn a_429_without_retry_after_backs_off_longer_each_time() {
        let p = pool(Strategy::Weighted, &[1]).await;
        let limited = ProviderError::new(
            "glm",
            "glm-4.6",
            ProviderErrorKind::RateLimited {
                retry_after: None,
                message: String::new(),
            },
        );
        let waits: Vec<_> = (0..8)
            .filter_map(|_| p.deployments()[0].state.failed(&limited, false))
            .collect();
        let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn apply_order_puts_each_item_where_the_order_says() {
        let mut items = vec!['a', 'b', 'c', 'd'];
        apply_order(&mut items, &[2, 0, 3, 1]);
        assert_eq!(items, ['c', 'a', 'd', 'b']);
        let mut items = vec!['a', 'b', 'c'];
        apply_order(&mut items, &[1, 2, 0]);
        assert_eq!(items, ['b', 'c', 'a']);
    }
}
