//! One deployment of a pool: its worker, its own cap and `rpm`, its label and its scope in the
//! shared limits; and its state as status pages show it ([`DeploymentStatus`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::super::ProviderHandle;
use super::state::{DeploymentState, HEADROOM_FRESH, Out};
use crate::actors::limits::SessionLimit;
use crate::config::DeploymentConfig;

/// One deployment: its worker, its limits and what calls learned of it.
pub(crate) struct Deployment {
    /// `glm#1`, `glm#eu`.
    pub label: String,
    pub handle: ProviderHandle,
    pub state: Arc<DeploymentState>,
    pub(super) weight: u32,
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
    pub(super) fn headroom(&self, now: Instant) -> f64 {
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
