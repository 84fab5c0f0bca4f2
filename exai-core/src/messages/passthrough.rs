//! One Messages request passed through to a provider's Anthropic-compatible endpoint.
//!
//! admission (the client's rate, its key: model allow-list, budget, limits) → the model resolved
//! → the routing plan, narrowed to the key's models and to providers with an Anthropic endpoint
//! → request permits (session, global) → for each planned model: its provider's permit, the body
//! forwarded with the model rewritten, `x-api-key` the provider's key, `anthropic-version` and
//! `anthropic-beta` forwarded → on a failure worth it (429, 5xx, a connection that failed) and
//! before anything was relayed, the next model → the reply, or the stream relayed event by event
//! while `message_start` and `message_delta` give its usage → the usage ledger and the key's
//! spend when it ends.

use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{DEFAULT_VERSION, MessagesEvent, MessagesReply, MessagesRequest, MessagesStream, TokenCount};
use crate::catalog::{Catalog, ModelInfo};
use crate::config::{Config, ProviderConfig};
use crate::error::{Error, ProviderError, ProviderErrorKind};
use crate::gateway::{Inner, Session, context};
use crate::keys::StoredKey;
use crate::providers::{classify, retry_after, transport_error};
use crate::request::Usage;
use crate::routing::{self, Needs};

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

/// The models to try, in order: the plan for `target`, within the key's models, at providers
/// with an Anthropic endpoint.
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
    if let Some(key) = key {
        plan.retain(|m| crate::keys::allows_model(&key.limits, m, &inner.catalog, &inner.config));
        if plan.is_empty() {
            let allowed = key.limits.models.as_deref().unwrap_or_default().join(", ");
            return Err(Error::Forbidden {
                key: key.name.clone(),
                what: format!("use model {} (it may use: {allowed})", request.model),
            });
        }
    }
    let providers: Vec<String> = plan.iter().map(|m| m.provider.clone()).collect();
    plan.retain(|m| endpoint(&inner.config, &m.provider).is_some());
    if plan.is_empty() {
        return Err(Error::InvalidRequest(format!(
            "model {target} is served by {} with no Anthropic-compatible endpoint here; set {}_ANTHROPIC_BASE_URL \
             (translating /v1/messages to the OpenAI format is not built yet)",
            providers.join(", "),
            providers.first().map(|p| p.to_ascii_uppercase()).unwrap_or_default()
        )));
    }
    Ok(plan)
}

fn endpoint<'a>(config: &'a Config, provider: &str) -> Option<(&'a ProviderConfig, &'a str)> {
    let p = config.provider(provider)?;
    Some((p, p.anthropic_base_url.as_deref()?))
}

/// What one attempt at a provider came to.
enum Answer {
    Message(Value),
    Stream(reqwest::Response),
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

async fn attempt(inner: &Inner, request: &MessagesRequest, model: &ModelInfo) -> Result<Answer, ProviderError> {
    let response = send(inner, request, model, "/v1/messages").await?;
    if request.stream {
        return Ok(Answer::Stream(response));
    }
    let body = response.json::<Value>().await.map_err(|e| ProviderError {
        provider: model.provider.clone(),
        model: model.id.clone(),
        kind: ProviderErrorKind::Transient {
            status: None,
            message: format!("the reply is not JSON: {e}"),
        },
    })?;
    Ok(Answer::Message(body))
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

fn record(inner: &Inner, model: &ModelInfo, key: Option<&str>, usage: Usage, started: Instant) {
    let cost = model.price.cost(usage.input_tokens, usage.output_tokens);
    inner
        .usage
        .success(&model.provider, &model.id, key, usage, cost, started.elapsed());
    if let Some(key) = key {
        inner.keys.record(key, cost, usage.input_tokens + usage.output_tokens);
    }
}

/// Runs one Messages request for `session`.
pub(crate) async fn run(session: &Session, request: MessagesRequest) -> Result<MessagesReply, Error> {
    let gateway = session.gateway().clone();
    let inner = gateway.inner().clone();
    let target = target_model(&inner.config, &inner.catalog, &request.model);
    let pass = session.admit_call(None, Some(&target)).await?;
    let key = pass.as_ref().map(|p| p.key.clone());
    let plan = plan(&inner, &request, &target, key.as_deref())?;
    let key_name: Option<Arc<str>> = key.as_ref().map(|k| Arc::from(k.name.as_str()));
    let tracked = gateway.track();
    let started = Instant::now();
    let deadline = inner.limits.deadline();
    let permits = inner.limits.request(&session.limit(), deadline).await?;
    let mut last = None;
    for (index, model) in plan.iter().enumerate() {
        let permit = inner.limits.provider(&model.provider, deadline).await?;
        let answer = session
            .within_deadline(async { attempt(&inner, &request, model).await.map_err(Error::from) })
            .await;
        let error = match answer {
            Ok(Answer::Message(body)) => {
                let mut usage = Usage::default();
                usage_of(body.get("usage"), &mut usage);
                record(&inner, model, key_name.as_deref(), usage, started);
                return Ok(MessagesReply::Message {
                    body,
                    provider: model.provider.clone(),
                    model: model.id.clone(),
                });
            }
            Ok(Answer::Stream(response)) => {
                let (tx, events) = mpsc::channel(RELAY_BUFFER);
                let (inner, model_info, key_name) = (inner.clone(), model.clone(), key_name.clone());
                let until = started + session.deadline();
                let after = session.deadline();
                tokio::spawn(async move {
                    let _held = (permits, permit, pass, tracked);
                    relay(
                        &inner,
                        response,
                        &tx,
                        until,
                        after,
                        &model_info,
                        key_name.as_deref(),
                        started,
                    )
                    .await;
                });
                return Ok(MessagesReply::Stream(MessagesStream {
                    events,
                    provider: model.provider.clone(),
                    model: model.id.clone(),
                }));
            }
            Err(e) => e,
        };
        inner.usage.error(&model.provider, &model.id, key_name.as_deref());
        let worth_another = matches!(&error, Error::Provider(p) if p.allows_fallback());
        if !worth_another || index + 1 == plan.len() {
            return Err(error);
        }
        tracing::warn!(provider = %model.provider, model = %model.id, error = %error, "falling back");
        last = Some(error);
    }
    Err(last.unwrap_or_else(|| Error::Internal("empty routing plan".into())))
}

/// Relays the upstream's events to `tx` until the end, the client leaving, or the deadline;
/// then records the call.
#[allow(clippy::too_many_arguments)]
async fn relay(
    inner: &Inner,
    response: reqwest::Response,
    tx: &mpsc::Sender<Result<MessagesEvent, Error>>,
    until: Instant,
    after: Duration,
    model: &ModelInfo,
    key: Option<&str>,
    started: Instant,
) {
    let mut events = response.bytes_stream().eventsource();
    let mut usage = Usage::default();
    let mut complete = false;
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            () = tx.closed() => break,
            () = tokio::time::sleep_until(until) => {
                let _ = tx.send(Err(Error::DeadlineExceeded { after })).await;
                break;
            }
        };
        match next {
            None => break,
            Some(Ok(event)) => {
                stream_usage(&event.event, &event.data, &mut usage);
                complete |= event.event == "message_stop";
                let event = MessagesEvent {
                    event: event.event,
                    data: event.data,
                };
                if tx.send(Ok(event)).await.is_err() {
                    break;
                }
            }
            Some(Err(e)) => {
                let error = ProviderError {
                    provider: model.provider.clone(),
                    model: model.id.clone(),
                    kind: ProviderErrorKind::StreamInterrupted {
                        message: crate::error::scrub(&e.to_string()),
                    },
                };
                let _ = tx.send(Err(error.into())).await;
                break;
            }
        }
    }
    if complete {
        record(inner, model, key, usage, started);
    } else {
        inner.usage.error(&model.provider, &model.id, key);
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
