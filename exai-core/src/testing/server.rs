//! The fake upstream's OpenAI side: `POST /v1/chat/completions` and `GET /v1/models`, and what
//! both sides share (recording requests, the script, producing a body, error replies). The
//! routes are in `mod.rs`; the Anthropic side is `anthropic.rs`.
//!
//! Replies with a body are produced by a task feeding a channel, so the fake notices when the
//! client hangs up mid-reply (the channel closes) and counts it in `cut_short`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::reply::{FakeReply, ReplyKind};
use super::{RecordedRequest, Shared};

pub(super) fn record(shared: &Shared, uri: &Uri, headers: &HeaderMap, body: Value, raw: Bytes) -> Option<Response> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let authorization = header("authorization");
    let x_api_key = header("x-api-key");
    let expected = shared.api_key.lock().ok().and_then(|k| k.clone());
    let denied = expected.is_some_and(|k| {
        authorization.as_deref() != Some(&format!("Bearer {k}")) && x_api_key.as_deref() != Some(k.as_str())
    });
    let recording = !shared.not_recording.load(std::sync::atomic::Ordering::Relaxed);
    if let (true, Ok(mut r)) = (recording, shared.requests.lock()) {
        r.push(RecordedRequest {
            path: uri.path().to_string(),
            authorization,
            x_api_key,
            anthropic_version: header("anthropic-version"),
            anthropic_beta: header("anthropic-beta"),
            body,
            raw,
        });
    }
    shared.changed.notify_waiters();
    denied.then(|| {
        let body = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}});
        (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
    })
}

pub(super) async fn models(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(denied) = record(&shared, &uri, &headers, Value::Null, Bytes::new()) {
        return denied;
    }
    axum::Json(json!({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})).into_response()
}

pub(super) async fn chat(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let body = json!({"error": {"message": format!("invalid JSON: {e}")}});
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
        .and_then(|rules| super::rules::chat(&rules, &request));
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
    match reply.kind {
        ReplyKind::Status {
            status,
            body,
            retry_after,
            location,
        } => {
            tokio::time::sleep(reply.delay).await;
            status_reply(&shared, status, body, retry_after, location)
        }
        ReplyKind::Hang => produce(shared, vec![], End::Hang, false),
        ReplyKind::Raw { parts, stream } => produce(
            shared,
            super::reply::timed(parts, reply.delay, reply.chunk_delay),
            End::Complete,
            stream,
        ),
        ReplyKind::Json(value) => produce(
            shared,
            vec![(reply.delay, Bytes::from(value.to_string()))],
            End::Complete,
            false,
        ),
        ReplyKind::ToolUse {
            name,
            input,
            reasoning,
            id,
        } => {
            let arguments = input.to_string();
            let call_id = format!("call_{id}");
            if !stream {
                let mut message = json!({"role": "assistant", "content": null,
                    "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]});
                if let Some(r) = &reasoning {
                    message["reasoning_content"] = json!(r);
                }
                let body = json!({
                    "id": "chatcmpl-fake", "object": "chat.completion", "model": model,
                    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}],
                    "usage": {"prompt_tokens": estimate_input(&request), "completion_tokens": 10, "total_tokens": estimate_input(&request) + 10},
                });
                return produce(
                    shared,
                    vec![(reply.delay, Bytes::from(body.to_string()))],
                    End::Complete,
                    false,
                );
            }
            let mut parts = Vec::new();
            if let Some(r) = &reasoning {
                let delta = json!({"role": "assistant", "reasoning_content": r});
                parts.push((reply.delay, sse(&chunk(&model, delta, None))));
            }
            parts.push((
                reply.delay,
                sse(&chunk(
                    &model,
                    json!({"role": "assistant", "tool_calls": [{"index": 0, "id": call_id, "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                    None,
                )),
            ));
            for piece in pieces(&arguments, 3) {
                let delta = json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]});
                parts.push((reply.chunk_delay, sse(&chunk(&model, delta, None))));
            }
            parts.push((reply.chunk_delay, sse(&chunk(&model, json!({}), Some("tool_calls")))));
            parts.push((Duration::ZERO, Bytes::from_static(b"data: [DONE]\n\n")));
            produce(shared, parts, End::Complete, true)
        }
        ReplyKind::DropAfter { chunks } => {
            let words = ["partial ", "reply ", "that ", "breaks ", "here "];
            let mut parts = Vec::new();
            if stream {
                for (i, w) in words.iter().cycle().take(chunks).enumerate() {
                    let delay = if i == 0 { reply.delay } else { reply.chunk_delay };
                    parts.push((delay, sse(&chunk(&model, json!({"content": w}), None))));
                }
            } else {
                parts.push((
                    reply.delay,
                    Bytes::from_static(b"{\"choices\":[{\"message\":{\"content\":\"par"),
                ));
            }
            produce(shared, parts, End::Break, stream)
        }
        ReplyKind::Echo | ReplyKind::Text { .. } => {
            let (content, reasoning, usage, finish) = match reply.kind {
                ReplyKind::Text {
                    content,
                    reasoning,
                    usage,
                    finish,
                } => (content, reasoning, usage, finish),
                _ => echo(&request),
            };
            let usage = usage.unwrap_or_else(|| (estimate_input(&request), (content.len() as u64).div_ceil(4)));
            let usage =
                json!({"prompt_tokens": usage.0, "completion_tokens": usage.1, "total_tokens": usage.0 + usage.1});
            if !stream {
                let mut message = json!({"role": "assistant", "content": content});
                if let Some(r) = reasoning {
                    message["reasoning_content"] = json!(r);
                }
                let body = json!({
                    "id": "chatcmpl-fake", "object": "chat.completion", "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                });
                return produce(
                    shared,
                    vec![(reply.delay, Bytes::from(body.to_string()))],
                    End::Complete,
                    false,
                );
            }
            let mut deltas = Vec::new();
            if let Some(r) = reasoning {
                deltas.push(json!({"role": "assistant", "reasoning_content": r}));
            }
            deltas.extend(content.split_inclusive(' ').map(|w| json!({"content": w})));
            // As OpenAI's and the vendors' streams do: the role comes with the first delta.
            if let Some(first) = deltas.first_mut() {
                first["role"] = json!("assistant");
            }
            let mut parts: Vec<(Duration, Bytes)> = deltas
                .into_iter()
                .enumerate()
                .map(|(i, d)| {
                    (
                        if i == 0 { reply.delay } else { reply.chunk_delay },
                        sse(&chunk(&model, d, None)),
                    )
                })
                .collect();
            parts.push((reply.chunk_delay, sse(&chunk(&model, json!({}), Some(&finish)))));
            let include_usage = request
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if include_usage {
                let usage_chunk = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": usage});
                parts.push((Duration::ZERO, sse(&usage_chunk)));
            }
            parts.push((Duration::ZERO, Bytes::from_static(b"data: [DONE]\n\n")));
            produce(shared, parts, End::Complete, true)
        }
    }
}

/// The next scripted reply (an echo when none is queued), counting the request as open.
pub(super) fn next_reply(shared: &Shared, request: &Value) -> FakeReply {
    let open = shared.accepted.fetch_add(1, Ordering::SeqCst) + 1
        - shared.completed.load(Ordering::SeqCst)
        - shared.cut_short.load(Ordering::SeqCst);
    shared.max_in_flight.fetch_max(open, Ordering::SeqCst);
    let responder = shared.responder.lock().ok().and_then(|r| r.clone());
    if let Some(reply) = responder.and_then(|respond| respond(request)) {
        return reply;
    }
    shared
        .script
        .lock()
        .ok()
        .and_then(|mut s| s.pop_front())
        .unwrap_or_else(FakeReply::echo)
}

/// An HTTP error answer as scripted.
pub(super) fn status_reply(
    shared: &Shared,
    status: u16,
    body: String,
    retry_after: Option<String>,
    location: Option<String>,
) -> Response {
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if let Some(ra) = retry_after.and_then(|r| header::HeaderValue::from_str(&r).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, ra);
    }
    if let Some(to) = location.and_then(|l| header::HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, to);
    }
    shared.completed.fetch_add(1, Ordering::SeqCst);
    shared.changed.notify_waiters();
    response
}

pub(super) fn echo(request: &Value) -> (String, Option<String>, Option<(u64, u64)>, String) {
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let last = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(|c| c.as_str().map(str::to_string).unwrap_or_else(|| c.to_string()))
        .unwrap_or_default();
    (
        format!("echo ({} messages): {last}", messages.len()),
        None,
        None,
        "stop".into(),
    )
}

/// `text` in `n` pieces (on char boundaries), as a streamed tool input arrives.
pub(super) fn pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(n.max(1)).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

pub(super) fn estimate_input(request: &Value) -> u64 {
    let messages = request.get("messages").map(|m| m.to_string()).unwrap_or_default();
    (messages.len() as u64).div_ceil(4)
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// How a produced body ends.
pub(super) enum End {
    Complete,
    Break,
    Hang,
}

/// Sends `parts` (each after its delay) as the body; notices the client leaving.
pub(super) fn produce(shared: Arc<Shared>, parts: Vec<(Duration, Bytes)>, end: End, stream: bool) -> Response {
    let content_type = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    if let ([(delay, bytes)], End::Complete, false) = (parts.as_slice(), &end, stream)
        && delay.is_zero()
    {
        // An immediate plain reply: one write, nothing to watch.
        shared.completed.fetch_add(1, Ordering::SeqCst);
        shared.changed.notify_waiters();
        return ([(header::CONTENT_TYPE, content_type)], bytes.clone()).into_response();
    }
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut left = false;
        for (delay, bytes) in parts {
            // No timer for no delay: a zero sleep still waits for the timer wheel's next tick
            // (about 1 ms), which made every chunk of a stream cost a millisecond.
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = tx.closed() => { left = true; break; }
                }
            }
            if tx.send(Ok(bytes)).await.is_err() {
                left = true;
                break;
            }
        }
        if !left {
            match end {
                End::Complete => {}
                End::Break => {
                    // Let what was sent reach the client first, as on a connection that dies
                    // some time after its last chunk.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = tx
                        .send(Err(std::io::Error::other("fake upstream drops the connection")))
                        .await;
                }
                End::Hang => {
                    tx.closed().await;
                    left = true;
                }
            }
        }
        let counter = if left { &shared.cut_short } else { &shared.completed };
        counter.fetch_add(1, Ordering::SeqCst);
        shared.changed.notify_waiters();
    });
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
