//! An OpenAI chat stream, translated to the Responses API's events as it comes.
//!
//! `response.created` and `response.in_progress` open the stream. Then one output item at a time:
//! `response.output_item.added`; for reasoning, `response.reasoning_summary_part.added` and
//! `response.reasoning_summary_text.delta` pieces; for text, `response.content_part.added` and
//! `response.output_text.delta` pieces; for a tool call, `response.function_call_arguments.delta`
//! pieces (a free-form tool's input is sent whole when its call closes). Each item closes with
//! its `…done` events and `response.output_item.done` carrying the whole item. The stream ends
//! with `response.completed` (or `response.incomplete` at the token limit) carrying the whole
//! response and its usage; a failure after the first byte ends it with `response.failed`. Every
//! event has its `sequence_number`, counting from 0.
//!
//! The finished `response` object is also left in a [`Kept`] slot, for the store
//! (`store: true`).

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::responses::{
    ClientName, ResponseFrame, ToolMap, call_item, chat_usage, item_id, message_item, reasoning_item, reasoning_of,
    status_for, usage_json,
};
use crate::providers::ThinkSplitter;
use crate::providers::openai_wire::Piece as TextPiece;
use crate::request::Usage;

/// Where the finished `response` object is left when the stream ends.
pub(crate) type Kept = Arc<Mutex<Option<Value>>>;

/// The output item being streamed.
#[derive(Debug)]
enum Open {
    None,
    Reasoning {
        id: String,
        text: String,
    },
    Message {
        id: String,
        text: String,
    },
    /// A tool call, by its chat index.
    Call {
        index: u64,
        id: String,
        call_id: String,
        name: ClientName,
        arguments: String,
    },
}

/// OpenAI chat chunks in, Responses events out.
pub(crate) struct ResponsesTranslator {
    frame: ResponseFrame,
    names: ToolMap,
    /// `<think>` tags in the text, split out as reasoning (providers whose quirks say so).
    tags: Option<ThinkSplitter>,
    sequence: u64,
    started: bool,
    ended: bool,
    output: Vec<Value>,
    open: Open,
    finish: Option<String>,
    usage: Usage,
    cached: u64,
    kept: Kept,
}

impl ResponsesTranslator {
    pub fn new(frame: ResponseFrame, names: ToolMap, split_tags: bool, kept: Kept) -> Self {
        Self {
            frame,
            names,
            tags: split_tags.then(ThinkSplitter::default),
            sequence: 0,
            started: false,
            ended: false,
            output: Vec::new(),
            open: Open::None,
            finish: None,
            usage: Usage::default(),
            cached: 0,
            kept,
        }
    }

    fn event(&mut self, kind: &str, mut data: Value, out: &mut Vec<u8>) {
        data["type"] = Value::String(kind.to_string());
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(data.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.frame.object("in_progress", &[], None, None);
        self.event("response.created", json!({"response": response}), out);
        let response = self.frame.object("in_progress", &[], None, None);
        self.event("response.in_progress", json!({"response": response}), out);
    }

    fn index(&self) -> usize {
        self.output.len()
    }

    /// Closes the open item: its `…done` events and `response.output_item.done`.
    fn close(&mut self, out: &mut Vec<u8>) {
        let at = self.index();
        let item = match std::mem::replace(&mut self.open, Open::None) {
            Open::None => return,
            Open::Reasoning { id, text } => {
                let part = json!({"type": "summary_text", "text": text});
                let common = json!({"item_id": id, "output_index": at, "summary_index": 0});
                let mut done = common.clone();
                done["text"] = Value::String(text.clone());
                self.event("response.reasoning_summary_text.done", done, out);
                let mut part_done = common;
                part_done["part"] = part;
                self.event("response.reasoning_summary_part.done", part_done, out);
                reasoning_item(&id, &text)
            }
            Open::Message { id, text } => {
                let common = json!({"item_id": id, "output_index": at, "content_index": 0});
                let mut done = common.clone();
                done["text"] = Value::String(text.clone());
                done["logprobs"] = json!([]);
                self.event("response.output_text.done", done, out);
                let mut part_done = common;
                part_done["part"] = json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                self.event("response.content_part.done", part_done, out);
                message_item(&id, &text, "completed")
            }
            Open::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => {
                let arguments = if arguments.is_empty() {
                    "{}".to_string()
                } else {
                    arguments
                };
                let item = call_item(&id, &call_id, &name, &arguments, "completed");
                if name.custom {
                    let input = item.get("input").cloned().unwrap_or_default();
                    self.event(
                        "response.custom_tool_call_input.delta",
                        json!({"item_id": id, "output_index": at, "delta": input}),
                        out,
                    );
                    self.event(
                        "response.custom_tool_call_input.done",
                        json!({"item_id": id, "output_index": at, "input": input}),
                        out,
                    );
                } else {
                    self.event(
                        "response.function_call_arguments.done",
                        json!({"item_id": id, "output_index": at, "name": name.name, "arguments": arguments}),
                        out,
                    );
                }
                item
            }
        };
        self.event(
            "response.output_item.done",
            json!({"output_index": at, "item": item}),
            out,
        );
        self.output.push(item);
    }

    /// Opens `open` (closing the one before) with its `added` events.
    fn open(&mut self, open: Open, out: &mut Vec<u8>) {
        self.close(out);
        let at = self.index();
        let (item, extra) = match &open {
            Open::None => return,
            Open::Reasoning { id, .. } => (
                json!({"type": "reasoning", "id": id, "summary": []}),
                Some((
                    "response.reasoning_summary_part.added",
                    json!({"item_id": id, "output_index": at, "summary_index": 0,
                        "part": {"type": "summary_text", "text": ""}}),
                )),
            ),
            Open::Message { id, .. } => (
                json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []}),
                Some((
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": at, "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
                )),
            ),
            Open::Call { id, call_id, name, .. } => (call_item(id, call_id, name, "", "in_progress"), None),
        };
        self.event(
            "response.output_item.added",
            json!({"output_index": at, "item": item}),
            out,
        );
        if let Some((kind, data)) = extra {
            self.event(kind, data, out);
        }
        self.open = open;
    }

    fn reasoning(&mut self, piece: &str, out: &mut Vec<u8>) {
        if piece.is_empty() {
            return;
        }
        if !matches!(self.open, Open::Reasoning { .. }) {
            let id = item_id("rs");
            self.open(
                Open::Reasoning {
                    id,
                    text: String::new(),
                },
                out,
            );
        }
        let at = self.index();
        if let Open::Reasoning { id, text } = &mut self.open {
            text.push_str(piece);
            let data = json!({"item_id": id, "output_index": at, "summary_index": 0, "delta": piece});
            self.event("response.reasoning_summary_text.delta", data, out);
        }
    }

    fn text(&mut self, piece: &str, out: &mut Vec<u8>) {
        if piece.is_empty() {
            return;
        }
        if !matches!(self.open, Open::Message { .. }) {
            let id = item_id("msg");
            self.open(
                Open::Message {
                    id,
                    text: String::new(),
                },
                out,
            );
        }
        let at = self.index();
        if let Open::Message { id, text } = &mut self.open {
            text.push_str(piece);
            let data = json!({"item_id": id, "output_index": at, "content_index": 0, "delta": piece, "logprobs": []});
            self.event("response.output_text.delta", data, out);
        }
    }

    /// Content as it came: split into reasoning and text when the provider inlines tags.
    fn content(&mut self, piece: &str, out: &mut Vec<u8>) {
        let pieces = match self.tags.as_mut() {
            Some(tags) => tags.feed(piece),
            None => vec![TextPiece::Text(piece.to_string())],
        };
        self.pieces(pieces, out);
    }

    fn pieces(&mut self, pieces: Vec<TextPiece>, out: &mut Vec<u8>) {
        for piece in pieces {
            match piece {
                TextPiece::Text(t) => self.text(&t, out),
                TextPiece::Reasoning(r) => self.reasoning(&r, out),
            }
        }
    }

    fn call(&mut self, call: &Value, out: &mut Vec<u8>) {
        let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        if !matches!(self.open, Open::Call { index: i, .. } if i == index) {
            let sent = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let call_id = call
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .map_or_else(|| item_id("call"), str::to_string);
            let open = Open::Call {
                index,
                id: item_id("fc"),
                call_id,
                name: self.names.incoming(sent),
                arguments: String::new(),
            };
            self.open(open, out);
        }
        let Some(piece) = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
        else {
            return;
        };
        let at = self.index();
        if let Open::Call {
            id, name, arguments, ..
        } = &mut self.open
        {
            arguments.push_str(piece);
            if !name.custom {
                let data = json!({"item_id": id, "output_index": at, "delta": piece});
                self.event("response.function_call_arguments.delta", data, out);
            }
        }
    }

    /// The events for one chunk's JSON.
    pub fn chunk(&mut self, data: &str, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return;
        };
        self.start(out);
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            (self.usage, self.cached) = chat_usage(u);
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        let delta = choice.get("delta").cloned().unwrap_or_default();
        let reasoning = reasoning_of(&delta);
        self.reasoning(&reasoning, out);
        if let Some(t) = delta.get("content").and_then(Value::as_str) {
            self.content(t, out);
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            self.call(call, out);
        }
        if let Some(f) = choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .filter(|f| !f.is_empty())
        {
            self.finish = Some(f.to_string());
        }
    }

    /// The closing events, once the provider's stream ended.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.start(out);
        if let Some(mut tags) = self.tags.take() {
            self.pieces(tags.finish(), out);
        }
        self.close(out);
        self.ended = true;
        let status = status_for(self.finish.as_deref());
        let mut response = self
            .frame
            .object(status, &self.output, Some(&self.usage), self.finish.as_deref());
        response["usage"]["input_tokens_details"]["cached_tokens"] = json!(self.cached);
        if let Ok(mut kept) = self.kept.lock() {
            *kept = Some(response.clone());
        }
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.event(kind, json!({"response": response}), out);
    }

    /// A failure after the stream began: `response.failed`, with what was said so far.
    pub fn failed(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.start(out);
        self.ended = true;
        let mut response = self.frame.object("failed", &self.output, None, None);
        response["error"] = json!({"code": code, "message": message});
        response["usage"] = usage_json(&self.usage);
        self.event("response.failed", json!({"response": response}), out);
    }
}

impl super::reply::Translate for ResponsesTranslator {
    fn chunk(&mut self, data: &str, out: &mut Vec<u8>) {
        ResponsesTranslator::chunk(self, data, out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        ResponsesTranslator::finish(self, out);
    }

    fn failed(&mut self, error: &crate::Error, out: &mut Vec<u8>) -> bool {
        let code = match error.class() {
            crate::ErrorClass::DeadlineExceeded => "timeout",
            crate::ErrorClass::RateLimited | crate::ErrorClass::UpstreamRateLimited => "rate_limit_exceeded",
            _ => "server_error",
        };
        ResponsesTranslator::failed(self, code, &error.to_string(), out);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::responses::new_id;

    fn events(bytes: &[u8]) -> Vec<Value> {
        crate::wire::sse::events(bytes)
            .filter_map(|e| serde_json::from_slice(&e.data).ok())
            .collect()
    }

    #[test]
    fn a_chat_stream_becomes_responses_events_in_order_with_sequence_numbers() {
        let body = serde_json::Map::new();
        let kept = Kept::default();
        let frame = ResponseFrame::new(new_id(), "kimi-k2", &body);
        let mut t = ResponsesTranslator::new(frame, ToolMap::default(), true, kept.clone());
        let mut out = Vec::new();
        for chunk in [
            r#"{"choices":[{"delta":{"role":"assistant","reasoning_content":"hm"}}]}"#,
            r#"{"choices":[{"delta":{"content":"<think>more</think>Hel"}}]}"#,
            r#"{"choices":[{"delta":{"content":"lo"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"exec_command","arguments":"{\"cmd\""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":":\"ls\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#,
        ] {
            t.chunk(chunk, &mut out);
        }
        t.finish(&mut out);
        let all = events(&out);
        let kinds: Vec<&str> = all.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e["sequence_number"], i as u64);
        }
        let done = &all[all.len() - 1]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["usage"]["total_tokens"], 10);
        assert_eq!(done["output"][0]["summary"][0]["text"], "hmmore");
        assert_eq!(done["output"][1]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][2]["arguments"], "{\"cmd\":\"ls\"}");
        assert_eq!(done["output"][2]["call_id"], "call_1");
        assert!(kept.lock().map(|k| k.is_some()).unwrap_or(false));
    }

    #[test]
    fn a_cut_reply_is_incomplete_and_a_failure_is_response_failed() {
        let body = serde_json::Map::new();
        let frame = ResponseFrame::new(new_id(), "m", &body);
        let mut t = ResponsesTranslator::new(frame.clone(), ToolMap::default(), false, Kept::default());
        let mut out = Vec::new();
        t.chunk(
            r#"{"choices":[{"delta":{"content":"a"},"finish_reason":"length"}]}"#,
            &mut out,
        );
        t.finish(&mut out);
        let last = events(&out).pop().unwrap_or_default();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(last["response"]["incomplete_details"]["reason"], "max_output_tokens");
        let mut t = ResponsesTranslator::new(frame, ToolMap::default(), false, Kept::default());
        let mut out = Vec::new();
        t.chunk(r#"{"choices":[{"delta":{"content":"a"}}]}"#, &mut out);
        t.failed("server_error", "the stream broke", &mut out);
        t.finish(&mut out);
        let last = events(&out).pop().unwrap_or_default();
        assert_eq!(last["type"], "response.failed");
        assert_eq!(last["response"]["error"]["message"], "the stream broke");
    }
}
