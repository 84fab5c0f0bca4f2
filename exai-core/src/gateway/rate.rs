//! The per-client request rate (`limits.requests_per_minute`): one keyed GCRA limiter
//! (governor) for the whole gateway, so a client's completions and tool calls count against one
//! budget whichever front door — OpenAI API, MCP over HTTP or WebSocket, the EXAI protocol,
//! stdio — they arrive through.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::Error;

/// Requests per minute per client.
pub(crate) struct ClientRate {
    limiter: DefaultKeyedRateLimiter<Arc<str>>,
    per_minute: u32,
}

impl ClientRate {
    pub fn new(per_minute: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            limiter: RateLimiter::keyed(quota),
            per_minute,
        }
    }

    /// Counts one request for `client`, or says when the next one will be admitted.
    pub fn check(&self, client: &Arc<str>) -> Result<(), Error> {
        self.limiter.check_key(client).map_err(|not_until| Error::RateLimited {
            client: client.to_string(),
            per_minute: self.per_minute,
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }
}

#[cfg(test)]
mod tests {
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
}
