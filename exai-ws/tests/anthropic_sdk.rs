//! The official Anthropic Python SDK (`anthropic`, installed by `scripts/setup.sh` into the
//! project's clients directory) against the
//! real daemon — passed through to the fake upstream's Anthropic side, and translated to its
//! OpenAI side: a plain message, a stream through the SDK's accumulator with a thinking block, a
//! tool round trip whose input streams in pieces, and an error as the SDK's typed exception —
//! with a key, as a team member would call.

mod common;
use exai_core::testing::{FakeReply, FakeUpstream};
use serde_json::json;

#[tokio::test]
async fn the_official_anthropic_sdk_talks_to_exai_passed_through() {
    sdk_session(false).await;
}

#[tokio::test]
async fn the_official_anthropic_sdk_talks_to_exai_translated() {
    sdk_session(true).await;
}

async fn sdk_session(translate: bool) {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_ADMIN_TOKEN".into(), "admin".into());
    if translate {
        env.insert("GLM_ANTHROPIC_BASE_URL".into(), "none".into());
    }
    let d = common::start(&env, if translate { "sdk-translate" } else { "sdk-pass" }).await;
    let secret = common::create_key(&d, "admin", "sdk", json!({})).await;

    fake.push(FakeReply::text("hello from exai").with_usage(11, 4));
    fake.push(FakeReply::text("the answer is 42").with_reasoning("six times seven"));
    fake.push(FakeReply::tool_use("get_weather", json!({"city": "Paris"})));
    fake.push(FakeReply::text("It is sunny in Paris."));
    let seen = common::run_client("anthropic_sdk.py", &[&d.base, &secret]).await;

    assert_eq!(seen["plain"]["text"], "hello from exai", "{seen}");
    assert_eq!(seen["plain"]["stop_reason"], "end_turn");
    assert_eq!(
        (
            seen["plain"]["input_tokens"].clone(),
            seen["plain"]["output_tokens"].clone()
        ),
        (json!(11), json!(4))
    );

    assert_eq!(seen["stream"]["blocks"], json!(["thinking", "text"]), "{seen}");
    assert_eq!(seen["stream"]["thinking"], "six times seven");
    assert_eq!(seen["stream"]["text"], "the answer is 42");
    assert!(seen["stream"]["pieces"].as_u64().is_some_and(|n| n > 1), "{seen}");

    assert_eq!(seen["tools"]["stop_reason"], "tool_use", "{seen}");
    assert_eq!(seen["tools"]["name"], "get_weather");
    assert_eq!(seen["tools"]["input"], json!({"city": "Paris"}));
    assert_eq!(seen["tools"]["answer"], "It is sunny in Paris.");
    let sent = fake.requests();
    let path = if translate {
        "/v1/chat/completions"
    } else {
        "/anthropic/v1/messages"
    };
    assert!(sent.iter().all(|r| r.path == path), "every call took the {path} path");
    let result_sent = sent.into_iter().nth(3).map(|r| r.body).unwrap_or_default();
    if translate {
        assert_eq!(result_sent["messages"][2]["role"], "tool", "{result_sent}");
        let call_id = &result_sent["messages"][1]["tool_calls"][0]["id"];
        assert!(
            call_id.as_str().is_some_and(|id| id.starts_with("call_")),
            "{result_sent}"
        );
        assert_eq!(&result_sent["messages"][2]["tool_call_id"], call_id);
        assert_eq!(result_sent["messages"][2]["content"], "sunny, 21 C");
    } else {
        assert_eq!(
            result_sent["messages"][2]["content"][0]["type"], "tool_result",
            "{result_sent}"
        );
        let use_id = result_sent["messages"][1]["content"]
            .as_array()
            .and_then(|blocks| blocks.iter().find(|b| b["type"] == "tool_use"))
            .map(|b| b["id"].clone())
            .unwrap_or_default();
        assert!(
            use_id.as_str().is_some_and(|id| id.starts_with("toolu_")),
            "{result_sent}"
        );
        assert_eq!(result_sent["messages"][2]["content"][0]["tool_use_id"], use_id);
    }

    assert_eq!(
        seen["error"],
        json!({"status": 404, "type": "not_found_error"}),
        "{seen}"
    );
}
