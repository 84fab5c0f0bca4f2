//! The fake upstream's Anthropic side: `POST /anthropic/v1/messages` (plain and SSE, in
//! Anthropic's event order) and `…/count_tokens`, answering from the same script as the OpenAI
//! side: text (with a thinking block for a reply with reasoning), a tool call whose input streams
//! as `input_json_delta` pieces, HTTP errors, a stream that breaks, a hang.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::reply::ReplyKind;
use super::server::{End, echo, estimate_input, next_reply, pieces, produce, record, status_reply};

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn stop_reason(finish: &str) -> &str {
    match finish {
        "stop" => "end_turn",
        "length" => "max_tokens",
        "tool_calls" => "tool_use",
        other => other,
    }
}

/// The request's messages as the echo reads them (Anthropic content may be blocks).
fn as_openai(request: &Value) -> Value {
    let messages: Vec<Value> = request
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| {
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(blocks)) => blocks
                    .iter()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(""),
                _ => String::new(),
            };
            json!({"role": m.get("role").cloned().unwrap_or(Value::Null), "content": content})
        })
        .collect();
    json!({"messages": messages})
}

pub(super) async fn count_tokens(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(denied) = record(&shared, &uri, &headers, request.clone(), body) {
        return denied;
    }
    if shared.no_count_tokens.load(std::sync::atomic::Ordering::SeqCst) {
        let body = json!({"type": "error", "error": {"type": "not_found_error", "message": "Not found"}});
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    axum::Json(json!({"input_tokens": estimate_input(&as_openai(&request)) + 1000})).into_response()
}

pub(super) async fn messages(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let body = json!({"type": "error", "error": {"type": "invalid_request_error", "message": format!("invalid JSON: {e}")}});
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    if let Some(denied) = record(&shared, &uri, &headers, request.clone(), body) {
        return denied;
    }
    let refused = shared
        .rules
        .lock()
        .ok()
        .and_then(|rules| super::rules::messages(&rules, &headers, &request));
    if let Some(refused) = refused {
        return refused;
    }
    let reply = next_reply(&shared, &request);
    let stream = request.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake")
        .to_string();
    let openai = as_openai(&request);
    let input_tokens = estimate_input(&openai);
    let (blocks, finish, output_tokens) = match reply.kind {
        ReplyKind::Status {
            status,
            body,
            retry_after,
            location,
        } => {
            tokio::time::sleep(reply.delay).await;
            return status_reply(&shared, status, body, retry_after, location);
        }
        ReplyKind::Hang => return produce(shared, vec![], End::Hang, false),
        ReplyKind::Raw { parts, stream } => {
            return produce(
                shared,
                super::reply::timed(parts, reply.delay, reply.chunk_delay),
                End::Complete,
                stream,
            );
        }
        ReplyKind::Json(value) => {
            return produce(
                shared,
                vec![(reply.delay, Bytes::from(value.to_string()))],
                End::Complete,
                false,
            );
        }
        ReplyKind::DropAfter { chunks } => {
            let start = json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant",
                "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}});
            let mut parts = vec![
                (reply.delay, event("message_start", &start)),
                (
                    Duration::ZERO,
                    event(
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                    ),
                ),
            ];
            for _ in 0..chunks {
                let delta = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "partial "}});
                parts.push((reply.chunk_delay, event("content_block_delta", &delta)));
            }
            return produce(shared, parts, End::Break, true);
        }
        ReplyKind::ToolUse {
            name,
            input,
            reasoning,
            id,
        } => {
            let mut blocks = Vec::new();
            if let Some(r) = reasoning {
                blocks.push(json!({"type": "thinking", "thinking": r, "signature": "sig-fake"}));
            }
            blocks.push(json!({"type": "tool_use", "id": format!("toolu_{id}"), "name": name, "input": input}));
            (blocks, "tool_use".to_string(), 12)
        }
        ReplyKind::Echo | ReplyKind::Text { .. } => {
            let (content, reasoning, usage, finish) = match reply.kind {
                ReplyKind::Text {
                    content,
                    reasoning,
                    usage,
                    finish,
                } => (content, reasoning, usage, finish),
                _ => echo(&openai),
            };
            let output = usage.map_or((content.len() as u64).div_ceil(4), |u| u.1);
            let input = usage.map_or(input_tokens, |u| u.0);
            let mut blocks = Vec::new();
            if let Some(r) = reasoning {
                blocks.push(json!({"type": "thinking", "thinking": r, "signature": "sig-fake"}));
            }
            blocks.push(json!({"type": "text", "text": content}));
            let finish = stop_reason(&finish).to_string();
            if !stream {
                let body = json!({"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                    "content": blocks, "stop_reason": finish, "stop_sequence": null,
                    "usage": {"input_tokens": input, "output_tokens": output}});
                return produce(
                    shared,
                    vec![(reply.delay, Bytes::from(body.to_string()))],
                    End::Complete,
                    false,
                );
            }
            return produce(
                shared,
                stream_of(&model, &blocks, &finish, input, output, reply.delay, reply.chunk_delay),
                End::Complete,
                true,
            );
        }
    };
    if !stream {
        let body = json!({"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": blocks, "stop_reason": finish, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}});
        return produce(
            shared,
            vec![(reply.delay, Bytes::from(body.to_string()))],
            End::Complete,
            false,
        );
    }
    produce(
        shared,
        stream_of(
            &model,
            &blocks,
            &finish,
            input_tokens,
            output_tokens,
            reply.delay,
            reply.chunk_delay,
        ),
        End::Complete,
        true,
    )
}

/// A message's events in Anthropic's order.
fn stream_of(
    model: &str,
    blocks: &[Value],
    finish: &str,
    input: u64,
    output: u64,
    delay: Duration,
    chunk_delay: Duration,
) -> Vec<(Duration, Bytes)> {
    let start = json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant",
        "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": 1}}});
    let mut parts = vec![(delay, event("message_start", &start))];
    parts.push((Duration::ZERO, event("ping", &json!({"type": "ping"}))));
    for (index, block) in blocks.iter().enumerate() {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("text");
        let (opening, deltas): (Value, Vec<Value>) = match kind {
            "thinking" => (
                json!({"type": "thinking", "thinking": ""}),
                vec![
                    json!({"type": "thinking_delta", "thinking": block["thinking"]}),
                    json!({"type": "signature_delta", "signature": block["signature"]}),
                ],
            ),
            "tool_use" => (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                pieces(&block["input"].to_string(), 3)
                    .into_iter()
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                    .collect(),
            ),
            _ => (
                json!({"type": "text", "text": ""}),
                block["text"]
                    .as_str()
                    .unwrap_or_default()
                    .split_inclusive(' ')
                    .map(|w| json!({"type": "text_delta", "text": w}))
                    .collect(),
            ),
        };
        parts.push((
            Duration::ZERO,
            event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": index, "content_block": opening}),
            ),
        ));
        for delta in deltas {
            parts.push((
                chunk_delay,
                event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index, "delta": delta}),
                ),
            ));
        }
        parts.push((
            Duration::ZERO,
            event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ),
        ));
    }
    let delta = json!({"type": "message_delta", "delta": {"stop_reason": finish, "stop_sequence": null}, "usage": {"output_tokens": output}});
    parts.push((chunk_delay, event("message_delta", &delta)));
    parts.push((Duration::ZERO, event("message_stop", &json!({"type": "message_stop"}))));
    parts
}
