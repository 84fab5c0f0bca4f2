//! Storing a turn: what one call adds to its conversation (a user and an assistant turn) in the
//! SQLite file — the durable default — and, for reference, in process memory. Target: a SQLite
//! save under 1 ms median on this machine.
//!
//! ```sh
//! cargo bench -p exai-benches --bench memory_store
//! ```

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use exai_core::{LocalStore, MemoryStore, Role, SqliteStore, Thread, Turn};

fn turn(role: Role, content: &str) -> Turn {
    Turn {
        role,
        content: content.to_string(),
        provider: None,
        model: None,
        files: Vec::new(),
        images: Vec::new(),
        usage: None,
        tool: None,
        timestamp_ms: 0,
    }
}

fn save_a_turn(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let dir = std::env::temp_dir().join(format!("exai-bench-{}", std::process::id()));
    let sqlite =
        SqliteStore::open(&dir.join("exai.db"), Duration::from_secs(3600)).unwrap_or_else(|e| panic!("sqlite: {e}"));
    let local = LocalStore::new(Duration::from_secs(3600));
    let now = 1_700_000_000_000;
    let thread = Thread {
        id: "bench".into(),
        parent: None,
        tool: None,
        owner: None,
        created_ms: now,
        updated_ms: now,
        turns: Vec::new(),
    };
    let turns = [
        turn(Role::User, "What does this function do? It parses the header."),
        turn(
            Role::Assistant,
            &"It reads the header and returns its fields. ".repeat(20),
        ),
    ];
    let mut group = c.benchmark_group("save_a_turn");
    group.measurement_time(Duration::from_secs(6));
    for (name, store) in [("sqlite", &sqlite as &dyn MemoryStore), ("in_process", &local)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let mut t = thread.clone();
                t.updated_ms += 1;
                store
                    .append(&t, &turns, 50)
                    .await
                    .unwrap_or_else(|e| panic!("append: {e}"));
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, save_a_turn);
criterion_main!(benches);
