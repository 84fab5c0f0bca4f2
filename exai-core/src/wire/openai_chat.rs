//! OpenAI chat completions, written by the gateway itself: for a provider whose chat replies
//! must be rewritten (MiniMax's `<think>` tags), the client's body becomes the gateway's own
//! call, and the call's text, reasoning and usage are written back as OpenAI's reply or chunks.
//! Relayed replies never pass through here (only [`with_exai`] touches them, to add who
//! answered).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::request::{FallbackNote, Message, Role, ThinkingMode, Usage};

/// The gateway's own call, read from a chat body.
#[derive(Debug, Default)]
pub(crate) struct ChatCall {
    pub system: Option<String>,
    pub messages: Vec<Message>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub thinking: Option<ThinkingMode>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidRequest(message.into())
}

fn text_of(content: &Value, images: &mut Vec<String>) -> Result<String, Error> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut text = Vec::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => text.push(part.get("text").and_then(Value::as_str).unwrap_or("").to_string()),
                    Some("image_url") => {
                        let url = part.pointer("/image_url/url").and_then(Value::as_str).unwrap_or("");
                        images.push(url.to_string());
                    }
                    other => return Err(invalid(format!("unsupported content part type {other:?}"))),
                }
            }
            Ok(text.join("\n"))
        }
        other => Err(invalid(format!(
            "message content must be a string or an array of parts, got {other}"
        ))),
    }
}

/// The call a chat body asks for (roles `system`/`developer`, `user`, `assistant`).
pub(crate) fn to_call(body: &Map<String, Value>) -> Result<ChatCall, Error> {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    let listed = body.get("messages").and_then(Value::as_array).into_iter().flatten();
    for m in listed {
        let mut images = Vec::new();
        let content = text_of(m.get("content").unwrap_or(&Value::Null), &mut images)?;
        let role = match m.get("role").and_then(Value::as_str).unwrap_or_default() {
            "system" | "developer" => {
                system.push(content);
                continue;
            }
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(invalid(format!(
                    "role '{other}' is not supported by this provider's chat path (its replies are rewritten, so tool calls are not relayed)"
                )));
            }
        };
        messages.push(Message { role, content, images });
    }
    if !messages.iter().any(|m| m.role == Role::User) {
        return Err(invalid("messages must include at least one user message"));
    }
    let number = |key: &str| body.get(key).and_then(Value::as_f64);
    let thinking = body
        .get("reasoning_effort")
        .and_then(Value::as_str)
        .map(str::parse::<ThinkingMode>)
        .transpose()
        .map_err(invalid)?;
    Ok(ChatCall {
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages,
        temperature: number("temperature").map(|t| t as f32),
        max_tokens: number("max_completion_tokens")
            .or_else(|| number("max_tokens"))
            .map(|n| n as u32),
        thinking,
    })
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// OpenAI's `usage` object.
#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    completion_tokens_details: ReasoningTokens,
}

#[derive(Serialize)]
struct ReasoningTokens {
    reasoning_tokens: u64,
}

fn usage_out(usage: Usage) -> UsageOut {
    UsageOut {
        prompt_tokens: usage.input_tokens,
        completion_tokens: usage.output_tokens,
        total_tokens: usage.input_tokens + usage.output_tokens,
        completion_tokens_details: ReasoningTokens {
            reasoning_tokens: usage.reasoning_tokens,
        },
    }
}

/// What exai adds to a whole reply: who answered, the cost, and any fallbacks on the way.
#[derive(Serialize)]
struct ExaiOut<'a> {
    provider: &'a str,
    #[serde(serialize_with = "crate::usage::usd")]
    cost_usd: f64,
    fallbacks: &'a [FallbackNote],
}

/// A whole reply's fields, as the gateway's own call ended.
pub(crate) struct Answer<'a> {
    pub model: &'a str,
    pub text: &'a str,
    pub reasoning: Option<&'a str>,
    pub finish_reason: Option<&'a str>,
    pub usage: Usage,
}

/// A whole chat completion.
pub(crate) fn completion(answer: &Answer<'_>) -> Vec<u8> {
    let mut message = json!({"role": "assistant", "content": answer.text});
    if let Some(r) = answer.reasoning {
        message["reasoning_content"] = Value::String(r.to_string());
    }
    let body = json!({
        "id": format!("chatcmpl-{}", uuid::Uuid::new_v4()),
        "object": "chat.completion",
        "created": now(),
        "model": answer.model,
        "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason.unwrap_or("stop")}],
        "usage": usage_out(answer.usage),
    });
    body.to_string().into_bytes()
}

/// `body` (a whole chat completion) with exai's `"exai": {provider, cost_usd, fallbacks}`
/// inserted before its closing brace — the one field the gateway adds to a relayed reply.
pub(crate) fn with_exai(body: &[u8], provider: &str, cost_usd: f64, fallbacks: &[FallbackNote]) -> Vec<u8> {
    let Some(close) = body.iter().rposition(|b| *b == b'}') else {
        return body.to_vec();
    };
    let exai = ExaiOut {
        provider,
        cost_usd,
        fallbacks,
    };
    let mut out = Vec::with_capacity(body.len() + 96);
    out.extend_from_slice(&body[..close]);
    let empty = body[..close].iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    out.extend_from_slice(if empty { b"\"exai\":" } else { b",\"exai\":" });
    let _ = serde_json::to_writer(&mut out, &exai);
    out.extend_from_slice(&body[close..]);
    out
}

/// One streamed chunk, serialized straight from borrowed text.
#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
}

/// Writes the gateway's own streamed call as OpenAI's SSE chunks.
pub(crate) struct ChunkWriter {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    first: bool,
}

impl ChunkWriter {
    pub fn new(model: &str, include_usage: bool) -> Self {
        Self {
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4()),
            created: now(),
            model: model.to_string(),
            include_usage,
            first: true,
        }
    }

    fn data(&self, out: &mut Vec<u8>, choices: &[ChunkChoice<'_>], usage: Option<UsageOut>) {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        };
        out.extend_from_slice(b"data: ");
        let _ = serde_json::to_writer(&mut *out, &chunk);
        out.extend_from_slice(b"\n\n");
    }

    /// A text delta.
    pub fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        let role = std::mem::take(&mut self.first).then_some("assistant");
        let delta = Delta {
            role,
            content: Some(text),
            ..Delta::default()
        };
        self.delta(delta, out);
    }

    /// A reasoning delta.
    pub fn reasoning(&mut self, reasoning: &str, out: &mut Vec<u8>) {
        let delta = Delta {
            reasoning_content: Some(reasoning),
            ..Delta::default()
        };
        self.delta(delta, out);
    }

    fn delta(&self, delta: Delta<'_>, out: &mut Vec<u8>) {
        let choice = ChunkChoice {
            index: 0,
            delta,
            finish_reason: None,
        };
        self.data(out, &[choice], None);
    }

    /// The last chunk, the usage chunk when asked, and `[DONE]`.
    pub fn done(&mut self, finish_reason: Option<&str>, usage: Usage, out: &mut Vec<u8>) {
        let last = [ChunkChoice {
            index: 0,
            delta: Delta::default(),
            finish_reason: Some(finish_reason.unwrap_or("stop")),
        }];
        self.data(out, &last, None);
        if self.include_usage {
            self.data(out, &[], Some(usage_out(usage)));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_map_to_a_call_with_the_system_prompt_apart() -> Result<(), Error> {
        let body = json!({
            "model": "glm", "stream": true, "reasoning_effort": "high",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "what is"}, {"type": "image_url", "image_url": {"url": "data:x"}}]},
                {"role": "assistant", "content": "a cat"},
                {"role": "user", "content": "and this?"}
            ]
        });
        let call = to_call(body.as_object().ok_or_else(|| invalid("not an object"))?)?;
        assert_eq!(call.system.as_deref(), Some("be brief"));
        assert_eq!(call.messages.len(), 3);
        assert_eq!(call.messages[0].images, ["data:x"]);
        assert_eq!(call.thinking, Some(ThinkingMode::High));
        let tool = json!({"messages": [{"role": "tool", "content": "x"}]});
        assert!(to_call(tool.as_object().ok_or_else(|| invalid("not an object"))?).is_err());
        Ok(())
    }

    #[test]
    fn exai_is_added_before_the_last_brace_and_nothing_else_changes() {
        let body = br#"{"id":"x",  "usage": {"prompt_tokens": 1}}
"#;
        let out = with_exai(body, "glm", 0.5, &[]);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with(r#"{"id":"x",  "usage": {"prompt_tokens": 1},"exai":{"provider":"glm""#),
            "{text}"
        );
        let v: Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(v["exai"]["cost_usd"], 0.5);
    }
}
