//! The usage ledger's writes to the SQLite file, committed in groups.
//!
//! Each finished call adds its counters to a pending batch. One flush at a time takes
//! everything pending and writes it in a single transaction; calls that finish while it writes
//! wait in the next batch. An idle gateway writes each call at once, as before; a busy one writes
//! one transaction per flush instead of one per call (a transaction, and a hop to the blocking
//! pool, per call was most of exai-ws's CPU under load). The flush runs on the gateway's write
//! tracker, so `shutdown` waits for it and a short-lived process loses nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::task::TaskTracker;

use super::report::{Split, Who};
use crate::memory::Db;

/// Where one call's counters go: a day (`all` for all time), a provider and model, and the
/// breakdown row (a key's, a deployment's) if it is one.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    day: String,
    split: Option<(Split, String)>,
    provider: String,
    model: String,
}

/// Counters added to one target: requests, errors, input, output and reasoning tokens, cached
/// calls; the cost, and what the cached calls saved.
#[derive(Default, Clone, Copy)]
pub(crate) struct Delta {
    pub counts: [i64; 6],
    pub cost: f64,
    pub saved: f64,
}

impl Delta {
    fn add(&mut self, other: &Delta) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.cost += other.cost;
        self.saved += other.saved;
    }
}

/// The pending batch and the one flush that writes it.
#[derive(Clone)]
pub(crate) struct SqliteBatch {
    db: Db,
    pending: Arc<Mutex<BTreeMap<Target, Delta>>>,
    flushing: Arc<AtomicBool>,
}

impl SqliteBatch {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            pending: Arc::default(),
            flushing: Arc::default(),
        }
    }

    /// Adds one call's counters (for the days `all` and `day`; to its provider and model's
    /// row, and its key's and deployment's rows if any) and makes sure a flush is on its way.
    pub fn add(&self, writes: &TaskTracker, day: String, who: &Who<'_>, delta: Delta) {
        if let Ok(mut pending) = self.pending.lock() {
            for d in ["all".to_string(), day] {
                let splits = who.splits().map(|(split, name)| Some((split, name.to_string())));
                for split in std::iter::once(None).chain(splits) {
                    let target = Target {
                        day: d.clone(),
                        split,
                        provider: who.provider.to_string(),
                        model: who.model.to_string(),
                    };
                    pending.entry(target).or_default().add(&delta);
                }
            }
        }
        if !self.flushing.swap(true, Ordering::AcqRel) {
            let batch = self.clone();
            writes.spawn(async move { batch.flush().await });
        }
    }

    /// Writes batches until none is pending, then lets the next call start a flush.
    async fn flush(self) {
        loop {
            let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
            if batch.is_empty() {
                self.flushing.store(false, Ordering::Release);
                // A call may have added to the batch between the take and the store: if so, and
                // no other flush took over, carry on.
                let more = !self.pending.lock().map(|p| p.is_empty()).unwrap_or(true);
                if more && !self.flushing.swap(true, Ordering::AcqRel) {
                    continue;
                }
                return;
            }
            let written = self.db.call("usage", move |conn| write(conn, &batch)).await;
            if written.is_err() {
                metrics::counter!("exai_memory_errors_total", "op" => "usage").increment(1);
            }
        }
    }
}

/// The columns every ledger table counts, after its day, name (if any), provider and model.
const COUNTED: &str = "requests, errors, input_tokens, output_tokens, reasoning_tokens, cost_usd, cached, saved_usd";

/// How a row already there takes in a call's counters.
const ADDED: &str = "requests = requests + excluded.requests, errors = errors + excluded.errors,
     input_tokens = input_tokens + excluded.input_tokens,
     output_tokens = output_tokens + excluded.output_tokens,
     reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
     cost_usd = cost_usd + excluded.cost_usd,
     cached = cached + excluded.cached, saved_usd = saved_usd + excluded.saved_usd";

/// One transaction: every target's counters added to its row (created if new).
fn write(conn: &mut rusqlite::Connection, batch: &BTreeMap<Target, Delta>) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (t, d) in batch {
        let [requests, errors, input, output, reasoning, cached] = d.counts;
        match &t.split {
            None => {
                let mut usage = tx.prepare_cached(&format!(
                    "INSERT INTO usage (day, provider, model, {COUNTED})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT(day, provider, model) DO UPDATE SET {ADDED}"
                ))?;
                usage.execute(rusqlite::params![
                    t.day, t.provider, t.model, requests, errors, input, output, reasoning, d.cost, cached, d.saved
                ])?;
            }
            Some((split, name)) => {
                // Table and column names are the split's constants, never input.
                let (table, column) = (split.table(), split.column());
                let mut by_name = tx.prepare_cached(&format!(
                    "INSERT INTO {table} (day, {column}, provider, model, {COUNTED})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT(day, {column}, provider, model) DO UPDATE SET {ADDED}"
                ))?;
                by_name.execute(rusqlite::params![
                    t.day, name, t.provider, t.model, requests, errors, input, output, reasoning, d.cost, cached,
                    d.saved
                ])?;
            }
        }
    }
    tx.commit()
}
