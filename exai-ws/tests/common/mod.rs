//! Shared by the exai-ws integration tests: the real binary, started on a free port with its own
//! state directory and only the environment a test gives it.

#![allow(dead_code)] // each test file uses its own part

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use exai_core::testing::{FakeReply, FakeUpstream};
use tokio::process::{Child, Command};

pub mod chromium;
pub mod ws;

/// A running exai-ws, killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Daemon {
    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let pid = self.child.id().unwrap_or_default().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .is_ok_and(|s| s.success())
        );
    }

    /// Waits (10 s at most) for the process to exit, and asserts it exited cleanly.
    pub async fn exits_cleanly(&mut self) {
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        assert!(matches!(status, Ok(Ok(s)) if s.success()), "{status:?}");
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A state directory of this test process, named by `tag`.
pub fn state_dir(tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("exai-ws-test-{}-{tag}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir.display().to_string()
}

/// The exai-ws command with `env` only, on `port`, in `state`; stdout and stderr piped.
pub fn command(env: &HashMap<String, String>, port: u16, state: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exai-ws"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", state)
        .env("EXAI_STATE_DIR", state)
        .env("EXAI_WS_PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .envs(env)
        .current_dir(state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Starts exai-ws and waits until `/healthz` answers. Its output is discarded: a piped stderr
/// that nobody reads could fill up and stall the daemon.
pub async fn start(env: &HashMap<String, String>, tag: &str) -> Daemon {
    start_logging(env, tag, Stdio::null()).await
}

/// Starts exai-ws with its log (stderr) going to `log`, and waits until `/healthz` answers.
pub async fn start_logging(env: &HashMap<String, String>, tag: &str, log: Stdio) -> Daemon {
    let port = free_port();
    let child = command(env, port, &state_dir(tag))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn exai-ws: {e}"));
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{base}/healthz")).await.is_ok() {
            return Daemon { child, port, base };
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("exai-ws did not come up on {base}");
}

/// Creates a key named `name` over `/admin/keys` with `admin` (the daemon's `EXAI_ADMIN_TOKEN`)
/// and `limits`; returns its secret.
pub async fn create_key(d: &Daemon, admin: &str, name: &str, limits: serde_json::Value) -> String {
    let mut body = limits;
    body["name"] = serde_json::Value::String(name.to_string());
    let response = reqwest::Client::new()
        .post(format!("{}/admin/keys", d.base))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 201, "creating key {name}");
    let created: serde_json::Value = response.json().await.unwrap_or_default();
    created["secret"].as_str().unwrap_or_default().to_string()
}

/// Runs `cmd` to its end (10 s at most): its exit code and stderr.
pub async fn exits_with(mut cmd: Command) -> (i32, String) {
    let out = tokio::time::timeout(Duration::from_secs(10), cmd.output()).await;
    let out = out
        .unwrap_or_else(|_| panic!("did not exit"))
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sets `fake` up for an MCP lifecycle test and returns the daemon's environment. The replies, in
/// order: a slow one (2.2 s, so progress heartbeats come every second), a 500 then a recovery (a
/// retry, logged at `warning`), a hang (to be cancelled) and a last one, which needs the single
/// global permit the cancelled call must have freed.
pub fn lifecycle(fake: &FakeUpstream, slow_text: &str) -> HashMap<String, String> {
    fake.push(FakeReply::text(slow_text).with_delay(Duration::from_millis(2_200)));
    fake.push(FakeReply::status(500));
    fake.push(FakeReply::text("recovered"));
    fake.push(FakeReply::hang());
    fake.push(FakeReply::text("after the cancel"));
    let mut env = fake.env_for(&["GLM"]);
    for (k, v) in [
        ("EXAI_RETRY_BASE_DELAY_MS", "10"),
        ("EXAI_PROGRESS_HEARTBEAT_SECS", "1"),
        ("EXAI_GLOBAL_MAX_INFLIGHT", "1"),
        ("EXAI_QUEUE_TIMEOUT_MS", "3000"),
    ] {
        env.insert(k.into(), v.into());
    }
    env
}

/// An MCP `tools/call` of `name` with `arguments` (a JSON object).
pub fn tool(name: &str, arguments: serde_json::Value) -> rmcp::model::CallToolRequestParams {
    rmcp::model::CallToolRequestParams::new(name.to_string())
        .with_arguments(arguments.as_object().cloned().unwrap_or_default())
}

/// The text of a tool result's first content block.
pub fn text_of(result: &rmcp::model::CallToolResult) -> String {
    let value = serde_json::to_value(result).unwrap_or_default();
    value["content"][0]["text"].as_str().unwrap_or_default().to_string()
}

/// One MCP request over streamable HTTP; returns the JSON-RPC response and the session id.
pub async fn mcp(
    client: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: serde_json::Value,
) -> (serde_json::Value, Option<String>) {
    let mut request = client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(s) = session {
        request = request
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-06-18");
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = response.text().await.unwrap_or_default();
    let id = body.get("id").cloned();
    let frame = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:").map(str::trim).or(Some(l)))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|f| id.is_some() && f.get("id") == id.as_ref())
        .unwrap_or(serde_json::Value::Null);
    (frame, session)
}

/// `GET path` of the daemon, with `token` as the bearer when given: the body as text.
pub async fn get_text(d: &Daemon, path: &str, token: Option<&str>) -> String {
    let mut request = reqwest::Client::new().get(format!("{}{path}", d.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    response.text().await.unwrap_or_default()
}

/// `GET path` of the daemon (no token): the body as JSON (`null` when it is not).
pub async fn get_json(d: &Daemon, path: &str) -> serde_json::Value {
    serde_json::from_str(&get_text(d, path, None).await).unwrap_or_default()
}

/// Where `scripts/setup.sh` installs the clients the tests drive (`EXAI_CLIENTS_DIR`, by
/// default `target/clients` of the workspace): Python packages under `python/`, npm ones under
/// `node/`.
pub fn clients_dir() -> std::path::PathBuf {
    std::env::var_os("EXAI_CLIENTS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/clients"))
}

/// A client installed by `scripts/setup.sh` from npm (`claude`, `codex`): its path, or the test
/// fails saying how to install it.
pub fn npm_client(name: &str) -> std::path::PathBuf {
    let path = clients_dir().join("node/node_modules/.bin").join(name);
    assert!(path.exists(), "{} is missing: run scripts/setup.sh", path.display());
    path
}

/// `python3` with the project-local packages (the official openai and anthropic SDKs).
pub fn python() -> Command {
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", clients_dir().join("python"));
    cmd
}

/// Runs a client script from `tests/clients/` with `args`; its stdout parsed as JSON. Fails the
/// test with its stderr when it fails or does not finish within a minute.
pub async fn run_client(script: &str, args: &[&str]) -> serde_json::Value {
    let script = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let run = python().arg(&script).args(args).output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish"))
        .unwrap_or_else(|e| panic!("python3 (run scripts/setup.sh): {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script}: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}
