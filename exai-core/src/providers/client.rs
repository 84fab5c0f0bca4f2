//! One provider's HTTP side: a round trip (plain or SSE), and the retry loop around it.
//!
//! Failures are classified into the [`ProviderErrorKind`] taxonomy here, once: 401/403 → auth
//! (never retried), 429 → rate limited (the `Retry-After` is honoured up to a cap), 408/5xx and
//! connection failures → transient (exponential backoff with jitter, from `backon`), other 4xx →
//! invalid request. An error reported inside a 200 reply is classified as the status it stands
//! for ([`ProviderClient::in_band`]). A stream that ends early is retried only if nothing was
//! sent to the caller yet; afterwards it surfaces as `StreamInterrupted`. The governor limiter paces requests to the
//! configured requests-per-minute before they leave.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::openai_wire::{self, Accumulator, ChatBody, Completion, InBand, Piece, RoundOutput, StreamChunk};
use super::pool::DeploymentState;
use super::think_tags::ThinkSplitter;
use super::{Completed, ProviderCall, ProviderEvent, Quirks, quirks_for, shaped_body};
use crate::config::{ProviderConfig, ProviderKind, RetryConfig};
use crate::error::{ProviderError, ProviderErrorKind, scrub};
use crate::trace;
use crate::wire::DEFAULT_VERSION;
use crate::wire::Wire;
use crate::wire::in_band::InBandError;

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
    /// The key as Anthropic endpoints take it (`x-api-key`), sensitive too.
    x_api_key: Option<HeaderValue>,
    quirks: Box<dyn Quirks>,
    limiter: Option<DefaultDirectRateLimiter>,
    retry: RetryConfig,
    /// The deployment this client serves: its rate-limit headers are read into it.
    pub(super) deployment: Option<Arc<DeploymentState>>,
    /// Whether a 429 is waited out here: only when the provider has no other deployment to
    /// move on to.
    waits_on_429: bool,
}

impl ProviderClient {
    /// Waits for the `rpm` of the provider (or of its deployment), if it has one.
    pub async fn pace(&self) {
        if let Some(state) = &self.deployment {
            state.pace().await;
        } else if let Some(limiter) = &self.limiter {
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
        let x_api_key = config.api_key.as_ref().and_then(|key| {
            let mut value = HeaderValue::from_str(key.expose()).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Self {
            x_api_key,
            quirks: quirks_for(config.kind),
            config,
            http,
            endpoint,
            authorization,
            limiter,
            retry,
            deployment: None,
            waits_on_429: true,
        }
    }

    /// Serves one deployment of a pool of `of`: reads its rate-limit headers into `state`, and
    /// leaves a 429 at once when there are other deployments to move on to.
    pub fn for_deployment(mut self, state: Arc<DeploymentState>, of: usize) -> Self {
        // The deployment paces its `rpm` itself: the attempt loop takes a call's first try
        // from it, this client its retries.
        self.limiter = None;
        self.deployment = Some(state);
        self.waits_on_429 = of <= 1;
        self
    }

    /// The deployment's label (`glm#1`).
    pub fn label(&self) -> &str {
        self.config.deployments.first().map_or(&self.config.name, |d| &d.label)
    }

    /// Notes what a response's headers say of the deployment's rate.
    fn observe(&self, headers: &HeaderMap) {
        if let Some(state) = &self.deployment {
            state.observe(headers);
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
        self.retrying(&call.model.id, |span| async move {
            let mut emitted = false;
            let round = self.round(call, body, events, &mut emitted).await;
            if let Ok(out) = &round {
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
            }
            (round, emitted)
        })
        .await
    }

    /// Runs `round` under the retry policy: paced by the provider's `rpm`, each try in its own
    /// CLIENT span (retries show as siblings under the request), retried on a transient failure
    /// or a 429 — with exponential backoff and jitter, or the `Retry-After` up to
    /// `retry.max_retry_after` — while nothing reached the caller (`round` says whether
    /// something did) and the wait would end before the call's deadline (`crate::deadline`).
    /// Every HTTP call to a provider goes through here.
    async fn retrying<T, Fut>(
        &self,
        model: &str,
        mut round: impl FnMut(tracing::Span) -> Fut,
    ) -> Result<T, ProviderError>
    where
        Fut: Future<Output = (Result<T, ProviderError>, bool)>,
    {
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.base_delay)
            .with_max_delay(self.retry.max_delay)
            .with_max_times(self.retry.max_retries as usize)
            .with_jitter()
            .build();
        let mut first = true;
        loop {
            // A deployment's first try was paced by the attempt loop (which moves on to another
            // deployment rather than wait).
            if !first || self.deployment.is_none() {
                self.pace().await;
            }
            first = false;
            let span = trace::attempt_span(&self.config.name, self.label(), model, Some(&self.config.base_url));
            let (result, emitted) = round(span.clone()).instrument(span.clone()).await;
            let err = match result {
                Ok(out) => return Ok(out),
                Err(e) => {
                    trace::record_error(&span, e.label());
                    e
                }
            };
            if emitted || !err.is_retryable() {
                return Err(err);
            }
            if !self.waits_on_429 && matches!(err.kind, ProviderErrorKind::RateLimited { .. }) {
                // Another deployment takes the call at once.
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
            if crate::deadline::outlasts(delay) {
                // The call would end while waiting: its failure goes on (to the next deployment
                // or model, or to the caller as it is) rather than become a timeout.
                return Err(err);
            }
            metrics::counter!("exai_provider_retries_total", "provider" => self.config.name.clone(), "reason" => err.label()).increment(1);
            tracing::warn!(provider = %self.config.name, error = %err, delay_ms = delay.as_millis() as u64, "retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends `body` (bytes in `wire`) to `path` of the provider's endpoint for that wire, with
    /// the wire's headers and the provider's key, under the retry policy. Returns the response
    /// once its status is a success (its body still to read), with the try's span (to record
    /// the answer on once it is read); an error status is classified (the provider's quirks
    /// first).
    pub async fn send_wire(
        &self,
        model: &str,
        wire: Wire,
        path: &str,
        body: Bytes,
        headers: &WireHeaders,
        stream: bool,
    ) -> Result<(reqwest::Response, tracing::Span), ProviderError> {
        let fail = |kind| ProviderError::new(&self.config.name, model, kind);
        let url = match wire {
            Wire::Chat | Wire::Responses => match (&self.endpoint, path) {
                (Some(url), "/chat/completions") => url.clone(),
                _ => parse_url(&format!("{}{path}", self.config.base_url)).map_err(fail)?,
            },
            Wire::Messages => match &self.config.anthropic_base_url {
                Some(base) => parse_url(&format!("{base}{path}")).map_err(fail)?,
                None => {
                    let env = format!("{}_ANTHROPIC_BASE_URL", self.config.name.to_ascii_uppercase());
                    return Err(fail(ProviderErrorKind::MissingKey { env }));
                }
            },
        };
        let needs_key = wire == Wire::Messages || self.config.kind != ProviderKind::OpenaiCompat;
        if needs_key && self.authorization.is_none() {
            let env = self.config.key_env.join(" or ");
            return Err(fail(ProviderErrorKind::MissingKey { env }));
        }
        self.retrying(model, |span| {
            let (url, body) = (url.clone(), body.clone());
            async move {
                let mut request = self
                    .http
                    .post(url)
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(body);
                match wire {
                    Wire::Chat | Wire::Responses => {
                        if let Some(authorization) = &self.authorization {
                            request = request.header(AUTHORIZATION, authorization.clone());
                        }
                    }
                    Wire::Messages => {
                        if let Some(key) = &self.x_api_key {
                            request = request.header("x-api-key", key.clone());
                        }
                        let version = headers.anthropic_version.as_deref().unwrap_or(DEFAULT_VERSION);
                        request = request.header("anthropic-version", version);
                        if let Some(beta) = &headers.anthropic_beta {
                            request = request.header("anthropic-beta", beta);
                        }
                    }
                }
                if !stream {
                    request = request.timeout(self.config.timeout);
                }
                // A stream has the call's deadline for its body, but its headers must come within
                // the provider's timeout, so that a provider that never answers is left in time
                // for the next model.
                let response = match tokio::time::timeout(self.config.timeout, request.send()).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => return (Err(fail(transport_error(&e, &self.config))), false),
                    Err(_) => {
                        let message = format!("no answer within {} s", self.config.timeout.as_secs());
                        let kind = ProviderErrorKind::Transient { status: None, message };
                        return (Err(fail(kind)), false);
                    }
                };
                let status = response.status().as_u16();
                tracing::Span::current().record("http.response.status_code", status);
                self.observe(response.headers());
                if response.status().is_success() {
                    return (Ok((response, span)), false);
                }
                (Err(fail(self.failure(response).await)), false)
            }
        })
        .await
    }

    /// What an error answer means: its status, `Retry-After`, a redirect's `Location`, and the
    /// body (the first 64 KiB), classified by the provider's quirks first.
    async fn failure(&self, response: reqwest::Response) -> ProviderErrorKind {
        let status = response.status().as_u16();
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
            None => read_limited(response).await,
        };
        self.quirks
            .classify(status, &text)
            .unwrap_or_else(|| classify(&self.config, status, retry_after, &text))
    }

    /// What an error reported inside a 200 reply means: the HTTP error it stands for, classified
    /// as that answer would be (the provider's quirks first), its message saying where it was.
    pub fn in_band(&self, error: &InBandError) -> ProviderErrorKind {
        let mut kind = self
            .quirks
            .classify(error.status, &error.body)
            .unwrap_or_else(|| classify(&self.config, error.status, None, &error.body));
        if let ProviderErrorKind::Auth { message, .. }
        | ProviderErrorKind::RateLimited { message, .. }
        | ProviderErrorKind::Transient { message, .. }
        | ProviderErrorKind::InvalidRequest { message, .. } = &mut kind
        {
            message.push_str(" (reported inside a 200 reply)");
        }
        kind
    }

    /// The provider's quirks.
    pub fn quirks(&self) -> &dyn Quirks {
        self.quirks.as_ref()
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
        self.observe(response.headers());
        if !response.status().is_success() {
            return Err(self.error(call, self.failure(response).await));
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

/// The largest error body read.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// What the caller adds to a request in the Messages wire.
#[derive(Debug, Default, Clone)]
pub(crate) struct WireHeaders {
    pub anthropic_version: Option<String>,
    pub anthropic_beta: Option<String>,
}

fn parse_url(url: &str) -> Result<reqwest::Url, ProviderErrorKind> {
    reqwest::Url::parse(url).map_err(|e| ProviderErrorKind::InvalidRequest {
        status: 400,
        message: format!("the provider's URL {url} does not parse: {e}"),
    })
}

/// An error body, up to [`ERROR_BODY_LIMIT`].
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
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
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
