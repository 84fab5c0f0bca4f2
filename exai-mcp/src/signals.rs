//! The stop signals every exai server process obeys: SIGINT (Ctrl-C) and, on Unix, SIGTERM —
//! what a terminal, systemd, Docker or an MCP client sends. `exai-stdio` and `exai-ws` await
//! [`shutdown_signal`] and then drain through `Gateway::shutdown`.

/// Resolves at the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
