//! One turn, start to finish: the path every request takes once a frontend hands it over.
//!
//! permits (session, global) → history from memory → routing plan, each model's messages fitted
//! to its context window → the response cache (a hit skips the provider) → the engine's attempt
//! loop (provider permit, worker, events to the caller, fallback before anything was streamed)
//! → usage ledger → the turn stored in memory → the reply.
//!
//! Everything that waits also watches the request's cancellation token, so a caller that goes
//! away frees its permits and aborts its upstream request at once.

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::context;
use super::session::Call;
use super::{Gateway, Inner};
use crate::activity::RequestRecord;
use crate::actors::limits::SessionLimit;
use crate::actors::session::now_ms;
use crate::catalog::ModelInfo;
use crate::engine::turn_cache::{TurnAsked, TurnLooked};
use crate::engine::{Attempted, Attempts, note};
use crate::error::Error;
use crate::memory::{Thread, Turn};
use crate::providers::{Completed, ProviderCall, ProviderEvent, ProviderHandle};
use crate::request::{ChatEvent, ChatRequest, ChatResponse, FallbackNote, Message, Role};
use crate::routing::{self, Needs};
use crate::trace;
use crate::wire::CacheStatus;

mod cached;

use cached::answer_from_cache;

/// Pieces buffered between a provider call and the caller's stream.
const PIECE_BUFFER: usize = 64;

/// Where streamed events go (`None` for a plain `chat`).
pub(crate) type Sink = Option<mpsc::Sender<Result<ChatEvent, Error>>>;

/// Runs `fut` unless `cancel` fires first (checked first on every poll).
///
/// A plain combinator rather than an `async fn` with `select!`: that would hold `fut` twice (the
/// argument and the select's copy), and futures here nest deep enough that moving such copies
/// around was most of the `memcpy` that took a fifth of exai-ws's instructions under load.
fn or_cancel<T>(
    cancel: &CancellationToken,
    fut: impl Future<Output = Result<T, Error>>,
) -> impl Future<Output = Result<T, Error>> {
    cancel
        .run_until_cancelled(fut)
        .map(|r| r.unwrap_or(Err(Error::Cancelled)))
}

/// Runs one turn for a session.
pub(crate) async fn run(
    gateway: Gateway,
    limit: SessionLimit,
    session_id: String,
    request: ChatRequest,
    call: Call,
    sink: Sink,
    cancel: CancellationToken,
) -> Result<ChatResponse, Error> {
    let inner = &gateway.inner;
    let request_id = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    let asked = request.model.as_deref().unwrap_or("auto");
    let front_door = request.tool.clone().unwrap_or_else(|| "api".to_string());
    let (asked_text, key) = (asked.to_string(), call.key_name().map(str::to_string));
    let span = trace::request_span(trace::Operation::Chat { model: asked }, None, call.key_name());
    span.record("request_id", request_id.as_str());
    span.record("session", session_id.as_str());
    span.record("conversation", request.continuation_id.as_deref().unwrap_or("new"));
    if inner.config.otel_content {
        span.record(
            "gen_ai.input.messages",
            trace::messages_json(&request.messages).as_str(),
        );
    }
    // Boxed so that what frontends hold and move (their handler futures) stays small.
    let result = Box::pin(run_in_span(
        &gateway, &limit, request, &call, &sink, &cancel, request_id,
    ))
    .instrument(span.clone())
    .await;
    match &result {
        Ok(r) => {
            trace::record_answer(
                &span,
                &r.provider,
                &r.model,
                r.usage,
                r.finish_reason.as_deref(),
                Some(r.cost_usd),
            );
            if let Some(first) = r.fallbacks.first() {
                span.record(
                    "exai.fallback_from",
                    format!("{}/{}", first.provider, first.model).as_str(),
                );
            }
            if inner.config.otel_content {
                span.record("gen_ai.output.messages", trace::reply_json(&r.text).as_str());
            }
        }
        Err(e) => trace::record_error(&span, trace::error_type(e)),
    }
    inner
        .activity
        .record(activity_record(&result, front_door, asked_text, key, started));
    if let (Some(sink), Err(e)) = (&sink, &result) {
        let _ = sink.send(Err(e.clone())).await;
    }
    result
}

async fn run_in_span(
    gateway: &Gateway,
    limit: &SessionLimit,
    request: ChatRequest,
    call: &Call,
    sink: &Sink,
    cancel: &CancellationToken,
    request_id: String,
) -> Result<ChatResponse, Error> {
    let inner = &*gateway.inner;
    let started = Instant::now();
    let deadline = inner.limits.deadline();
    if let Some(full) = inner.limits.busy(limit) {
        status(sink, format_args!("queued: the {full} requests in flight is full"));
    }
    let _permits = or_cancel(cancel, inner.limits.request(limit, deadline)).await?;

    if request.messages.is_empty() {
        return Err(Error::InvalidRequest(
            "the request has no message; send at least one user message".into(),
        ));
    }
    // Another key's conversation is answered as an unknown one: no oracle.
    let thread = match &request.continuation_id {
        Some(id) => Some(
            inner
                .memory
                .load(id)
                .await?
                .filter(|t| t.belongs_to(call.key_name()))
                .ok_or_else(|| Error::ThreadNotFound(id.clone()))?,
        ),
        None => None,
    };
    let history: Vec<Message> = thread
        .iter()
        .flat_map(|t| &t.turns)
        .map(|t| Message {
            role: t.role,
            content: t.content.clone(),
            images: Vec::new(),
        })
        .collect();
    let system = system_prompt(&request)?;
    let turn: &[Message] = &request.messages;
    let sent = with_context(turn, &request.context);
    let needs = Needs {
        tokens: context::estimate_messages(history.iter().chain(&sent))
            + system.as_deref().map_or(0, context::estimate),
        files: !request.files.is_empty(),
        web_search: request.web_search,
        vision: turn.iter().any(|m| !m.images.is_empty()),
    };
    let mut plan = routing::plan(&inner.config, &inner.catalog, request.model.as_deref(), needs)?;
    let asked = request.model.as_deref().unwrap_or("auto");
    crate::keys::narrow_plan(call.key.as_deref(), &mut plan, asked, &inner.catalog, &inner.config)?;
    gateway.order_group(request.model.as_deref(), &mut plan);

    // Each model's messages: the history that fits its context window. A model it cannot fit
    // is left for the next one (and noted), unless it is the last.
    let mut skipped = Vec::new();
    let mut fitted = Vec::new();
    let last = plan.len().saturating_sub(1);
    for (index, model) in plan.into_iter().enumerate() {
        match context::fit(system.as_deref(), &history, &sent, &model, request.max_tokens) {
            Ok(messages) => fitted.push((model, messages)),
            Err(e) if index < last => skipped.push(note(&model, &e.to_string())),
            Err(e) => {
                if fitted.is_empty() {
                    return Err(e);
                }
            }
        }
    }
    let ticket = match fitted.first() {
        Some((model, messages)) => {
            let asked = TurnAsked {
                directive: request.cache,
                key: call.key.as_deref(),
                model,
                messages,
                temperature: request.temperature,
                max_tokens: request.max_tokens,
                thinking: request.thinking,
                web_search: request.web_search,
                front_door: request.tool.as_deref().unwrap_or("api"),
            };
            match inner.response_cache.lookup_turn(&asked).await {
                TurnLooked::Hit(done) => {
                    let model = model.clone();
                    let answered =
                        answer_from_cache(gateway, &request, call, sink, thread, turn, model, done, request_id);
                    return Ok(answered.await);
                }
                TurnLooked::Miss(ticket) => ticket,
            }
        }
        None => None,
    };
    let status_line = |message: std::fmt::Arguments<'_>| status(sink, message);
    let attempts = Attempts {
        gateway,
        key: call.key_name(),
        permits_by: deadline,
        cancel: Some(cancel),
        started,
        status: &status_line,
    };
    let won = attempts
        .run(fitted, skipped, |model, messages, handle| {
            let call = ProviderCall {
                model,
                messages,
                stream: sink.is_some(),
                temperature: request.temperature,
                max_tokens: request.max_tokens,
                thinking: request.thinking,
                web_search: request.web_search,
            };
            attempt(handle, call, sink)
        })
        .await?;
    let span = tracing::Span::current();
    span.record("provider", won.model.provider.as_str());
    span.record("model", won.model.id.as_str());
    span.record("exai.deployment", won.permit.deployment.label.as_str());
    let cost = crate::engine::record_success(
        gateway,
        &won.model,
        &won.permit.deployment,
        call.key_name(),
        won.value.usage,
        started,
    );
    if let Some(ticket) = &ticket {
        ticket.keep(&inner.response_cache, &won.model.id, &won.value).await;
    }
    let answered = Answered {
        model: &won.model,
        deployment: Some(&won.permit.deployment.label),
        done: won.value,
        cost,
        fallbacks: won.fallbacks,
        cache: ticket.map(|_| CacheStatus::Miss),
    };
    let response = finish(
        gateway,
        &request,
        call.key_name(),
        thread,
        turn.to_vec(),
        answered,
        request_id,
    )
    .await;
    drop(won.permit);
    if let Some(sink) = sink {
        let _ = sink.send(Ok(ChatEvent::Done(response.clone()))).await;
    }
    Ok(response)
}

/// The status page's line for a finished turn.
fn activity_record(
    result: &Result<ChatResponse, Error>,
    front_door: String,
    model_asked: String,
    key: Option<String>,
    started: Instant,
) -> RequestRecord {
    let record = RequestRecord::new(front_door, model_asked, key, started);
    match result {
        Ok(r) => {
            let fallbacks = r
                .fallbacks
                .iter()
                .map(|f| format!("{}/{}", f.provider, f.model))
                .collect();
            let mut line = record
                .answered(&r.provider, &r.model, fallbacks, r.usage, r.cost_usd)
                .at(r.deployment.as_deref());
            if r.cache == Some(CacheStatus::Hit) {
                line.status = "cached".to_string();
            }
            line
        }
        Err(e) => record.failed(e),
    }
}

/// This turn's messages as sent: the extra context joins the last user message.
fn with_context(turn: &[Message], extra: &[String]) -> Vec<Message> {
    let mut sent = turn.to_vec();
    let last_user = sent.iter_mut().rev().find(|m| m.role == Role::User);
    if let (Some(m), false) = (last_user, extra.is_empty()) {
        for block in extra {
            m.content.push_str("\n\n");
            m.content.push_str(block);
        }
    }
    sent
}

/// Reports what the request is doing (streams only, so a plain call formats nothing; never
/// blocks the request).
fn status(sink: &Sink, message: std::fmt::Arguments<'_>) {
    if let Some(sink) = sink {
        let _ = sink.try_send(Ok(ChatEvent::Status(message.to_string())));
    }
}

/// The turn's system prompt: set once, with `ChatRequest::system`.
fn system_prompt(request: &ChatRequest) -> Result<Option<String>, Error> {
    if request.messages.iter().any(|m| m.role == Role::System) {
        return Err(Error::InvalidRequest(
            "a system message among the turn's messages; set the system prompt with ChatRequest::system".into(),
        ));
    }
    Ok(request.system.clone())
}

/// One provider attempt, through `handle`: its pieces forwarded to the caller's stream.
///
/// The call and the forwarding of its pieces run as two futures of this one task: no spawn, no
/// thread hop, and dropping this future (cancellation) aborts the HTTP request.
async fn attempt(handle: ProviderHandle, call: ProviderCall, sink: &Sink) -> Result<Attempted<Completed>, Error> {
    if sink.is_none() {
        // A plain call streams nothing, so there is nothing to relay. Without the relay, the
        // task is not woken by its own channel closing — a self-wake that tokio answers by
        // waking the other worker thread, once per request.
        let (events, _) = mpsc::channel(1);
        return Ok(Box::pin(handle.call(&call, &events)).await?.into());
    }
    let (events, mut pieces) = mpsc::channel(PIECE_BUFFER);
    // Boxed: the provider call is the largest future of a turn; every future that holds it
    // inline would grow (and be copied) by its size.
    let run = Box::pin(async move {
        let result = handle.call(&call, &events).await;
        drop(events);
        result
    });
    let relay = async {
        let mut emitted = false;
        while let Some(piece) = pieces.recv().await {
            let event = match piece {
                ProviderEvent::Text(t) => ChatEvent::Text(t),
                ProviderEvent::Reasoning(r) => ChatEvent::Reasoning(r),
            };
            forward(sink, event, &mut emitted).await?;
        }
        Ok::<bool, Error>(emitted)
    };
    let (result, emitted) = futures::future::join(run, relay).await;
    let emitted = emitted?;
    Ok(match result? {
        Ok(done) => Attempted::Answered(done),
        Err(error) => Attempted::Failed { error, emitted },
    })
}

async fn forward(sink: &Sink, event: ChatEvent, emitted: &mut bool) -> Result<(), Error> {
    if let Some(sink) = sink {
        *emitted = true;
        sink.send(Ok(event)).await.map_err(|_| Error::Cancelled)?;
    }
    Ok(())
}

/// How a turn was answered: by `model` with `done`, costing `cost`, after `fallbacks`; from the
/// cache or not.
struct Answered<'a> {
    model: &'a ModelInfo,
    /// The deployment's label; none for a cache hit.
    deployment: Option<&'a str>,
    done: Completed,
    cost: f64,
    fallbacks: Vec<FallbackNote>,
    cache: Option<CacheStatus>,
}

/// Memory, and the response (the call is recorded already).
async fn finish(
    gateway: &Gateway,
    request: &ChatRequest,
    key: Option<&str>,
    thread: Option<Thread>,
    turn: Vec<Message>,
    answered: Answered<'_>,
    request_id: String,
) -> ChatResponse {
    let Answered {
        model,
        deployment,
        done,
        cost,
        fallbacks,
        cache,
    } = answered;
    let continuation_id = if request.ephemeral {
        request.continuation_id.clone().unwrap_or_default()
    } else {
        let thread = thread.unwrap_or_else(|| new_thread(request.tool.clone(), key.map(str::to_string)));
        let mut turns = Vec::new();
        push_turns(&mut turns, turn, request.files.clone(), request.tool.clone());
        turns.push(Turn {
            role: Role::Assistant,
            content: done.text.clone(),
            provider: Some(model.provider.clone()),
            model: Some(model.id.clone()),
            files: Vec::new(),
            images: Vec::new(),
            usage: Some(done.usage),
            tool: request.tool.clone(),
            timestamp_ms: now_ms(),
        });
        save(&gateway.inner, thread, turns).await
    };
    ChatResponse {
        text: done.text,
        reasoning: (!done.reasoning.is_empty()).then_some(done.reasoning),
        provider: model.provider.clone(),
        model: model.id.clone(),
        deployment: deployment.map(str::to_string),
        usage: done.usage,
        cost_usd: cost,
        continuation_id,
        request_id,
        finish_reason: done.finish_reason,
        fallbacks,
        cache,
    }
}

/// A new, empty conversation, started by `owner` (a key's name).
pub(crate) fn new_thread(tool: Option<String>, owner: Option<String>) -> Thread {
    let now = now_ms();
    Thread {
        id: uuid::Uuid::new_v4().to_string(),
        parent: None,
        tool,
        owner,
        created_ms: now,
        updated_ms: now,
        turns: Vec::new(),
    }
}

/// Appends the caller's messages as turns; `files` go with the first.
pub(crate) fn push_turns(turns: &mut Vec<Turn>, messages: Vec<Message>, mut files: Vec<String>, tool: Option<String>) {
    let now = now_ms();
    for m in messages {
        turns.push(Turn {
            role: m.role,
            content: m.content,
            provider: None,
            model: None,
            files: std::mem::take(&mut files),
            images: m.images,
            usage: None,
            tool: tool.clone(),
            timestamp_ms: now,
        });
    }
}

/// Stores `turns` at the end of `thread` (as it was loaded, or new); a failure is logged, never
/// fatal (the reply was paid for).
pub(crate) async fn save(inner: &Inner, mut thread: Thread, turns: Vec<Turn>) -> String {
    thread.updated_ms = now_ms();
    let max = inner.config.memory.max_turns;
    if let Err(e) = inner.memory.append(&thread, &turns, max).await {
        tracing::error!(error = %e, conversation = %thread.id, "could not store the turn; the reply is still returned");
    }
    thread.id
}
