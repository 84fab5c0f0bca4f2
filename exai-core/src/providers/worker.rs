//! The provider worker: one actor per provider, the single owner of that provider's health.
//!
//! The actor owns the circuit breaker and the health record, and is the only one to change them:
//! every call's outcome is cast to it (`Finished`), and half-open trials are granted by it
//! (`Admit`). After each change it publishes a read-only view of the breaker through a `watch`
//! channel, so the common case — a closed circuit — is admitted by reading that view, without a
//! message round trip.
//!
//! The HTTP call itself runs in the caller's task, over the shared pooled client. Calls to one
//! provider still proceed in parallel (nothing waits on the actor's mailbox), and a call costs no
//! thread hop: measured through `benches/gateway_overhead.rs`, running calls as tasks spawned by
//! the actor added about 30 µs per call on the 2-core reference machine. Cancellation is the
//! caller dropping the call's future, which aborts the HTTP request at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::circuit::{Admission, Circuit};
use super::{Completed, ProviderCall, ProviderClient, ProviderEvent};
use crate::config::RetryConfig;
use crate::error::{Error, ProviderError, ProviderErrorKind};

/// What the worker is asked.
pub(crate) enum WorkerMsg {
    /// Decide on a call while the circuit is not plainly closed.
    Admit(RpcReplyPort<Admission>),
    /// A call ended. `done` (when given) is answered once the circuit has taken it in.
    Finished {
        outcome: Outcome,
        trial: bool,
        done: Option<RpcReplyPort<()>>,
    },
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

/// The breaker as callers see it between changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// Closed with no failure counted: a success changes nothing, so it is not reported.
    Healthy,
    /// Closed, with failures counted that a success must reset.
    Closed,
    /// Open until then; after that, ask the actor.
    OpenUntil(Instant),
    /// Half open: ask the actor.
    Probing,
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
    /// Calls sent to the provider (admitted by the breaker).
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// The last error, and when (unix ms).
    pub last_error: Option<(String, u64)>,
    /// How calls are spread over its deployments.
    pub strategy: String,
    /// Each deployment (endpoint and key), named by its label, never its key.
    pub deployments: Vec<super::DeploymentStatus>,
}

/// The actor.
pub(crate) struct ProviderWorker;

/// Its state.
pub(crate) struct WorkerState {
    client: Arc<ProviderClient>,
    circuit: Circuit,
    view: watch::Sender<View>,
    failures: u64,
    last_error: Option<(String, u64)>,
}

impl Actor for ProviderWorker {
    type Msg = WorkerMsg;
    type State = WorkerState;
    type Arguments = (Arc<ProviderClient>, RetryConfig, watch::Sender<View>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (client, retry, view): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(WorkerState {
            client,
            circuit: Circuit::new(retry.circuit_failure_threshold, retry.circuit_cooldown),
            view,
            failures: 0,
            last_error: None,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WorkerMsg::Admit(reply) => {
                let _ = reply.send(state.circuit.admit(Instant::now()));
            }
            WorkerMsg::Finished { outcome, trial, done } => {
                match outcome {
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
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            WorkerMsg::Health(reply) => {
                let _ = reply.send(ProviderHealth {
                    provider: state.client.config.name.clone(),
                    configured: state.client.config.is_ready(),
                    circuit: state.circuit.state_name(),
                    consecutive_failures: state.circuit.failures(),
                    calls: 0,
                    failures: state.failures,
                    last_error: state.last_error.clone(),
                    strategy: String::new(),
                    deployments: Vec::new(),
                });
            }
        }
        state.publish();
        Ok(())
    }
}

impl WorkerState {
    fn record_error(&mut self, e: &ProviderError) {
        self.failures += 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_error = Some((e.to_string(), now));
    }

    fn publish(&self) {
        let view = match (self.circuit.state_name(), self.circuit.open_until()) {
            ("closed", _) if self.circuit.failures() == 0 => View::Healthy,
            ("closed", _) => View::Closed,
            (_, Some(until)) => View::OpenUntil(until),
            _ => View::Probing,
        };
        self.view.send_if_modified(|v| std::mem::replace(v, view) != view);
    }
}

/// A typed handle on a worker, with the client its calls run on.
#[derive(Clone)]
pub(crate) struct ProviderHandle {
    pub name: String,
    actor: ActorRef<WorkerMsg>,
    client: Arc<ProviderClient>,
    view: watch::Receiver<View>,
    /// Calls sent, counted here because healthy successes are not reported to the actor.
    calls: Arc<AtomicU64>,
}

impl ProviderHandle {
    /// Runs a call in the caller's task; streamed pieces go to `events`. Dropping the returned
    /// future aborts the HTTP request.
    pub async fn call(
        &self,
        call: &ProviderCall,
        events: &mpsc::Sender<ProviderEvent>,
    ) -> Result<Result<Completed, ProviderError>, Error> {
        // `execute` paces each of its rounds (retries included) itself.
        self.guard(&call.model.id, self.client.execute(call, events)).await
    }

    /// The provider's client: its HTTP calls, quirks and retries.
    pub fn client(&self) -> &ProviderClient {
        &self.client
    }

    /// Runs `attempt` — a call made with this provider's client — as one of this provider's
    /// calls: refused while its circuit is open, and its outcome reported to the circuit
    /// breaker. (The client paces each of its HTTP tries by the provider's `rpm`.)
    pub async fn guard<T>(
        &self,
        model: &str,
        attempt: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<Result<T, ProviderError>, Error> {
        let trial = match self.admit().await? {
            Admission::Allowed => false,
            Admission::Trial => true,
            Admission::Refused(retry_after) => {
                let kind = ProviderErrorKind::CircuitOpen { retry_after };
                return Ok(Err(ProviderError::new(&self.name, model, kind)));
            }
        };
        // Reports `Neutral` if this future is dropped before the call ends (the caller left).
        let mut report = Report {
            actor: &self.actor,
            trial,
            outcome: Some(Outcome::Neutral(None)),
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let result = attempt.await;
        report.outcome = None;
        let outcome = match &result {
            // Nothing to change: spare the actor a message on the hot path.
            Ok(_) if *self.view.borrow() == View::Healthy && !trial => None,
            Ok(_) => Some(Outcome::Success),
            Err(e) if e.counts_against_provider() => Some(Outcome::Failure(e.clone())),
            Err(e) => Some(Outcome::Neutral(Some(e.clone()))),
        };
        // A change of health is reported before the caller hears the result, so that its next
        // call already meets the circuit this one left (an open circuit stays open for it).
        if let Some(outcome) = outcome {
            let finished = |done| WorkerMsg::Finished {
                outcome,
                trial,
                done: Some(done),
            };
            let _ = crate::actors::ask(&self.actor, finished, "provider worker").await;
        }
        Ok(result)
    }

    async fn admit(&self) -> Result<Admission, Error> {
        let view = *self.view.borrow();
        match view {
            View::Healthy | View::Closed => Ok(Admission::Allowed),
            View::OpenUntil(until) if Instant::now() < until => Ok(Admission::Refused(until - Instant::now())),
            View::OpenUntil(_) | View::Probing => {
                crate::actors::ask(&self.actor, WorkerMsg::Admit, "provider worker").await
            }
        }
    }

    /// Checks the key with a cheap authenticated call.
    pub async fn check(&self) -> super::ProviderCheck {
        self.client.check().await
    }

    /// The provider's health.
    pub async fn health(&self) -> Result<ProviderHealth, Error> {
        let mut health = crate::actors::ask(&self.actor, WorkerMsg::Health, "provider worker").await?;
        health.calls = self.calls.load(Ordering::Relaxed);
        Ok(health)
    }

    /// Stops the worker.
    /// The actor, for tests that watch it stop.
    #[cfg(test)]
    pub(crate) fn actor_status_probe(&self) -> ractor::ActorCell {
        self.actor.get_cell()
    }

    /// When the circuit opens, the time it opens until — for publishing it to other daemons.
    /// Ends when the worker stops.
    pub fn circuit_opened(&self) -> impl futures::Stream<Item = Instant> + Send + 'static {
        let changes = tokio_stream::wrappers::WatchStream::from_changes(self.view.clone());
        futures::StreamExt::filter_map(changes, |view| async move {
            match view {
                View::OpenUntil(until) => Some(until),
                _ => None,
            }
        })
    }

    pub fn stop(&self) {
        self.actor.stop(None);
    }
}

/// Tells the worker how a call ended, on every path (including a dropped future).
struct Report<'a> {
    actor: &'a ActorRef<WorkerMsg>,
    trial: bool,
    outcome: Option<Outcome>,
}

impl Drop for Report<'_> {
    fn drop(&mut self) {
        if let Some(outcome) = self.outcome.take() {
            let _ = self.actor.cast(WorkerMsg::Finished {
                outcome,
                trial: self.trial,
                done: None,
            });
        }
    }
}

/// Spawns the worker for one provider.
pub(crate) async fn spawn_worker(client: ProviderClient, retry: RetryConfig) -> Result<ProviderHandle, Error> {
    let name = client.config.name.clone();
    let client = Arc::new(client);
    let (view_tx, view) = watch::channel(View::Healthy);
    let (actor, _) = Actor::spawn(None, ProviderWorker, (client.clone(), retry, view_tx))
        .await
        .map_err(|e| Error::Internal(format!("cannot start provider worker {name}: {e}")))?;
    Ok(ProviderHandle {
        name,
        actor,
        client,
        view,
        calls: Arc::new(AtomicU64::new(0)),
    })
}
