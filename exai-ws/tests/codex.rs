//! Codex CLI itself (`@openai/codex` 0.169, installed by `scripts/setup.sh` into the project's
//! clients directory) on exai-ws's `/v1/responses`, with a provider entry pointed at the daemon
//! and the fake upstream behind it — on a GLM model and on Kimi. The fake asks for
//! `exec_command` (`cat` of a file); Codex runs it in its read-only sandbox and sends the output
//! back; the final answer carries the file's content. Codex is kept off the network
//! (`analytics.enabled = false`, `features.plugins = false`).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use exai_core::testing::{FakeReply, FakeUpstream};
use serde_json::{Value, json};

/// The fake model's turn: ask for the file until a tool result has come back, then quote it.
fn agent(request: &Value) -> Option<FakeReply> {
    let messages = request["messages"].as_array()?;
    let has_shell = request["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["function"]["name"] == "exec_command");
    match messages.last() {
        Some(last) if last["role"] == "tool" => {
            let output = last["content"].as_str().unwrap_or_default();
            let said = output.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
            Some(FakeReply::text(format!("The file says: {}", said.trim())))
        }
        _ if has_shell => Some(FakeReply::tool_use("exec_command", json!({"cmd": "cat secret.txt"}))),
        _ => Some(FakeReply::text("no shell tool was offered")),
    }
}

async fn codex_reads_a_file_through(model: &str, tag: &str) {
    let codex = common::npm_client("codex");
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.respond_with(agent);
    let mut env = fake.env_for(&["GLM", "KIMI"]);
    env.insert("EXAI_ADMIN_TOKEN".into(), "admin".into());
    let d = common::start(&env, tag).await;
    let key = common::create_key(&d, "admin", "codex", json!({})).await;

    let root = PathBuf::from(common::state_dir(&format!("{tag}-codex")));
    let (home, work) = (root.join("codex-home"), root.join("work"));
    for dir in [&home, &work] {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    }
    let secret = format!("exai-codex-{}", std::process::id());
    std::fs::write(work.join("secret.txt"), format!("{secret}\n")).unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        r#"model = "{model}"
model_provider = "exai"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false

[model_providers.exai]
name = "exai"
base_url = "{}/v1"
wire_api = "responses"
env_key = "EXAI_KEY"
request_max_retries = 0
stream_max_retries = 0
"#,
        d.base
    );
    std::fs::write(home.join("config.toml"), config).unwrap_or_else(|e| panic!("{e}"));

    let run = tokio::process::Command::new(&codex)
        .args(["exec", "--skip-git-repo-check", "--sandbox", "read-only", "-m", model])
        .arg("Read secret.txt and tell me what it says.")
        .current_dir(&work)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &root)
        .env("CODEX_HOME", &home)
        .env("EXAI_KEY", &key)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("codex exec did not finish"))
        .unwrap_or_else(|e| panic!("codex: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "codex exec failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("The file says: {secret}")),
        "the answer carries the file:\n{stdout}\n{stderr}"
    );

    let sent = fake.requests();
    assert_eq!(sent.len(), 2, "one call for the tool, one for the answer");
    assert!(sent.iter().all(|r| r.path == "/v1/chat/completions"));
    let first = &sent[0].body;
    assert_eq!(first["model"], model);
    assert_eq!(first["stream"], true);
    assert!(
        first["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|t| t["type"] == "function"),
        "only functions reach a chat provider: {}",
        first["tools"]
    );
    assert!(
        first["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["function"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("multi_agent_v1__"))),
        "a namespace's functions are flattened"
    );
    let second = sent[1].body["messages"].as_array().cloned().unwrap_or_default();
    let call = second
        .iter()
        .find(|m| m.get("tool_calls").is_some())
        .cloned()
        .unwrap_or_default();
    assert_eq!(call["tool_calls"][0]["function"]["name"], "exec_command");
    let result = second.last().cloned().unwrap_or_default();
    assert_eq!(result["role"], "tool");
    assert_eq!(result["tool_call_id"], call["tool_calls"][0]["id"]);
    assert!(
        result["content"].as_str().is_some_and(|c| c.contains(&secret)),
        "{result}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn codex_runs_a_tool_on_a_glm_model_through_exai() {
    codex_reads_a_file_through("glm-4.6", "codex-glm").await;
}

#[tokio::test]
async fn codex_runs_a_tool_on_kimi_through_exai() {
    codex_reads_a_file_through("kimi-k2-0905-preview", "codex-kimi").await;
}
