//! What every route shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use exai_core::logs::LogTap;
use exai_core::{Gateway, Session};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

/// Shared state: the gateway and the daemon's own plumbing.
#[derive(Clone)]
pub struct AppState {
    /// One gateway session per client address for the stateless HTTP API, so the per-session
    /// limit applies per client.
    pub(crate) clients: Arc<Mutex<HashMap<IpAddr, Session>>>,
    /// The gateway all clients share.
    pub gateway: Gateway,
    /// Log records for MCP clients' `notifications/message`.
    pub logs: LogTap,
    /// Renders `/metrics`; `None` when no recorder is installed (tests embedding the router).
    pub metrics: Option<PrometheusHandle>,
    /// Cancelled when the daemon stops accepting work.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// State for `gateway`.
    pub fn new(gateway: Gateway, logs: LogTap, metrics: Option<PrometheusHandle>) -> Self {
        Self {
            gateway,
            logs,
            metrics,
            shutdown: CancellationToken::new(),
            clients: Arc::default(),
        }
    }

    /// The session of the client at `ip` (a new one if it had none, or if it expired).
    pub(crate) fn client_session(&self, ip: IpAddr) -> Session {
        let Ok(mut clients) = self.clients.lock() else {
            return self.gateway.session("http");
        };
        clients.retain(|_, s| s.is_open());
        clients
            .entry(ip)
            .or_insert_with(|| self.gateway.session("http"))
            .clone()
    }
}
