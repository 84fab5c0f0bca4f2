//! What calls learn about a deployment, shared by the attempt loop and the deployment's client
//! (which reads the rate-limit headers): calls in flight, a moving average of time to first
//! byte, the headroom its `x-ratelimit-*` headers report, calls this minute against its `rpm`,
//! and its cool-down after a 429 or a rejected key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;
use tokio::time::Instant;

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
pub(super) const HEADROOM_FRESH: Duration = Duration::from_secs(60);

/// What calls learn about a deployment (shared with its client, which reads the headers).
pub(crate) struct DeploymentState {
    pub label: String,
    pub(super) epoch: Instant,
    pub(super) in_flight: AtomicUsize,
    /// Microseconds; 0 before the first sample.
    pub(super) ttfb_ewma_us: AtomicU64,
    /// Milliseconds since `epoch` until which it is cooling; 0 when not.
    cooling_until_ms: AtomicU64,
    /// 429s in a row, for the back-off.
    streak: AtomicU32,
    /// Taken out by a rejected key.
    auth_failed: AtomicBool,
    /// Requests and tokens left, as its rate-limit headers last said (`u64::MAX`: unknown),
    /// and when (ms since `epoch`).
    pub(super) remaining_requests: AtomicU64,
    pub(super) remaining_tokens: AtomicU64,
    pub(super) headroom_at_ms: AtomicU64,
    /// Calls started in the current minute (`minute` counts minutes since `epoch`).
    pub(super) minute: AtomicU64,
    pub(super) minute_calls: AtomicU64,
    /// Tokens its calls used in the wall-clock minute `token_minute` (unix minutes): its `tpm`
    /// in this process.
    token_minute: AtomicU64,
    minute_tokens: AtomicU64,
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
            token_minute: AtomicU64::new(0),
            minute_tokens: AtomicU64::new(0),
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

    pub(super) fn ms(&self, at: Instant) -> u64 {
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

    /// Tokens its calls used this wall-clock minute, in this process.
    pub fn tokens_this_minute(&self) -> u64 {
        if self.token_minute.load(Ordering::Relaxed) == wall_minute() {
            self.minute_tokens.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// A call of its used `tokens` (counted in this wall-clock minute).
    pub fn used_tokens(&self, tokens: u64) {
        let minute = wall_minute();
        if self.token_minute.swap(minute, Ordering::Relaxed) != minute {
            self.minute_tokens.store(0, Ordering::Relaxed);
        }
        self.minute_tokens.fetch_add(tokens, Ordering::Relaxed);
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

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Its time to first byte for ranking: an idle deployment never tried comes first (0); one
    /// whose first call has not answered yet, last.
    pub(super) fn ttfb_rank(&self) -> u64 {
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

/// The current wall-clock minute (unix minutes), as the shared stores count tokens.
fn wall_minute() -> u64 {
    crate::actors::session::now_ms() / 60_000
}

/// What is left of the current wall-clock minute, when a spent `tpm` comes back.
pub(crate) fn minute_left() -> Duration {
    Duration::from_millis(60_000 - crate::actors::session::now_ms() % 60_000)
}
