//! The exact-match response cache (`cache.mode = exact`, or per key with `exai keys create …
//! --cache`): the same call gets the same reply without asking a provider again, whichever wire
//! it came in on — and the gateway's own turns (the MCP tools, `Session::chat`) likewise.
//!
//! **The key** is a SHA-256 of the call after routing: the first planned model (provider and
//! id), the scope (the caller's key with `cache.scope = key`, the default), and the call's
//! meaning in the chat wire — a Messages body translated as for a chat provider
//! (`to_openai`), a Responses body with the conversation it continues (`to_chat`), a chat body
//! as it is — with the fields that change only the transport left out (`stream`,
//! `stream_options`, `user`, `metadata`, `store`, …), a message whose content is one text part
//! read as that text, and objects written with their keys sorted. So a chat call and the same
//! call in Messages share a key.
//!
//! **A kept reply** is a [`StoredReply`] (text, reasoning, finish reason, usage), read from the
//! provider's whole reply or, for a stream, from its blocks once it ended complete ([`Tape`]);
//! a reply with a tool call, an error or a broken stream is never kept. A hit is written in
//! the caller's wire, whole or as one block of events (no provider pauses to replay).
//!
//! **Storage** is two levels: a moka cache in process, weighed in bytes (`cache.max_bytes`)
//! with a TTL (`cache.ttl_secs`), and with `REDIS_URL` a Redis level shared by every daemon
//! (same key and TTL, compressed). A lookup asks the local level, then Redis (a Redis hit fills
//! the local level); a kept reply is written to both. The request's [`CacheDirective`] can ask for a fresh answer
//! (`no-cache`), keep the reply out (`no-store`) or leave the cache out (`bypass`).
//!
//! **Counted** once per call: a hit (the local level, the shared level, or another daemon's reply
//! waited for), a miss (the call went to a provider), or coalesced (it followed an identical
//! call in flight) — in `/metrics` and in [`CacheStats`] for the status page.
//!
//! - `cache/key.rs`: a call's key.
//! - `cache/coalesce.rs`: identical calls in flight at once share one provider call.
//! - `cache/shared.rs`: the Redis level, and the lock that makes identical calls on several
//!   daemons share one provider call.
//! - `cache/stats.rs`: what the cache did and holds ([`CacheStats`]).
//! - `cache/turn.rs`: the cache of the gateway's own turns.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

pub(crate) mod coalesce;
mod key;
mod shared;
mod stats;
pub(crate) mod turn;

use key::key_of;
pub use stats::{CacheStats, SharedCacheStatus};

use super::record::CallRecord;
use super::responses::{self as engine_responses, Prepared};
use crate::catalog::ModelInfo;
use crate::config::{CacheConfig, CacheMode, CacheScope, Config};
use crate::error::Error;
use crate::gateway::Session;
use crate::keys::StoredKey;
use crate::wire::responses::ResponseFrame;
use crate::wire::scan::Scanner;
use crate::wire::{
    CacheDirective, CacheStatus, Ended, ResponsesOut, Source, StoredReply, Tap, Wire, WireReply, WireRequest,
    WireStream,
};

/// A call's key: a SHA-256 of what it means.
pub(crate) type CacheKey = [u8; 32];

/// Bytes an entry costs besides its strings (the key, the usage, moka's own).
const ENTRY_OVERHEAD: usize = 160;

/// The response cache: its in-process level, its shared level, and the calls in flight.
pub(crate) struct ResponseCache {
    /// The in-process level. Built whatever the mode, since a key can turn the cache on for its
    /// own calls; it stays empty until one does.
    entries: moka::future::Cache<CacheKey, Arc<StoredReply>>,
    /// `cache.mode = exact`: every call is cached, not only the calls of keys with `cache` on.
    every_call: bool,
    max_bytes: u64,
    scope: CacheScope,
    /// Calls in flight that identical calls wait for (`cache.coalesce`).
    flights: Option<coalesce::Flights>,
    /// The level every daemon on one Redis shares (with `REDIS_URL`).
    shared: Option<shared::SharedCache>,
    /// What the cache did since start.
    counts: stats::Counts,
}

impl ResponseCache {
    /// The cache `config` asks for.
    pub fn new(config: &CacheConfig) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_: &CacheKey, reply: &Arc<StoredReply>| weight(reply))
            .time_to_live(config.ttl)
            .build();
        Self {
            entries,
            every_call: config.mode == CacheMode::Exact,
            max_bytes: config.max_bytes,
            scope: config.scope,
            flights: config.coalesce.then(coalesce::Flights::default),
            shared: None,
            counts: stats::Counts::default(),
        }
    }

    /// The cache `config` asks for, with its Redis level when `REDIS_URL` is set. A Redis that
    /// cannot be reached leaves the cache in process (logged); a single server is reached
    /// lazily, so one that is down at start joins when it comes up.
    pub async fn open(config: &Config) -> Self {
        let mut cache = Self::new(&config.cache);
        let Some(url) = &config.memory.redis_url else {
            return cache;
        };
        match crate::memory::connect_redis(url).await {
            Ok(conn) => {
                let c = &config.cache;
                let level = shared::SharedCache::new(conn, &config.memory.key_prefix, c.ttl, c.lease, c.max_bytes);
                cache.shared = Some(level);
            }
            Err(e) if cache.every_call => tracing::warn!(error = %e, "the response cache stays in this process"),
            Err(e) => tracing::debug!(error = %e, "the response cache stays in this process"),
        }
        cache
    }

    /// Whether the calls of `key` (none: an open gateway or the master token) are cached.
    pub fn is_on_for(&self, key: Option<&StoredKey>) -> bool {
        self.every_call || key.is_some_and(|k| k.limits.cache)
    }

    fn flights(&self) -> Option<&coalesce::Flights> {
        self.flights.as_ref()
    }

    /// Whose calls share a reply: the caller's key with `cache.scope = key`, every caller
    /// (`None`) with `global`.
    fn owner<'a>(&self, key: Option<&'a str>) -> Option<&'a str> {
        match self.scope {
            CacheScope::Key => key,
            CacheScope::Global => None,
        }
    }

    /// The local level's reply, else the shared level's (which then fills the local level).
    async fn get(&self, key: &CacheKey) -> Option<Arc<StoredReply>> {
        if let Some(local) = self.entries.get(key).await {
            return Some(local);
        }
        let found = Arc::new(self.shared.as_ref()?.get(key).await?);
        self.fill(*key, found.clone()).await;
        Some(found)
    }

    /// Keeps `reply` in both levels.
    async fn insert(&self, key: CacheKey, reply: StoredReply) {
        if let Some(shared) = &self.shared {
            shared.put(&key, &reply).await;
        }
        self.fill(key, Arc::new(reply)).await;
    }

    /// Keeps `reply` in the local level.
    async fn fill(&self, key: CacheKey, reply: Arc<StoredReply>) {
        self.entries.insert(key, reply).await;
        self.entries.run_pending_tasks().await;
        metrics::gauge!("exai_cache_bytes").set(self.entries.weighted_size() as f64);
    }

    /// A call answered from the cache, through `front_door`.
    fn count_hit(&self, front_door: &'static str) {
        self.counts.hit(front_door);
    }

    /// A call the cache could not answer, sent to a provider.
    fn count_miss(&self, front_door: &'static str) {
        self.counts.miss(front_door);
    }
}

/// What an entry weighs: its strings and a fixed overhead, in bytes.
fn weight(reply: &StoredReply) -> u32 {
    let bytes = reply.text.len() + reply.reasoning.len() + reply.model.len() + reply.finish_reason.len();
    u32::try_from(bytes + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

/// What the cache found for a call.
pub(super) enum Looked {
    /// A kept reply, written in the caller's wire.
    Hit(WireReply),
    /// None: the call goes to a provider, and its reply is kept through the ticket (`None` when
    /// the cache is off or left out); identical calls in flight share it (`flight`, when they
    /// are coalesced).
    Miss {
        ticket: Option<Ticket>,
        flight: Option<coalesce::FlightKey>,
    },
}

/// A call, as far as the cache needs it.
pub(super) struct Asked<'a> {
    pub session: &'a Session,
    pub request: &'a WireRequest,
    pub prepared: Option<&'a Arc<Prepared>>,
    /// The model the call was routed to first.
    pub model: &'a ModelInfo,
    /// The caller's key, which may turn the cache on for its calls.
    pub key: Option<&'a StoredKey>,
    pub call: &'a CallRecord,
    pub until: Instant,
}

/// Looks a call up: a hit is recorded and written in the caller's wire; a miss gets the ticket
/// that keeps its reply (the miss is counted once the call goes to a provider: it may still be
/// answered by another daemon's reply, or follow an identical call in flight).
pub(super) async fn lookup(asked: &Asked<'_>) -> Looked {
    let gateway = asked.session.gateway();
    let cache = gateway.response_cache();
    let request = asked.request;
    let directive = request.cache;
    let none = Looked::Miss {
        ticket: None,
        flight: None,
    };
    let on = cache.is_on_for(asked.key);
    if (!on && cache.flights().is_none()) || directive == CacheDirective::Bypass {
        return none;
    }
    let owner = cache.owner(asked.session.caller().key_name());
    let Some(key) = key_of(request, asked.prepared.map(Arc::as_ref), asked.model, owner) else {
        return none;
    };
    // A Responses call kept under its own id (`store`) is not shared.
    let flight = (cache.flights().is_some() && !(request.wire == Wire::Responses && request.store)).then_some(
        coalesce::FlightKey {
            call: key,
            wire: request.wire,
            stream: request.stream,
            include_usage: request.include_usage,
        },
    );
    if !on {
        return Looked::Miss { ticket: None, flight };
    }
    if directive.reads()
        && let Some(stored) = cache.get(&key).await
    {
        return Looked::Hit(hit(asked, &stored));
    }
    let ticket = Ticket {
        gateway: gateway.clone(),
        key,
        wire: request.wire,
        keeps: directive.writes(),
        reads: directive.reads(),
        limit: gateway.config().cache.max_bytes,
        lock: None,
    };
    Looked::Miss {
        ticket: Some(ticket),
        flight,
    }
}

/// A kept reply in the caller's wire: whole, or one block of events. The call is recorded as
/// cached (no cost); a Responses reply is kept as a live one is.
pub(super) fn hit(asked: &Asked<'_>, stored: &StoredReply) -> WireReply {
    let (session, request) = (asked.session, asked.request);
    let gateway = session.gateway();
    let model = asked.model;
    gateway.response_cache().count_hit(asked.call.front_door);
    asked.call.cached(gateway, model, stored.usage);
    let owner = session.caller().key_name().map(str::to_string);
    let out = asked.prepared.map(|prepared| ResponsesOut {
        frame: ResponseFrame::new(prepared.id.clone(), &stored.model, &prepared.body),
        kept: &prepared.kept,
    });
    let names = (model.provider.clone(), stored.model.clone());
    let keep = {
        let (gateway, request) = (gateway.clone(), request.clone());
        let prepared = asked.prepared.cloned();
        move || {
            if let Some(prepared) = &prepared
                && let Some(response) = engine_responses::finished(prepared)
            {
                engine_responses::keep(&gateway, &request, prepared, owner.as_deref(), response);
            }
        }
    };
    if !request.stream {
        let body = stored.whole(request.wire, out.as_ref());
        keep();
        return WireReply::Whole {
            body,
            provider: names.0,
            model: names.1,
            warning: None,
            cache: Some(CacheStatus::Hit),
        };
    }
    let events = stored.events(request.wire, request.include_usage, out);
    let finish: crate::wire::Finish = Box::new(move |_: &Scanner, ended| {
        if ended == Ended::Complete {
            keep();
        }
    });
    let deadline = (asked.until, session.deadline());
    let source = Source::Replay(Some(events));
    let mut stream = WireStream::new(Scanner::new(request.wire), source, names, deadline, Some(finish));
    stream.cache = Some(CacheStatus::Hit);
    WireReply::Stream(Box::new(stream))
}

/// Keeps a missed call's reply, once it is whole and may be kept.
pub(super) struct Ticket {
    gateway: crate::gateway::Gateway,
    key: CacheKey,
    wire: Wire,
    /// The reply may be kept (not with `no-store`).
    keeps: bool,
    /// A kept reply may answer the call (not with `no-cache`).
    reads: bool,
    /// A stream longer than this is not recorded (it could not be kept).
    limit: u64,
    /// The shared level's lock on the key while this daemon calls, let go once the reply is
    /// kept (or cannot be).
    lock: Option<shared::Lock>,
}

impl Ticket {
    /// Another daemon's reply to the same call, waited for while that daemon holds the key
    /// (until `deadline`); `None` when this call goes to a provider — holding the key when it
    /// could take it. Only a call that reads and keeps waits or takes the key.
    pub async fn share(&mut self, deadline: (Instant, std::time::Duration)) -> Result<Option<Arc<StoredReply>>, Error> {
        let Some(shared) = &self.gateway.response_cache().shared else {
            return Ok(None);
        };
        if !(self.reads && self.keeps) {
            return Ok(None);
        }
        match shared.claim(&self.key, deadline).await? {
            shared::Claim::Held(lock) => {
                self.lock = Some(lock);
                Ok(None)
            }
            shared::Claim::Found(reply) => {
                let reply = Arc::new(reply);
                self.gateway.response_cache().fill(self.key, reply.clone()).await;
                Ok(Some(reply))
            }
            shared::Claim::Alone => Ok(None),
        }
    }

    /// The call goes to a provider: counted as a miss, through `front_door`.
    pub fn missed(&self, front_door: &'static str) {
        self.gateway.response_cache().count_miss(front_door);
    }

    /// Keeps a whole reply in the caller's wire, answered by `model` with `usage`.
    pub async fn keep_whole(&self, body: &[u8], model: &str, usage: crate::request::Usage) {
        if !self.keeps {
            return;
        }
        if let Some(stored) = StoredReply::from_body(self.wire, body, model, usage) {
            self.gateway.response_cache().insert(self.key, stored).await;
        }
    }

    /// `stream`, recorded as it goes and kept when it ends complete.
    pub fn tap(self, stream: WireStream) -> WireStream {
        let model = stream.model.clone();
        let mut stream = match self.keeps {
            true => stream.tapped(Box::new(Tape {
                ticket: self,
                model,
                blocks: Vec::new(),
                bytes: 0,
            })),
            false => stream,
        };
        stream.cache = Some(CacheStatus::Miss);
        stream
    }
}

/// A stream's blocks, kept until it ends (cheap clones of the bytes handed on).
struct Tape {
    ticket: Ticket,
    model: String,
    blocks: Vec<Bytes>,
    /// Bytes recorded; past the ticket's limit the tape stops (and keeps nothing).
    bytes: u64,
}

impl Tap for Tape {
    fn block(&mut self, block: &Bytes) {
        self.bytes += block.len() as u64;
        if self.bytes <= self.ticket.limit {
            self.blocks.push(block.clone());
        }
    }

    fn ended(self: Box<Self>, scan: &Scanner, ended: Ended) {
        if ended != Ended::Complete || self.bytes > self.ticket.limit {
            return;
        }
        let Some(stored) = StoredReply::from_events(self.ticket.wire, &self.blocks, &self.model, scan.usage) else {
            return;
        };
        let Ticket { gateway, key, lock, .. } = self.ticket;
        tokio::spawn(async move {
            gateway.response_cache().insert(key, stored).await;
            // Waiting daemons find the reply before the key is free.
            drop(lock);
        });
    }
}
