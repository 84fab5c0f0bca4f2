//! The OpenAI-compatible API: `POST /v1/chat/completions` (plain, and SSE streaming ending in
//! `data: [DONE]`, with `stream_options.include_usage`) and `GET /v1/models`, with errors in
//! OpenAI's JSON shape — so any OpenAI SDK or tool gets exai's routing, limits, fallbacks and
//! usage ledger. The client keeps the history (it sends it every time), so these turns are
//! ephemeral: nothing is stored in exai's memory; usage is recorded as for any call.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use exai_core::{ChatEvent, ChatRequest, ChatResponse, Error, Message, ProviderErrorKind, Role, ThinkingMode};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::state::AppState;

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    messages: Vec<WireMessage>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    reasoning_effort: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Value,
}

/// An error in OpenAI's shape.
fn error(status: StatusCode, kind: &str, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": message, "type": kind, "code": code, "param": null}})),
    )
        .into_response()
}

fn gateway_error(e: &Error) -> Response {
    let (status, kind, code) = match e {
        Error::InvalidRequest(_) | Error::ThreadNotFound(_) => {
            (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_request")
        }
        Error::UnknownModel { .. } => (StatusCode::NOT_FOUND, "invalid_request_error", "model_not_found"),
        Error::NoProviderConfigured | Error::ProviderNotConfigured { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "provider_not_configured",
        ),
        Error::OverCapacity { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "over_capacity"),
        Error::RateLimited { .. } | Error::KeyLimited { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "rate_limited")
        }
        // OpenAI's own answer when an account's quota is spent.
        Error::BudgetExceeded { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "insufficient_quota",
        ),
        Error::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "invalid_request_error", "invalid_api_key"),
        Error::KeysUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "server_error", "keys_unavailable"),
        Error::Forbidden { .. } => (StatusCode::FORBIDDEN, "permission_error", "forbidden"),
        Error::DeadlineExceeded { .. } => (StatusCode::GATEWAY_TIMEOUT, "server_error", "timeout"),
        Error::ShuttingDown | Error::SessionClosed(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "server_error", "shutting_down")
        }
        Error::Provider(p) => match p.kind {
            ProviderErrorKind::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "upstream_rate_limited",
            ),
            ProviderErrorKind::InvalidRequest { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "upstream_rejected_request",
            ),
            ProviderErrorKind::CircuitOpen { .. } | ProviderErrorKind::MissingKey { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "server_error", "upstream_unavailable")
            }
            ProviderErrorKind::Auth { .. } => (StatusCode::BAD_GATEWAY, "server_error", "upstream_auth_failed"),
            _ => (StatusCode::BAD_GATEWAY, "server_error", "upstream_error"),
        },
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal_error"),
    };
    let mut response = error(status, kind, code, e.to_string());
    if let Some(after) = e
        .retry_after()
        .and_then(|a| HeaderValue::from_str(&a.as_secs().max(1).to_string()).ok())
    {
        response.headers_mut().insert(header::RETRY_AFTER, after);
    }
    response
}

fn text_of(content: &Value, images: &mut Vec<String>) -> Result<String, String> {
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
                    other => return Err(format!("unsupported content part type {other:?}")),
                }
            }
            Ok(text.join("\n"))
        }
        other => Err(format!(
            "message content must be a string or an array of parts, got {other}"
        )),
    }
}

fn to_request(body: CompletionRequest) -> Result<ChatRequest, String> {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for m in body.messages {
        let mut images = Vec::new();
        let content = text_of(&m.content, &mut images)?;
        let role = match m.role.as_str() {
            "system" | "developer" => {
                system.push(content);
                continue;
            }
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(format!(
                    "role '{other}' is not supported here (tool calls are not relayed)"
                ));
            }
        };
        messages.push(Message { role, content, images });
    }
    if !messages.iter().any(|m| m.role == Role::User) {
        return Err("messages must include at least one user message".into());
    }
    let thinking = body
        .reasoning_effort
        .as_deref()
        .map(str::parse::<ThinkingMode>)
        .transpose()?;
    // The client keeps the history and sends it every time: nothing is stored.
    let mut request = ChatRequest::from_messages(messages)
        .model_opt(body.model)
        .origin("openai")
        .store(false);
    if !system.is_empty() {
        request = request.system(system.join("\n\n"));
    }
    if let Some(t) = body.temperature {
        request = request.temperature(t);
    }
    if let Some(max) = body.max_completion_tokens.or(body.max_tokens) {
        request = request.max_tokens(max);
    }
    if let Some(mode) = thinking {
        request = request.thinking(mode);
    }
    Ok(request)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A plain reply, serialized straight from the gateway's response (no `Value` tree built).
#[derive(Serialize)]
struct Completion<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: UsageOut,
    exai: ExaiOut<'a>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: ReplyMessage<'a>,
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct ReplyMessage<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
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

/// What exai adds: who answered, the cost, and any fallbacks on the way.
#[derive(Serialize)]
struct ExaiOut<'a> {
    provider: &'a str,
    cost_usd: f64,
    fallbacks: &'a [exai_core::FallbackNote],
}

fn usage_out(r: &ChatResponse) -> UsageOut {
    UsageOut {
        prompt_tokens: r.usage.input_tokens,
        completion_tokens: r.usage.output_tokens,
        total_tokens: r.usage.input_tokens + r.usage.output_tokens,
        completion_tokens_details: ReasoningTokens {
            reasoning_tokens: r.usage.reasoning_tokens,
        },
    }
}

fn completion(r: &ChatResponse) -> Completion<'_> {
    Completion {
        id: format!("chatcmpl-{}", r.request_id),
        object: "chat.completion",
        created: now(),
        model: &r.model,
        choices: [Choice {
            index: 0,
            message: ReplyMessage {
                role: "assistant",
                content: &r.text,
                reasoning_content: r.reasoning.as_deref(),
            },
            finish_reason: r.finish_reason.as_deref().unwrap_or("stop"),
        }],
        usage: usage_out(r),
        exai: ExaiOut {
            provider: &r.provider,
            cost_usd: r.cost_usd,
            fallbacks: &r.fallbacks,
        },
    }
}

pub(crate) async fn chat_completions(State(state): State<AppState>, request: Request) -> Response {
    let received = match crate::body_limit::receive(&state, request).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let trace = exai_core::TraceContext::from_headers(&received.headers);
    let (ip, caller) = (received.ip, received.caller);
    let body: CompletionRequest = match serde_json::from_slice(&received.body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_json",
                format!("invalid request body: {e}"),
            );
        }
    };
    let (stream, include_usage) = (
        body.stream,
        body.stream_options.as_ref().is_some_and(|o| o.include_usage),
    );
    let chat = match to_request(body) {
        Ok(c) => c.trace_context(trace),
        Err(m) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_request", m),
    };
    let session = state.client_session(ip, None, caller);
    if !stream {
        return match session.chat(chat).await {
            Ok(r) => axum::Json(completion(&r)).into_response(),
            Err(e) => gateway_error(&e),
        };
    }
    let requested = chat.requested_model().unwrap_or("auto").to_string();
    // Admitted before the 200: a refusal (rate, key, budget) is an HTTP status, not a stream.
    let events = match session.start_stream(chat).await {
        Ok(events) => events,
        Err(e) => return gateway_error(&e),
    };
    let mut writer = SseWriter {
        id: format!("chatcmpl-{}", uuid::Uuid::new_v4()),
        created: now(),
        requested,
        include_usage,
        first: true,
        ended: false,
    };
    // Events that are ready together go out as one write; one alone goes at once.
    let body = events.ready_chunks(SSE_BATCH).filter_map(move |batch| {
        let mut out = Vec::new();
        for event in batch {
            writer.write(event, &mut out);
        }
        std::future::ready((!out.is_empty()).then(|| Ok::<_, Infallible>(axum::body::Bytes::from(out))))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(axum::body::Body::from_stream(body))
        .unwrap_or_else(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal_error",
                "cannot build the stream".into(),
            )
        })
}

/// Most events written in one go.
const SSE_BATCH: usize = 32;

/// One streamed chunk, serialized straight from borrowed text (no `Value` tree per chunk).
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

/// Writes a chat stream's events as OpenAI's SSE lines.
struct SseWriter {
    id: String,
    created: u64,
    requested: String,
    include_usage: bool,
    first: bool,
    ended: bool,
}

impl SseWriter {
    /// One `data:` event, serialized straight into the write buffer.
    fn data(out: &mut Vec<u8>, chunk: &Chunk<'_>) {
        out.extend_from_slice(b"data: ");
        // Serializing borrowed strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, chunk);
        out.extend_from_slice(b"\n\n");
    }

    fn chunk<'a>(&'a self, model: &'a str, choices: &'a [ChunkChoice<'a>], usage: Option<UsageOut>) -> Chunk<'a> {
        Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model,
            choices,
            usage,
        }
    }

    fn delta(&mut self, delta: Delta<'_>, out: &mut Vec<u8>) {
        let choice = [ChunkChoice {
            index: 0,
            delta,
            finish_reason: None,
        }];
        Self::data(out, &self.chunk(&self.requested, &choice, None));
    }

    fn write(&mut self, event: Result<ChatEvent, Error>, out: &mut Vec<u8>) {
        match event {
            Ok(ChatEvent::Text(t)) if !t.is_empty() => {
                let role = std::mem::take(&mut self.first).then_some("assistant");
                self.delta(
                    Delta {
                        role,
                        content: Some(&t),
                        ..Delta::default()
                    },
                    out,
                );
            }
            Ok(ChatEvent::Reasoning(r)) if !r.is_empty() => {
                self.delta(
                    Delta {
                        reasoning_content: Some(&r),
                        ..Delta::default()
                    },
                    out,
                );
            }
            Ok(ChatEvent::Done(r)) => {
                self.ended = true;
                let finish = r.finish_reason.as_deref().unwrap_or("stop");
                let last = [ChunkChoice {
                    index: 0,
                    delta: Delta::default(),
                    finish_reason: Some(finish),
                }];
                Self::data(out, &self.chunk(&r.model, &last, None));
                if self.include_usage {
                    Self::data(out, &self.chunk(&r.model, &[], Some(usage_out(&r))));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            Err(e) if !self.ended => {
                self.ended = true;
                let body =
                    json!({"error": {"message": e.to_string(), "type": "server_error", "code": "stream_failed"}});
                out.extend_from_slice(format!("data: {body}\n\ndata: [DONE]\n\n").as_bytes());
            }
            _ => {}
        }
    }
}

pub(crate) async fn models(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    // Anthropic's clients send `anthropic-version`; they get Anthropic's list shape.
    if headers.contains_key("anthropic-version") {
        return crate::anthropic::models(&state);
    }
    let created = now();
    let mut data: Vec<Value> = vec![json!({"id": "auto", "object": "model", "created": created, "owned_by": "exai"})];
    for entry in state.gateway.models().into_iter().filter(|m| m.configured) {
        data.push(
            json!({"id": entry.model.id, "object": "model", "created": created, "owned_by": entry.model.provider,
            "context_window": entry.model.context_window}),
        );
    }
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_map_to_a_turn_with_the_system_prompt_apart() -> Result<(), String> {
        let body: CompletionRequest = serde_json::from_value(json!({
            "model": "glm", "stream": true, "reasoning_effort": "high",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "what is"}, {"type": "image_url", "image_url": {"url": "data:x"}}]},
                {"role": "assistant", "content": "a cat"},
                {"role": "user", "content": "and this?"}
            ]
        }))
        .map_err(|e| e.to_string())?;
        let r = to_request(body)?;
        assert_eq!(r.system_prompt(), Some("be brief"));
        assert_eq!(r.messages().len(), 3);
        assert_eq!(r.messages()[0].images, ["data:x"]);
        assert_eq!(r.thinking_mode(), Some(ThinkingMode::High));
        assert!(!r.stores());
        let tool = serde_json::from_value::<CompletionRequest>(json!({"messages": [{"role": "tool", "content": "x"}]}));
        assert!(tool.map_err(|e| e.to_string()).and_then(to_request).is_err());
        Ok(())
    }
}
