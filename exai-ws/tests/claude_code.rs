//! Claude Code itself (`@anthropic-ai/claude-code`, installed by `scripts/setup.sh` into the
//! project's clients directory; its native binary runs offline against a local
//! `ANTHROPIC_BASE_URL`) doing a task that needs a tool
//! round trip — reading a file with its Read tool — on exai-ws with a key, once passed through
//! to the fake upstream's Anthropic side and once translated to its OpenAI side. The fake plays
//! the model: asked with the Read tool on offer, it calls Read on the file; given the tool's
//! result, it answers with what the file says; anything else (Claude Code's own side requests)
//! gets a short reply.

mod common;

use std::time::Duration;

use exai_core::testing::{FakeReply, FakeUpstream};
use serde_json::{Value, json};

/// The text of a message's `tool_result` blocks (Anthropic), or of a `tool` message (OpenAI).
fn tool_result(message: &Value) -> Option<String> {
    if message["role"] == "tool" {
        return message["content"].as_str().map(str::to_string);
    }
    let blocks = message.get("content")?.as_array()?;
    let results: Vec<String> = blocks
        .iter()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| match &b["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    (!results.is_empty()).then(|| results.join("\n"))
}

#[tokio::test]
async fn claude_code_reads_a_file_through_exai_passed_through() {
    claude_code_reads_a_file(false).await;
}

#[tokio::test]
async fn claude_code_reads_a_file_through_exai_translated() {
    claude_code_reads_a_file(true).await;
}

async fn claude_code_reads_a_file(translate: bool) {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let tag = if translate { "translate" } else { "pass" };
    let work = common::state_dir(&format!("claude-code-work-{tag}"));
    let file = std::path::Path::new(&work).join("notes.txt");
    std::fs::write(&file, "The password is periwinkle-42.\n").unwrap_or_else(|e| panic!("{e}"));
    let path = file.display().to_string();
    let target = path.clone();
    fake.respond_with(move |request| {
        let messages = request.get("messages")?.as_array()?;
        let last = messages.last()?;
        if let Some(result) = tool_result(last) {
            return Some(FakeReply::text(format!("The file says: {}", result.trim())));
        }
        let offers_read = request["tools"].as_array().is_some_and(|tools| {
            tools
                .iter()
                .any(|t| t["name"] == "Read" || t["function"]["name"] == "Read")
        });
        if offers_read {
            return Some(FakeReply::tool_use("Read", json!({"file_path": target})));
        }
        Some(FakeReply::text("ok"))
    });
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_ADMIN_TOKEN".into(), "admin".into());
    if translate {
        env.insert("GLM_ANTHROPIC_BASE_URL".into(), "none".into());
    }
    let d = common::start(&env, &format!("claude-code-{tag}")).await;
    let secret = common::create_key(&d, "admin", "claude-code", json!({})).await;

    let home = common::state_dir(&format!("claude-code-home-{tag}"));
    let prompt = format!("Read the file {path} and tell me the password in it.");
    let run = tokio::process::Command::new(common::npm_client("claude"))
        .args(["-p", &prompt, "--allowedTools", "Read", "--output-format", "json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("ANTHROPIC_BASE_URL", &d.base)
        .env("ANTHROPIC_AUTH_TOKEN", &secret)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .current_dir(&work)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("claude did not finish"))
        .unwrap_or_else(|e| panic!("claude (run scripts/setup.sh): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let sent: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.path, r.body["model"]))
        .collect();
    assert!(
        out.status.success(),
        "claude failed: {stderr}\n{stdout}\nrequests: {sent:?}"
    );
    let result: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(result["is_error"], false, "{result}");
    assert!(
        result["result"].as_str().is_some_and(|r| r.contains("periwinkle-42")),
        "the answer needed the file, read by Claude Code's Read tool: {result}\nrequests: {sent:?}"
    );
    // The tool's result went back through exai to the provider.
    let round_trip = fake.requests().iter().any(|r| {
        r.body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(tool_result)
            .is_some_and(|t| t.contains("periwinkle-42"))
    });
    assert!(round_trip, "requests: {sent:?}");
    let path = if translate {
        "/v1/chat/completions"
    } else {
        "/anthropic/v1/messages"
    };
    assert!(fake.requests().iter().all(|r| r.path == path), "{sent:?}");
}
