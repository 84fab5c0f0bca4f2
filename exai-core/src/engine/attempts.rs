//! The attempt loop: every call, whatever its front door and wire, tries the models of its plan
//! here, in order.
//!
//! For each model: its provider's permit (waiting at most until the permits' deadline), then
//! the attempt itself — run by the caller's closure through the provider's worker (circuit
//! breaker) and client (pacing, retries honouring `Retry-After`, the provider's quirks). A
//! failure is recorded in the ledger; while nothing reached the caller and the failure is worth
//! it (429, 5xx, a connection that failed, an open circuit), the next model is tried. When the
//! loop gives up, its error carries every model it tried and why each failed
//! ([`ProviderError::earlier`]), so every front door's message names them all.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::record::record_failure;
use crate::actors::limits::ProviderPermit;
use crate::catalog::ModelInfo;
use crate::error::{Error, ProviderError};
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
    /// The provider's permit, held while the reply is still being relayed.
    pub permit: ProviderPermit,
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
    /// Tries `plan` in order: `attempt(model, input, worker)` for each, after the models already
    /// left (`fallbacks`).
    pub async fn run<I, T, F, Fut>(
        &self,
        plan: Vec<(ModelInfo, I)>,
        mut fallbacks: Vec<FallbackNote>,
        mut attempt: F,
    ) -> Result<Won<T>, Error>
    where
        F: FnMut(ModelInfo, I, ProviderHandle) -> Fut,
        Fut: Future<Output = Result<Attempted<T>, Error>>,
    {
        let total = plan.len();
        let mut last = None;
        for (index, (model, input)) in plan.into_iter().enumerate() {
            let provider = model.provider.clone();
            if index > 0 {
                (self.status)(format_args!("falling back to {provider}/{}", model.id));
            }
            if let Some(full) = self.gateway.limits().provider_busy(&provider) {
                (self.status)(format_args!("queued: the {full} requests in flight is full"));
            }
            let permit = self
                .until_cancelled(self.gateway.limits().provider(&provider, self.permits_by))
                .await?;
            let handle = self
                .gateway
                .provider(&provider)
                .cloned()
                .ok_or_else(|| Error::Internal(format!("no worker for provider {provider}")))?;
            (self.status)(format_args!("calling {provider}/{}", model.id));
            let (error, emitted) = match self.until_cancelled(attempt(model.clone(), input, handle)).await? {
                Attempted::Answered(value) => {
                    return Ok(Won {
                        value,
                        model,
                        fallbacks,
                        permit,
                    });
                }
                Attempted::Failed { error, emitted } => (error, emitted),
            };
            record_failure(self.gateway, &model, self.key, error.label(), self.started);
            tracing::warn!(provider = %model.provider, model = %model.id, error = %error, "provider call failed");
            if emitted || !error.allows_fallback() || index + 1 == total {
                // The caller hears of every attempt, not only the last.
                let mut error = error;
                error.earlier = fallbacks.into_boxed_slice();
                return Err(error.into());
            }
            fallbacks.push(note(&model, &error.to_string()));
            last = Some(error);
        }
        Err(last
            .map(Error::from)
            .unwrap_or_else(|| Error::Internal("empty routing plan".into())))
    }

    async fn until_cancelled<T>(&self, fut: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        match self.cancel {
            Some(cancel) => cancel.run_until_cancelled(fut).await.unwrap_or(Err(Error::Cancelled)),
            None => fut.await,
        }
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
