//! Conversations belong to the key that started them: on a daemon with two keys (alice and bob),
//! bob continuing alice's conversation is answered exactly as an unknown conversation would be
//! — over the EXAI protocol and MCP over HTTP — and nothing of hers reaches the provider; alice
//! and the master token continue it.

mod common;

use common::ws::{hello, send};
use common::{Daemon, text_of, tool};
use exai_core::testing::FakeUpstream;
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

/// A `chat` tool call over the EXAI protocol with `token`: its result frame.
async fn exai_chat(d: &Daemon, token: &str, args: Value) -> Value {
    let mut ws = common::ws::connect(d).await;
    let ack = hello(&mut ws, json!({"token": token})).await;
    assert_eq!(ack["op"], "hello_ack", "{ack}");
    send(
        &mut ws,
        json!({"op": "call_tool", "request_id": "r", "name": "chat", "arguments": args}),
    )
    .await;
    loop {
        let frame = common::ws::frame(&mut ws).await;
        if frame["op"] == "call_tool_res" || frame["op"] == "error" {
            return frame;
        }
    }
}

/// The text of an error result, with `id` written as `ID`.
fn error_text(frame: &Value, id: &str) -> String {
    let text = if frame["op"] == "error" {
        frame["error"].to_string()
    } else {
        frame["text"].to_string()
    };
    text.replace(id, "ID")
}

#[tokio::test]
async fn another_keys_conversation_is_answered_as_an_unknown_one() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_ADMIN_TOKEN".into(), "admin-token".into());
    env.insert("EXAI_WS_TOKEN".into(), "master-token".into());
    let d = common::start(&env, "ownership").await;
    let alice = common::create_key(&d, "admin-token", "alice", json!({})).await;
    let bob = common::create_key(&d, "admin-token", "bob", json!({})).await;

    let started = exai_chat(&d, &alice, json!({"prompt": "my locker code is 4711"})).await;
    let id = started["structured"]["continuation_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .to_string();
    let before = fake.requests().len();

    // bob, with alice's id and with an id nobody has: the same answer.
    let stolen = exai_chat(&d, &bob, json!({"prompt": "what was the code?", "continuation_id": id})).await;
    let unknown_id = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
    let unknown = exai_chat(
        &d,
        &bob,
        json!({"prompt": "what was the code?", "continuation_id": unknown_id}),
    )
    .await;
    assert_eq!(error_text(&stolen, &id), error_text(&unknown, unknown_id), "no oracle");
    assert!(error_text(&stolen, &id).contains("not found"), "{stolen}");
    assert_eq!(fake.requests().len(), before, "nothing of alice's reached the provider");

    // The same over MCP over HTTP, with bob's key as the bearer token.
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", d.base)).auth_header(bob.clone());
    let client =
        ().serve(StreamableHttpClientTransport::from_config(config))
            .await
            .unwrap_or_else(|e| panic!("initialize: {e}"));
    let call = |continuation: &str| tool("chat", json!({"prompt": "the code?", "continuation_id": continuation}));
    let over_mcp = client.call_tool(call(&id)).await.unwrap_or_else(|e| panic!("{e}"));
    let unknown_mcp = client
        .call_tool(call(unknown_id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(over_mcp.is_error, Some(true));
    assert_eq!(
        text_of(&over_mcp).replace(&id, "ID"),
        text_of(&unknown_mcp).replace(unknown_id, "ID")
    );
    let _ = client.cancel().await;
    assert_eq!(fake.requests().len(), before, "nothing of alice's reached the provider");

    // alice continues her own conversation, and so does the master token.
    for token in [&alice, "master-token"] {
        let continued = exai_chat(&d, token, json!({"prompt": "and now?", "continuation_id": id})).await;
        assert!(
            continued["text"].as_str().is_some_and(|t| t.starts_with("echo (")),
            "{continued}"
        );
    }
    let sent = fake.requests().pop().map(|r| r.messages()).unwrap_or_default();
    assert!(
        sent.iter()
            .any(|m| m["content"].as_str().is_some_and(|c| c.contains("4711"))),
        "the history went with the owner's call: {sent:?}"
    );
}
