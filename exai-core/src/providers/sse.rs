//! Server-sent events from a provider's response: eventsource-stream's parser (it follows the
//! spec: unknown fields and comments are skipped, `\r\n` and `\r` end lines too), fed one line at
//! a time.
//!
//! Why one line at a time: the parser keeps what it has received in one `String` and, after each
//! line it parses, copies the rest of that buffer to its start. A provider's whole reply arriving
//! in one read (a fast upstream, or a proxy that buffers) made that quadratic — in the load
//! harness a 200-chunk reply spent a sixth of exai-ws's CPU in those copies. Split at each
//! newline first (zero-copy `Bytes` slices), the buffer never holds more than a line.

use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{Stream, StreamExt};

/// The events of `bytes`, an HTTP body.
pub(crate) fn events<S, E>(bytes: S) -> impl Stream<Item = Result<Event, EventStreamError<E>>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    bytes
        .flat_map(|chunk| match chunk {
            Ok(chunk) => futures::stream::iter(lines(chunk).map(Ok)).left_stream(),
            Err(e) => futures::stream::once(std::future::ready(Err(e))).right_stream(),
        })
        .eventsource()
}

/// `chunk` cut after each `\n` (the last piece may end without one).
fn lines(mut chunk: Bytes) -> impl Iterator<Item = Bytes> {
    std::iter::from_fn(move || {
        if chunk.is_empty() {
            return None;
        }
        let end = chunk.iter().position(|b| *b == b'\n').map_or(chunk.len(), |i| i + 1);
        Some(chunk.split_to(end))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(chunks: &[&'static str]) -> Vec<(String, String)> {
        let body = futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c.as_bytes()))),
        );
        events(body)
            .filter_map(|e| async move { e.ok().map(|e| (e.event, e.data)) })
            .collect()
            .await
    }

    #[tokio::test]
    async fn events_split_anywhere_come_out_whole() {
        let whole = "data: {\"a\":1}\n\nevent: ping\ndata: x\n\n: comment\ndata: multi\ndata: line\n\ndata: [DONE]\n\n";
        let want = vec![
            ("message".to_string(), "{\"a\":1}".to_string()),
            ("ping".to_string(), "x".to_string()),
            ("message".to_string(), "multi\nline".to_string()),
            ("message".to_string(), "[DONE]".to_string()),
        ];
        assert_eq!(parse(&[whole]).await, want);
        // Cut mid-line, mid-field and between the two newlines of an event's end.
        let (a, rest) = whole.split_at(9);
        let (b, rest) = rest.split_at(5);
        let (c, d) = rest.split_at(rest.find("\n\n").map_or(0, |i| i + 1));
        assert_eq!(parse(&[a, b, c, d]).await, want);
        // CRLF line ends.
        assert_eq!(
            parse(&["data: crlf\r\n\r\n"]).await,
            vec![("message".to_string(), "crlf".to_string())]
        );
    }
}
