//! Failed authentications per client address (`limits.auth_failures_per_minute`): past the
//! limit, that address's attempts are refused unread — 429 with the time left — until the
//! minute ends, so a key cannot be guessed at full speed. Counted in `/metrics`
//! (`exai_auth_failures_total`, `exai_auth_throttled_total`; no address as a label).
//!
//! One fixed window per address that failed lately, in a map pruned as it is used: an address
//! that never fails is never stored.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Error;

const WINDOW: Duration = Duration::from_secs(60);

/// Windows held before the expired ones are dropped.
const PRUNE_ABOVE: usize = 1024;

pub(crate) struct AuthFailures {
    per_minute: u32,
    windows: Mutex<HashMap<String, Window>>,
}

struct Window {
    started: Instant,
    failures: u32,
}

impl AuthFailures {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses `client` while it is over its failures for this minute.
    pub fn admit(&self, client: &str) -> Result<(), Error> {
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let Some(window) = windows.get(client) else {
            return Ok(());
        };
        let left = WINDOW.saturating_sub(window.started.elapsed());
        if window.failures < self.per_minute || left.is_zero() {
            return Ok(());
        }
        metrics::counter!("exai_auth_throttled_total").increment(1);
        Err(Error::RateLimited {
            client: client.to_string(),
            per_minute: self.per_minute,
            retry_after: left,
        })
    }

    /// Counts a failed authentication from `client`.
    pub fn failed(&self, client: &str) {
        metrics::counter!("exai_auth_failures_total").increment(1);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, w| w.started.elapsed() < WINDOW);
        }
        let window = windows.entry(client.to_string()).or_insert(Window {
            started: Instant::now(),
            failures: 0,
        });
        if window.started.elapsed() >= WINDOW {
            *window = Window {
                started: Instant::now(),
                failures: 0,
            };
        }
        window.failures += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_over_its_failures_is_refused_and_others_are_not() {
        let failures = AuthFailures::new(3);
        for _ in 0..3 {
            assert!(failures.admit("10.0.0.1").is_ok());
            failures.failed("10.0.0.1");
        }
        match failures.admit("10.0.0.1") {
            Err(Error::RateLimited { retry_after, .. }) => assert!(retry_after <= WINDOW),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(failures.admit("10.0.0.2").is_ok(), "another address is not slowed");
    }
}
