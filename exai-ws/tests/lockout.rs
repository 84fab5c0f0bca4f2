//! Keyless, master-token and keyed daemons, and moving between them, through the real exai-ws
//! on its SQLite file: revoking or deleting every key never opens the daemon again, the 401 says
//! how to get in, the master token always works, `allow_keyless` (what `exai keys
//! allow-keyless` runs on the same file) is the way back — and a daemon bound beyond loopback
//! refuses every call without a key or the master token, whatever the keys' state.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Daemon, state_dir};
use exai_core::testing::FakeUpstream;
use exai_core::{Config, Keys};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-for-lockout";
const MASTER: &str = "master-token-for-lockout";

fn env(fake: &FakeUpstream, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_ADMIN_TOKEN".into(), ADMIN.into());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// The keys in the state directory `tag`'s daemon uses, as `exai keys` sees them.
async fn keys_of(tag: &str) -> Keys {
    let config = Config::builder()
        .set("state_dir", state_dir(tag))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    Keys::open(&config).await.unwrap_or_else(|e| panic!("{e}"))
}

/// A chat completion with `token` (none when `None`): its status and body.
async fn call(d: &Daemon, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", d.base))
        .json(&json!({"model": "glm-4.6", "messages": [{"role": "user", "content": "hi"}]}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// Calls without a token until the status is `want` (keys changed elsewhere apply within a
/// second); the last body.
async fn plain_call_becomes(d: &Daemon, want: u16) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = call(d, None).await;
        if status == want {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a plain call still answers {status} (wanted {want}): {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admin(d: &Daemon, method: reqwest::Method, path: &str) -> u16 {
    reqwest::Client::new()
        .request(method, format!("{}/admin/keys{path}", d.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn message(body: &Value) -> String {
    body["error"]["message"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn revoking_and_deleting_every_key_keeps_the_daemon_closed_until_allow_keyless() {
    let fake = FakeUpstream::start().await.unwrap_or_else(|e| panic!("{e}"));
    let tag = "lockout-keyless";
    let d = common::start(&env(&fake, &[]), tag).await;
    assert_eq!(call(&d, None).await.0, 200, "keyless on loopback: open");

    let secret = common::create_key(&d, ADMIN, "alice", json!({})).await;
    let refused = plain_call_becomes(&d, 401).await;
    let text = message(&refused);
    for hint in ["Authorization: Bearer", "x-api-key", "EXAI_WS_TOKEN", "exai keys list"] {
        assert!(text.contains(hint), "the 401 names {hint}: {text}");
    }
    assert_eq!(call(&d, Some(&secret)).await.0, 200);

    assert_eq!(admin(&d, reqwest::Method::POST, "/alice/revoke").await, 200);
    assert_eq!(call(&d, Some(&secret)).await.0, 401, "revoked");
    assert_eq!(call(&d, None).await.0, 401, "revoking every key opens nothing");

    assert_eq!(admin(&d, reqwest::Method::DELETE, "/alice").await, 204);
    assert_eq!(admin(&d, reqwest::Method::GET, "/alice").await, 404, "deleted");
    assert_eq!(admin(&d, reqwest::Method::DELETE, "/alice").await, 404, "deleted twice");
    assert_eq!(call(&d, None).await.0, 401, "deleting the last key opens nothing");
    let keys = keys_of(tag).await;
    assert!(keys.list().await.unwrap_or_else(|e| panic!("{e}")).is_empty());
    assert!(keys.required().await.unwrap_or_else(|e| panic!("{e}")));

    // The way back: a new key, or no key at all — on purpose.
    let again = keys.create("alice", Default::default()).await;
    let again = again
        .unwrap_or_else(|e| panic!("a deleted key's name is free: {e}"))
        .secret;
    let started = Instant::now();
    while call(&d, Some(&again)).await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a key made in the shell applies"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = keys.allow_keyless().await.err().map(|e| e.to_string());
    assert!(
        refused.as_deref().is_some_and(|e| e.contains("alice")),
        "allow_keyless is refused while a key is left: {refused:?}"
    );
    keys.delete("alice").await.unwrap_or_else(|e| panic!("{e}"));
    keys.allow_keyless().await.unwrap_or_else(|e| panic!("{e}"));
    plain_call_becomes(&d, 200).await;
}

#[tokio::test]
async fn the_master_token_gets_in_whatever_the_keys() {
    let fake = FakeUpstream::start().await.unwrap_or_else(|e| panic!("{e}"));
    let d = common::start(&env(&fake, &[("EXAI_WS_TOKEN", MASTER)]), "lockout-master").await;
    let refused = call(&d, None).await;
    assert_eq!(refused.0, 401, "master-token mode: no token, no call");
    assert!(message(&refused.1).contains("EXAI_WS_TOKEN"), "{}", refused.1);
    assert_eq!(call(&d, Some(MASTER)).await.0, 200);

    common::create_key(&d, ADMIN, "bob", json!({})).await;
    assert_eq!(admin(&d, reqwest::Method::DELETE, "/bob").await, 204);
    assert_eq!(call(&d, None).await.0, 401);
    assert_eq!(
        call(&d, Some(MASTER)).await.0,
        200,
        "keys deleted: the master token still works"
    );
}

#[tokio::test]
async fn a_daemon_beyond_loopback_never_serves_a_call_without_a_key_or_the_master_token() {
    let fake = FakeUpstream::start().await.unwrap_or_else(|e| panic!("{e}"));
    let tag = "lockout-wide";
    let env = env(&fake, &[("EXAI_WS_HOST", "0.0.0.0")]);

    // Neither a master token nor keys: it does not start.
    let (code, stderr) = common::exits_with(common::command(&env, common::free_port(), &state_dir(tag))).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("EXAI_WS_TOKEN") && stderr.contains("exai keys create"),
        "{stderr}"
    );

    // Keys required: it starts, and takes only keys.
    let keys = keys_of(tag).await;
    let secret = keys.create("carol", Default::default()).await;
    let secret = secret.unwrap_or_else(|e| panic!("{e}")).secret;
    let d = common::start(&env, tag).await;
    assert_eq!(call(&d, None).await.0, 401);
    assert_eq!(call(&d, Some(&secret)).await.0, 200);

    // Every key deleted and keys no longer required: still nobody gets in without one.
    keys.delete("carol").await.unwrap_or_else(|e| panic!("{e}"));
    keys.allow_keyless().await.unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let refused = call(&d, None).await;
    assert_eq!(
        refused.0, 401,
        "beyond loopback, open is never an answer: {}",
        refused.1
    );
}
