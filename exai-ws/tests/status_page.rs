//! The status page, loaded by real headless Chromium: it shows the configured providers, a
//! request made while it is open appears in its live list within 2 s, a call the response cache
//! answered is `cached` there and counted on the cache's card, it fits a phone's width, and it
//! works offline from the binary alone. Screenshots are kept in
//! `target/tmp/status-page*.png`.

mod common;

use std::time::Duration;

use common::chromium::Browser;
use common::start;
use exai_core::testing::{FakeReply, FakeUpstream};
use serde_json::json;

#[tokio::test]
async fn the_page_shows_providers_and_requests_live_in_chromium() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut env = fake.env_for(&["GLM", "KIMI"]);
    env.insert("EXAI_ADMIN_TOKEN".into(), "admin-token-for-the-page".into());
    env.insert("EXAI_CACHE".into(), "exact".into());
    let daemon = start(&env, "status-page").await;
    let client = reqwest::Client::new();

    // Closed without the token; the page and its JSON with it.
    let refused = client.get(format!("{}/ui/api/status", daemon.base)).send().await;
    assert_eq!(refused.map(|r| r.status().as_u16()).ok(), Some(401));
    let html = client
        .get(format!("{}/ui?token=admin-token-for-the-page", daemon.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    assert!(html.len() < 200_000, "the page is {} bytes", html.len());
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("@import"),
        "nothing from the network"
    );

    // A request before the page opens: in the first list.
    fake.push(FakeReply::text("before the page"));
    let before = client
        .post(format!("{}/v1/chat/completions", daemon.base))
        .json(&json!({"model": "glm-4.6", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(before.ok(), Some(200));

    let mut browser = Browser::start().await;
    browser
        .navigate(&format!("{}/ui?token=admin-token-for-the-page", daemon.base))
        .await;
    let shows_providers = "[...document.querySelectorAll('#providers .provider')].map(e => e.dataset.name).join(',') === 'glm,kimi,minimax'";
    assert!(
        browser.until(shows_providers, Duration::from_secs(10)).await.is_some(),
        "{}",
        browser.eval("document.body.innerText").await
    );
    let configured = "document.querySelector('#providers [data-name=glm] .pill').textContent.trim() === 'closed' && document.querySelector('#providers [data-name=minimax] .pill').textContent.includes('not configured')";
    assert!(browser.until(configured, Duration::from_secs(2)).await.is_some());
    assert!(
        browser
            .until(
                "document.querySelector('#recent tbody tr td:nth-child(5)')?.textContent === 'glm / glm-4.6'",
                Duration::from_secs(2)
            )
            .await
            .is_some(),
        "{}",
        browser.eval("document.querySelector('#recent').innerText").await
    );
    // The live stream is open before the next request is made.
    assert!(
        browser
            .until(
                "document.getElementById('live').textContent.includes('live')",
                Duration::from_secs(10)
            )
            .await
            .is_some()
    );

    // A request while the page is open: its row comes within 2 s, by server-sent event.
    fake.push(FakeReply::text("while the page is open"));
    let during = client
        .post(format!("{}/v1/chat/completions", daemon.base))
        .json(&json!({"model": "kimi-k2-0905-preview", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(during.ok(), Some(200));
    let newest = "(() => { const r = document.querySelector('#recent tbody tr'); return !!r && r.cells[4].textContent === 'kimi / kimi-k2-0905-preview' && r.cells[6].textContent === 'ok'; })()";
    let took = browser.until(newest, Duration::from_secs(2)).await;
    assert!(
        took.is_some(),
        "not in the live list within 2 s: {}",
        browser.eval("document.querySelector('#recent').innerText").await
    );
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#recent tbody tr').length")
            .await,
        2
    );

    // The first request again: answered by the cache, shown as such; its card counts it at the
    // next refresh (every 5 s).
    let again = client
        .post(format!("{}/v1/chat/completions", daemon.base))
        .json(&json!({"model": "glm-4.6", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(again.ok(), Some(200));
    let cached = "(() => { const r = document.querySelector('#recent tbody tr'); return !!r && r.cells[6].textContent === 'cached' && r.classList.contains('ok'); })()";
    assert!(
        browser.until(cached, Duration::from_secs(2)).await.is_some(),
        "{}",
        browser.eval("document.querySelector('#recent').innerText").await
    );
    let counted = "document.querySelector('#cache').textContent.includes('hits 1 · misses 2') && document.getElementById('cache-shared').textContent === 'off'";
    assert!(
        browser.until(counted, Duration::from_secs(7)).await.is_some(),
        "{}",
        browser.eval("document.querySelector('#cache').innerText").await
    );

    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::create_dir_all(artifacts);
    std::fs::write(artifacts.join("status-page.png"), browser.screenshot().await).unwrap_or_else(|e| panic!("{e}"));

    // A phone's width: nothing wider than the screen but the tables' own scrolling boxes.
    browser.viewport(390, 844, true).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        browser.eval("document.documentElement.scrollWidth <= 390").await,
        true,
        "the page is wider than a phone: {}",
        browser.eval("document.documentElement.scrollWidth").await
    );
    std::fs::write(artifacts.join("status-page-phone.png"), browser.screenshot().await)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("screenshots: {}/status-page*.png", artifacts.display());
}
