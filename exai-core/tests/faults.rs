//! Faults upstream are survived: rate limits, 5xx, dropped streams, bad keys, dead providers,
//! full limits, and callers that walk away.

mod common;

use std::time::Duration;

use exai_core::testing::{FakeReply, FakeUpstream};
use exai_core::{ChatEvent, ChatRequest, Error, ProviderErrorKind};
use futures::StreamExt;

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_then_succeeds() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::status(429).with_retry_after(1));
    fake.push(FakeReply::text("made it"));
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let started = std::time::Instant::now();
    let reply = gw.chat(ChatRequest::new("hi")).await?;
    assert_eq!(reply.text, "made it");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After was honoured"
    );
    assert_eq!(fake.requests().len(), 2);
    assert!(reply.fallbacks.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_is_returned_to_the_caller() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::status(429).with_retry_after(120));
    let gw = common::gateway(&fake, &["GLM"], &[("EXAI_FALLBACK", "glm")]).await;
    let err = gw.chat(ChatRequest::new("hi").model("glm")).await.err();
    let retry_after = err.as_ref().and_then(Error::retry_after);
    assert_eq!(retry_after, Some(Duration::from_secs(120)), "{err:?}");
    assert_eq!(fake.requests().len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_says_where_to_point_the_base_url() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let elsewhere = FakeUpstream::start().await?;
    let moved = format!("{}/chat/completions", elsewhere.base_url());
    fake.push(FakeReply::status(308).with_location(moved.clone()));
    let gw = common::gateway(&fake, &["GLM"], &[("EXAI_FALLBACK", "glm")]).await;
    let err = gw.chat(ChatRequest::new("hi").model("glm")).await.err();
    let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(message.contains("308") && message.contains(&moved), "{message}");
    assert_eq!(fake.requests().len(), 1, "not retried");
    assert!(
        elsewhere.requests().is_empty(),
        "the key was not sent to the new address"
    );
    Ok(())
}

#[tokio::test]
async fn a_5xx_falls_back_to_the_next_provider_and_says_so() -> anyhow::Result<()> {
    let glm = FakeUpstream::start().await?;
    let kimi = FakeUpstream::start().await?;
    for _ in 0..3 {
        glm.push(FakeReply::status(503));
    }
    kimi.push(FakeReply::text("kimi here"));
    let mut env = common::fast_env();
    env.extend(glm.env_for(&["GLM"]));
    env.extend(kimi.env_for(&["KIMI"]));
    let gw = exai_core::Gateway::new(exai_core::Config::from_parts(&env, None)?).await?;
    let reply = gw.chat(ChatRequest::new("hi")).await?;
    assert_eq!((reply.provider.as_str(), reply.text.as_str()), ("kimi", "kimi here"));
    assert_eq!(reply.fallbacks.len(), 1);
    assert_eq!(reply.fallbacks[0].provider, "glm");
    assert!(reply.fallbacks[0].error.contains("503"), "{}", reply.fallbacks[0].error);
    assert_eq!(
        glm.requests().len(),
        3,
        "1 try + 2 retries with backoff before falling back"
    );
    let usage = gw.usage().await;
    let glm_row = usage
        .since_start
        .iter()
        .find(|r| r.provider == "glm")
        .map(|r| (r.errors, r.requests));
    assert_eq!(glm_row, Some((1, 0)));
    Ok(())
}

#[tokio::test]
async fn a_dropped_stream_surfaces_as_an_interrupted_error_after_the_partial_text() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::drop_after(2));
    let gw = common::gateway(&fake, &["GLM", "KIMI"], &[]).await;
    let mut stream = gw.chat_stream(ChatRequest::new("hi")).await?;
    let mut text = String::new();
    let mut error = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(ChatEvent::Text(t)) => text.push_str(&t),
            Ok(ChatEvent::Status(_)) => {}
            Ok(other) => anyhow::bail!("unexpected event {other:?}"),
            Err(e) => error = Some(e),
        }
    }
    assert_eq!(text, "partial reply ");
    let kind = match error {
        Some(Error::Provider(e)) => e.kind,
        other => anyhow::bail!("expected a provider error, got {other:?}"),
    };
    assert!(matches!(kind, ProviderErrorKind::StreamInterrupted { .. }), "{kind:?}");
    assert_eq!(
        fake.requests().len(),
        1,
        "no retry and no fallback once text was streamed"
    );
    Ok(())
}

#[tokio::test]
async fn a_stream_that_drops_before_any_text_is_retried() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::drop_after(0));
    fake.push(FakeReply::text("second time lucky"));
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let reply = gw.chat_stream(ChatRequest::new("hi")).await?.collect_response().await?;
    assert_eq!(reply.text, "second time lucky");
    assert_eq!(fake.requests().len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_rejected_key_is_neither_retried_nor_fallen_back_and_names_its_variable() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.require_key("the-right-key");
    let gw = common::gateway(&fake, &["GLM", "KIMI"], &[]).await;
    let err = gw
        .chat(ChatRequest::new("hi"))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("rejected the key from GLM_API_KEY (env) (401)"), "{err}");
    assert!(!err.contains("test-key"), "the key itself never appears: {err}");
    assert_eq!(fake.requests().len(), 1);
    Ok(())
}

#[tokio::test]
async fn the_circuit_opens_after_repeated_failures_and_stops_calling_the_provider() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    for _ in 0..2 {
        fake.push(FakeReply::status(500));
    }
    let extra = [
        ("EXAI_MAX_RETRIES", "0"),
        ("EXAI_CIRCUIT_FAILURE_THRESHOLD", "2"),
        ("EXAI_CIRCUIT_COOLDOWN_SECS", "60"),
    ];
    let gw = common::gateway(&fake, &["GLM"], &extra).await;
    for _ in 0..2 {
        assert!(gw.chat(ChatRequest::new("hi")).await.is_err());
    }
    let err = gw.chat(ChatRequest::new("hi")).await.err();
    assert!(
        matches!(&err, Some(Error::Provider(e)) if matches!(e.kind, ProviderErrorKind::CircuitOpen { .. })),
        "{err:?}"
    );
    assert_eq!(fake.requests().len(), 2, "the open circuit kept the third call away");
    let health = gw.provider_health().await?;
    let glm = health
        .iter()
        .find(|h| h.provider == "glm")
        .map(|h| (h.circuit, h.last_error.is_some()));
    assert_eq!(glm, Some(("open", true)));
    Ok(())
}

#[tokio::test]
async fn a_full_limit_waits_then_fails_with_over_capacity_and_a_retry_hint() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::hang());
    let gw = common::gateway(
        &fake,
        &["GLM"],
        &[("EXAI_GLOBAL_MAX_INFLIGHT", "1"), ("EXAI_QUEUE_TIMEOUT_MS", "200")],
    )
    .await;
    let first = tokio::spawn({
        let gw = gw.clone();
        async move { gw.chat(ChatRequest::new("hang")).await }
    });
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.requests().len() == 1)
            .await
    );
    let err = gw.chat(ChatRequest::new("second")).await.err();
    assert!(
        matches!(&err, Some(Error::OverCapacity { scope, .. }) if scope == "global"),
        "{err:?}"
    );
    assert_eq!(err.as_ref().and_then(Error::retry_after), Some(Duration::from_secs(1)));
    first.abort();
    Ok(())
}

#[tokio::test]
async fn a_cancelled_caller_aborts_the_upstream_request_and_releases_every_permit() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::hang());
    fake.push(FakeReply::text("slow stream ".repeat(50)).with_chunk_delay(Duration::from_millis(20)));
    let extra = [
        ("EXAI_GLOBAL_MAX_INFLIGHT", "1"),
        ("GLM_MAX_INFLIGHT", "1"),
        ("EXAI_QUEUE_TIMEOUT_MS", "2000"),
    ];
    let gw = common::gateway(&fake, &["GLM"], &extra).await;

    // A plain call, dropped while the provider has not answered.
    let call = tokio::spawn({
        let gw = gw.clone();
        async move { gw.chat(ChatRequest::new("hang")).await }
    });
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.requests().len() == 1)
            .await
    );
    call.abort();
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.cut_short() == 1).await,
        "upstream request aborted"
    );

    // A stream, dropped after its first delta.
    let mut stream = gw.chat_stream(ChatRequest::new("stream")).await?;
    loop {
        match stream.next().await {
            Some(Ok(ChatEvent::Status(_))) => continue,
            first => {
                assert!(matches!(first, Some(Ok(ChatEvent::Text(_)))), "{first:?}");
                break;
            }
        }
    }
    drop(stream);
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.cut_short() == 2).await,
        "upstream stream aborted"
    );

    // With limits of 1, this only works if both cancelled calls gave their permits back.
    let reply = tokio::time::timeout(Duration::from_secs(5), gw.chat(ChatRequest::new("after"))).await??;
    assert!(reply.text.starts_with("echo"));
    let status = gw.status().await?;
    assert!(status.limits.iter().all(|l| l.in_flight == 0), "{:?}", status.limits);
    Ok(())
}

#[tokio::test]
async fn a_panicking_caller_releases_its_permits_too() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::text("ok").with_delay(Duration::from_millis(50)));
    let gw = common::gateway(
        &fake,
        &["GLM"],
        &[("EXAI_GLOBAL_MAX_INFLIGHT", "1"), ("EXAI_QUEUE_TIMEOUT_MS", "2000")],
    )
    .await;
    let task = tokio::spawn({
        let gw = gw.clone();
        async move {
            let _reply = gw.chat(ChatRequest::new("hi")).await;
            panic!("the caller panics after its call");
        }
    });
    assert!(task.await.is_err());
    let status = gw.status().await?;
    assert!(status.limits.iter().all(|l| l.in_flight == 0));
    assert!(gw.chat(ChatRequest::new("again")).await.is_ok());
    Ok(())
}
