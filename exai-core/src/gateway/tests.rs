//! The gateway's own behaviour that its public API does not reach: notes (the tool suite's
//! steps) and the drop guard that stops the actors.

use std::collections::HashMap;
use std::time::Duration;

use ractor::ActorStatus;

use super::Gateway;
use crate::config::Config;
use crate::request::{ChatRequest, Message};
use crate::testing::FakeUpstream;

async fn gateway(fake: &FakeUpstream) -> anyhow::Result<Gateway> {
    let mut env: HashMap<String, String> = fake.env_for(&["GLM"]).into_iter().collect();
    env.insert("EXAI_MEMORY".into(), "memory".into());
    Ok(Gateway::new(Config::builder().env(env).without_file().build()?).await?)
}

#[tokio::test]
async fn notes_are_recorded_in_order_without_a_provider_call() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = gateway(&fake).await?;
    let id = gw
        .note(
            None,
            Some("debug".into()),
            vec![Message::user("step 1: read the logs")],
            vec!["/tmp/a.log".into()],
            None,
        )
        .await?;
    gw.note(
        Some(id.clone()),
        Some("debug".into()),
        vec![Message::user("step 2: found it")],
        vec![],
        None,
    )
    .await?;
    let reply = gw.chat(ChatRequest::new("conclude").continuation(&id)).await?;
    assert_eq!(fake.requests().len(), 1);
    assert!(reply.text.starts_with("echo (3 messages)"));
    let thread = gw.thread(&id).await?.ok_or_else(|| anyhow::anyhow!("gone"))?;
    assert_eq!(
        (thread.tool.as_deref(), thread.turns[0].files.as_slice()),
        (Some("debug"), &["/tmp/a.log".to_string()][..])
    );
    assert!(
        gw.note(Some("nope".into()), None, vec![Message::user("x")], vec![], None)
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn dropping_the_last_handle_stops_every_actor() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = gateway(&fake).await?;
    let session = gw.session("test");
    gw.chat(ChatRequest::new("hello")).await?;
    let actors = [
        gw.inner.queue.actor_status_probe(),
        gw.inner.sessions.actor_status_probe(),
        gw.inner
            .pools
            .get("glm")
            .map(|p| p.first().actor_status_probe())
            .unwrap_or_else(|| panic!("no glm")),
    ];
    drop(gw);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        actors.iter().all(|a| a.get_status() == ActorStatus::Running),
        "a session still holds the gateway"
    );
    drop(session);
    for _ in 0..100 {
        if actors.iter().all(|a| a.get_status() == ActorStatus::Stopped) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let statuses: Vec<_> = actors.iter().map(|a| a.get_status()).collect();
    anyhow::bail!("actors still running after the last handle dropped: {statuses:?}")
}
