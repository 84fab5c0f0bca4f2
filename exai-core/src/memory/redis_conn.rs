//! One connection type for Redis as it is run: a single server (`redis://`, `rediss://` for
//! TLS, a password in the URL), or a cluster — `REDIS_URL` as a comma list of node URLs, or
//! `redis+cluster://host:port,host:port` (`rediss+cluster://` for TLS) — through the redis crate's
//! cluster client, which follows the slots. Memory, the usage ledger and the shared limits all
//! talk through [`RedisConn`]; their keys carry hash tags so each script and pipeline stays on
//! one slot.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::MemoryError;
use crate::config::Secret;

/// A connection to a single server or to a cluster. Cheap to clone.
#[derive(Clone)]
pub(crate) enum RedisConn {
    /// One server, reconnected in the background.
    Single(ConnectionManager),
    /// A cluster; commands go to the node that holds their slot.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConn::Single",
            Self::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The node URLs of a cluster URL, or `None` for a single server.
fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = match url.split_once("+cluster://") {
        Some((scheme, rest)) => (scheme.to_string(), rest),
        None if url.contains(',') => return Some(url.split(',').map(|u| u.trim().to_string()).collect()),
        None => return None,
    };
    Some(
        rest.split(',')
            .map(|node| format!("{scheme}://{}", node.trim()))
            .collect(),
    )
}

/// Connects to `url`: a single server lazily (a Redis down at start degrades calls until it is
/// up), a cluster at once (its slots must be known).
pub(crate) async fn connect(url: &Secret) -> Result<RedisConn, MemoryError> {
    let invalid = |e: redis::RedisError| MemoryError::Redis {
        op: "connect",
        message: format!("REDIS_URL is not a valid Redis URL ({})", e.category()),
    };
    if let Some(nodes) = cluster_nodes(url.expose()) {
        let client = ClusterClient::builder(nodes)
            .connection_timeout(Duration::from_secs(1))
            .response_timeout(Duration::from_secs(1))
            .build()
            .map_err(invalid)?;
        let conn = client.get_async_connection().await.map_err(|e| MemoryError::Redis {
            op: "connect",
            message: format!("cannot reach the Redis cluster: {e}"),
        })?;
        return Ok(RedisConn::Cluster(conn));
    }
    let client = redis::Client::open(url.expose()).map_err(invalid)?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, manager_config)
        .map(RedisConn::Single)
        .map_err(|e| MemoryError::Redis {
            op: "connect",
            message: e.to_string(),
        })
}

/// Runs `script` on `key` with `args` every `every`, each try bounded by `timeout`, until the
/// returned task is aborted: the renewal of a lease or lock held in Redis (the shared limits'
/// leases, the cache's coalescing lock), so that its holder dying lets it expire.
pub(crate) fn renew_every(
    every: Duration,
    timeout: Duration,
    conn: RedisConn,
    script: std::sync::Arc<redis::Script>,
    key: String,
    args: Vec<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let mut conn = conn.clone();
            let mut call = script.key(&key);
            for arg in &args {
                call.arg(arg);
            }
            let _ = tokio::time::timeout(timeout, call.invoke_async::<i64>(&mut conn)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_their_nodes() {
        assert_eq!(cluster_nodes("redis://h:1/"), None);
        assert_eq!(
            cluster_nodes("redis+cluster://a:1,b:2"),
            Some(vec!["redis://a:1".to_string(), "redis://b:2".to_string()])
        );
        assert_eq!(
            cluster_nodes("rediss://:pw@a:1, rediss://:pw@b:2"),
            Some(vec!["rediss://:pw@a:1".to_string(), "rediss://:pw@b:2".to_string()])
        );
    }
}
