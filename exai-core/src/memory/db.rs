//! The SQLite file every process of one machine shares (`$EXAI_STATE_DIR/exai.db`):
//! conversations, the usage ledger and API keys.
//!
//! Opened in WAL mode with a busy timeout, so several processes — exai-stdio for each editor,
//! `exai chat` in a shell, a daemon — read while one writes and wait their turn to write instead
//! of failing. The schema is versioned with `PRAGMA user_version`; [`MIGRATIONS`] run in order,
//! each in its own transaction, when a process opens an older file. (The shared limits' tables,
//! whose rows live seconds, are created by `actors/shared/sqlite.rs` on its own connection.) rusqlite is synchronous:
//! every statement runs on tokio's blocking pool, never on a runtime thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use super::MemoryError;

/// How long a writer waits for another process's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, one step per version (`user_version` counts the steps applied).
const MIGRATIONS: &[&str] = &[
    // 1: conversations (one row per turn, so concurrent writers append rather than overwrite)
    //    and the usage ledger (`day` = 'all' for the all-time rows).
    "CREATE TABLE threads (
         id TEXT PRIMARY KEY,
         parent TEXT,
         tool TEXT,
         created_ms INTEGER NOT NULL,
         updated_ms INTEGER NOT NULL,
         expires_ms INTEGER NOT NULL
     );
     CREATE INDEX threads_updated ON threads(updated_ms);
     CREATE INDEX threads_expires ON threads(expires_ms);
     CREATE TABLE turns (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
         turn TEXT NOT NULL
     );
     CREATE INDEX turns_thread ON turns(thread_id, seq);
     CREATE TABLE usage (
         day TEXT NOT NULL,
         provider TEXT NOT NULL,
         model TEXT NOT NULL,
         requests INTEGER NOT NULL DEFAULT 0,
         errors INTEGER NOT NULL DEFAULT 0,
         input_tokens INTEGER NOT NULL DEFAULT 0,
         output_tokens INTEGER NOT NULL DEFAULT 0,
         reasoning_tokens INTEGER NOT NULL DEFAULT 0,
         cost_usd REAL NOT NULL DEFAULT 0,
         PRIMARY KEY (day, provider, model)
     );",
    // 2: API keys (only each secret's SHA-256), what they spent per period (`day:…`, `week:…`,
    //    `month:…`, `total`, and tokens per `minute:…`), the ledger per key, and a counter that
    //    every change to a key bumps so that each process reloads the keys it has cached.
    "CREATE TABLE keys (
         name TEXT PRIMARY KEY,
         hash TEXT NOT NULL UNIQUE,
         record TEXT NOT NULL,
         last_used_ms INTEGER
     );
     CREATE TABLE key_meter (
         period TEXT NOT NULL,
         name TEXT NOT NULL,
         cost_usd REAL NOT NULL DEFAULT 0,
         tokens INTEGER NOT NULL DEFAULT 0,
         expires_ms INTEGER,
         PRIMARY KEY (period, name)
     );
     CREATE TABLE key_usage (
         day TEXT NOT NULL,
         key TEXT NOT NULL,
         provider TEXT NOT NULL,
         model TEXT NOT NULL,
         requests INTEGER NOT NULL DEFAULT 0,
         errors INTEGER NOT NULL DEFAULT 0,
         input_tokens INTEGER NOT NULL DEFAULT 0,
         output_tokens INTEGER NOT NULL DEFAULT 0,
         reasoning_tokens INTEGER NOT NULL DEFAULT 0,
         cost_usd REAL NOT NULL DEFAULT 0,
         PRIMARY KEY (day, key, provider, model)
     );
     CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
     INSERT INTO meta (name, value) VALUES ('keys_generation', 0);",
    // A thread's owner: the key that started it (issue: conversations belong to their key).
    "ALTER TABLE threads ADD COLUMN owner TEXT;",
    // Responses kept for the Responses API (`store: true`): the stored JSON, its owner inside.
    "CREATE TABLE responses (
         id TEXT PRIMARY KEY,
         expires_ms INTEGER NOT NULL,
         body TEXT NOT NULL
     );",
    // Calls the response cache answered, and what they would have cost (issue 28).
    "ALTER TABLE usage ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE usage ADD COLUMN saved_usd REAL NOT NULL DEFAULT 0;
     ALTER TABLE key_usage ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE key_usage ADD COLUMN saved_usd REAL NOT NULL DEFAULT 0;",
    // 6: the ledger per deployment: which endpoint and key answered, by its label (issue 27).
    "CREATE TABLE deployment_usage (
         day TEXT NOT NULL,
         deployment TEXT NOT NULL,
         provider TEXT NOT NULL,
         model TEXT NOT NULL,
         requests INTEGER NOT NULL DEFAULT 0,
         errors INTEGER NOT NULL DEFAULT 0,
         input_tokens INTEGER NOT NULL DEFAULT 0,
         output_tokens INTEGER NOT NULL DEFAULT 0,
         reasoning_tokens INTEGER NOT NULL DEFAULT 0,
         cost_usd REAL NOT NULL DEFAULT 0,
         cached INTEGER NOT NULL DEFAULT 0,
         saved_usd REAL NOT NULL DEFAULT 0,
         PRIMARY KEY (day, deployment, provider, model)
     );",
    // 7: kept responses by expiry, so the sweep of expired ones reads only those (it scanned
    //    the whole table, once per write).
    "CREATE INDEX responses_expires ON responses(expires_ms);",
];

/// An open database file. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Db {
    path: Arc<PathBuf>,
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (creating it and its directory if needed) and migrates the file at `path`. A file
    /// that cannot be written — read-only, locked past the busy timeout, not a database — fails
    /// here, naming the path.
    pub fn open(path: &Path) -> Result<Self, MemoryError> {
        let mut conn = connect(path, BUSY_TIMEOUT)?;
        migrate(&mut conn).map_err(|e| failed(path, "migrate", &e))?;
        Ok(Self {
            path: Arc::new(path.to_path_buf()),
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the blocking pool with the connection.
    pub async fn call<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, MemoryError> {
        let (conn, path) = (self.conn.clone(), self.path.clone());
        let fail = move |message: String| MemoryError::Sqlite {
            path: path.display().to_string(),
            op,
            message,
        };
        let ran = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut conn)
        })
        .await;
        match ran {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(fail(e.to_string())),
            Err(e) => Err(fail(format!("the blocking task failed: {e}"))),
        }
    }
}

/// A connection to the file at `path` (created with its directory if needed), in WAL mode, whose
/// writes wait up to `busy` for another process's write to finish. Fails naming the path.
pub(crate) fn connect(path: &Path, busy: Duration) -> Result<Connection, MemoryError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| failed(path, "create its directory", &e))?;
    }
    let conn = Connection::open(path).map_err(|e| failed(path, "open", &e))?;
    conn.busy_timeout(busy).map_err(|e| failed(path, "configure", &e))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| failed(path, "switch to WAL", &e))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .and_then(|()| conn.pragma_update(None, "foreign_keys", "ON"))
        .map_err(|e| failed(path, "configure", &e))?;
    Ok(conn)
}

fn failed(path: &Path, op: &'static str, e: &dyn std::fmt::Display) -> MemoryError {
    MemoryError::Sqlite {
        path: path.display().to_string(),
        op,
        message: e.to_string(),
    }
}

/// Brings the schema up to the newest version, one migration per transaction.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have migrated while this one waited for the lock.
        let now: usize = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if now <= index {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", index + 1)?;
        }
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_migrated_once_and_reopening_keeps_it() -> Result<(), MemoryError> {
        let dir = std::env::temp_dir().join(format!("exai-db-{}", std::process::id()));
        let path = dir.join("migrate.db");
        let _ = std::fs::remove_file(&path);
        Db::open(&path)?;
        let db = Db::open(&path)?;
        let conn = db.conn.lock().unwrap_or_else(|p| p.into_inner());
        let version: usize = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap_or(0);
        assert_eq!(version, MIGRATIONS.len());
        Ok(())
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_naming_its_path() {
        let dir = std::env::temp_dir().join(format!("exai-db-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("garbage.db");
        let _ = std::fs::write(&path, vec![b'x'; 8192]);
        let err = Db::open(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("garbage.db") && err.contains("not a database"), "{err}");
    }
}
