//! The OpenAI chat-completions wire format, shared by every provider, and SSE decoding.
//!
//! Request bodies are built here from a [`ProviderCall`]; each provider's quirks then adjust the
//! body (see `Quirks::shape`). Replies — plain JSON or a stream of `data:` chunks ending in
//! `[DONE]` — are folded into a [`RoundOutput`] by [`Accumulator`], which also turns streamed
//! `tool_calls` fragments back into whole calls (Kimi's `$web_search` needs them).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ProviderCall;
use crate::request::{Role, Usage};

/// A chat-completions request body.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChatBody {
    pub model: String,
    pub messages: Vec<WireMessage>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Value>,
    /// Provider-specific fields (`thinking`, `reasoning_split`, `reasoning_effort`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One message on the wire.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WireMessage {
    pub role: &'static str,
    /// A string, or an array of content parts when images are attached.
    pub content: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl WireMessage {
    fn text(role: &'static str, content: &str, images: &[String]) -> Self {
        let content = if images.is_empty() {
            Value::String(content.to_string())
        } else {
            let mut parts = vec![serde_json::json!({"type": "text", "text": content})];
            parts.extend(
                images
                    .iter()
                    .map(|url| serde_json::json!({"type": "image_url", "image_url": {"url": url}})),
            );
            Value::Array(parts)
        };
        Self {
            role,
            content,
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }
    }
}

/// A tool call, whole (plain replies) or reassembled from stream fragments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ToolCall {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".into()
}

/// The function part of a tool call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct FunctionCall {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

/// Builds the common body; quirks adjust it afterwards.
pub(crate) fn build_body(call: &ProviderCall) -> ChatBody {
    let messages = call
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            WireMessage::text(role, &m.content, &m.images)
        })
        .collect();
    ChatBody {
        model: call.model.id.clone(),
        messages,
        stream: call.stream,
        stream_options: call.stream.then(|| serde_json::json!({"include_usage": true})),
        temperature: call.temperature,
        max_tokens: call.max_tokens,
        tools: Vec::new(),
        extra: Map::new(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub completion_tokens_details: Option<UsageDetails>,
    /// OpenAI's (and GLM's) cached prompt tokens.
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
    /// Kimi's cached prompt tokens.
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UsageDetails {
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl From<&WireUsage> for Usage {
    fn from(u: &WireUsage) -> Self {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            reasoning_tokens: u.completion_tokens_details.as_ref().map_or(0, |d| d.reasoning_tokens),
            cached_input_tokens: u
                .prompt_tokens_details
                .as_ref()
                .map(|d| d.cached_tokens)
                .or(u.cached_tokens)
                .unwrap_or(0),
        }
    }
}

/// What a provider may report inside an HTTP 200 body instead of a reply: an OpenAI-style
/// `error` object, or MiniMax's `base_resp` status.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct InBand<'a> {
    pub error: Option<&'a Value>,
    pub base_resp: Option<&'a Value>,
}

impl<'a> InBand<'a> {
    fn of(error: &'a Option<Value>, base_resp: &'a Option<Value>) -> Self {
        Self {
            error: error.as_ref(),
            base_resp: base_resp.as_ref(),
        }
    }
}

/// `null` read as the type's default (MiniMax sends `"choices": null` with an error status).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A plain (non-streamed) reply, read straight from the body's bytes (no intermediate `Value`).
#[derive(Debug, Deserialize)]
pub(crate) struct Completion {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub choices: Vec<CompletionChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    base_resp: Option<Value>,
}

impl Completion {
    /// The in-band status fields of this reply.
    pub fn in_band(&self) -> InBand<'_> {
        InBand::of(&self.error, &self.base_resp)
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CompletionChoice {
    pub message: MessageBody,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The message of a plain reply, or the delta of a stream chunk.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct MessageBody {
    #[serde(default)]
    pub content: Option<String>,
    /// GLM, Kimi and many OpenAI-compatible servers put reasoning here.
    #[serde(default, alias = "reasoning")]
    pub reasoning_content: Option<String>,
    /// MiniMax with `reasoning_split: true`.
    #[serde(default)]
    pub reasoning_details: Option<Vec<ReasoningDetail>>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReasoningDetail {
    #[serde(default)]
    pub text: String,
}

/// A tool call in a plain reply, or a fragment of one in a stream.
#[derive(Debug, Deserialize)]
pub(crate) struct ToolCallDelta {
    #[serde(default)]
    pub index: Option<usize>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FunctionDelta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
}

/// One `data:` chunk of a stream.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamChunk {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub choices: Vec<StreamChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    base_resp: Option<Value>,
}

impl StreamChunk {
    /// The in-band status fields of this chunk.
    pub fn in_band(&self) -> InBand<'_> {
        InBand::of(&self.error, &self.base_resp)
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct StreamChoice {
    #[serde(default)]
    pub delta: MessageBody,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// What one round trip produced.
#[derive(Debug, Default)]
pub(crate) struct RoundOutput {
    pub text: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub model: Option<String>,
}

/// Pieces of text as they arrive, split into reply and reasoning.
#[derive(Debug, PartialEq)]
pub(crate) enum Piece {
    Text(String),
    Reasoning(String),
}

/// Folds plain replies and stream chunks into a [`RoundOutput`].
#[derive(Debug, Default)]
pub(crate) struct Accumulator {
    pub out: RoundOutput,
}

impl Accumulator {
    /// Takes one message body (plain) or delta (stream); returns the new pieces, in order.
    pub fn take(&mut self, body: MessageBody, finish: Option<String>) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let mut reasoning = body.reasoning_content.unwrap_or_default();
        for d in body.reasoning_details.unwrap_or_default() {
            reasoning.push_str(&d.text);
        }
        if !reasoning.is_empty() {
            self.out.reasoning.push_str(&reasoning);
            pieces.push(Piece::Reasoning(reasoning));
        }
        if let Some(text) = body.content.filter(|t| !t.is_empty()) {
            self.out.text.push_str(&text);
            pieces.push(Piece::Text(text));
        }
        for (pos, delta) in body.tool_calls.unwrap_or_default().into_iter().enumerate() {
            let index = delta.index.unwrap_or(pos);
            if self.out.tool_calls.len() <= index {
                self.out.tool_calls.resize_with(index + 1, ToolCall::default);
            }
            let call = &mut self.out.tool_calls[index];
            if let Some(id) = delta.id {
                call.id = id;
            }
            if let Some(f) = delta.function {
                if let Some(name) = f.name {
                    call.function.name.push_str(&name);
                }
                if let Some(args) = f.arguments {
                    call.function.arguments.push_str(&args);
                }
            }
        }
        if finish.is_some() {
            self.out.finish_reason = finish;
        }
        pieces
    }

    /// Takes a whole plain reply.
    pub fn take_completion(&mut self, c: Completion) -> Vec<Piece> {
        self.out.model = c.model;
        self.out.usage = c.usage.as_ref().map(Usage::from);
        let mut pieces = Vec::new();
        if let Some(choice) = c.choices.into_iter().next() {
            pieces = self.take(choice.message, choice.finish_reason);
        }
        pieces
    }

    /// Takes one stream chunk.
    pub fn take_chunk(&mut self, c: StreamChunk) -> Vec<Piece> {
        if c.model.is_some() {
            self.out.model = c.model;
        }
        if let Some(u) = c.usage.as_ref() {
            self.out.usage = Some(Usage::from(u));
        }
        let mut pieces = Vec::new();
        for choice in c.choices {
            pieces.extend(self.take(choice.delta, choice.finish_reason));
        }
        pieces
    }
}

/// Extracts a readable message from an error body (`{"error":{"message":…}}` and variants).
pub(crate) fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let found = parsed.as_ref().and_then(message_in);
    non_empty(found.unwrap_or_else(|| body.trim().to_string()))
}

/// The message of an `{"error": …}` object found in a stream, already parsed.
pub(crate) fn error_object_message(error: &Value) -> String {
    let reply = serde_json::json!({ "error": error });
    non_empty(message_in(&reply).unwrap_or_else(|| reply.to_string()))
}

/// Where providers put the message: `error.message`, `error.msg`, MiniMax's
/// `base_resp.status_msg`, or a bare string.
fn message_in(v: &Value) -> Option<String> {
    let e = v.get("error").unwrap_or(v);
    e.get("message")
        .or_else(|| e.get("msg"))
        .or_else(|| v.pointer("/base_resp/status_msg"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| e.as_str().map(str::to_string))
}

fn non_empty(text: String) -> String {
    if text.is_empty() { "(empty body)".into() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_fragments_reassemble_tool_calls_and_usage() {
        let mut acc = Accumulator::default();
        let chunks = [
            r#"{"model":"m","choices":[{"delta":{"reasoning_content":"hm"}}]}"#,
            r#"{"choices":[{"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"delta":{"content":"lo","tool_calls":[{"index":0,"id":"c1","function":{"name":"$web_","arguments":"{\"q\""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"search","arguments":":1}"}}]},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"completion_tokens_details":{"reasoning_tokens":2}}}"#,
        ];
        let mut pieces = Vec::new();
        for c in chunks {
            let chunk: StreamChunk = serde_json::from_str(c).unwrap_or_else(|e| panic!("{e}"));
            pieces.extend(acc.take_chunk(chunk));
        }
        assert_eq!(pieces[0], Piece::Reasoning("hm".into()));
        assert_eq!(acc.out.text, "Hello");
        assert_eq!(acc.out.tool_calls[0].function.name, "$web_search");
        assert_eq!(acc.out.tool_calls[0].function.arguments, "{\"q\":1}");
        assert_eq!(acc.out.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(
            acc.out
                .usage
                .map(|u| (u.input_tokens, u.output_tokens, u.reasoning_tokens)),
            Some((3, 5, 2))
        );
    }

    #[test]
    fn body_carries_images_as_content_parts_and_usage_option_when_streaming() {
        use crate::catalog::ModelInfo;
        use crate::request::Message;
        let mut msg = Message::user("look");
        msg.images.push("data:image/png;base64,AAAA".into());
        let call = ProviderCall {
            model: ModelInfo {
                id: "glm-4.5v".into(),
                provider: "glm".into(),
                context_window: 1,
                max_output: 1,
                capabilities: Default::default(),
                price: Default::default(),
                aliases: vec![],
            },
            messages: vec![Message::system("s"), msg],
            stream: true,
            temperature: Some(0.5),
            max_tokens: None,
            thinking: None,
            web_search: false,
        };
        let v = serde_json::to_value(build_body(&call)).unwrap_or_default();
        assert_eq!(v["messages"][0]["content"], "s");
        assert_eq!(
            v["messages"][1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AAAA"
        );
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert!(v.get("max_tokens").is_none());
    }

    #[test]
    fn error_messages_are_found_in_the_usual_places() {
        assert_eq!(error_message(r#"{"error":{"message":"bad key"}}"#), "bad key");
        assert_eq!(
            error_message(r#"{"base_resp":{"status_code":1004,"status_msg":"login fail"}}"#),
            "login fail"
        );
        assert_eq!(error_message("plain text"), "plain text");
        assert_eq!(error_message(""), "(empty body)");
    }
}
