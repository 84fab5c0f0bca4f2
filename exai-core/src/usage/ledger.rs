//! The [`UsageLedger`]: every finished call is folded into this process's figures (`local.rs`) at
//! once and added to the shared store, if there is one (`sqlite.rs`, `redis.rs`), off the request
//! path. A report comes from the shared store, or from this process's figures when there is
//! none or it does not answer.

use std::sync::Mutex;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::batch::SqliteBatch;
use super::local::Local;
use super::report::{
    DeploymentUsageReport, Entry, KeyUsageReport, Split, SplitRow, UsageBreakdown, UsageReport, Who, flatten,
};
use super::{redis, sqlite};
use crate::memory::{Db, RedisConn};
use crate::request::Usage;

/// Where the shared ledger lives.
pub(crate) enum SharedLedger {
    /// Redis hashes under this prefix.
    Redis(RedisConn, String),
    /// The SQLite file's `usage` table.
    Sqlite(Db),
}

/// The ledger.
pub(crate) struct UsageLedger {
    local: Mutex<Local>,
    shared: Option<SharedLedger>,
    /// The gateway's tracker: shared writes run off the request path, and `shutdown` waits for
    /// them, so a short-lived process (`exai chat`) loses none.
    writes: TaskTracker,
    /// The SQLite file's writes, committed in groups.
    sqlite_batch: Option<SqliteBatch>,
}

impl UsageLedger {
    pub fn new(shared: Option<SharedLedger>, writes: TaskTracker) -> Self {
        let sqlite_batch = match &shared {
            Some(SharedLedger::Sqlite(db)) => Some(SqliteBatch::new(db.clone())),
            _ => None,
        };
        Self {
            local: Mutex::new(Local::default()),
            shared,
            writes,
            sqlite_batch,
        }
    }

    /// Records a completed call that took `elapsed`.
    pub fn success(&self, who: Who<'_>, usage: Usage, cost: f64, elapsed: Duration) {
        if let Ok(mut local) = self.local.lock() {
            local.success(&who, usage, cost, elapsed);
        }
        self.persist(&Entry {
            who,
            counters: &[
                ("requests", 1),
                ("input_tokens", usage.input_tokens as i64),
                ("output_tokens", usage.output_tokens as i64),
                ("reasoning_tokens", usage.reasoning_tokens as i64),
            ],
            cost,
            saved: 0.0,
        });
    }

    /// Records a call the response cache answered: no cost, and what it would have cost
    /// (`saved`). No deployment was called.
    pub fn cached(&self, who: Who<'_>, saved: f64) {
        let who = Who {
            deployment: None,
            ..who
        };
        if let Ok(mut local) = self.local.lock() {
            local.cached(&who, saved);
        }
        self.persist(&Entry {
            who,
            counters: &[("cached", 1)],
            cost: 0.0,
            saved,
        });
    }

    /// Records a failed call.
    pub fn error(&self, who: Who<'_>) {
        if let Ok(mut local) = self.local.lock() {
            local.error(&who);
        }
        self.persist(&Entry {
            who,
            counters: &[("errors", 1)],
            cost: 0.0,
            saved: 0.0,
        });
    }

    fn persist(&self, entry: &Entry<'_>) {
        match &self.shared {
            None => {}
            Some(SharedLedger::Sqlite(_)) => {
                if let Some(batch) = &self.sqlite_batch {
                    sqlite::add(batch, &self.writes, entry);
                }
            }
            Some(SharedLedger::Redis(conn, prefix)) => redis::add(conn, prefix, &self.writes, entry),
        }
    }

    /// The ledger now.
    pub async fn report(&self) -> UsageReport {
        let (since_start, today_local) = match self.local.lock() {
            Ok(mut l) => (
                l.since_start.values().cloned().collect::<Vec<_>>(),
                l.today().values().cloned().collect(),
            ),
            Err(_) => (Vec::new(), Vec::new()),
        };
        if let Some(SharedLedger::Sqlite(db)) = &self.shared {
            match sqlite::read(db).await {
                Ok((all_time, today)) => {
                    return UsageReport {
                        backend: "sqlite",
                        since_start,
                        today,
                        all_time,
                    };
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the usage ledger; showing this process's figures"),
            }
        }
        if let Some(SharedLedger::Redis(conn, prefix)) = &self.shared
            && let Some((all_time, today)) = redis::read(conn, prefix).await
        {
            return UsageReport {
                backend: "redis",
                since_start,
                today,
                all_time,
            };
        }
        UsageReport {
            backend: "local",
            all_time: since_start.clone(),
            since_start,
            today: today_local,
        }
    }

    /// The ledger of calls made with keys.
    pub async fn report_by_key(&self) -> KeyUsageReport {
        self.breakdown(Split::Key).await
    }

    /// The ledger per deployment.
    pub async fn report_by_deployment(&self) -> DeploymentUsageReport {
        self.breakdown(Split::Deployment).await
    }

    /// The ledger broken down by `split`: from the shared store, or this process's figures
    /// when there is none or it does not answer.
    async fn breakdown<R: SplitRow>(&self, split: Split) -> UsageBreakdown<R> {
        match &self.shared {
            Some(SharedLedger::Sqlite(db)) => match sqlite::read_split(db, split).await {
                Ok((all_time, today)) => {
                    return UsageBreakdown {
                        backend: "sqlite",
                        today: flatten(today),
                        all_time: flatten(all_time),
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the usage ledger; showing this process's figures")
                }
            },
            Some(SharedLedger::Redis(conn, prefix)) => {
                if let Some((all, day)) = redis::read_split(conn, prefix, split).await {
                    return UsageBreakdown {
                        backend: "redis",
                        today: flatten(day),
                        all_time: flatten(all),
                    };
                }
            }
            None => {}
        }
        let since_start = self.local.lock().map(|l| l.split(split)).unwrap_or_default();
        let rows = flatten(since_start);
        UsageBreakdown {
            backend: "local",
            today: rows.clone(),
            all_time: rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_ledger_adds_up_per_provider_and_model() {
        let l = UsageLedger::new(None, TaskTracker::new());
        let u = Usage {
            input_tokens: 10,
            output_tokens: 5,
            reasoning_tokens: 1,
            cached_input_tokens: 0,
        };
        let who = |provider, model, deployment| Who {
            provider,
            model,
            deployment: Some(deployment),
            key: None,
        };
        l.success(who("glm", "glm-4.6", "glm#1"), u, 0.5, Duration::from_millis(5));
        l.success(who("glm", "glm-4.6", "glm#2"), u, 0.25, Duration::from_millis(5));
        l.error(who("kimi", "kimi-k2-0905-preview", "kimi#1"));
        let r = l.report().await;
        assert_eq!(r.backend, "local");
        let glm = r
            .today
            .iter()
            .find(|r| r.provider == "glm")
            .cloned()
            .unwrap_or_default();
        assert_eq!((glm.requests, glm.input_tokens, glm.output_tokens), (2, 20, 10));
        assert!((glm.cost_usd - 0.75).abs() < 1e-9);
        assert_eq!(
            r.since_start.iter().find(|r| r.provider == "kimi").map(|r| r.errors),
            Some(1)
        );
        let by = l.report_by_deployment().await.today;
        let glm2 = by.iter().find(|r| r.deployment == "glm#2").map(|r| &r.usage);
        assert_eq!(glm2.map(|r| (r.requests, r.input_tokens)), Some((1, 10)));
        assert!(glm2.is_some_and(|r| (r.cost_usd - 0.25).abs() < 1e-9));
        let kimi = by.iter().find(|r| r.deployment == "kimi#1").map(|r| r.usage.errors);
        assert_eq!(kimi, Some(1));
    }
}
