//! What the gateway must learn from a relayed reply — usage, the stop reason, whether it ended
//! properly — read by looking only where those are written.
//!
//! OpenAI chat: a SIMD search for `"usage"` and `"finish_reason"` in each block of events, the
//! value after each hit read in place, and `[DONE]`. Anthropic Messages: the event names, with
//! only `message_start` and `message_delta` (two events per reply) parsed. OpenAI Responses: the
//! event names, with only the closing event (`response.completed`, `.incomplete`, `.failed`)
//! parsed. No JSON tree is built per chunk.
//!
//! It also notes an error the provider reported inside the stream ([`Scanner::failure`], read
//! by `in_band.rs`): a chat block is searched for `error` first, Messages and Responses
//! errors are events of their own.

use std::sync::LazyLock;

use memchr::memmem;
use serde::Deserialize;

/// The keys and the marker the chat scanner looks for, with finders built once.
static FINISH_REASON: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"\"finish_reason\""));
static USAGE: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"\"usage\""));
/// How far from a block's end `[DONE]` is looked for (`data: [DONE]` and its blank line, with
/// room for `\r\n` and spacing).
const DONE_TAIL: usize = 32;
static DONE: LazyLock<memmem::FinderRev<'static>> = LazyLock::new(|| memmem::FinderRev::new(b"[DONE]"));

use super::Wire;
use super::in_band::{self, InBandError};
use super::sse;
use crate::request::Usage;

/// A reply's scanner, for the wire it is in.
pub(crate) struct Scanner {
    wire: Wire,
    pub usage: Usage,
    pub stop_reason: Option<String>,
    /// The reply ended as its wire says a reply ends (`[DONE]` or a finish reason;
    /// `message_stop`).
    pub complete: bool,
    /// The reply's text, collected only when traces record content (`EXAI_OTEL_CONTENT`):
    /// the one case where each event is parsed.
    pub text: Option<String>,
    /// The last block read mentions a `"usage"` key (where a relay looks for the usage-only
    /// chunk).
    pub usage_in_block: bool,
    /// The first error the provider reported inside the stream (a 200 that failed after all).
    pub failure: Option<InBandError>,
}

impl Scanner {
    pub fn new(wire: Wire) -> Self {
        Self {
            wire,
            usage: Usage::default(),
            stop_reason: None,
            complete: false,
            text: None,
            usage_in_block: false,
            failure: None,
        }
    }

    /// A scanner that also collects the reply's text.
    pub fn collecting_text(wire: Wire) -> Self {
        Self {
            text: Some(String::new()),
            ..Self::new(wire)
        }
    }

    /// The wire it reads.
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// Reads one block of whole events.
    pub fn block(&mut self, block: &[u8]) {
        if let Some(text) = self.text.as_mut() {
            collect_text(self.wire, block, text);
        }
        match self.wire {
            Wire::Chat => {
                if self.failure.is_none() {
                    self.failure = in_band::in_block(Wire::Chat, block);
                }
                self.chat_block(block);
            }
            Wire::Messages => self.messages_block(block),
            Wire::Responses => self.responses_block(block),
        }
    }

    /// Reads a whole (not streamed) reply.
    pub fn whole(&mut self, body: &[u8]) {
        // The reply is parsed only when its text is collected.
        if let Some(text) = self.text.as_mut()
            && let Ok(reply) = serde_json::from_slice::<serde_json::Value>(body)
        {
            let pieces: Vec<&serde_json::Value> = match self.wire {
                Wire::Chat => reply.pointer("/choices/0/message/content").into_iter().collect(),
                Wire::Messages => reply
                    .get("content")
                    .and_then(serde_json::Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b.get("text"))
                    .collect(),
                Wire::Responses => reply
                    .get("output")
                    .and_then(serde_json::Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|item| item.get("content").and_then(serde_json::Value::as_array))
                    .flatten()
                    .filter_map(|part| part.get("text"))
                    .collect(),
            };
            text.extend(pieces.into_iter().filter_map(serde_json::Value::as_str));
        }
        match self.wire {
            Wire::Chat => self.chat_block(body),
            Wire::Messages => {
                if let Ok(reply) = serde_json::from_slice::<MessageReply>(body) {
                    reply.usage.add_to(&mut self.usage);
                    self.stop_reason = reply.stop_reason;
                }
            }
            Wire::Responses => {
                if let Ok(reply) = serde_json::from_slice::<ResponseObject>(body) {
                    self.response(reply);
                }
            }
        }
        self.complete = true;
    }

    fn responses_block(&mut self, block: &[u8]) {
        for event in sse::events(block) {
            if matches!(event.name, b"error" | b"response.failed") && self.failure.is_none() {
                self.failure = in_band::in_event(Wire::Responses, event.name, &event.data);
            }
            let closing = matches!(
                event.name,
                b"response.completed" | b"response.incomplete" | b"response.failed"
            );
            if !closing {
                continue;
            }
            if let Ok(closed) = serde_json::from_slice::<ResponseEvent>(&event.data) {
                let failed = closed.response.status.as_deref() == Some("failed");
                self.response(closed.response);
                self.complete = !failed;
            }
        }
    }

    /// What a `response` object says: its usage, and its status as the stop reason.
    fn response(&mut self, response: ResponseObject) {
        if let Some(usage) = response.usage {
            self.usage = Usage {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                reasoning_tokens: usage.output_tokens_details.map_or(0, |d| d.reasoning_tokens),
                cached_input_tokens: usage.input_tokens_details.map_or(0, |d| d.cached_tokens),
            };
        }
        self.stop_reason = response.status;
    }

    fn chat_block(&mut self, block: &[u8]) {
        for at in FINISH_REASON.find_iter(block) {
            if let Some(reason) = string_after(block, at + 15).filter(|r| !r.is_empty()) {
                self.stop_reason = Some(reason);
                self.complete = true;
            }
        }
        self.usage_in_block = false;
        for at in USAGE.find_iter(block) {
            if at > 0 && block[at - 1] == b'\\' {
                continue;
            }
            if let Some(usage) = value_after::<ChatUsage>(block, at + 7) {
                self.usage_in_block = true;
                self.usage = Usage {
                    input_tokens: usage.prompt_tokens,
                    output_tokens: usage.completion_tokens,
                    reasoning_tokens: usage.completion_tokens_details.map_or(0, |d| d.reasoning_tokens),
                    cached_input_tokens: usage
                        .prompt_tokens_details
                        .map(|d| d.cached_tokens)
                        .or(usage.cached_tokens)
                        .unwrap_or(0),
                };
            }
        }
        // `[DONE]` ends a stream: the last event's data, at the block's end.
        let tail = &block[block.len().saturating_sub(DONE_TAIL)..];
        if let Some(at) = DONE.rfind(tail)
            && tail[at + 6..].iter().all(u8::is_ascii_whitespace)
            && tail[..at].trim_ascii_end().ends_with(b"data:")
        {
            self.complete = true;
        }
    }

    fn messages_block(&mut self, block: &[u8]) {
        for event in sse::events(block) {
            match event.name {
                b"message_start" => {
                    if let Ok(start) = serde_json::from_slice::<MessageStart>(&event.data) {
                        start.message.usage.add_to(&mut self.usage);
                    }
                }
                b"message_delta" => {
                    if let Ok(delta) = serde_json::from_slice::<MessageDelta>(&event.data) {
                        delta.usage.add_to(&mut self.usage);
                        if let Some(reason) = delta.delta.stop_reason {
                            self.stop_reason = Some(reason);
                        }
                    }
                }
                b"message_stop" => self.complete = true,
                b"error" if self.failure.is_none() => {
                    self.failure = in_band::in_event(Wire::Messages, event.name, &event.data);
                }
                _ => {}
            }
        }
    }
}

/// Whether `bytes` mention a `"usage"` key at all.
pub(crate) fn mentions_usage(bytes: &[u8]) -> bool {
    USAGE.find(bytes).is_some()
}

/// Whether a chat chunk's data is the usage-only chunk (`"choices": []` with `usage`).
pub(crate) fn is_usage_chunk(data: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct UsageChunk {
        #[serde(default)]
        choices: Vec<serde::de::IgnoredAny>,
        usage: Option<serde::de::IgnoredAny>,
    }
    mentions_usage(data)
        && serde_json::from_slice::<UsageChunk>(data).is_ok_and(|c| c.choices.is_empty() && c.usage.is_some())
}

/// Appends the text deltas of `block`'s events to `text`.
fn collect_text(wire: Wire, block: &[u8], text: &mut String) {
    for event in sse::events(block) {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&event.data) else {
            continue;
        };
        let piece = match wire {
            Wire::Chat => value.pointer("/choices/0/delta/content"),
            Wire::Messages => value.pointer("/delta/text"),
            Wire::Responses => value.get("delta").filter(|_| {
                value.get("type").and_then(serde_json::Value::as_str) == Some("response.output_text.delta")
            }),
        };
        if let Some(piece) = piece.and_then(serde_json::Value::as_str) {
            text.push_str(piece);
        }
    }
}

/// The bytes after a key: whitespace, a colon, whitespace; `None` when they do not follow.
fn after_colon(block: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    let skip = |i: &mut usize| {
        while block.get(*i).is_some_and(u8::is_ascii_whitespace) {
            *i += 1;
        }
    };
    skip(&mut i);
    (block.get(i) == Some(&b':')).then_some(())?;
    i += 1;
    skip(&mut i);
    Some(i)
}

/// The string value after a key at `from` (`None` for `null` or anything else).
fn string_after(block: &[u8], from: usize) -> Option<String> {
    let start = after_colon(block, from)?;
    (block.get(start) == Some(&b'"')).then_some(())?;
    let mut de = serde_json::Deserializer::from_slice(&block[start..]).into_iter::<String>();
    de.next()?.ok()
}

/// The object value after a key at `from`, as `T`.
fn value_after<T: for<'de> Deserialize<'de>>(block: &[u8], from: usize) -> Option<T> {
    let start = after_colon(block, from)?;
    (block.get(start) == Some(&b'{')).then_some(())?;
    let mut de = serde_json::Deserializer::from_slice(&block[start..]).into_iter::<T>();
    de.next()?.ok()
}

#[derive(Deserialize)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    completion_tokens_details: Option<ReasoningDetails>,
    /// Cached prompt tokens: OpenAI's and GLM's place…
    prompt_tokens_details: Option<CachedDetails>,
    /// …or Kimi's.
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CachedDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct ReasoningDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

/// Anthropic's `usage`: each count only when given (a `message_delta` may carry only the
/// output so far).
#[derive(Deserialize, Default)]
struct MessageUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    /// Input read from the cache and written to it: not in `input_tokens`, Anthropic's way.
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

impl MessageUsage {
    fn add_to(&self, usage: &mut Usage) {
        if let Some(n) = self.input_tokens {
            let (read, written) = (
                self.cache_read_input_tokens.unwrap_or(0),
                self.cache_creation_input_tokens.unwrap_or(0),
            );
            usage.input_tokens = n + read + written;
            usage.cached_input_tokens = read;
        }
        if let Some(n) = self.output_tokens {
            usage.output_tokens = n;
        }
    }
}

#[derive(Deserialize)]
struct MessageReply {
    #[serde(default)]
    usage: MessageUsage,
    stop_reason: Option<String>,
}

/// A Responses `response` object, as far as the scanner reads it.
#[derive(Deserialize)]
struct ResponseObject {
    status: Option<String>,
    usage: Option<ResponseUsage>,
}

#[derive(Deserialize)]
struct ResponseUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    output_tokens_details: Option<ReasoningDetails>,
    input_tokens_details: Option<CachedDetails>,
}

#[derive(Deserialize)]
struct ResponseEvent {
    response: ResponseObject,
}

#[derive(Deserialize)]
struct MessageStart {
    message: MessageReply,
}

#[derive(Deserialize)]
struct MessageDelta {
    #[serde(default)]
    usage: MessageUsage,
    #[serde(default)]
    delta: StopDelta,
}

#[derive(Deserialize, Default)]
struct StopDelta {
    stop_reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_usage_and_finish_are_found_whatever_the_spacing() {
        let mut scan = Scanner::new(Wire::Chat);
        scan.block(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"say \\\"usage\\\": {\"},\"finish_reason\":null}]}\n\n",
        );
        assert!(!scan.complete);
        assert_eq!(scan.usage, Usage::default());
        scan.block(b"data: {\"choices\":[{\"delta\":{},\"finish_reason\" : \"length\"}],\n \"usage\" : {\"prompt_tokens\": 8, \"completion_tokens\": 200, \"completion_tokens_details\": {\"reasoning_tokens\": 5}}}\n\n");
        assert_eq!(scan.stop_reason.as_deref(), Some("length"));
        assert_eq!(
            (
                scan.usage.input_tokens,
                scan.usage.output_tokens,
                scan.usage.reasoning_tokens
            ),
            (8, 200, 5)
        );
        let mut done = Scanner::new(Wire::Chat);
        done.block(b"data: {\"usage\":null}\n\ndata: [DONE]\n\n");
        assert!(done.complete);
        assert!(!done.usage_in_block, "a null usage is no usage");
    }

    #[test]
    fn done_in_a_reply_or_an_empty_finish_reason_does_not_end_it() {
        let mut scan = Scanner::new(Wire::Chat);
        scan.block(b"data: {\"choices\":[{\"delta\":{\"content\":\"[DONE]\"}}]}\n\n");
        scan.block(b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"\"}]}\n\n");
        assert!(!scan.complete);
    }

    #[test]
    fn responses_usage_and_status_come_from_the_closing_event() {
        let mut scan = Scanner::new(Wire::Responses);
        scan.block(b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"\\\"usage\\\"\"}\n\n");
        assert!(!scan.complete);
        scan.block(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\",\"usage\":{\"input_tokens\":9,\"output_tokens\":4,\"output_tokens_details\":{\"reasoning_tokens\":2}}}}\n\n");
        assert!(scan.complete);
        assert_eq!(
            (
                scan.usage.input_tokens,
                scan.usage.output_tokens,
                scan.usage.reasoning_tokens
            ),
            (9, 4, 2)
        );
        let mut failed = Scanner::new(Wire::Responses);
        failed.block(b"event: response.failed\ndata: {\"response\":{\"status\":\"failed\",\"usage\":null}}\n\n");
        assert!(!failed.complete);
    }

    #[test]
    fn messages_usage_comes_from_start_and_delta() {
        let mut scan = Scanner::new(Wire::Messages);
        scan.block(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\nevent: content_block_delta\ndata: {\"usage\":{\"output_tokens\":999}}\n\n");
        scan.block(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n");
        assert!(!scan.complete);
        scan.block(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        assert_eq!((scan.usage.input_tokens, scan.usage.output_tokens), (25, 15));
        assert_eq!(scan.stop_reason.as_deref(), Some("end_turn"));
        assert!(scan.complete);
    }

    #[test]
    fn cached_input_is_read_from_each_wire() {
        // Anthropic: cache reads are outside `input_tokens`.
        let mut scan = Scanner::new(Wire::Messages);
        scan.block(b"event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":90,\"cache_creation_input_tokens\":5}}}\n\n");
        assert_eq!((scan.usage.input_tokens, scan.usage.cached_input_tokens), (105, 90));
        // OpenAI and GLM: inside `prompt_tokens`, in its details; Kimi: beside it.
        for usage in [
            r#"{"prompt_tokens":100,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":64}}"#,
            r#"{"prompt_tokens":100,"completion_tokens":1,"cached_tokens":64}"#,
        ] {
            let mut scan = Scanner::new(Wire::Chat);
            scan.block(format!("data: {{\"choices\":[],\"usage\":{usage}}}\n\n").as_bytes());
            assert_eq!(
                (scan.usage.input_tokens, scan.usage.cached_input_tokens),
                (100, 64),
                "{usage}"
            );
        }
    }
}
