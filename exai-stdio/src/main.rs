//! `exai-stdio`: the MCP server over stdio. See the crate docs (`lib.rs`) and README for set-up
//! in Claude Code, Cursor and Codex. Reads the same configuration as every exai frontend
//! (`exai.toml`, environment); logs to stderr (`RUST_LOG`, default `warn`).

use exai_core::logs::LogTap;
use exai_core::{Config, Gateway};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[tokio::main]
async fn main() {
    let logs = LogTap::new();
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")));
    tracing_subscriber::registry().with(stderr).with(logs.layer()).init();

    let result = async {
        let gateway = Gateway::new(Config::from_env()?).await?;
        exai_stdio::serve_stdio(gateway, logs, shutdown_signal()).await
    }
    .await;
    // Exit at once: nothing may linger after the client is gone (no task, no child).
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("exai-stdio: {e:#}");
            std::process::exit(1);
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
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
