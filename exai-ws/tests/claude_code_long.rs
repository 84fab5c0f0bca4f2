//! A long Claude Code session on exai-ws — Claude Code itself, headless (`-p`), thinking on —
//! with five tool round trips in one session (Read, Glob, Grep, Read, Glob), once relayed to a
//! provider's Anthropic endpoint (GLM) and once translated to a provider's chat endpoint (Kimi).
//! The fake upstream plays the model, asking for the tools in turn with its reasoning before
//! each call, and refuses what the real provider refuses ([`ProviderRules`]: a tool without a
//! type, an unknown beta, more than 128 tools, a tool turn sent back without its reasoning).
//! The upstream log is checked at every turn: the earlier turns' reasoning came back (thinking
//! blocks relayed, `reasoning_content` translated), no beta reached the provider, every tool
//! had a type.

mod common;

use std::path::Path;
use std::time::Duration;

use exai_core::testing::{FakeReply, FakeUpstream, ProviderRules};
use serde_json::{Value, json};

/// The tool results a request carries: `tool_result` blocks (Anthropic) or `tool` messages.
fn tool_results(request: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for m in request["messages"].as_array().into_iter().flatten() {
        if m["role"] == "tool" {
            out.push(m["content"].as_str().unwrap_or_default().to_string());
        }
        for block in m["content"].as_array().into_iter().flatten() {
            if block["type"] == "tool_result" {
                out.push(match &block["content"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
            }
        }
    }
    out
}

/// Whether a request is the agent's own turn (it offers Claude Code's tools).
fn agent_turn(request: &Value) -> bool {
    request["tools"].as_array().is_some_and(|tools| {
        tools
            .iter()
            .any(|t| t["name"] == "Read" || t["function"]["name"] == "Read")
    })
}

/// The reasoning the earlier assistant turns carry back: thinking blocks, or
/// `reasoning_content`.
fn reasoning_sent_back(request: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for m in request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "assistant")
    {
        if let Some(r) = m["reasoning_content"].as_str() {
            out.push(r.to_string());
        }
        for block in m["content"].as_array().into_iter().flatten() {
            if block["type"] == "thinking" {
                out.push(block["thinking"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    out
}

/// The five tool calls, in order, for a session in `work`.
fn plan(work: &Path) -> Vec<(&'static str, Value)> {
    let at = |name: &str| work.join(name).display().to_string();
    let dir = work.display().to_string();
    vec![
        ("Read", json!({"file_path": at("alpha.txt")})),
        ("Glob", json!({"pattern": "**/*.md", "path": dir})),
        (
            "Grep",
            json!({"pattern": "password", "path": dir, "output_mode": "content"}),
        ),
        ("Read", json!({"file_path": at("notes/bravo.md")})),
        ("Glob", json!({"pattern": "*.txt", "path": dir})),
    ]
}

#[tokio::test]
async fn a_long_claude_code_session_relayed_to_glm() {
    long_session(false).await;
}

#[tokio::test]
async fn a_long_claude_code_session_translated_for_kimi() {
    long_session(true).await;
}

async fn long_session(translate: bool) {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let tag = if translate { "kimi" } else { "glm" };
    let work = std::path::PathBuf::from(common::state_dir(&format!("claude-long-work-{tag}")));
    std::fs::create_dir_all(work.join("notes")).unwrap_or_else(|e| panic!("{e}"));
    for (file, text) in [
        ("alpha.txt", "alpha-content-11\n"),
        ("notes/bravo.md", "bravo-content-22\n"),
        ("secret.txt", "password: charlie-33\n"),
    ] {
        std::fs::write(work.join(file), text).unwrap_or_else(|e| panic!("{e}"));
    }
    let steps = plan(&work);
    fake.enforce(if translate {
        ProviderRules::kimi()
    } else {
        ProviderRules::glm()
    });
    fake.respond_with(move |request| {
        if !agent_turn(request) {
            return Some(FakeReply::text("ok"));
        }
        let done = tool_results(request).len();
        match steps.get(done) {
            Some((tool, input)) => Some(
                FakeReply::tool_use(*tool, input.clone()).with_reasoning(format!("step {done}: I will use {tool}")),
            ),
            None => Some(
                FakeReply::text(format!(
                    "All {done} tools ran; the last said: {}",
                    tool_results(request).last().cloned().unwrap_or_default()
                ))
                .with_reasoning("step 5: I can answer now"),
            ),
        }
    });
    let (provider, model) = if translate {
        ("KIMI", "kimi-k2-0905-preview")
    } else {
        ("GLM", "glm-4.6")
    };
    let mut env = fake.env_for(&[provider]);
    if translate {
        env.insert("KIMI_ANTHROPIC_BASE_URL".into(), "none".into());
    }
    let d = common::start(&env, &format!("claude-long-{tag}")).await;

    let home = common::state_dir(&format!("claude-long-home-{tag}"));
    let prompt = "Look around this directory with your tools, step by step, and report.";
    let run = tokio::process::Command::new(common::npm_client("claude"))
        .args(["-p", prompt, "--model", model, "--allowedTools", "Read,Glob,Grep"])
        .args(["--output-format", "json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("ANTHROPIC_BASE_URL", &d.base)
        .env("ANTHROPIC_AUTH_TOKEN", "any")
        .env("MAX_THINKING_TOKENS", "2048")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .current_dir(&work)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .unwrap_or_else(|_| panic!("claude did not finish"))
        .unwrap_or_else(|e| panic!("claude (run scripts/setup.sh): {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let log: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{} tools={} results={}",
                r.path,
                agent_turn(&r.body),
                tool_results(&r.body).len()
            )
        })
        .collect();
    assert!(
        out.status.success(),
        "claude failed: {stderr}\n{stdout}\nupstream: {log:#?}"
    );
    let result: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(result["is_error"], false, "{result}\nupstream: {log:#?}");
    assert!(
        result["result"].as_str().is_some_and(|r| r.contains("All 5 tools ran")),
        "{result}\nupstream: {log:#?}"
    );

    let turns: Vec<_> = fake.requests().into_iter().filter(|r| agent_turn(&r.body)).collect();
    assert_eq!(turns.len(), 6, "five tool turns and the answer: {log:#?}");
    let expected_path = if translate {
        "/v1/chat/completions"
    } else {
        "/anthropic/v1/messages"
    };
    for (k, turn) in turns.iter().enumerate() {
        assert_eq!(turn.path, expected_path);
        assert_eq!(tool_results(&turn.body).len(), k, "turn {k} carries the results so far");
        assert!(
            turn.anthropic_beta.is_none(),
            "turn {k}: no beta reaches the provider: {:?}",
            turn.anthropic_beta
        );
        let tools = turn.body["tools"].as_array().cloned().unwrap_or_default();
        assert!(
            tools
                .iter()
                .all(|t| t["type"].as_str().is_some_and(|ty| !ty.is_empty())),
            "turn {k}: every tool has a type"
        );
        let back = reasoning_sent_back(&turn.body);
        for j in 0..k {
            assert!(
                back.iter().any(|r| r.starts_with(&format!("step {j}:"))),
                "turn {k}: the reasoning of step {j} came back: {back:?}"
            );
        }
    }
    let results = tool_results(&turns[5].body).join("\n");
    for seen in [
        "alpha-content-11",
        "bravo.md",
        "charlie-33",
        "bravo-content-22",
        "secret.txt",
    ] {
        assert!(results.contains(seen), "{seen} in the tools' results: {results}");
    }
}
