//! `exai`: the command line. Parses arguments, sets up logging on stderr, builds the gateway in
//! process (same configuration, Redis memory and usage ledger as the servers) and runs one
//! subcommand. Each subcommand lives in its own file.

mod chat;
mod cli;
mod doctor;
mod exit;
mod info;

use clap::{CommandFactory, Parser};
use exai_core::{Config, Gateway};
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};
use exit::Failure;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error")))
        .init();
    let code = match run(cli).await {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("exai: {}", failure.message);
            failure.code
        }
    };
    std::process::exit(code);
}

async fn gateway() -> Result<Gateway, Failure> {
    Ok(Gateway::new(Config::from_env()?).await?)
}

async fn run(cli: Cli) -> Result<i32, Failure> {
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "exai", &mut std::io::stdout());
            Ok(0)
        }
        Command::Config(f) => info::config(f.json),
        Command::Doctor { offline, json } => doctor::run(offline, json.json).await,
        Command::Chat(args) => chat::run(&gateway().await?, args).await,
        Command::Models(f) => info::models(&gateway().await?, f.json),
        Command::Tools(f) => info::tools(&gateway().await?, f.json),
        Command::Call { tool, args, json } => info::call(&gateway().await?, &tool, &args, json.json).await,
        Command::Threads { limit, json } => info::threads(&gateway().await?, limit, json.json).await,
        Command::Thread { id, json } => info::thread(&gateway().await?, &id, json.json).await,
        Command::Usage(f) => info::usage(&gateway().await?, f.json).await,
    }
}
