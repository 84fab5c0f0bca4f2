//! A call's cache key: a SHA-256 of the model it was routed to, the scope, and what the call
//! means in the chat wire — whichever wire it came in (see `cache.rs` for what is left out and
//! why). A gateway turn's key is made the same way from the messages sent to that model and
//! the turn's parameters, tagged apart from wire calls.

use serde::Serialize;
use serde_json::{Map, Value};

use super::CacheKey;
use crate::catalog::ModelInfo;
use crate::engine::responses::Prepared;
use crate::request::{Message, ThinkingMode};
use crate::wire::responses::{self, ChatExtras};
use crate::wire::{Wire, WireRequest, to_openai};

/// Fields of a chat body that change how the reply travels, not what it says.
const TRANSPORT: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
];

/// Fields of a Responses body that `to_chat` does not carry and that change the reply.
const RESPONSES_EXTRA: &[&str] = &["reasoning", "text", "truncation", "parallel_tool_calls", "top_logprobs"];

/// The key of a call routed to `model`, for `owner`'s scope (`None`: shared by every caller);
/// `None` when its body cannot be read.
pub(super) fn key_of(
    request: &WireRequest,
    prepared: Option<&Prepared>,
    model: &ModelInfo,
    owner: Option<&str>,
) -> Option<CacheKey> {
    let chat = match (request.wire, prepared) {
        (Wire::Chat, _) => request.body_map().ok()?,
        (Wire::Messages, _) => {
            let body = request.body_map().ok()?;
            let (chat, _) = to_openai(&body, &model.id, false, false);
            let mut chat = into_map(chat)?;
            // Messages fields the chat translation has no place for still change the reply.
            for (name, value) in &body {
                let translated = [
                    "model",
                    "messages",
                    "system",
                    "max_tokens",
                    "temperature",
                    "top_p",
                    "stop_sequences",
                    "tools",
                    "tool_choice",
                ];
                if !translated.contains(&name.as_str()) && !TRANSPORT.contains(&name.as_str()) {
                    chat.insert(name.clone(), value.clone());
                }
            }
            chat
        }
        (Wire::Responses, Some(prepared)) => {
            let translated = responses::to_chat(
                &prepared.body,
                &prepared.history,
                &model.id,
                false,
                &ChatExtras::default(),
            );
            let mut chat = into_map(translated.body)?;
            for name in RESPONSES_EXTRA {
                if let Some(value) = prepared.body.get(*name) {
                    chat.insert(format!("responses.{name}"), value.clone());
                }
            }
            chat
        }
        (Wire::Responses, None) => return None,
    };
    Some(digest(model, owner, b"wire", canonical(chat).as_bytes()))
}

/// What a gateway turn asks of its first model: the messages it sends (system prompt, the
/// history that fits, this turn with its embedded files) and the parameters.
#[derive(Serialize)]
pub(super) struct TurnCall<'a> {
    pub messages: &'a [Message],
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub thinking: Option<ThinkingMode>,
    pub web_search: bool,
}

/// The key of a gateway turn routed to `model`, for `owner`'s scope.
pub(super) fn turn_key_of(call: &TurnCall<'_>, model: &ModelInfo, owner: Option<&str>) -> Option<CacheKey> {
    let meaning = serde_json::to_vec(call).ok()?;
    Some(digest(model, owner, b"turn", &meaning))
}

/// The SHA-256 of the model, the scope, what kind of call it is, and what it means; each part
/// prefixed with its length, so no two sets of parts run together into the same bytes.
fn digest(model: &ModelInfo, owner: Option<&str>, kind: &[u8], meaning: &[u8]) -> CacheKey {
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    for part in [
        model.provider.as_bytes(),
        model.id.as_bytes(),
        owner.unwrap_or("*").as_bytes(),
        kind,
        meaning,
    ] {
        sha2::Digest::update(&mut hasher, (part.len() as u64).to_le_bytes());
        sha2::Digest::update(&mut hasher, part);
    }
    sha2::Digest::finalize(hasher).into()
}

fn into_map(value: Value) -> Option<Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A chat body's meaning as text: transport fields out, `max_completion_tokens` read as
/// `max_tokens`, a content of one text part as its text, keys sorted.
fn canonical(mut chat: Map<String, Value>) -> String {
    for field in TRANSPORT {
        chat.remove(*field);
    }
    if let Some(max) = chat.remove("max_completion_tokens") {
        chat.entry("max_tokens").or_insert(max);
    }
    if let Some(Value::Array(messages)) = chat.get_mut("messages") {
        for message in messages {
            let one_text = match message.get("content") {
                Some(Value::Array(parts)) if parts.len() == 1 => parts[0]
                    .get("text")
                    .filter(|_| parts[0].get("type").and_then(Value::as_str) == Some("text"))
                    .cloned(),
                _ => None,
            };
            if let Some(text) = one_text {
                message["content"] = text;
            }
        }
    }
    let mut out = String::with_capacity(256);
    write_sorted(&Value::Object(chat), &mut out);
    out
}

/// `value` as JSON with every object's keys in order.
fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_sorted(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelInfo {
        let config = crate::config::Config::default();
        let catalog = crate::catalog::Catalog::from_config(&config);
        match catalog.resolve("glm-4.6", &config) {
            Some(model) => model.clone(),
            None => panic!("glm-4.6 is in the catalog"),
        }
    }

    fn key(request: Result<WireRequest, crate::Error>, owner: Option<&str>) -> Option<CacheKey> {
        key_of(&request.ok()?, None, &model(), owner)
    }

    #[test]
    fn the_same_call_has_one_key_in_chat_and_in_messages() {
        let chat = key(
            WireRequest::chat(
                r#"{"model":"glm-4.6","stream":true,"user":"u1","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#,
            ),
            None,
        );
        let messages = key(
            WireRequest::messages(
                r#"{"model":"glm-4.6","max_tokens":64,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
            ),
            None,
        );
        assert!(chat.is_some());
        assert_eq!(chat, messages);
    }

    #[test]
    fn any_part_of_the_call_or_its_scope_changes_the_key() {
        let base = r#"{"max_tokens":64,"temperature":0.5,"messages":[{"role":"user","content":"hi"}]}"#;
        let first = key(WireRequest::chat(base), Some("team"));
        let reordered = r#"{"messages":[{"content":"hi","role":"user"}],"temperature":0.5,"max_tokens":64}"#;
        assert_eq!(first, key(WireRequest::chat(reordered), Some("team")));
        for changed in [
            r#"{"max_tokens":65,"temperature":0.5,"messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"max_tokens":64,"temperature":0.7,"messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"max_tokens":64,"temperature":0.5,"messages":[{"role":"user","content":"hi!"}]}"#,
            r#"{"max_tokens":64,"temperature":0.5,"response_format":{"type":"json_object"},"messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"max_tokens":64,"temperature":0.5,"tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}"#,
        ] {
            assert_ne!(first, key(WireRequest::chat(changed), Some("team")), "{changed}");
        }
        assert_ne!(first, key(WireRequest::chat(base), Some("other")));
        assert_ne!(first, key(WireRequest::chat(base), None));
    }
}
