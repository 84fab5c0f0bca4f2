//! One provider's HTTP side: a round trip (plain or SSE), and the retry loop around it.
//!
//! Failures are classified into the [`ProviderErrorKind`] taxonomy here, once: 401/403 → auth
//! (never retried), 429 → rate limited (the `Retry-After` is honoured up to a cap), 408/5xx and
//! connection failures → transient (exponential backoff with jitter, from `backon`), other 4xx →
//! invalid request. A stream that ends early is retried only if nothing was sent to the caller
//! yet; afterwards it surfaces as `StreamInterrupted`. The governor limiter paces requests to the
//! configured requests-per-minute before they leave.

use std::num::NonZeroU32;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::openai_wire::{self, Accumulator, ChatBody, Completion, InBand, Piece, RoundOutput, StreamChunk};
use super::think_tags::ThinkSplitter;
use super::{Completed, ProviderCall, ProviderEvent, Quirks, quirks_for, shaped_body};
use crate::config::{ProviderConfig, ProviderKind, RetryConfig};
use crate::error::{ProviderError, ProviderErrorKind, scrub};
use crate::trace;

/// Rounds allowed for follow-ups such as Kimi's web search echo.
const MAX_ROUNDS: usize = 4;

/// A provider's HTTP client, quirks, rate limiter and retry policy.
pub(crate) struct ProviderClient {
    pub config: ProviderConfig,
    pub(super) http: reqwest::Client,
    /// `{base_url}/chat/completions`, parsed once: parsing it per call was 2% of the daemon's
    /// instructions. (The configuration has already checked that it parses.)
    endpoint: Option<reqwest::Url>,
    /// `Bearer {key}`, marked sensitive so that no debug output shows it.
    authorization: Option<HeaderValue>,
    quirks: Box<dyn Quirks>,
    limiter: Option<DefaultDirectRateLimiter>,
    retry: RetryConfig,
}

impl ProviderClient {
    /// Waits for the provider's `rpm`, if it has one.
    pub async fn pace(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }

    pub fn new(config: ProviderConfig, http: reqwest::Client, retry: RetryConfig) -> Self {
        let limiter = config
            .rpm
            .and_then(NonZeroU32::new)
            .map(|rpm| RateLimiter::direct(Quota::per_minute(rpm)));
        let endpoint = reqwest::Url::parse(&format!("{}/chat/completions", config.base_url)).ok();
        let authorization = config.api_key.as_ref().and_then(|key| {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose())).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Self {
            quirks: quirks_for(config.kind),
            config,
            http,
            endpoint,
            authorization,
            limiter,
            retry,
        }
    }

    fn error(&self, call: &ProviderCall, kind: ProviderErrorKind) -> ProviderError {
        ProviderError::new(&self.config.name, &call.model.id, kind)
    }

    /// Runs a whole call: rounds (with retries) until the provider has nothing to follow up.
    pub async fn execute(
        &self,
        call: &ProviderCall,
        events: &mpsc::Sender<ProviderEvent>,
    ) -> Result<Completed, ProviderError> {
        if self.config.api_key.is_none() && self.config.kind != ProviderKind::OpenaiCompat {
            let env = self.config.key_env.join(" or ");
            return Err(self.error(call, ProviderErrorKind::MissingKey { env }));
        }
        let mut body = shaped_body(self.quirks.as_ref(), call);
        let mut done = Completed::default();
        for round in 1..=MAX_ROUNDS {
            let out = self.round_with_retries(call, &body, events).await?;
            if let Some(u) = out.usage {
                done.usage.add(u);
            }
            done.text.push_str(&out.text);
            done.reasoning.push_str(&out.reasoning);
            done.finish_reason = out.finish_reason.clone();
            match self.quirks.follow_up(&out) {
                Some(messages) if round < MAX_ROUNDS => body.messages.extend(messages),
                _ => break,
            }
        }
        Ok(done)
    }

    async fn round_with_retries(
        &self,
        call: &ProviderCall,
        body: &ChatBody,
        events: &mpsc::Sender<ProviderEvent>,
    ) -> Result<RoundOutput, ProviderError> {
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.base_delay)
            .with_max_delay(self.retry.max_delay)
            .with_max_times(self.retry.max_retries as usize)
            .with_jitter()
            .build();
        loop {
            self.pace().await;
            let mut emitted = false;
            // One CLIENT span per HTTP attempt: retries show as siblings under the request.
            let span = trace::attempt_span(&self.config.name, &call.model.id, Some(&self.config.base_url));
            let round = self
                .round(call, body, events, &mut emitted)
                .instrument(span.clone())
                .await;
            let err = match round {
                Ok(out) => {
                    let model = out.model.as_deref().unwrap_or(&call.model.id);
                    let usage = out.usage.unwrap_or_default();
                    trace::record_answer(
                        &span,
                        &self.config.name,
                        model,
                        usage,
                        out.finish_reason.as_deref(),
                        None,
                    );
                    return Ok(out);
                }
                Err(e) => {
                    trace::record_error(&span, e.label());
                    e
                }
            };
            if emitted || !err.is_retryable() {
                return Err(err);
            }
            let Some(backoff_delay) = backoff.next() else {
                return Err(err);
            };
            let delay = match err.retry_after() {
                Some(wait) if wait > self.retry.max_retry_after => return Err(err),
                Some(wait) => wait,
                None => backoff_delay,
            };
            metrics::counter!("exai_provider_retries_total", "provider" => self.config.name.clone(), "reason" => err.label()).increment(1);
            tracing::warn!(provider = %self.config.name, error = %err, delay_ms = delay.as_millis() as u64, "retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// One HTTP round trip.
    async fn round(
        &self,
        call: &ProviderCall,
        body: &ChatBody,
        events: &mpsc::Sender<ProviderEvent>,
        emitted: &mut bool,
    ) -> Result<RoundOutput, ProviderError> {
        let request = match &self.endpoint {
            Some(url) => self.http.post(url.clone()),
            None => self.http.post(format!("{}/chat/completions", self.config.base_url)),
        };
        let mut request = request.timeout(self.config.timeout).json(body);
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.error(call, transport_error(&e, &self.config)))?;
        let status = response.status().as_u16();
        tracing::Span::current().record("http.response.status_code", status);
        if !response.status().is_success() {
            let retry_after = retry_after(response.headers());
            let moved_to = response.status().is_redirection().then(|| {
                let location = response.headers().get(LOCATION).and_then(|l| l.to_str().ok());
                format!(
                    "the provider answered {status}, moved to {}; set its base URL to the new address",
                    location.unwrap_or("(no Location header)")
                )
            });
            let text = match moved_to {
                Some(moved) => moved,
                None => response.text().await.unwrap_or_default(),
            };
            let kind = self
                .quirks
                .classify(status, &text)
                .unwrap_or_else(|| classify(&self.config, status, retry_after, &text));
            return Err(self.error(call, kind));
        }
        if body.stream {
            self.read_stream(call, response, events, emitted).await
        } else {
            let bytes = response
                .bytes()
                .await
                .map_err(|e| self.error(call, transport_error(&e, &self.config)))?;
            let completion: Completion = serde_json::from_slice(&bytes).map_err(|e| {
                self.error(
                    call,
                    ProviderErrorKind::Transient {
                        status: Some(status),
                        message: format!("unreadable reply: {e}"),
                    },
                )
            })?;
            if let Some(kind) = self.quirks.error_in_body(&completion.in_band()) {
                return Err(self.error(call, kind));
            }
            let mut acc = Accumulator::default();
            acc.take_completion(completion);
            let mut out = acc.out;
            if self.quirks.splits_think_tags() {
                let mut splitter = ThinkSplitter::default();
                let mut pieces = splitter.feed(&std::mem::take(&mut out.text));
                pieces.extend(splitter.finish());
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => out.text.push_str(&t),
                        Piece::Reasoning(r) => out.reasoning.push_str(&r),
                    }
                }
            }
            Ok(out)
        }
    }

    async fn read_stream(
        &self,
        call: &ProviderCall,
        response: reqwest::Response,
        events: &mpsc::Sender<ProviderEvent>,
        emitted: &mut bool,
    ) -> Result<RoundOutput, ProviderError> {
        let mut stream = super::sse_events(response.bytes_stream());
        let mut acc = Accumulator::default();
        let mut splitter = self.quirks.splits_think_tags().then(ThinkSplitter::default);
        let (mut text, mut reasoning) = (String::new(), String::new());
        let mut saw_done = false;
        let mut failure: Option<String> = None;
        while let Some(item) = stream.next().await {
            let event = match item {
                Ok(event) => event,
                Err(e) => {
                    failure = Some(format!("stream broke: {e}"));
                    break;
                }
            };
            let data = event.data.trim();
            if data == "[DONE]" {
                saw_done = true;
                break;
            }
            if data.is_empty() {
                continue;
            }
            let chunk: StreamChunk = match serde_json::from_str(data) {
                Ok(chunk) => chunk,
                // Well-formed JSON of another shape (a keep-alive object, say) is skipped.
                Err(_) if serde_json::from_str::<serde::de::IgnoredAny>(data).is_ok() => continue,
                Err(e) => {
                    failure = Some(format!("unreadable stream chunk: {e}"));
                    break;
                }
            };
            let in_band = chunk.in_band();
            if let Some(kind) = self.quirks.error_in_body(&in_band).or_else(|| stream_error(&in_band)) {
                return Err(self.error(call, kind));
            }
            let mut pieces = acc.take_chunk(chunk);
            if let Some(s) = splitter.as_mut() {
                pieces = split_pieces(s, pieces);
            }
            for piece in pieces {
                *emitted = true;
                deliver(piece, &mut text, &mut reasoning, events).await;
            }
        }
        let complete = saw_done || (failure.is_none() && acc.out.finish_reason.is_some());
        if !complete {
            let message = failure.unwrap_or_else(|| "the stream ended before [DONE]".into());
            let kind = if *emitted {
                ProviderErrorKind::StreamInterrupted { message }
            } else {
                ProviderErrorKind::Transient { status: None, message }
            };
            return Err(self.error(call, kind));
        }
        if let Some(s) = splitter.as_mut() {
            for piece in s.finish() {
                deliver(piece, &mut text, &mut reasoning, events).await;
            }
        }
        let mut out = acc.out;
        out.text = text;
        out.reasoning = reasoning;
        Ok(out)
    }
}

/// What an HTTP error answer from a provider means for retries, fallback and the caller.
pub(crate) fn classify(
    config: &ProviderConfig,
    status: u16,
    retry_after: Option<Duration>,
    body: &str,
) -> ProviderErrorKind {
    let message = scrub(&openai_wire::error_message(body));
    match status {
        401 | 403 => ProviderErrorKind::Auth {
            status,
            key_source: config.key_source.clone().unwrap_or_else(|| "no key".into()),
            message,
        },
        429 => ProviderErrorKind::RateLimited { retry_after, message },
        408 | 425 | 500..=599 => ProviderErrorKind::Transient {
            status: Some(status),
            message,
        },
        _ => ProviderErrorKind::InvalidRequest { status, message },
    }
}

/// Records a piece in the round's totals and sends it to the caller. A closed receiver means the
/// caller left; its cancellation token stops this task.
async fn deliver(piece: Piece, text: &mut String, reasoning: &mut String, events: &mpsc::Sender<ProviderEvent>) {
    let event = match piece {
        Piece::Text(t) => {
            text.push_str(&t);
            ProviderEvent::Text(t)
        }
        Piece::Reasoning(r) => {
            reasoning.push_str(&r);
            ProviderEvent::Reasoning(r)
        }
    };
    let _ = events.send(event).await;
}

fn split_pieces(splitter: &mut ThinkSplitter, pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.extend(splitter.feed(&t)),
            reasoning => out.push(reasoning),
        }
    }
    out
}

/// An `{"error": …}` object sent inside a stream.
fn stream_error(reply: &InBand<'_>) -> Option<ProviderErrorKind> {
    let error = reply.error?;
    let message = scrub(&openai_wire::error_object_message(error));
    let code = error.get("code").and_then(Value::as_u64).map(|c| c as u16);
    Some(match code {
        Some(429) => ProviderErrorKind::RateLimited {
            retry_after: None,
            message,
        },
        Some(s @ 400..=499) => ProviderErrorKind::InvalidRequest { status: s, message },
        status => ProviderErrorKind::Transient { status, message },
    })
}

pub(crate) fn transport_error(e: &reqwest::Error, config: &ProviderConfig) -> ProviderErrorKind {
    let message = if e.is_timeout() {
        format!("no complete reply within {} s", config.timeout.as_secs())
    } else if e.is_connect() {
        format!("cannot connect to {}", config.base_url)
    } else {
        format!("connection failed: {}", scrub(&e.to_string()))
    };
    ProviderErrorKind::Transient { status: None, message }
}

/// `Retry-After` as seconds (the HTTP-date form is rare from APIs and treated as absent).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    raw.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_ignores_garbage() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn errors_inside_a_stream_are_classified() {
        let chunk = |v: Value| serde_json::from_value::<StreamChunk>(v).unwrap_or_else(|e| panic!("{e}"));
        let limited = chunk(serde_json::json!({"error": {"code": 429, "message": "slow down"}}));
        assert!(matches!(
            stream_error(&limited.in_band()),
            Some(ProviderErrorKind::RateLimited { .. })
        ));
        let overloaded = chunk(serde_json::json!({"error": {"message": "overloaded"}}));
        assert!(matches!(
            stream_error(&overloaded.in_band()),
            Some(ProviderErrorKind::Transient { .. })
        ));
        assert!(stream_error(&chunk(serde_json::json!({"choices": []})).in_band()).is_none());
        assert!(stream_error(&chunk(serde_json::json!({"choices": null})).in_band()).is_none());
    }
}
