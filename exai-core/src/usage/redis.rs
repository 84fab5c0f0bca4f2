//! The ledger in Redis, shared by every process using the same server: hashes under one hash tag
//! (`{prefix}{usage}:all`, `…:day:YYYY-MM-DD`, per key `…:keys:all`, `…:keys:day:…` and per
//! deployment `…:deployments:all`, `…:deployments:day:…`) whose fields are
//! `provider|model|counter` (broken down, `name|provider|model|counter`: key names and deployment
//! labels have no `|`). Day hashes expire
//! after [`DAY_TTL_SECS`]. Every round trip is bounded by [`OP_TIMEOUT`].

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::report::{Entry, Rows, Split, UsageRow, row, today};
use crate::memory::RedisConn;

/// Day keys are kept this long in Redis.
const DAY_TTL_SECS: i64 = 40 * 24 * 3600;

/// How long one write or read may take.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Adds one call to the hashes, off the request path (on `writes`); a failed write is counted
/// in `exai_memory_errors_total`.
pub(super) fn add(conn: &RedisConn, prefix: &str, writes: &TaskTracker, entry: &Entry<'_>) {
    let Entry {
        who,
        counters,
        cost,
        saved,
    } = *entry;
    let (provider, model) = (who.provider, who.model);
    let mut conn = conn.clone();
    // One hash tag for the ledger: its pipeline stays on one slot of a cluster.
    let all = format!("{prefix}{{usage}}:all");
    let day = format!("{prefix}{{usage}}:day:{}", today());
    let mut targets = vec![(all, String::new()), (day.clone(), String::new())];
    let mut days = vec![day];
    for (split, name) in who.splits() {
        let (all, day) = split_hashes(prefix, split);
        targets.push((all, format!("{name}|")));
        targets.push((day.clone(), format!("{name}|")));
        days.push(day);
    }
    let mut pipe = redis::pipe();
    for (hash, field_prefix) in &targets {
        for (name, n) in counters {
            pipe.hincr(hash, format!("{field_prefix}{provider}|{model}|{name}"), *n)
                .ignore();
        }
        for (name, usd) in [("cost_usd", cost), ("saved_usd", saved)] {
            if usd > 0.0 {
                pipe.cmd("HINCRBYFLOAT")
                    .arg(hash)
                    .arg(format!("{field_prefix}{provider}|{model}|{name}"))
                    .arg(usd)
                    .ignore();
            }
        }
    }
    for day in &days {
        pipe.expire(day, DAY_TTL_SECS).ignore();
    }
    writes.spawn(async move {
        let sent = tokio::time::timeout(OP_TIMEOUT, pipe.query_async::<()>(&mut conn)).await;
        if !matches!(sent, Ok(Ok(()))) {
            metrics::counter!("exai_memory_errors_total", "op" => "usage").increment(1);
        }
    });
}

/// The rows of all time and of today; `None` when Redis does not answer.
pub(super) async fn read(conn: &RedisConn, prefix: &str) -> Option<(Vec<UsageRow>, Vec<UsageRow>)> {
    let (all, day) = read_hashes(
        conn,
        &format!("{prefix}{{usage}}:all"),
        &format!("{prefix}{{usage}}:day:{}", today()),
    )
    .await?;
    Some((parse_rows(&all), parse_rows(&day)))
}

/// The all-time and today's hashes of a breakdown (`…:keys:all`, `…:keys:day:…`).
fn split_hashes(prefix: &str, split: Split) -> (String, String) {
    let segment = split.segment();
    (
        format!("{prefix}{{usage}}:{segment}:all"),
        format!("{prefix}{{usage}}:{segment}:day:{}", today()),
    )
}

/// The rows per key (or deployment) of all time and of today; `None` when Redis does not
/// answer.
pub(super) async fn read_split(
    conn: &RedisConn,
    prefix: &str,
    split: Split,
) -> Option<(BTreeMap<String, Rows>, BTreeMap<String, Rows>)> {
    let (all, day) = split_hashes(prefix, split);
    let (all, day) = read_hashes(conn, &all, &day).await?;
    Some((parse_split_rows(&all), parse_split_rows(&day)))
}

type Fields = BTreeMap<String, String>;

/// Two hashes in one round trip.
async fn read_hashes(conn: &RedisConn, all: &str, day: &str) -> Option<(Fields, Fields)> {
    let mut conn = conn.clone();
    let mut pipe = redis::pipe();
    pipe.hgetall(all).hgetall(day);
    match tokio::time::timeout(OP_TIMEOUT, pipe.query_async(&mut conn)).await {
        Ok(Ok(hashes)) => Some(hashes),
        _ => None,
    }
}

/// Rows per name from `name|provider|model|counter` hash fields (names have no `|`).
fn parse_split_rows(fields: &Fields) -> BTreeMap<String, Rows> {
    let mut per_key: BTreeMap<String, Fields> = BTreeMap::new();
    for (field, value) in fields {
        if let Some((key, rest)) = field.split_once('|') {
            per_key
                .entry(key.to_string())
                .or_default()
                .insert(rest.to_string(), value.clone());
        }
    }
    per_key
        .into_iter()
        .map(|(key, fields)| {
            let mut rows = Rows::default();
            for r in parse_rows(&fields) {
                let (provider, model) = (r.provider.clone(), r.model.clone());
                *row(&mut rows, &provider, &model) = r;
            }
            (key, rows)
        })
        .collect()
}

/// Rows from `provider|model|counter` hash fields.
fn parse_rows(fields: &Fields) -> Vec<UsageRow> {
    let mut rows = Rows::default();
    for (field, value) in fields {
        // Provider names have no `|`; model ids might.
        let Some((provider, rest)) = field.split_once('|') else {
            continue;
        };
        let Some((model, counter)) = rest.rsplit_once('|') else {
            continue;
        };
        let r = row(&mut rows, provider, model);
        let n = value.parse::<u64>().unwrap_or(0);
        match counter {
            "requests" => r.requests = n,
            "errors" => r.errors = n,
            "input_tokens" => r.input_tokens = n,
            "output_tokens" => r.output_tokens = n,
            "reasoning_tokens" => r.reasoning_tokens = n,
            "cached" => r.cached = n,
            "cost_usd" => r.cost_usd = value.parse().unwrap_or(0.0),
            "saved_usd" => r.saved_usd = value.parse().unwrap_or(0.0),
            _ => {}
        }
    }
    rows.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_rebuilt_from_hash_fields_even_with_pipes_in_model_names() {
        let fields = BTreeMap::from([
            ("glm|glm-4.6|requests".to_string(), "3".to_string()),
            ("glm|glm-4.6|cost_usd".to_string(), "0.125".to_string()),
            ("local|org|model|errors".to_string(), "2".to_string()),
        ]);
        let rows = parse_rows(&fields);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].requests, rows[0].cost_usd), (3, 0.125));
        assert_eq!(
            (rows[1].provider.as_str(), rows[1].model.as_str(), rows[1].errors),
            ("local", "org|model", 2)
        );
    }
}
