//! Metering: what each finished call of a key spent and used, added to its meters of every
//! budget period (`period.rs`) and of the minute — in this process's copy at once, so the next
//! call's budget check sees it, and in the store off the request path.

use std::time::Duration;

use super::handle::Keys;
use super::period::{self, Period};
use super::view;

impl Keys {
    /// Adds a finished call's cost and tokens to its key's meters, here at once and in the store
    /// off the request path.
    pub(crate) fn record(&self, name: &str, cost_usd: f64, tokens: u64) {
        let now = self.now();
        let ids = view::meter_ids(now);
        self.inner.view.add(name, &ids, cost_usd, tokens);
        let Some(store) = self.inner.store.clone() else {
            return;
        };
        let mut periods: Vec<(String, Option<Duration>)> = Period::ALL.iter().map(|p| (p.id(now), p.keep())).collect();
        periods.push((period::minute_id(now), Some(Duration::from_secs(180))));
        let name = name.to_string();
        let now_ms = now.unix_timestamp() * 1000;
        self.inner.writes.spawn(async move {
            if let Err(e) = store.add(&name, periods, cost_usd, tokens, now_ms).await {
                metrics::counter!("exai_memory_errors_total", "op" => "key_meter").increment(1);
                tracing::warn!(key = %name, error = %e, "cannot record the key's spend");
            }
        });
    }
}
