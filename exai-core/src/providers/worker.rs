//! The provider worker: one actor per provider.
//!
//! The actor owns the provider's circuit breaker and health record; the HTTP client (shared,
//! pooled) does the talking. A `Call` is admitted or refused by the breaker inside the actor,
//! then runs as its own task so that calls to one provider proceed in parallel (the actor is never
//! blocked on the network). When the task ends it reports back with `Finished`, which updates the
//! breaker. Cancelling the call's token (the caller dropped its future or stream) aborts the HTTP
//! request at once.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::circuit::{Admission, Circuit};
use super::{ProviderCall, ProviderClient, ProviderEvent};
use crate::config::RetryConfig;
use crate::error::{Error, ProviderError, ProviderErrorKind};

/// Events buffered between a running call and its consumer.
const EVENT_BUFFER: usize = 64;

/// What the worker is asked.
pub(crate) enum WorkerMsg {
    /// Run a call; events (ending with `Done`) go to `events`.
    Call {
        call: ProviderCall,
        events: mpsc::Sender<ProviderEvent>,
        cancel: CancellationToken,
    },
    /// A call's task finished.
    Finished { outcome: Outcome, trial: bool },
    /// Report health.
    Health(RpcReplyPort<ProviderHealth>),
}

/// How a call ended, as far as the breaker cares.
#[derive(Debug)]
pub(crate) enum Outcome {
    Success,
    Failure(ProviderError),
    Neutral(Option<ProviderError>),
}

/// A provider's health, for `status` tools and `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderHealth {
    /// Provider name.
    pub provider: String,
    /// Whether it has what it needs to take requests.
    pub configured: bool,
    /// `closed` (healthy), `open` (refusing after failures) or `half_open` (trying again).
    pub circuit: &'static str,
    /// Consecutive failures counted by the breaker.
    pub consecutive_failures: u32,
    /// Calls started.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// The last error, and when (unix ms).
    pub last_error: Option<(String, u64)>,
}

/// The actor.
pub(crate) struct ProviderWorker;

/// Its state.
pub(crate) struct WorkerState {
    client: Arc<ProviderClient>,
    circuit: Circuit,
    calls: u64,
    failures: u64,
    last_error: Option<(String, u64)>,
}

impl Actor for ProviderWorker {
    type Msg = WorkerMsg;
    type State = WorkerState;
    type Arguments = (Arc<ProviderClient>, RetryConfig);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (client, retry): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(WorkerState {
            client,
            circuit: Circuit::new(retry.circuit_failure_threshold, retry.circuit_cooldown),
            calls: 0,
            failures: 0,
            last_error: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WorkerMsg::Call { call, events, cancel } => {
                state.calls += 1;
                let trial = match state.circuit.admit(Instant::now()) {
                    Admission::Allowed => false,
                    Admission::Trial => true,
                    Admission::Refused(retry_after) => {
                        let kind = ProviderErrorKind::CircuitOpen { retry_after };
                        let err = ProviderError::new(&state.client.config.name, &call.model.id, kind);
                        let _ = events.try_send(ProviderEvent::Done(Err(err)));
                        return Ok(());
                    }
                };
                let client = state.client.clone();
                tokio::spawn(async move {
                    let result = tokio::select! {
                        _ = cancel.cancelled() => None,
                        r = client.execute(&call, &events) => Some(r),
                    };
                    let outcome = match &result {
                        Some(Ok(_)) => Outcome::Success,
                        Some(Err(e)) if e.counts_against_provider() => Outcome::Failure(e.clone()),
                        Some(Err(e)) => Outcome::Neutral(Some(e.clone())),
                        None => Outcome::Neutral(None),
                    };
                    let _ = myself.cast(WorkerMsg::Finished { outcome, trial });
                    if let Some(result) = result {
                        let _ = events.send(ProviderEvent::Done(result)).await;
                    }
                });
            }
            WorkerMsg::Finished { outcome, trial } => match outcome {
                Outcome::Success => state.circuit.success(),
                Outcome::Failure(e) => {
                    state.circuit.failure(Instant::now());
                    state.record_error(&e);
                }
                Outcome::Neutral(e) => {
                    state.circuit.neutral(trial);
                    if let Some(e) = e {
                        state.record_error(&e);
                    }
                }
            },
            WorkerMsg::Health(reply) => {
                let _ = reply.send(ProviderHealth {
                    provider: state.client.config.name.clone(),
                    configured: state.client.config.is_ready(),
                    circuit: state.circuit.state_name(),
                    consecutive_failures: state.circuit.failures(),
                    calls: state.calls,
                    failures: state.failures,
                    last_error: state.last_error.clone(),
                });
            }
        }
        Ok(())
    }
}

impl WorkerState {
    fn record_error(&mut self, e: &ProviderError) {
        self.failures += 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        self.last_error = Some((e.to_string(), now));
    }
}

/// A typed handle on a worker.
#[derive(Clone)]
pub(crate) struct ProviderHandle {
    pub name: String,
    actor: ActorRef<WorkerMsg>,
}

impl ProviderHandle {
    /// Starts a call; the receiver yields its events, ending with `Done`.
    pub fn call(
        &self,
        call: ProviderCall,
        cancel: CancellationToken,
    ) -> Result<mpsc::Receiver<ProviderEvent>, Error> {
        let (events, rx) = mpsc::channel(EVENT_BUFFER);
        self.actor
            .cast(WorkerMsg::Call { call, events, cancel })
            .map_err(|_| Error::Internal(format!("provider worker {} is not running", self.name)))?;
        Ok(rx)
    }

    /// The provider's health.
    pub async fn health(&self) -> Result<ProviderHealth, Error> {
        crate::actors::ask(&self.actor, WorkerMsg::Health, "provider worker").await
    }

    /// Stops the worker.
    pub fn stop(&self) {
        self.actor.stop(None);
    }
}

/// Spawns the worker for one provider.
pub(crate) async fn spawn_worker(client: ProviderClient, retry: RetryConfig) -> Result<ProviderHandle, Error> {
    let name = client.config.name.clone();
    let (actor, _) = Actor::spawn(None, ProviderWorker, (Arc::new(client), retry))
        .await
        .map_err(|e| Error::Internal(format!("cannot start provider worker {name}: {e}")))?;
    Ok(ProviderHandle { name, actor })
}
