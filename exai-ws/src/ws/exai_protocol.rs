//! The EXAI protocol (version 1; spec in `docs/exai-ws-protocol.md`).
//!
//! `hello` first (token, optional `session_id` to resume), then any of `list_tools`,
//! `call_tool`, `cancel`, `ping`, `health`. Calls run concurrently; each is acknowledged
//! (`call_tool_ack`), reports `progress` and `stream_chunk`s, and ends with `call_tool_res` — or
//! an `error` frame. Every frame the daemon sends carries `op` and, where there is one,
//! `request_id`. A `call_tool` repeated with the same `request_id` in the same session (a client
//! retrying after a reconnect) gets the stored result instead of a second provider call.
//!
//! A call's failure is mapped from the core's typed [`ToolFailure`]: arguments that do not fit →
//! `VALIDATION_ERROR`, the client over its rate → `OVER_CAPACITY` (with `retry_after`), past the
//! deadline → `TIMEOUT` (all three as `error` frames), any other failure → `call_tool_res` with
//! its `error` code.
//!
//! Frames are read into a typed [`Frame`] first (`frame.rs`); one that cannot be read is
//! answered with the error it earns and the connection goes on.
//!
//! When the connection goes away, its calls are dropped — cancelling their upstream requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use exai_core::{FailureKind, Session, ToolError, ToolFailure, ToolOutput};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::close;
use super::frame::{Frame, FrameError};
use crate::protocols::EXAI_WS_PROTOCOL;
use crate::state::AppState;

/// Frames queued for one connection's writer.
const OUTBOX: usize = 256;

fn error_frame(request_id: Option<&str>, code: &str, message: impl Into<String>, details: Value) -> Value {
    json!({"op": "error", "request_id": request_id, "error": {"code": code, "message": message.into(), "details": details}})
}

/// The answer to a frame that cannot be read.
fn refusal(error: &FrameError) -> Value {
    error_frame(
        error.request_id.as_deref(),
        error.code(),
        error.to_string(),
        error.details(),
    )
}

/// One connection's state.
struct Conn {
    state: AppState,
    session: Session,
    session_id: String,
    out: mpsc::Sender<Message>,
    calls: JoinSet<()>,
    running: Arc<Mutex<HashMap<String, CancellationToken>>>,
}

impl Conn {
    async fn send(&self, frame: Value) {
        let _ = self.out.send(Message::Text(frame.to_string().into())).await;
    }

    async fn handle(&mut self, text: &str) {
        let frame = match Frame::decode(text) {
            Ok(frame) => frame,
            Err(e) => return self.send(refusal(&e)).await,
        };
        match frame {
            Frame::Ping { request_id } => self.send(json!({"op": "pong", "request_id": request_id})).await,
            Frame::Health { request_id } => {
                let health = self.health().await;
                self.send(json!({"op": "health_res", "request_id": request_id, "health": health}))
                    .await;
            }
            Frame::ListTools { request_id } => {
                let tools = self.state.tools.list();
                self.send(json!({"op": "list_tools_res", "request_id": request_id, "tools": tools}))
                    .await;
            }
            Frame::CallTool {
                request_id,
                name,
                arguments,
            } => self.call_tool(request_id, name, arguments).await,
            Frame::Cancel { request_id } => {
                let token = self.running.lock().ok().and_then(|mut r| r.remove(&request_id));
                match token {
                    Some(t) => {
                        t.cancel();
                        self.send(json!({"op": "cancelled", "request_id": request_id})).await;
                    }
                    None => {
                        self.send(error_frame(
                            Some(&request_id),
                            "INVALID_REQUEST",
                            "no call in flight with this request_id",
                            Value::Null,
                        ))
                        .await
                    }
                }
            }
            Frame::Hello { request_id, .. } => {
                self.send(error_frame(
                    request_id.as_deref(),
                    "PROTOCOL_ERROR",
                    "already said hello",
                    Value::Null,
                ))
                .await
            }
        }
    }

    async fn health(&self) -> Value {
        let gw = &self.state.gateway;
        let providers: Vec<Value> = gw
            .provider_health()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|p| json!({"provider": p.provider, "configured": p.configured, "circuit": p.circuit}))
            .collect();
        let memory = gw.memory_status().await;
        json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "protocol": EXAI_WS_PROTOCOL,
               "providers": providers, "memory": {"backend": memory.backend, "reachable": memory.reachable}})
    }

    async fn call_tool(&mut self, request_id: String, name: String, arguments: Value) {
        let key = format!("{}:{request_id}", self.session_id);
        self.send(json!({"op": "call_tool_ack", "request_id": request_id}))
            .await;
        let out = self.out.clone();
        if let Some(mut stored) = self.state.results.get(&key).await {
            // A retry: wait for the first call's result rather than calling the provider again.
            self.calls.spawn(async move {
                let result = stored.wait_for(Option::is_some).await.ok().and_then(|r| r.clone());
                if let Some(mut frame) = result.and_then(|text| serde_json::from_str::<Value>(&text).ok()) {
                    frame["replayed"] = json!(true);
                    let _ = out.send(Message::Text(frame.to_string().into())).await;
                }
            });
            return;
        }
        let (done, stored) = watch::channel(None);
        self.state.results.insert(key.clone(), stored).await;
        let cancel = CancellationToken::new();
        if let Ok(mut running) = self.running.lock() {
            running.insert(request_id.clone(), cancel.clone());
        }
        let (session, state, running) = (self.session.clone(), self.state.clone(), self.running.clone());
        self.calls.spawn(async move {
            let (progress, mut reports) = mpsc::unbounded_channel::<exai_core::Progress>();
            let relay_out = out.clone();
            let rid = request_id.clone();
            let relay = tokio::spawn(async move {
                while let Some(p) = reports.recv().await {
                    let frame = match p.delta {
                        Some(text) => json!({"op": "stream_chunk", "request_id": rid, "text": text}),
                        None => {
                            json!({"op": "progress", "request_id": rid, "progress": p.progress, "message": p.message})
                        }
                    };
                    let _ = relay_out.send(Message::Text(frame.to_string().into())).await;
                }
            });
            let outcome = tokio::select! {
                () = cancel.cancelled() => None,
                r = state.tools.call(&session, &name, arguments, Some(progress)) => Some(r),
            };
            let _ = relay.await;
            if let Ok(mut running) = running.lock() {
                running.remove(&request_id);
            }
            let mut kept = true;
            let frame = match outcome {
                None => {
                    state.results.invalidate(&key).await;
                    return;
                }
                Some(Err(ToolError::UnknownTool { name, available })) => error_frame(
                    Some(&request_id),
                    "TOOL_NOT_FOUND",
                    format!("unknown tool '{name}'"),
                    json!({"available": available}),
                ),
                Some(Err(e)) => error_frame(Some(&request_id), "TOOL_NOT_FOUND", e.to_string(), Value::Null),
                Some(Ok(output)) => {
                    // A call refused or stopped before it could answer may be retried: forget it.
                    if output
                        .failure
                        .as_ref()
                        .is_some_and(|f| matches!(f.kind, FailureKind::RateLimited | FailureKind::DeadlineExceeded))
                    {
                        state.results.invalidate(&key).await;
                        kept = false;
                    }
                    result_frame(&request_id, output)
                }
            };
            let text = Utf8Bytes::from(frame.to_string());
            let _ = done.send(Some(text.clone()));
            if kept {
                // Put back now that it is known, so its size counts against the bound.
                state.results.insert(key, done.subscribe()).await;
            }
            let _ = out.send(Message::Text(text)).await;
        });
    }
}

/// A call's outcome: `call_tool_res`, or an `error` frame for failures the protocol names.
fn result_frame(request_id: &str, out: ToolOutput) -> Value {
    let Some(failure) = &out.failure else {
        return json!({
            "op": "call_tool_res",
            "request_id": request_id,
            "outputs": [{"type": "text", "text": out.text}],
            "text": out.text,
            "structured": out.structured,
        });
    };
    let code = match &failure.kind {
        FailureKind::InvalidArguments => {
            return error_frame(Some(request_id), "VALIDATION_ERROR", out.text, Value::Null);
        }
        FailureKind::DeadlineExceeded => return error_frame(Some(request_id), "TIMEOUT", out.text, Value::Null),
        FailureKind::RateLimited => {
            return error_frame(Some(request_id), "OVER_CAPACITY", out.text, retry_details(failure));
        }
        FailureKind::Provider { .. } => "PROVIDER_ERROR",
        FailureKind::OverCapacity => "OVER_CAPACITY",
        FailureKind::Unauthorized => "UNAUTHORIZED",
        FailureKind::Forbidden => "FORBIDDEN",
        FailureKind::OverBudget => "OVER_BUDGET",
        _ => "TOOL_EXECUTION_ERROR",
    };
    json!({
        "op": "call_tool_res",
        "request_id": request_id,
        "outputs": [{"type": "text", "text": out.text}],
        "text": out.text,
        "structured": out.structured,
        "error": {"code": code, "message": out.text, "details": out.structured},
    })
}

fn retry_details(failure: &ToolFailure) -> Value {
    json!({"retry_after": failure.retry_after.map_or(1, |d| d.as_secs().max(1)), "action": failure.action})
}

pub(crate) async fn run(
    mut socket: WebSocket,
    state: AppState,
    hello: Value,
    ip: IpAddr,
    header: Result<exai_core::Caller, exai_core::Error>,
) {
    let (token, session_id) = match Frame::from_value(hello) {
        Ok(Frame::Hello { token, session_id, .. }) => (token, session_id),
        Err(e) if e.op() == Some("hello") => {
            // A hello with a field of the wrong type: say which, then close as for no hello.
            let _ = socket.send(Message::Text(refusal(&e).to_string().into())).await;
            super::close_with(&mut socket, close::NO_HELLO, "the first frame must be hello").await;
            return;
        }
        _ => {
            super::close_with(&mut socket, close::NO_HELLO, "the first frame must be hello").await;
            return;
        }
    };
    // `hello.token` when sent, else the upgrade's own token.
    let caller = match token.filter(|t| !t.is_empty()) {
        Some(token) => state.gateway.authenticate_from(&ip.to_string(), Some(&token)).await,
        None => header,
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(e) => {
            // Too many failures from this address: OVER_CAPACITY, with when to retry.
            let (code, details) = match e.retry_after() {
                Some(after) => ("OVER_CAPACITY", json!({"retry_after": after.as_secs().max(1)})),
                None => ("UNAUTHORIZED", Value::Null),
            };
            let frame = error_frame(None, code, e.to_string(), details);
            let _ = socket.send(Message::Text(frame.to_string().into())).await;
            super::close_with(&mut socket, close::UNAUTHORIZED, "unauthorized").await;
            return;
        }
    };
    let session_id = session_id
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let (sink, mut stream) = socket.split();
    let (out, outbox) = mpsc::channel::<Message>(OUTBOX);
    let writer = super::writer::spawn(sink, outbox);
    let mut conn = Conn {
        session: state.open_session("ws", ip, caller),
        state: state.clone(),
        session_id: session_id.clone(),
        out: out.clone(),
        calls: JoinSet::new(),
        running: Arc::default(),
    };
    conn.send(json!({"op": "hello_ack", "ok": true, "session_id": session_id, "protocol": EXAI_WS_PROTOCOL}))
        .await;
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => conn.handle(&text).await,
                Some(Ok(Message::Binary(_))) => conn.send(error_frame(None, "INVALID_REQUEST", "frames are JSON text", Value::Null)).await,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    if super::is_too_big(e) {
                        let frame = CloseFrame { code: close::TOO_BIG, reason: "frame over the size limit".into() };
                        let _ = out.send(Message::Close(Some(frame))).await;
                    }
                    break;
                }
                None => break,
            },
            Some(_) = conn.calls.join_next(), if !conn.calls.is_empty() => {}
            () = state.shutdown.cancelled() => {
                let grace = state.gateway.config().sessions.shutdown_grace;
                let _ = tokio::time::timeout(grace, async { while conn.calls.join_next().await.is_some() {} }).await;
                let frame = CloseFrame { code: close::GOING_AWAY, reason: "exai-ws is shutting down".into() };
                let _ = out.send(Message::Close(Some(frame))).await;
                break;
            }
        }
    }
    // Dropping the calls cancels whatever the client left running.
    conn.calls.abort_all();
    drop(conn);
    drop(out);
    let _ = writer.await;
}
