//! Shared by the `exai` integration tests: the real binary, run with only the environment a
//! test gives it, and what it printed.

#![allow(dead_code)] // each test file uses its own part

use std::collections::HashMap;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// What a run of `exai` ended with.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Runs `exai args…` with only `env` (plus PATH, an empty HOME and a free daemon port).
pub async fn exai(args: &[&str], env: &HashMap<String, String>, stdin: Option<&str>) -> Run {
    let home = std::env::temp_dir().join(format!("exai-cli-home-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&home);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exai"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", &home)
        .env("EXAI_WS_PORT", free_port().to_string())
        .env("EXAI_RETRY_BASE_DELAY_MS", "10")
        .envs(env)
        .current_dir(&home)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn exai: {e}"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("stdin: {e}"));
    }
    let out: Output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("exai {args:?} did not finish"))
        .unwrap_or_else(|e| panic!("exai: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A state directory of its own for one test (its SQLite file).
pub fn state_dir(tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("exai-cli-state-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.display().to_string()
}

pub fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr))
}
