//! The stop signals every exai server process obeys: SIGINT (Ctrl-C) and, on Unix, SIGTERM —
//! what a terminal, systemd, Docker or an MCP client sends. `exai-stdio` and `exai-ws` await
//! [`shutdown_signal`] and then drain through `Gateway::shutdown`.

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
