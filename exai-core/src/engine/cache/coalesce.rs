//! In-flight coalescing (`cache.coalesce`, on with the cache or alone): identical calls — the
//! same cache key, wire and stream flag — that arrive while the first is still running wait
//! for it instead of calling a provider again.
//!
//! The first call of a key opens a [`Flight`]: its provider call runs in a task of its own (the
//! pump), which publishes the reply — a whole body, or a stream's blocks as they come — in the
//! flight. Every caller, the first included, follows the flight: a whole reply is cloned; a
//! stream is read from the blocks published so far, then live (a late joiner gets the whole
//! reply). A caller that leaves drops only its own follower; the pump (and with it the
//! upstream request) is stopped when the last follower is gone, since the flight is held only
//! by its followers and aborts its pump when dropped.
//!
//! A failure before the reply began reaches every follower; each one that did not start the
//! flight then asks again on its own, under its own deadline, when the failure is worth a
//! retry. The flight's call is admitted, limited and recorded as the first caller's; its
//! followers are counted in `exai_coalesced_total`, and each one that got the whole reply is
//! recorded through its [`Followed`] (the ledger's `cached`: no provider called for it, nothing
//! charged).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::CacheKey;
use crate::error::Error;
use crate::gateway::Gateway;
use crate::request::Usage;
use crate::wire::scan::Scanner;
use crate::wire::{AbortOnDrop, CacheStatus, Ended, Finish, Piece, Source, Wire, WireReply, WireStream};

/// Records a follower's call once it has the whole reply: the provider and model that answered,
/// and the usage the reply reports.
pub(crate) type Followed = Box<dyn FnOnce(&str, &str, Usage) + Send>;

/// Pieces buffered between a flight and one follower's stream.
const FOLLOWER_BUFFER: usize = 64;

/// What makes two calls the same flight: the call, and how its reply travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FlightKey {
    pub call: CacheKey,
    pub wire: Wire,
    pub stream: bool,
    pub include_usage: bool,
}

/// The calls in flight, by key (held weakly: a flight lives as long as its followers).
#[derive(Default)]
pub(crate) struct Flights {
    open: Mutex<HashMap<FlightKey, Weak<Flight>>>,
}

impl Flights {
    /// The flight of `key`, and whether this caller opened it.
    fn enter(&self, key: FlightKey) -> (Arc<Flight>, bool) {
        let Ok(mut open) = self.open.lock() else {
            return (Arc::new(Flight::default()), true);
        };
        if let Some(flight) = open.get(&key).and_then(Weak::upgrade) {
            return (flight, false);
        }
        let flight = Arc::new(Flight::default());
        open.insert(key, Arc::downgrade(&flight));
        (flight, true)
    }

    /// `flight` has its whole reply: later calls open their own.
    fn close(&self, key: &FlightKey, flight: &Weak<Flight>) {
        if let Ok(mut open) = self.open.lock()
            && open.get(key).is_some_and(|f| f.ptr_eq(flight))
        {
            open.remove(key);
        }
    }
}

/// One call in flight, shared by its followers.
#[derive(Default)]
struct Flight {
    state: Mutex<State>,
    /// Bumped on every change of `state`.
    changed: watch::Sender<()>,
    /// The task running the call, stopped when the last follower is gone.
    pump: Mutex<Option<AbortOnDrop>>,
}

/// What a flight has published.
#[derive(Default)]
struct State {
    head: Option<Head>,
    blocks: Vec<Bytes>,
    /// The stream's end: `Some(None)` as it should, `Some(Some(e))` with an error.
    end: Option<Option<Error>>,
}

/// How the call answered.
#[derive(Clone)]
enum Head {
    Whole {
        body: Bytes,
        names: (String, String),
        warning: Option<String>,
        cache: Option<CacheStatus>,
    },
    Stream {
        names: (String, String),
        warning: Option<String>,
        cache: Option<CacheStatus>,
    },
    Failed(Error),
}

impl Flight {
    fn publish(&self, change: impl FnOnce(&mut State)) {
        if let Ok(mut state) = self.state.lock() {
            change(&mut state);
        }
        self.changed.send_replace(());
    }
}

/// Runs `own` (this caller's call) as the flight of `key`, or follows the flight already under
/// way; `deadline` is this caller's (when its stream must end, and its length). A follower's
/// reply is recorded through `followed` (the first caller's is recorded by its own call).
pub(crate) async fn join<F>(
    gateway: &Gateway,
    key: FlightKey,
    deadline: (Instant, Duration),
    own: F,
    followed: Followed,
) -> Result<WireReply, Error>
where
    F: Future<Output = Result<WireReply, Error>> + Send + 'static,
{
    let Some(flights) = gateway.response_cache().flights() else {
        return own.await;
    };
    let (flight, opened) = flights.enter(key);
    if opened {
        let pump = pump(gateway.clone(), key, Arc::downgrade(&flight), own);
        let task = tokio::spawn(pump.in_current_span());
        if let Ok(mut slot) = flight.pump.lock() {
            *slot = Some(AbortOnDrop(task.abort_handle()));
        }
        return follow(flight, key.wire, deadline, None).await;
    }
    gateway.response_cache().counts.coalesced();
    match follow(flight, key.wire, deadline, Some(followed)).await {
        Err(e) if worth_asking_again(&e) => own.await,
        other => other,
    }
}

/// Whether a follower asks again after the flight failed: a provider's transient failure, or
/// the first caller's deadline or cancellation — not a request that would fail the same way.
fn worth_asking_again(error: &Error) -> bool {
    match error {
        Error::Provider(p) => p.allows_fallback(),
        Error::DeadlineExceeded { .. } | Error::Cancelled => true,
        _ => false,
    }
}

/// Runs the flight's call and publishes its reply; stops early when no one follows any more.
async fn pump<F>(gateway: Gateway, key: FlightKey, flight: Weak<Flight>, own: F)
where
    F: Future<Output = Result<WireReply, Error>>,
{
    let publish = |change: &mut dyn FnMut(&mut State)| match flight.upgrade() {
        Some(flight) => {
            flight.publish(change);
            true
        }
        None => false,
    };
    match own.await {
        Err(e) => {
            publish(&mut |s| s.head = Some(Head::Failed(e.clone())));
        }
        Ok(WireReply::Whole {
            body,
            provider,
            model,
            warning,
            cache,
        }) => {
            let head = Head::Whole {
                body,
                names: (provider, model),
                warning,
                cache,
            };
            publish(&mut |s| s.head = Some(head.clone()));
        }
        Ok(WireReply::Stream(mut stream)) => {
            let head = Head::Stream {
                names: (stream.provider.clone(), stream.model.clone()),
                warning: stream.warning.clone(),
                cache: stream.cache,
            };
            if !publish(&mut |s| s.head = Some(head.clone())) {
                return;
            }
            let mut end = None;
            while let Some(item) = stream.next().await {
                let followed = match item {
                    Ok(block) => publish(&mut |s| s.blocks.push(block.clone())),
                    Err(e) => {
                        end = Some(e);
                        break;
                    }
                };
                if !followed {
                    return;
                }
            }
            publish(&mut |s| s.end = Some(end.take()));
        }
    }
    if let Some(flights) = gateway.response_cache().flights() {
        flights.close(&key, &flight);
    }
}

/// This caller's reply from `flight`: the whole body, or a stream of what was published so far
/// and then the rest as it comes; recorded through `followed` once whole (a stream when it ended
/// complete).
async fn follow(
    flight: Arc<Flight>,
    wire: Wire,
    deadline: (Instant, Duration),
    followed: Option<Followed>,
) -> Result<WireReply, Error> {
    let mut changed = flight.changed.subscribe();
    let head = loop {
        let head = flight.state.lock().ok().and_then(|s| s.head.clone());
        if let Some(head) = head {
            break head;
        }
        if changed.changed().await.is_err() {
            return Err(Error::Cancelled);
        }
    };
    match head {
        Head::Failed(e) => Err(e),
        Head::Whole {
            body,
            names,
            warning,
            cache,
        } => {
            if let Some(followed) = followed {
                let mut scan = Scanner::new(wire);
                scan.whole(&body);
                followed(&names.0, &names.1, scan.usage);
            }
            Ok(WireReply::Whole {
                body,
                provider: names.0,
                model: names.1,
                warning,
                cache,
            })
        }
        Head::Stream { names, warning, cache } => {
            let (tx, rx) = mpsc::channel(FOLLOWER_BUFFER);
            let task = tokio::spawn(forward(flight, tx));
            let source = Source::Produced {
                first: None,
                rest: rx,
                _task: AbortOnDrop(task.abort_handle()),
            };
            let finish = followed.map(|followed| {
                let (provider, model) = names.clone();
                let finish: Finish = Box::new(move |scan: &Scanner, ended| {
                    if ended == Ended::Complete {
                        followed(&provider, &model, scan.usage);
                    }
                });
                finish
            });
            let mut stream = WireStream::new(Scanner::new(wire), source, names, deadline, finish);
            stream.warning = warning;
            stream.cache = cache;
            Ok(WireReply::Stream(Box::new(stream)))
        }
    }
}

/// Hands one follower the flight's blocks, from the first, and its end.
async fn forward(flight: Arc<Flight>, tx: mpsc::Sender<Result<Piece, Error>>) {
    let mut changed = flight.changed.subscribe();
    let mut next = 0;
    loop {
        let (blocks, end) = match flight.state.lock() {
            Ok(state) => (state.blocks[next.min(state.blocks.len())..].to_vec(), state.end.clone()),
            Err(_) => return,
        };
        next += blocks.len();
        for block in blocks {
            if tx.send(Ok(Piece::Bytes(block))).await.is_err() {
                return;
            }
        }
        match end {
            Some(Some(e)) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Some(None) => return,
            None => {}
        }
        if changed.changed().await.is_err() {
            return;
        }
    }
}
