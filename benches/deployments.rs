//! Deployments: many keys and endpoints behind one model name, measured against fake upstreams
//! on 127.0.0.1 (one per deployment, so each counts only its own calls). The gateways are
//! `exai-core` in process, built from the environment as a daemon's would be; "3 daemons" are
//! three gateways sharing one real redis-server (the shared limits see three holders, as with
//! three processes).
//!
//! Rows, as issue #27's targets:
//! 1. 3 keys with `rpm` 60 each, 150 calls through one model name — 0 refused or failed; no key's
//!    upstream sees more than 60;
//! 2. the same spread over 3 gateways on one Redis;
//! 3. one key starts answering 429 (`Retry-After: 5`) mid-run — 0 calls fail; that key gets no
//!    call until its `Retry-After` has passed;
//! 4. the only GLM key answers 429 with `Retry-After: 30`, `model: "auto"` — time to the answer
//!    from the next model;
//! 5. `least-busy` with one slow deployment (2 s) and one fast one — the share of calls to the
//!    fast one.
//!
//! The choice of a deployment itself is timed by criterion in `gateway_overhead.rs`; the SQLite
//! lease in `memory_store.rs`.
//!
//! ```sh
//! cargo bench -p exai-benches --bench deployments
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use exai_core::testing::{FakeReply, FakeUpstream, RedisServer};
use exai_core::{ChatRequest, Config, Gateway};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("deployments: run with `cargo bench` to measure");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let only = std::env::var("EXAI_BENCH_ROW").ok();
    rt.block_on(async {
        if only.as_deref() == Some("shared") {
            rpm_spread(3).await;
            return;
        }
        rpm_spread(1).await;
        rpm_spread(3).await;
        one_key_turns_429().await;
        auto_falls_back().await;
        least_busy().await;
    });
}

async fn fakes(n: usize) -> Vec<FakeUpstream> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(FakeUpstream::start().await.unwrap_or_else(|e| panic!("fake: {e}")));
    }
    out
}

fn chat_calls(fake: &FakeUpstream) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .count()
}

/// A gateway over GLM deployments at `fakes` (keys `k1`…), memory in process, with `extra`.
async fn gateway(fakes: &[FakeUpstream], extra: &[(&str, String)]) -> Gateway {
    let mut env: HashMap<String, String> = HashMap::new();
    let keys: Vec<String> = (1..=fakes.len()).map(|i| format!("k{i}")).collect();
    let urls: Vec<String> = fakes.iter().map(FakeUpstream::base_url).collect();
    env.insert("GLM_API_KEYS".into(), keys.join(","));
    env.insert("GLM_BASE_URLS".into(), urls.join(","));
    env.insert("EXAI_MEMORY".into(), "memory".into());
    env.insert("EXAI_GLOBAL_MAX_INFLIGHT".into(), "256".into());
    env.insert("EXAI_SESSION_MAX_INFLIGHT".into(), "256".into());
    env.insert("GLM_MAX_INFLIGHT".into(), "256".into());
    env.insert("EXAI_RETRY_BASE_DELAY_MS".into(), "5".into());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let config = Config::from_parts(&env, None).unwrap_or_else(|e| panic!("config: {e}"));
    Gateway::new(config).await.unwrap_or_else(|e| panic!("gateway: {e}"))
}

/// `n` calls at once, spread over `gateways` in turn: how many failed.
async fn burst(gateways: &[Gateway], n: usize, model: &str) -> usize {
    let calls = (0..n).map(|i| {
        let g = gateways[i % gateways.len()].clone();
        let model = model.to_string();
        async move { g.chat(ChatRequest::new(format!("call {i}")).model(model)).await.err() }
    });
    let errors: Vec<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .map(|e| e.to_string())
        .collect();
    if let Some(first) = errors.first() {
        println!("  ({} failed; the first: {first})", errors.len());
    }
    errors.len()
}

async fn rpm_spread(daemons: usize) {
    let ups = fakes(3).await;
    for f in &ups {
        f.respond_with(|_| Some(FakeReply::text("ok")));
    }
    let redis = (daemons > 1).then(RedisServer::start);
    let mut extra = vec![("GLM_RPM", "60".to_string())];
    if let Some(r) = &redis {
        extra.push(("REDIS_URL", r.url()));
        extra.push(("EXAI_MEMORY", "memory".into()));
    }
    let mut gateways = Vec::new();
    for _ in 0..daemons {
        gateways.push(gateway(&ups, &extra).await);
    }
    let started = Instant::now();
    let failed = burst(&gateways, 150, "glm-4.6").await;
    let seen: Vec<usize> = ups.iter().map(chat_calls).collect();
    println!(
        "rpm 60 x 3 keys, 150 calls, {daemons} gateway(s){}: failed {failed}; per key {seen:?} (max {}); {:.2} s",
        if daemons > 1 { " on one Redis" } else { "" },
        seen.iter().max().unwrap_or(&0),
        started.elapsed().as_secs_f64()
    );
}

async fn one_key_turns_429() {
    let ups = fakes(3).await;
    for f in &ups {
        f.respond_with(|_| Some(FakeReply::text("ok")));
    }
    let g = gateway(&ups, &[]).await;
    let gateways = [g];
    let mut failed = burst(&gateways, 60, "glm-4.6").await;
    // Key 2 starts answering 429 with Retry-After: 5.
    let turned = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mark = turned.clone();
    ups[1].respond_with(move |_| {
        let mut at = mark.lock().unwrap_or_else(|e| e.into_inner());
        let first = *at.get_or_insert_with(Instant::now);
        if first.elapsed() < Duration::from_secs(5) {
            Some(FakeReply::status(429).with_retry_after(5))
        } else {
            Some(FakeReply::text("ok again"))
        }
    });
    let before = chat_calls(&ups[1]);
    let started = Instant::now();
    let mut during = 0;
    while started.elapsed() < Duration::from_secs(7) {
        failed += burst(&gateways, 10, "glm-4.6").await;
        if started.elapsed() < Duration::from_secs(5) {
            during = chat_calls(&ups[1]) - before;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = chat_calls(&ups[1]) - before - during;
    println!(
        "one key of 3 answers 429 (Retry-After 5) mid-run: failed {failed}; calls to it while cooling {during} (the 429 itself included); after its Retry-After {after}"
    );
}

async fn auto_falls_back() {
    let ups = fakes(2).await;
    ups[0].respond_with(|_| Some(FakeReply::status(429).with_retry_after(30)));
    ups[1].respond_with(|_| Some(FakeReply::text("from kimi")));
    let extra = [
        ("GLM_API_KEYS", String::new()),
        ("GLM_BASE_URLS", String::new()),
        ("GLM_API_KEY", "g".to_string()),
        ("GLM_BASE_URL", ups[0].base_url()),
        ("KIMI_API_KEY", "k".to_string()),
        ("KIMI_BASE_URL", ups[1].base_url()),
    ];
    let g = gateway(&[], &extra).await;
    let mut times = Vec::new();
    for i in 0..5 {
        let started = Instant::now();
        let reply = g.chat(ChatRequest::new(format!("auto {i}")).model("auto")).await;
        times.push(started.elapsed());
        assert!(reply.is_ok_and(|r| r.text.contains("kimi")));
    }
    let ms: Vec<String> = times.iter().map(|t| format!("{:.1}", t.as_secs_f64() * 1e3)).collect();
    println!(
        "only GLM key answers 429 (Retry-After 30), model auto: answered by Kimi in {} ms (first call, then cooled); GLM called {} time(s)",
        ms.join(", "),
        chat_calls(&ups[0])
    );
}

async fn least_busy() {
    let ups = fakes(2).await;
    ups[0].respond_with(|_| Some(FakeReply::text("slow").with_delay(Duration::from_secs(2))));
    ups[1].respond_with(|_| Some(FakeReply::text("fast")));
    let g = gateway(&ups, &[("GLM_STRATEGY", "least-busy".to_string())]).await;
    let mut calls = Vec::new();
    for i in 0..200 {
        let g = g.clone();
        calls.push(tokio::spawn(async move {
            g.chat(ChatRequest::new(format!("c{i}")).model("glm-4.6")).await.is_ok()
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ok = futures::future::join_all(calls)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(true)))
        .count();
    let (slow, fast) = (chat_calls(&ups[0]), chat_calls(&ups[1]));
    println!(
        "least-busy, one deployment slow (2 s), 200 calls over 4 s: {ok} ok; {:.1}% to the fast one ({fast} fast, {slow} slow)",
        100.0 * fast as f64 / (fast + slow).max(1) as f64
    );
}
