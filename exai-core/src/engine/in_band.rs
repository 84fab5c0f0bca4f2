//! A provider's 200 looked at before its attempt counts as answered: a whole reply for an error
//! inside it, a stream up to its first whole events. Until then nothing has reached the
//! client, so an error there (`wire/in_band.rs`: `{"error": …}`, Anthropic's `event: error`,
//! Responses' `response.failed`) fails the attempt like the HTTP error it stands for, and the
//! attempt loop retries, moves on to the next deployment or model, or gives up, and counts the
//! failure in the ledger.
//!
//! A stream must send its first event (comments, which some providers send while a call waits,
//! do not count) within the provider's timeout, as its headers must: one that breaks, ends or
//! stalls before any event is a transient failure too, left for the next model. The bytes read
//! are handed on again, before the rest of the body, so the relay still sends the upstream's
//! bytes untouched.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};

use crate::catalog::ModelInfo;
use crate::error::{ProviderError, ProviderErrorKind};
use crate::providers::ProviderClient;
use crate::trace;
use crate::wire::Wire;
use crate::wire::in_band::{self, InBandError};
use crate::wire::sse::{self, EventCutter, MAX_EVENT_BYTES};

/// A provider's streamed body.
pub(super) type Body = BoxStream<'static, reqwest::Result<Bytes>>;

/// A provider's failure, recorded on the try's span.
fn failed(model: &ModelInfo, span: &tracing::Span, kind: ProviderErrorKind) -> ProviderError {
    let error = ProviderError::new(&model.provider, &model.id, kind);
    trace::record_error(span, error.label());
    error
}

/// The failure an in-band error stands for, at `client`.
fn in_band_failure(
    client: &ProviderClient,
    model: &ModelInfo,
    span: &tracing::Span,
    error: &InBandError,
) -> ProviderError {
    failed(model, span, client.in_band(error))
}

/// A whole reply's body, unless it is an error.
pub(super) async fn whole_reply(
    client: &ProviderClient,
    model: &ModelInfo,
    span: &tracing::Span,
    response: reqwest::Response,
) -> Result<Bytes, ProviderError> {
    let body = response
        .bytes()
        .await
        .map_err(|e| super::wire_call::unreadable(model, e))?;
    match in_band::in_whole(&body) {
        Some(error) => Err(in_band_failure(client, model, span, &error)),
        None => Ok(body),
    }
}

/// A streamed reply in `wire`, once its first whole events are in and are no error: its body
/// from the start.
pub(super) async fn first_events(
    client: &ProviderClient,
    model: &ModelInfo,
    wire: Wire,
    span: &tracing::Span,
    response: reqwest::Response,
) -> Result<Body, ProviderError> {
    let mut body = response.bytes_stream().fuse();
    let mut read = Vec::new();
    let mut cutter = EventCutter::default();
    let first = async {
        let mut held = 0;
        loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    held += chunk.len();
                    read.push(chunk.clone());
                    match cutter.push(chunk) {
                        Ok(Some(block)) if sse::events(&block).next().is_some() => return Ok(Some(block)),
                        Ok(_) if held > MAX_EVENT_BYTES => {
                            return Err(format!("no event in the stream's first {held} bytes"));
                        }
                        Ok(_) => {}
                        Err(too_long) => return Err(too_long.to_string()),
                    }
                }
                Some(Err(e)) => {
                    let e = crate::error::scrub(&e.to_string());
                    return Err(format!("the stream broke before its first event: {e}"));
                }
                None => return Ok(cutter.rest().filter(|rest| sse::events(rest).next().is_some())),
            }
        }
    };
    let timeout = client.config.timeout;
    let transient = |message| ProviderErrorKind::Transient { status: None, message };
    let first = match tokio::time::timeout(timeout, first).await {
        Err(_) => {
            let message = format!("no event within {} s of the stream's start", timeout.as_secs());
            return Err(failed(model, span, transient(message)));
        }
        Ok(Err(message)) => return Err(failed(model, span, transient(message))),
        Ok(Ok(first)) => first,
    };
    match first {
        None => {
            let message = "the stream ended before its first event".to_string();
            Err(failed(model, span, transient(message)))
        }
        Some(block) => match in_band::in_block(wire, &block) {
            Some(error) => Err(in_band_failure(client, model, span, &error)),
            None => Ok(stream::iter(read.into_iter().map(Ok)).chain(body).boxed()),
        },
    }
}
