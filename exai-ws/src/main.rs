//! `exai-ws`: the daemon. Reads the shared configuration (under `--host`, `--port` and
//! `--config`), refuses unsafe or conflicting starts with a clear message (exit 2), then serves
//! until SIGTERM/SIGINT and drains. `--help` lists the endpoints and the main settings; a flag
//! it does not know exits 2 naming the variable that sets what it looked like.
//!
//! - Bound to a non-loopback address only with `EXAI_WS_TOKEN` set or keys required (`exai keys
//!   create`); there, a call without a key or the master token is always refused (in the core).
//! - One daemon per port and state directory: a lock file (`exai-ws-PORT.lock` in
//!   `EXAI_STATE_DIR`, default the user's state directory) held with an OS lock, which the OS
//!   releases when the process dies — a stale file is simply locked again.
//! - Port already in use: exit 2 naming the address, the process that holds it (pid, and
//!   whether it is another exai-ws) and what to do. A failed start leaves no lock file.
//! - No provider configured: a warning at start saying what to set.
//! - Logs: stderr, `RUST_LOG` (default `info`), `EXAI_LOG_FORMAT=json` for JSON lines.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use exai_core::{Config, Gateway, LogFormat};
use exai_mcp::LogTap;
use exai_ws::AppState;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Cannot start here (the port or state directory is taken, the OS refused): exit 2.
fn fail(message: String) -> ! {
    fail_with(2, message)
}

/// Exits with `code` from the table every exai binary shares (`exai_core::EXIT_CODES`).
fn fail_with(code: i32, message: String) -> ! {
    eprintln!("exai-ws: {message}");
    std::process::exit(code);
}

/// Logs to stderr and the MCP log tap; traces over OTLP when `OTEL_*` asks for them.
fn init_logging(logs: &LogTap, format: LogFormat) -> Option<exai_mcp::Traces> {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = if format == LogFormat::Json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_filter(filter())
            .boxed()
    };
    let (otel, traces) = exai_mcp::traces("exai-ws").unzip();
    tracing_subscriber::registry()
        .with(stderr)
        .with(logs.layer())
        .with(otel)
        .init();
    traces
}

/// The lock file of this daemon's port and state directory, held until the process ends. The
/// file is removed when the daemon stops and when its start fails, so none is left behind.
struct Lock {
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// Removes the lock file, then exits with `code` and `message` (a start that failed after
    /// the lock was taken).
    fn fail(&self, code: i32, message: String) -> ! {
        let _ = std::fs::remove_file(&self.path);
        fail_with(code, message)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes the lock for `port` in the state directory, or says who holds it.
fn lock(dir: &Path, port: u16) -> Lock {
    if let Err(e) = std::fs::create_dir_all(dir) {
        fail(format!("cannot create the state directory {}: {e}", dir.display()));
    }
    let path = dir.join(format!("exai-ws-{port}.lock"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap_or_else(|e| fail(format!("cannot open the lock file {}: {e}", path.display())));
    if file.try_lock().is_err() {
        // The file is the holder's: left as it is.
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        fail(format!(
            "another exai-ws (pid {}) already runs for port {port} with state directory {}; stop it first",
            holder.trim(),
            dir.display()
        ));
    }
    let _ = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| write!(file, "{}", std::process::id()));
    Lock { _file: file, path }
}

/// Why `host:port` cannot be bound, naming the process that holds it when the OS shows it.
fn busy(host: &str, port: u16) -> String {
    match exai_mcp::port_holder(port) {
        Some(h) if h.is_exai_ws() => format!(
            "{host}:{port} is already in use by another exai-ws (pid {}) with a different state directory: \
             stop it (kill {}) or set EXAI_WS_PORT",
            h.pid, h.pid
        ),
        Some(h) => format!("{host}:{port} is already in use by {h}: stop it or set EXAI_WS_PORT"),
        None => format!(
            "{host}:{port} is already in use by another program: stop it (`exai doctor` says what holds it) or set EXAI_WS_PORT"
        ),
    }
}

/// What `--help` shows after the flags: the endpoints, the main settings, the exit codes.
const AFTER_HELP: &str = "Endpoints (one port):
  /v1/chat/completions, /v1/models   OpenAI-compatible API
  /v1/responses                      OpenAI Responses API (Codex)
  /v1/messages                       Anthropic Messages API (Claude Code)
  /mcp                               MCP over streamable HTTP
  / and /ws                          WebSocket: MCP, or the EXAI protocol
  /healthz, /readyz, /metrics        health, readiness, Prometheus metrics
  /admin/keys                        key management (EXAI_ADMIN_TOKEN)
  /ui                                status page

Main settings (environment, or exai.toml; every one with its source: `exai config`):
  GLM_API_KEY, KIMI_API_KEY, MINIMAX_API_KEY   provider keys (at least one)
  EXAI_WS_HOST, EXAI_WS_PORT                   where to listen (127.0.0.1:8079)
  EXAI_WS_TOKEN                                master token: always accepted
  EXAI_ADMIN_TOKEN                             allows /admin/keys
  EXAI_STATE_DIR                               SQLite file, lock file
  REDIS_URL                                    share memory, keys and limits
  EXAI_TOOLS, EXAI_DISABLED_TOOLS              MCP tool profile and exclusions
  EXAI_CONFIG                                  the config file (exai.toml)
  RUST_LOG, EXAI_LOG_FORMAT                    logs on stderr (info; text or json)

";

/// Settings people try as flags, and the variable that sets each.
const SETTING_FLAGS: &[(&str, &str)] = &[
    ("token", "EXAI_WS_TOKEN"),
    ("admin-token", "EXAI_ADMIN_TOKEN"),
    ("state-dir", "EXAI_STATE_DIR"),
    ("threads", "EXAI_WS_THREADS"),
    ("redis", "REDIS_URL"),
    ("redis-url", "REDIS_URL"),
    ("tools", "EXAI_TOOLS"),
    ("log-format", "EXAI_LOG_FORMAT"),
    ("max-connections", "EXAI_WS_MAX_CONNECTIONS"),
];

/// The exai daemon: one port for the OpenAI-compatible, Responses and Anthropic APIs, MCP over
/// HTTP and WebSocket, and health and metrics. Configured by exai.toml and the environment (see
/// `exai config`); a flag wins over both. Logs go to stderr (RUST_LOG, default info).
#[derive(clap::Parser)]
#[command(name = "exai-ws", version, after_help = format!("{AFTER_HELP}{}", exai_core::EXIT_CODES))]
struct Args {
    /// Address to listen on, over EXAI_WS_HOST (default 127.0.0.1; another address needs
    /// EXAI_WS_TOKEN or keys).
    #[arg(long, value_name = "ADDRESS")]
    host: Option<String>,
    /// Port to listen on, over EXAI_WS_PORT (default 8079).
    #[arg(long)]
    port: Option<u16>,
    /// The configuration file, over EXAI_CONFIG (default ./exai.toml, then the user's).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Parses the flags; an unknown one exits 2 saying which variable sets what it looked like.
fn parse_args() -> Args {
    let error = match <Args as clap::Parser>::try_parse() {
        Ok(args) => return args,
        Err(e) => e,
    };
    if error.kind() != clap::error::ErrorKind::UnknownArgument {
        error.exit();
    }
    let given = error
        .get(clap::error::ContextKind::InvalidArg)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let name = given
        .trim_start_matches('-')
        .split('=')
        .next()
        .unwrap_or("")
        .to_string();
    let hint = match SETTING_FLAGS.iter().find(|(flag, _)| *flag == name) {
        Some((_, var)) => format!("{given} is a setting: set {var}=… in the environment (or in exai.toml)"),
        None => "settings are environment variables or exai.toml keys: the main ones in `exai-ws --help`, \
                 every one with `exai config`"
            .to_string(),
    };
    eprintln!("{}\nhint: {hint}", error.render().to_string().trim_end());
    std::process::exit(2);
}

/// The configuration: the environment and file, under the flags.
fn config_of(args: Args) -> Config {
    let mut env: std::collections::HashMap<String, String> = std::env::vars().collect();
    if let Some(path) = args.config {
        env.insert("EXAI_CONFIG".into(), path.display().to_string());
    }
    let mut builder = Config::builder().env(env);
    if let Some(host) = args.host {
        builder = builder.set("daemon.host", host);
    }
    if let Some(port) = args.port {
        builder = builder.set("daemon.port", port);
    }
    builder.build().unwrap_or_else(|e| fail_with(3, e.to_string()))
}

fn main() {
    // `--help`, `--version`, or a flag it does not know (exit 2) — before anything starts.
    let args = parse_args();
    // Read before the runtime exists: it says how many threads the runtime gets.
    let config = config_of(args);
    let runtime = if config.daemon.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.daemon.threads)
            .enable_all()
            .build()
    };
    match runtime {
        Ok(rt) => rt.block_on(run(config)),
        Err(e) => fail(format!("cannot start the async runtime: {e}")),
    }
}

async fn run(config: Config) {
    let logs = LogTap::new();
    let traces = init_logging(&logs, config.log_format);
    let (host, port) = (config.daemon.host.clone(), config.daemon.port);
    if !config.daemon.is_loopback() && config.daemon.token.is_none() && !keys_required(&config).await {
        fail_with(
            3,
            format!(
                "refusing to listen on {host} with neither a master token nor keys: set EXAI_WS_TOKEN, \
                 create a key (`exai keys create NAME`), or bind to 127.0.0.1"
            ),
        );
    }
    let lock = lock(&config.state_dir, port);
    let listener = match tokio::net::TcpListener::bind((host.as_str(), port)).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => lock.fail(2, busy(&host, port)),
        Err(e) => lock.fail(2, format!("cannot listen on {host}:{port}: {e}")),
    };
    let metrics = install_metrics();
    let gateway = match Gateway::new(config).await {
        Ok(g) => g,
        Err(e) => lock.fail(e.exit_code(), e.to_string()),
    };
    tracing::info!(%host, port, "exai-ws listening");
    if gateway.config().ready_providers().next().is_none() {
        tracing::warn!(
            "{}; until then every call fails (/readyz says 503). `exai mock-upstream` runs a fake one offline",
            exai_core::Error::NoProviderConfigured
        );
    }
    exai_mcp::reload_on_sighup(gateway.clone());
    let state = AppState::new(gateway, logs, metrics);
    if let Err(e) = exai_ws::serve(listener, state, shutdown_signal()).await {
        lock.fail(1, e.to_string());
    }
    tracing::info!("exai-ws stopped");
    if let Some(traces) = traces {
        traces.shutdown(std::time::Duration::from_secs(5)).await;
    }
    drop(lock);
}

/// Whether the state store requires keys (none can exist without a store).
async fn keys_required(config: &Config) -> bool {
    match exai_core::Keys::open(config).await {
        Ok(keys) => keys.required().await.unwrap_or_else(|e| fail_with(3, e.to_string())),
        Err(exai_core::KeyError::NoStore) => false,
        Err(e) => fail_with(3, e.to_string()),
    }
}

/// The Prometheus recorder: durations as histograms with buckets for LLM calls, a `# HELP` for
/// every metric, its histograms drained every 5 s. `None` if another recorder is already
/// installed.
fn install_metrics() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), exai_core::DURATION_BUCKETS)
        .unwrap_or_else(|e| fail(format!("cannot set up metrics: {e}")));
    let handle = builder.install_recorder().ok()?;
    // Histogram samples pile up until drained, by a scrape of /metrics or by this upkeep (which
    // `PrometheusBuilder::install` would run): without it, a daemon nobody scraped grew by every
    // call's durations, forever.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    exai_core::describe_metrics();
    metrics::describe_gauge!("exai_ws_connections", "WebSocket connections open now.");
    metrics::describe_counter!(
        "exai_otel_export_errors_total",
        "Batches of trace spans the OTLP collector did not take (unreachable, or an error answer)."
    );
    Some(handle)
}

/// SIGINT or SIGTERM (handled from the moment this is called), then a word in the log.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let signal = exai_mcp::shutdown_signal();
    async move {
        signal.await;
        tracing::info!("shutting down: no new connections; draining in-flight requests");
    }
}
