//! The signals every exai server process obeys: SIGINT (Ctrl-C) and, on Unix, SIGTERM — what a
//! terminal, systemd, Docker or an MCP client sends to stop it (`exai-stdio` and `exai-ws` await
//! [`shutdown_signal`] and then drain through `Gateway::shutdown`); and SIGHUP, which reloads
//! the configuration's deployments and keys ([`reload_on_sighup`]).

use std::future::Future;

/// Resolves at the first SIGINT or SIGTERM.
///
/// The handlers are installed when this is *called*, not when the future is first polled: a
/// server that only starts awaiting it after its handshake (exai-stdio awaits it once the MCP
/// `initialize` is answered) would otherwise die of the default action for a signal sent in
/// between. Call it inside a Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// On `SIGHUP`, the configuration is read again and its deployments and keys applied
/// (`Gateway::reload`, as exai-ws's `POST /admin/reload` does); a file that no longer loads
/// changes nothing and the log says why. Calls in flight finish where they started.
pub fn reload_on_sighup(gateway: exai_core::Gateway) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: the configuration reloads only on restart");
            return;
        };
        while hangups.recv().await.is_some() {
            match gateway.reload().await {
                Ok(report) => tracing::info!(
                    added = ?report.added,
                    changed = ?report.changed,
                    removed = ?report.removed,
                    "SIGHUP: configuration reloaded"
                ),
                Err(e) => tracing::error!(error = %e, "SIGHUP: the configuration was not reloaded"),
            }
        }
    });
    #[cfg(not(unix))]
    drop(gateway);
}
