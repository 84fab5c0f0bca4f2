//! The semaphore manager: global, per-provider and per-session limits on requests in flight.
//!
//! Deliberately not an actor: an acquire is a lock-free `tokio::sync::Semaphore` operation, and
//! routing every acquire through one mailbox would serialise the hottest path of the gateway.
//! A request waits — bounded by the queue timeout, one budget for all its permits — instead of
//! failing at once; when it must fail, [`Error::OverCapacity`] says which limit and when to retry.
//!
//! Permits are `OwnedSemaphorePermit`s held in guards, so they are released by drop on every path:
//! success, error, panic and cancellation (the future holding them is dropped).
//!
//! With shared limits (`shared/`), the global and provider permits also hold a lease in Redis or
//! the SQLite state file, so the limits hold across processes; callers see the same API. (An
//! `rpm` is a key's: each deployment paces its own, there too.) The local permits always apply
//! too: when the store fails, they are the limits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::shared::{Lease, Leased, SharedLimits};
use crate::config::Config;
use crate::error::Error;

/// A per-session limit, owned by the session.
#[derive(Debug, Clone)]
pub(crate) struct SessionLimit {
    pub permits: Arc<Semaphore>,
    pub max: usize,
}

impl SessionLimit {
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Requests of this session in flight now.
    pub fn in_flight(&self) -> usize {
        self.max.saturating_sub(self.permits.available_permits())
    }
}

/// The gateway's shared limits.
pub(crate) struct Limits {
    global: SessionLimit,
    providers: HashMap<String, ProviderLimit>,
    queue_timeout: Duration,
    /// The limits shared with other processes (through Redis or the state file), when on.
    shared: Option<Arc<SharedLimits>>,
    /// Metric handles, registered once rather than looked up by name and labels per request.
    global_inflight: metrics::Gauge,
    request_wait: metrics::Histogram,
    provider_wait: metrics::Histogram,
}

struct ProviderLimit {
    limit: SessionLimit,
    /// `provider NAME`, as over-capacity errors name it. (A provider's `rpm` is each of its
    /// deployments' own, paced by the deployment: `engine/deployment.rs`.)
    scope: String,
    inflight: metrics::Gauge,
}

/// Permits for one request (session + global), released on drop.
#[derive(Debug)]
pub(crate) struct RequestPermits {
    _session: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
    _lease: Option<Lease>,
    _gauge: Gauge,
}

/// A provider permit, released on drop.
#[derive(Debug)]
pub(crate) struct ProviderPermit {
    _permit: OwnedSemaphorePermit,
    _lease: Option<Lease>,
    _gauge: Gauge,
}

/// Keeps the in-flight gauge honest on every exit path.
struct Gauge(metrics::Gauge);

impl Gauge {
    fn new(gauge: &metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge.clone())
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

impl std::fmt::Debug for Gauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gauge")
    }
}

/// Usage of one limit.
#[derive(Debug, Clone, Serialize)]
pub struct LimitUsage {
    /// Which limit (`global`, a provider's name).
    pub scope: String,
    /// Permits held.
    pub in_flight: usize,
    /// The limit.
    pub max: usize,
}

impl Limits {
    pub fn new(config: &Config) -> Self {
        let providers = config
            .providers
            .iter()
            .map(|p| {
                let limit = ProviderLimit {
                    limit: SessionLimit::new(p.max_inflight),
                    scope: format!("provider {}", p.name),
                    inflight: metrics::gauge!("exai_inflight", "scope" => "provider", "name" => p.name.clone()),
                };
                (p.name.clone(), limit)
            })
            .collect();
        Self {
            global: SessionLimit::new(config.limits.global_max_inflight),
            providers,
            queue_timeout: config.limits.queue_timeout,
            shared: None,
            global_inflight: metrics::gauge!("exai_inflight", "scope" => "global", "name" => "global"),
            request_wait: metrics::histogram!("exai_queue_wait_seconds", "scope" => "request"),
            provider_wait: metrics::histogram!("exai_queue_wait_seconds", "scope" => "provider"),
        }
    }

    /// Shares the global and provider limits with the other processes on `shared`'s store.
    pub fn share(mut self, shared: Arc<SharedLimits>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The shared limits, if any.
    pub fn shared(&self) -> Option<&Arc<SharedLimits>> {
        self.shared.as_ref()
    }

    /// A lease on `scope` when the limits are shared (none when the store failed: local only).
    /// A scope cooling elsewhere — a provider whose circuit another process opened — is over
    /// capacity until the cool-down ends.
    async fn lease(&self, scope: &str, max: usize, deadline: Instant) -> Result<Option<Lease>, Error> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        let started = Instant::now();
        match shared.lease(scope, max, deadline).await? {
            Leased::Held(lease) => Ok(Some(lease)),
            Leased::Local => Ok(None),
            Leased::Cooling(left) => Err(Error::OverCapacity {
                scope: format!("{scope} (circuit opened by another process)"),
                limit: max,
                waited: started.elapsed(),
                retry_after: left.max(Duration::from_secs(1)),
            }),
        }
    }

    /// The deadline for a request arriving now.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.queue_timeout
    }

    /// Session permit first (a busy client waits on itself, not on everyone), then global.
    pub async fn request(&self, session: &SessionLimit, deadline: Instant) -> Result<RequestPermits, Error> {
        let started = Instant::now();
        let session_permit = acquire(session, "session", started, deadline).await?;
        let global = acquire(&self.global, "global", started, deadline).await?;
        let lease = self.lease("global", self.global.max, deadline).await?;
        self.request_wait.record(started.elapsed().as_secs_f64());
        Ok(RequestPermits {
            _session: session_permit,
            _global: global,
            _lease: lease,
            _gauge: Gauge::new(&self.global_inflight),
        })
    }

    /// The limit a request arriving now would wait on, if any (for progress reports).
    pub fn busy(&self, session: &SessionLimit) -> Option<String> {
        if session.permits.available_permits() == 0 {
            Some(format!("session limit of {}", session.max))
        } else if self.global.permits.available_permits() == 0 {
            Some(format!("global limit of {}", self.global.max))
        } else {
            None
        }
    }

    /// Whether `provider`'s limit is full now.
    pub fn provider_busy(&self, provider: &str) -> Option<String> {
        let limit = &self.providers.get(provider)?.limit;
        (limit.permits.available_permits() == 0).then(|| format!("{provider} limit of {}", limit.max))
    }

    /// A permit at `provider`.
    pub async fn provider(&self, provider: &str, deadline: Instant) -> Result<ProviderPermit, Error> {
        let limit = self
            .providers
            .get(provider)
            .ok_or_else(|| Error::Internal(format!("no limit for provider {provider}")))?;
        let started = Instant::now();
        let permit = acquire(&limit.limit, &limit.scope, started, deadline).await?;
        let lease = self.lease(provider, limit.limit.max, deadline).await?;
        self.provider_wait.record(started.elapsed().as_secs_f64());
        Ok(ProviderPermit {
            _permit: permit,
            _lease: lease,
            _gauge: Gauge::new(&limit.inflight),
        })
    }

    /// Current usage of every limit.
    pub fn usage(&self) -> Vec<LimitUsage> {
        let mut out = vec![LimitUsage {
            scope: "global".into(),
            in_flight: self.global.in_flight(),
            max: self.global.max,
        }];
        let mut providers: Vec<_> = self.providers.iter().collect();
        providers.sort_by(|a, b| a.0.cmp(b.0));
        out.extend(providers.into_iter().map(|(name, l)| LimitUsage {
            scope: name.clone(),
            in_flight: l.limit.in_flight(),
            max: l.limit.max,
        }));
        out
    }

    /// Stops handing out permits; waiters fail with `ShuttingDown`.
    pub fn close(&self) {
        self.global.permits.close();
        for l in self.providers.values() {
            l.limit.permits.close();
        }
    }
}

async fn acquire(
    limit: &SessionLimit,
    scope: &str,
    started: Instant,
    deadline: Instant,
) -> Result<OwnedSemaphorePermit, Error> {
    if let Ok(permit) = limit.permits.clone().try_acquire_owned() {
        return Ok(permit);
    }
    match tokio::time::timeout_at(deadline, limit.permits.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_closed)) => Err(Error::ShuttingDown),
        Err(_elapsed) => {
            metrics::counter!("exai_over_capacity_total", "scope" => scope.to_string()).increment(1);
            Err(Error::OverCapacity {
                scope: scope.to_string(),
                limit: limit.max,
                waited: started.elapsed(),
                retry_after: Duration::from_secs(1),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap as Map;

    fn limits(toml: &str) -> Limits {
        let c =
            Config::from_parts(&Map::new(), Some((std::path::Path::new("t"), toml))).unwrap_or_else(|e| panic!("{e}"));
        Limits::new(&c)
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_limit_waits_then_fails_with_scope_and_retry_hint() {
        let l = limits("[limits]\nglobal_max_inflight = 1\nqueue_timeout_ms = 500");
        let s = SessionLimit::new(4);
        let held = l.request(&s, l.deadline()).await;
        assert!(held.is_ok());
        let err = l
            .request(&s, l.deadline())
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("global limit of 1") && err.contains("retry after 1 s"),
            "{err}"
        );
        assert_eq!(s.in_flight(), 1, "the failed request gave its session permit back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_the_permit_when_the_holder_finishes() {
        let l = Arc::new(limits("[limits]\nglobal_max_inflight = 1"));
        let s = SessionLimit::new(4);
        let first = l.request(&s, l.deadline()).await;
        let (l2, s2) = (l.clone(), s.clone());
        let waiter = tokio::spawn(async move { l2.request(&s2, l2.deadline()).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
        assert!(waiter.await.unwrap_or(false));
    }

    #[tokio::test]
    async fn closing_fails_waiters_with_shutting_down() {
        let l = Arc::new(limits("[limits]\nglobal_max_inflight = 1"));
        let s = SessionLimit::new(4);
        let _held = l.request(&s, l.deadline()).await;
        let (l2, s2) = (l.clone(), s.clone());
        let waiter = tokio::spawn(async move { l2.request(&s2, l2.deadline()).await.err() });
        tokio::task::yield_now().await;
        l.close();
        assert!(matches!(waiter.await.ok().flatten(), Some(Error::ShuttingDown)));
    }
}
