//! [`Session`] — one client's view of the gateway — and [`ChatStream`], a streamed reply.
//!
//! A front door opens a session per client with [`SessionOptions`]: the client it counts
//! requests for (`limits.requests_per_minute`, an address or `stdio`) and the deadline of each
//! call (`limits.call_timeout_secs`). Every call made through the session is admitted the same
//! way whichever front door made it: the gateway is running, the session is open, the client is
//! under its rate, and the call ends by its deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::DropGuard;

use super::Gateway;
use crate::actors::session::SessionCore;
use crate::error::Error;
use crate::keys::{Ask, Caller, KeyPass, StoredKey};
use crate::request::{ChatEvent, ChatRequest, ChatResponse};
use crate::wire::{TokenCount, WireReply, WireRequest};

/// How a front door opens a session for one client.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionOptions {
    /// What kind of client (`stdio`, `ws`, `http`, `cli`, …), as `status` shows it.
    pub kind: String,
    /// The client its requests are counted for against `limits.requests_per_minute` (an
    /// address, `stdio`); sessions of one client share its rate. `None` counts nothing (an
    /// embedder's own calls).
    pub client: Option<String>,
    /// How long one call may run; `None` takes `limits.call_timeout_secs`.
    pub deadline: Option<Duration>,
    /// Who is calling, as [`Gateway::authenticate`] said: a key's limits apply to every call.
    pub caller: Caller,
}

impl SessionOptions {
    /// Options for a client of this kind, counted for no rate limit.
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            client: None,
            deadline: None,
            caller: Caller::default(),
        }
    }

    /// Applies `caller`'s key (its limits, budget, allow-lists) to every call.
    pub fn caller(mut self, caller: Caller) -> Self {
        self.caller = caller;
        self
    }

    /// Counts this session's requests for `client` (its address, or `stdio`).
    pub fn client(mut self, client: impl Into<String>) -> Self {
        self.client = Some(client.into());
        self
    }

    /// Gives each call this long instead of `limits.call_timeout_secs`.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }
}

/// A client's session: its own id, in-flight limit, cancellation scope, rate and deadline.
#[derive(Clone)]
pub struct Session {
    pub(super) core: Arc<SessionCore>,
    pub(super) gateway: Gateway,
    /// The client counted against the rate limit, if any.
    pub(super) client: Option<Arc<str>>,
    pub(super) deadline: Duration,
    /// Who is calling.
    pub(super) caller: Caller,
}

impl Session {
    /// The session id.
    pub fn id(&self) -> &str {
        &self.core.id
    }

    /// One reply, within the session's deadline.
    pub async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        let pass = self.admit_call(None, request.requested_model()).await?;
        let call = Call::for_key(pass.as_ref().map(|p| p.key.clone()));
        let reply = self
            .within_deadline(self.gateway.chat_in(&self.core, request, call))
            .await;
        drop(pass);
        reply
    }

    /// A streamed reply, once the call is admitted: a refusal (rate, key, budget) is the error
    /// here, before anything streams — what an HTTP front door needs to answer with a status.
    /// The stream ends with [`Error::DeadlineExceeded`] if it outlives the session's deadline.
    pub async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream, Error> {
        let pass = self.admit_call(None, request.requested_model()).await?;
        let call = Call {
            key: pass.as_ref().map(|p| p.key.clone()),
            _pass: pass,
        };
        Ok(self.gateway.stream_in(&self.core, request, call, Some(self.deadline)))
    }

    /// A request in a client's wire (OpenAI chat at `/v1/chat/completions`, Anthropic Messages
    /// at `/v1/messages`), answered in that wire: relayed byte for byte (but the model) to a
    /// provider that speaks it, translated otherwise — with this session's admission, the
    /// caller's key, routing, retries, fallback, limits, one deadline and the usage ledger. An
    /// error here comes before any byte of the reply; a stream that breaks later ends with one.
    pub async fn relay(&self, request: WireRequest) -> Result<WireReply, Error> {
        crate::engine::wire_call(self, request).await
    }

    /// A response kept by the Responses API (`GET /v1/responses/{id}`), if this caller's key
    /// made it: another key's is not found, as an unknown id.
    pub async fn stored_response(&self, id: &str) -> Result<serde_json::Value, Error> {
        crate::engine::get_response(self.gateway(), id, self.caller().key_name()).await
    }

    /// Deletes a response kept by the Responses API, if this caller's key made it.
    pub async fn delete_stored_response(&self, id: &str) -> Result<(), Error> {
        crate::engine::delete_response(self.gateway(), id, self.caller().key_name()).await
    }

    /// Counts a Messages request's input tokens (the provider's count, or the gateway's
    /// estimate), admitted like every call.
    pub async fn count_tokens(&self, request: WireRequest) -> Result<TokenCount, Error> {
        crate::engine::count_tokens(self, request).await
    }

    /// Who is calling.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// Whether the session still takes requests (not closed, not expired after being idle).
    pub fn is_open(&self) -> bool {
        !self.core.cancel.is_cancelled()
    }

    /// How long one call of this session may run.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The gateway this session belongs to.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Admits one call from the client: the gateway runs, the session is open, the client is
    /// under its rate. The tool suite calls it once per tool call, however many turns the tool
    /// then makes.
    pub(crate) fn admit(&self) -> Result<(), Error> {
        self.gateway.admit(&self.core)?;
        match &self.client {
            Some(client) => self.gateway.inner.rate.check(client),
            None => Ok(()),
        }
    }

    /// Admits one call, and for a key checks its limits and takes its place in flight (held
    /// until the pass drops). The tool suite calls it once per tool call with the tool's name.
    pub(crate) async fn admit_call(&self, tool: Option<&str>, model: Option<&str>) -> Result<Option<KeyPass>, Error> {
        self.admit()?;
        self.admit_key(tool, model).await
    }

    async fn admit_key(&self, tool: Option<&str>, model: Option<&str>) -> Result<Option<KeyPass>, Error> {
        let inner = &self.gateway.inner;
        let ask = Ask {
            tool,
            model,
            catalog: &inner.catalog,
            config: &inner.config,
        };
        inner.keys.admit(&self.caller, ask).await
    }

    /// Records messages in a conversation without calling a provider (a workflow tool's step),
    /// as this session's caller: a new conversation is its key's, another key's is unknown.
    pub(crate) async fn note(
        &self,
        continuation_id: Option<String>,
        tool: Option<String>,
        messages: Vec<crate::request::Message>,
        files: Vec<String>,
    ) -> Result<String, Error> {
        let owner = self.caller.key_name().map(str::to_string);
        self.gateway.note(continuation_id, tool, messages, files, owner).await
    }

    /// The session's in-flight limit.
    pub(crate) fn limit(&self) -> crate::actors::limits::SessionLimit {
        self.core.limit.clone()
    }

    /// Runs `call` within the session's deadline.
    pub(crate) async fn within_deadline<T, E: From<Error>>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let until = tokio::time::Instant::now() + self.deadline;
        tokio::time::timeout_at(until, crate::deadline::scope(until, call))
            .await
            .unwrap_or_else(|_| Err(Error::DeadlineExceeded { after: self.deadline }.into()))
    }

    /// A turn inside a call already admitted (a tool's): no second admission, the tool call's
    /// deadline, the caller's key (its model allow-list, its spend).
    pub(crate) fn stream_within_call(&self, request: ChatRequest) -> ChatStream {
        let call = Call::for_key(self.gateway.inner.keys.current(&self.caller));
        self.gateway.stream_in(&self.core, request, call, None)
    }
}

/// What a turn runs for, beside its request: the caller's key (its model allow-list narrows the
/// plan, its spend is recorded) and its place in flight, held until the turn ends.
#[derive(Default)]
pub(crate) struct Call {
    pub key: Option<Arc<StoredKey>>,
    pub _pass: Option<KeyPass>,
}

impl Call {
    /// A turn for `key`, whose place in flight is held by its caller.
    pub fn for_key(key: Option<Arc<StoredKey>>) -> Self {
        Self { key, _pass: None }
    }

    /// The key's name, if any.
    pub fn key_name(&self) -> Option<&str> {
        self.key.as_deref().map(|k| k.name.as_str())
    }
}

/// A streamed reply: text and reasoning deltas, then [`ChatEvent::Done`] with usage — or one
/// error. Dropping it cancels the request upstream.
pub struct ChatStream {
    pub(super) events: mpsc::Receiver<Result<ChatEvent, Error>>,
    pub(super) _cancel_on_drop: Option<DropGuard>,
}

impl ChatStream {
    /// A stream that yields `error` and ends.
    pub(super) fn failed(error: Error) -> Self {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Err(error));
        Self {
            events: rx,
            _cancel_on_drop: None,
        }
    }

    /// Drains the stream into the final response (convenient in tests and simple callers).
    pub async fn collect_response(mut self) -> Result<ChatResponse, Error> {
        while let Some(event) = self.events.recv().await {
            if let ChatEvent::Done(response) = event? {
                return Ok(response);
            }
        }
        Err(Error::Cancelled)
    }
}

impl Stream for ChatStream {
    type Item = Result<ChatEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}
