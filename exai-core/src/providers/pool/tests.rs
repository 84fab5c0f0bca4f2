//! The pool's choices, cool-downs and headroom, on pools no call reaches.

use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::choice::apply_order;
use super::*;
use crate::config::Strategy;
use crate::error::{ProviderError, ProviderErrorKind};

async fn pool(strategy: Strategy, weights: &[u32]) -> Pool {
    idle_pool(strategy, weights).await.unwrap_or_else(|e| panic!("{e}"))
}

/// How often each deployment comes first over `n` choices.
fn firsts(pool: &Pool, n: usize) -> Vec<usize> {
    let mut counts = vec![0; pool.deployments().len()];
    for _ in 0..n {
        let (order, _) = pool.order(Instant::now());
        let first = order.first().map(|d| d.label.clone()).unwrap_or_default();
        if let Some(i) = pool.deployments().iter().position(|d| d.label == first) {
            counts[i] += 1;
        }
    }
    counts
}

#[tokio::test]
async fn weighted_choices_follow_the_weights_and_every_deployment_is_in_the_order() {
    let p = pool(Strategy::Weighted, &[1, 2, 1]).await;
    let counts = firsts(&p, 8_000);
    // Expected 2000, 4000, 2000.
    assert!((1_700..2_300).contains(&counts[0]), "{counts:?}");
    assert!((3_600..4_400).contains(&counts[1]), "{counts:?}");
    assert!((1_700..2_300).contains(&counts[2]), "{counts:?}");
    assert_eq!(p.order(Instant::now()).0.len(), 3);
}

#[tokio::test]
async fn least_busy_picks_the_deployment_with_the_fewest_calls_in_flight() {
    let p = pool(Strategy::LeastBusy, &[1, 1, 1]).await;
    let held: Vec<InFlight> = vec![
        p.deployments()[0].state.start(),
        p.deployments()[0].state.start(),
        p.deployments()[2].state.start(),
    ];
    assert_eq!(firsts(&p, 30), [0, 30, 0]);
    drop(held);
    // Idle again: ties go round every deployment, then to the quicker one.
    assert_eq!(firsts(&p, 30), [10, 10, 10]);
    p.deployments()[1].state.answered(Duration::from_millis(300));
    p.deployments()[0].state.answered(Duration::from_millis(20));
    p.deployments()[2].state.answered(Duration::from_millis(80));
    assert_eq!(firsts(&p, 30), [30, 0, 0]);
}

#[tokio::test]
async fn latency_prefers_the_quickest_first_byte_and_tries_an_untried_one_first() {
    let p = pool(Strategy::Latency, &[1, 1]).await;
    p.deployments()[0].state.answered(Duration::from_millis(900));
    assert_eq!(firsts(&p, 10), [0, 10], "the untried deployment first");
    p.deployments()[1].state.answered(Duration::from_millis(50));
    assert_eq!(firsts(&p, 10), [0, 10]);
}

#[tokio::test]
async fn usage_prefers_the_most_headroom_its_headers_report() {
    let p = pool(Strategy::Usage, &[1, 1]).await;
    let mut low = HeaderMap::new();
    low.insert(
        "x-ratelimit-remaining-requests",
        "3".parse().unwrap_or_else(|_| panic!()),
    );
    let mut high = HeaderMap::new();
    high.insert(
        "x-ratelimit-remaining-requests",
        "900".parse().unwrap_or_else(|_| panic!()),
    );
    p.deployments()[0].state.observe(&low);
    p.deployments()[1].state.observe(&high);
    assert_eq!(firsts(&p, 10), [0, 10]);
}

#[tokio::test]
async fn a_cooling_or_rejected_deployment_is_left_out_and_the_soonest_wait_reported() {
    let p = pool(Strategy::Weighted, &[1, 1, 1]).await;
    let rate_limited = ProviderError::new(
        "glm",
        "glm-4.6",
        ProviderErrorKind::RateLimited {
            retry_after: Some(Duration::from_secs(30)),
            message: "slow down".into(),
        },
    );
    assert_eq!(
        p.deployments()[0].state.failed(&rate_limited, false),
        Some(Duration::from_secs(30))
    );
    let rejected = ProviderError::new(
        "glm",
        "glm-4.6",
        ProviderErrorKind::Auth {
            status: 401,
            key_source: "GLM_API_KEYS[2] (env)".into(),
            message: "bad key".into(),
        },
    );
    p.deployments()[1].state.failed(&rejected, false);
    let (order, _) = p.order(Instant::now());
    let labels: Vec<_> = order.iter().map(|d| d.label.as_str()).collect();
    assert_eq!(labels, ["glm#3"]);
    p.deployments()[2].state.cool(Duration::from_secs(5));
    let (order, soonest) = p.order(Instant::now());
    assert!(order.is_empty());
    assert!(soonest.is_some_and(|s| s <= Duration::from_secs(5) && s > Duration::from_secs(4)));
    // A good check puts the rejected key back.
    p.deployments()[1].state.key_accepted();
    assert_eq!(p.order(Instant::now()).0.len(), 1);
    let status: Vec<_> = p.deployments().iter().map(|d| d.status(Instant::now()).state).collect();
    assert_eq!(status, ["cooling", "ready", "cooling"]);
}

#[tokio::test]
async fn a_429_without_retry_after_backs_off_longer_each_time() {
    let p = pool(Strategy::Weighted, &[1]).await;
    let limited = ProviderError::new(
        "glm",
        "glm-4.6",
        ProviderErrorKind::RateLimited {
            retry_after: None,
            message: String::new(),
        },
    );
    let waits: Vec<_> = (0..8)
        .filter_map(|_| p.deployments()[0].state.failed(&limited, false))
        .collect();
    let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
}

#[test]
fn apply_order_puts_each_item_where_the_order_says() {
    let mut items = vec!['a', 'b', 'c', 'd'];
    apply_order(&mut items, &[2, 0, 3, 1]);
    assert_eq!(items, ['c', 'a', 'd', 'b']);
    let mut items = vec!['a', 'b', 'c'];
    apply_order(&mut items, &[1, 2, 0]);
    assert_eq!(items, ['b', 'c', 'a']);
}
