//! The soak's client: one per soak task, making a call through any of exai-ws's five front doors
//! and saying how it ended — a reply (its text, for the id check), an error in the door's own
//! protocol, an answer in no protocol, no answer, or an answer naming another request.
//!
//! A client keeps what a real client of each door keeps between calls: a pooled HTTP client, an
//! MCP session on `/mcp`, and two WebSocket connections (the EXAI protocol, MCP JSON-RPC), opened
//! on first use and opened again after a call that left them in an unknown state.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::calls::{Call, Door, Outcome};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One soak task's client of all five doors.
pub struct Client {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// `ws://127.0.0.1:PORT/ws`.
    ws_url: String,
    exai: Option<Ws>,
    mcp_ws: Option<Ws>,
    /// The `mcp-session-id` of this client's session on `/mcp`.
    mcp_session: Option<String>,
}

impl Client {
    pub fn new(http: reqwest::Client, port: u16) -> Self {
        Self {
            http,
            base: format!("http://127.0.0.1:{port}"),
            ws_url: format!("ws://127.0.0.1:{port}/ws"),
            exai: None,
            mcp_ws: None,
            mcp_session: None,
        }
    }

    /// Makes `call`, waiting `patience` at most for its answer.
    pub async fn call(&mut self, call: &Call, patience: Duration) -> Outcome {
        let outcome = tokio::time::timeout(patience, async {
            match call.door {
                Door::OpenAi => self.openai(call).await,
                Door::Anthropic => self.anthropic(call).await,
                Door::McpHttp => self.mcp_http(call).await,
                Door::McpWs => self.mcp_ws(call).await,
                Door::Exai => self.exai(call).await,
            }
        })
        .await
        .unwrap_or_else(|_| Outcome::Lost(format!("no answer within {} s", patience.as_secs())));
        if !matches!(outcome, Outcome::Reply(_) | Outcome::Refused(_)) {
            // A connection that failed a call is in an unknown state: the next call opens another.
            match call.door {
                Door::McpWs => self.mcp_ws = None,
                Door::Exai => self.exai = None,
                _ => {}
            }
        }
        outcome
    }

    /// Leaves as a client does: closes the WebSockets and ends the MCP session.
    pub async fn close(mut self) {
        for ws in [self.exai.take(), self.mcp_ws.take()].into_iter().flatten() {
            let mut ws = ws;
            let _ = ws.close(None).await;
        }
        if let Some(session) = self.mcp_session.take() {
            let _ = self
                .http
                .delete(format!("{}/mcp", self.base))
                .header("mcp-session-id", session)
                .send()
                .await;
        }
    }

    async fn openai(&self, call: &Call) -> Outcome {
        let body = json!({"model": "auto", "stream": call.stream,
            "messages": [{"role": "user", "content": call.prompt()}]});
        let (status, text) = match self.post("/v1/chat/completions", &body).await {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        let error_code = |v: &Value| v["error"]["code"].as_str().map(str::to_string);
        if status != 200 {
            return match serde_json::from_str::<Value>(&text).ok().as_ref().and_then(error_code) {
                Some(code) => Outcome::Refused(code),
                None => Outcome::Malformed(format!("HTTP {status} without an OpenAI error: {text:.200}")),
            };
        }
        if !call.stream {
            let reply: Value = serde_json::from_str(&text).unwrap_or_default();
            return match reply["choices"][0]["message"]["content"].as_str() {
                Some(content) => Outcome::Reply(content.to_string()),
                None => Outcome::Malformed(format!("200 without a message: {text:.200}")),
            };
        }
        let (mut content, mut done) = (String::new(), false);
        for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let Ok(event) = serde_json::from_str::<Value>(data) else {
                return Outcome::Malformed(format!("an event that is not JSON: {data:.200}"));
            };
            if let Some(code) = error_code(&event) {
                return Outcome::Refused(format!("{code} (in the stream)"));
            }
            content.push_str(event["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
        }
        if done {
            Outcome::Reply(content)
        } else {
            Outcome::Malformed("the stream ended without [DONE] or an error".into())
        }
    }

    async fn anthropic(&self, call: &Call) -> Outcome {
        let body = json!({"model": "auto", "max_tokens": 64, "stream": call.stream,
            "messages": [{"role": "user", "content": call.prompt()}]});
        let (status, text) = match self.post("/v1/messages", &body).await {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        let error_type = |v: &Value| {
            (v["type"] == "error")
                .then(|| v["error"]["type"].as_str().map(str::to_string))
                .flatten()
        };
        if status != 200 {
            return match serde_json::from_str::<Value>(&text).ok().as_ref().and_then(error_type) {
                Some(kind) => Outcome::Refused(kind),
                None => Outcome::Malformed(format!("HTTP {status} without an Anthropic error: {text:.200}")),
            };
        }
        if !call.stream {
            let reply: Value = serde_json::from_str(&text).unwrap_or_default();
            let Some(blocks) = reply["content"].as_array().filter(|_| reply["type"] == "message") else {
                return Outcome::Malformed(format!("200 without a message: {text:.200}"));
            };
            return Outcome::Reply(blocks.iter().filter_map(|b| b["text"].as_str()).collect());
        }
        let (mut content, mut stopped) = (String::new(), false);
        for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            let Ok(event) = serde_json::from_str::<Value>(data) else {
                return Outcome::Malformed(format!("an event that is not JSON: {data:.200}"));
            };
            if let Some(kind) = error_type(&event) {
                return Outcome::Refused(format!("{kind} (in the stream)"));
            }
            stopped |= event["type"] == "message_stop";
            content.push_str(event["delta"]["text"].as_str().unwrap_or(""));
        }
        if stopped {
            Outcome::Reply(content)
        } else {
            Outcome::Malformed("the stream ended without message_stop or an error".into())
        }
    }

    /// `POST path` with `body`: the status and the whole body, or how that failed.
    async fn post(&self, path: &str, body: &Value) -> Result<(u16, String), Outcome> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
            .await
            .map_err(|e| Outcome::Lost(format!("no answer: {e}")))?;
        let status = response.status().as_u16();
        // A body cut short (a stream broken without its protocol's error) is no answer in protocol.
        let text = response
            .text()
            .await
            .map_err(|e| Outcome::Malformed(format!("HTTP {status}, body cut: {e}")))?;
        Ok((status, text))
    }

    async fn mcp_http(&mut self, call: &Call) -> Outcome {
        let session = match &self.mcp_session {
            Some(s) => s.clone(),
            None => match self.mcp_initialize().await {
                Ok(s) => self.mcp_session.insert(s).clone(),
                Err(outcome) => return outcome,
            },
        };
        let response = self
            .http
            .post(format!("{}/mcp", self.base))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18")
            .json(&tool_call(call))
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return Outcome::Lost(format!("no answer: {e}")),
        };
        let status = response.status().as_u16();
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => return Outcome::Malformed(format!("HTTP {status}, body cut: {e}")),
        };
        let frames = text
            .lines()
            .map(|l| l.strip_prefix("data:").map_or(l, str::trim))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok());
        for frame in frames {
            if let Some(outcome) = rpc_answer(call, &frame) {
                return outcome;
            }
        }
        Outcome::Malformed(format!("HTTP {status} without a JSON-RPC answer: {text:.200}"))
    }

    /// Opens this client's MCP session on `/mcp`: its id.
    async fn mcp_initialize(&self) -> Result<String, Outcome> {
        let response = self
            .http
            .post(format!("{}/mcp", self.base))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize())
            .send()
            .await
            .map_err(|e| Outcome::Lost(format!("initialize: {e}")))?;
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                Outcome::Malformed(format!("initialize answered {} without a session", response.status()))
            })?;
        let _ = response.text().await;
        let _ = self
            .http
            .post(format!("{}/mcp", self.base))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await
            .map_err(|e| Outcome::Lost(format!("initialized: {e}")))?;
        Ok(session)
    }

    async fn mcp_ws(&mut self, call: &Call) -> Outcome {
        if self.mcp_ws.is_none() {
            match self.connect_mcp_ws().await {
                Ok(ws) => self.mcp_ws = Some(ws),
                Err(outcome) => return outcome,
            }
        }
        let Some(ws) = self.mcp_ws.as_mut() else {
            return Outcome::Lost("no connection".into());
        };
        if let Err(e) = send(ws, &tool_call(call)).await {
            return Outcome::Lost(format!("send: {e}"));
        }
        loop {
            let frame = match receive(ws).await {
                Ok(f) => f,
                Err(outcome) => return outcome,
            };
            if let Some(outcome) = rpc_answer(call, &frame) {
                return outcome;
            }
        }
    }

    async fn connect_mcp_ws(&self) -> Result<Ws, Outcome> {
        let (mut ws, _) = tokio_tungstenite::connect_async(&self.ws_url)
            .await
            .map_err(|e| Outcome::Lost(format!("connect: {e}")))?;
        let lost = |e: tokio_tungstenite::tungstenite::Error| Outcome::Lost(format!("initialize: {e}"));
        send(&mut ws, &initialize()).await.map_err(lost)?;
        loop {
            if receive(&mut ws).await?["id"] == 0 {
                break;
            }
        }
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        send(&mut ws, &initialized).await.map_err(lost)?;
        Ok(ws)
    }

    async fn exai(&mut self, call: &Call) -> Outcome {
        if self.exai.is_none() {
            match self.connect_exai().await {
                Ok(ws) => self.exai = Some(ws),
                Err(outcome) => return outcome,
            }
        }
        let Some(ws) = self.exai.as_mut() else {
            return Outcome::Lost("no connection".into());
        };
        let id = call.id();
        let frame = json!({"op": "call_tool", "request_id": id, "name": "chat",
            "arguments": {"prompt": call.prompt()}});
        if let Err(e) = send(ws, &frame).await {
            return Outcome::Lost(format!("send: {e}"));
        }
        loop {
            let frame = match receive(ws).await {
                Ok(f) => f,
                Err(outcome) => return outcome,
            };
            let op = frame["op"].as_str().unwrap_or("");
            if !matches!(op, "call_tool_res" | "error") {
                continue;
            }
            if frame["request_id"] != id.as_str() {
                return Outcome::Crossed(format!("{op} for {} while waiting for {id}", frame["request_id"]));
            }
            return match (op, frame["error"]["code"].as_str(), frame["text"].as_str()) {
                (_, Some(code), _) => Outcome::Refused(code.to_string()),
                ("call_tool_res", None, Some(text)) => Outcome::Reply(text.to_string()),
                _ => Outcome::Malformed(brief(&frame)),
            };
        }
    }

    async fn connect_exai(&self) -> Result<Ws, Outcome> {
        let (mut ws, _) = tokio_tungstenite::connect_async(&self.ws_url)
            .await
            .map_err(|e| Outcome::Lost(format!("connect: {e}")))?;
        send(&mut ws, &json!({"op": "hello"}))
            .await
            .map_err(|e| Outcome::Lost(format!("hello: {e}")))?;
        let ack = receive(&mut ws).await?;
        if ack["ok"] != true {
            return Err(Outcome::Malformed(format!("hello answered {ack}")));
        }
        Ok(ws)
    }
}

/// MCP's `initialize`, JSON-RPC id 0 (calls' ids start at 0 too, but never on the same wire
/// before the session is open).
fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "soak", "version": "1"}}})
}

/// MCP `tools/call` of `chat` for `call`, with a progress token when it is streamed.
fn tool_call(call: &Call) -> Value {
    let mut params = json!({"name": "chat", "arguments": {"prompt": call.prompt()}});
    if call.stream {
        params["_meta"] = json!({"progressToken": call.id()});
    }
    json!({"jsonrpc": "2.0", "id": call.n, "method": "tools/call", "params": params})
}

/// What a JSON-RPC frame says about `call`: `None` for a notification (or a request).
fn rpc_answer(call: &Call, frame: &Value) -> Option<Outcome> {
    if frame.get("result").is_none() && frame.get("error").is_none() {
        return None;
    }
    if frame["id"] != call.n {
        return Some(Outcome::Crossed(format!(
            "the answer to {} while waiting for {}",
            frame["id"], call.n
        )));
    }
    if let Some(code) = frame["error"]["code"].as_i64() {
        return Some(Outcome::Refused(format!("JSON-RPC {code}")));
    }
    let result = &frame["result"];
    let text = result["content"][0]["text"].as_str();
    Some(match (result["isError"].as_bool(), text) {
        (Some(true), Some(_)) => {
            let structured = &result["structuredContent"];
            let kind = structured["kind"].as_str().or(structured["status"].as_str());
            Outcome::Refused(format!("isError: {}", kind.unwrap_or("?")))
        }
        (Some(false) | None, Some(text)) => Outcome::Reply(text.to_string()),
        _ => Outcome::Malformed(brief(&frame)),
    })
}

/// `value` as text, cut to 200 characters for a message.
fn brief(value: &impl std::fmt::Display) -> String {
    value.to_string().chars().take(200).collect()
}

async fn send(ws: &mut Ws, frame: &Value) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    ws.send(Message::Text(frame.to_string().into())).await
}

/// The next JSON frame; a close or a broken connection is no answer.
async fn receive(ws: &mut Ws) -> Result<Value, Outcome> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t)
                    .map_err(|_| Outcome::Malformed(format!("not JSON: {}", brief(&t.as_str()))));
            }
            Some(Ok(Message::Close(frame))) => return Err(Outcome::Lost(format!("closed: {frame:?}"))),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(Outcome::Lost(format!("connection: {e}"))),
            None => return Err(Outcome::Lost("connection ended".into())),
        }
    }
}
