//! The providers' deployment pools: built at start, rebuilt on a reload.
//!
//! The pools sit behind an [`ArcSwap`]: a call loads the current map once and keeps the
//! `Arc<Pool>` it chose from, so a reload swaps in new pools without touching a call in flight.
//! A deployment whose configuration did not change is carried over as it is (its worker, its
//! circuit, its cool-down); one that changed or went away has its worker stopped once the last
//! call holding it has ended.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{Config, ProviderConfig};
use crate::error::Error;
use crate::providers::{Deployment, DeploymentState, Pool, ProviderClient, ProviderHandle, spawn_worker};

/// Every provider's pool, by provider name.
pub(crate) type PoolMap = HashMap<String, Arc<Pool>>;

/// The pools, swappable as a whole.
pub(crate) struct Pools(ArcSwap<PoolMap>);

impl Pools {
    /// Builds every configured provider's pool.
    pub async fn build(config: &Config, http: &reqwest::Client) -> Result<Self, Error> {
        let map = build_map(config, http, &PoolMap::new()).await?;
        Ok(Self(ArcSwap::from_pointee(map)))
    }

    /// The current pools.
    pub fn load(&self) -> Arc<PoolMap> {
        self.0.load_full()
    }

    /// One provider's pool.
    pub fn get(&self, provider: &str) -> Option<Arc<Pool>> {
        self.0.load().get(provider).cloned()
    }

    /// Rebuilds the pools from `config`, keeping the deployments that did not change; returns
    /// the labels of those added or changed and those removed.
    pub async fn reload(&self, config: &Config, http: &reqwest::Client) -> Result<Reloaded, Error> {
        let old = self.load();
        let new = build_map(config, http, &old).await?;
        let kept: HashMap<&str, &Arc<Deployment>> = new
            .values()
            .flat_map(|p| p.deployments())
            .map(|d| (d.label.as_str(), d))
            .collect();
        let mut report = Reloaded::default();
        for d in old.values().flat_map(|p| p.deployments()) {
            match kept.get(d.label.as_str()) {
                Some(now) if Arc::ptr_eq(now, d) => {}
                Some(_) => report.changed.push(d.label.clone()),
                None => report.removed.push(d.label.clone()),
            }
            if !kept.get(d.label.as_str()).is_some_and(|now| Arc::ptr_eq(now, d)) {
                retire(d.clone());
            }
        }
        let before: Vec<&str> = old
            .values()
            .flat_map(|p| p.deployments())
            .map(|d| d.label.as_str())
            .collect();
        report.added = kept
            .keys()
            .filter(|l| !before.contains(l))
            .map(|l| l.to_string())
            .collect();
        report.added.sort();
        self.0.store(Arc::new(new));
        Ok(report)
    }

    /// Stops every worker.
    pub fn stop(&self) {
        for d in self.load().values().flat_map(|p| p.deployments()) {
            d.handle.stop();
        }
    }
}

/// What a reload changed, by deployment label.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Reloaded {
    /// Deployments new in the configuration.
    pub added: Vec<String>,
    /// Deployments whose endpoint, key or limits changed (rebuilt, cool-down cleared).
    pub changed: Vec<String>,
    /// Deployments no longer configured.
    pub removed: Vec<String>,
}

/// Stops a deployment's worker once no call holds it any more.
fn retire(deployment: Arc<Deployment>) {
    tokio::spawn(async move {
        // The pool map and this task hold it; a call in flight holds one more.
        while Arc::strong_count(&deployment) > 1 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        deployment.handle.stop();
    });
}

async fn build_map(config: &Config, http: &reqwest::Client, old: &PoolMap) -> Result<PoolMap, Error> {
    let mut map = PoolMap::new();
    for provider in &config.providers {
        let before = old.get(&provider.name);
        map.insert(
            provider.name.clone(),
            Arc::new(build_pool(config, provider, http, before).await?),
        );
    }
    Ok(map)
}

async fn build_pool(
    config: &Config,
    provider: &ProviderConfig,
    http: &reqwest::Client,
    before: Option<&Arc<Pool>>,
) -> Result<Pool, Error> {
    let count = provider.deployments.len();
    let mut deployments = Vec::with_capacity(count);
    for d in &provider.deployments {
        let fresh = Deployment::fingerprint_of(d, count);
        let same = before
            .into_iter()
            .flat_map(|p| p.deployments())
            .find(|old| old.label == d.label && old.fingerprint == fresh);
        if let Some(same) = same {
            deployments.push(same.clone());
            continue;
        }
        let state = Arc::new(DeploymentState::new(&provider.name, &d.label, d.rpm));
        let client = ProviderClient::new(provider.for_deployment(d), http.clone(), config.retry.clone())
            .for_deployment(state.clone(), count);
        let handle: ProviderHandle = spawn_worker(client, config.retry.clone()).await?;
        deployments.push(Arc::new(Deployment::new(d, handle, state, count)));
    }
    Ok(Pool::new(&provider.name, provider.strategy, deployments))
}
