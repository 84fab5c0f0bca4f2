//! A deployment's permit for one attempt: its own in-flight cap, its `tpm` (tokens its calls
//! used this minute), and with shared limits its lease (which also says whether another process
//! has cooled it), its `rpm` paced and its tokens counted across processes. Its cool-downs are
//! published here for the other processes to see.
//!
//! A deployment whose `tpm` is spent for this minute passes the call to another deployment; the
//! last one answers the call with a 429 whose `Retry-After` is what is left of the minute (no
//! call waits up to a minute for tokens). A call's tokens are counted when it ends
//! ([`DeploymentPermit::used`]), so calls that start together may go past `tpm` by what they use.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::actors::shared::{Lease, Leased};
use crate::error::Error;
use crate::gateway::Gateway;
use crate::providers::{Deployment, DeploymentState, InFlight, RECHECK, minute_left};

/// With shared limits, a deployment without a cap of its own still takes a lease, so that a
/// cool-down published elsewhere reaches this call: under this many, never refused.
const UNCAPPED: usize = 1 << 30;

/// What an attempt holds at its deployment, released on drop.
pub(crate) struct DeploymentPermit {
    /// The deployment that answered (`glm#2`).
    pub label: String,
    state: Arc<DeploymentState>,
    /// Its name in the shared limits, where its tokens are counted when it has a `tpm`.
    scope: String,
    tpm: Option<u32>,
    _in_flight: InFlight,
    _permit: Option<OwnedSemaphorePermit>,
    _lease: Option<Lease>,
}

/// Whether the deployment may take this attempt.
pub(crate) enum Taken {
    Held(DeploymentPermit),
    /// Another process cooled it, for this long still.
    Cooling(Duration),
    /// Its `rpm` or `tpm` is spent for now, and another deployment may take the call.
    Spent,
    /// Its `tpm` (this many tokens a minute) is spent until the minute ends, in this long.
    TokensSpent {
        tpm: u32,
        left: Duration,
    },
}

impl DeploymentPermit {
    /// Takes `deployment`'s permits, waiting at most until `deadline`. With `others` (another
    /// deployment may take the call), a spent `rpm` is not waited for.
    pub async fn take(
        gateway: &Gateway,
        deployment: &Deployment,
        deadline: Instant,
        others: bool,
    ) -> Result<Taken, Error> {
        let started = Instant::now();
        if let Some(tpm) = deployment.tpm {
            // This process's count at least: its own calls' tokens reach the store off their path.
            let here = deployment.state.tokens_this_minute();
            let used = match gateway.limits().shared() {
                Some(shared) => shared
                    .tokens(&deployment.scope, 0)
                    .await
                    .map_or(here, |all| all.max(here)),
                None => here,
            };
            if used >= u64::from(tpm) {
                if others {
                    return Ok(Taken::Spent);
                }
                return Ok(Taken::TokensSpent {
                    tpm,
                    left: minute_left(),
                });
            }
        }
        if !deployment.state.try_pace() {
            if others {
                return Ok(Taken::Spent);
            }
            let rpm = deployment.rpm.unwrap_or_default();
            if tokio::time::timeout_at(deadline, deployment.state.pace())
                .await
                .is_err()
            {
                return Err(Error::OverCapacity {
                    scope: format!("{} rpm ({rpm} per minute)", deployment.label),
                    limit: rpm as usize,
                    waited: started.elapsed(),
                    retry_after: Duration::from_secs(1),
                });
            }
        }
        let permit = match &deployment.limit {
            None => None,
            Some(limit) => Some(match limit.permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => match tokio::time::timeout_at(deadline, limit.permits.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_closed)) => return Err(Error::ShuttingDown),
                    Err(_elapsed) => {
                        return Err(Error::OverCapacity {
                            scope: format!("deployment {}", deployment.label),
                            limit: limit.max,
                            waited: started.elapsed(),
                            retry_after: Duration::from_secs(1),
                        });
                    }
                },
            }),
        };
        let mut lease = None;
        if let Some(shared) = gateway.limits().shared() {
            let cap = deployment.limit.as_ref().map_or(UNCAPPED, |l| l.max);
            match shared.lease(&deployment.scope, cap, deadline).await {
                Ok(Leased::Held(held)) => lease = Some(held),
                Ok(Leased::Local) => {}
                Ok(Leased::Cooling(left)) => {
                    // Trusted here for a while, then asked again: a check elsewhere may end it.
                    deployment.state.cool(left.min(RECHECK));
                    return Ok(Taken::Cooling(left));
                }
                Err(e) => return Err(e),
            }
            if let Some(rpm) = deployment.rpm {
                // With another deployment to go to, only a call that may go now is taken.
                let by = if others { Instant::now() } else { deadline };
                match shared.pace(&deployment.scope, rpm, by).await {
                    Ok(()) => {}
                    Err(Error::OverCapacity { .. }) if others => return Ok(Taken::Spent),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Taken::Held(DeploymentPermit {
            label: deployment.label.clone(),
            state: deployment.state.clone(),
            scope: deployment.scope.clone(),
            tpm: deployment.tpm,
            _in_flight: deployment.state.start(),
            _permit: permit,
            _lease: lease,
        }))
    }

    /// The call used `tokens` (prompt and completion): counted against its `tpm` for this
    /// minute, here and — when it has a `tpm` — in every process (off the call's path).
    pub fn used(&self, gateway: &Gateway, tokens: u64) {
        self.state.used_tokens(tokens);
        if self.tpm.is_some()
            && tokens > 0
            && let Some(shared) = gateway.limits().shared().cloned()
        {
            // Tracked: a short-lived process (`exai chat`) waits for it at shutdown.
            let (scope, tracked) = (self.scope.clone(), gateway.track());
            tokio::spawn(async move {
                let _tracked = tracked;
                shared.tokens(&scope, tokens).await
            });
        }
    }
}

impl std::fmt::Debug for DeploymentPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeploymentPermit({})", self.label)
    }
}

/// Tells the other processes that the deployment of `scope` is cooling for `for_` (off the
/// call's path).
pub(crate) fn publish_cool(gateway: &Gateway, scope: &str, for_: Duration) {
    if let Some(shared) = gateway.limits().shared().cloned() {
        let (scope, tracked) = (scope.to_string(), gateway.track());
        tokio::spawn(async move {
            let _tracked = tracked;
            shared.cool(&scope, for_).await
        });
    }
}
