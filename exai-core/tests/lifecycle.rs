//! Sessions and shutdown.

mod common;

use std::time::Duration;

use exai_core::testing::{FakeReply, FakeUpstream};
use exai_core::{ChatRequest, Error};

#[tokio::test]
async fn sessions_are_listed_while_open_and_closing_one_cancels_its_calls() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::hang());
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let session = gw.session("ws");
    let other = gw.session("stdio");
    tokio::task::yield_now().await;
    let kinds: Vec<_> = gw.sessions().await?.into_iter().map(|s| s.kind).collect();
    assert_eq!(kinds, ["ws", "stdio"]);

    let stream = session.chat_stream(ChatRequest::new("hang")).await?;
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.requests().len() == 1)
            .await
    );
    let listed = gw.sessions().await?;
    assert_eq!(
        listed.iter().find(|s| s.id == session.id()).map(|s| s.in_flight),
        Some(1)
    );
    // The client disconnects: the frontend drops its session (the stream was handed elsewhere).
    drop(session);
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.cut_short() == 1).await,
        "upstream aborted"
    );
    let reply = stream.collect_response().await;
    assert!(matches!(reply, Err(Error::Cancelled)), "{reply:?}");
    let kinds: Vec<_> = gw.sessions().await?.into_iter().map(|s| s.kind).collect();
    assert_eq!(kinds, ["stdio"]);
    assert!(other.chat(ChatRequest::new("still here")).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn idle_sessions_expire_and_then_say_so() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = common::gateway(&fake, &["GLM"], &[("EXAI_SESSION_IDLE_SECS", "1")]).await;
    let session = gw.session("http");
    session.chat(ChatRequest::new("hi")).await?;
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let err = session.chat(ChatRequest::new("hi again")).await.err();
    assert!(matches!(err, Some(Error::SessionClosed(_))), "{err:?}");
    assert!(gw.sessions().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn per_session_limits_keep_one_busy_client_from_starving_others() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::hang());
    let extra = [("EXAI_SESSION_MAX_INFLIGHT", "1"), ("EXAI_QUEUE_TIMEOUT_MS", "200")];
    let gw = common::gateway(&fake, &["GLM"], &extra).await;
    let busy = gw.session("busy");
    let _hanging = busy.chat_stream(ChatRequest::new("hang")).await?;
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.requests().len() == 1)
            .await
    );
    let err = busy.chat(ChatRequest::new("more")).await.err();
    assert!(
        matches!(&err, Some(Error::OverCapacity { scope, .. }) if scope == "session"),
        "{err:?}"
    );
    assert!(gw.session("calm").chat(ChatRequest::new("hi")).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn shutdown_lets_in_flight_calls_finish_and_refuses_new_ones() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::text("finished").with_delay(Duration::from_millis(300)));
    let gw = common::gateway(&fake, &["GLM"], &[]).await;
    let in_flight = tokio::spawn({
        let gw = gw.clone();
        async move { gw.chat(ChatRequest::new("slow")).await }
    });
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.requests().len() == 1)
            .await
    );
    gw.shutdown().await;
    assert_eq!(in_flight.await??.text, "finished");
    assert!(matches!(
        gw.chat(ChatRequest::new("late")).await,
        Err(Error::ShuttingDown)
    ));
    Ok(())
}

#[tokio::test]
async fn shutdown_cancels_what_outlives_the_grace_period() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    fake.push(FakeReply::hang());
    let gw = common::gateway(&fake, &["GLM"], &[("EXAI_SHUTDOWN_GRACE_SECS", "0")]).await;
    let stuck = tokio::spawn({
        let gw = gw.clone();
        async move { gw.chat(ChatRequest::new("hang")).await }
    });
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.requests().len() == 1)
            .await
    );
    tokio::time::timeout(Duration::from_secs(5), gw.shutdown()).await?;
    assert!(matches!(stuck.await?, Err(Error::Cancelled)));
    assert!(fake.wait_until(Duration::from_secs(5), |f| f.cut_short() == 1).await);
    Ok(())
}
