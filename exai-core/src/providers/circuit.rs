//! A per-provider circuit breaker: stop hammering a provider that is down.
//!
//! Closed → (N consecutive failures that are the provider's fault) → Open for a cooldown →
//! HalfOpen: one trial request goes through; its success closes the circuit, its failure opens
//! it again. Rate limits, auth and bad requests do not count: they say nothing about whether the
//! provider is up. The worker actor owns one of these, so no locking is needed. A dozen lines of
//! state do not justify a dependency.

use std::time::Duration;

use tokio::time::Instant;

/// What the breaker says about a new request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Go ahead.
    Allowed,
    /// Go ahead; this is the trial request of a half-open circuit.
    Trial,
    /// Refused; retry after this long.
    Refused(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { trial_running: bool },
}

/// The breaker.
#[derive(Debug)]
pub(crate) struct Circuit {
    threshold: u32,
    cooldown: Duration,
    consecutive_failures: u32,
    state: State,
}

impl Circuit {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            consecutive_failures: 0,
            state: State::Closed,
        }
    }

    /// Decides whether a request may go now.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            State::Closed => Admission::Allowed,
            State::Open { until } if now < until => Admission::Refused(until - now),
            State::Open { .. } | State::HalfOpen { trial_running: false } => {
                self.state = State::HalfOpen { trial_running: true };
                Admission::Trial
            }
            State::HalfOpen { trial_running: true } => Admission::Refused(Duration::from_secs(1)),
        }
    }

    /// A request finished well.
    pub fn success(&mut self) {
        self.consecutive_failures = 0;
        self.state = State::Closed;
    }

    /// A request failed in a way that is the provider's fault.
    pub fn failure(&mut self, now: Instant) {
        self.consecutive_failures += 1;
        let trial_failed = matches!(self.state, State::HalfOpen { .. });
        if trial_failed || self.consecutive_failures >= self.threshold {
            self.state = State::Open {
                until: now + self.cooldown,
            };
        }
    }

    /// A request ended without saying anything about the provider (cancelled, auth, 4xx).
    pub fn neutral(&mut self, was_trial: bool) {
        if was_trial && self.state == (State::HalfOpen { trial_running: true }) {
            self.state = State::HalfOpen { trial_running: false };
        }
    }

    /// `closed`, `open` or `half_open`, for health reports.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }

    /// When an open circuit will let a trial through.
    pub fn open_until(&self) -> Option<Instant> {
        match self.state {
            State::Open { until } => Some(until),
            _ => None,
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.consecutive_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_lets_one_trial_through_after_cooldown() {
        let t0 = Instant::now();
        let mut c = Circuit::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            c.failure(t0);
        }
        assert_eq!(c.admit(t0), Admission::Allowed);
        c.failure(t0);
        assert_eq!(
            c.admit(t0 + Duration::from_secs(4)),
            Admission::Refused(Duration::from_secs(6))
        );
        let later = t0 + Duration::from_secs(11);
        assert_eq!(c.admit(later), Admission::Trial);
        assert!(matches!(c.admit(later), Admission::Refused(_)));
        c.failure(later);
        assert_eq!(c.state_name(), "open");
        let much_later = later + Duration::from_secs(11);
        assert_eq!(c.admit(much_later), Admission::Trial);
        c.success();
        assert_eq!(c.admit(much_later), Admission::Allowed);
        assert_eq!(c.failures(), 0);
    }

    #[test]
    fn a_cancelled_trial_frees_the_slot_for_another() {
        let t0 = Instant::now();
        let mut c = Circuit::new(1, Duration::from_secs(1));
        c.failure(t0);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(c.admit(later), Admission::Trial);
        c.neutral(true);
        assert_eq!(c.admit(later), Admission::Trial);
    }
}
