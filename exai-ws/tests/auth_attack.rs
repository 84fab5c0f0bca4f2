//! Authentication under attack: repeated bad tokens from one address are refused unread once
//! over `limits.auth_failures_per_minute` (a good key too, until the minute ends) and counted in
//! `/metrics`; a revoked key is answered exactly as a made-up one; a daemon listening beyond
//! loopback serves `/admin` and `/ui` only with the admin or master token (called through
//! 127.0.0.1 — no test sends traffic anywhere else).

mod common;

use exai_core::testing::FakeUpstream;
use serde_json::json;

async fn complete(base: &str, token: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(token)
        .json(&json!({"model": "glm-4.6", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn bad_tokens_are_slowed_down_and_a_revoked_key_looks_like_a_made_up_one() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_ADMIN_TOKEN".into(), "admin-token".into());
    env.insert("EXAI_AUTH_FAILURES_PER_MINUTE".into(), "3".into());
    let d = common::start(&env, "auth-attack").await;
    let good = common::create_key(&d, "admin-token", "good", json!({})).await;
    let gone = common::create_key(&d, "admin-token", "gone", json!({})).await;
    let revoked = reqwest::Client::new()
        .post(format!("{}/admin/keys/gone/revoke", d.base))
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(revoked.status().is_success(), "{}", revoked.status());

    // A revoked key and a made-up one: the same status and the same body.
    let made_up = complete(&d.base, "exai-sk-made-up-0000000000000000000000000000").await;
    assert_eq!(made_up.0, 401, "{}", made_up.1);
    assert_eq!(complete(&d.base, &gone).await, made_up, "no oracle for revoked keys");

    // Two failures so far; the third reaches the limit, and from then on even the good key is
    // refused unread from this address.
    assert_eq!(complete(&d.base, "exai-sk-guess-1").await.0, 401);
    let (status, body) = complete(&d.base, &good).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("retry"), "{body}");

    let metrics = common::get_text(&d, "/metrics", Some("admin-token")).await;
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(value("exai_auth_failures_total"), 3.0, "{metrics}");
    assert!(value("exai_auth_throttled_total") >= 1.0, "{metrics}");
}

#[tokio::test]
async fn a_daemon_beyond_loopback_serves_admin_and_the_status_page_only_with_a_token() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_WS_HOST".into(), "0.0.0.0".into());
    env.insert("EXAI_WS_TOKEN".into(), "master-token".into());
    env.insert("EXAI_ADMIN_TOKEN".into(), "admin-token".into());
    let d = common::start(&env, "auth-open").await;
    let http = reqwest::Client::new();
    for path in ["/admin/keys", "/ui", "/ui/api/status"] {
        let anonymous = http
            .get(format!("{}{path}", d.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(anonymous.status().as_u16(), 401 | 403),
            "{path} without a token: {}",
            anonymous.status()
        );
        let admin = http
            .get(format!("{}{path}", d.base))
            .bearer_auth("admin-token")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(admin.status().as_u16(), 200, "{path} with the admin token");
    }
    let status = http
        .get(format!("{}/ui/api/status", d.base))
        .bearer_auth("master-token")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.status().as_u16(), 200, "the master token sees the status page");
}
