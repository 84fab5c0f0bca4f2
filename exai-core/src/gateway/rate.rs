//! The per-client request rate (`limits.requests_per_minute`): one keyed GCRA limiter
//! (governor) for the whole gateway, so a client's completions and tool calls count against one
//! budget whichever front door — OpenAI API, MCP over HTTP or WebSocket, the EXAI protocol,
//! stdio — they arrive through.
//!
//! The limiter holds one state per client address it has seen. Every [`PRUNE_EVERY`] checks it
//! drops the clients whose budget is full again (their state is the same as a fresh one's), so a
//! long-running gateway does not keep every address that ever called it; no background task.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::error::Error;

/// Checks between two prunings of the limiter. A pruning walks every client held, so spread over
/// this many requests it costs next to nothing, and at most this many stale clients pile up
/// between two of them.
const PRUNE_EVERY: u32 = 1024;

/// governor's keyed limiter over client addresses, on clock `C`.
type Limiter<C> = RateLimiter<Arc<str>, DefaultKeyedStateStore<Arc<str>>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Requests per minute per client. The clock is governor's real one; tests use a fake clock.
pub(crate) struct ClientRate<C: Clock = DefaultClock> {
    limiter: Limiter<C>,
    per_minute: u32,
    /// Checks so far (wrapping); every `prune_every`-th one prunes.
    checks: AtomicU32,
    prune_every: u32,
}

impl ClientRate {
    pub fn new(per_minute: u32) -> Self {
        Self::with_clock(per_minute, PRUNE_EVERY, DefaultClock::default())
    }
}

impl<C: Clock> ClientRate<C> {
    fn with_clock(per_minute: u32, prune_every: u32, clock: C) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            limiter: RateLimiter::dashmap_with_clock(quota, clock),
            per_minute,
            checks: AtomicU32::new(0),
            prune_every: prune_every.max(1),
        }
    }

    /// Counts one request for `client`, or says when the next one will be admitted.
    pub fn check(&self, client: &Arc<str>) -> Result<(), Error> {
        self.prune_now_and_then();
        self.limiter.check_key(client).map_err(|not_until| Error::RateLimited {
            client: client.to_string(),
            per_minute: self.per_minute,
            retry_after: not_until.wait_time_from(self.limiter.clock().now()),
        })
    }

    /// Drops the clients whose budget is full again, once every `prune_every` checks.
    fn prune_now_and_then(&self) {
        let checks = self.checks.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if checks.is_multiple_of(self.prune_every) {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn each_client_has_its_own_budget_and_is_told_when_to_retry() {
        let rate = ClientRate::new(2);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("127.0.0.1"), Arc::from("stdio"));
        assert!(rate.check(&a).is_ok() && rate.check(&a).is_ok());
        match rate.check(&a) {
            Err(Error::RateLimited {
                retry_after,
                per_minute,
                ..
            }) => {
                assert_eq!(per_minute, 2);
                assert!(retry_after.as_secs() <= 30, "{retry_after:?}");
            }
            other => panic!("expected RateLimited, got {other:?}"),
        }
        assert!(rate.check(&b).is_ok(), "another client is not limited by the first");
    }

    #[test]
    fn clients_whose_budget_is_full_again_are_dropped_every_few_checks() {
        let clock = FakeRelativeClock::default();
        let rate = ClientRate::with_clock(2, 4, clock.clone());
        let client = |n: u32| -> Arc<str> { Arc::from(format!("10.0.0.{n}")) };
        for n in 0..3 {
            assert!(rate.check(&client(n)).is_ok());
        }
        assert_eq!(rate.limiter.len(), 3, "three checks, no pruning yet");

        clock.advance(Duration::from_secs(61));
        assert!(rate.check(&client(9)).is_ok());
        assert_eq!(rate.limiter.len(), 1, "the fourth check pruned the three idle clients");

        for _ in 0..3 {
            let _ = rate.check(&client(9));
        }
        let eighth = rate.check(&client(9));
        assert!(
            eighth.is_err(),
            "the eighth check pruned, and kept the client still limited"
        );
        assert_eq!(rate.limiter.len(), 1);
    }
}
