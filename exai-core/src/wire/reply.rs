//! [`WireReply`]: what the gateway answers a [`WireRequest`](super::WireRequest) with, in the
//! client's wire — a whole body, or a [`WireStream`] of SSE bytes.
//!
//! A relayed stream takes one hop: the front door's HTTP body polls the `WireStream`, which
//! polls the upstream's body in the same task. Each read is cut at event boundaries, shown to
//! the [`Scanner`] (usage, stop reason, the end), and handed on as the same bytes. The call's
//! deadline and the keep-alive pings are one timer, looked at only while the upstream is quiet.
//! When the stream ends — completely, broken, past its deadline, or dropped because the client
//! left — the call is recorded once, by its [`Finish`].
//!
//! An error the provider reports inside the stream (`in_band.rs`) ends it as broken: a relayed
//! one is handed on as it came (the client's SDK reads its wire's error event), then the stream
//! ends; a translated one ends the stream with the failure in the client's wire. An upstream
//! that sends more than the cutter's cap without ending an event ends it as broken too.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use super::Wire;
use super::scan::Scanner;
use super::sse::EventCutter;
use crate::error::{Error, ProviderError, ProviderErrorKind};

/// The answer to a [`WireRequest`](super::WireRequest), in the client's wire.
#[derive(Debug)]
pub enum WireReply {
    /// A whole reply body (JSON).
    Whole {
        /// The body.
        body: Bytes,
        /// Which provider answered.
        provider: String,
        /// Its model.
        model: String,
        /// What the client should be told the gateway changed (tools past a cap dropped).
        warning: Option<String>,
        /// Whether the cache answered (`None` when it was not asked).
        cache: Option<CacheStatus>,
    },
    /// A stream of server-sent events.
    Stream(Box<WireStream>),
}

/// What the response cache did for a call (the `x-exai-cache` header; `cache` in a tool's
/// result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CacheStatus {
    /// Answered from the cache: no provider was called.
    Hit,
    /// Asked of a provider (and kept, if it may be).
    Miss,
}

impl CacheStatus {
    /// `hit` or `miss`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
        }
    }
}

/// Sees every block a stream hands on, and how it ended: the cache keeping a streamed reply.
pub(crate) trait Tap: Send {
    /// A block of whole events, as read (before the usage chunk is left out).
    fn block(&mut self, block: &Bytes);
    /// The stream ended.
    fn ended(self: Box<Self>, scan: &Scanner, ended: Ended);
}

/// How a stream ended, for its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// As its wire says a reply ends.
    Complete,
    /// Not: the upstream broke or stopped early, the deadline passed, or the client left.
    Broken,
}

/// Records the call once its stream has ended (the ledger, the key's spend, the activity line,
/// the span), and holds what the call holds until then (permits, the key's place in flight).
pub(crate) type Finish = Box<dyn FnOnce(&Scanner, Ended) + Send>;

/// Where a stream's bytes come from.
pub(crate) enum Source {
    /// The upstream speaks the client's wire: its bytes, relayed.
    Relay {
        body: BoxStream<'static, reqwest::Result<Bytes>>,
        cutter: EventCutter,
    },
    /// An OpenAI chat stream, translated to the client's wire (Anthropic Messages, Responses).
    Translated {
        body: BoxStream<'static, reqwest::Result<Bytes>>,
        cutter: EventCutter,
        translator: Box<dyn Translate>,
    },
    /// A reply already whole (the cache's), handed on in one block.
    Replay(Option<Bytes>),
    /// Pieces made by a task of the gateway's (its own call, written in the client's wire),
    /// the first already received.
    Produced {
        first: Option<Piece>,
        rest: mpsc::Receiver<Result<Piece, Error>>,
        /// The task making them, stopped when the stream is dropped.
        _task: AbortOnDrop,
    },
}

/// Turns an OpenAI chat stream's chunks into the client's wire.
pub(crate) trait Translate: Send {
    /// The events for one chunk's data.
    fn chunk(&mut self, data: &str, out: &mut Vec<u8>);
    /// The closing events, once the provider's stream ended (`[DONE]`, or its body's end).
    fn finish(&mut self, out: &mut Vec<u8>);
    /// A failure after the stream began, written as the wire's own closing event; `false` when
    /// the wire has none, and the front door writes its error event.
    fn failed(&mut self, _error: &Error, _out: &mut Vec<u8>) -> bool {
        false
    }
}

/// Stops a task when dropped (a client that left, a deadline that passed).
pub(crate) struct AbortOnDrop(pub tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the gateway's own streamed call hands its stream.
pub(crate) enum Piece {
    /// Bytes for the client.
    Bytes(Bytes),
    /// The call's usage, once known (not sent: recorded).
    Usage(crate::request::Usage),
}

/// A streamed reply in the client's wire: SSE bytes cut at event boundaries, or an error (the
/// front door writes it as its wire's error event). Dropping it stops the upstream request.
pub struct WireStream {
    source: Source,
    scan: Scanner,
    /// Which provider answers, and its model.
    pub provider: String,
    /// Its model.
    pub model: String,
    /// What the client should be told the gateway changed (tools past a cap dropped).
    pub warning: Option<String>,
    /// Records the call when the stream ends.
    finish: Option<Finish>,
    /// Sees the stream's blocks and its end (the cache).
    tap: Option<Box<dyn Tap>>,
    /// Whether the cache answered.
    pub cache: Option<CacheStatus>,
    until: Instant,
    after: Duration,
    keepalive: Option<(Duration, &'static [u8])>,
    timer: Pin<Box<Sleep>>,
    last_sent: Instant,
    /// Bytes to send before ending (a final block), and whether the stream is over.
    pending: Option<Result<Bytes, Error>>,
    over: bool,
    /// The upstream's body has ended.
    drained: bool,
    /// Drop the usage-only chunk a chat stream got because exai asked for it, not the client.
    strip_usage_chunk: bool,
}

impl std::fmt::Debug for WireStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireStream")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl WireStream {
    /// A stream from `source` in the client's `wire`, ending by `until` (a deadline of `after`).
    pub(crate) fn new(
        scan: Scanner,
        source: Source,
        (provider, model): (String, String),
        (until, after): (Instant, Duration),
        finish: Option<Finish>,
    ) -> Self {
        let keepalive = (scan.wire() == Wire::Messages).then_some((
            Duration::from_secs(10),
            &b"event: ping\ndata: {\"type\": \"ping\"}\n\n"[..],
        ));
        let now = Instant::now();
        let first = keepalive.map_or(until, |(every, _)| until.min(now + every));
        Self {
            source,
            scan,
            provider,
            model,
            warning: None,
            finish,
            tap: None,
            cache: None,
            until,
            after,
            keepalive,
            timer: Box::pin(tokio::time::sleep_until(first)),
            last_sent: now,
            pending: None,
            over: false,
            drained: false,
            strip_usage_chunk: false,
        }
    }

    /// Leaves out the usage-only chunk (`"choices": []`) of a chat stream: exai asked for it
    /// (`stream_options.include_usage`) to record the usage, the client did not.
    pub(crate) fn without_usage_chunk(mut self, strip: bool) -> Self {
        self.strip_usage_chunk = strip;
        self
    }

    /// Shows `tap` every block and the stream's end.
    pub(crate) fn tapped(mut self, tap: Box<dyn Tap>) -> Self {
        self.tap = Some(tap);
        self
    }

    fn interrupted(&self, message: String) -> Error {
        ProviderError::new(
            &self.provider,
            &self.model,
            ProviderErrorKind::StreamInterrupted {
                message: crate::error::scrub(&message),
            },
        )
        .into()
    }

    /// Records the call (once).
    fn end(&mut self, ended: Ended) {
        self.over = true;
        if let Some(tap) = self.tap.take() {
            tap.ended(&self.scan, ended);
        }
        if let Some(finish) = self.finish.take() {
            finish(&self.scan, ended);
        }
    }

    /// The stream's end: its record, and an error when the reply was not complete.
    fn close(&mut self, failure: Option<String>) -> Option<Result<Bytes, Error>> {
        let complete = failure.is_none() && self.scan.complete;
        let error = (!complete).then(|| {
            self.interrupted(failure.unwrap_or_else(|| "the provider's stream ended before the reply did".into()))
        });
        self.end(if complete { Ended::Complete } else { Ended::Broken });
        error.map(|e| self.failure(e))
    }

    /// A failure after the stream began: the translated wire's own closing event where it has
    /// one (`response.failed`), else the error for the front door to write.
    fn failure(&mut self, error: Error) -> Result<Bytes, Error> {
        if let Source::Translated { translator, .. } = &mut self.source {
            let mut out = Vec::new();
            if translator.failed(&error, &mut out) {
                return Ok(Bytes::from(out));
            }
        }
        Err(error)
    }

    /// The next block from the source: `Some(Ok)` bytes to send, `Some(Err)` the end with an
    /// error, `None` the end.
    fn poll_source(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        loop {
            let read = match &mut self.source {
                Source::Relay { .. } | Source::Translated { .. } if self.drained => Ok(None),
                Source::Relay { body, cutter } | Source::Translated { body, cutter, .. } => {
                    match body.as_mut().poll_next(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(chunk))) => match cutter.push(chunk) {
                            Ok(Some(block)) => Ok(Some(block)),
                            Ok(None) => continue,
                            Err(too_long) => Err(too_long.to_string()),
                        },
                        Poll::Ready(Some(Err(e))) => Err(format!("stream broke: {e}")),
                        Poll::Ready(None) => {
                            self.drained = true;
                            // Whole lines closed by a blank one: a line cut short is dropped,
                            // as an SSE client drops it.
                            Ok(cutter.rest())
                        }
                    }
                }
                Source::Replay(whole) => Ok(whole.take()),
                Source::Produced { first, rest, .. } => {
                    let piece = match first.take() {
                        Some(piece) => Poll::Ready(Some(Ok(piece))),
                        None => rest.poll_recv(cx),
                    };
                    match piece {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(Piece::Usage(usage)))) => {
                            self.scan.usage = usage;
                            continue;
                        }
                        Poll::Ready(Some(Ok(Piece::Bytes(bytes)))) => Ok(Some(bytes)),
                        Poll::Ready(Some(Err(e))) => {
                            let _ = self.close(Some(e.to_string()));
                            return Poll::Ready(Some(self.failure(e)));
                        }
                        Poll::Ready(None) => Ok(None),
                    }
                }
            };
            let ended = matches!(read, Ok(None));
            if let (Ok(Some(upstream)), Source::Translated { .. }) = (&read, &self.source)
                && let Some(error) = super::in_band::in_block(Wire::Chat, upstream)
            {
                return Poll::Ready(self.close(Some(error.to_string())));
            }
            let block = match (read, &mut self.source) {
                (Err(failure), _) => return Poll::Ready(self.close(Some(failure))),
                (Ok(None), Source::Translated { translator, .. }) => {
                    // The provider ended without [DONE]: close the reply as it stands.
                    let mut out = Vec::new();
                    translator.finish(&mut out);
                    Some(Bytes::from(out))
                }
                (Ok(block), Source::Translated { translator, .. }) => {
                    let mut out = Vec::new();
                    for event in super::sse::events(block.as_deref().unwrap_or_default()) {
                        if *event.data == *b"[DONE]" {
                            translator.finish(&mut out);
                        } else if let Ok(data) = std::str::from_utf8(&event.data) {
                            translator.chunk(data, &mut out);
                        }
                    }
                    Some(Bytes::from(out))
                }
                (Ok(block), _) => block,
            };
            if let Some(block) = block.filter(|b| !b.is_empty()) {
                self.scan.block(&block);
                if let Some(tap) = &mut self.tap {
                    tap.block(&block);
                }
                if self.scan.failure.is_some() && matches!(self.source, Source::Relay { .. }) {
                    // The provider's error event goes on as it came, and ends the stream.
                    self.end(Ended::Broken);
                } else if ended || (self.scan.complete && matches!(self.source, Source::Translated { .. })) {
                    self.pending = self.close(None);
                }
                // Only a block that mentions usage is looked at event by event.
                let strip = self.strip_usage_chunk && self.scan.usage_in_block;
                let block = match strip {
                    true => super::sse::without(block, |e| super::scan::is_usage_chunk(&e.data)),
                    false => block,
                };
                if !block.is_empty() {
                    return Poll::Ready(Some(Ok(block)));
                }
                if self.over {
                    return Poll::Ready(self.pending.take());
                }
                continue;
            }
            if ended {
                return Poll::Ready(self.close(None));
            }
        }
    }
}

impl Stream for WireStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.over {
            return Poll::Ready(this.pending.take());
        }
        match this.poll_source(cx) {
            Poll::Ready(Some(Ok(block))) => {
                let now = Instant::now();
                this.last_sent = now;
                if now >= this.until && !this.over {
                    this.end(Ended::Broken);
                    let error = Error::DeadlineExceeded { after: this.after };
                    this.pending = Some(this.failure(error));
                }
                return Poll::Ready(Some(Ok(block)));
            }
            Poll::Ready(other) => return Poll::Ready(other),
            Poll::Pending => {}
        }
        // The upstream is quiet: the deadline, or a keep-alive ping.
        loop {
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if now >= this.until {
                this.end(Ended::Broken);
                let error = Error::DeadlineExceeded { after: this.after };
                return Poll::Ready(Some(this.failure(error)));
            }
            let Some((every, ping)) = this.keepalive else {
                this.timer.as_mut().reset(this.until);
                continue;
            };
            let due = this.last_sent + every;
            if now >= due {
                this.last_sent = now;
                this.timer.as_mut().reset(this.until.min(now + every));
                return Poll::Ready(Some(Ok(Bytes::from_static(ping))));
            }
            this.timer.as_mut().reset(this.until.min(due));
        }
    }
}

impl Drop for WireStream {
    /// A stream dropped before its end: the client left. The call is recorded as broken, and
    /// what it held (the upstream request, permits) is released.
    fn drop(&mut self) {
        if self.finish.is_some() || self.tap.is_some() {
            // A client that leaves after the reply's end (before the upstream closed) was answered.
            let ended = if self.scan.complete {
                Ended::Complete
            } else {
                Ended::Broken
            };
            self.end(ended);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn an_upstream_that_never_ends_an_event_ends_the_stream_as_broken() {
        let reads = [
            &b"data: {\"a\":1}\n\n"[..],
            b"data: {\"without end",
            b"ing\"}\ndata: more",
        ];
        let body = futures::stream::iter(reads.map(|r| Ok(Bytes::from_static(r)))).boxed();
        let source = Source::Relay {
            body,
            cutter: EventCutter::with_limit(24),
        };
        let ended = Arc::new(Mutex::new(None));
        let seen = ended.clone();
        let finish: Finish = Box::new(move |_, how| {
            if let Ok(mut seen) = seen.lock() {
                *seen = Some(how);
            }
        });
        let until = (Instant::now() + Duration::from_secs(5), Duration::from_secs(5));
        let names = ("p".to_string(), "m".to_string());
        let stream = WireStream::new(Scanner::new(Wire::Chat), source, names, until, Some(finish));
        let items: Vec<_> = stream.collect().await;
        assert!(
            matches!(&items[0], Ok(b) if &b[..] == b"data: {\"a\":1}\n\n"),
            "{items:?}"
        );
        let error = items.get(1).and_then(|i| i.as_ref().err()).map(ToString::to_string);
        assert!(
            error.is_some_and(|e| e.contains("without ending an event")),
            "{items:?}"
        );
        assert_eq!(items.len(), 2);
        assert_eq!(ended.lock().ok().and_then(|e| *e), Some(Ended::Broken));
    }
}
