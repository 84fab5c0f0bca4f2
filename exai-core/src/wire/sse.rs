//! Server-sent events as bytes: an upstream body cut at event boundaries, and the events of a
//! cut block read for their name and data without copying.
//!
//! The relay hands the client the upstream's bytes. HTTP reads end anywhere, so
//! [`EventCutter`] holds back only an unfinished event's tail: a read that ends at an event's end
//! (the usual case) goes out as the same `Bytes`, untouched. Events end with a blank line
//! (`\n\n`, or `\r\n\r\n`).

use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use memchr::memmem;

/// Cuts an SSE body at event boundaries.
#[derive(Default)]
pub(crate) struct EventCutter {
    /// The unfinished tail of what has arrived.
    held: BytesMut,
}

/// The blank lines that end an event, searched with finders built once.
static LF: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"\n\n"));
static LF_REV: LazyLock<memmem::FinderRev<'static>> = LazyLock::new(|| memmem::FinderRev::new(b"\n\n"));
static CRLF: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"\r\n\r\n"));
static CRLF_REV: LazyLock<memmem::FinderRev<'static>> = LazyLock::new(|| memmem::FinderRev::new(b"\r\n\r\n"));

/// Where the last complete event of `bytes` ends, if any. A `\r\n\r\n` end is looked for only
/// after the last `\n\n` (the two never overlap), so a body is scanned about once.
fn last_boundary(bytes: &[u8]) -> Option<usize> {
    let lf = LF_REV.rfind(bytes).map(|i| i + 2);
    let from = lf.unwrap_or(0);
    let crlf = CRLF_REV.rfind(&bytes[from..]).map(|i| from + i + 4);
    lf.max(crlf)
}

/// Where the first event of `bytes` ends (its end when it has no blank line): the first
/// `\n\n`, or a `\r\n\r\n` before it.
fn first_boundary(bytes: &[u8]) -> usize {
    let lf = LF.find(bytes).map(|i| i + 2);
    let before = lf.map_or(bytes.len(), |end| end.min(bytes.len()));
    let crlf = CRLF.find(&bytes[..before]).map(|i| i + 4);
    crlf.or(lf).unwrap_or(bytes.len())
}

impl EventCutter {
    /// Takes one read; returns the complete events it finishes, if any.
    pub fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.held.is_empty() {
            if chunk.ends_with(b"\n\n") {
                return Some(chunk);
            }
            let end = last_boundary(&chunk);
            let mut chunk = chunk;
            let whole = end.map(|end| chunk.split_to(end));
            self.held.extend_from_slice(&chunk);
            return whole;
        }
        let from = self.held.len().saturating_sub(3);
        self.held.extend_from_slice(&chunk);
        let end = last_boundary(&self.held[from..])? + from;
        Some(self.held.split_to(end).freeze())
    }

    /// What is left once the body ended: an event that never got its blank line.
    pub fn rest(&mut self) -> Option<Bytes> {
        (!self.held.is_empty()).then(|| self.held.split().freeze())
    }
}

/// One event of a block: its `event:` name (empty when it has none) and its first `data:`
/// line.
pub(crate) struct RawEvent<'a> {
    pub name: &'a [u8],
    pub data: &'a [u8],
    /// The whole event, its blank line included.
    pub raw: &'a [u8],
}

/// The events of `block` (whole events, as [`EventCutter`] gives them) that have a name or data.
pub(crate) fn events(block: &[u8]) -> impl Iterator<Item = RawEvent<'_>> {
    all_events(block).filter(|e| !e.name.is_empty() || !e.data.is_empty())
}

/// Every event of `block`, comments and blank ones included.
fn all_events(block: &[u8]) -> impl Iterator<Item = RawEvent<'_>> {
    let mut rest = block;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (event, tail) = rest.split_at(first_boundary(rest));
        rest = tail;
        let mut parsed = RawEvent {
            name: b"",
            data: b"",
            raw: event,
        };
        for line in event.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(v) = field(line, b"event") {
                parsed.name = v;
            } else if let (Some(v), true) = (field(line, b"data"), parsed.data.is_empty()) {
                parsed.data = v;
            }
        }
        Some(parsed)
    })
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

/// The value of `line` when it is the field `name` (one optional space after the colon).
fn field<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let value = line.strip_prefix(name)?.strip_prefix(b":")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cut_anywhere_come_out_as_whole_events_and_whole_reads_untouched() {
        let whole = b"event: a\ndata: {\"x\":1}\n\ndata: [DONE]\n\n";
        let mut cutter = EventCutter::default();
        let chunk = Bytes::from_static(whole);
        let out = cutter.push(chunk.clone());
        assert_eq!(out.as_ref().map(|b| b.as_ptr()), Some(chunk.as_ptr()), "no copy");
        for cut in 1..whole.len() {
            let mut cutter = EventCutter::default();
            let mut got = Vec::new();
            for part in [&whole[..cut], &whole[cut..]] {
                if let Some(b) = cutter.push(Bytes::copy_from_slice(part)) {
                    assert!(b.ends_with(b"\n\n"), "cut at {cut}: {b:?}");
                    got.extend_from_slice(&b);
                }
            }
            assert!(cutter.rest().is_none());
            assert_eq!(got, whole, "cut at {cut}");
        }
    }

    #[test]
    fn events_give_their_name_and_data() {
        let block = b"event: message_start\ndata: {\"a\":1}\n\n: comment\n\ndata:[DONE]\r\n\r\n";
        let got: Vec<_> = events(block).map(|e| (e.name.to_vec(), e.data.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (b"message_start".to_vec(), b"{\"a\":1}".to_vec()),
                (Vec::new(), b"[DONE]".to_vec())
            ]
        );
        let kept = without(Bytes::from_static(block), |e| e.name == b"message_start");
        assert_eq!(&kept[..], b": comment\n\ndata:[DONE]\r\n\r\n");
    }
}
