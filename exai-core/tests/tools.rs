//! The MCP tool suite end to end through the gateway: what the provider received, and what the
//! client gets back.

mod common;

use std::time::Duration;

use exai_core::testing::{FakeReply, FakeUpstream};
use exai_core::{FailureKind, FileAccess, Gateway, ToolError, ToolOutput, ToolSuite};
use serde_json::{Value, json};

/// A call as an embedder makes it: this machine's files are readable.
async fn call(gw: &Gateway, tool: &str, args: Value) -> anyhow::Result<ToolOutput> {
    let suite = ToolSuite::new(gw.clone()).with_file_access(FileAccess::local());
    Ok(suite.call_embedded(tool, args, None).await?)
}

fn tools(gw: &Gateway) -> Vec<exai_core::ToolDef> {
    ToolSuite::new(gw.clone()).list()
}

/// The message of an invalid-arguments failure, or what came instead.
fn invalid_arguments(out: &ToolOutput) -> Option<&str> {
    match &out.failure {
        Some(f) if f.kind == FailureKind::InvalidArguments => out.structured["error"].as_str(),
        _ => None,
    }
}

fn temp_file(name: &str, content: &str) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("exai-tools-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, content)?;
    Ok(path.display().to_string())
}

fn user_text(request: &exai_core::testing::RecordedRequest) -> String {
    let messages = request.messages();
    messages
        .last()
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn profiles_choose_the_tools_and_every_schema_is_closed() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let standard = tools(&common::gateway(&fake, &["GLM"], &[]).await);
    let names: Vec<&str> = standard.iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "chat",
            "thinkdeep",
            "planner",
            "codereview",
            "precommit",
            "debug",
            "secaudit",
            "docgen",
            "analyze",
            "refactor",
            "tracer",
            "testgen",
            "consensus",
            "challenge",
            "listmodels",
            "version",
            "status"
        ]
    );
    for t in &standard {
        assert_eq!(t.input_schema["type"], "object", "{}", t.name);
        assert_eq!(t.input_schema["additionalProperties"], false, "{}", t.name);
        assert!(t.description.len() < 300, "{} has a long description", t.name);
    }
    let lean = tools(&common::gateway(&fake, &["GLM"], &[("EXAI_TOOLS", "lean")]).await);
    let lean_names: Vec<&str> = lean.iter().map(|t| t.name).collect();
    assert_eq!(
        lean_names,
        [
            "chat",
            "thinkdeep",
            "planner",
            "codereview",
            "debug",
            "consensus",
            "listmodels",
            "version",
            "status"
        ]
    );
    let custom = common::gateway(
        &fake,
        &["GLM"],
        &[("EXAI_TOOLS", "chat,status,debug"), ("EXAI_DISABLED_TOOLS", "status")],
    )
    .await;
    let custom_names: Vec<&str> = tools(&custom).iter().map(|t| t.name).collect();
    assert_eq!(custom_names, ["chat", "debug"]);
    assert!(matches!(
        ToolSuite::new(custom).call_embedded("status", json!({}), None).await,
        Err(ToolError::UnknownTool { .. })
    ));
    // The definitions' cost to the client, as bytes / 4.
    let tokens = |tools: &[exai_core::ToolDef]| serde_json::to_string(tools).map(|s| s.len() / 4).unwrap_or(usize::MAX);
    assert!(tokens(&standard) < 12_000, "standard: {} tokens", tokens(&standard));
    assert!(tokens(&lean) < 5_000, "lean: {} tokens", tokens(&lean));
    let model_enum = &standard[0].input_schema["properties"]["model"]["enum"];
    assert!(
        model_enum
            .as_array()
            .is_some_and(|m| m.contains(&json!("auto")) && m.contains(&json!("glm-4.6")))
    );
    Ok(())
}

#[tokio::test]
async fn chat_embeds_files_with_line_numbers_and_reports_who_answered() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::text("Looks fine.").with_usage(50, 3));
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let file = temp_file("lib.rs", "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n")?;
    let out = call(
        &gw,
        "chat",
        json!({"prompt": "Is this right?", "files": [file], "model": "glm"}),
    )
    .await?;
    assert!(!out.is_error(), "{}", out.text);
    assert!(out.text.starts_with("Looks fine."));
    assert!(out.text.contains("glm-4.6 via glm"));
    assert_eq!(out.structured["status"], "complete");
    assert_eq!(out.structured["model"], "glm-4.6");
    assert_eq!(out.structured["files_embedded"], json!([file]));
    let sent = &fake.requests()[0];
    let messages = sent.messages();
    assert_eq!(messages[0]["role"], "system");
    assert!(
        messages[0]["content"]
            .as_str()
            .is_some_and(|s| s.contains("senior engineer"))
    );
    let text = user_text(sent);
    assert!(text.starts_with("Is this right?"));
    assert!(text.contains(&format!("--- BEGIN FILE: {file} (3 lines) ---")));
    assert!(text.contains("    2│     a + b"));
    // Memory keeps the path, not the contents.
    let id = out.structured["continuation_id"].as_str().unwrap_or_default();
    let thread = gw.thread(id).await?.ok_or_else(|| anyhow::anyhow!("no thread"))?;
    assert_eq!(thread.turns[0].content, "Is this right?");
    assert_eq!(thread.turns[0].files, [file]);
    Ok(())
}

#[tokio::test]
async fn thinking_and_web_search_reach_each_provider_in_its_own_form() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = common::gateway(&fake, &["GLM", "KIMI"], &[]).await;
    call(
        &gw,
        "chat",
        json!({"prompt": "news", "model": "glm", "thinking_mode": "max", "use_websearch": true}),
    )
    .await?;
    call(
        &gw,
        "chat",
        json!({"prompt": "news", "model": "kimi", "use_websearch": true}),
    )
    .await?;
    let sent = fake.requests();
    assert_eq!(sent[0].body["thinking"]["type"], "enabled");
    assert_eq!(sent[0].body["tools"][0]["type"], "web_search");
    assert_eq!(sent[1].body["tools"][0]["function"]["name"], "$web_search");
    assert!(sent[1].body.get("thinking").is_none());
    Ok(())
}

#[tokio::test]
async fn a_three_step_debug_session_sends_every_finding_to_the_expert_at_the_end() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::text("Root cause: the cache key omits the tenant id."));
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let file = temp_file("cache.rs", "fn key(user: &str) -> String { user.to_string() }\n")?;
    let step = |n: u32, next: bool, findings: &str, id: Option<&str>| {
        let mut args = json!({
            "step": format!("step {n}"), "step_number": n, "total_steps": 3, "next_step_required": next,
            "findings": findings, "relevant_files": [file.clone()], "hypothesis": "cache key collision", "confidence": "medium"
        });
        if let Some(id) = id {
            args["continuation_id"] = json!(id);
        }
        args
    };
    let first = call(&gw, "debug", step(1, true, "users see each other's dashboards", None)).await?;
    assert_eq!(first.structured["status"], "pause_for_investigation");
    assert!(first.text.contains("step_number 2"), "{}", first.text);
    let id = first.structured["continuation_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let second = call(
        &gw,
        "debug",
        step(2, true, "only for users with the same name", Some(&id)),
    )
    .await?;
    assert_eq!(second.structured["continuation_id"], json!(id));
    assert!(fake.requests().is_empty(), "intermediate steps make no provider call");
    let last = call(&gw, "debug", step(3, false, "key() ignores the tenant", Some(&id))).await?;
    assert_eq!(last.structured["status"], "complete");
    assert!(last.text.contains("Root cause: the cache key omits the tenant id."));
    let sent = &fake.requests()[0];
    let all: String = sent
        .messages()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    for finding in [
        "users see each other's dashboards",
        "only for users with the same name",
        "key() ignores the tenant",
    ] {
        assert!(all.contains(finding), "the expert saw '{finding}'");
    }
    assert!(
        sent.messages()[0]["content"]
            .as_str()
            .is_some_and(|s| s.contains("expert debugger"))
    );
    assert!(
        user_text(sent).contains("fn key(user: &str)"),
        "relevant files embedded"
    );
    Ok(())
}

#[tokio::test]
async fn certain_confidence_ends_the_workflow_early_and_the_expert_can_be_skipped() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let args = json!({"step": "s", "step_number": 1, "total_steps": 4, "next_step_required": true, "findings": "obvious", "confidence": "certain"});
    let out = call(&gw, "thinkdeep", args).await?;
    assert_eq!(
        (out.structured["status"].as_str(), fake.requests().len()),
        (Some("complete"), 1)
    );
    let skip = json!({"step": "s", "step_number": 1, "total_steps": 1, "next_step_required": false, "findings": "f", "use_assistant_model": false});
    let out = call(&gw, "codereview", skip).await?;
    assert_eq!(
        (out.structured["status"].as_str(), fake.requests().len()),
        (Some("complete"), 1)
    );
    Ok(())
}

#[tokio::test]
async fn a_conversation_continues_across_different_tools() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let chat = call(
        &gw,
        "chat",
        json!({"prompt": "We use a token bucket for rate limiting."}),
    )
    .await?;
    let id = chat.structured["continuation_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let review = json!({"step": "review the limiter", "step_number": 1, "total_steps": 1, "next_step_required": false,
        "findings": "refill uses wall-clock time", "continuation_id": id});
    let out = call(&gw, "codereview", review).await?;
    assert_eq!(out.structured["continuation_id"], json!(id));
    let sent = fake.requests()[1].messages();
    assert!(
        sent.iter()
            .any(|m| m["content"] == "We use a token bucket for rate limiting."),
        "chat history reached codereview"
    );
    let challenge = call(
        &gw,
        "challenge",
        json!({"prompt": "wall-clock time is fine here", "continuation_id": id}),
    )
    .await?;
    assert!(challenge.text.contains("do not simply agree"));
    call(&gw, "chat", json!({"prompt": "so?", "continuation_id": id})).await?;
    let last = fake.requests()[2].messages();
    assert!(last.iter().any(|m| {
        m["content"]
            .as_str()
            .is_some_and(|c| c.contains("[challenge] wall-clock"))
    }));
    assert_eq!(fake.requests().len(), 3, "challenge made no provider call");
    Ok(())
}

#[tokio::test]
async fn consensus_reports_a_failing_model_and_still_synthesises() -> anyhow::Result<()> {
    let glm = FakeUpstream::start().await?;
    let kimi = FakeUpstream::start().await?;
    kimi.require_key("another-key");
    let mut env = common::fast_env();
    env.extend(glm.env_for(&["GLM"]));
    env.extend(kimi.env_for(&["KIMI"]));
    env.insert("EXAI_FALLBACK".into(), "glm".into());
    let gw = Gateway::new(exai_core::Config::from_parts(&env, None)?).await?;
    glm.push(FakeReply::text("FOR: it is simpler."));
    glm.push(FakeReply::text("AGAINST: it will not scale."));
    glm.push(FakeReply::text("Synthesis: start simple, plan the split."));
    let args = json!({"prompt": "Should we use a monolith?", "models": [
        {"model": "glm", "stance": "for"}, {"model": "flash", "stance": "against"}, {"model": "kimi", "stance": "neutral"}
    ]});
    let out = call(&gw, "consensus", args).await?;
    assert!(!out.is_error(), "{}", out.text);
    assert!(out.text.contains("FOR: it is simpler.") && out.text.contains("AGAINST: it will not scale."));
    assert!(out.text.contains("### Not consulted") && out.text.contains("kimi"));
    assert!(out.text.contains("Synthesis: start simple"));
    let consulted = out.structured["consulted"].as_array().cloned().unwrap_or_default();
    let statuses: Vec<&str> = consulted.iter().map(|c| c["status"].as_str().unwrap_or("")).collect();
    assert_eq!(statuses, ["ok", "ok", "error"]);
    let synthesis = glm.requests().last().map(user_text).unwrap_or_default();
    assert!(synthesis.contains("FOR: it is simpler.") && synthesis.contains("Could not be consulted"));
    let stances: Vec<String> = glm.requests()[..2]
        .iter()
        .map(|r| r.messages()[0]["content"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(stances.iter().any(|s| s.contains("FOR —")) && stances.iter().any(|s| s.contains("AGAINST —")));
    let duplicate =
        json!({"prompt": "x", "models": [{"model": "glm", "stance": "for"}, {"model": "glm-4.6", "stance": "for"}]});
    assert!(invalid_arguments(&call(&gw, "consensus", duplicate).await?).is_some());
    Ok(())
}

#[tokio::test]
async fn a_missing_file_and_an_oversized_prompt_are_answered_without_a_provider_call() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = common::gateway(&fake, &["GLM"], &[("EXAI_MAX_PROMPT_CHARS", "100")]).await;
    let missing = call(&gw, "chat", json!({"prompt": "read it", "files": ["/no/such/file.rs"]})).await?;
    assert!(missing.is_error());
    assert_eq!(missing.structured["status"], "file_error");
    assert!(missing.text.contains("/no/such/file.rs"), "{}", missing.text);
    let relative = call(&gw, "chat", json!({"prompt": "x", "files": ["src/main.rs"]})).await?;
    assert!(
        invalid_arguments(&relative).is_some_and(|m| m.contains("absolute")),
        "{relative:?}"
    );
    let big = call(&gw, "chat", json!({"prompt": "x".repeat(101)})).await?;
    assert!(big.is_error());
    assert_eq!(big.structured["status"], "resend_prompt");
    assert!(big.text.contains("absolute path in `files`"));
    assert!(fake.requests().is_empty());
    Ok(())
}

#[tokio::test]
async fn bad_arguments_and_provider_failures_come_back_clearly() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.require_key("right");
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let typo = call(&gw, "chat", json!({"promt": "hi"})).await?;
    assert!(
        invalid_arguments(&typo).is_some_and(|m| m.contains("'promt'")),
        "{typo:?}"
    );
    assert!(
        typo.text
            .starts_with("invalid arguments for chat: unknown parameter 'promt'"),
        "{}",
        typo.text
    );
    let unknown = ToolSuite::new(gw.clone()).call_embedded("nope", json!({}), None).await;
    assert!(matches!(unknown, Err(ToolError::UnknownTool { available, .. }) if available.contains("chat")));
    let auth = call(&gw, "chat", json!({"prompt": "hi"})).await?;
    assert!(auth.is_error());
    assert!(auth.text.contains("GLM_API_KEY"), "{}", auth.text);
    assert_eq!(auth.structured["kind"], "auth");
    Ok(())
}

#[tokio::test]
async fn long_output_is_cut_cleanly_with_a_note() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::text("line of text\n".repeat(50)));
    let gw = common::gateway(&fake, &["GLM"], &[("EXAI_MAX_OUTPUT_CHARS", "200")]).await;
    let out = call(&gw, "chat", json!({"prompt": "long please"})).await?;
    assert!(out.text.contains("[output truncated"), "{}", out.text);
    assert!(out.text.len() < 400);
    assert_eq!(
        out.structured["truncated"]["total_chars"].as_u64().map(|t| t > 600),
        Some(true)
    );
    Ok(())
}

#[tokio::test]
async fn progress_reports_stages_streaming_and_a_heartbeat() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(
        FakeReply::text("slow answer ".repeat(10))
            .with_delay(Duration::from_millis(1_500))
            .with_chunk_delay(Duration::from_millis(60)),
    );
    let gw = common::gateway(&fake, &["GLM"], &[("EXAI_PROGRESS_HEARTBEAT_SECS", "1")]).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = ToolSuite::new(gw.clone())
        .call_embedded("chat", json!({"prompt": "take your time"}), Some(tx))
        .await?;
    assert!(!out.is_error());
    let reports: Vec<exai_core::Progress> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    let messages: Vec<&str> = reports.iter().map(|p| p.message.as_str()).collect();
    assert!(
        messages.first().is_some_and(|m| m.starts_with("calling glm/glm-4.6")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("still working (1 s): calling glm")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("streaming the reply")),
        "{messages:?}"
    );
    assert!(
        reports.windows(2).all(|w| w[0].progress < w[1].progress),
        "progress increases"
    );
    Ok(())
}

#[tokio::test]
async fn listmodels_version_and_status_describe_the_server() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    call(&gw, "chat", json!({"prompt": "hello there"})).await?;
    let models = call(&gw, "listmodels", json!({})).await?;
    assert!(
        models.text.contains("✓ glm-4.6 (aliases: glm)") && models.text.contains("kimi (kimi, not configured)"),
        "{}",
        models.text
    );
    let suite = ToolSuite::new(gw.clone()).with_protocol("mcp", vec!["2025-03-26".into(), "2025-06-18".into()]);
    let version = suite.call_embedded("version", json!({}), None).await?;
    assert!(
        version.text.contains("protocol mcp: 2025-03-26, 2025-06-18"),
        "{}",
        version.text
    );
    assert_eq!(version.structured["protocols"]["mcp"][1], "2025-06-18");
    let status = call(&gw, "status", json!({})).await?;
    assert!(
        status.text.contains("glm: configured, circuit closed, 1 calls"),
        "{}",
        status.text
    );
    assert!(status.text.contains("glm/glm-4.6: 1 requests"));
    assert!(status.text.contains("hello there"), "recent conversations listed");
    assert_eq!(status.structured["gateway"]["memory"]["backend"], "local");
    assert!(invalid_arguments(&call(&gw, "version", json!({"x": 1})).await?).is_some());
    Ok(())
}
