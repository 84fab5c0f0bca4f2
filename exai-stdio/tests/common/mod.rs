//! A minimal MCP client over pipes: spawns the real `exai-stdio` binary with a clean
//! environment, writes JSON-RPC lines to its stdin and reads its stdout, checking that every
//! stdout line is a JSON-RPC frame.

#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

pub struct McpChild {
    pub child: Child,
    stdin: Option<ChildStdin>,
    frames: mpsc::UnboundedReceiver<Value>,
    /// Frames read while waiting for something else.
    pub seen: Vec<Value>,
}

impl McpChild {
    /// Spawns exai-stdio with only `env` (plus PATH and an empty HOME of its own) in its
    /// environment. Each child has its own HOME, so its own state file and the limits shared
    /// through it: tests running at once must not share one `global` limit (a test that wants
    /// processes to share sets `EXAI_STATE_DIR`).
    pub fn spawn(env: &HashMap<String, String>) -> Self {
        static SPAWNED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SPAWNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let home = std::env::temp_dir().join(format!("exai-stdio-home-{}-{n}", std::process::id()));
        let _ = std::fs::create_dir_all(&home);
        let mut child = Command::new(env!("CARGO_BIN_EXE_exai-stdio"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &home)
            .envs(env)
            .current_dir(&home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn exai-stdio: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let (tx, frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let frame: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout carried a non-JSON line ({e}): {line}"));
                assert_eq!(frame["jsonrpc"], "2.0", "stdout carried a non-JSON-RPC frame: {line}");
                if tx.send(frame).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            frames,
            seen: Vec::new(),
        }
    }

    pub async fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap_or_else(|| panic!("stdin closed"));
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        stdin.flush().await.unwrap_or_else(|e| panic!("flush: {e}"));
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_raw(&frame.to_string()).await;
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next frame, within 10 s.
    pub async fn next(&mut self) -> Value {
        match tokio::time::timeout(Duration::from_secs(10), self.frames.recv()).await {
            Ok(Some(frame)) => frame,
            other => panic!("no frame from exai-stdio: {other:?}"),
        }
    }

    /// Waits for the response to request `id`, keeping other frames in `seen`.
    pub async fn response(&mut self, id: u64) -> Value {
        loop {
            let frame = self.next().await;
            if frame.get("id") == Some(&json!(id)) && frame.get("method").is_none() {
                return frame;
            }
            self.seen.push(frame);
        }
    }

    pub async fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        self.response(id).await
    }

    /// initialize + initialized; returns the initialize result.
    pub async fn initialize(&mut self, version: &str) -> Value {
        let params =
            json!({"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}});
        let response = self.request(1, "initialize", params).await;
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        response
    }

    /// Frames seen so far with this method.
    pub fn notifications(&self, method: &str) -> Vec<Value> {
        self.seen.iter().filter(|f| f["method"] == method).cloned().collect()
    }
}
