//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;
use exai_core::ThinkingMode;

/// Exit codes, documented in `--help`: the table every exai binary shares.
pub const EXIT_CODES: &str = exai_core::EXIT_CODES;

/// exai: GLM, Kimi, MiniMax and OpenAI-compatible models behind one gateway.
#[derive(Debug, Parser)]
#[command(name = "exai", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One-off chat; streams the reply to stdout.
    Chat(ChatArgs),
    /// Configured models, capabilities, prices, and whether each provider has a key.
    Models(JsonFlag),
    /// The MCP tools this configuration offers.
    Tools(JsonFlag),
    /// Run one tool once.
    Call {
        /// Tool name (see `exai tools`).
        tool: String,
        /// Arguments as a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Recent conversations, newest first.
    Threads {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// One conversation, turn by turn.
    Thread {
        /// Its continuation id.
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Tokens, requests, errors and cost per provider and model: today and all time.
    Usage(UsageArgs),
    /// API keys for a shared exai: create, list, show, update, revoke, rotate.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The effective configuration: every value with its source, secrets redacted.
    Config(JsonFlag),
    /// Check config, provider keys, Redis, the daemon port, clock and TLS.
    Doctor {
        /// Skip checks that leave this machine (provider calls, Redis).
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// A fake provider on 127.0.0.1 (every wire format exai speaks, faults on request): prints
    /// the environment that points exai at it, then serves until Ctrl-C. No key, no network.
    MockUpstream {
        /// Port to listen on (0 for any free one).
        #[arg(long, default_value_t = 8089)]
        port: u16,
    },
    /// Shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: Shell,
    },
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Group by: `key` (calls made with keys, per key) or `deployment` (which endpoint and key
    /// answered, by label).
    #[arg(long, value_parser = ["key", "deployment"])]
    pub by: Option<String>,
    /// Only this key's calls, per provider and model.
    #[arg(long, value_name = "NAME", conflicts_with = "by")]
    pub key: Option<String>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown once; only its SHA-256 is stored).
    Create {
        /// Its name: letters, digits, '-', '_', '.', '@'.
        name: String,
        #[command(flatten)]
        limits: LimitFlags,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Every key: status, spend, limits, last use (never a secret).
    List(JsonFlag),
    /// One key.
    Show {
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Change a key's limits (every daemon applies them within a second); `none` removes one.
    Update {
        name: String,
        #[command(flatten)]
        limits: LimitFlags,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Revoke a key: refused everywhere within a second.
    Revoke {
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Give a key a new secret (printed once); the old one stops working within a second.
    Rotate {
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Delete a key: refused everywhere within a second, its record and spend gone, its name
    /// free. Keys stay required even when none is left (see `allow-keyless`).
    Delete {
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Stop requiring keys, once every key is deleted: a daemon on loopback without
    /// EXAI_WS_TOKEN then serves anyone on this machine again (beyond loopback, never).
    AllowKeyless(JsonFlag),
}

/// A key's limits as flags; each takes `none` to remove the limit (`exai keys update`).
#[derive(Debug, Args)]
pub struct LimitFlags {
    /// Most USD the key may spend per period.
    #[arg(long, value_name = "USD")]
    pub budget_usd: Option<String>,
    /// The budget's period: day, week, month (default) or total.
    #[arg(long)]
    pub period: Option<exai_core::Period>,
    /// Requests per minute.
    #[arg(long, value_name = "N")]
    pub rpm: Option<String>,
    /// Tokens (in and out) per minute.
    #[arg(long, value_name = "N")]
    pub tpm: Option<String>,
    /// Calls in flight at once.
    #[arg(long, value_name = "N")]
    pub max_inflight: Option<String>,
    /// Models it may use, comma-separated (ids, aliases, provider/model or a provider).
    #[arg(long, value_name = "LIST")]
    pub models: Option<String>,
    /// MCP tools it may call, comma-separated.
    #[arg(long, value_name = "LIST")]
    pub tools: Option<String>,
    /// The last day it works (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DATE")]
    pub expires: Option<String>,
    /// Answer its calls from the response cache even when cache.mode is off (`--cache`;
    /// `--cache off` stops).
    #[arg(long, value_name = "on|off", num_args = 0..=1, default_missing_value = "on", value_parser = ["on", "off"])]
    pub cache: Option<String>,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The prompt; read from stdin when absent or `-`.
    pub prompt: Option<String>,
    /// Model, alias, `provider/model` or `auto`.
    #[arg(long, short)]
    pub model: Option<String>,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Sampling temperature.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Thinking depth: minimal, low, medium, high, max.
    #[arg(long)]
    pub thinking: Option<ThinkingMode>,
    /// Let the model search the web (GLM, Kimi).
    #[arg(long)]
    pub web_search: bool,
    /// A file or directory to include (repeatable).
    #[arg(long = "file", short = 'f')]
    pub files: Vec<PathBuf>,
    /// Continue a conversation: the one with this id, or without an id the last one of this
    /// state directory (the prompt then goes first: `exai chat "and then?" --continue`).
    #[arg(long = "continue", short = 'c', value_name = "ID")]
    pub continuation: Option<Option<String>>,
    /// Print one JSON object (text, reasoning, model, provider, usage, cost, continuation id).
    #[arg(long)]
    pub json: bool,
    /// Wait for the whole reply instead of streaming it.
    #[arg(long)]
    pub no_stream: bool,
    /// Print the model's reasoning to stderr.
    #[arg(long)]
    pub show_reasoning: bool,
}
