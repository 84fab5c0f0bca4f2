//! What the gateway records through the `metrics` facade: the figures a frontend's exporter
//! (Prometheus at `/metrics`) will show.

mod common;

use exai_core::ChatRequest;
use exai_core::testing::{FakeReply, FakeUpstream};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// A metric's name, labels and value.
type Metric = (String, Vec<(String, String)>, DebugValue);

fn counter(snapshot: &[Metric], name: &str, label: (&str, &str)) -> u64 {
    snapshot
        .iter()
        .filter(|(n, labels, _)| n == name && labels.iter().any(|(k, v)| k == label.0 && v == label.1))
        .map(|(_, _, v)| if let DebugValue::Counter(c) = v { *c } else { 0 })
        .sum()
}

#[test]
fn requests_tokens_errors_and_waits_are_recorded() -> anyhow::Result<()> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // A current-thread runtime keeps every task on this thread, where the local recorder is set.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let fake = FakeUpstream::start().await?;
            fake.push(FakeReply::text("hi").with_usage(11, 3));
            fake.push(FakeReply::status(400));
            let gw = common::gateway(&fake, &["GLM"], &[]).await;
            gw.chat(ChatRequest::new("one")).await?;
            assert!(gw.chat(ChatRequest::new("two")).await.is_err());
            anyhow::Ok(())
        })
    })?;
    let snapshot: Vec<Metric> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            (key.name().to_string(), labels, value)
        })
        .collect();
    assert_eq!(counter(&snapshot, "exai_requests_total", ("status", "ok")), 1);
    assert_eq!(
        counter(&snapshot, "exai_requests_total", ("status", "invalid_request")),
        1
    );
    assert_eq!(counter(&snapshot, "exai_tokens_total", ("direction", "input")), 11);
    assert_eq!(counter(&snapshot, "exai_tokens_total", ("direction", "output")), 3);
    let names: Vec<&str> = snapshot.iter().map(|(n, _, _)| n.as_str()).collect();
    for expected in [
        "exai_request_duration_seconds",
        "exai_queue_wait_seconds",
        "exai_inflight",
        "exai_cost_usd_total",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let inflight: f64 = snapshot
        .iter()
        .filter(|(n, _, _)| n == "exai_inflight")
        .map(|(_, _, v)| {
            if let DebugValue::Gauge(g) = v {
                g.into_inner()
            } else {
                0.0
            }
        })
        .sum();
    assert_eq!(inflight, 0.0, "every in-flight gauge went back to zero");
    Ok(())
}
