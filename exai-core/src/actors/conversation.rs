//! The conversation queue: one conversation's turns strictly in order, different conversations
//! in parallel.
//!
//! The queue actor keeps one child actor per active conversation. A turn arrives as a job (a
//! future that does the whole turn: load history, call the provider, store the reply) and is
//! forwarded to that conversation's child, whose mailbox runs jobs one at a time — so turn 2
//! starts only after turn 1 has stored its reply and sees it in its history. The queue actor never
//! awaits a job itself, so a slow conversation cannot hold up another.
//!
//! Children report each finished job back; a child with nothing pending and idle for longer than
//! the configured time is stopped (its history stays in memory, only the actor goes). A job that
//! panics fails its child; the queue forgets that child and the next turn gets a fresh one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort, SupervisionEvent};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::Error;

/// A whole turn, ready to run.
pub(crate) type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the queue is asked.
pub(crate) enum QueueMsg {
    /// Run `job` after the conversation's earlier jobs.
    Submit { conversation: String, job: Job },
    /// A child finished one job.
    Finished { conversation: String },
    /// Evict idle children (sent by a timer).
    Evict,
    /// Report counts.
    Stats(RpcReplyPort<QueueStats>),
}

/// Queue counts, for `status`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct QueueStats {
    /// Conversations with a live actor.
    pub conversations: usize,
    /// Turns submitted and not finished (running or waiting behind an earlier turn).
    pub pending_turns: usize,
}

struct Child {
    actor: ActorRef<TurnMsg>,
    pending: usize,
    last_active: Instant,
}

/// The queue actor.
pub(crate) struct QueueActor;

/// Its state.
pub(crate) struct QueueState {
    children: HashMap<String, Child>,
    idle: Duration,
    ticker: Option<JoinHandle<()>>,
}

impl Actor for QueueActor {
    type Msg = QueueMsg;
    type State = QueueState;
    type Arguments = Duration;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, idle: Duration) -> Result<Self::State, ActorProcessingErr> {
        let period = (idle / 2).clamp(Duration::from_millis(10), Duration::from_secs(30));
        let ticker = myself.send_interval(period, || QueueMsg::Evict);
        Ok(QueueState {
            children: HashMap::new(),
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
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            QueueMsg::Submit { conversation, job } => {
                let mut job = job;
                // A second try covers a child that died between turns: the failed send hands
                // the job back, and a fresh child takes it.
                for _ in 0..2 {
                    if !state.children.contains_key(&conversation) {
                        let args = (conversation.clone(), myself.clone());
                        let (actor, _) = Actor::spawn_linked(None, TurnActor, args, myself.get_cell()).await?;
                        let child = Child {
                            actor,
                            pending: 0,
                            last_active: Instant::now(),
                        };
                        state.children.insert(conversation.clone(), child);
                    }
                    let Some(child) = state.children.get_mut(&conversation) else {
                        break;
                    };
                    match child.actor.cast(TurnMsg::Run(job)) {
                        Ok(()) => {
                            child.pending += 1;
                            child.last_active = Instant::now();
                            break;
                        }
                        Err(MessagingErr::SendErr(TurnMsg::Run(returned))) => {
                            state.children.remove(&conversation);
                            job = returned;
                        }
                        Err(_) => {
                            state.children.remove(&conversation);
                            break;
                        }
                    }
                }
            }
            QueueMsg::Finished { conversation } => {
                if let Some(child) = state.children.get_mut(&conversation) {
                    child.pending = child.pending.saturating_sub(1);
                    child.last_active = Instant::now();
                }
            }
            QueueMsg::Evict => {
                let idle = state.idle;
                state.children.retain(|_, c| {
                    let keep = c.pending > 0 || c.last_active.elapsed() < idle;
                    if !keep {
                        c.actor.stop(None);
                    }
                    keep
                });
            }
            QueueMsg::Stats(reply) => {
                let _ = reply.send(QueueStats {
                    conversations: state.children.len(),
                    pending_turns: state.children.values().map(|c| c.pending).sum(),
                });
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            tracing::error!(error = %err, "a conversation turn panicked; the conversation gets a fresh actor");
            state.children.retain(|_, c| c.actor.get_id() != cell.get_id());
        }
        Ok(())
    }
}

/// What a conversation's child is asked.
pub(crate) enum TurnMsg {
    Run(Job),
}

/// One conversation's actor.
pub(crate) struct TurnActor;

impl Actor for TurnActor {
    type Msg = TurnMsg;
    type State = (String, ActorRef<QueueMsg>);
    type Arguments = (String, ActorRef<QueueMsg>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        TurnMsg::Run(job): Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        job.await;
        let _ = state.1.cast(QueueMsg::Finished {
            conversation: state.0.clone(),
        });
        Ok(())
    }
}

/// A typed handle on the queue.
#[derive(Clone)]
pub(crate) struct ConversationQueue {
    actor: ActorRef<QueueMsg>,
}

impl ConversationQueue {
    pub async fn spawn(idle: Duration) -> Result<Self, Error> {
        let (actor, _) = Actor::spawn(None, QueueActor, idle)
            .await
            .map_err(|e| Error::Internal(format!("cannot start the conversation queue: {e}")))?;
        Ok(Self { actor })
    }

    /// Queues `job` behind the conversation's earlier turns.
    pub fn submit(&self, conversation: &str, job: Job) -> Result<(), Error> {
        self.actor
            .cast(QueueMsg::Submit {
                conversation: conversation.to_string(),
                job,
            })
            .map_err(|_| Error::ShuttingDown)
    }

    pub async fn stats(&self) -> Result<QueueStats, Error> {
        super::ask(&self.actor, QueueMsg::Stats, "conversation queue").await
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
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn one_conversation_runs_in_order_and_others_in_parallel() -> Result<(), Error> {
        let q = ConversationQueue::spawn(Duration::from_secs(60)).await?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let gate = Arc::new(tokio::sync::Notify::new());
        for i in 0..3 {
            let (log, done, gate) = (log.clone(), done_tx.clone(), gate.clone());
            q.submit(
                "a",
                Box::pin(async move {
                    if i == 0 {
                        gate.notified().await;
                    }
                    log.lock().map(|mut l| l.push(format!("a{i}"))).ok();
                    done.send(()).ok();
                }),
            )?;
        }
        let (log_b, done_b) = (log.clone(), done_tx.clone());
        q.submit(
            "b",
            Box::pin(async move {
                log_b.lock().map(|mut l| l.push("b".to_string())).ok();
                done_b.send(()).ok();
            }),
        )?;
        // b finishes while a's first turn is still blocked.
        done_rx.recv().await;
        assert_eq!(log.lock().map(|l| l.clone()).unwrap_or_default(), ["b"]);
        let stats = q.stats().await?;
        assert_eq!((stats.conversations, stats.pending_turns), (2, 3));
        gate.notify_one();
        for _ in 0..3 {
            done_rx.recv().await;
        }
        assert_eq!(
            log.lock().map(|l| l.clone()).unwrap_or_default(),
            ["b", "a0", "a1", "a2"]
        );
        Ok(())
    }

    #[tokio::test]
    async fn idle_conversations_are_evicted_and_come_back_on_demand() -> Result<(), Error> {
        let q = ConversationQueue::spawn(Duration::from_millis(40)).await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let t = tx.clone();
        q.submit(
            "c",
            Box::pin(async move {
                t.send(1).ok();
            }),
        )?;
        rx.recv().await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(q.stats().await?.conversations, 0);
        q.submit(
            "c",
            Box::pin(async move {
                tx.send(2).ok();
            }),
        )?;
        assert_eq!(rx.recv().await, Some(2));
        Ok(())
    }

    #[tokio::test]
    async fn a_panicking_turn_does_not_take_the_queue_down() -> Result<(), Error> {
        let q = ConversationQueue::spawn(Duration::from_secs(60)).await?;
        q.submit("p", Box::pin(async { panic!("boom") }))?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        q.submit(
            "p",
            Box::pin(async move {
                tx.send(()).ok();
            }),
        )?;
        assert!(matches!(
            tokio::time::timeout(Duration::from_secs(2), rx).await,
            Ok(Ok(()))
        ));
        Ok(())
    }
}
