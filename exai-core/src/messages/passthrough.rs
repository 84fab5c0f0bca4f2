//! One Messages request, passed through to a provider's Anthropic-compatible endpoint or
//! translated to its OpenAI chat endpoint (`translate.rs`) when it has none.
//!
//! admission (the client's rate, its key: model allow-list, budget, limits) → the model resolved
//! → the routing plan, narrowed to the key's models → request permits (session, global) → for
//! each planned model: its provider's permit, then either the body forwarded with the model
//! rewritten (`x-api-key` the provider's key, `anthropic-version` and `anthropic-beta` forwarded)
//! or the body translated → on a failure worth it (429, 5xx, a connection that failed) and before
//! anything was relayed, the next model → the reply, or the stream relayed event by event (or
//! translated chunk by chunk) while its usage is read → the usage ledger and the key's spend
//! when it ends.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::translate::{self, StreamTranslator};
use super::{DEFAULT_VERSION, MessagesEvent, MessagesReply, MessagesRequest, MessagesStream, TokenCount};
use crate::activity::RequestRecord;
use crate::catalog::{Catalog, ModelInfo};
use crate::config::{Config, ProviderConfig};
use crate::error::{Error, ProviderError, ProviderErrorKind};
use crate::gateway::{Inner, Session, context, record_failure, record_success};
use crate::keys::StoredKey;
use crate::providers::{classify, retry_after, transport_error};
use crate::request::Usage;
use crate::routing::{self, Needs};
use crate::trace;

/// Events buffered between the upstream and the client.
const RELAY_BUFFER: usize = 64;

/// Largest upstream error body read.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

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

/// The models to try, in order: the plan for `target`, within the key's models.
fn plan(
    inner: &Inner,
    request: &MessagesRequest,
    target: &str,
    key: Option<&StoredKey>,
) -> Result<Vec<ModelInfo>, Error> {
    let text = Value::Object(request.body.clone()).to_string();
    let needs = Needs {
        tokens: context::estimate(&text),
        vision: text.contains("\"type\":\"image\""),
        ..Needs::default()
    };
    let mut plan = routing::plan(&inner.config, &inner.catalog, Some(target), needs)?;
    crate::keys::narrow_plan(key, &mut plan, &request.model, &inner.catalog, &inner.config)?;
    Ok(plan)
}

fn endpoint<'a>(config: &'a Config, provider: &str) -> Option<(&'a ProviderConfig, &'a str)> {
    let p = config.provider(provider)?;
    Some((p, p.anthropic_base_url.as_deref()?))
}

/// What one attempt at a provider came to.
enum Answer {
    /// A whole message (translated if it had to be), and its usage.
    Message(Value, Usage),
    /// A stream to relay — through a translator when the provider speaks OpenAI's format.
    Stream(Box<reqwest::Response>, Option<Box<StreamTranslator>>),
}

/// Sends the request to `model`'s provider.
async fn send(
    inner: &Inner,
    request: &MessagesRequest,
    model: &ModelInfo,
    path: &str,
) -> Result<reqwest::Response, ProviderError> {
    let fail = |kind| ProviderError {
        provider: model.provider.clone(),
        model: model.id.clone(),
        kind,
    };
    let Some((provider, base)) = endpoint(&inner.config, &model.provider) else {
        return Err(fail(ProviderErrorKind::MissingKey {
            env: format!("{}_ANTHROPIC_BASE_URL", model.provider.to_ascii_uppercase()),
        }));
    };
    let Some(key) = &provider.api_key else {
        return Err(fail(ProviderErrorKind::MissingKey {
            env: provider.key_env.join(" or "),
        }));
    };
    let mut body = request.body.clone();
    body.insert("model".into(), Value::String(model.id.clone()));
    let mut http = inner
        .http
        .post(format!("{base}{path}"))
        .header("x-api-key", key.expose())
        .header(
            "anthropic-version",
            request.version.as_deref().unwrap_or(DEFAULT_VERSION),
        )
        .json(&body);
    if let Some(beta) = &request.beta {
        http = http.header("anthropic-beta", beta);
    }
    if !request.stream {
        http = http.timeout(provider.timeout);
    }
    let response = http.send().await.map_err(|e| fail(transport_error(&e, provider)))?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    let wait = retry_after(response.headers());
    let text = read_limited(response).await;
    Err(fail(classify(provider, status, wait, &text)))
}

async fn read_limited(response: reqwest::Response) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        body.extend_from_slice(&chunk);
        if body.len() > ERROR_BODY_LIMIT {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

fn not_json(model: &ModelInfo, e: &reqwest::Error) -> ProviderError {
    ProviderError {
        provider: model.provider.clone(),
        model: model.id.clone(),
        kind: ProviderErrorKind::Transient {
            status: None,
            message: format!("the reply is not JSON: {e}"),
        },
    }
}

async fn attempt(inner: &Inner, request: &MessagesRequest, model: &ModelInfo) -> Result<Answer, ProviderError> {
    if endpoint(&inner.config, &model.provider).is_none() {
        return translated(inner, request, model).await;
    }
    let response = send(inner, request, model, "/v1/messages").await?;
    if request.stream {
        return Ok(Answer::Stream(Box::new(response), None));
    }
    let body = response.json::<Value>().await.map_err(|e| not_json(model, &e))?;
    let mut usage = Usage::default();
    usage_of(body.get("usage"), &mut usage);
    Ok(Answer::Message(body, usage))
}

/// The request translated to the provider's OpenAI chat endpoint.
async fn translated(inner: &Inner, request: &MessagesRequest, model: &ModelInfo) -> Result<Answer, ProviderError> {
    let fail = |kind| ProviderError {
        provider: model.provider.clone(),
        model: model.id.clone(),
        kind,
    };
    let Some(provider) = inner.config.provider(&model.provider) else {
        return Err(fail(ProviderErrorKind::MissingKey {
            env: format!("{}_BASE_URL", model.provider.to_ascii_uppercase()),
        }));
    };
    let (body, names) = translate::to_openai(&request.body, &model.id, request.stream);
    let mut http = inner
        .http
        .post(format!("{}/chat/completions", provider.base_url))
        .json(&body);
    if let Some(key) = &provider.api_key {
        http = http.bearer_auth(key.expose());
    }
    if !request.stream {
        http = http.timeout(provider.timeout);
    }
    let response = http.send().await.map_err(|e| fail(transport_error(&e, provider)))?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        let wait = retry_after(response.headers());
        let text = read_limited(response).await;
        return Err(fail(classify(provider, status, wait, &text)));
    }
    if request.stream {
        let estimate = context::estimate(&Value::Object(request.body.clone()).to_string());
        let translator = StreamTranslator::new(&model.id, names, estimate);
        return Ok(Answer::Stream(Box::new(response), Some(Box::new(translator))));
    }
    let reply = response.json::<Value>().await.map_err(|e| not_json(model, &e))?;
    let (message, usage) = translate::from_openai(&reply, &model.id, &names);
    Ok(Answer::Message(message, usage))
}

/// A message's usage (`usage.input_tokens`, `usage.output_tokens`).
fn usage_of(usage: Option<&Value>, into: &mut Usage) {
    let Some(usage) = usage else { return };
    let count = |field: &str| usage.get(field).and_then(Value::as_u64);
    if let Some(n) = count("input_tokens") {
        into.input_tokens = n;
    }
    if let Some(n) = count("output_tokens") {
        into.output_tokens = n;
    }
}

/// Usage from a stream's events: `message_start` carries the input, `message_delta` the output
/// so far (and, from some providers, the input too).
fn stream_usage(event: &str, data: &str, into: &mut Usage) {
    if event != "message_start" && event != "message_delta" {
        return;
    }
    let Ok(value) = serde_json::from_str::<Value>(data) else {
        return;
    };
    match event {
        "message_start" => usage_of(value.pointer("/message/usage"), into),
        _ => usage_of(value.get("usage"), into),
    }
}

/// Runs one Messages request for `session`, in a request span (`chat {model asked}`: request
/// id, session; provider, model, usage and cost once one answers; a streamed reply's span ends
/// with its stream).
pub(crate) async fn run(session: &Session, request: MessagesRequest) -> Result<MessagesReply, Error> {
    let span = trace::request_span(
        trace::Operation::Chat { model: &request.model },
        request.trace.as_ref(),
        None,
    );
    span.record("request_id", uuid::Uuid::new_v4().to_string().as_str());
    span.record("session", session.id());
    let (asked, started) = (request.model.clone(), Instant::now());
    let result = tracing::Instrument::instrument(run_in_span(session, request), span.clone()).await;
    if let Err(e) = &result {
        trace::record_error(&span, trace::error_type(e));
        let line = record(asked, session.caller().key_name(), started).failed(e);
        session.gateway().inner().activity.record(line);
    }
    result
}

/// The status page's line for a Messages call (`anthropic`), completed by its outcome.
fn record(model_asked: String, key: Option<&str>, started: Instant) -> RequestRecord {
    RequestRecord::new("anthropic".to_string(), model_asked, key.map(str::to_string), started)
}

async fn run_in_span(session: &Session, request: MessagesRequest) -> Result<MessagesReply, Error> {
    let gateway = session.gateway().clone();
    let inner = gateway.inner().clone();
    let target = target_model(&inner.config, &inner.catalog, &request.model);
    let pass = session.admit_call(None, Some(&target)).await?;
    let key = pass.as_ref().map(|p| p.key.clone());
    let plan = plan(&inner, &request, &target, key.as_deref())?;
    let key_name: Option<Arc<str>> = key.as_ref().map(|k| Arc::from(k.name.as_str()));
    if let Some(name) = &key_name {
        tracing::Span::current().record("exai.key", name.as_ref());
    }
    let tracked = gateway.track();
    let started = Instant::now();
    let deadline = inner.limits.deadline();
    let permits = inner.limits.request(&session.limit(), deadline).await?;
    let mut last = None;
    for (index, model) in plan.iter().enumerate() {
        let permit = inner.limits.provider(&model.provider, deadline).await?;
        let span = tracing::Span::current();
        span.record("provider", model.provider.as_str());
        span.record("model", model.id.as_str());
        // Through the provider's worker: its circuit breaker and `rpm` apply as to every call.
        let answer = match inner.providers.get(&model.provider) {
            Some(worker) => {
                session
                    .within_deadline(async {
                        let client = trace::attempt_span(&model.provider, &model.id, None);
                        let answer = worker
                            .guard(&model.id, attempt(&inner, &request, model))
                            .instrument(client.clone())
                            .await?
                            .map_err(Error::from);
                        match &answer {
                            Ok(Answer::Message(_, usage)) => {
                                trace::record_answer(&client, &model.provider, &model.id, *usage, None, None)
                            }
                            Ok(Answer::Stream(..)) => {}
                            Err(e) => trace::record_error(&client, trace::error_type(e)),
                        }
                        answer
                    })
                    .await
            }
            None => Err(Error::Internal(format!("no worker for provider {}", model.provider))),
        };
        let error = match answer {
            Ok(Answer::Message(body, usage)) => {
                let cost = record_success(&inner, model, key_name.as_deref(), usage, started);
                trace::record_answer(&span, &model.provider, &model.id, usage, None, Some(cost));
                let line = record(request.model.clone(), key_name.as_deref(), started);
                let line = line.answered(&model.provider, &model.id, fallen_from(&plan[..index]), usage, cost);
                inner.activity.record(line);
                if index > 0 {
                    span.record(
                        "exai.fallback_from",
                        format!("{}/{}", plan[0].provider, plan[0].id).as_str(),
                    );
                }
                return Ok(MessagesReply::Message {
                    body,
                    provider: model.provider.clone(),
                    model: model.id.clone(),
                });
            }
            Ok(Answer::Stream(response, translator)) => {
                let (tx, events) = mpsc::channel(RELAY_BUFFER);
                let (inner, model_info, key_name) = (inner.clone(), model.clone(), key_name.clone());
                let until = started + session.deadline();
                let after = session.deadline();
                let (asked, fallbacks) = (request.model.clone(), fallen_from(&plan[..index]));
                tokio::spawn(
                    async move {
                        let _held = (permits, permit, pass, tracked);
                        let call = Relayed {
                            inner: &inner,
                            model: &model_info,
                            key: key_name.as_deref(),
                            started,
                            until,
                            after,
                            asked,
                            fallbacks,
                        };
                        relay(call, *response, translator.map(|t| *t), &tx).await;
                    }
                    .instrument(span.clone()),
                );
                return Ok(MessagesReply::Stream(MessagesStream {
                    events,
                    provider: model.provider.clone(),
                    model: model.id.clone(),
                }));
            }
            Err(e) => e,
        };
        match &error {
            Error::Provider(p) => record_failure(&inner, model, key_name.as_deref(), p.label(), started),
            _ => inner.usage.error(&model.provider, &model.id, key_name.as_deref()),
        }
        let worth_another = matches!(&error, Error::Provider(p) if p.allows_fallback());
        if !worth_another || index + 1 == plan.len() {
            return Err(error);
        }
        tracing::warn!(provider = %model.provider, model = %model.id, error = %error, "falling back");
        last = Some(error);
    }
    Err(last.unwrap_or_else(|| Error::Internal("empty routing plan".into())))
}

/// What a relayed stream is for.
struct Relayed<'a> {
    inner: &'a Inner,
    model: &'a ModelInfo,
    key: Option<&'a str>,
    started: Instant,
    /// When the call's deadline passes, and how long it was.
    until: Instant,
    after: Duration,
    /// The model asked, and the attempts that failed before this one (for the status page).
    asked: String,
    fallbacks: Vec<String>,
}

/// `provider/model` of each model tried before.
fn fallen_from(tried: &[ModelInfo]) -> Vec<String> {
    tried.iter().map(|m| format!("{}/{}", m.provider, m.id)).collect()
}

/// Relays the upstream's events to `tx` — translating OpenAI chunks when `translator` is given
/// — until the end, the client leaving, or the deadline; then records the call.
async fn relay(
    call: Relayed<'_>,
    response: reqwest::Response,
    mut translator: Option<StreamTranslator>,
    tx: &mpsc::Sender<Result<MessagesEvent, Error>>,
) {
    let mut events = crate::providers::sse_events(response.bytes_stream());
    let mut usage = Usage::default();
    let mut complete = false;
    'relay: loop {
        let next = tokio::select! {
            next = events.next() => next,
            () = tx.closed() => break,
            () = tokio::time::sleep_until(call.until) => {
                let _ = tx.send(Err(Error::DeadlineExceeded { after: call.after })).await;
                break;
            }
        };
        let out = match (next, translator.as_mut()) {
            (None, Some(t)) if !complete => {
                // The provider ended without [DONE]: close the message as it stands.
                complete = true;
                t.finish()
            }
            (None, _) => break,
            (Some(Ok(event)), None) => {
                stream_usage(&event.event, &event.data, &mut usage);
                complete |= event.event == "message_stop";
                vec![MessagesEvent {
                    event: event.event,
                    data: event.data,
                }]
            }
            (Some(Ok(event)), Some(t)) if event.data.trim() == "[DONE]" => {
                complete = true;
                t.finish()
            }
            (Some(Ok(event)), Some(t)) => t.chunk(&event.data),
            (Some(Err(e)), _) => {
                let error = ProviderError {
                    provider: call.model.provider.clone(),
                    model: call.model.id.clone(),
                    kind: ProviderErrorKind::StreamInterrupted {
                        message: crate::error::scrub(&e.to_string()),
                    },
                };
                let _ = tx.send(Err(error.into())).await;
                complete = false;
                break;
            }
        };
        for event in out {
            if tx.send(Ok(event)).await.is_err() {
                complete = false;
                break 'relay;
            }
        }
        if complete && translator.is_some() {
            break;
        }
    }
    if let Some(t) = &translator {
        usage = t.usage;
    }
    let span = tracing::Span::current();
    let line = record(call.asked, call.key, call.started);
    if complete {
        let cost = record_success(call.inner, call.model, call.key, usage, call.started);
        trace::record_answer(&span, &call.model.provider, &call.model.id, usage, None, Some(cost));
        let line = line.answered(&call.model.provider, &call.model.id, call.fallbacks, usage, cost);
        call.inner.activity.record(line);
    } else {
        record_failure(call.inner, call.model, call.key, "stream_interrupted", call.started);
        trace::record_error(&span, "stream_interrupted");
        let mut line = line.answered(&call.model.provider, &call.model.id, call.fallbacks, usage, 0.0);
        line.status = "stream_interrupted".to_string();
        call.inner.activity.record(line);
    }
}

/// Counts a request's input tokens: the provider's own count where it has one, else the
/// gateway's estimate.
pub(crate) async fn count_tokens(session: &Session, request: MessagesRequest) -> Result<TokenCount, Error> {
    let inner = session.gateway().inner().clone();
    let target = target_model(&inner.config, &inner.catalog, &request.model);
    session.admit()?;
    let estimate = TokenCount {
        input_tokens: context::estimate(&Value::Object(request.body.clone()).to_string()),
        from_provider: false,
    };
    let Ok(plan) = plan(&inner, &request, &target, None) else {
        return Ok(estimate);
    };
    // Only an Anthropic endpoint counts tokens; a translated provider gets the estimate.
    let plan: Vec<ModelInfo> = plan
        .into_iter()
        .filter(|m| endpoint(&inner.config, &m.provider).is_some())
        .collect();
    let mut request = request;
    request.stream = false;
    request.body.remove("stream");
    for model in plan.iter().take(1) {
        let counted = tokio::time::timeout(
            Duration::from_secs(10),
            send(&inner, &request, model, "/v1/messages/count_tokens"),
        )
        .await;
        if let Ok(Ok(response)) = counted
            && let Ok(body) = response.json::<Value>().await
            && let Some(n) = body.get("input_tokens").and_then(Value::as_u64)
        {
            return Ok(TokenCount {
                input_tokens: n,
                from_provider: true,
            });
        }
    }
    Ok(estimate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_message_start_and_message_delta() {
        let mut usage = Usage::default();
        stream_usage(
            "message_start",
            r#"{"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}"#,
            &mut usage,
        );
        stream_usage("content_block_delta", r#"{"usage":{"output_tokens":999}}"#, &mut usage);
        stream_usage(
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#,
            &mut usage,
        );
        assert_eq!((usage.input_tokens, usage.output_tokens), (25, 15));
    }

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
