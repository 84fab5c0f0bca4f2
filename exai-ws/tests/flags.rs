//! `exai-ws`'s flags with the real binary: `--help` lists the endpoints and the main settings,
//! `--host`, `--port` and `--config` win over the environment, and a flag it does not know
//! exits 2 with a hint naming the variable that sets what it looked like.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{command, exits_with, free_port, state_dir};
use exai_core::testing::FakeUpstream;

#[tokio::test]
async fn help_lists_the_endpoints_and_the_main_settings() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_exai-ws"))
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "--host",
        "--port",
        "--config",
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/responses",
        "/mcp",
        "/healthz",
        "/admin/keys",
        "GLM_API_KEY",
        "EXAI_WS_TOKEN",
        "EXAI_STATE_DIR",
        "EXAI_WS_PORT",
    ] {
        assert!(help.contains(want), "{want} in:\n{help}");
    }
}

#[tokio::test]
async fn an_unknown_flag_exits_2_naming_the_variable_to_set() {
    for (flag, hint) in [
        ("--token", "EXAI_WS_TOKEN"),
        ("--threads=2", "EXAI_WS_THREADS"),
        ("--nonsense", "exai config"),
    ] {
        let mut cmd = command(&HashMap::new(), free_port(), &state_dir("flags-unknown"));
        cmd.arg(flag);
        let (code, stderr) = exits_with(cmd).await;
        assert_eq!(code, 2, "{flag}: {stderr}");
        assert!(stderr.contains("hint:") && stderr.contains(hint), "{flag}: {stderr}");
    }
}

#[tokio::test]
async fn host_port_and_config_flags_win_over_the_environment() {
    let fake = FakeUpstream::start().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = state_dir("flags-config");
    let file = std::path::Path::new(&dir).join("flags.toml");
    std::fs::write(&file, "[daemon]\nadmin_token = \"from-the-file\"\n").unwrap_or_else(|e| panic!("{e}"));
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_WS_HOST".into(), "256.0.0.1".into());
    env.insert("EXAI_CONFIG".into(), "/nonexistent/exai.toml".into());
    let port = free_port();
    // The environment's port (set by `command`) is another one, its host unusable, its file
    // missing: each flag must win for the daemon to come up and take the file's admin token.
    let mut cmd = command(&env, free_port(), &dir);
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--config"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _child = cmd.spawn().unwrap_or_else(|e| panic!("{e}"));
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..200 {
        if reqwest::get(format!("{base}/healthz")).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "exai-ws did not come up on the --port");
    let keys = reqwest::Client::new()
        .get(format!("{base}/admin/keys"))
        .bearer_auth("from-the-file")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(keys.status().as_u16(), 200, "the --config file's admin token");
}
