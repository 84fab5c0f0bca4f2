//! `/mcp` driven by the official MCP SDK's client (rmcp, streamable HTTP): the lifecycle an MCP
//! client goes through — initialize and version negotiation, ping, tools, progress, logging,
//! cancellation — against the real daemon and the fake upstream.
//!
//! rmcp marks MCP's logging capability deprecated (SEP-2577); the daemon still offers it, as
//! clients use it today, so this test uses it too.
#![allow(deprecated)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{lifecycle, start, text_of, tool};
use exai_core::testing::FakeUpstream;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientRequest, LoggingMessageNotificationParam, PingRequest,
    ProgressNotificationParam, SetLevelRequestParams,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestHandle, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

/// Records what the server sends besides responses.
#[derive(Clone, Default)]
struct Recorder {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    logs: Arc<Mutex<Vec<LoggingMessageNotificationParam>>>,
}

impl ClientHandler for Recorder {
    async fn on_progress(&self, params: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).push(params);
    }

    async fn on_logging_message(&self, params: LoggingMessageNotificationParam, _: NotificationContext<RoleClient>) {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).push(params);
    }
}

fn chat(prompt: &str) -> CallToolRequestParams {
    tool("chat", json!({"prompt": prompt}))
}

/// Sends a `chat` call and returns its handle (its progress token, its id for cancelling).
async fn start_chat(client: &RunningService<RoleClient, Recorder>, prompt: &str) -> RequestHandle<RoleClient> {
    client
        .send_request_with_option(
            ClientRequest::CallToolRequest(CallToolRequest::new(chat(prompt))),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap_or_else(|e| panic!("tools/call: {e}"))
}

#[tokio::test]
async fn the_official_mcp_client_goes_through_the_whole_lifecycle_over_http() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let daemon = start(&lifecycle(&fake, "done after a while"), "mcp-sdk").await;
    let recorder = Recorder::default();
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/mcp", daemon.base));
    let client = recorder
        .clone()
        .serve(transport)
        .await
        .unwrap_or_else(|e| panic!("initialize: {e}"));

    // Initialize negotiated a version and named the server.
    let info = client.peer_info().unwrap_or_else(|| panic!("no server info"));
    let info = serde_json::to_value(&*info).unwrap_or_default();
    assert_eq!(info["serverInfo"]["name"], "exai", "{info}");
    assert!(info["capabilities"]["logging"].is_object(), "{info}");
    assert!(
        info["protocolVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "{info}"
    );

    // Ping and tools.
    let ping = client
        .send_request(ClientRequest::PingRequest(PingRequest::default()))
        .await;
    assert!(ping.is_ok(), "{ping:?}");
    let tools = client
        .list_all_tools()
        .await
        .unwrap_or_else(|e| panic!("tools/list: {e}"));
    assert_eq!(tools.len(), 17);

    // A long call reports progress on the request's own token, with heartbeats, in order.
    let slow = start_chat(&client, "slow").await;
    let token = slow.progress_token.clone();
    let reply = slow.await_response().await.unwrap_or_else(|e| panic!("{e}"));
    let reply = serde_json::to_value(&reply).unwrap_or_default();
    assert_eq!(reply["isError"], false, "{reply}");
    assert!(
        reply["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("done after a while"))
    );
    let progress = recorder.progress.lock().map(|p| p.clone()).unwrap_or_default();
    assert!(progress.iter().all(|p| p.progress_token == token), "{progress:?}");
    let messages: Vec<String> = progress.iter().filter_map(|p| p.message.clone()).collect();
    assert!(
        messages.iter().filter(|m| m.starts_with("still working")).count() >= 2,
        "{messages:?}"
    );
    assert!(
        progress.windows(2).all(|w| w[0].progress < w[1].progress),
        "{progress:?}"
    );

    // Logging: at `warning`, the retry after a 500 is reported, and nothing below it.
    let level: SetLevelRequestParams =
        serde_json::from_value(json!({"level": "warning"})).unwrap_or_else(|e| panic!("{e}"));
    client
        .set_level(level)
        .await
        .unwrap_or_else(|e| panic!("logging/setLevel: {e}"));
    let recovered = client.call_tool(chat("flaky")).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(text_of(&recovered).starts_with("recovered"), "{recovered:?}");
    let mut logs: Vec<Value> = Vec::new();
    for _ in 0..50 {
        logs = recorder
            .logs
            .lock()
            .map(|l| l.iter().map(|m| serde_json::to_value(m).unwrap_or_default()).collect())
            .unwrap_or_default();
        if !logs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        logs.iter()
            .any(|l| l["level"] == "warning" && l["data"]["message"] == "retrying"),
        "{logs:?}"
    );
    assert!(
        logs.iter().all(|l| l["level"] != "debug" && l["level"] != "info"),
        "{logs:?}"
    );

    // Cancellation: the upstream request is aborted and the only global permit is freed.
    let hanging = start_chat(&client, "hang").await;
    let before = fake.requests().len();
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.requests().len() == before + 1)
            .await
    );
    hanging
        .cancel(Some("user".into()))
        .await
        .unwrap_or_else(|e| panic!("notifications/cancelled: {e}"));
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.cut_short() == 1).await,
        "upstream request aborted"
    );
    let after = client.call_tool(chat("after")).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(text_of(&after).starts_with("after the cancel"), "{after:?}");

    let _ = client.cancel().await;
}
