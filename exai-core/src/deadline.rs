//! The call's deadline, where the code that waits inside a call can see it.
//!
//! A call runs under its deadline (`limits.call_timeout_secs`): the engine puts it in scope
//! ([`scope`]) around the provider attempts, and the provider client asks ([`outlasts`]) before
//! it waits out a `Retry-After` or a back-off. A wait that would end past the deadline is not
//! started: the failure goes back to the attempt loop at once, which moves on to the next
//! deployment or model — or, with nothing left, answers with that failure (a 429 and its
//! `Retry-After`) instead of a timeout the client cannot act on.
//!
//! It is a task-local value: the HTTP call runs in the caller's task (see
//! `providers/worker.rs`), and a coalesced flight's task is given the scope with its future.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static UNTIL: Instant;
}

/// Runs `work` with `until` as its deadline.
pub(crate) fn scope<F: Future>(until: Instant, work: F) -> impl Future<Output = F::Output> {
    UNTIL.scope(until, work)
}

/// Whether waiting `wait` from now would end past the deadline in scope (never, with none).
pub(crate) fn outlasts(wait: Duration) -> bool {
    UNTIL.try_with(|until| Instant::now() + wait >= *until).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_past_the_deadline_in_scope_outlasts_it() {
        assert!(!outlasts(Duration::from_secs(3600)), "no deadline in scope");
        let until = Instant::now() + Duration::from_secs(60);
        scope(until, async {
            assert!(!outlasts(Duration::from_secs(1)));
            assert!(outlasts(Duration::from_secs(61)));
        })
        .await;
    }
}
