//! The attempt loop: every call, whatever its front door and wire, tries the models of its plan
//! here, in order, and each model's deployments (its provider's endpoints and keys) in the
//! order its strategy gives, skipping those cooling down; a 429 or a rejected key moves the call
//! to the next deployment at once, before any other model. When every deployment is cooling,
//! the call answers 429 with the soonest `Retry-After`.
//!
//! For each deployment: its provider's permit (waiting at most until the permits' deadline),
//! the deployment's own (its cap, its shared lease and pacing), then the attempt itself — run
//! by the caller's closure through the deployment's worker (circuit breaker) and client
//! (retries honouring `Retry-After`, the provider's quirks). A failure is recorded in the
//! ledger; while nothing reached the caller and the failure is worth it (429, 5xx, a connection
//! that failed, an open circuit, a rejected key with another key left), the next deployment,
//! then the next model, is tried. When the
//! loop gives up, its error carries every model it tried and why each failed
//! ([`ProviderError::earlier`]), so every front door's message names them all.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use std::time::Duration;

use super::deployment::{DeploymentPermit, Taken, publish_cool};
use super::record::record_failure;
use crate::actors::limits::ProviderPermit;
use crate::catalog::ModelInfo;
use crate::error::{Error, ProviderError, ProviderErrorKind};
use crate::gateway::Gateway;
use crate::providers::ProviderHandle;
use crate::request::FallbackNote;

/// What one attempt came to.
pub(crate) enum Attempted<T> {
    /// The provider answered.
    Answered(T),
    /// It failed; `emitted` when part of the reply had already reached the caller (no
    /// fallback then).
    Failed { error: ProviderError, emitted: bool },
}

impl<T> From<Result<T, ProviderError>> for Attempted<T> {
    fn from(result: Result<T, ProviderError>) -> Self {
        match result {
            Ok(value) => Attempted::Answered(value),
            Err(error) => Attempted::Failed { error, emitted: false },
        }
    }
}

/// The attempt that answered.
pub(crate) struct Won<T> {
    pub value: T,
    pub model: ModelInfo,
    /// The models tried before, and why each was left.
    pub fallbacks: Vec<FallbackNote>,
    /// The provider's and the deployment's permits, held while the reply is still being
    /// relayed.
    pub permit: CallPermit,
}

/// What a call holds while its reply is relayed: the provider's permit and the deployment's.
#[derive(Debug)]
pub(crate) struct CallPermit {
    _provider: ProviderPermit,
    pub deployment: DeploymentPermit,
}

/// One call's attempts.
pub(crate) struct Attempts<'a> {
    pub gateway: &'a Gateway,
    /// The key the call runs for, if any (its ledger rows).
    pub key: Option<&'a str>,
    /// How long to wait for a provider permit.
    pub permits_by: Instant,
    /// The call's cancellation, when it has one of its own.
    pub cancel: Option<&'a CancellationToken>,
    pub started: Instant,
    /// Tells the caller what the call is doing (a stream's status line).
    pub status: &'a (dyn Fn(std::fmt::Arguments<'_>) + Sync),
}

impl Attempts<'_> {
    /// Tries `plan` in order, after the models already left (`fallbacks`): for each model, its
    /// provider's deployments that take calls now, best first by the provider's strategy —
    /// `attempt(model, input, worker)` for each — before the next model.
    pub async fn run<I, T, F, Fut>(
        &self,
        plan: Vec<(ModelInfo, I)>,
        mut fallbacks: Vec<FallbackNote>,
        mut attempt: F,
    ) -> Result<Won<T>, Error>
    where
        I: Clone,
        F: FnMut(ModelInfo, I, ProviderHandle) -> Fut,
        Fut: Future<Output = Result<Attempted<T>, Error>>,
    {
        let mut last: Option<ProviderError> = None;
        // The soonest a cooling deployment takes calls again, when one was passed over.
        let mut cooling: Option<Duration> = None;
        for (index, (model, input)) in plan.into_iter().enumerate() {
            let provider = model.provider.clone();
            let pool = self
                .gateway
                .pool(&provider)
                .ok_or_else(|| Error::Internal(format!("no worker for provider {provider}")))?;
            let (order, soonest) = pool.order(Instant::now());
            if order.is_empty() {
                let kind = match soonest {
                    Some(left) => {
                        cooling = Some(cooling.map_or(left, |c| c.min(left)));
                        let who = if pool.deployments().len() > 1 {
                            "every deployment is"
                        } else {
                            "its key is"
                        };
                        cooling_down(left, who, "")
                    }
                    None => ProviderErrorKind::Auth {
                        status: 401,
                        key_source: "every configured key".into(),
                        message:
                            "each key was rejected; reload the configuration or run `exai doctor` once they are fixed"
                                .into(),
                    },
                };
                let error = ProviderError::new(&provider, &model.id, kind);
                fallbacks.push(note(&model, &error.to_string()));
                last = Some(error);
                continue;
            }
            if index > 0 {
                (self.status)(format_args!("falling back to {provider}/{}", model.id));
            }
            let several = pool.deployments().len() > 1;
            let mut input = Some(input);
            for (n, deployment) in order.iter().enumerate() {
                let Some(this_input) = (if n + 1 == order.len() {
                    input.take()
                } else {
                    input.clone()
                }) else {
                    break;
                };
                if let Some(full) = self.gateway.limits().provider_busy(&provider) {
                    (self.status)(format_args!("queued: the {full} requests in flight is full"));
                }
                let provider_permit = self
                    .until_cancelled(self.gateway.limits().provider(&provider, self.permits_by))
                    .await?;
                let others = n + 1 < order.len();
                let taken = self
                    .until_cancelled(DeploymentPermit::take(
                        self.gateway,
                        deployment,
                        self.permits_by,
                        others,
                    ))
                    .await?;
                let deployment_permit = match taken {
                    Taken::Held(permit) => permit,
                    Taken::Spent => {
                        // The input goes on to the next deployment.
                        input = input.or(Some(this_input));
                        continue;
                    }
                    Taken::Cooling(left) | Taken::TokensSpent { left, .. } => {
                        // Cooled by another process, or out of tokens for this minute: skipped,
                        // as a local cool-down would be.
                        let kind = match taken {
                            Taken::TokensSpent { tpm, .. } => tokens_spent(left, tpm),
                            _ => cooling_down(left, "this deployment is", " in another process"),
                        };
                        cooling = Some(cooling.map_or(left, |c| c.min(left)));
                        let mut error = ProviderError::new(&provider, &model.id, kind);
                        if several {
                            error.deployment = Some(deployment.label.clone());
                        }
                        fallbacks.push(note(&model, &error.to_string()));
                        last = Some(error);
                        input = input.or(Some(this_input));
                        continue;
                    }
                };
                if several {
                    (self.status)(format_args!("calling {provider}/{} at {}", model.id, deployment.label));
                } else {
                    (self.status)(format_args!("calling {provider}/{}", model.id));
                }
                let began = Instant::now();
                let (mut error, emitted) = match self
                    .until_cancelled(attempt(model.clone(), this_input, deployment.handle.clone()))
                    .await?
                {
                    Attempted::Answered(value) => {
                        deployment.state.answered(began.elapsed());
                        return Ok(Won {
                            value,
                            model,
                            fallbacks,
                            permit: CallPermit {
                                _provider: provider_permit,
                                deployment: deployment_permit,
                            },
                        });
                    }
                    Attempted::Failed { error, emitted } => (error, emitted),
                };
                if several {
                    error.deployment = Some(deployment.label.clone());
                }
                if let Some(cool) = deployment
                    .state
                    .failed(&error, self.gateway.limits().shared().is_some())
                {
                    publish_cool(self.gateway, &deployment.scope, cool);
                }
                record_failure(
                    self.gateway,
                    &model,
                    &deployment.label,
                    self.key,
                    error.label(),
                    self.started,
                );
                tracing::warn!(provider = %model.provider, deployment = %deployment.label, model = %model.id, error = %error, "provider call failed");
                // Another key may be good where this one was rejected; another model is not
                // tried for a rejected key, as before deployments.
                let go_on = if n + 1 < order.len() {
                    error.allows_fallback() || matches!(error.kind, ProviderErrorKind::Auth { .. })
                } else {
                    error.allows_fallback()
                };
                if emitted || !go_on {
                    // The caller hears of every attempt, not only the last.
                    error.earlier = fallbacks.into_boxed_slice();
                    return Err(error.into());
                }
                fallbacks.push(note(&model, &error.to_string()));
                last = Some(error);
            }
        }
        let Some(mut error) = last else {
            return Err(Error::Internal("empty routing plan".into()));
        };
        // The last note is this error's own.
        fallbacks.pop();
        if let (Some(left), ProviderErrorKind::RateLimited { retry_after, .. }) = (cooling, &mut error.kind) {
            // Nothing is left: the caller may come back when the first deployment is ready.
            *retry_after = Some(retry_after.map_or(left, |r| r.min(left)));
        }
        error.earlier = fallbacks.into_boxed_slice();
        Err(error.into())
    }

    async fn until_cancelled<T>(&self, fut: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        match self.cancel {
            Some(cancel) => cancel.run_until_cancelled(fut).await.unwrap_or(Err(Error::Cancelled)),
            None => fut.await,
        }
    }
}

/// A 429 for a deployment whose `tpm` is spent until the minute ends, in `left`.
fn tokens_spent(left: Duration, tpm: u32) -> ProviderErrorKind {
    ProviderErrorKind::RateLimited {
        retry_after: Some(left),
        message: format!(
            "this deployment's tpm ({tpm} tokens a minute) is spent for {} s more",
            left.as_secs().max(1)
        ),
    }
}

/// A 429 for a deployment (or all of them: `who`) cooling down for `left`, after a failure
/// `where_` (here, or on another daemon).
fn cooling_down(left: Duration, who: &str, where_: &str) -> ProviderErrorKind {
    ProviderErrorKind::RateLimited {
        retry_after: Some(left),
        message: format!(
            "{who} cooling down for {} s more (after a 429, an open circuit or a rejected key{where_})",
            left.as_secs().max(1)
        ),
    }
}

/// Why `model` was left.
pub(crate) fn note(model: &ModelInfo, error: &str) -> FallbackNote {
    FallbackNote {
        provider: model.provider.clone(),
        model: model.id.clone(),
        error: error.to_string(),
    }
}
