//! The checks one call of a key passes before any provider is called, in this order: the key
//! still works (not revoked, rotated or expired), the tool and model allow-lists, the budget of
//! its period, tokens this minute, requests per minute, calls in flight. Budget and tokens are
//! read from this process's copy of the meters (see `view.rs`); requests per minute and calls in
//! flight are counted in the shared limits (`actors/shared/`) — one GCRA limiter and one lease
//! set per key for every daemon on the Redis the keys live in, or every process on their SQLite
//! file when `limits.shared` is on — and in this process otherwise, or while the store fails.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::auth::{Caller, Who};
use super::handle::Keys;
use super::period::{minute_id, rest_of_minute, rfc3339};
use super::secret;
use super::types::{KeyLimits, StoredKey};
use crate::actors::shared::{Lease, Leased};
use crate::catalog::{Catalog, ModelInfo};
use crate::config::Config;
use crate::error::Error;

/// A call admitted for a key: the key as it stood, and its place among the key's calls in
/// flight (freed when the pass drops).
pub(crate) struct KeyPass {
    pub key: Arc<StoredKey>,
    _inflight: Option<InFlight>,
}

enum InFlight {
    Local(#[allow(dead_code)] OwnedSemaphorePermit),
    Shared(#[allow(dead_code)] Lease),
}

/// This process's per-key limiters, rebuilt when a key's limit changes.
#[derive(Default)]
pub(crate) struct Limiters {
    rpm: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
    inflight: Mutex<HashMap<String, (u32, Arc<Semaphore>)>>,
}

impl Limiters {
    fn rpm(&self, name: &str, rpm: u32) -> Arc<DefaultDirectRateLimiter> {
        let mut map = self.rpm.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(name) {
            Some((n, limiter)) if *n == rpm => limiter.clone(),
            _ => {
                let quota = Quota::per_minute(NonZeroU32::new(rpm).unwrap_or(NonZeroU32::MIN));
                let limiter = Arc::new(RateLimiter::direct(quota));
                map.insert(name.to_string(), (rpm, limiter.clone()));
                limiter
            }
        }
    }

    fn inflight(&self, name: &str, max: u32) -> Arc<Semaphore> {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(name) {
            Some((n, permits)) if *n == max => permits.clone(),
            _ => {
                let permits = Arc::new(Semaphore::new(max as usize));
                map.insert(name.to_string(), (max, permits.clone()));
                permits
            }
        }
    }
}

/// Whether `limits` let a key use `model`: an entry names its id, `provider/id`, its provider,
/// or an alias that resolves to it.
fn allows_model(limits: &KeyLimits, model: &ModelInfo, catalog: &Catalog, config: &Config) -> bool {
    let Some(allowed) = &limits.models else {
        return true;
    };
    allowed.iter().any(|entry| {
        entry.eq_ignore_ascii_case(&model.id)
            || entry.eq_ignore_ascii_case(&format!("{}/{}", model.provider, model.id))
            || entry.eq_ignore_ascii_case(&model.provider)
            || catalog
                .resolve(entry, config)
                .is_some_and(|m| m.provider == model.provider && m.id == model.id)
    })
}

/// Narrows a routing plan to the models `key` may use (no key: all of them); refused when none
/// is left. `asked` is the model as the caller named it, for the message.
pub(crate) fn narrow_plan(
    key: Option<&StoredKey>,
    plan: &mut Vec<ModelInfo>,
    asked: &str,
    catalog: &Catalog,
    config: &Config,
) -> Result<(), Error> {
    let Some(key) = key else {
        return Ok(());
    };
    plan.retain(|m| allows_model(&key.limits, m, catalog, config));
    if plan.is_empty() {
        let allowed = key.limits.models.as_deref().unwrap_or_default().join(", ");
        return Err(Error::Forbidden {
            key: key.name.clone(),
            what: format!("use model {asked} (it may use: {allowed})"),
        });
    }
    Ok(())
}

fn refuse(name: &str, reason: &'static str, error: Error) -> Result<Option<KeyPass>, Error> {
    metrics::counter!("exai_key_refusals_total", "key" => name.to_string(), "reason" => reason).increment(1);
    Err(error)
}

/// What one call asks of a key.
pub(crate) struct Ask<'a> {
    /// The tool, for a tool call.
    pub tool: Option<&'a str>,
    /// The model as asked (`auto`, an alias, an id).
    pub model: Option<&'a str>,
    pub catalog: &'a Catalog,
    pub config: &'a Config,
}

impl Keys {
    /// The caller's key as it stands now, if a key is calling and still matches.
    pub(crate) fn current(&self, caller: &Caller) -> Option<Arc<StoredKey>> {
        let Who::Key { name, hash } = &caller.0 else {
            return None;
        };
        self.inner.view.by_name(name).filter(|k| secret::same(&k.hash, hash))
    }

    /// Admits one call for `caller`: `None` for a caller without a key (nothing to check).
    pub(crate) async fn admit(&self, caller: &Caller, ask: Ask<'_>) -> Result<Option<KeyPass>, Error> {
        let Who::Key { name, .. } = &caller.0 else {
            return Ok(None);
        };
        let Some(key) = self.current(caller) else {
            let reason = format!("key {name} was rotated or removed: use its new secret");
            return refuse(name, "revoked_or_expired", Error::Unauthorized { reason });
        };
        let now = self.now();
        if let Some(reason) = key.refusal(now) {
            return refuse(name, "revoked_or_expired", Error::Unauthorized { reason });
        }
        let limits = &key.limits;
        if let (Some(tool), Some(tools)) = (ask.tool, &limits.tools)
            && !tools.iter().any(|t| t == tool)
        {
            let what = format!("call tool {tool} (it may call: {})", tools.join(", "));
            return refuse(
                name,
                "tool",
                Error::Forbidden {
                    key: name.to_string(),
                    what,
                },
            );
        }
        if let (Some(model), Some(models)) = (ask.model.filter(|m| *m != "auto"), &limits.models)
            && let Some(info) = ask.catalog.resolve(model, ask.config)
            && !allows_model(limits, &info, ask.catalog, ask.config)
        {
            let what = format!("use model {model} (it may use: {})", models.join(", "));
            return refuse(
                name,
                "model",
                Error::Forbidden {
                    key: name.to_string(),
                    what,
                },
            );
        }
        if let Some(budget) = limits.budget_usd {
            let spent = self.inner.view.meter(name, &limits.period.id(now)).cost_usd;
            if spent >= budget {
                let error = Error::BudgetExceeded {
                    key: name.to_string(),
                    budget_usd: budget,
                    spent_usd: spent,
                    period: limits.period,
                    resets_at: limits.period.resets_at(now).map(rfc3339),
                };
                return refuse(name, "budget", error);
            }
        }
        if let Some(tpm) = limits.tpm {
            let used = self.inner.view.meter(name, &minute_id(now)).tokens;
            if used >= tpm {
                let error = Error::KeyLimited {
                    key: name.to_string(),
                    limit: format!("{tpm} tokens per minute ({used} used this minute)"),
                    retry_after: rest_of_minute(now),
                };
                return refuse(name, "tpm", error);
            }
        }
        if let Some(rpm) = limits.rpm
            && let Err(e) = self.pace(name, rpm).await
        {
            return refuse(name, "rpm", e);
        }
        let inflight = match limits.max_inflight {
            Some(max) => match self.hold(name, max).await {
                Ok(held) => Some(held),
                Err(e) => return refuse(name, "inflight", e),
            },
            None => None,
        };
        if let Ok(mut used) = self.inner.used.lock() {
            used.insert(name.to_string(), now.unix_timestamp() * 1000);
        }
        Ok(Some(KeyPass {
            key,
            _inflight: inflight,
        }))
    }

    /// Counts one request against the key's `rpm`: shared when keys live in Redis (and Redis
    /// answers), in this process otherwise.
    async fn pace(&self, name: &str, rpm: u32) -> Result<(), Error> {
        let limited = |retry_after| Error::KeyLimited {
            key: name.to_string(),
            limit: format!("{rpm} requests per minute"),
            retry_after,
        };
        if let Some(shared) = &self.inner.shared {
            match shared.pace(&format!("key:{name}"), rpm, Instant::now()).await {
                Err(Error::OverCapacity { retry_after, .. }) => return Err(limited(retry_after)),
                Err(e) => return Err(e),
                Ok(()) if !shared.is_degraded() => return Ok(()),
                Ok(()) => {}
            }
        }
        self.inner
            .limiters
            .rpm(name, rpm)
            .check()
            .map_err(|not_until| limited(not_until.wait_time_from(DefaultClock::default().now())))
    }

    /// Takes one of the key's `max` places in flight, without waiting.
    async fn hold(&self, name: &str, max: u32) -> Result<InFlight, Error> {
        let full = || Error::KeyLimited {
            key: name.to_string(),
            limit: format!("{max} calls in flight"),
            retry_after: std::time::Duration::from_secs(1),
        };
        if let Some(shared) = &self.inner.shared {
            match shared.lease(&format!("key:{name}"), max as usize, Instant::now()).await {
                Ok(Leased::Held(lease)) => return Ok(InFlight::Shared(lease)),
                Ok(Leased::Local) => {}
                Ok(Leased::Cooling(_)) | Err(_) => return Err(full()),
            }
        }
        self.inner
            .limiters
            .inflight(name, max)
            .try_acquire_owned()
            .map(InFlight::Local)
            .map_err(|_| full())
    }
}
