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
//!
//! - `deployment.rs`: [`Deployment`] (its worker, limits, label and scope) and its status.
//! - `state.rs`: [`DeploymentState`], what calls learn of a deployment, and its cool-downs.
//! - `choice.rs`: the weighted draw and the ordering of an alias's models.

mod choice;
mod deployment;
mod state;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::ProviderHandle;
use crate::config::Strategy;

pub(crate) use choice::order_models;
use choice::weighted;
pub(crate) use deployment::Deployment;
pub use deployment::DeploymentStatus;
pub(crate) use state::{DeploymentState, InFlight, Out, RECHECK, minute_left};

/// A provider's deployments.
pub(crate) struct Pool {
    pub provider: String,
    strategy: Strategy,
    deployments: Vec<Arc<Deployment>>,
    /// Turns for the weighted draw and for breaking ties.
    turn: AtomicU64,
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
