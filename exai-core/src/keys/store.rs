//! Where keys live: the state store the gateway uses — the SQLite file (tables `keys`,
//! `key_meter`, `meta`) or Redis (`exai:{keys}:records`, `…:generation`, `…:last_used` and one
//! `…:meter:PERIOD` hash per period, all under one hash tag so that every pipeline stays on one
//! slot of a cluster). A key is stored as its SHA-256 and its settings, never its secret.
//!
//! Every change to a key bumps a generation counter; processes poll it and reload the keys when
//! it moved. Spend and tokens are added per period as calls finish.
//!
//! Whether keys are required is stored too (`meta` row `keys_required`, Redis `…:required`):
//! creating or deleting a key sets it, so deleting the last key never opens the gateway; only
//! [`KeyStore::allow_keyless`] (`exai keys allow-keyless`, refused while a key is left) clears it.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use rusqlite::OptionalExtension;

use super::types::{KeyError, StoredKey};
use crate::memory::{Db, MemoryError, RedisConn};

/// How long one Redis round trip may take.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// What a key spent and used in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Meter {
    pub cost_usd: f64,
    pub tokens: u64,
}

/// Meters by key name, then period id.
pub(crate) type Meters = HashMap<String, HashMap<String, Meter>>;

/// The keys as stored, and the generation they were read at.
pub(crate) struct Loaded {
    pub generation: u64,
    pub keys: Vec<StoredKey>,
    /// Whether a key was ever made or deleted since the gateway was last opened: then a caller
    /// needs a key (or the master token) even when no key is left.
    pub required: bool,
}

/// A stored key as read: name, record, when it was last used.
type Row = (String, String, Option<i64>);

/// Sets the `keys_required` row (there is none in a file made before it existed).
const SET_REQUIRED: &str = "INSERT INTO meta (name, value) VALUES ('keys_required', ?1)
     ON CONFLICT(name) DO UPDATE SET value = excluded.value";
/// Bumps the generation, so that every process rereads the keys.
const BUMP: &str = "UPDATE meta SET value = value + 1 WHERE name = 'keys_generation'";

/// The state store keys live in.
#[derive(Clone)]
pub(crate) enum KeyStore {
    Sqlite(Db),
    Redis { conn: RedisConn, prefix: String },
}

impl From<MemoryError> for KeyError {
    fn from(e: MemoryError) -> Self {
        Self::Store(e.to_string())
    }
}

fn redis_error(op: &'static str) -> impl Fn(String) -> KeyError {
    move |message| KeyError::Store(format!("redis {op} failed: {message}"))
}

/// Runs a Redis call with a timeout, as a `KeyError` naming `op`.
async fn redis<T>(op: &'static str, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T, KeyError> {
    match tokio::time::timeout(OP_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(redis_error(op)(e.to_string())),
        Err(_) => Err(redis_error(op)(format!("no answer within {OP_TIMEOUT:?}"))),
    }
}

fn corrupt(name: &str, e: impl std::fmt::Display) -> KeyError {
    KeyError::Store(format!("stored key {name} is unreadable: {e}"))
}

/// Runs `sql` (parameters: name, hash, record) and bumps the generation, in one transaction;
/// the rows it changed. `require`: a changed row makes keys required.
async fn write_sqlite(
    db: &Db,
    op: &'static str,
    sql: &'static str,
    key: &StoredKey,
    record: String,
    require: bool,
) -> Result<usize, KeyError> {
    let (name, hash) = (key.name.clone(), key.hash.clone());
    Ok(db
        .call(op, move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let n = tx.execute(sql, rusqlite::params![name, hash, record])?;
            if n > 0 && require {
                tx.execute(SET_REQUIRED, [1])?;
            }
            tx.execute(BUMP, [])?;
            tx.commit()?;
            Ok(n)
        })
        .await?)
}

impl KeyStore {
    fn key(prefix: &str, what: &str) -> String {
        format!("{prefix}{{keys}}:{what}")
    }

    /// The generation counter: it moves whenever a key is created or changed.
    pub async fn generation(&self) -> Result<u64, KeyError> {
        match self {
            Self::Sqlite(db) => Ok(db
                .call("keys generation", |c| {
                    c.query_row("SELECT value FROM meta WHERE name = 'keys_generation'", [], |r| {
                        r.get::<_, i64>(0)
                    })
                })
                .await? as u64),
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let n: Option<u64> = redis("get", conn.get(Self::key(prefix, "generation"))).await?;
                Ok(n.unwrap_or(0))
            }
        }
    }

    /// Every key, with when it was last used.
    pub async fn load(&self) -> Result<Loaded, KeyError> {
        let (generation, rows, required): (u64, Vec<Row>, bool) = match self {
            Self::Sqlite(db) => {
                db.call("keys load", |c| {
                    let tx = c.transaction()?;
                    let meta = |name: &str| {
                        tx.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get::<_, i64>(0))
                            .optional()
                    };
                    let generation = meta("keys_generation")?.unwrap_or(0) as u64;
                    let required = meta("keys_required")?.is_some_and(|v| v != 0);
                    let rows = {
                        let mut s = tx.prepare("SELECT name, record, last_used_ms FROM keys ORDER BY name")?;
                        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                            .collect::<rusqlite::Result<Vec<_>>>()?
                    };
                    Ok((generation, rows, required))
                })
                .await?
            }
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let mut pipe = redis::pipe();
                pipe.get(Self::key(prefix, "generation"))
                    .hgetall(Self::key(prefix, "records"))
                    .hgetall(Self::key(prefix, "last_used"))
                    .exists(Self::key(prefix, "required"));
                type Answer = (Option<u64>, HashMap<String, String>, HashMap<String, i64>, bool);
                let (generation, records, used, required): Answer = redis("load", pipe.query_async(&mut conn)).await?;
                let mut rows: Vec<_> = records
                    .into_iter()
                    .map(|(name, record)| {
                        let last = used.get(&name).copied();
                        (name, record, last)
                    })
                    .collect();
                rows.sort_by(|a, b| a.0.cmp(&b.0));
                (generation.unwrap_or(0), rows, required)
            }
        };
        let keys = rows
            .into_iter()
            .map(|(name, record, last_used_ms)| {
                let mut key: StoredKey = serde_json::from_str(&record).map_err(|e| corrupt(&name, e))?;
                key.last_used_ms = last_used_ms;
                Ok(key)
            })
            .collect::<Result<_, KeyError>>()?;
        Ok(Loaded {
            generation,
            keys,
            required,
        })
    }

    /// Stores a new key; refused if its name is taken.
    pub async fn insert(&self, key: &StoredKey) -> Result<(), KeyError> {
        let record = serde_json::to_string(key).map_err(|e| corrupt(&key.name, e))?;
        match self {
            Self::Sqlite(db) => {
                let sql = "INSERT INTO keys (name, hash, record) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";
                if write_sqlite(db, "keys insert", sql, key, record, true).await? == 0 {
                    return Err(KeyError::Exists(key.name.clone()));
                }
                Ok(())
            }
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .hset_nx(Self::key(prefix, "records"), &key.name, record)
                    .incr(Self::key(prefix, "generation"), 1)
                    .ignore();
                let (set,): (bool,) = redis("insert", pipe.query_async(&mut conn)).await?;
                if !set {
                    return Err(KeyError::Exists(key.name.clone()));
                }
                redis("insert", conn.set::<_, _, ()>(Self::key(prefix, "required"), 1)).await
            }
        }
    }

    /// Replaces a stored key (new settings, a new hash, revoked).
    pub async fn replace(&self, key: &StoredKey) -> Result<(), KeyError> {
        let record = serde_json::to_string(key).map_err(|e| corrupt(&key.name, e))?;
        match self {
            Self::Sqlite(db) => {
                let sql = "UPDATE keys SET hash = ?2, record = ?3 WHERE name = ?1";
                if write_sqlite(db, "keys update", sql, key, record, false).await? == 0 {
                    return Err(KeyError::NotFound(key.name.clone()));
                }
                Ok(())
            }
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .hset(Self::key(prefix, "records"), &key.name, record)
                    .ignore()
                    .incr(Self::key(prefix, "generation"), 1)
                    .ignore();
                redis("update", pipe.query_async::<()>(&mut conn)).await
            }
        }
    }

    /// Deletes a key, its record and its meters of `meter_ids`; keys stay required. `false` when
    /// there was no such key.
    pub async fn delete(&self, name: &str, meter_ids: Vec<String>) -> Result<bool, KeyError> {
        match self {
            Self::Sqlite(db) => {
                let name = name.to_string();
                Ok(db
                    .call("keys delete", move |c| {
                        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                        let n = tx.execute("DELETE FROM keys WHERE name = ?1", [&name])?;
                        if n > 0 {
                            tx.execute("DELETE FROM key_meter WHERE name = ?1", [&name])?;
                            tx.execute(SET_REQUIRED, [1])?;
                            tx.execute(BUMP, [])?;
                        }
                        tx.commit()?;
                        Ok(n > 0)
                    })
                    .await?)
            }
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .hdel(Self::key(prefix, "records"), name)
                    .hdel(Self::key(prefix, "last_used"), name)
                    .ignore()
                    .set(Self::key(prefix, "required"), 1)
                    .ignore();
                for id in &meter_ids {
                    pipe.hdel(
                        Self::key(prefix, &format!("meter:{id}")),
                        &[format!("{name}|cost"), format!("{name}|tokens")],
                    )
                    .ignore();
                }
                pipe.incr(Self::key(prefix, "generation"), 1).ignore();
                let (deleted,): (u32,) = redis("delete", pipe.query_async(&mut conn)).await?;
                Ok(deleted > 0)
            }
        }
    }

    /// Stops requiring keys: the gateway is open again (on loopback) once no key is left.
    /// Refused while a key (even a revoked one) exists.
    pub async fn allow_keyless(&self) -> Result<(), KeyError> {
        let left = self.load().await?.keys.into_iter().map(|k| k.name).collect::<Vec<_>>();
        if !left.is_empty() {
            return Err(KeyError::Invalid(format!(
                "keys are left ({}): delete them first (`exai keys delete NAME`)",
                left.join(", ")
            )));
        }
        match self {
            Self::Sqlite(db) => {
                db.call("keys allow keyless", |c| {
                    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    tx.execute(SET_REQUIRED, [0])?;
                    tx.execute(BUMP, [])?;
                    tx.commit()
                })
                .await?;
                Ok(())
            }
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .del(Self::key(prefix, "required"))
                    .ignore()
                    .incr(Self::key(prefix, "generation"), 1)
                    .ignore();
                redis("allow keyless", pipe.query_async::<()>(&mut conn)).await
            }
        }
    }

    /// The meters of every key for these period ids.
    pub async fn meters(&self, ids: Vec<String>) -> Result<Meters, KeyError> {
        let mut meters = Meters::new();
        match self {
            Self::Sqlite(db) => {
                let rows: Vec<(String, String, f64, i64)> = db
                    .call("keys meters", move |c| {
                        let mut s =
                            c.prepare_cached("SELECT period, name, cost_usd, tokens FROM key_meter WHERE period = ?1")?;
                        let mut rows = Vec::new();
                        for id in &ids {
                            for row in s.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))? {
                                rows.push(row?);
                            }
                        }
                        Ok(rows)
                    })
                    .await?;
                for (period, name, cost_usd, tokens) in rows {
                    meters.entry(name).or_default().insert(
                        period,
                        Meter {
                            cost_usd,
                            tokens: tokens.max(0) as u64,
                        },
                    );
                }
            }
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.hgetall(Self::key(prefix, &format!("meter:{id}")));
                }
                let hashes: Vec<HashMap<String, String>> = redis("meters", pipe.query_async(&mut conn)).await?;
                for (id, fields) in ids.iter().zip(hashes) {
                    for (field, value) in fields {
                        let Some((name, what)) = field.rsplit_once('|') else {
                            continue;
                        };
                        let meter = meters
                            .entry(name.to_string())
                            .or_default()
                            .entry(id.clone())
                            .or_default();
                        match what {
                            "cost" => meter.cost_usd = value.parse().unwrap_or(0.0),
                            "tokens" => meter.tokens = value.parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(meters)
    }

    /// Adds one call's cost and tokens to `name`'s meters of these periods (id, how long to keep
    /// it).
    pub async fn add(
        &self,
        name: &str,
        periods: Vec<(String, Option<Duration>)>,
        cost_usd: f64,
        tokens: u64,
        now_ms: i64,
    ) -> Result<(), KeyError> {
        match self {
            Self::Sqlite(db) => {
                let name = name.to_string();
                db.call("keys meter", move |c| {
                    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    for (id, keep) in &periods {
                        let expires = keep.map(|k| now_ms + k.as_millis() as i64);
                        tx.prepare_cached(
                            "INSERT INTO key_meter (period, name, cost_usd, tokens, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                             ON CONFLICT(period, name) DO UPDATE SET cost_usd = cost_usd + excluded.cost_usd,
                                 tokens = tokens + excluded.tokens",
                        )?
                        .execute(rusqlite::params![id, name, cost_usd, tokens as i64, expires])?;
                    }
                    tx.commit()
                })
                .await?;
                Ok(())
            }
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let mut pipe = redis::pipe();
                for (id, keep) in &periods {
                    let key = Self::key(prefix, &format!("meter:{id}"));
                    if cost_usd > 0.0 {
                        pipe.cmd("HINCRBYFLOAT")
                            .arg(&key)
                            .arg(format!("{name}|cost"))
                            .arg(cost_usd)
                            .ignore();
                    }
                    pipe.hincr(&key, format!("{name}|tokens"), tokens).ignore();
                    if let Some(keep) = keep {
                        pipe.pexpire(&key, keep.as_millis() as i64).ignore();
                    }
                }
                redis("meter", pipe.query_async::<()>(&mut conn)).await
            }
        }
    }

    /// Drops the SQLite file's meters of periods that ended (Redis expires its own):
    /// minutes before `old_minute`, and periods past their keeping time.
    pub async fn prune(&self, now_ms: i64, old_minute: String) -> Result<(), KeyError> {
        if let Self::Sqlite(db) = self {
            db.call("keys prune", move |c| {
                c.execute(
                    "DELETE FROM key_meter WHERE period >= 'minute:' AND period < ?1",
                    [&old_minute],
                )?;
                c.execute(
                    "DELETE FROM key_meter WHERE period NOT LIKE 'minute:%' AND expires_ms < ?1",
                    [now_ms],
                )
            })
            .await?;
        }
        Ok(())
    }

    /// Records when keys were last used.
    pub async fn touch(&self, used: Vec<(String, i64)>) -> Result<(), KeyError> {
        match self {
            Self::Sqlite(db) => {
                db.call("keys last used", move |c| {
                    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    for (name, ms) in &used {
                        tx.execute(
                            "UPDATE keys SET last_used_ms = max(coalesce(last_used_ms, 0), ?2) WHERE name = ?1",
                            rusqlite::params![name, ms],
                        )?;
                    }
                    tx.commit()
                })
                .await?;
                Ok(())
            }
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let mut pipe = redis::pipe();
                for (name, ms) in &used {
                    pipe.hset(Self::key(prefix, "last_used"), name, ms).ignore();
                }
                redis("last used", pipe.query_async::<()>(&mut conn)).await
            }
        }
    }
}
