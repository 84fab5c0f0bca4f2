//! A reply kept in one form whatever wire it came in ([`StoredReply`]: the text, the
//! reasoning, the finish reason, the usage), read from a whole reply or a finished stream in
//! any wire, and written back in any wire — whole, or as a stream with the same events a
//! translated stream has, all at once (no provider to wait for).
//!
//! Only what a cache may keep is read: a reply with a tool call (its result is not known yet),
//! a refusal or anything this file does not know is not a `StoredReply` (`None`). Writing goes
//! through the translators a live call uses (chat → Messages, chat → Responses), so a replayed
//! reply is what a provider's reply translated would be.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::anthropic::{StreamTranslator, ToolNames, from_openai};
use super::openai_chat::{self, ChunkWriter};
use super::reply::Translate;
use super::responses::{self, ResponseFrame, ToolMap};
use super::{Kept, ResponsesTranslator, Wire, sse};
use crate::request::Usage;

/// A whole reply with no tool call, in no wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredReply {
    /// The model that answered.
    pub model: String,
    pub text: String,
    pub reasoning: String,
    /// OpenAI's finish reason (`stop`, `length`).
    pub finish_reason: String,
    pub usage: Usage,
}

/// What a reply in the Responses wire is written with: its frame (id, model, echoed fields) and
/// where a stream leaves its finished object.
pub(crate) struct ResponsesOut<'a> {
    pub frame: ResponseFrame,
    pub kept: &'a Kept,
}

impl StoredReply {
    /// A whole reply in `wire`, answered by `model` with `usage` (as its scanner read it).
    pub fn from_body(wire: Wire, body: &[u8], model: &str, usage: Usage) -> Option<Self> {
        let reply: Value = serde_json::from_slice(body).ok()?;
        let mut out = Self::empty(model, usage);
        match wire {
            Wire::Chat => {
                let choice = reply.pointer("/choices/0")?;
                let message = choice.get("message")?;
                if has_items(message.get("tool_calls")) || message.get("refusal").is_some_and(|r| !r.is_null()) {
                    return None;
                }
                out.text = message
                    .get("content")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into();
                out.reasoning = responses::reasoning_of(message);
                out.finish_reason = choice.get("finish_reason")?.as_str()?.into();
            }
            Wire::Messages => {
                for block in reply.get("content")?.as_array()? {
                    match block.get("type").and_then(Value::as_str)? {
                        "text" => out.text.push_str(block.get("text")?.as_str()?),
                        "thinking" => out.reasoning.push_str(block.get("thinking")?.as_str()?),
                        _ => return None,
                    }
                }
                out.finish_reason = finish_of_stop(reply.get("stop_reason")?.as_str()?)?.into();
            }
            Wire::Responses => out.read_response(&reply)?,
        }
        (out.finish_reason != "tool_calls").then_some(out)
    }

    /// A stream in `wire` that ended as its wire says a reply ends, from its blocks of events.
    pub fn from_events(wire: Wire, blocks: &[Bytes], model: &str, usage: Usage) -> Option<Self> {
        let mut out = Self::empty(model, usage);
        for block in blocks {
            for event in sse::events(block) {
                if *event.data == *b"[DONE]" {
                    continue;
                }
                let Ok(data) = serde_json::from_slice::<Value>(&event.data) else {
                    continue;
                };
                match wire {
                    Wire::Chat => out.read_chunk(&data)?,
                    Wire::Messages => out.read_messages_event(&data)?,
                    Wire::Responses => {
                        if data.get("type").and_then(Value::as_str) == Some("response.completed") {
                            out.read_response(data.get("response")?)?;
                        }
                    }
                }
            }
        }
        (!out.finish_reason.is_empty() && out.finish_reason != "tool_calls").then_some(out)
    }

    fn empty(model: &str, usage: Usage) -> Self {
        Self {
            model: model.to_string(),
            text: String::new(),
            reasoning: String::new(),
            finish_reason: String::new(),
            usage,
        }
    }

    fn read_chunk(&mut self, chunk: &Value) -> Option<()> {
        let Some(choice) = chunk.pointer("/choices/0") else {
            return Some(());
        };
        if let Some(delta) = choice.get("delta") {
            if has_items(delta.get("tool_calls")) {
                return None;
            }
            if let Some(t) = delta.get("content").and_then(Value::as_str) {
                self.text.push_str(t);
            }
            self.reasoning.push_str(&responses::reasoning_of(delta));
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = reason.to_string();
        }
        Some(())
    }

    fn read_messages_event(&mut self, event: &Value) -> Option<()> {
        match event.get("type").and_then(Value::as_str) {
            Some("content_block_start") => {
                let kind = event.pointer("/content_block/type").and_then(Value::as_str);
                matches!(kind, Some("text" | "thinking")).then_some(())
            }
            Some("content_block_delta") => {
                let delta = event.get("delta")?;
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => self.text.push_str(delta.get("text")?.as_str()?),
                    Some("thinking_delta") => self.reasoning.push_str(delta.get("thinking")?.as_str()?),
                    Some("signature_delta") => {}
                    _ => return None,
                }
                Some(())
            }
            Some("message_delta") => {
                if let Some(stop) = event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.finish_reason = finish_of_stop(stop)?.to_string();
                }
                Some(())
            }
            _ => Some(()),
        }
    }

    /// A Responses `response` object: its message text and reasoning summary; any other item
    /// (a function call, a hosted tool's call) is not kept.
    fn read_response(&mut self, response: &Value) -> Option<()> {
        for item in response.get("output")?.as_array()? {
            match item.get("type").and_then(Value::as_str)? {
                "message" => {
                    for part in item.get("content")?.as_array()? {
                        (part.get("type").and_then(Value::as_str)? == "output_text").then_some(())?;
                        self.text.push_str(part.get("text")?.as_str()?);
                    }
                }
                "reasoning" => {
                    for part in item.get("summary").and_then(Value::as_array).into_iter().flatten() {
                        self.reasoning
                            .push_str(part.get("text").and_then(Value::as_str).unwrap_or_default());
                    }
                }
                _ => return None,
            }
        }
        self.finish_reason = match response.get("status").and_then(Value::as_str)? {
            "completed" => "stop",
            "incomplete" => "length",
            _ => return None,
        }
        .to_string();
        Some(())
    }

    /// The reply as a whole chat completion.
    fn chat_completion(&self) -> Vec<u8> {
        openai_chat::completion(&openai_chat::Answer {
            model: &self.model,
            text: &self.text,
            reasoning: (!self.reasoning.is_empty()).then_some(self.reasoning.as_str()),
            finish_reason: Some(&self.finish_reason),
            usage: self.usage,
        })
    }

    /// The reply whole, in `wire` (`responses` for the Responses wire, and its object is left
    /// in `kept`).
    pub fn whole(&self, wire: Wire, responses: Option<&ResponsesOut<'_>>) -> Bytes {
        let chat = self.chat_completion();
        let translated = match (wire, responses) {
            (Wire::Chat, _) => return Bytes::from(chat),
            (Wire::Messages, _) => {
                let reply: Value = serde_json::from_slice(&chat).unwrap_or_default();
                from_openai(&reply, &self.model, &ToolNames::default()).0
            }
            (Wire::Responses, Some(out)) => {
                let reply: Value = serde_json::from_slice(&chat).unwrap_or_default();
                let (object, _) = responses::from_chat(&reply, &out.frame, &ToolMap::default(), false);
                if let Ok(mut kept) = out.kept.lock() {
                    *kept = Some(object.clone());
                }
                object
            }
            (Wire::Responses, None) => Value::Null,
        };
        Bytes::from(translated.to_string())
    }

    /// The reply as a whole stream of events in `wire`: chat chunks (the usage chunk when
    /// `include_usage`), translated for the other wires as a live stream is.
    pub fn events(&self, wire: Wire, include_usage: bool, responses: Option<ResponsesOut<'_>>) -> Bytes {
        let mut chunks = Vec::new();
        let mut writer = ChunkWriter::new(&self.model, include_usage || wire != Wire::Chat);
        if !self.reasoning.is_empty() {
            writer.reasoning(&self.reasoning, &mut chunks);
        }
        writer.text(&self.text, &mut chunks);
        writer.done(Some(&self.finish_reason), self.usage, &mut chunks);
        let mut translator: Box<dyn Translate> = match (wire, responses) {
            (Wire::Chat, _) => return Bytes::from(chunks),
            (Wire::Messages, _) => Box::new(StreamTranslator::new(
                &self.model,
                ToolNames::default(),
                self.usage.input_tokens,
            )),
            (Wire::Responses, Some(out)) => Box::new(ResponsesTranslator::new(
                out.frame,
                ToolMap::default(),
                false,
                out.kept.clone(),
            )),
            (Wire::Responses, None) => return Bytes::new(),
        };
        let mut out = Vec::with_capacity(chunks.len() * 2);
        for event in sse::events(&chunks) {
            if *event.data == *b"[DONE]" {
                translator.finish(&mut out);
            } else if let Ok(data) = std::str::from_utf8(&event.data) {
                translator.chunk(data, &mut out);
            }
        }
        Bytes::from(out)
    }
}

fn has_items(value: Option<&Value>) -> bool {
    value.and_then(Value::as_array).is_some_and(|a| !a.is_empty())
}

/// OpenAI's finish reason for Anthropic's stop reason; `None` for a tool call.
fn finish_of_stop(stop: &str) -> Option<&'static str> {
    match stop {
        "end_turn" | "stop_sequence" => Some("stop"),
        "max_tokens" => Some("length"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> StoredReply {
        StoredReply {
            model: "glm-4.6".into(),
            text: "hello there".into(),
            reasoning: "think".into(),
            finish_reason: "stop".into(),
            usage: Usage {
                input_tokens: 7,
                output_tokens: 3,
                ..Usage::default()
            },
        }
    }

    fn frame() -> ResponseFrame {
        ResponseFrame::new("resp_1".into(), "glm-4.6", &serde_json::Map::new())
    }

    #[test]
    fn a_reply_written_in_each_wire_reads_back_the_same() {
        let reply = stored();
        let kept = Kept::default();
        for wire in [Wire::Chat, Wire::Messages, Wire::Responses] {
            let out = ResponsesOut {
                frame: frame(),
                kept: &kept,
            };
            let body = reply.whole(wire, Some(&out));
            assert_eq!(
                StoredReply::from_body(wire, &body, "glm-4.6", reply.usage).as_ref(),
                Some(&reply),
                "{wire}: {}",
                String::from_utf8_lossy(&body)
            );
            let out = ResponsesOut {
                frame: frame(),
                kept: &kept,
            };
            let events = reply.events(wire, true, Some(out));
            assert_eq!(
                StoredReply::from_events(wire, std::slice::from_ref(&events), "glm-4.6", reply.usage).as_ref(),
                Some(&reply),
                "{wire}: {}",
                String::from_utf8_lossy(&events)
            );
        }
    }

    #[test]
    fn a_tool_call_or_a_stream_without_its_end_is_not_kept() {
        let call = serde_json::json!({"choices": [{"message": {"content": null, "tool_calls": [{"id": "c"}]},
            "finish_reason": "tool_calls"}]});
        assert!(StoredReply::from_body(Wire::Chat, call.to_string().as_bytes(), "m", Usage::default()).is_none());
        let tool_use = serde_json::json!({"content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
            "stop_reason": "tool_use"});
        assert!(
            StoredReply::from_body(Wire::Messages, tool_use.to_string().as_bytes(), "m", Usage::default()).is_none()
        );
        let cut = Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n");
        assert!(StoredReply::from_events(Wire::Chat, &[cut], "m", Usage::default()).is_none());
    }
}
