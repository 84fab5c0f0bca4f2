//! What every route shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use moka::future::Cache;
use tokio::sync::watch;

use exai_core::{Caller, Gateway, Session, SessionOptions, ToolSuite};
use exai_mcp::LogTap;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long an EXAI `call_tool` result is kept for a client that retries after a reconnect.
const RESULTS_TTL: Duration = Duration::from_secs(600);

/// The bytes the kept results may hold together: long tool outputs fill it by size, not by a
/// count of entries; the oldest-used go first.
const RESULTS_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// What a kept result weighs: its key, its frame's text, and a fixed overhead for the entry.
fn result_weight(key: &str, result: &watch::Receiver<Option<Utf8Bytes>>) -> u32 {
    let text = result.borrow().as_ref().map_or(0, |t| t.len());
    u32::try_from(key.len() + text + 256).unwrap_or(u32::MAX)
}

/// Shared state: the gateway and the daemon's own plumbing. One pointer, cloned per request by
/// axum's extractors and middleware.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// An HTTP client: its address, its MCP session id for `/mcp`, and who it is (its key — a
/// rotated key is another caller —, the master token, or anyone).
type ClientKey = (IpAddr, Option<String>, Caller);

/// What [`AppState`] points at.
pub struct Shared {
    /// One gateway session per client of the HTTP routes — per address for the OpenAI API, per
    /// address and MCP session for `/mcp` — so the per-session limit applies per client (the
    /// rate is counted per address whichever session a call runs in).
    pub(crate) clients: Arc<Mutex<HashMap<ClientKey, Session>>>,
    /// The gateway all clients share.
    pub gateway: Gateway,
    /// The MCP tools on that gateway, for every MCP and EXAI client.
    pub tools: ToolSuite,
    /// Log records for MCP clients' `notifications/message`.
    pub logs: LogTap,
    /// Renders `/metrics`; `None` when no recorder is installed (tests embedding the router).
    pub metrics: Option<PrometheusHandle>,
    /// Cancelled when the daemon stops accepting work.
    pub shutdown: CancellationToken,
    /// WebSocket connections open now, in total and per address.
    pub(crate) connections: Arc<Mutex<Connections>>,
    /// The WebSocket connections' tasks, which [`crate::serve`] waits for before returning.
    pub(crate) connections_tracker: TaskTracker,
    /// Finished (or running) EXAI `call_tool` results by `session_id:request_id`, so a client
    /// retrying after a reconnect gets the stored result instead of a second provider call. Kept
    /// as the frame's text, as sent (a small result's JSON tree held ~5 KB), for
    /// [`RESULTS_TTL`] and within [`RESULTS_MAX_BYTES`] (a finished result is put back once it
    /// is known, so its size counts).
    pub(crate) results: Cache<String, watch::Receiver<Option<Utf8Bytes>>>,
}

/// Open WebSocket connections.
#[derive(Default)]
pub(crate) struct Connections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
pub(crate) struct ConnectionGuard {
    connections: Arc<Mutex<Connections>>,
    ip: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = self.connections.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_ip.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.per_ip.remove(&self.ip);
                }
            }
        }
        metrics::gauge!("exai_ws_connections").decrement(1.0);
    }
}

impl AppState {
    /// State for `gateway`.
    pub fn new(gateway: Gateway, logs: LogTap, metrics: Option<PrometheusHandle>) -> Self {
        // Tools read files only below `tools.file_roots` (none by default): a daemon's callers
        // are not its host's users.
        let tools = crate::protocols::announced(ToolSuite::new(gateway.clone()));
        Self(Arc::new(Shared {
            gateway,
            tools,
            logs,
            metrics,
            shutdown: CancellationToken::new(),
            clients: Arc::default(),
            connections: Arc::default(),
            connections_tracker: TaskTracker::new(),
            results: Cache::builder()
                .max_capacity(RESULTS_MAX_BYTES)
                .weigher(|key: &String, result| result_weight(key, result))
                .time_to_live(RESULTS_TTL)
                .build(),
        }))
    }

    /// Admits a WebSocket connection from `ip`, or `None` over the limits.
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<ConnectionGuard> {
        let daemon = &self.gateway.config().daemon;
        let mut c = self.connections.lock().ok()?;
        let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        if c.total >= daemon.max_connections || from_ip >= daemon.max_connections_per_ip {
            return None;
        }
        c.total += 1;
        c.per_ip.insert(ip, from_ip + 1);
        metrics::gauge!("exai_ws_connections").increment(1.0);
        Some(ConnectionGuard {
            connections: self.connections.clone(),
            ip,
        })
    }

    /// A new session for `caller` at `ip`: its requests count against the client's rate and
    /// its key's limits, each call has the configured deadline — at every front door.
    pub(crate) fn open_session(&self, kind: &str, ip: IpAddr, caller: Caller) -> Session {
        self.gateway
            .open_session(SessionOptions::new(kind).client(ip.to_string()).caller(caller))
    }

    /// The HTTP session of `caller` at `ip` — of its MCP session `mcp`, for `/mcp` — (a new
    /// one if it had none, or if it expired).
    pub(crate) fn client_session(&self, ip: IpAddr, mcp: Option<&str>, caller: Caller) -> Session {
        let kind = if mcp.is_some() { "mcp-http" } else { "http" };
        let Ok(mut clients) = self.clients.lock() else {
            return self.open_session(kind, ip, caller);
        };
        let key = (ip, mcp.map(str::to_string), caller.clone());
        if let Some(session) = clients.get(&key).filter(|s| s.is_open()) {
            return session.clone();
        }
        // Only a new or expired client pays for pruning the sessions that expired meanwhile.
        clients.retain(|_, s| s.is_open());
        let session = self.open_session(kind, ip, caller);
        clients.insert(key, session.clone());
        session
    }
}
