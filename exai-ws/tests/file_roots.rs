//! What a caller of the daemon can make it read on its host: the `files` and `images` of a tool
//! call, over `/mcp` (the official MCP client), the EXAI protocol and MCP over WebSocket, with
//! real files and symlinks in a temporary directory and the fake upstream recording what reached
//! the provider.

mod common;

use std::path::{Path, PathBuf};

use common::ws::{Ws, connect, frame, hello, send, until};
use common::{start, state_dir, text_of, tool};
use exai_core::testing::FakeUpstream;
use rmcp::RoleClient;
use rmcp::ServiceExt;
use rmcp::model::CallToolResult;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

/// `root/inside.txt`, `outside.txt` next to the root, and `root/link.txt` pointing at it; each
/// file holds a marker that must never reach the provider unless it was allowed.
struct Tree {
    dir: PathBuf,
}

impl Tree {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("exai-ws-files-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root")).unwrap_or_else(|e| panic!("{e}"));
        let tree = Self { dir };
        for (file, text) in [
            ("root/inside.txt", tree.marker("inside")),
            ("outside.txt", tree.marker("outside")),
        ] {
            std::fs::write(tree.path(file), text).unwrap_or_else(|e| panic!("{e}"));
        }
        std::os::unix::fs::symlink(tree.path("outside.txt"), tree.path("root/link.txt"))
            .unwrap_or_else(|e| panic!("{e}"));
        tree
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn arg(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    /// The text of the file called `name`.
    fn marker(&self, name: &str) -> String {
        format!("MARKER-{name}-{}", self.dir.display())
    }
}

/// Whether any request that reached the provider carries `text`.
fn provider_saw(fake: &FakeUpstream, text: &str) -> bool {
    fake.requests()
        .iter()
        .any(|r| String::from_utf8_lossy(&r.raw).contains(text))
}

async fn mcp_client(base: &str) -> RunningService<RoleClient, ()> {
    let transport = StreamableHttpClientTransport::from_uri(format!("{base}/mcp"));
    ().serve(transport).await.unwrap_or_else(|e| panic!("initialize: {e}"))
}

async fn chat_over_mcp(client: &RunningService<RoleClient, ()>, arguments: Value) -> CallToolResult {
    client
        .call_tool(tool("chat", arguments))
        .await
        .unwrap_or_else(|e| panic!("tools/call: {e}"))
}

/// A `chat` call over the EXAI protocol: its `call_tool_res`.
async fn chat_over_exai(ws: &mut Ws, id: &str, arguments: Value) -> Value {
    send(
        ws,
        json!({"op": "call_tool", "request_id": id, "name": "chat", "arguments": arguments}),
    )
    .await;
    until(ws, "call_tool_res", &mut Vec::new()).await
}

/// Asserts `text` is a refusal of `path` naming `rule`, and carries nothing from the files.
fn refused(text: &str, path: &Path, rule: &str) {
    assert!(
        text.contains(&path.display().to_string()) && text.contains(rule),
        "{text}"
    );
    assert!(!text.contains("MARKER"), "a refusal carried a file's contents: {text}");
}

#[tokio::test]
async fn without_file_roots_no_front_door_reads_a_file_and_the_error_says_how_to_allow_it() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let tree = Tree::new("none");
    let daemon = start(&fake.env_for(&["GLM"]), "files-none").await;
    let inside = tree.path("root/inside.txt");

    let client = mcp_client(&daemon.base).await;
    let result = chat_over_mcp(&client, json!({"prompt": "summarize", "files": [inside]})).await;
    assert_eq!(result.is_error, Some(true), "{result:?}");
    refused(&text_of(&result), &inside, "tools.file_roots");
    assert!(text_of(&result).contains("EXAI_FILE_ROOTS"), "{result:?}");
    let structured = result.structured_content.clone().unwrap_or_default();
    assert_eq!(structured["status"], "file_refused", "{structured}");
    let image = chat_over_mcp(&client, json!({"prompt": "look", "images": ["/etc/hostname"]})).await;
    assert_eq!(image.is_error, Some(true), "{image:?}");
    refused(&text_of(&image), Path::new("/etc/hostname"), "tools.file_roots");

    let mut ws = connect(&daemon).await;
    assert_eq!(hello(&mut ws, json!({})).await["ok"], true);
    let res = chat_over_exai(&mut ws, "f1", json!({"prompt": "summarize", "files": [inside]})).await;
    assert_eq!(res["error"]["code"], "TOOL_EXECUTION_ERROR", "{res}");
    refused(res["text"].as_str().unwrap_or_default(), &inside, "tools.file_roots");

    let mut mcp_ws = connect(&daemon).await;
    send(
        &mut mcp_ws,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await;
    assert!(frame(&mut mcp_ws).await["result"].is_object());
    send(
        &mut mcp_ws,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    send(
        &mut mcp_ws,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "chat",
        "arguments": {"prompt": "summarize", "files": [inside]}}}),
    )
    .await;
    let reply = loop {
        let f = frame(&mut mcp_ws).await;
        if f["id"] == 2 {
            break f;
        }
    };
    assert_eq!(reply["result"]["isError"], true, "{reply}");
    refused(
        reply["result"]["content"][0]["text"].as_str().unwrap_or_default(),
        &inside,
        "tools.file_roots",
    );

    // A data URL is not a file: it still goes through.
    let data = chat_over_mcp(
        &client,
        json!({"prompt": "look", "images": ["data:image/png;base64,iVBORw0KGgo="], "model": "glm-4.5v"}),
    )
    .await;
    assert_eq!(data.is_error, Some(false), "{data:?}");
    assert!(!provider_saw(&fake, "MARKER"), "a file reached the provider");
    assert!(
        provider_saw(&fake, "iVBORw0KGgo="),
        "the data URL did not reach the provider"
    );
}

#[tokio::test]
async fn with_a_root_a_file_below_it_is_read_and_escapes_and_the_state_dir_are_refused() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let tree = Tree::new("root");
    let tag = "files-root";
    let state = state_dir(tag);
    let mut env = fake.env_for(&["GLM"]);
    // The state directory is a root too: it is refused all the same.
    env.insert("EXAI_FILE_ROOTS".into(), format!("{},{state}", tree.arg("root")));
    let daemon = start(&env, tag).await;
    let client = mcp_client(&daemon.base).await;

    let read = chat_over_mcp(
        &client,
        json!({"prompt": "summarize", "files": [tree.path("root/inside.txt")]}),
    )
    .await;
    assert_eq!(read.is_error, Some(false), "{read:?}");
    assert!(
        provider_saw(&fake, &tree.marker("inside")),
        "the file below the root was not sent"
    );

    let escapes = [
        (tree.path("root/../outside.txt"), "tools.file_roots"),
        (tree.path("root/link.txt"), "tools.file_roots"),
        (PathBuf::from(&state), "the state directory"),
    ];
    for (path, rule) in &escapes {
        let result = chat_over_mcp(&client, json!({"prompt": "summarize", "files": [path]})).await;
        assert_eq!(result.is_error, Some(true), "{}: {result:?}", path.display());
        refused(&text_of(&result), path, rule);
    }
    let image = chat_over_mcp(
        &client,
        json!({"prompt": "look", "images": [tree.path("root/link.txt")]}),
    )
    .await;
    assert_eq!(image.is_error, Some(true), "{image:?}");

    let mut ws = connect(&daemon).await;
    assert_eq!(hello(&mut ws, json!({})).await["ok"], true);
    let escape = tree.path("root/../outside.txt");
    let res = chat_over_exai(&mut ws, "up", json!({"prompt": "summarize", "files": [escape]})).await;
    assert_eq!(res["error"]["code"], "TOOL_EXECUTION_ERROR", "{res}");
    refused(res["text"].as_str().unwrap_or_default(), &escape, "tools.file_roots");
    let res = chat_over_exai(
        &mut ws,
        "in",
        json!({"prompt": "again", "files": [tree.path("root/inside.txt")]}),
    )
    .await;
    assert!(res.get("error").is_none_or(Value::is_null), "{res}");

    assert!(
        !provider_saw(&fake, &tree.marker("outside")),
        "a file outside the root reached the provider"
    );
}
