//! `exai-stdio`: the MCP server over stdio. See the crate docs (`lib.rs`) and README for set-up
//! in Claude Code, Cursor and Codex. Reads the same configuration as every exai frontend
//! (`exai.toml`, environment); logs to stderr (`RUST_LOG`, default `warn`).

use exai_core::{Config, Gateway};
use exai_mcp::LogTap;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The MCP server that Claude Code, Cursor, Codex and other MCP clients start: MCP over stdin and
/// stdout, with the exai gateway inside. Configured by exai.toml and the environment (see
/// `exai config`); logs go to stderr (RUST_LOG, default warn).
#[derive(clap::Parser)]
#[command(name = "exai-stdio", version, after_help = SET_UP)]
struct Args {}

/// What a person who runs it by hand needs to know.
const SET_UP: &str = "exai-stdio is started by an MCP client, which speaks to it over stdin and stdout. Add it to one:
  Claude Code:  claude mcp add exai --env GLM_API_KEY=... -- exai-stdio
  Cursor:       an \"exai\" entry with \"command\": \"exai-stdio\" in ~/.cursor/mcp.json
  Codex:        [mcp_servers.exai] command = \"exai-stdio\" in ~/.codex/config.toml
To talk to the models yourself, use `exai chat`.";

#[tokio::main]
async fn main() {
    <Args as clap::Parser>::parse();
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        // A person at a terminal, not an MCP client: say what this is instead of waiting.
        eprintln!("{SET_UP}");
        std::process::exit(2);
    }
    let logs = LogTap::new();
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")));
    let (otel, traces) = exai_mcp::traces("exai-stdio").unzip();
    tracing_subscriber::registry()
        .with(stderr)
        .with(logs.layer())
        .with(otel)
        .init();

    // Handled from here on: a client may send SIGTERM the moment `initialize` is answered.
    let shutdown = exai_mcp::shutdown_signal();
    let gateway = match Config::from_env().map_err(exai_core::Error::from) {
        Ok(config) => Gateway::new(config).await,
        Err(e) => Err(e),
    };
    let gateway = gateway.unwrap_or_else(|e| {
        eprintln!("exai-stdio: {e}");
        std::process::exit(e.exit_code());
    });
    exai_mcp::reload_on_sighup(gateway.clone());
    let result = exai_stdio::serve_stdio(gateway, logs, shutdown).await;
    if let Some(traces) = traces {
        // The last spans, briefly: nothing may linger after the client is gone.
        traces.shutdown(std::time::Duration::from_secs(2)).await;
    }
    // Exit at once: nothing may linger after the client is gone (no task, no child).
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("exai-stdio: {e:#}");
            std::process::exit(1);
        }
    }
}
