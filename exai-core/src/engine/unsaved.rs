//! Responses whose store write is under way. A finished Responses call hands its response to a
//! task that writes it to the memory store (`responses::keep`); until that write returns, a
//! `previous_response_id`, `GET` or `DELETE` sent the moment the reply ended finds it here.
//!
//! At most [`MAX_UNSAVED`] are held. A new call that will keep its response first waits for
//! room ([`Unsaved::room`]): when the store falls behind, the clients wait, instead of a backlog
//! of responses (each its whole conversation) growing in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::memory::StoredResponse;

/// Responses held while their write is under way, before new calls wait.
const MAX_UNSAVED: usize = 1024;

/// The responses being written.
pub(crate) struct Unsaved {
    held: Mutex<HashMap<String, Arc<StoredResponse>>>,
    /// One permit per response held.
    room: Arc<Semaphore>,
}

impl Default for Unsaved {
    fn default() -> Self {
        Self {
            held: Mutex::default(),
            room: Arc::new(Semaphore::new(MAX_UNSAVED)),
        }
    }
}

impl Unsaved {
    /// Waits until fewer than [`MAX_UNSAVED`] responses are being written.
    pub async fn room(&self) {
        // Never closed; the permit only tells there is room, a response takes its own in `hold`.
        let _ = self.room.acquire().await;
    }

    /// Holds `response` until the returned guard drops (its write returned, or was abandoned).
    pub fn hold(self: &Arc<Self>, response: Arc<StoredResponse>) -> Held {
        // Calls that passed `room` together may take a few more than MAX_UNSAVED.
        let permit = self.room.clone().try_acquire_owned().ok();
        let id = response.id.clone();
        self.lock().insert(id.clone(), response);
        Held {
            unsaved: self.clone(),
            id,
            _room: permit,
        }
    }

    /// A response being written.
    pub fn get(&self, id: &str) -> Option<Arc<StoredResponse>> {
        self.lock().get(id).cloned()
    }

    /// Stops answering for `id` (deleted).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<StoredResponse>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A response held while it is written; dropping it lets it go.
pub(crate) struct Held {
    unsaved: Arc<Unsaved>,
    id: String,
    _room: Option<OwnedSemaphorePermit>,
}

impl Held {
    /// Whether a `DELETE` forgot it while it was held: its write, once done, must be undone.
    pub fn was_deleted(&self) -> bool {
        !self.unsaved.lock().contains_key(&self.id)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.unsaved.forget(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(id: &str) -> Arc<StoredResponse> {
        Arc::new(StoredResponse {
            id: id.to_string(),
            owner: None,
            expires_ms: u64::MAX,
            response: serde_json::Value::Null,
            items: Vec::new(),
        })
    }

    #[tokio::test]
    async fn a_response_is_answered_while_held_and_room_comes_back_when_let_go() {
        let unsaved = Arc::new(Unsaved::default());
        let held: Vec<Held> = (0..MAX_UNSAVED)
            .map(|n| unsaved.hold(response(&format!("resp_{n}"))))
            .collect();
        assert!(unsaved.get("resp_0").is_some());
        assert!(
            futures::FutureExt::now_or_never(unsaved.room()).is_none(),
            "no room while {MAX_UNSAVED} are held"
        );
        drop(held);
        assert!(unsaved.get("resp_0").is_none());
        assert!(futures::FutureExt::now_or_never(unsaved.room()).is_some());
    }
}
