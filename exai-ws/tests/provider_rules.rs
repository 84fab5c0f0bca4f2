//! Each provider's Anthropic-wire rules, against a fake upstream that refuses what that provider
//! refuses: Kimi's 128-tool cap (a 400 in Anthropic's shape naming the cap and the count, or the
//! tools past it dropped with `anthropic.trim_tools` and a warning header), on the relayed and
//! the translated path.

mod common;

use exai_core::testing::{FakeUpstream, ProviderRules};
use serde_json::{Value, json};

async fn ask(base: &str, tools: usize) -> (u16, Option<String>, Value) {
    let tools: Vec<Value> = (0..tools)
        .map(|i| json!({"name": format!("tool_{i}"), "description": "d", "input_schema": {"type": "object"}}))
        .collect();
    let body = json!({"model": "kimi-k2-0905-preview", "max_tokens": 64, "tools": tools,
        "messages": [{"role": "user", "content": "hi"}]});
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    let warning = response
        .headers()
        .get("x-exai-warning")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, warning, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn kimis_tool_cap_is_a_clear_400_or_a_trim_on_both_paths() {
    for translate in [false, true] {
        let Ok(fake) = FakeUpstream::start().await else {
            panic!("fake")
        };
        fake.enforce(ProviderRules::kimi());
        let mut env = fake.env_for(&["KIMI"]);
        if translate {
            env.insert("KIMI_ANTHROPIC_BASE_URL".into(), "none".into());
        }
        let tag = if translate { "translated" } else { "relayed" };
        let strict = common::start(&env, &format!("rules-strict-{tag}")).await;
        let (status, _, body) = ask(&strict.base, 140).await;
        assert_eq!(status, 400, "{tag}: {body}");
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("128") && message.contains("140"), "{tag}: {message}");
        assert!(fake.requests().is_empty(), "{tag}: refused before the provider");
        let (status, warning, _) = ask(&strict.base, 128).await;
        assert_eq!((status, warning), (200, None), "{tag}: at the cap is fine");

        env.insert("EXAI_ANTHROPIC_TRIM_TOOLS".into(), "true".into());
        let trimming = common::start(&env, &format!("rules-trim-{tag}")).await;
        let (status, warning, body) = ask(&trimming.base, 140).await;
        assert_eq!(status, 200, "{tag}: {body}");
        assert!(
            warning.as_deref().is_some_and(|w| w.contains("12 of 140")),
            "{tag}: {warning:?}"
        );
        let sent = fake.requests().pop().map(|r| r.body).unwrap_or_default();
        assert_eq!(sent["tools"].as_array().map(Vec::len), Some(128), "{tag}");
    }
}
