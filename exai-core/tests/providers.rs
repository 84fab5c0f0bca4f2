//! Each provider's quirks, checked on what the fake upstream actually received and on what the
//! caller got back.

mod common;

use std::path::Path;

use exai_core::testing::{FakeReply, FakeUpstream};
use exai_core::{ChatRequest, Config, Error, Gateway, ProviderErrorKind, ThinkingMode};
use serde_json::json;

#[tokio::test]
async fn glm_gets_its_thinking_switch_and_web_search_tool() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let request = ChatRequest::new("news?")
        .model("glm")
        .thinking(ThinkingMode::High)
        .web_search(true)
        .temperature(1.5);
    gw.chat(request).await?;
    let minimal = ChatRequest::new("quick").model("glm").thinking(ThinkingMode::Minimal);
    gw.chat(minimal).await?;
    let sent = fake.requests();
    assert_eq!(sent[0].body["thinking"], json!({"type": "enabled"}));
    assert_eq!(sent[0].body["tools"][0]["type"], "web_search");
    assert_eq!(sent[0].body["temperature"], 1.0);
    assert_eq!(sent[1].body["thinking"], json!({"type": "disabled"}));
    assert!(sent[1].body.get("tools").is_none());
    Ok(())
}

#[tokio::test]
async fn kimi_web_search_echoes_the_builtin_call_and_returns_the_final_answer() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::json(json!({
        "model": "kimi-k2-0905-preview",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "",
            "tool_calls": [{"id": "search-1", "type": "builtin_function",
                "function": {"name": "$web_search", "arguments": "{\"search_result\":{\"search_id\":\"s1\"}}"}}]
        }}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2}
    })));
    fake.push(FakeReply::text("Rust 1.95 is out").with_usage(300, 8));
    let gw = common::gateway(&fake, &["KIMI"], &[]).await;
    let request = ChatRequest::new("latest rust?").model("kimi").web_search(true);
    let reply = gw.chat(request).await?;
    assert_eq!(reply.text, "Rust 1.95 is out");
    assert_eq!(
        (reply.usage.input_tokens, reply.usage.output_tokens),
        (310, 10),
        "both rounds are billed"
    );
    let sent = fake.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].body["tools"][0]["function"]["name"], "$web_search");
    let echoed = sent[1].messages();
    let tool = echoed.last().cloned().unwrap_or_default();
    assert_eq!(
        (tool["role"].as_str(), tool["tool_call_id"].as_str()),
        (Some("tool"), Some("search-1"))
    );
    assert_eq!(tool["content"], "{\"search_result\":{\"search_id\":\"s1\"}}");
    Ok(())
}

#[tokio::test]
async fn minimax_reasoning_in_think_tags_is_split_from_the_reply() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::text("<think>the user wants 4</think>\n\nIt is 4."));
    fake.push(FakeReply::text("<think>again 4</think>Still 4."));
    let gw = common::gateway(&fake, &["MINIMAX"], &[]).await;
    let request = ChatRequest::new("2+2?").temperature(0.0);
    let plain = gw.chat(request).await?;
    assert_eq!(
        (plain.text.as_str(), plain.reasoning.as_deref()),
        ("\n\nIt is 4.", Some("the user wants 4"))
    );
    let streamed = gw
        .chat_stream(ChatRequest::new("2+2?"))
        .await?
        .collect_response()
        .await?;
    assert_eq!(
        (streamed.text.as_str(), streamed.reasoning.as_deref()),
        ("Still 4.", Some("again 4"))
    );
    let sent = &fake.requests()[0];
    assert_eq!(sent.body["reasoning_split"], true);
    assert!((sent.body["temperature"].as_f64().unwrap_or(0.0) - 0.01).abs() < 1e-6);
    Ok(())
}

#[tokio::test]
async fn minimax_errors_inside_a_200_are_errors() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::json(
        json!({"base_resp": {"status_code": 1004, "status_msg": "login fail"}}),
    ));
    let gw = common::gateway(&fake, &["MINIMAX"], &[]).await;
    let err = gw.chat(ChatRequest::new("hi")).await.err();
    assert!(
        matches!(&err, Some(Error::Provider(e)) if matches!(e.kind, ProviderErrorKind::Auth { .. })),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn glm_no_balance_429_is_not_retried() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::status(429).with_body(r#"{"error":{"code":"1113","message":"insufficient balance"}}"#));
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let err = gw
        .chat(ChatRequest::new("hi").model("glm"))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("no balance"), "{err}");
    assert_eq!(fake.requests().len(), 1);
    Ok(())
}

#[tokio::test]
async fn an_openai_compatible_provider_from_the_file_works_keyless_with_its_own_models() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let toml = format!(
        r#"
        default_model = "local/qwen3"
        [providers.local]
        base_url = "{}"
        [[providers.local.models]]
        id = "qwen3"
        context_window = 32768
        thinking = true
        "#,
        fake.base_url()
    );
    let config = Config::from_parts(&common::fast_env(), Some((Path::new("exai.toml"), &toml)))?;
    let gw = Gateway::new(config).await?;
    fake.push(FakeReply::text("<think>hmm</think>hello"));
    let request = ChatRequest::new("hi").thinking(ThinkingMode::Low);
    let reply = gw.chat(request).await?;
    assert_eq!((reply.provider.as_str(), reply.model.as_str()), ("local", "qwen3"));
    assert_eq!(
        (reply.text.as_str(), reply.reasoning.as_deref()),
        ("hello", Some("hmm"))
    );
    let sent = &fake.requests()[0];
    assert_eq!(sent.authorization, None, "no key configured, none sent");
    assert_eq!(sent.body["reasoning_effort"], "low");
    Ok(())
}
