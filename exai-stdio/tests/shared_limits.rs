//! Three real exai-stdio processes — three editor windows — on one state file, without Redis:
//! a provider's limit holds across all of them, and a process killed with SIGKILL while it
//! holds a place gives it back within `limits.lease_secs`.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::McpChild;
use exai_core::testing::{FakeReply, FakeUpstream};
use serde_json::{Value, json};

/// How long each call of the 12 takes upstream.
const SLOW: Duration = Duration::from_millis(200);

/// How long each call after the kill takes: long enough that calls still wait when the killed
/// process's lease expires.
const SLOWER: Duration = Duration::from_millis(500);

/// Sends a `chat` call for each id at once, and collects their results.
async fn chats(mcp: &mut McpChild, ids: &[u64], prompt: &str) -> Vec<Value> {
    for id in ids {
        let arguments = json!({"prompt": format!("{prompt} {id}")});
        mcp.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "chat", "arguments": arguments}}))
            .await;
    }
    let mut results = HashMap::new();
    while results.len() < ids.len() {
        let frame = mcp.next().await;
        if let Some(id) = frame["id"].as_u64().filter(|id| ids.contains(id))
            && frame.get("method").is_none()
        {
            results.insert(id, frame["result"].clone());
        }
    }
    results.into_values().collect()
}

fn assert_answered(results: &[Value]) {
    for result in results {
        assert_eq!(result["isError"], false, "{result}");
    }
}

#[tokio::test]
async fn a_provider_limit_of_two_holds_across_three_stdio_processes_and_a_killed_one_gives_its_place_back() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.respond_with(|request| {
        let asked = request.to_string();
        Some(if asked.contains("hold the place") {
            FakeReply::hang()
        } else if asked.contains("after the kill") {
            FakeReply::text("done").with_delay(SLOWER)
        } else {
            FakeReply::text("done").with_delay(SLOW)
        })
    });
    let state = std::env::temp_dir().join(format!("exai-stdio-shared-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let mut env = fake.env_for(&["GLM"]);
    for (key, value) in [
        ("EXAI_STATE_DIR", state.display().to_string()),
        ("GLM_MAX_INFLIGHT", "2".into()),
        ("EXAI_LEASE_SECS", "2".into()),
    ] {
        env.insert(key.into(), value);
    }
    let (mut a, mut b, mut c) = (McpChild::spawn(&env), McpChild::spawn(&env), McpChild::spawn(&env));
    for mcp in [&mut a, &mut b, &mut c] {
        mcp.initialize("2025-06-18").await;
    }

    // 12 slow calls at once, 4 from each process: never more than 2 upstream.
    let started = Instant::now();
    let (one, two, three) = tokio::join!(
        chats(&mut a, &[10, 11, 12, 13], "slow"),
        chats(&mut b, &[10, 11, 12, 13], "slow"),
        chats(&mut c, &[10, 11, 12, 13], "slow"),
    );
    for results in [&one, &two, &three] {
        assert_answered(results);
    }
    assert_eq!(
        fake.max_in_flight(),
        2,
        "the upstream never sees more than the provider's limit, whichever process sends"
    );
    assert!(started.elapsed() >= SLOW * 6, "two at a time: {:?}", started.elapsed());

    // `a` takes a place and is killed holding it.
    a.send(json!({"jsonrpc": "2.0", "id": 20, "method": "tools/call", "params": {"name": "chat", "arguments": {"prompt": "hold the place"}}}))
        .await;
    assert!(fake.wait_until(Duration::from_secs(10), |f| f.in_flight() == 1).await);
    let (b_calls, c_calls) = (
        tokio::spawn(async move { (chats(&mut b, &[30, 31, 32, 33], "after the kill").await, b) }),
        tokio::spawn(async move { (chats(&mut c, &[30, 31, 32, 33], "after the kill").await, c) }),
    );
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.in_flight() == 2).await,
        "one place for b and c while a holds the other"
    );
    let pid = a.child.id().unwrap_or_default().to_string();
    let killed = std::process::Command::new("kill").args(["-KILL", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()));
    let killed = Instant::now();
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.cut_short() == 1).await,
        "the killed process's call ends upstream"
    );
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.in_flight() == 2).await,
        "b and c get both places once the killed process's lease expires"
    );
    let back = killed.elapsed();
    assert!(
        back >= Duration::from_millis(1_000) && back < Duration::from_secs(3),
        "the place came back when the lease expired (renewed every 2/3 s, so 1.3–2 s after the kill): {back:?}"
    );
    for calls in [b_calls, c_calls] {
        let (results, _mcp) = calls.await.unwrap_or_else(|e| panic!("{e}"));
        assert_answered(&results);
    }
    assert_eq!(fake.max_in_flight(), 2);
    let _ = a.child.wait().await;
    let _ = std::fs::remove_dir_all(&state);
}
