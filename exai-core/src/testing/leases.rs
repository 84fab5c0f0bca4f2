//! Leases in a state file, taken as every exai process of one machine takes them
//! (`actors/shared/sqlite.rs`) — what the lease bench measures, from outside the crate.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use crate::actors::shared::{Leased, SharedLimits};
use crate::memory::MemoryError;

/// The shared limits of one process on a state file.
pub struct StateFileLeases {
    limits: SharedLimits,
}

impl StateFileLeases {
    /// Opens the file at `path` (created if missing), as a process starting up does. Blocking.
    pub fn open(path: &Path) -> Result<Self, MemoryError> {
        Ok(Self {
            limits: SharedLimits::sqlite(path, Duration::from_secs(15))?,
        })
    }

    /// Takes a lease on `scope`, one of at most `limit`, without waiting, and gives it back
    /// (its guard dropped, as when a call ends); whether it was held.
    pub async fn take_and_give_back(&self, scope: &str, limit: usize) -> bool {
        matches!(
            self.limits.lease(scope, limit, Instant::now()).await,
            Ok(Leased::Held(_))
        )
    }
}
