//! A WebSocket client for the daemon's dialects (tokio-tungstenite): connect, send JSON frames,
//! read the next frame or the close code.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::Daemon;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn connect(d: &Daemon) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws", d.port))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    ws
}

pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
}

/// The next JSON frame (10 s), or the close code if the server closed.
pub async fn next(ws: &mut Ws) -> Result<Value, Option<u16>> {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Ok(serde_json::from_str(&t).unwrap_or(Value::Null)),
            Ok(Some(Ok(Message::Close(frame)))) => return Err(frame.map(|f| u16::from(f.code))),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return Err(None),
            Err(_) => panic!("no frame within 20 s"),
        }
    }
}

pub async fn frame(ws: &mut Ws) -> Value {
    next(ws)
        .await
        .unwrap_or_else(|code| panic!("connection closed ({code:?})"))
}

/// Frames until one with `op`, collecting the others.
pub async fn until(ws: &mut Ws, op: &str, seen: &mut Vec<Value>) -> Value {
    loop {
        let f = frame(ws).await;
        if f["op"] == op {
            return f;
        }
        seen.push(f);
    }
}

pub async fn hello(ws: &mut Ws, extra: Value) -> Value {
    let mut h = json!({"op": "hello"});
    if let (Some(h), Some(extra)) = (h.as_object_mut(), extra.as_object()) {
        h.extend(extra.clone());
    }
    send(ws, h).await;
    frame(ws).await
}

/// Reads until the server closes: its close code (`None` when the connection just ended).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        if let Err(code) = next(ws).await {
            return code;
        }
    }
}
