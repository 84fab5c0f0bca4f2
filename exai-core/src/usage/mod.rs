//! The usage ledger: requests, errors, tokens and cost per provider and model (and per key, and
//! per deployment: which endpoint and key answered) — and the calls
//! the response cache answered (`cached`, charged nothing) with what they would have cost
//! (`saved_usd`).
//!
//! This is what answers "are my credits actually being used?". Every finished call is recorded
//! in process (since this process started, and per UTC day) and added to shared counters so that
//! every exai process — stdio servers, the daemon, the CLI — contributes to one ledger: in the
//! SQLite file (`usage` rows per day and `all`), or in Redis (`exai:usage:all` and
//! `exai:usage:day:YYYY-MM-DD` hashes whose fields are `provider|model|counter`; per key and per
//! deployment in their own tables and hashes). Shared writes
//! happen off the request path; a failure is counted and the in-process figures remain.
//!
//! - `ledger.rs`: [`UsageLedger`], which records each call and answers the reports, and
//!   [`SharedLedger`], the store it shares them through.
//! - `report.rs`: the rows and reports ([`UsageRow`], [`UsageReport`], [`KeyUsageReport`]) and
//!   how counters fold into rows.
//! - `local.rs`: this process's figures and metrics.
//! - `sqlite.rs`: the ledger in the SQLite file; its writes are committed in groups (`batch.rs`).
//! - `redis.rs`: the ledger in Redis hashes.

mod batch;
mod ledger;
mod local;
mod money;
mod redis;
mod report;
mod sqlite;

pub(crate) use ledger::{SharedLedger, UsageLedger};
pub use money::round_usd;
pub(crate) use money::{usd, usd_opt};
pub(crate) use report::Who;
pub use report::{
    DeploymentUsageReport, DeploymentUsageRow, KeyUsageReport, KeyUsageRow, UsageBreakdown, UsageReport, UsageRow,
};
