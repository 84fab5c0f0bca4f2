//! Failed authentications per client address (`limits.auth_failures_per_minute`): past the
//! limit, that address's attempts are refused unread — 429 with the time left — until the
//! minute ends, so a key cannot be guessed at full speed. Counted in `/metrics`
//! (`exai_auth_failures_total`, `exai_auth_throttled_total`; no address as a label).
//!
//! One fixed window per address that failed lately, in a map pruned as it grows: an address that
//! never fails is never stored. An IPv6 address counts by its /64 (one host can hold a whole
//! /64), and past [`MAX_ADDRESSES`] the new ones share one window, so no flood of addresses
//! grows the map or goes unthrottled.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Error;

const WINDOW: Duration = Duration::from_secs(60);

/// Windows held before the expired ones are dropped (once every [`PRUNE_EVERY`] failures).
const PRUNE_ABOVE: usize = 1024;
const PRUNE_EVERY: u32 = 256;

/// The most addresses counted apart; more share the window of [`OVERFLOW`].
const MAX_ADDRESSES: usize = 65_536;
const OVERFLOW: &str = "(many addresses)";

pub(crate) struct AuthFailures {
    per_minute: u32,
    windows: Mutex<Windows>,
}

#[derive(Default)]
struct Windows {
    by_address: HashMap<String, Window>,
    /// Failures since the last pruning.
    since_prune: u32,
}

struct Window {
    started: Instant,
    failures: u32,
}

impl AuthFailures {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            windows: Mutex::default(),
        }
    }

    /// Refuses `client` while it is over its failures for this minute.
    pub fn admit(&self, client: &str) -> Result<(), Error> {
        let key = counted_as(client);
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let window = match windows.by_address.get(key.as_str()) {
            Some(window) => window,
            None if windows.by_address.len() >= MAX_ADDRESSES => match windows.by_address.get(OVERFLOW) {
                Some(window) => window,
                None => return Ok(()),
            },
            None => return Ok(()),
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
        let mut key = counted_as(client);
        let mut guard = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let windows = &mut *guard;
        windows.since_prune += 1;
        if windows.by_address.len() > PRUNE_ABOVE && windows.since_prune >= PRUNE_EVERY {
            windows.since_prune = 0;
            windows.by_address.retain(|_, w| w.started.elapsed() < WINDOW);
        }
        if windows.by_address.len() >= MAX_ADDRESSES && !windows.by_address.contains_key(&key) {
            key = OVERFLOW.to_string();
        }
        let window = windows.by_address.entry(key).or_insert(Window {
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

/// What an address is counted as: itself, or an IPv6 address's /64.
fn counted_as(client: &str) -> String {
    match client.parse::<std::net::Ipv6Addr>() {
        Ok(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        _ => client.to_string(),
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

    #[test]
    fn an_ipv6_host_counts_by_its_64() {
        let failures = AuthFailures::new(2);
        failures.failed("2001:db8:1:2::1");
        failures.failed("2001:db8:1:2::ffff");
        assert!(failures.admit("2001:db8:1:2:aaaa::9").is_err(), "the same /64");
        assert!(failures.admit("2001:db8:1:3::1").is_ok(), "another /64");
    }
}
