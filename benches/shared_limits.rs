//! A lease through the state file: what one place in a limit shared by the exai processes of a
//! machine costs when no Redis is configured — taken (one `BEGIN IMMEDIATE` transaction on the
//! keeper thread that owns the connection) and given back (its guard dropped, the row deleted
//! before the next take). Target: under 300 µs. Then 64 calls starting at once, as a busy daemon
//! sees them.
//!
//! ```sh
//! cargo bench -p exai-benches --bench shared_limits
//! ```

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exai_core::testing::StateFileLeases;

/// Calls starting at once in the second group.
const AT_ONCE: usize = 64;

fn lease(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let dir = std::env::temp_dir().join(format!("exai-bench-leases-{}", std::process::id()));
    let leases = StateFileLeases::open(&dir.join("exai.db")).unwrap_or_else(|e| panic!("sqlite: {e}"));
    let mut group = c.benchmark_group("lease_through_the_state_file");
    group.measurement_time(Duration::from_secs(6));
    group.bench_function("take_and_give_back", |b| {
        b.to_async(&rt).iter(|| async {
            assert!(leases.take_and_give_back("glm", 4).await, "a free place");
        })
    });
    group.finish();
    // As many calls starting at once: the keeper serves the takes that arrive together in one
    // transaction, so under load a lease costs a fraction of one alone.
    let mut group = c.benchmark_group("leases_at_once");
    group.measurement_time(Duration::from_secs(6));
    group.throughput(Throughput::Elements(AT_ONCE as u64));
    group.bench_function("64_taken_and_given_back", |b| {
        b.to_async(&rt).iter(|| async {
            let all = (0..AT_ONCE).map(|_| leases.take_and_give_back("kimi", AT_ONCE));
            let held = futures::future::join_all(all).await;
            assert!(held.iter().all(|held| *held), "a place each");
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, lease);
criterion_main!(benches);
