//! Gateway overhead: the same chat call through `Gateway` and directly with reqwest, both against
//! the fake upstream on 127.0.0.1. The difference of the two medians is what exai adds per call
//! (session and global permits, routing, the provider worker actor, the usage ledger, storing the
//! turn in the default SQLite store).
//!
//! The gateway rows differ by store: memory in process only (the gateway's own work), the SQLite
//! file (the default: the turn is stored before the reply returns, and the global and provider
//! limits are leases in the file, shared by the machine's exai processes), the SQLite file with
//! `limits.shared` off (its difference with the default is what the two leases in the file cost
//! per call), and a row whose limits are shared through a real redis-server on loopback
//! (`limits.shared` with a Redis URL): its difference with the unshared row is what the two
//! leases cost in Redis (a global and a provider lease, each taken and released).
//!
//! A fourth row makes the SQLite row's call with an API key that has every limit (budget, rpm,
//! tpm, calls in flight, a model allow-list): its difference with the SQLite row is what a key
//! costs per call (its checks, and recording its spend — off the request path, on the same
//! cores).
//!
//! A last group times choosing a deployment per call (3 deployments, each strategy).
//!
//! ```sh
//! cargo bench -p exai-benches --bench gateway_overhead
//! ```

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use exai_core::testing::{DeploymentChoice, FakeUpstream, RedisServer};
use exai_core::{ChatRequest, Config, Gateway, KeyLimits, SessionOptions, Strategy};
use serde_json::json;

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let redis = RedisServer::start();
    let (fake, in_process, gateway, unshared, shared) = rt.block_on(async {
        let fake = FakeUpstream::start()
            .await
            .unwrap_or_else(|e| panic!("fake upstream: {e}"));
        fake.stop_recording();
        // The default store, in a file of its own.
        let mut env = fake.env_for(&["GLM"]);
        let state = std::env::temp_dir().join(format!("exai-bench-overhead-{}", std::process::id()));
        env.insert("EXAI_STATE_DIR".into(), state.display().to_string());
        let gateway_with = |env: &std::collections::HashMap<String, String>| {
            let config = Config::from_parts(env, None).unwrap_or_else(|e| panic!("config: {e}"));
            Gateway::new(config)
        };
        let gateway = gateway_with(&env).await.unwrap_or_else(|e| panic!("gateway: {e}"));
        // The same file, the limits this process's own.
        let mut unshared_env = env.clone();
        unshared_env.insert("EXAI_SHARED_LIMITS".into(), "false".into());
        let unshared = gateway_with(&unshared_env)
            .await
            .unwrap_or_else(|e| panic!("gateway: {e}"));
        // Memory in process only: the gateway's own work, no store.
        let mut memory_env = env.clone();
        memory_env.insert("EXAI_MEMORY".into(), "memory".into());
        let in_process = gateway_with(&memory_env)
            .await
            .unwrap_or_else(|e| panic!("gateway: {e}"));
        // The same, with the limits shared through Redis (memory stays in the SQLite file).
        env.insert("REDIS_URL".into(), redis.url());
        env.insert("EXAI_MEMORY".into(), "sqlite".into());
        let shared = gateway_with(&env).await.unwrap_or_else(|e| panic!("gateway: {e}"));
        (fake, in_process, gateway, unshared, shared)
    });
    let keyed = rt.block_on(async {
        let limits = KeyLimits {
            budget_usd: Some(1e9),
            rpm: Some(1_000_000),
            tpm: Some(u64::MAX / 2),
            max_inflight: Some(1_000),
            models: Some(vec!["glm-4.6".into()]),
            ..KeyLimits::default()
        };
        let name = format!("bench-{}", std::process::id());
        let key = gateway
            .keys()
            .create(&name, limits)
            .await
            .unwrap_or_else(|e| panic!("key: {e}"));
        let caller = gateway
            .authenticate(Some(&key.secret))
            .await
            .unwrap_or_else(|e| panic!("authenticate: {e}"));
        gateway.open_session(SessionOptions::new("bench").caller(caller))
    });
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", fake.base_url());
    let body = json!({"model": "glm-4.6", "messages": [{"role": "user", "content": "ping"}], "stream": false});

    let mut group = c.benchmark_group("chat_call");
    group.measurement_time(Duration::from_secs(8)).sample_size(60);
    group.bench_function("direct_reqwest", |b| {
        b.to_async(&rt).iter(|| async {
            let reply: serde_json::Value = client
                .post(&url)
                .bearer_auth("test-key")
                .json(&body)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .unwrap_or_else(|e| panic!("direct call: {e}"))
                .json()
                .await
                .unwrap_or_else(|e| panic!("direct body: {e}"));
            assert!(reply["choices"][0]["message"]["content"].is_string());
        })
    });
    let gateways = [
        ("through_gateway_in_process_memory", &in_process),
        ("through_gateway", &gateway),
        ("through_gateway_unshared_limits", &unshared),
        ("through_gateway_shared_limits", &shared),
    ];
    for (name, gateway) in gateways {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let reply = gateway
                    .chat(ChatRequest::new("ping").model("glm-4.6"))
                    .await
                    .unwrap_or_else(|e| panic!("gateway call: {e}"));
                assert!(!reply.text.is_empty());
            })
        });
    }
    group.bench_function("through_gateway_with_a_key", |b| {
        b.to_async(&rt).iter(|| async {
            let reply = keyed
                .chat(ChatRequest::new("ping").model("glm-4.6"))
                .await
                .unwrap_or_else(|e| panic!("keyed call: {e}"));
            assert!(!reply.text.is_empty());
        })
    });
    group.finish();
}

/// Choosing a deployment for one call (the attempt loop's `Pool::order`): 3 deployments under
/// each strategy. Target: < 5 µs.
fn choice(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let mut group = c.benchmark_group("deployment_choice");
    for strategy in [
        Strategy::Weighted,
        Strategy::LeastBusy,
        Strategy::Latency,
        Strategy::Usage,
    ] {
        let pool = rt
            .block_on(DeploymentChoice::new(strategy, 3))
            .unwrap_or_else(|e| panic!("pool: {e}"));
        group.bench_function(strategy.to_string(), |b| b.iter(|| assert_eq!(pool.choose(), 3)));
    }
    group.finish();
}

criterion_group!(benches, overhead, choice);
criterion_main!(benches);
