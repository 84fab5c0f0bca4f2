//! One suite both stores must pass, on a real SQLite file and a real redis-server: two
//! `SharedLimits` on one store act as two processes. Then what only one store can show: a
//! holder gone without a word (a row of another holder, written to expire) and a store failing.
//!
//! The SQLite keeper is a real thread on the real clock, so these tests sleep (briefly) rather
//! than pause time.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use super::{Lease, Leased, SharedLimits};
use crate::config::Secret;
use crate::error::Error;
use crate::memory::connect_redis;
use crate::testing::RedisServer;

const LEASE: Duration = Duration::from_secs(15);

/// A fresh state file for one test.
fn state_file(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exai-shared-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("exai.db")
}

/// Two processes on one fresh state file.
fn on_sqlite(test: &str, lease: Duration) -> (SharedLimits, SharedLimits, PathBuf) {
    let path = state_file(test);
    let open = || SharedLimits::sqlite(&path, lease).unwrap_or_else(|e| panic!("{e}"));
    (open(), open(), path)
}

/// Two daemons on one redis-server.
async fn on_redis(redis: &RedisServer) -> (SharedLimits, SharedLimits) {
    let url = Secret::new(redis.url());
    let mut daemons = Vec::new();
    for _ in 0..2 {
        let conn = connect_redis(&url).await.unwrap_or_else(|e| panic!("{e}"));
        daemons.push(SharedLimits::redis(conn, "exai-test:", LEASE));
    }
    let b = daemons.pop().unwrap_or_else(|| panic!("two"));
    let a = daemons.pop().unwrap_or_else(|| panic!("two"));
    (a, b)
}

/// A lease, or a panic naming what came instead.
async fn held(limits: &SharedLimits, scope: &str, limit: usize, wait: Duration) -> Lease {
    match limits.lease(scope, limit, Instant::now() + wait).await {
        Ok(Leased::Held(lease)) => lease,
        Ok(Leased::Cooling(left)) => panic!("{scope} cools for {left:?}"),
        Ok(Leased::Local) => panic!("the store failed"),
        Err(e) => panic!("{e}"),
    }
}

/// Whether a lease on `scope` is refused as full at once.
async fn full(limits: &SharedLimits, scope: &str, limit: usize) -> bool {
    matches!(
        limits.lease(scope, limit, Instant::now()).await,
        Err(Error::OverCapacity { .. })
    )
}

async fn a_limit_holds_across_processes_and_a_dropped_lease_frees_its_place(a: &SharedLimits, b: &SharedLimits) {
    let first = held(a, "glm", 2, Duration::ZERO).await;
    let _second = held(b, "glm", 2, Duration::ZERO).await;
    assert!(full(a, "glm", 2).await, "a third lease on a limit of two, from either");
    assert!(full(b, "glm", 2).await);
    let _other = held(a, "kimi", 2, Duration::ZERO).await;
    drop(first);
    // The release reaches the store off the caller's path: the waiter gets the place soon after.
    let started = Instant::now();
    let _third = held(b, "glm", 2, Duration::from_secs(2)).await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

async fn many_takes_at_once_never_pass_the_limit(a: &SharedLimits, b: &SharedLimits) {
    let tries = (0..24).map(|i| {
        let limits = if i % 2 == 0 { a } else { b };
        limits.lease("many", 5, Instant::now())
    });
    let results = futures::future::join_all(tries).await;
    let held = results.iter().filter(|r| matches!(r, Ok(Leased::Held(_)))).count();
    assert_eq!(held, 5, "24 takes at once, served together, on a limit of 5");
}

async fn rpm_is_paced_across_processes(a: &SharedLimits, b: &SharedLimits) {
    let now = Instant::now;
    assert!(a.pace("glm", 2, now()).await.is_ok());
    assert!(b.pace("glm", 2, now()).await.is_ok(), "a burst of rpm");
    match a.pace("glm", 2, now()).await {
        Err(Error::OverCapacity { retry_after, .. }) => {
            assert!(retry_after > Duration::from_secs(25), "{retry_after:?}");
        }
        other => panic!("a third call within the minute: {other:?}"),
    }
    assert!(b.pace("kimi", 2, now()).await.is_ok(), "each scope its own budget");
}

async fn a_cool_down_marked_by_one_is_seen_by_the_other(a: &SharedLimits, b: &SharedLimits) {
    assert_eq!(b.cooling("glm").await, None);
    a.cool("glm", Duration::from_secs(5)).await;
    let left = b.cooling("glm").await.unwrap_or_default();
    assert!(
        left > Duration::from_secs(4) && left <= Duration::from_secs(5),
        "{left:?}"
    );
    match b.lease("glm", 4, Instant::now() + Duration::from_secs(1)).await {
        Ok(Leased::Cooling(left)) => assert!(left > Duration::from_secs(4), "{left:?}"),
        _ => panic!("a cooling scope refuses leases at once"),
    }
    let _other = held(b, "kimi", 4, Duration::ZERO).await;
    a.cool("glm", Duration::from_millis(100)).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(b.cooling("glm").await, None, "a later mark replaces the earlier");
    let _after = held(b, "glm", 4, Duration::ZERO).await;
}

async fn tokens_used_by_one_are_counted_for_the_other(a: &SharedLimits, b: &SharedLimits) {
    // Both inside one wall-clock minute (a test crossing into the next would see 0).
    assert_eq!(b.tokens("glm#1", 0).await, Some(0));
    assert_eq!(a.tokens("glm#1", 40).await, Some(40));
    assert_eq!(b.tokens("glm#1", 25).await, Some(65));
    assert_eq!(a.tokens("glm#1", 0).await, Some(65), "a read adds nothing");
    assert_eq!(a.tokens("glm#2", 0).await, Some(0), "each scope its own count");
}

#[tokio::test]
async fn on_sqlite_the_limits_hold_across_processes() {
    let (a, b, _) = on_sqlite("suite", LEASE);
    a_limit_holds_across_processes_and_a_dropped_lease_frees_its_place(&a, &b).await;
    many_takes_at_once_never_pass_the_limit(&a, &b).await;
    rpm_is_paced_across_processes(&a, &b).await;
    a_cool_down_marked_by_one_is_seen_by_the_other(&a, &b).await;
    tokens_used_by_one_are_counted_for_the_other(&a, &b).await;
    assert!(!a.is_degraded() && !b.is_degraded());
    assert_eq!(a.backend(), "sqlite");
}

#[tokio::test]
async fn on_redis_the_limits_hold_across_daemons() {
    let redis = RedisServer::start();
    let (a, b) = on_redis(&redis).await;
    a_limit_holds_across_processes_and_a_dropped_lease_frees_its_place(&a, &b).await;
    many_takes_at_once_never_pass_the_limit(&a, &b).await;
    rpm_is_paced_across_processes(&a, &b).await;
    a_cool_down_marked_by_one_is_seen_by_the_other(&a, &b).await;
    tokens_used_by_one_are_counted_for_the_other(&a, &b).await;
    assert!(!a.is_degraded() && !b.is_degraded());
    assert_eq!(a.backend(), "redis");
}

/// Writes a lease of a holder that is gone, expiring `in_ms` from now (negative: expired).
fn lease_of_a_gone_holder(path: &PathBuf, scope: &str, in_ms: i64) {
    let conn = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("{e}"));
    let expires = crate::actors::session::now_ms() as i64 + in_ms;
    conn.execute(
        "INSERT INTO limit_leases (scope, holder, expires_ms) VALUES (?1, 'killed-process:0', ?2)",
        rusqlite::params![scope, expires],
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn on_sqlite_the_lease_of_a_holder_gone_without_a_word_comes_back_when_it_expires() {
    let (a, _b, path) = on_sqlite("expiry", LEASE);
    lease_of_a_gone_holder(&path, "expired", -1);
    let _taken = held(&a, "expired", 1, Duration::ZERO).await;
    lease_of_a_gone_holder(&path, "glm", 300);
    assert!(full(&a, "glm", 1).await, "its place is taken until it expires");
    let started = Instant::now();
    let _back = held(&a, "glm", 1, Duration::from_secs(3)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(1),
        "{waited:?}"
    );
}

#[tokio::test]
async fn on_sqlite_a_held_lease_is_renewed_past_its_lease_time() {
    let (a, b, _) = on_sqlite("renewal", Duration::from_secs(1));
    let _held = held(&a, "glm", 1, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        full(&b, "glm", 1).await,
        "renewed every third of a second, so still held"
    );
}

#[tokio::test]
async fn on_sqlite_a_failing_file_leaves_the_local_limits_and_says_so_until_it_works_again() {
    let (a, _b, path) = on_sqlite("failing", LEASE);
    let conn = rusqlite::Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
    conn.execute_batch("DROP TABLE limit_leases")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(a.lease("glm", 1, Instant::now()).await, Ok(Leased::Local)));
    assert!(a.is_degraded());
    conn.execute_batch(super::sqlite::SCHEMA)
        .unwrap_or_else(|e| panic!("{e}"));
    let _held = held(&a, "glm", 1, Duration::ZERO).await;
    assert!(!a.is_degraded(), "back on the shared limits once the file works");
}

#[test]
fn a_file_that_is_not_a_database_is_refused_naming_its_path() {
    let path = state_file("garbage");
    let _ = std::fs::create_dir_all(path.parent().unwrap_or(&path));
    let _ = std::fs::write(&path, vec![b'x'; 8192]);
    let err = SharedLimits::sqlite(&path, LEASE)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("exai.db") && err.contains("not a database"), "{err}");
}

#[tokio::test]
async fn dropping_the_limits_closes_the_file_and_leaves_no_write_ahead_log() {
    let path = state_file("closed");
    let limits = SharedLimits::sqlite(&path, LEASE).unwrap_or_else(|e| panic!("{e}"));
    drop(held(&limits, "glm", 1, Duration::ZERO).await);
    let wal = path.with_file_name("exai.db-wal");
    assert!(wal.exists(), "open in WAL mode");
    drop(limits);
    assert!(!wal.exists(), "closed before the process could exit");
}
