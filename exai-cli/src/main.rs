//! `exai`: the command line. Parses arguments, sets up logging on stderr, builds the gateway in
//! process (same configuration, Redis memory and usage ledger as the servers) and runs one
//! subcommand. Each subcommand lives in its own file.

mod chat;
mod cli;
mod doctor;
mod exit;
mod info;
mod keys;
mod mock;

use clap::{CommandFactory, Parser};
use exai_core::{Config, Gateway};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use cli::{Cli, Command};
use exit::Failure;

#[tokio::main]
async fn main() {
    sigpipe::reset();
    let cli = Cli::parse();
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error")));
    let (otel, traces) = exai_mcp::traces("exai").unzip();
    tracing_subscriber::registry().with(stderr).with(otel).init();
    let code = match run(cli).await {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("exai: {}", failure.message);
            failure.code
        }
    };
    if let Some(traces) = traces {
        traces.shutdown(std::time::Duration::from_secs(2)).await;
    }
    std::process::exit(code);
}

async fn gateway() -> Result<Gateway, Failure> {
    Ok(Gateway::new(Config::from_env()?).await?)
}

async fn run(cli: Cli) -> Result<i32, Failure> {
    let command = match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "exai", &mut std::io::stdout());
            return Ok(0);
        }
        Command::Config(f) => return info::config(f.json),
        Command::Doctor { offline, json } => return doctor::run(offline, json.json).await,
        Command::Keys { command } => return keys::run(&Config::from_env()?, command).await,
        Command::MockUpstream { port } => return mock::run(port).await,
        other => other,
    };
    let gateway = gateway().await?;
    let code = match command {
        Command::Chat(args) => chat::run(&gateway, args).await,
        Command::Models(f) => info::models(&gateway, f.json),
        Command::Tools(f) => info::tools(&gateway, f.json),
        Command::Call { tool, args, json } => info::call(&gateway, &tool, &args, json.json).await,
        Command::Threads { limit, json } => info::threads(&gateway, limit, json.json).await,
        Command::Thread { id, json } => info::thread(&gateway, &id, json.json).await,
        Command::Usage(u) => info::usage(&gateway, u).await,
        Command::Completions { .. }
        | Command::Config(_)
        | Command::Doctor { .. }
        | Command::Keys { .. }
        | Command::MockUpstream { .. } => Ok(0),
    };
    // The usage ledger's writes leave the request path; wait (briefly) so none is lost.
    gateway.shutdown_within(LEDGER_DRAIN).await;
    code
}

/// How long a command waits for the usage ledger's last writes before exiting.
const LEDGER_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);
