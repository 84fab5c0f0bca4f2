//! The gateway end to end against the fake upstream: replies, streams, conversations.

mod common;

use std::time::Duration;

use exai_core::testing::{FakeReply, FakeUpstream};
use exai_core::{ChatEvent, ChatRequest, Error, Message, Role};
use futures::StreamExt;

#[tokio::test]
async fn chat_reports_the_provider_and_model_that_answered_with_usage_and_cost() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::text("four").with_usage(1_000_000, 500_000));
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let reply = gw.chat(ChatRequest::new("2+2?").system("be brief")).await?;
    assert_eq!(
        (reply.text.as_str(), reply.provider.as_str(), reply.model.as_str()),
        ("four", "glm", "glm-4.6")
    );
    assert_eq!(
        (reply.usage.input_tokens, reply.usage.output_tokens),
        (1_000_000, 500_000)
    );
    assert!(
        (reply.cost_usd - (0.60 + 1.10)).abs() < 1e-9,
        "glm-4.6 prices: {}",
        reply.cost_usd
    );
    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.authorization.as_deref(), Some("Bearer test-key"));
    assert_eq!(sent.model(), "glm-4.6");
    assert!(!sent.is_stream());
    let roles: Vec<_> = sent
        .messages()
        .iter()
        .map(|m| m["role"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(roles, ["system", "user"]);
    let usage = gw.usage().await;
    let row = usage
        .since_start
        .iter()
        .find(|r| r.model == "glm-4.6")
        .cloned()
        .unwrap_or_default();
    assert_eq!((row.requests, row.input_tokens), (1, 1_000_000));
    Ok(())
}

#[tokio::test]
async fn chat_stream_yields_reasoning_and_text_deltas_then_done_with_usage() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(
        FakeReply::text("the answer is four")
            .with_reasoning("2+2=4")
            .with_usage(7, 5),
    );
    let gw = common::gateway(&fake, &["KIMI"], &[]).await;
    let mut stream = gw.chat_stream(ChatRequest::new("2+2?")).await?;
    let (mut text, mut reasoning, mut deltas, mut done) = (String::new(), String::new(), 0, None);
    let mut statuses = Vec::new();
    while let Some(event) = stream.next().await {
        match event? {
            ChatEvent::Text(t) => {
                deltas += 1;
                text.push_str(&t);
            }
            ChatEvent::Reasoning(r) => reasoning.push_str(&r),
            ChatEvent::Status(s) => statuses.push(s),
            ChatEvent::Done(r) => done = Some(r),
            other => anyhow::bail!("unexpected event {other:?}"),
        }
    }
    let done = done.ok_or_else(|| anyhow::anyhow!("no Done event"))?;
    assert_eq!(statuses, ["calling kimi/kimi-k2-0905-preview"]);
    assert_eq!((text.as_str(), reasoning.as_str()), ("the answer is four", "2+2=4"));
    assert!(deltas >= 4, "text came in pieces: {deltas}");
    assert_eq!(
        (done.text.as_str(), done.reasoning.as_deref()),
        ("the answer is four", Some("2+2=4"))
    );
    assert_eq!(
        (
            done.usage.input_tokens,
            done.usage.output_tokens,
            done.provider.as_str()
        ),
        (7, 5, "kimi")
    );
    let sent = &fake.requests()[0];
    assert!(sent.is_stream());
    assert_eq!(sent.body["stream_options"]["include_usage"], true);
    Ok(())
}

#[tokio::test]
async fn a_continued_turn_sends_earlier_turns_as_native_messages() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = common::gateway(&fake, &["MINIMAX"], &[]).await;
    let first = gw.chat(ChatRequest::new("my name is Ada")).await?;
    let second = gw
        .chat(ChatRequest::new("what is my name?").continuation(&first.continuation_id))
        .await?;
    assert_eq!(second.continuation_id, first.continuation_id);
    let sent = fake.requests()[1].messages();
    let pairs: Vec<(String, String)> = sent
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or("").into(),
                m["content"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("user".into(), "my name is Ada".into()),
            ("assistant".into(), first.text.clone()),
            ("user".into(), "what is my name?".into()),
        ]
    );
    let thread = gw
        .thread(&first.continuation_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no thread"))?;
    assert_eq!(thread.turns.len(), 4);
    assert_eq!(thread.turns[3].role, Role::Assistant);
    assert_eq!(thread.turns[3].model.as_deref(), Some("MiniMax-M2"));
    let listed = gw.threads(10).await?;
    assert_eq!(
        listed.first().map(|t| (t.id.clone(), t.turns)),
        Some((first.continuation_id.clone(), 4))
    );
    Ok(())
}

#[tokio::test]
async fn turns_of_one_conversation_run_in_order_even_when_sent_together() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let first = gw.chat(ChatRequest::new("turn 0")).await?;
    for _ in 0..5 {
        fake.push(FakeReply::echo().with_delay(Duration::from_millis(30)));
    }
    let id = first.continuation_id.clone();
    let calls = (1..=5).map(|i| {
        let (gw, id) = (gw.clone(), id.clone());
        tokio::spawn(async move { gw.chat(ChatRequest::new(format!("turn {i}")).continuation(id)).await })
    });
    for call in futures::future::join_all(calls).await {
        call??;
    }
    // Each request must carry every earlier turn: 2 messages more than the one before.
    let counts: Vec<usize> = fake.requests().iter().map(|r| r.messages().len()).collect();
    assert_eq!(counts, [1, 3, 5, 7, 9, 11]);
    let thread = gw.thread(&id).await?.ok_or_else(|| anyhow::anyhow!("no thread"))?;
    assert_eq!(thread.turns.len(), 12);
    Ok(())
}

#[tokio::test]
async fn different_conversations_run_in_parallel() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let a = gw.chat(ChatRequest::new("a")).await?;
    let b = gw.chat(ChatRequest::new("b")).await?;
    fake.push(FakeReply::text("slow a").with_delay(Duration::from_millis(400)));
    fake.push(FakeReply::text("slow b").with_delay(Duration::from_millis(400)));
    let calls = [a, b].map(|first| {
        let gw = gw.clone();
        tokio::spawn(async move {
            gw.chat(ChatRequest::new("again").continuation(first.continuation_id))
                .await
        })
    });
    // Both second turns reach the upstream before either is answered.
    let both_in_flight = fake
        .wait_until(Duration::from_secs(5), |f| f.requests().len() == 4)
        .await;
    assert!(both_in_flight);
    assert_eq!(fake.completed(), 2);
    for call in calls {
        call.await??;
    }
    Ok(())
}

#[tokio::test]
async fn bad_requests_get_clear_errors() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let unknown = gw.chat(ChatRequest::new("hi").model("gpt-17")).await.err();
    assert!(
        matches!(&unknown, Some(Error::UnknownModel { known, .. }) if known.contains("glm-4.6")),
        "{unknown:?}"
    );
    let unconfigured = gw
        .chat(ChatRequest::new("hi").model("kimi"))
        .await
        .err()
        .map(|e| e.to_string());
    assert!(
        unconfigured.as_deref().is_some_and(|m| m.contains("KIMI_API_KEY")),
        "{unconfigured:?}"
    );
    let missing = gw
        .chat(ChatRequest::new("hi").continuation("no-such-thread"))
        .await
        .err();
    assert!(matches!(missing, Some(Error::ThreadNotFound(_))));
    let empty = gw.chat(ChatRequest::from_messages(vec![])).await.err();
    assert!(matches!(empty, Some(Error::InvalidRequest(_))));
    let huge = ChatRequest::new("x".repeat(1_000_000)).model("glm-4.5v");
    assert!(matches!(gw.chat(huge).await.err(), Some(Error::InvalidRequest(m)) if m.contains("context window")));
    assert!(fake.requests().is_empty(), "nothing bad reached the provider");
    Ok(())
}

#[tokio::test]
async fn no_provider_configured_says_which_variables_to_set() -> anyhow::Result<()> {
    let config = exai_core::Config::from_parts(&Default::default(), None)?;
    let gw = exai_core::Gateway::new(config).await?;
    let err = gw
        .chat(ChatRequest::new("hi"))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("GLM_API_KEY") && err.contains("KIMI_API_KEY") && err.contains("MINIMAX_API_KEY"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn images_go_to_a_vision_model_as_content_parts() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let mut msg = Message::user("what is this?");
    msg.images.push("data:image/png;base64,iVBORw0KGgo=".into());
    let reply = gw.chat(ChatRequest::from_messages(vec![msg])).await?;
    assert_eq!(reply.model, "glm-4.5v");
    let sent = fake.requests()[0].messages();
    assert_eq!(sent[0]["content"][1]["type"], "image_url");
    Ok(())
}

#[tokio::test]
async fn streams_report_queueing_and_fallback_as_status_events() -> anyhow::Result<()> {
    let glm = FakeUpstream::start().await?;
    let kimi = FakeUpstream::start().await?;
    glm.push(FakeReply::hang());
    for _ in 0..3 {
        kimi.push(FakeReply::status(502));
    }
    let mut env = common::fast_env();
    env.extend(glm.env_for(&["GLM"]));
    env.extend(kimi.env_for(&["KIMI"]));
    env.insert("EXAI_GLOBAL_MAX_INFLIGHT".into(), "1".into());
    env.insert("EXAI_FALLBACK".into(), "kimi,glm".into());
    let gw = exai_core::Gateway::new(exai_core::Config::from_parts(&env, None)?).await?;
    // Kimi fails (502 ×3), GLM then hangs, holding the only global permit.
    let mut first = gw.chat_stream(ChatRequest::new("first")).await?;
    let mut statuses = Vec::new();
    while statuses.len() < 3 {
        match first.next().await {
            Some(Ok(ChatEvent::Status(s))) => statuses.push(s),
            other => anyhow::bail!("expected a status, got {other:?}"),
        }
    }
    assert!(
        glm.wait_until(Duration::from_secs(5), |f| f.requests().len() == 1)
            .await
    );
    assert_eq!(
        statuses,
        [
            "calling kimi/kimi-k2-0905-preview",
            "falling back to glm/glm-4.6",
            "calling glm/glm-4.6"
        ]
    );
    let mut second = gw.chat_stream(ChatRequest::new("second")).await?;
    let queued = second.next().await;
    assert!(
        matches!(&queued, Some(Ok(ChatEvent::Status(s))) if s.contains("global limit of 1")),
        "{queued:?}"
    );
    Ok(())
}

#[tokio::test]
async fn ephemeral_turns_read_history_but_store_nothing() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let first = gw.chat(ChatRequest::new("hello")).await?;
    let attached = exai_core::Attachments {
        context: vec!["--- file a.rs ---\nfn main() {}".into()],
        ..Default::default()
    };
    let side = ChatRequest::new("a side question")
        .continuation(&first.continuation_id)
        .store(false)
        .attach(attached);
    let reply = gw.chat(side).await?;
    assert_eq!(reply.continuation_id, first.continuation_id);
    let sent = fake.requests()[1].messages();
    assert_eq!(sent.len(), 3, "history was read");
    assert_eq!(sent[2]["content"], "a side question\n\n--- file a.rs ---\nfn main() {}");
    let thread = gw
        .thread(&first.continuation_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("gone"))?;
    assert_eq!(thread.turns.len(), 2, "nothing stored");
    assert_eq!(gw.threads(10).await?.len(), 1);
    Ok(())
}
