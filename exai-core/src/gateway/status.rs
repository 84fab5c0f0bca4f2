//! What the gateway can say about itself: models, provider health, memory, limits, queue,
//! sessions, usage and the response cache. This is what `status` tools, `/readyz` and `exai doctor` show, so that
//! nobody has to guess whether requests (and credits) are really flowing.

use serde::Serialize;

use super::Gateway;
use crate::actors::conversation::QueueStats;
use crate::actors::limits::LimitUsage;
use crate::actors::session::SessionInfo;
use crate::catalog::ModelInfo;
use crate::engine::CacheStats;
use crate::error::Error;
use crate::providers::{ProviderCheck, ProviderHealth};
use crate::usage::UsageReport;

/// A model and whether its provider can take requests.
#[derive(Debug, Clone, Serialize)]
pub struct ModelEntry {
    /// The model.
    #[serde(flatten)]
    pub model: ModelInfo,
    /// Its provider is enabled and has a key.
    pub configured: bool,
}

/// The memory backend's state.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryStatus {
    /// `redis` or `local`.
    pub backend: &'static str,
    /// It answered a ping just now.
    pub reachable: bool,
    /// Why not, if not.
    pub error: Option<String>,
}

/// Everything at once.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayStatus {
    /// exai-core's version.
    pub version: &'static str,
    /// Each provider's health.
    pub providers: Vec<ProviderHealth>,
    /// Memory.
    pub memory: MemoryStatus,
    /// Each limit's use.
    pub limits: Vec<LimitUsage>,
    /// Whether the limits are shared with other processes right now.
    pub shared_limits: SharedLimitsStatus,
    /// Through what: `redis`, or `sqlite` (the state file); none when not shared.
    pub shared_limits_backend: Option<&'static str>,
    /// The conversation queue.
    pub queue: QueueStats,
    /// Open sessions.
    pub sessions: Vec<SessionInfo>,
    /// Usage and cost so far.
    pub usage: UsageReport,
    /// The response cache: hits, misses, bytes held, its Redis level's health.
    pub cache: CacheStats,
}

/// Whether the global and provider limits are shared with other processes right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SharedLimitsStatus {
    /// Not shared (`limits.shared` off, or no store to share: `memory.backend = memory`):
    /// this process's limits only.
    Off,
    /// Shared through Redis or the SQLite state file ([`Gateway::shared_limits_backend`]).
    Shared,
    /// Shared, but the store is failing: this process runs on its local limits until it is
    /// back.
    Degraded,
}

impl Gateway {
    /// Whether the limits are shared with other processes, and working.
    pub fn shared_limits(&self) -> SharedLimitsStatus {
        match self.inner.limits.shared() {
            None => SharedLimitsStatus::Off,
            Some(s) if s.is_degraded() => SharedLimitsStatus::Degraded,
            Some(_) => SharedLimitsStatus::Shared,
        }
    }

    /// What the limits are shared through — `redis`, or `sqlite` (the state file of this
    /// machine) — if they are.
    pub fn shared_limits_backend(&self) -> Option<&'static str> {
        self.inner.limits.shared().map(|s| s.backend())
    }

    /// Every model in the catalog, with whether it can be used now.
    pub fn models(&self) -> Vec<ModelEntry> {
        let config = &self.inner.config;
        self.inner
            .catalog
            .models()
            .iter()
            .map(|m| ModelEntry {
                configured: config.provider(&m.provider).is_some_and(|p| p.is_ready()),
                model: m.clone(),
            })
            .collect()
    }

    /// Each provider's health, in configuration order.
    pub async fn provider_health(&self) -> Result<Vec<ProviderHealth>, Error> {
        let mut out = Vec::new();
        let pools = self.inner.pools.load();
        for p in &self.inner.config.providers {
            if let Some(pool) = pools.get(&p.name) {
                out.push(pool.health().await?);
            }
        }
        Ok(out)
    }

    /// The memory backend's state (pings Redis).
    pub async fn memory_status(&self) -> MemoryStatus {
        let memory = &self.inner.memory;
        let ping = memory.ping().await;
        MemoryStatus {
            backend: memory.backend(),
            reachable: ping.is_ok(),
            error: ping.err().map(|e| e.to_string()),
        }
    }

    /// Checks every deployment's key with a cheap authenticated call (`GET /models`), in
    /// parallel. Unconfigured providers are reported as such, without a call. A deployment
    /// whose key was rejected and is now accepted takes calls again, here and (with shared
    /// limits) in every process.
    pub async fn check_providers(&self) -> Vec<ProviderCheck> {
        let pools = self.inner.pools.load();
        let deployments: Vec<_> = self
            .inner
            .config
            .providers
            .iter()
            .filter_map(|p| pools.get(&p.name))
            .flat_map(|pool| pool.deployments().iter().cloned())
            .collect();
        let checks = deployments.iter().map(|d| async move {
            let check = d.handle.check().await;
            if check.ok
                && let Some(shared) = self.inner.limits.shared()
            {
                shared.cool(&d.scope, std::time::Duration::ZERO).await;
            }
            check
        });
        futures::future::join_all(checks).await
    }

    /// Checks that memory answers and accepts writes (for Redis: a probe key written, read back
    /// and deleted).
    pub async fn check_memory(&self) -> MemoryStatus {
        let memory = &self.inner.memory;
        let probe = memory.probe().await;
        MemoryStatus {
            backend: memory.backend(),
            reachable: probe.is_ok(),
            error: probe.err().map(|e| e.to_string()),
        }
    }

    /// Each limit's use now: `global`, then each provider's, calls in flight against the limit.
    pub fn limit_usage(&self) -> Vec<LimitUsage> {
        self.inner.limits.usage()
    }

    /// The response cache: what it did since start, what it holds, whether its Redis level
    /// answers (pinged).
    pub async fn cache_stats(&self) -> CacheStats {
        self.inner.response_cache.stats().await
    }

    /// Open sessions.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, Error> {
        self.inner.sessions.list().await
    }

    /// The whole picture.
    pub async fn status(&self) -> Result<GatewayStatus, Error> {
        Ok(GatewayStatus {
            version: env!("CARGO_PKG_VERSION"),
            providers: self.provider_health().await?,
            memory: self.memory_status().await,
            limits: self.inner.limits.usage(),
            shared_limits: self.shared_limits(),
            shared_limits_backend: self.shared_limits_backend(),
            queue: self.inner.queue.stats().await?,
            sessions: self.sessions().await?,
            usage: self.usage().await,
            cache: self.cache_stats().await,
        })
    }
}
