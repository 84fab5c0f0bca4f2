//! Server-sent events as bytes: an upstream body cut at event boundaries, and the events of a
//! cut block read for their name and data without copying.
//!
//! The relay hands the client the upstream's bytes. HTTP reads end anywhere, so
//! [`EventCutter`] holds back only an unfinished event's tail: a read that ends at an event's end
//! (the usual case) goes out as the same `Bytes`, untouched.
//!
//! # Line ends
//!
//! As the SSE spec (WHATWG HTML §9.2.5) reads them: a line ends with `\r\n`, `\n` or a lone
//! `\r`, and an event ends with a blank line — two line ends in a row, whichever: `\n\n`,
//! `\r\n\r\n`, `\r\r`, `\n\r\n`, `\r\n\n`, `\n\r`, `\r\r\n`, … The common `\n\n` costs one
//! `ends_with`; otherwise the last line end of a read is found with `memrchr2` and looked at
//! with the two bytes before it. A `\r` that ends the bytes seen so far may be the first half of
//! a `\r\n`: an event that would end there is held until the next byte (or the body's end) says.
//!
//! # The held tail
//!
//! An upstream that never ends an event would have the cutter hold everything: the tail is
//! capped at [`MAX_EVENT_BYTES`], past which [`EventCutter::push`] fails ([`EventTooLong`]) and
//! the stream ends as broken.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

/// The largest unfinished event held: a Responses closing event carries the whole response
/// (every output item), so this is far above any event seen, and still bounds what one stream
/// holds.
pub(crate) const MAX_EVENT_BYTES: usize = 8 << 20;

/// An upstream sent more than the cap without ending an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the provider sent more than {limit} bytes without ending an event (no blank line): \
     the stream was ended there"
)]
pub(crate) struct EventTooLong {
    pub limit: usize,
}

/// Cuts an SSE body at event boundaries.
pub(crate) struct EventCutter {
    /// The unfinished tail of what has arrived.
    held: BytesMut,
    /// The most `held` may grow to.
    limit: usize,
}

impl Default for EventCutter {
    fn default() -> Self {
        Self {
            held: BytesMut::new(),
            limit: MAX_EVENT_BYTES,
        }
    }
}

/// What follows the bytes looked at.
#[derive(Clone, Copy)]
enum Next {
    /// This byte.
    Byte(u8),
    /// Not known yet: more of the body may come.
    Unknown,
    /// Nothing: the body ended.
    End,
}

/// Whether an event ends where `before` ends (its last line is blank), `next` following.
fn ends_event(before: &[u8], next: Next) -> bool {
    match before {
        // A line end, then an empty line ended by `\n` or `\r\n`.
        [.., b'\n', b'\n'] | [.., b'\r' | b'\n', b'\r', b'\n'] => true,
        // …or by a lone `\r`: lone only if no `\n` follows.
        [.., b'\r' | b'\n', b'\r'] => match next {
            Next::Byte(b) => b != b'\n',
            Next::Unknown => false,
            Next::End => true,
        },
        _ => false,
    }
}

/// Where the last event of `bytes` that ends at or after `from` ends, if one does (the bytes
/// before `from` hold no event's end).
fn last_boundary(bytes: &[u8], from: usize) -> Option<usize> {
    memchr::memrchr2_iter(b'\n', b'\r', &bytes[from..])
        .map(|at| from + at + 1)
        .find(|&end| {
            let next = bytes.get(end).map_or(Next::Unknown, |b| Next::Byte(*b));
            ends_event(&bytes[..end], next)
        })
}

impl EventCutter {
    /// A cutter that holds at most `limit` bytes of an unfinished event.
    #[cfg(test)]
    pub fn with_limit(limit: usize) -> Self {
        Self {
            held: BytesMut::new(),
            limit,
        }
    }

    /// Takes one read; returns the complete events it finishes, if any. Fails when the
    /// unfinished tail grows past the cap (what was held is dropped).
    pub fn push(&mut self, chunk: Bytes) -> Result<Option<Bytes>, EventTooLong> {
        let whole = if self.held.is_empty() {
            // `\n\n` ends an event whatever came before it.
            if chunk.ends_with(b"\n\n") {
                return Ok(Some(chunk));
            }
            let mut chunk = chunk;
            let whole = last_boundary(&chunk, 0).map(|end| chunk.split_to(end));
            self.held.extend_from_slice(&chunk);
            whole
        } else {
            // Only an end after the held bytes is new (one may end on the held last `\r`).
            let from = self.held.len() - 1;
            self.held.extend_from_slice(&chunk);
            last_boundary(&self.held, from).map(|end| self.held.split_to(end).freeze())
        };
        if self.held.len() > self.limit {
            self.held = BytesMut::new();
            return Err(EventTooLong { limit: self.limit });
        }
        Ok(whole)
    }

    /// What is left once the body ended, as whole events: an event whose last `\r` waited for
    /// the next byte, or the whole lines of one that never got its blank line, closed by one (a
    /// line cut short is dropped, as an SSE client drops it). `None` when nothing is left.
    pub fn rest(&mut self) -> Option<Bytes> {
        let rest = self.held.split().freeze();
        if rest.is_empty() || ends_event(&rest, Next::End) {
            return (!rest.is_empty()).then_some(rest);
        }
        let last = memchr::memrchr2(b'\n', b'\r', &rest)?;
        let mut out = Vec::with_capacity(last + 2);
        out.extend_from_slice(&rest[..=last]);
        // The same line end again is a blank line (`\n\n`, `\r\n\n`, `\r\r`).
        out.push(rest[last]);
        Some(Bytes::from(out))
    }
}

/// One event of a block: its `event:` name (empty when it has none) and its data (its `data:`
/// lines joined by `\n`: borrowed from the block when it has one).
pub(crate) struct RawEvent<'a> {
    pub name: &'a [u8],
    pub data: Cow<'a, [u8]>,
    /// The whole event, its blank line included.
    pub raw: &'a [u8],
}

/// The events of `block` (whole events, as [`EventCutter`] gives them) that have a name or data.
pub(crate) fn events(block: &[u8]) -> impl Iterator<Item = RawEvent<'_>> {
    all_events(block).filter(|e| !e.name.is_empty() || !e.data.is_empty())
}

/// The first line of `bytes`, without its line end, and the length of both (a last line with no
/// line end is the rest of `bytes`).
fn first_line(bytes: &[u8]) -> (&[u8], usize) {
    match memchr::memchr2(b'\n', b'\r', bytes) {
        Some(at) => {
            let crlf = bytes[at] == b'\r' && bytes.get(at + 1) == Some(&b'\n');
            (&bytes[..at], at + 1 + usize::from(crlf))
        }
        None => (bytes, bytes.len()),
    }
}

/// Every event of `block`, comments and blank ones included: together, the whole block.
fn all_events(block: &[u8]) -> impl Iterator<Item = RawEvent<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= block.len() {
            return None;
        }
        let start = at;
        let (mut name, mut data): (&[u8], Option<Cow<'_, [u8]>>) = (b"", None);
        while at < block.len() {
            let (line, len) = first_line(&block[at..]);
            at += len;
            if line.is_empty() {
                break;
            }
            match field(line) {
                Some((b"event", value)) => name = value,
                Some((b"data", value)) => {
                    data = Some(match data {
                        None => Cow::Borrowed(value),
                        Some(earlier) => {
                            let mut joined = earlier.into_owned();
                            joined.push(b'\n');
                            joined.extend_from_slice(value);
                            Cow::Owned(joined)
                        }
                    });
                }
                _ => {}
            }
        }
        Some(RawEvent {
            name,
            data: data.unwrap_or_default(),
            raw: &block[start..at],
        })
    })
}

/// A line's field name and value (one optional space after the colon; no colon, no value);
/// `None` for a comment (a line that starts with a colon).
fn field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    match memchr::memchr(b':', line) {
        Some(0) => None,
        Some(colon) => {
            let value = &line[colon + 1..];
            Some((&line[..colon], value.strip_prefix(b" ").unwrap_or(value)))
        }
        None => Some((line, b"")),
    }
}

/// `block` without the events `drop` picks (the same bytes when it picks none).
pub(crate) fn without(block: Bytes, drop: impl Fn(&RawEvent<'_>) -> bool) -> Bytes {
    if !events(&block).any(|e| drop(&e)) {
        return block;
    }
    let mut kept = Vec::with_capacity(block.len());
    for event in all_events(&block).filter(|e| !drop(e)) {
        kept.extend_from_slice(event.raw);
    }
    Bytes::from(kept)
}

#[cfg(test)]
mod tests;
