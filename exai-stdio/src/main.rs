//! `exai-stdio`: the MCP server over stdio. See the crate docs (`lib.rs`) and README for set-up
//! in Claude Code, Cursor and Codex. Reads the same configuration as every exai frontend
//! (`exai.toml`, environment); logs to stderr (`RUST_LOG`, default `warn`).

use exai_core::{Config, Gateway};
use exai_mcp::LogTap;
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
        exai_stdio::serve_stdio(gateway, logs, exai_mcp::shutdown_signal()).await
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
