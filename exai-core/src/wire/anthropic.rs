//! Anthropic Messages ⇄ OpenAI chat completions, for providers with no Anthropic endpoint of
//! their own (vLLM, Ollama, OpenRouter… — any `openai_compat` provider, or a built-in one whose
//! `anthropic_base_url` is `none`).
//!
//! - The request: `system` (string or blocks) becomes the system message; content blocks map to
//!   OpenAI parts (`text`, `image` as a data or plain URL), an assistant's `tool_use` blocks to
//!   `tool_calls`, a user's `tool_result` blocks to `tool` messages (`is_error` noted in the
//!   text); `thinking` blocks in history go back as the assistant message's `reasoning_content`
//!   to a provider that reads it (Kimi refuses tool turns without it; GLM, MiniMax), and are
//!   dropped for others;
//!   `tools`, `tool_choice` (auto → auto, any → required, tool → that function, none → none),
//!   `max_tokens`, `temperature`, `top_p`, `stop_sequences` → `stop`, `metadata.user_id` →
//!   `user`. `top_k`, `cache_control` and fields OpenAI has no word for are dropped. Tool names
//!   over OpenAI's 64 characters are shortened (a prefix and a hash) and restored in the reply.
//! - The reply: `reasoning_content` → a `thinking` block, `content` → a `text` block,
//!   `tool_calls` → `tool_use` blocks (input parsed), `finish_reason` → `stop_reason`
//!   (stop → end_turn, length → max_tokens, tool_calls → tool_use), usage → usage.
//! - The stream: [`StreamTranslator`] turns OpenAI chunks into Anthropic's events — one block at
//!   a time (`thinking_delta`, `text_delta`, `input_json_delta` pieces as they come), then
//!   `message_delta` with the stop reason and usage, and `message_stop`.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::request::Usage;

/// One Anthropic server-sent event the translator makes: its name and JSON data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MessagesEvent {
    pub event: String,
    pub data: String,
}

impl MessagesEvent {
    /// The event as SSE bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(self.event.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(self.data.as_bytes());
        out.extend_from_slice(b"\n\n");
    }
}

/// OpenAI's limit on a function name.
const MAX_TOOL_NAME: usize = 64;

/// Tool names as sent to the provider, and back.
#[derive(Debug, Default, Clone)]
pub(crate) struct ToolNames {
    original: HashMap<String, String>,
}

impl ToolNames {
    /// The name to send for `name` (itself when it fits).
    fn outgoing(&mut self, name: &str) -> String {
        if name.len() <= MAX_TOOL_NAME {
            return name.to_string();
        }
        let digest = crate::keys::sha256_hex(name);
        let cut: String = name.chars().take(MAX_TOOL_NAME - 9).collect();
        let short = format!("{cut}_{}", &digest[..8]);
        self.original.insert(short.clone(), name.to_string());
        short
    }

    /// The client's name for what the provider called `name`.
    fn incoming(&self, name: &str) -> String {
        self.original.get(name).cloned().unwrap_or_else(|| name.to_string())
    }
}

fn text_of_blocks(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn image_part(block: &Value) -> Option<Value> {
    let source = block.get("source")?;
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => format!(
            "data:{};base64,{}",
            source.get("media_type").and_then(Value::as_str).unwrap_or("image/png"),
            source.get("data").and_then(Value::as_str).unwrap_or_default()
        ),
        Some("url") => source.get("url").and_then(Value::as_str)?.to_string(),
        _ => return None,
    };
    Some(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// One Anthropic message as OpenAI messages (a user turn with tool results becomes `tool`
/// messages first, then the rest of the turn).
fn messages_of(message: &Value, names: &mut ToolNames, reasoning_back: bool, out: &mut Vec<Value>) {
    let role = message.get("role").and_then(Value::as_str).unwrap_or("user");
    let blocks = match message.get("content") {
        Some(Value::String(s)) => {
            out.push(json!({"role": role, "content": s}));
            return;
        }
        Some(Value::Array(blocks)) => blocks,
        _ => return,
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    let mut thinking = String::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("thinking") if reasoning_back => {
                thinking.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or_default())
            }
            Some("text") => parts.push(json!({"type": "text", "text": block.get("text").cloned().unwrap_or_default()})),
            Some("image") => parts.extend(image_part(block)),
            Some("tool_use") => {
                let name = names.outgoing(block.get("name").and_then(Value::as_str).unwrap_or_default());
                let arguments = block.get("input").map_or_else(|| "{}".to_string(), Value::to_string);
                calls.push(
                    json!({"id": block.get("id").cloned().unwrap_or_default(), "type": "function",
                                  "function": {"name": name, "arguments": arguments}}),
                );
            }
            Some("tool_result") => {
                let mut text = text_of_blocks(block.get("content").unwrap_or(&Value::Null));
                if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                    text = format!("Error: {text}");
                }
                out.push(
                    json!({"role": "tool", "tool_call_id": block.get("tool_use_id").cloned().unwrap_or_default(),
                                "content": text}),
                );
            }
            // Thinking (and anything new) has no place in an OpenAI message.
            _ => {}
        }
    }
    if role == "assistant" {
        let text: String = parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        if text.is_empty() && calls.is_empty() {
            return;
        }
        let mut m =
            json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
        if !thinking.is_empty() {
            m["reasoning_content"] = Value::String(thinking);
        }
        if !calls.is_empty() {
            m["tool_calls"] = Value::Array(calls);
        }
        out.push(m);
    } else if !parts.is_empty() {
        let only_text = parts.iter().all(|p| p["type"] == "text");
        let content = if only_text {
            Value::String(
                parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        } else {
            Value::Array(parts)
        };
        out.push(json!({"role": role, "content": content}));
    }
}

/// The OpenAI chat body for an Anthropic request, for `model`; earlier turns' thinking goes
/// back as `reasoning_content` when the provider reads it (`reasoning_back`).
pub(crate) fn to_openai(
    body: &Map<String, Value>,
    model: &str,
    stream: bool,
    reasoning_back: bool,
) -> (Value, ToolNames) {
    let mut names = ToolNames::default();
    let mut messages = Vec::new();
    if let Some(system) = body.get("system") {
        let text = text_of_blocks(system);
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    for m in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
        messages_of(m, &mut names, reasoning_back, &mut messages);
    }
    let mut out = json!({"model": model, "messages": messages, "stream": stream});
    if stream {
        out["stream_options"] = json!({"include_usage": true});
    }
    for (from, to) in [
        ("max_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stop_sequences", "stop"),
    ] {
        if let Some(v) = body.get(from) {
            out[to] = v.clone();
        }
    }
    if let Some(user) = body.get("metadata").and_then(|m| m.get("user_id")) {
        out["user"] = user.clone();
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t.get("input_schema").is_some())
            .map(|t| {
                let name = names.outgoing(t.get("name").and_then(Value::as_str).unwrap_or_default());
                json!({"type": "function", "function": {"name": name,
                    "description": t.get("description").cloned().unwrap_or(Value::String(String::new())),
                    "parameters": t.get("input_schema").cloned().unwrap_or(json!({"type": "object"}))}})
            })
            .collect();
        if !tools.is_empty() {
            out["tools"] = Value::Array(tools);
        }
    }
    if let Some(choice) = body.get("tool_choice") {
        let mapped = match choice.get("type").and_then(Value::as_str) {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                let name = names.outgoing(choice.get("name").and_then(Value::as_str).unwrap_or_default());
                json!({"type": "function", "function": {"name": name}})
            }
            _ => json!("auto"),
        };
        if out.get("tools").is_some() || mapped == "none" {
            out["tool_choice"] = mapped;
        }
    }
    (out, names)
}

/// Anthropic's stop reason for OpenAI's finish reason.
pub(crate) fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        _ => "end_turn",
    }
}

fn usage_of(usage: Option<&Value>) -> Usage {
    let n = |f: &str| usage.and_then(|u| u.pointer(f)).and_then(Value::as_u64);
    Usage {
        input_tokens: n("/prompt_tokens").unwrap_or(0),
        output_tokens: n("/completion_tokens").unwrap_or(0),
        reasoning_tokens: 0,
        // OpenAI's and GLM's place, or Kimi's.
        cached_input_tokens: n("/prompt_tokens_details/cached_tokens")
            .or(n("/cached_tokens"))
            .unwrap_or(0),
    }
}

/// Anthropic's `usage` for a call's: `input_tokens` without the tokens read from the cache,
/// which are `cache_read_input_tokens`.
pub(crate) fn messages_usage(usage: &Usage) -> Value {
    let cached = usage.cached_input_tokens.min(usage.input_tokens);
    json!({"input_tokens": usage.input_tokens - cached, "cache_read_input_tokens": cached,
        "output_tokens": usage.output_tokens})
}

/// An Anthropic message for an OpenAI completion; and its usage.
pub(crate) fn from_openai(reply: &Value, model: &str, names: &ToolNames) -> (Value, Usage) {
    let choice = reply.pointer("/choices/0").cloned().unwrap_or_default();
    let message = choice.get("message").cloned().unwrap_or_default();
    let mut content = Vec::new();
    if let Some(r) = message
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    if let Some(t) = message.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": t}));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = names.incoming(
            call.pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        let input: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
        content.push(json!({"type": "tool_use", "id": call.get("id").cloned().unwrap_or_default(), "name": name, "input": input}));
    }
    let usage = usage_of(reply.get("usage"));
    let id = reply.get("id").and_then(Value::as_str).unwrap_or("exai");
    let body = json!({
        "id": format!("msg_{id}"), "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": messages_usage(&usage),
    });
    (body, usage)
}

/// The block being streamed.
#[derive(Debug, PartialEq)]
enum Open {
    None,
    Thinking,
    Text,
    /// A tool call, by its OpenAI index.
    Tool(u64),
}

/// OpenAI stream chunks in, Anthropic events out.
pub(crate) struct StreamTranslator {
    model: String,
    names: ToolNames,
    open: Open,
    index: usize,
    started: bool,
    finish: Option<String>,
    pub usage: Usage,
    estimated_input: u64,
}

fn event(name: &str, data: Value) -> MessagesEvent {
    MessagesEvent {
        event: name.to_string(),
        data: data.to_string(),
    }
}

impl StreamTranslator {
    pub fn new(model: &str, names: ToolNames, estimated_input: u64) -> Self {
        Self {
            model: model.to_string(),
            names,
            open: Open::None,
            index: 0,
            started: false,
            finish: None,
            usage: Usage::default(),
            estimated_input,
        }
    }

    fn start(&mut self, out: &mut Vec<MessagesEvent>) {
        if !self.started {
            self.started = true;
            out.push(event(
                "message_start",
                json!({"type": "message_start", "message": {"id": format!("msg_{}", uuid::Uuid::new_v4().simple()),
                    "type": "message", "role": "assistant", "model": self.model, "content": [],
                    "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": self.estimated_input, "output_tokens": 0}}}),
            ));
        }
    }

    fn close(&mut self, out: &mut Vec<MessagesEvent>) {
        if self.open == Open::None {
            return;
        }
        if self.open == Open::Thinking {
            out.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": self.index, "delta": {"type": "signature_delta", "signature": ""}}),
            ));
        }
        out.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": self.index}),
        ));
        self.index += 1;
        self.open = Open::None;
    }

    fn open_block(&mut self, kind: Open, block: Value, out: &mut Vec<MessagesEvent>) {
        self.close(out);
        out.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": self.index, "content_block": block}),
        ));
        self.open = kind;
    }

    fn delta(&self, delta: Value) -> MessagesEvent {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": self.index, "delta": delta}),
        )
    }

    /// The events for one chunk's JSON.
    pub fn chunk(&mut self, data: &str) -> Vec<MessagesEvent> {
        let mut out = Vec::new();
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return out;
        };
        self.start(&mut out);
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = usage_of(Some(u));
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return out;
        };
        let delta = choice.get("delta").cloned().unwrap_or_default();
        if let Some(r) = delta
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            if self.open != Open::Thinking {
                self.open_block(Open::Thinking, json!({"type": "thinking", "thinking": ""}), &mut out);
            }
            out.push(self.delta(json!({"type": "thinking_delta", "thinking": r})));
        }
        if let Some(t) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            if self.open != Open::Text {
                self.open_block(Open::Text, json!({"type": "text", "text": ""}), &mut out);
            }
            out.push(self.delta(json!({"type": "text_delta", "text": t})));
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let at = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            if self.open != Open::Tool(at) {
                let name = self.names.incoming(
                    call.pointer("/function/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                );
                let id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("toolu_{}", uuid::Uuid::new_v4().simple()), str::to_string);
                self.open_block(
                    Open::Tool(at),
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    &mut out,
                );
            }
            if let Some(piece) = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
            {
                out.push(self.delta(json!({"type": "input_json_delta", "partial_json": piece})));
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        out
    }

    /// The closing events, once the provider's stream ended.
    pub fn finish(&mut self) -> Vec<MessagesEvent> {
        let mut out = Vec::new();
        self.start(&mut out);
        self.close(&mut out);
        let mut usage = self.usage;
        if usage.input_tokens == 0 {
            usage.input_tokens = self.estimated_input;
        }
        out.push(event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(self.finish.as_deref()), "stop_sequence": null},
                   "usage": messages_usage(&usage)}),
        ));
        out.push(event("message_stop", json!({"type": "message_stop"})));
        out
    }
}

impl super::reply::Translate for StreamTranslator {
    fn chunk(&mut self, data: &str, out: &mut Vec<u8>) {
        for e in StreamTranslator::chunk(self, data) {
            e.write(out);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        for e in StreamTranslator::finish(self) {
            e.write(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn cached_input_is_reported_as_anthropic_does() {
        let reply = json!({"choices": [{"finish_reason": "stop", "message": {"content": "hi"}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 3, "cached_tokens": 60}});
        let (message, usage) = from_openai(&reply, "kimi", &ToolNames::default());
        assert_eq!(usage.cached_input_tokens, 60);
        assert_eq!(
            message["usage"],
            json!({"input_tokens": 40, "cache_read_input_tokens": 60, "output_tokens": 3})
        );
    }

    #[test]
    fn a_request_maps_every_block_to_openai() {
        let long = "t".repeat(80);
        let request = body(json!({
            "model": "x", "max_tokens": 100, "temperature": 0.2, "top_p": 0.9, "top_k": 5,
            "stop_sequences": ["END"], "metadata": {"user_id": "u1"},
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": long, "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "toolu_1", "name": long, "input": {"a": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": true,
                    "content": [{"type": "text", "text": "boom"}]}, {"type": "text", "text": "and?"}]}
            ]
        }));
        let (out, names) = to_openai(&request, "m", true, false);
        let m = &out["messages"];
        assert!(
            m[2].get("reasoning_content").is_none(),
            "no reasoning for a plain server"
        );
        let (kimi, _) = to_openai(&request, "m", true, true);
        assert_eq!(
            kimi["messages"][2]["reasoning_content"], "hm",
            "earlier thinking goes back"
        );
        assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(m[1]["content"][1]["image_url"]["url"], "data:image/png;base64,AAAA");
        assert_eq!(m[2]["content"], "calling");
        let short = m[2]["tool_calls"][0]["function"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(short.len() <= 64 && short != long, "{short}");
        assert_eq!(m[2]["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "Error: boom"})
        );
        assert_eq!(m[4], json!({"role": "user", "content": "and?"}));
        assert_eq!(
            (out["stop"].clone(), out["user"].clone(), out["tool_choice"].clone()),
            (json!(["END"]), json!("u1"), json!("required"))
        );
        assert!(out.get("top_k").is_none() && out["stream_options"]["include_usage"] == true);
        assert_eq!(out["tools"][0]["function"]["name"], short.as_str());
        assert_eq!(names.incoming(&short), long);
    }

    #[test]
    fn a_completion_maps_back_with_thinking_text_and_tools() {
        let reply = json!({"id": "c1", "choices": [{"finish_reason": "tool_calls", "message": {
            "reasoning_content": "why", "content": "ok",
            "tool_calls": [{"id": "call_1", "function": {"name": "Read", "arguments": "{\"file_path\":\"/x\"}"}}]}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3}});
        let (message, usage) = from_openai(&reply, "m", &ToolNames::default());
        let kinds: Vec<&str> = message["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["type"].as_str())
            .collect();
        assert_eq!(kinds, ["thinking", "text", "tool_use"]);
        assert_eq!(message["content"][2]["input"], json!({"file_path": "/x"}));
        assert_eq!(message["stop_reason"], "tool_use");
        assert_eq!((usage.input_tokens, usage.output_tokens), (9, 3));
    }

    #[test]
    fn a_stream_becomes_anthropic_events_one_block_at_a_time() {
        let mut t = StreamTranslator::new("m", ToolNames::default(), 7);
        let mut events = Vec::new();
        for chunk in [
            json!({"choices": [{"delta": {"reasoning_content": "hmm"}}]}),
            json!({"choices": [{"delta": {"content": "Hi "}}]}),
            json!({"choices": [{"delta": {"content": "there"}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "Read", "arguments": ""}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}}]}),
            json!({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 5}}),
        ] {
            events.extend(t.chunk(&chunk.to_string()));
        }
        events.extend(t.finish());
        let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(names[0], "message_start");
        assert_eq!(names.iter().filter(|n| **n == "content_block_start").count(), 3);
        assert_eq!(names.iter().filter(|n| **n == "content_block_stop").count(), 3);
        assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
        let data: Vec<Value> = events
            .iter()
            .map(|e| serde_json::from_str(&e.data).unwrap_or_default())
            .collect();
        for (e, d) in events.iter().zip(&data) {
            assert_eq!(d["type"], e.event.as_str());
        }
        let json: String = data
            .iter()
            .filter(|d| d["delta"]["type"] == "input_json_delta")
            .filter_map(|d| d["delta"]["partial_json"].as_str())
            .collect();
        assert_eq!(json, "{\"a\":1}");
        let end = &data[data.len() - 2];
        assert_eq!(end["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            (
                end["usage"]["input_tokens"].clone(),
                end["usage"]["output_tokens"].clone()
            ),
            (json!(11), json!(5))
        );
    }
}
