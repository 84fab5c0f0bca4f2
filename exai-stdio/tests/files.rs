//! exai-stdio reads its user's files — anywhere, with no `tools.file_roots` — and keeps to the
//! roots an MCP client declares (`roots/list`, asked again after `roots/list_changed`). The
//! real binary over pipes, real files in a temporary directory.

mod common;

use std::path::PathBuf;

use common::McpChild;
use exai_core::testing::FakeUpstream;
use serde_json::{Value, json};

/// `project/inside.txt` and `elsewhere/outside.txt`, each holding a marker.
struct Tree {
    dir: PathBuf,
}

impl Tree {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("exai-stdio-files-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let tree = Self { dir };
        for (sub, file) in [("project", "inside.txt"), ("elsewhere", "outside.txt")] {
            std::fs::create_dir_all(tree.dir.join(sub)).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(tree.dir.join(sub).join(file), tree.marker(file)).unwrap_or_else(|e| panic!("{e}"));
        }
        tree
    }

    fn arg(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    fn uri(&self, rel: &str) -> String {
        format!("file://{}", self.arg(rel))
    }

    fn marker(&self, file: &str) -> String {
        format!("MARKER-{file}-{}", self.dir.display())
    }
}

fn provider_saw(fake: &FakeUpstream, text: &str) -> bool {
    fake.requests()
        .iter()
        .any(|r| String::from_utf8_lossy(&r.raw).contains(text))
}

/// A `chat` call with `files`, answering each `roots/list` the server sends with `roots`; the
/// call's result and how many times the roots were asked for.
async fn chat(mcp: &mut McpChild, id: u64, files: &[String], roots: &[String]) -> (Value, usize) {
    let params = json!({"name": "chat", "arguments": {"prompt": "summarize", "files": files}});
    mcp.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}))
        .await;
    let mut asked = 0;
    loop {
        let frame = mcp.next().await;
        if frame["method"] == "roots/list" {
            asked += 1;
            let listed: Vec<Value> = roots.iter().map(|uri| json!({"uri": uri})).collect();
            mcp.send(json!({"jsonrpc": "2.0", "id": frame["id"], "result": {"roots": listed}}))
                .await;
        } else if frame["id"] == id && frame.get("method").is_none() {
            return (frame["result"].clone(), asked);
        }
    }
}

#[tokio::test]
async fn with_no_roots_anywhere_stdio_reads_the_users_file_wherever_it_is() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let tree = Tree::new("local");
    let mut mcp = McpChild::spawn(&fake.env_for(&["GLM"]));
    mcp.initialize("2025-06-18").await;
    let (result, asked) = chat(&mut mcp, 2, &[tree.arg("elsewhere/outside.txt")], &[]).await;
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(asked, 0, "a client without the roots capability was asked for roots");
    assert!(provider_saw(&fake, &tree.marker("outside.txt")));
}

#[tokio::test]
async fn a_client_that_declares_roots_is_kept_to_them_and_asked_again_when_they_change() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let tree = Tree::new("roots");
    let mut mcp = McpChild::spawn(&fake.env_for(&["GLM"]));
    let params = json!({"protocolVersion": "2025-06-18", "capabilities": {"roots": {"listChanged": true}},
        "clientInfo": {"name": "test", "version": "1"}});
    mcp.request(1, "initialize", params).await;
    mcp.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    let project = [tree.uri("project")];

    let outside = tree.arg("elsewhere/outside.txt");
    let (refused, asked) = chat(&mut mcp, 2, std::slice::from_ref(&outside), &project).await;
    assert_eq!((refused["isError"].clone(), asked), (json!(true), 1), "{refused}");
    let text = refused["content"][0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains(&outside) && text.contains("the roots the MCP client declared"),
        "{text}"
    );
    assert!(!provider_saw(&fake, &tree.marker("outside.txt")));

    let (read, asked) = chat(&mut mcp, 3, &[tree.arg("project/inside.txt")], &project).await;
    assert_eq!((read["isError"].clone(), asked), (json!(false), 0), "{read}");
    assert!(provider_saw(&fake, &tree.marker("inside.txt")));

    mcp.send(json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}))
        .await;
    // rmcp handles a notification and a request concurrently: give the notification its turn
    // before the next call, as a client would have between two user actions.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let widened = [tree.uri("project"), tree.uri("elsewhere")];
    let (read, asked) = chat(&mut mcp, 4, &[outside], &widened).await;
    assert_eq!((read["isError"].clone(), asked), (json!(false), 1), "{read}");
    assert!(provider_saw(&fake, &tree.marker("outside.txt")));
}
