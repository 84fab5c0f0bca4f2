//! Sessions: one per client (an stdio process, a WebSocket connection, a CLI call, an embedder).
//!
//! A session has an id, its own in-flight limit, and a cancellation token that every request it
//! makes descends from. The registry actor knows every open session (for `status` and metrics)
//! and closes sessions left idle — nothing in flight and no request for longer than the idle
//! timeout — which cancels their token. Dropping the last handle on a session closes it too
//! ([`SessionCore`]'s `Drop`), so a frontend cleans up by simply letting go of the session when its
//! client disconnects.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::limits::SessionLimit;
use crate::error::Error;

/// What the registry is asked.
pub(crate) enum SessionMsg {
    Open(Arc<SessionCore>),
    Close { id: String },
    Sweep,
    List(RpcReplyPort<Vec<SessionInfo>>),
}

/// A session as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// Session id.
    pub id: String,
    /// What kind of client (`stdio`, `ws`, `cli`, `embedded`, …).
    pub kind: String,
    /// Opened at (unix ms).
    pub created_ms: u64,
    /// Last request started at (unix ms).
    pub last_active_ms: u64,
    /// Requests in flight now.
    pub in_flight: usize,
}

/// The shared part of a session. Requests hold pieces of it (the limit, a child token), never
/// the core itself, so the core drops — and the session closes — when the client lets go.
pub(crate) struct SessionCore {
    pub id: String,
    pub kind: String,
    pub limit: SessionLimit,
    pub cancel: CancellationToken,
    /// Opening order, for stable listings (many sessions open within one millisecond).
    seq: u64,
    created_ms: u64,
    last_active_ms: AtomicU64,
    registry: Option<ActorRef<SessionMsg>>,
}

impl SessionCore {
    /// Marks activity; called when a request starts.
    pub fn touch(&self) {
        self.last_active_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn info(&self) -> SessionInfo {
        SessionInfo {
            id: self.id.clone(),
            kind: self.kind.clone(),
            created_ms: self.created_ms,
            last_active_ms: self.last_active_ms.load(Ordering::Relaxed),
            in_flight: self.limit.in_flight(),
        }
    }
}

impl Drop for SessionCore {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(registry) = &self.registry {
            let _ = registry.cast(SessionMsg::Close { id: self.id.clone() });
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The registry actor.
pub(crate) struct SessionRegistry;

/// Its state: weak references, so the registry never keeps a session alive.
pub(crate) struct RegistryState {
    sessions: HashMap<String, std::sync::Weak<SessionCore>>,
    idle: Duration,
    ticker: Option<JoinHandle<()>>,
}

impl Actor for SessionRegistry {
    type Msg = SessionMsg;
    type State = RegistryState;
    type Arguments = Duration;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, idle: Duration) -> Result<Self::State, ActorProcessingErr> {
        let period = (idle / 2).clamp(Duration::from_millis(10), Duration::from_secs(30));
        let ticker = myself.send_interval(period, || SessionMsg::Sweep);
        Ok(RegistryState {
            sessions: HashMap::new(),
            idle,
            ticker: Some(ticker),
        })
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.ticker.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SessionMsg::Open(core) => {
                metrics::gauge!("exai_sessions").increment(1.0);
                state.sessions.insert(core.id.clone(), Arc::downgrade(&core));
            }
            SessionMsg::Close { id } => {
                if state.sessions.remove(&id).is_some() {
                    metrics::gauge!("exai_sessions").decrement(1.0);
                }
            }
            SessionMsg::Sweep => {
                let cutoff = now_ms().saturating_sub(state.idle.as_millis() as u64);
                state.sessions.retain(|id, weak| {
                    let Some(core) = weak.upgrade() else { return false };
                    let idle = core.limit.in_flight() == 0 && core.last_active_ms.load(Ordering::Relaxed) < cutoff;
                    if idle {
                        tracing::info!(session = %id, "closing idle session");
                        core.cancel.cancel();
                        metrics::gauge!("exai_sessions").decrement(1.0);
                    }
                    !idle
                });
            }
            SessionMsg::List(reply) => {
                let mut list: Vec<_> = state
                    .sessions
                    .values()
                    .filter_map(|w| w.upgrade())
                    .map(|c| (c.seq, c.info()))
                    .collect();
                list.sort_by_key(|(seq, _)| *seq);
                let _ = reply.send(list.into_iter().map(|(_, info)| info).collect());
            }
        }
        Ok(())
    }
}

/// A typed handle on the registry.
#[derive(Clone)]
pub(crate) struct Sessions {
    actor: ActorRef<SessionMsg>,
    max_inflight: usize,
    opened: Arc<AtomicU64>,
}

impl Sessions {
    pub async fn spawn(idle: Duration, max_inflight: usize) -> Result<Self, Error> {
        let (actor, _) = Actor::spawn(None, SessionRegistry, idle)
            .await
            .map_err(|e| Error::Internal(format!("cannot start the session registry: {e}")))?;
        Ok(Self {
            actor,
            max_inflight,
            opened: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Opens a session; `tracked` sessions are listed and can expire when idle.
    pub fn open(&self, kind: &str, parent: &CancellationToken, tracked: bool) -> Arc<SessionCore> {
        let now = now_ms();
        let core = Arc::new(SessionCore {
            id: uuid::Uuid::new_v4().to_string(),
            kind: kind.to_string(),
            limit: SessionLimit::new(self.max_inflight),
            cancel: parent.child_token(),
            seq: self.opened.fetch_add(1, Ordering::Relaxed),
            created_ms: now,
            last_active_ms: AtomicU64::new(now),
            registry: tracked.then(|| self.actor.clone()),
        });
        if tracked {
            let _ = self.actor.cast(SessionMsg::Open(core.clone()));
        }
        core
    }

    pub async fn list(&self) -> Result<Vec<SessionInfo>, Error> {
        super::ask(&self.actor, SessionMsg::List, "session registry").await
    }

    /// The actor, for tests that watch it stop.
    #[cfg(test)]
    pub(crate) fn actor_status_probe(&self) -> ractor::ActorCell {
        self.actor.get_cell()
    }

    pub fn stop(&self) {
        self.actor.stop(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_a_session_closes_it_and_cancels_its_token() -> Result<(), Error> {
        let s = Sessions::spawn(Duration::from_secs(60), 2).await?;
        let root = CancellationToken::new();
        let core = s.open("test", &root, true);
        let token = core.cancel.clone();
        tokio::task::yield_now().await;
        assert_eq!(s.list().await?.len(), 1);
        drop(core);
        assert!(token.is_cancelled());
        assert!(s.list().await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn idle_sessions_expire_but_busy_ones_stay() -> Result<(), Error> {
        let s = Sessions::spawn(Duration::from_millis(30), 2).await?;
        let root = CancellationToken::new();
        let idle = s.open("idle", &root, true);
        let busy = s.open("busy", &root, true);
        let _permit = busy.limit.permits.clone().try_acquire_owned();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(idle.cancel.is_cancelled());
        assert!(!busy.cancel.is_cancelled());
        let kinds: Vec<_> = s.list().await?.into_iter().map(|i| i.kind).collect();
        assert_eq!(kinds, ["busy"]);
        Ok(())
    }
}
