//! Conversation memory: threads of turns, stored in Redis when configured, in-process otherwise.
//!
//! - [`MemoryStore`]: the trait both stores implement, with the same semantics (TTL refreshed on
//!   every save, listing newest first).
//! - `local.rs`: the in-process store (moka), for tests and `EXAI_MEMORY=memory`.
//! - `sqlite.rs` (over `db.rs`, the file and its migrations): the SQLite store, the durable
//!   default — one file per machine, shared by every exai process.
//! - `redis.rs`: the Redis store (connection manager, JSON threads under the `exai:` prefix). It
//!   mirrors every thread in a local store, so when Redis goes away mid-run requests keep working
//!   (the failure is logged and counted) and the connection manager reconnects in the background.
//!
//! Trimming to `max_turns` happens in [`Thread::trim`], called by the gateway before each save, so
//! both stores hold exactly the same thing.

mod db;
mod local;
mod redis;
mod redis_conn;
mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub(crate) use db::{Db, connect as connect_sqlite};
pub use local::LocalStore;
pub use redis::RedisStore;
pub(crate) use redis_conn::{RedisConn, connect as connect_redis, renew_every};
pub use sqlite::SqliteStore;

use crate::request::{Role, Usage};

/// Why a memory operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// The SQLite file failed: it names the file, what was being done, and SQLite's reason.
    #[error("sqlite {op} of {path} failed: {message}")]
    Sqlite {
        /// The file.
        path: String,
        /// What was being done.
        op: &'static str,
        /// SQLite's message.
        message: String,
    },
    /// Redis could not be reached or answered with an error.
    #[error("redis {op} failed: {message}")]
    Redis {
        /// The operation (`get`, `set`, …).
        op: &'static str,
        /// What happened (no URL, no password).
        message: String,
    },
    /// A stored thread could not be read back.
    #[error("stored conversation {id} is unreadable: {message}")]
    Corrupt {
        /// Thread id.
        id: String,
        /// The parser's message.
        message: String,
    },
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// `user` or `assistant`.
    pub role: Role,
    /// What was said.
    pub content: String,
    /// The provider that answered (assistant turns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The model that answered (assistant turns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Files the caller embedded with this turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Images attached to this turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Tokens the call cost (assistant turns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The tool that issued the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// When (unix ms).
    pub timestamp_ms: u64,
}

/// A conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    /// The continuation id.
    pub id: String,
    /// The thread this one was branched from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The tool that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The key that started it, by name (`None`: no key — the master token, or a daemon
    /// without keys). Only that key may continue it; the master and admin tokens see every
    /// thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Created at (unix ms).
    pub created_ms: u64,
    /// Last saved at (unix ms).
    pub updated_ms: u64,
    /// Turns, oldest first.
    pub turns: Vec<Turn>,
}

impl Thread {
    /// Whether a call made with `key` (`None`: the master token, or no key at all) may read
    /// and continue this thread: its own key's, or any with no key.
    pub fn belongs_to(&self, key: Option<&str>) -> bool {
        key.is_none() || self.owner.as_deref() == key
    }

    /// Drops the oldest turns beyond `max`.
    pub fn trim(&mut self, max: usize) {
        if self.turns.len() > max {
            let excess = self.turns.len() - max;
            self.turns.drain(..excess);
        }
    }

    /// A short description for listings.
    pub fn summary(&self) -> ThreadSummary {
        let preview = self
            .turns
            .iter()
            .find(|t| t.role == Role::User)
            .map(|t| t.content.chars().take(80).collect())
            .unwrap_or_default();
        ThreadSummary {
            id: self.id.clone(),
            tool: self.tool.clone(),
            owner: self.owner.clone(),
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            turns: self.turns.len(),
            last_model: self.turns.iter().rev().find_map(|t| t.model.clone()),
            preview,
        }
    }
}

/// A conversation as listings show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadSummary {
    /// The continuation id.
    pub id: String,
    /// The tool that started it.
    pub tool: Option<String>,
    /// The key that started it, by name (`None`: no key).
    #[serde(default)]
    pub owner: Option<String>,
    /// Created at (unix ms).
    pub created_ms: u64,
    /// Last saved at (unix ms).
    pub updated_ms: u64,
    /// Number of turns.
    pub turns: usize,
    /// The model that answered last.
    pub last_model: Option<String>,
    /// The start of the first user message.
    pub preview: String,
}

/// A response kept for the Responses API (`store: true`): the object as it was answered, and
/// every item of its conversation (earlier items, this request's input, its output) for a
/// later `previous_response_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// `resp_…`.
    pub id: String,
    /// The key that made it, by name (`None`: no key). Only that key may read, continue or
    /// delete it; the master and admin tokens reach every response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// When it expires (unix ms).
    pub expires_ms: u64,
    /// The `response` object.
    pub response: serde_json::Value,
    /// The conversation's items, oldest first, this response's output last.
    pub items: Vec<serde_json::Value>,
}

impl StoredResponse {
    /// Whether a call made with `key` may reach it (as [`Thread::belongs_to`]).
    pub fn belongs_to(&self, key: Option<&str>) -> bool {
        key.is_none() || self.owner.as_deref() == key
    }
}

/// Where conversations live.
#[async_trait]
pub trait MemoryStore: Send + Sync + 'static {
    /// `redis` or `local`.
    fn backend(&self) -> &'static str;
    /// A thread by id, if it exists and has not expired.
    async fn load(&self, id: &str) -> Result<Option<Thread>, MemoryError>;
    /// Stores a thread and refreshes its TTL.
    async fn save(&self, thread: &Thread) -> Result<(), MemoryError>;
    /// The most recently updated threads, newest first.
    async fn list(&self, limit: usize) -> Result<Vec<ThreadSummary>, MemoryError>;
    /// Whether the store answers now (`Ok` for the in-process store).
    async fn ping(&self) -> Result<(), MemoryError>;
    /// Keeps a response until its `expires_ms`.
    async fn put_response(&self, response: &StoredResponse) -> Result<(), MemoryError>;
    /// A kept response, unless it expired or was deleted.
    async fn get_response(&self, id: &str) -> Result<Option<StoredResponse>, MemoryError>;
    /// Deletes a kept response; whether there was one.
    async fn delete_response(&self, id: &str) -> Result<bool, MemoryError>;
    /// Appends `turns` to the conversation `thread` (as the caller loaded it, or new), keeps its
    /// newest `max_turns` and refreshes its lifetime from `thread.updated_ms`. A store that
    /// several processes share makes this one atomic step, so writers to one conversation at
    /// once lose no turn; by default the caller's copy is extended and saved.
    async fn append(&self, thread: &Thread, turns: &[Turn], max_turns: usize) -> Result<(), MemoryError> {
        let mut whole = thread.clone();
        whole.turns.extend_from_slice(turns);
        whole.trim(max_turns);
        self.save(&whole).await
    }
    /// Whether the store answers and accepts writes; by default the same as `ping`.
    async fn probe(&self) -> Result<(), MemoryError> {
        self.ping().await
    }
}
