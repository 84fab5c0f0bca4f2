//! A call that arrived in a wire ([`WireRequest`]: OpenAI chat, Anthropic Messages), answered
//! in that wire.
//!
//! admission (the client's rate; the key's allow-list, budget, rpm, concurrency) → the model
//! resolved (a `claude-*` id through `anthropic.model_map`) → the plan, narrowed to the key's
//! models → request permits (session, global) → the attempts ([`Attempts`]), each one of:
//! - **relay**, when the provider speaks the client's wire and its quirks need not rewrite the
//!   reply: the client's bytes with the model spliced in, the reply's bytes back;
//! - **translation**, Messages to a provider that speaks only chat: the body and the reply (or
//!   each chunk) translated;
//! - **the gateway's own call**, chat to a provider whose chat replies must be rewritten
//!   (MiniMax): the body read into a call, the reply written back as chat chunks.
//!
//! A relayed or translated attempt counts as answered only once the reply is seen not to be an
//! error a provider put inside a 200 (`in_band.rs`): a whole reply, or a stream's first events.
//!
//! One deadline covers the whole call, attempts and stream together. The call is recorded once
//! — ledger, key spend, status page, span — when a whole reply is in, or when its stream ends.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::attempts::{Attempted, Attempts, Won};
use super::cache;
use super::in_band;
use super::record::CallRecord;
use super::responses;
use crate::catalog::{Catalog, ModelInfo};
use crate::config::Config;
use crate::error::{Error, ProviderError, ProviderErrorKind};
use crate::gateway::{Gateway, Session, context};
use crate::providers::{
    ProviderCall, ProviderEvent, ProviderHandle, ToolCap, WireHeaders, cap_chat_tools, chat_body_edits,
    forwarded_betas, messages_edits,
};
use crate::routing::{self, Needs};
use crate::trace;
use crate::wire::json::{Fields, splice};
use crate::wire::scan::Scanner;
use crate::wire::sse::EventCutter;
use crate::wire::{
    AbortOnDrop, CacheStatus, Finish, Source, StreamTranslator, Wire, WireReply, WireRequest, WireStream, from_openai,
    openai_chat, to_openai,
};

/// Pieces buffered between the gateway's own streamed call and its client.
const PRODUCED_BUFFER: usize = 64;

/// The exai model a request's `model` means: an exai model or alias as it is; a `claude-*` id
/// the catalog does not know through `anthropic.model_map`, else `default_model`.
pub(crate) fn target_model(config: &Config, catalog: &Catalog, asked: &str) -> String {
    if asked.eq_ignore_ascii_case("auto") || catalog.resolve(asked, config).is_some() {
        return asked.to_string();
    }
    if asked.to_ascii_lowercase().starts_with("claude") {
        return config
            .anthropic
            .map_model(asked)
            .unwrap_or(&config.default_model)
            .to_string();
    }
    asked.to_string()
}

/// What one attempt answered.
pub(super) enum Answer {
    /// A whole reply in the client's wire, and what its scanner read of it.
    Whole { body: Bytes, scan: Scanner },
    /// A stream to hand on, and the span of the HTTP try that answered (its usage is recorded
    /// there too when the stream ends).
    Stream(Source, tracing::Span),
}

/// An answer, and what the client should be warned of (the provider's rules changed the
/// request: tools past its cap dropped).
pub(super) struct Warned(pub Answer, pub Option<String>);

impl From<Answer> for Warned {
    fn from(answer: Answer) -> Self {
        Warned(answer, None)
    }
}

/// A scanner for a reply in `wire`, collecting its text when traces record content.
fn scanner(gateway: &Gateway, wire: Wire) -> Scanner {
    if gateway.config().otel_content {
        Scanner::collecting_text(wire)
    } else {
        Scanner::new(wire)
    }
}

/// Runs one wire call for `session`, in a request span.
pub(crate) async fn run(session: &Session, request: WireRequest) -> Result<WireReply, Error> {
    let gateway = session.gateway();
    let span = trace::request_span(
        trace::Operation::Chat { model: &request.model },
        request.trace.as_ref(),
        session.caller().key_name(),
    );
    span.record("request_id", uuid::Uuid::new_v4().to_string().as_str());
    span.record("session", session.id());
    let call = CallRecord {
        front_door: match request.wire {
            Wire::Chat => "openai",
            Wire::Messages => "anthropic",
            Wire::Responses => "responses",
        },
        asked: request.model.clone(),
        key: session.caller().key_name().map(Arc::from),
        started: Instant::now(),
        span: span.clone(),
    };
    let until = call.started + session.deadline();
    let work = run_in_span(session, gateway, request, &call, until).instrument(span);
    let result = match tokio::time::timeout_at(until, work).await {
        Ok(result) => result,
        Err(_) => Err(Error::DeadlineExceeded {
            after: session.deadline(),
        }),
    };
    if let Err(e) = &result {
        call.failed(gateway, e);
    }
    result
}

async fn run_in_span(
    session: &Session,
    gateway: &Gateway,
    request: WireRequest,
    call: &CallRecord,
    until: Instant,
) -> Result<WireReply, Error> {
    let target = match request.wire {
        Wire::Messages => target_model(gateway.config(), gateway.catalog(), &request.model),
        Wire::Chat | Wire::Responses => request.model.clone(),
    };
    let pass = session.admit_call(None, Some(&target)).await?;
    let key = pass.as_ref().map(|p| p.key.clone());
    let owner = session.caller().key_name().map(str::to_string);
    let prepared = match request.wire {
        Wire::Responses => Some(Arc::new(responses::prepare(gateway, &request, owner.as_deref()).await?)),
        _ => None,
    };
    if gateway.config().otel_content {
        call.span
            .record("gen_ai.input.messages", input_messages(&request).as_str());
    }
    let plan = takeable(
        gateway,
        &request,
        plan(gateway, &request, prepared.as_ref(), &target, key.as_deref())?,
    )?;
    let (ticket, flight) = match plan.first() {
        Some(first) => {
            let asked = cache::Asked {
                session,
                request: &request,
                prepared: prepared.as_ref(),
                model: first,
                key: key.as_deref(),
                call,
                until,
            };
            match cache::lookup(&asked).await {
                cache::Looked::Hit(reply) => return Ok(reply),
                cache::Looked::Miss { ticket, flight } => (ticket, flight),
            }
        }
        None => (None, None),
    };
    let routed = Routed {
        pass,
        owner,
        prepared,
        plan,
        ticket,
    };
    // Boxed: the provider's path is the largest part of a call's future, and a cache hit — which
    // returns above — would otherwise carry (and every layer above move) its size.
    // The deadline goes with the future: a coalesced flight runs it in a task of its own.
    let asked = Box::pin(crate::deadline::scope(
        until,
        shared_or_provider(session.clone(), request, call.clone(), until, routed),
    ));
    match flight {
        Some(flight) => {
            let followed: cache::coalesce::Followed = {
                let (gateway, call) = (gateway.clone(), call.clone());
                Box::new(move |provider: &str, model: &str, usage| {
                    let catalog = gateway.catalog();
                    let answered = catalog
                        .models()
                        .iter()
                        .find(|m| m.provider == provider && m.id == model);
                    if let Some(answered) = answered {
                        call.coalesced(&gateway, answered, usage);
                    }
                })
            };
            let deadline = (until, session.deadline());
            cache::coalesce::join(gateway, flight, deadline, asked, followed).await
        }
        None => asked.await,
    }
}

/// What a call was routed to, and what it holds while a provider answers.
struct Routed {
    /// The key's place in flight, held until the reply ends.
    pass: Option<crate::keys::KeyPass>,
    owner: Option<String>,
    prepared: Option<Arc<responses::Prepared>>,
    plan: Vec<ModelInfo>,
    /// Keeps the reply in the cache, once whole.
    ticket: Option<cache::Ticket>,
}

/// The call's reply: another daemon's, when one already asks a provider the same call and
/// keeps its reply in the cache's shared level; else a provider's (a cache miss).
async fn shared_or_provider(
    session: Session,
    request: WireRequest,
    call: CallRecord,
    until: Instant,
    mut routed: Routed,
) -> Result<WireReply, Error> {
    if let Some(ticket) = routed.ticket.as_mut() {
        if let Some(model) = routed.plan.first()
            && let Some(stored) = ticket.share((until, session.deadline())).await?
        {
            let key = routed.pass.as_ref().map(|p| p.key.as_ref());
            let asked = cache::Asked {
                session: &session,
                request: &request,
                prepared: routed.prepared.as_ref(),
                model,
                key,
                call: &call,
                until,
            };
            return Ok(cache::hit(&asked, &stored));
        }
        ticket.missed(call.front_door);
    }
    provider_reply(session, request, call, until, routed).await
}

/// The call asked of the models of its plan (permits, attempts), answered in the client's wire.
async fn provider_reply(
    session: Session,
    mut request: WireRequest,
    call: CallRecord,
    until: Instant,
    routed: Routed,
) -> Result<WireReply, Error> {
    let Routed {
        pass,
        owner,
        prepared,
        plan,
        ticket,
    } = routed;
    let (session, call) = (&session, &call);
    let gateway = session.gateway();
    let tracked = session.gateway().track();
    let permits = gateway
        .limits()
        .request(&session.limit(), gateway.limits().deadline())
        .await?;
    let attempts = Attempts {
        gateway,
        key: call.key.as_deref(),
        permits_by: gateway.limits().deadline(),
        cancel: None,
        started: call.started,
        status: &|_| {},
    };
    request.trim_tools = gateway.config().anthropic.trim_tools;
    let request = Arc::new(request);
    let plan = plan.into_iter().map(|m| (m, ())).collect();
    let Won {
        value,
        model,
        fallbacks,
        permit,
    } = attempts
        .run(plan, Vec::new(), |model, (), handle| {
            attempt(
                request.clone(),
                prepared.clone(),
                model,
                handle,
                scanner(gateway, request.wire),
            )
        })
        .await?;
    let span = tracing::Span::current();
    span.record("provider", model.provider.as_str());
    span.record("model", model.id.as_str());
    span.record("exai.deployment", permit.deployment.label.as_str());
    let names = (model.provider.clone(), model.id.clone());
    let Warned(value, warning) = value;
    match value {
        Answer::Whole { body, scan } => {
            output_content(call, &scan);
            let cost = call.answered(
                gateway,
                (&model, &permit.deployment),
                &fallbacks,
                scan.usage,
                scan.stop_reason.as_deref(),
            );
            let body = match request.wire {
                Wire::Chat => Bytes::from(openai_chat::with_exai(&body, &model.provider, cost, &fallbacks)),
                Wire::Messages | Wire::Responses => body,
            };
            if let Some(prepared) = &prepared
                && let Some(response) = responses::finished(prepared)
            {
                responses::keep(gateway, &request, prepared, owner.as_deref(), response);
            }
            if let Some(ticket) = &ticket {
                ticket.keep_whole(&body, &names.1, scan.usage).await;
            }
            Ok(WireReply::Whole {
                body,
                provider: names.0,
                model: names.1,
                warning,
                cache: ticket.map(|_| CacheStatus::Miss),
            })
        }
        Answer::Stream(source, attempt_span) => {
            let (gateway, call, kept_request) = (gateway.clone(), call.clone(), request.clone());
            let held = (permits, permit, pass, tracked);
            let scan = scanner(&gateway, request.wire);
            let finish: Finish = Box::new(move |scan: &Scanner, ended| {
                let held = held;
                let deployment = &held.1.deployment;
                let _entered = call.span.enter();
                let stop = scan.stop_reason.as_deref();
                trace::record_answer(&attempt_span, &model.provider, &model.id, scan.usage, stop, None);
                output_content(&call, scan);
                match ended {
                    crate::wire::Ended::Complete => {
                        call.answered(
                            &gateway,
                            (&model, deployment),
                            &fallbacks,
                            scan.usage,
                            scan.stop_reason.as_deref(),
                        );
                        if let Some(prepared) = &prepared
                            && let Some(response) = responses::finished(prepared)
                        {
                            responses::keep(&gateway, &kept_request, prepared, owner.as_deref(), response);
                        }
                    }
                    crate::wire::Ended::Broken => call.broken(&gateway, (&model, deployment), &fallbacks, scan.usage),
                }
            });
            let deadline = (until, session.deadline());
            let relayed_chat = matches!(source, Source::Relay { .. }) && request.wire == Wire::Chat;
            let mut stream = WireStream::new(scan, source, names, deadline, Some(finish))
                .without_usage_chunk(relayed_chat && !request.include_usage);
            stream.warning = warning;
            if let Some(ticket) = ticket {
                stream = ticket.tap(stream);
            }
            Ok(WireReply::Stream(Box::new(stream)))
        }
    }
}

/// The request's messages for `gen_ai.input.messages`: a chat body's as the gateway reads them,
/// a Messages body's as they came.
fn input_messages(request: &WireRequest) -> String {
    let body = request.body_map().unwrap_or_default();
    match request.wire {
        Wire::Chat => match openai_chat::to_call(&body) {
            Ok(call) => {
                let system = call.system.map(crate::request::Message::system);
                let all: Vec<_> = system.into_iter().chain(call.messages).collect();
                trace::messages_json(&all)
            }
            Err(_) => body.get("messages").map(ToString::to_string).unwrap_or_default(),
        },
        Wire::Messages => body.get("messages").map(ToString::to_string).unwrap_or_default(),
        Wire::Responses => body.get("input").map(ToString::to_string).unwrap_or_default(),
    }
}

/// Records the reply's text on the call's span, when it was collected.
fn output_content(call: &CallRecord, scan: &Scanner) {
    if let Some(text) = &scan.text {
        call.span
            .record("gen_ai.output.messages", trace::reply_json(text).as_str());
    }
}

/// The models to try for `target`, in order, within the key's models.
pub(super) fn plan(
    gateway: &Gateway,
    request: &WireRequest,
    prepared: Option<&Arc<responses::Prepared>>,
    target: &str,
    key: Option<&crate::keys::StoredKey>,
) -> Result<Vec<ModelInfo>, Error> {
    let (config, catalog) = (gateway.config(), gateway.catalog());
    let needs = match prepared {
        Some(prepared) => responses::needs(prepared, request),
        None => needs(request),
    };
    let mut plan = routing::plan(config, catalog, Some(target), needs)?;
    crate::keys::narrow_plan(key, &mut plan, &request.model, catalog, config)?;
    gateway.order_group(Some(target), &mut plan);
    Ok(plan)
}

/// The plan without the models that cannot take a chat request at all: a provider answered by
/// the gateway's own call (MiniMax) takes only what that call can carry (no tool messages, a
/// history within the model's window). Fails with the first reason when no model is left.
fn takeable(gateway: &Gateway, request: &WireRequest, plan: Vec<ModelInfo>) -> Result<Vec<ModelInfo>, Error> {
    if request.wire != Wire::Chat {
        return Ok(plan);
    }
    let mut asked: Option<Result<openai_chat::ChatCall, Error>> = None;
    let mut reason = None;
    let mut kept = Vec::with_capacity(plan.len());
    for model in plan {
        let relayed = gateway.provider(&model.provider).is_none_or(|handle| {
            let client = handle.client();
            client.config.speaks(Wire::Chat) && client.quirks().relays(Wire::Chat)
        });
        if relayed {
            kept.push(model);
            continue;
        }
        let call = asked.get_or_insert_with(|| request.body_map().and_then(|body| openai_chat::to_call(&body)));
        let fits = call
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|call| context::fit(call.system.as_deref(), &[], &call.messages, &model, call.max_tokens));
        match fits {
            Ok(_) => kept.push(model),
            Err(e) => {
                reason.get_or_insert(e);
            }
        }
    }
    match (kept.is_empty(), reason) {
        (true, Some(e)) => Err(e),
        _ => Ok(kept),
    }
}

/// What routing needs to know of a request: its size, and whether it carries images.
fn needs(request: &WireRequest) -> Needs {
    let text = request.text();
    Needs {
        tokens: context::estimate(text),
        vision: text.contains("\"image\"") || text.contains("\"image_url\""),
        ..Needs::default()
    }
}

/// One attempt at `model`, through its provider's worker (circuit breaker) and client.
async fn attempt(
    request: Arc<WireRequest>,
    prepared: Option<Arc<responses::Prepared>>,
    model: ModelInfo,
    handle: ProviderHandle,
    scan: Scanner,
) -> Result<Attempted<Warned>, Error> {
    let client = handle.client();
    let (config, wire) = (&client.config, request.wire);
    let cap = ToolCap {
        trim: request.trim_tools,
    };
    if config.speaks(wire) && client.quirks().relays(wire) {
        let answer = handle
            .guard(&model.id, relay(&request, &model, &handle, scan, cap))
            .await?;
        return Ok(answer.into());
    }
    match wire {
        Wire::Messages => {
            let body = request.body_map()?;
            let answer = handle
                .guard(&model.id, translate(&request, &body, &model, &handle, scan, cap))
                .await?;
            Ok(answer.into())
        }
        Wire::Responses => {
            let Some(prepared) = prepared else {
                return Err(Error::Internal("a Responses call was not prepared".into()));
            };
            let answer = handle
                .guard(
                    &model.id,
                    responses::translate(&request, &prepared, &model, &handle, scan, cap),
                )
                .await?;
            Ok(answer.into())
        }
        Wire::Chat => Ok(match own_call(&request, model, handle, scan).await? {
            Attempted::Answered(answer) => Attempted::Answered(answer.into()),
            Attempted::Failed { error, emitted } => Attempted::Failed { error, emitted },
        }),
    }
}

/// The Anthropic headers for `provider`: the client's version, and its betas on the
/// provider's allow-list.
pub(super) fn headers(request: &WireRequest, client: &crate::providers::ProviderClient) -> WireHeaders {
    WireHeaders {
        anthropic_version: request.version.clone(),
        anthropic_beta: forwarded_betas(client.quirks(), &client.config, request.beta.as_deref()),
    }
}

/// A request the provider's rules refuse (over its tool cap), as its error.
fn refused(model: &ModelInfo, e: &Error) -> ProviderError {
    ProviderError::new(
        &model.provider,
        &model.id,
        ProviderErrorKind::InvalidRequest {
            status: 400,
            message: e.to_string(),
        },
    )
}

pub(super) fn unreadable(model: &ModelInfo, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(
        &model.provider,
        &model.id,
        ProviderErrorKind::Transient {
            status: None,
            message: format!("the reply could not be read: {e}"),
        },
    )
}

/// The client's bytes to a provider that speaks its wire; the reply's bytes back.
async fn relay(
    request: &WireRequest,
    model: &ModelInfo,
    handle: &ProviderHandle,
    scan: Scanner,
    cap: ToolCap,
) -> Result<Warned, ProviderError> {
    let client = handle.client();
    let mut rules = Ok((Vec::new(), None));
    let body = request.upstream_body(&model.id, |fields| match request.wire {
        Wire::Chat => chat_body_edits(client.quirks(), fields),
        Wire::Messages => {
            rules = messages_edits(client.quirks(), &model.provider, fields, cap);
            rules
                .as_mut()
                .map(|(edits, _)| std::mem::take(edits))
                .unwrap_or_default()
        }
        Wire::Responses => Vec::new(),
    });
    let warning = match rules {
        Ok((_, warning)) => warning,
        Err(e) => return Err(refused(model, &e)),
    };
    let path = match request.wire {
        Wire::Chat => "/chat/completions",
        Wire::Messages => "/v1/messages",
        Wire::Responses => "/responses",
    };
    let (response, span) = client
        .send_wire(
            &model.id,
            request.wire,
            path,
            Bytes::from(body),
            &headers(request, client),
            request.stream,
        )
        .await?;
    if request.stream {
        let source = Source::Relay {
            body: in_band::first_events(client, model, request.wire, &span, response).await?,
            cutter: EventCutter::default(),
        };
        return Ok(Warned(Answer::Stream(source, span), warning));
    }
    let body = in_band::whole_reply(client, model, &span, response).await?;
    Ok(Warned(whole(body, scan, model, &span), warning))
}

/// A whole reply in the client's wire, scanned, its answer recorded on the try's span.
pub(super) fn whole(body: Bytes, mut scan: Scanner, model: &ModelInfo, span: &tracing::Span) -> Answer {
    scan.whole(&body);
    let stop = scan.stop_reason.as_deref();
    trace::record_answer(span, &model.provider, &model.id, scan.usage, stop, None);
    Answer::Whole { body, scan }
}

/// A chat body translated from another wire, sent to the provider's chat endpoint: within its
/// tool cap (refused, or trimmed with the warning returned), with its chat quirks applied.
pub(super) async fn send_translated(
    handle: &ProviderHandle,
    model: &ModelInfo,
    body: &mut serde_json::Value,
    stream: bool,
    cap: ToolCap,
) -> Result<(reqwest::Response, tracing::Span, Option<String>), ProviderError> {
    let client = handle.client();
    let quirks = client.quirks();
    let warning = cap_chat_tools(quirks, &model.provider, body, cap).map_err(|e| refused(model, &e))?;
    let raw = serde_json::to_vec(body).unwrap_or_default();
    let raw = match Fields::parse(&raw) {
        Ok(fields) => splice(&raw, chat_body_edits(quirks, &fields)),
        Err(_) => raw,
    };
    let (response, span) = client
        .send_wire(
            &model.id,
            Wire::Chat,
            "/chat/completions",
            Bytes::from(raw),
            &WireHeaders::default(),
            stream,
        )
        .await?;
    Ok((response, span, warning))
}

/// A Messages request to a provider that speaks only chat: translated there and back.
async fn translate(
    request: &WireRequest,
    body: &serde_json::Map<String, serde_json::Value>,
    model: &ModelInfo,
    handle: &ProviderHandle,
    scan: Scanner,
    cap: ToolCap,
) -> Result<Warned, ProviderError> {
    let client = handle.client();
    let (mut translated, names) = to_openai(body, &model.id, request.stream, client.quirks().takes_reasoning_back());
    let (response, span, warning) = send_translated(handle, model, &mut translated, request.stream, cap).await?;
    if request.stream {
        let estimate = context::estimate(request.text());
        let source = Source::Translated {
            body: in_band::first_events(client, model, Wire::Chat, &span, response).await?,
            cutter: EventCutter::default(),
            translator: Box::new(StreamTranslator::new(&model.id, names, estimate)),
        };
        return Ok(Warned(Answer::Stream(source, span), warning));
    }
    let reply = in_band::whole_reply(client, model, &span, response).await?;
    let reply = serde_json::from_slice::<serde_json::Value>(&reply).map_err(|e| unreadable(model, e))?;
    let (message, _) = from_openai(&reply, &model.id, &names);
    Ok(Warned(
        whole(Bytes::from(message.to_string()), scan, model, &span),
        warning,
    ))
}

/// A chat request to a provider whose chat replies the gateway rewrites: the body read into the
/// gateway's own call (quirks, `<think>` tags split out), the reply written back as chat.
async fn own_call(
    request: &WireRequest,
    model: ModelInfo,
    handle: ProviderHandle,
    mut scan: Scanner,
) -> Result<Attempted<Answer>, Error> {
    let body = request.body_map()?;
    let asked = openai_chat::to_call(&body)?;
    let messages = context::fit(asked.system.as_deref(), &[], &asked.messages, &model, asked.max_tokens)?;
    let call = ProviderCall {
        model,
        messages,
        stream: request.stream,
        temperature: asked.temperature,
        max_tokens: asked.max_tokens,
        thinking: asked.thinking,
        web_search: false,
    };
    if !request.stream {
        let (events, _) = mpsc::channel(1);
        let done = match handle.call(&call, &events).await? {
            Ok(done) => done,
            Err(error) => return Ok(Attempted::Failed { error, emitted: false }),
        };
        let body = openai_chat::completion(&openai_chat::Answer {
            model: &call.model.id,
            text: &done.text,
            reasoning: (!done.reasoning.is_empty()).then_some(done.reasoning.as_str()),
            finish_reason: done.finish_reason.as_deref(),
            usage: done.usage,
        });
        let body = Bytes::from(body);
        scan.whole(&body);
        scan.usage = done.usage;
        return Ok(Attempted::Answered(Answer::Whole { body, scan }));
    }
    // Streamed: the call runs in a task of its own that writes chat chunks; the attempt waits
    // for the first of them, so a call that fails before any is left for the next model.
    let (tx, mut rx) = mpsc::channel(PRODUCED_BUFFER);
    let include_usage = request.include_usage;
    let task = AbortOnDrop(tokio::spawn(produce(handle, call, include_usage, tx).in_current_span()).abort_handle());
    match rx.recv().await {
        Some(Err(Error::Provider(error))) => Ok(Attempted::Failed {
            error: *error,
            emitted: false,
        }),
        Some(Err(e)) => Err(e),
        Some(Ok(first)) => {
            let source = Source::Produced {
                first: Some(first),
                rest: rx,
                _task: task,
            };
            Ok(Attempted::Answered(Answer::Stream(source, tracing::Span::none())))
        }
        None => Err(Error::Cancelled),
    }
}

/// Runs the gateway's own streamed call and writes it as chat chunks to `tx`; a failure before
/// anything was written is sent as the error (for the next model), after it as the stream's end.
async fn produce(
    handle: ProviderHandle,
    call: ProviderCall,
    include_usage: bool,
    tx: mpsc::Sender<Result<crate::wire::Piece, Error>>,
) {
    let (events_tx, mut events) = mpsc::channel(PRODUCED_BUFFER);
    let mut writer = openai_chat::ChunkWriter::new(&call.model.id, include_usage);
    let run = async {
        let result = handle.call(&call, &events_tx).await;
        drop(events_tx);
        result
    };
    let forward = async {
        while let Some(event) = events.recv().await {
            let mut out = Vec::new();
            match event {
                ProviderEvent::Text(t) if !t.is_empty() => writer.text(&t, &mut out),
                ProviderEvent::Reasoning(r) if !r.is_empty() => writer.reasoning(&r, &mut out),
                _ => continue,
            }
            if tx.send(Ok(crate::wire::Piece::Bytes(Bytes::from(out)))).await.is_err() {
                return;
            }
        }
    };
    let (result, ()) = futures::future::join(Box::pin(run), forward).await;
    let piece = match result {
        Ok(Ok(done)) => {
            let mut out = Vec::new();
            writer.done(done.finish_reason.as_deref(), done.usage, &mut out);
            let _ = tx.send(Ok(crate::wire::Piece::Usage(done.usage))).await;
            Ok(crate::wire::Piece::Bytes(Bytes::from(out)))
        }
        Ok(Err(e)) => Err(Error::from(e)),
        Err(e) => Err(e),
    };
    let _ = tx.send(piece).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_ids_map_by_the_most_specific_glob_and_otherwise_to_the_default() -> Result<(), crate::ConfigError> {
        let env = std::collections::HashMap::from([(
            "EXAI_ANTHROPIC_MODEL_MAP".to_string(),
            "claude-*=kimi,claude-haiku-*=glm-4.5-air".to_string(),
        )]);
        let config = Config::from_parts(&env, None)?;
        let catalog = Catalog::from_config(&config);
        assert_eq!(
            target_model(&config, &catalog, "claude-haiku-4-5-20251001"),
            "glm-4.5-air"
        );
        assert_eq!(target_model(&config, &catalog, "claude-sonnet-4-5"), "kimi");
        assert_eq!(target_model(&config, &catalog, "glm-4.6"), "glm-4.6");
        let plain = Config::from_parts(&Default::default(), None)?;
        assert_eq!(target_model(&plain, &catalog, "claude-opus-4"), plain.default_model);
        Ok(())
    }
}
