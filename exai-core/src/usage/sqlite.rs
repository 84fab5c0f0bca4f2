//! The ledger in the SQLite file: table `usage` holds a row per day (and one for `all` time) per
//! provider and model, `key_usage` the same per key and `deployment_usage` per deployment. Calls are written in groups (`batch.rs`); the
//! reports read the rows of today and of `all`.

use tokio_util::task::TaskTracker;

use super::batch::{Delta, SqliteBatch};
use std::collections::BTreeMap;

use super::report::{Entry, Rows, Split, UsageRow, row, today};
use crate::memory::{Db, MemoryError};

/// The counters of a row, in the order of its columns (and of [`Delta::counts`]).
const COUNTERS: [&str; 6] = [
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cached",
];

/// Adds one call to the next batch of writes.
pub(super) fn add(batch: &SqliteBatch, writes: &TaskTracker, entry: &Entry<'_>) {
    let count = |name: &str| entry.counters.iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| *v);
    let delta = Delta {
        counts: COUNTERS.map(count),
        cost: entry.cost,
        saved: entry.saved,
    };
    batch.add(writes, today().to_string(), &entry.who, delta);
}

/// The rows of all time and of today.
pub(super) async fn read(db: &Db) -> Result<(Vec<UsageRow>, Vec<UsageRow>), MemoryError> {
    let day = today().to_string();
    db.call("usage report", move |conn| {
        Ok((read_rows(conn, "all")?, read_rows(conn, &day)?))
    })
    .await
}

/// The rows per key (or deployment) of all time and of today.
pub(super) async fn read_split(
    db: &Db,
    split: Split,
) -> Result<(BTreeMap<String, Rows>, BTreeMap<String, Rows>), MemoryError> {
    let day = today().to_string();
    db.call("usage breakdown", move |conn| {
        Ok((
            read_split_rows(conn, split, "all")?,
            read_split_rows(conn, split, &day)?,
        ))
    })
    .await
}

/// The file's rows for `day` (or `all`).
fn read_rows(conn: &rusqlite::Connection, day: &str) -> rusqlite::Result<Vec<UsageRow>> {
    let mut statement = conn.prepare_cached(
        "SELECT provider, model, requests, errors, input_tokens, output_tokens, reasoning_tokens, cost_usd,
             cached, saved_usd
         FROM usage WHERE day = ?1 ORDER BY provider, model",
    )?;
    statement.query_map([day], usage_row)?.collect()
}

/// The file's rows per key (or deployment) for `day` (or `all`), by name.
fn read_split_rows(conn: &rusqlite::Connection, split: Split, day: &str) -> rusqlite::Result<BTreeMap<String, Rows>> {
    // Table and column names are the split's constants, never input.
    let mut statement = conn.prepare_cached(&format!(
        "SELECT provider, model, requests, errors, input_tokens, output_tokens, reasoning_tokens, cost_usd,
             cached, saved_usd, {column}
         FROM {table} WHERE day = ?1",
        column = split.column(),
        table = split.table(),
    ))?;
    let mut by_name: BTreeMap<String, Rows> = BTreeMap::new();
    let rows = statement.query_map([day], |r| Ok((r.get::<_, String>(10)?, usage_row(r)?)))?;
    for found in rows {
        let (name, usage) = found?;
        let rows = by_name.entry(name).or_default();
        let (provider, model) = (usage.provider.clone(), usage.model.clone());
        *row(rows, &provider, &model) = usage;
    }
    Ok(by_name)
}

/// A row's counters, from the columns provider, model, requests, errors, input_tokens,
/// output_tokens, reasoning_tokens, cost_usd, cached, saved_usd (in that order, first).
fn usage_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UsageRow> {
    Ok(UsageRow {
        provider: r.get(0)?,
        model: r.get(1)?,
        requests: r.get::<_, i64>(2)? as u64,
        errors: r.get::<_, i64>(3)? as u64,
        input_tokens: r.get::<_, i64>(4)? as u64,
        output_tokens: r.get::<_, i64>(5)? as u64,
        reasoning_tokens: r.get::<_, i64>(6)? as u64,
        cost_usd: r.get(7)?,
        cached: r.get::<_, i64>(8)? as u64,
        saved_usd: r.get(9)?,
    })
}
