//! The exai-ws soak: 10,000 calls by 64 clients through every front door at once — OpenAI
//! `/v1/chat/completions`, Anthropic `/v1/messages`, MCP over HTTP (`/mcp`) and over WebSocket,
//! the EXAI protocol — with 10% of them asking the upstream for a fault (429, 500, a stream that
//! breaks, a hang past the call's deadline). Half the calls are streamed where the door can
//! stream. The upstream is exai-core's fake (in this process, on a runtime of its own): it
//! answers the fault a prompt names, and echoes any other prompt as slowly as a small model (the
//! first chunk after 0.5 s, then one every 50 ms). exai-ws is the release binary, a child
//! process with a 3 s deadline, one retry, its default fallback over three providers (all on the
//! fake), circuits that the prompts' faults cannot open, and conversations that expire after 10 s.
//!
//! Each prompt carries its call's id (`req-000123`), so a reply must name its own request and no
//! other. The run fails (exits 1) unless:
//! - no call is lost (every call is answered within the deadline plus 20 s);
//! - no reply is crossed (a reply, frame or JSON-RPC answer naming another request);
//! - every answer is in the caller's protocol — a reply, or that door's error: OpenAI's
//!   `{"error": …}` (or its error chunk in a stream), Anthropic's `{"type": "error", …}` (or
//!   `event: error`), a JSON-RPC error or a tool result with `isError`, an EXAI `error` frame or
//!   `call_tool_res` with `error` — so every fault is answered in it;
//! - exai-ws's RSS over the second half of the calls stays within 10% of its size at the half;
//! - its open file descriptors come back to the count before the load (pooled upstream
//!   connections are closed by an idle check every 90 s, so this waits up to 200 s).
//!
//! ```sh
//! bash scripts/soak.sh   # builds exai-ws in release, runs this
//! ```
//! `EXAI_SOAK_CALLS` (10000) and `EXAI_SOAK_CLIENTS` (64) shrink it for a quick try;
//! `EXAI_WS_BIN` overrides the daemon. Runs only under `cargo bench`. `calls.rs` holds the calls,
//! `doors.rs` the client of each door, `tally.rs` the counts, the tables and the verdict.

mod calls;
mod doors;
mod tally;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use exai_benches::{Killed, free_port, open_fds, rss_kib};
use exai_core::testing::{FakeReply, FakeUpstream};

use calls::{Call, Outcome};
use doors::Client;
use tally::{Sample, Tally};

/// The call's deadline in exai-ws (`limits.call_timeout_secs`): a hang ends there.
const DEADLINE_SECS: u64 = 3;
/// How long the upstream takes to answer (a plain reply's whole body, a stream's first chunk),
/// and between a stream's chunks: about as long as a small model takes for a short reply.
const FIRST_CHUNK: Duration = Duration::from_millis(500);
const BETWEEN_CHUNKS: Duration = Duration::from_millis(50);
/// How long a client waits for an answer before it counts the call as lost.
const PATIENCE: Duration = Duration::from_secs(DEADLINE_SECS + 20);
/// How long the open files may take to come back after the load: exai-ws's pool of upstream
/// connections drops those idle for 90 s when its idle check runs, every 90 s — so up to 180 s
/// after their last use.
const SETTLE: Duration = Duration::from_secs(200);

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// exai-ws on `port` against `fake`, its log in `state/exai-ws.log`.
fn start_exai_ws(fake: &FakeUpstream, port: u16, state: &std::path::Path) -> Killed {
    let bin = std::env::var_os("EXAI_WS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/exai-ws"));
    assert!(
        bin.exists(),
        "build it first: cargo build --release -p exai-ws ({} missing)",
        bin.display()
    );
    let log = std::fs::File::create(state.join("exai-ws.log")).unwrap_or_else(|e| panic!("{e}"));
    let providers = ["GLM", "KIMI", "MINIMAX"];
    let child = Command::new(bin)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", state)
        .env("EXAI_STATE_DIR", state)
        .env("EXAI_WS_PORT", port.to_string())
        .envs(fake.env_for(&providers))
        .envs(providers.map(|p| (format!("{p}_MAX_INFLIGHT"), "256")))
        .env("EXAI_CALL_TIMEOUT_SECS", DEADLINE_SECS.to_string())
        .env("EXAI_MAX_RETRIES", "1")
        .env("EXAI_RETRY_BASE_DELAY_MS", "20")
        // The faults are the prompts', not the providers': a circuit they opened would refuse
        // the clean calls too, and the soak would measure refusals.
        .env("EXAI_CIRCUIT_FAILURE_THRESHOLD", "1000000")
        // Nobody continues these conversations: they expire after 10 s (`memory.ttl_secs`), so
        // that the copy of every conversation kept in process (3 days and 10,000 threads by
        // default) is at its steady size within the run.
        .env("EXAI_MEMORY_TTL_SECS", "10")
        // Every client is 127.0.0.1: one address's rate and sessions must not be the limit.
        .env("EXAI_REQUESTS_PER_MINUTE", "100000000")
        .env("EXAI_GLOBAL_MAX_INFLIGHT", "512")
        .env("EXAI_SESSION_MAX_INFLIGHT", "512")
        .env("RUST_LOG", "warn")
        .current_dir(state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("exai-ws: {e}"));
    Killed(child)
}

async fn wait_up(port: u16) {
    // A client of its own, dropped at the end, so that no connection of it outlives the wait.
    let client = reqwest::Client::new();
    for _ in 0..400 {
        if client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("exai-ws did not come up on port {port}");
}

/// Samples `pid`'s RSS and open files every second until `stop`.
fn sampler(pid: u32, done: Arc<AtomicUsize>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            samples.push(Sample {
                at: start.elapsed(),
                rss_kib: rss_kib(pid),
                fds: open_fds(pid),
                done: done.load(Ordering::Relaxed),
            });
            std::thread::sleep(Duration::from_secs(1));
        }
        samples
    })
}

/// `calls` calls by `clients` clients, each taking the next call when its last one ended.
async fn soak(port: u16, calls: usize, clients: usize, done: Arc<AtomicUsize>) -> Vec<(Call, Outcome)> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (next, done) = (next.clone(), done.clone());
            let mut client = Client::new(http.clone(), port);
            tokio::spawn(async move {
                let mut results = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= calls {
                        break;
                    }
                    let call = Call::nth(n);
                    let outcome = client.call(&call, PATIENCE).await;
                    results.push((call, outcome));
                    done.fetch_add(1, Ordering::Relaxed);
                }
                client.close().await;
                results
            })
        })
        .collect();
    let mut results = Vec::with_capacity(calls);
    for task in tasks {
        results.extend(task.await.unwrap_or_default());
    }
    results
}

/// Waits (up to [`SETTLE`]) for `pid`'s open files to come back to `baseline`: the count 10 s
/// after the load, the count at the end, and how long it took.
fn settle(pid: u32, baseline: usize) -> (usize, usize, Duration) {
    let start = Instant::now();
    let mut after_10s = None;
    loop {
        let fds = open_fds(pid);
        let waited = start.elapsed();
        if waited >= Duration::from_secs(10) {
            after_10s.get_or_insert(fds);
        }
        if fds <= baseline || waited >= SETTLE {
            return (after_10s.unwrap_or(fds), fds, waited);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What `pid`'s open files point at (files; sockets with their TCP ends and state), for a count
/// that did not come back.
fn fd_targets(pid: u32) -> Vec<String> {
    let tcp = tcp_sockets(pid);
    let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| {
            let t = t.display().to_string();
            let inode = t.strip_prefix("socket:[").and_then(|i| i.strip_suffix(']'));
            match inode.and_then(|i| tcp.get(i)) {
                Some(ends) => format!("{t} {ends}"),
                None => t,
            }
        })
        .collect();
    targets.sort();
    targets
}

/// The IPv4 TCP sockets of `pid`'s network namespace by inode: "local → remote STATE".
fn tcp_sockets(pid: u32) -> std::collections::HashMap<String, String> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let end = |hex: &str| {
        let (ip, port) = hex.split_once(':').unwrap_or(("0", "0"));
        let ip = u32::from_str_radix(ip, 16).unwrap_or(0).to_le_bytes();
        let port = u16::from_str_radix(port, 16).unwrap_or(0);
        format!("{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3])
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let state = match *f.get(3)? {
                "01" => "ESTABLISHED",
                "06" => "TIME_WAIT",
                "08" => "CLOSE_WAIT",
                "0A" => "LISTEN",
                other => other,
            };
            Some((f.get(9)?.to_string(), format!("{} → {} {state}", end(f[1]), end(f[2]))))
        })
        .collect()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("soak: run with `cargo bench` (or scripts/soak.sh)");
        return;
    }
    let (calls, clients) = (setting("EXAI_SOAK_CALLS", 10_000), setting("EXAI_SOAK_CLIENTS", 64));
    // The fake upstream has a runtime of its own, so that the clients' load does not starve it.
    let upstream_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let fake = upstream_rt
        .block_on(FakeUpstream::start())
        .unwrap_or_else(|e| panic!("fake upstream: {e}"));
    fake.stop_recording();
    // The fault a prompt names (the marker is in the request's JSON as written), else its echo,
    // as slowly as a small model answers.
    fake.respond_with(|request| {
        FakeReply::fault_in(&request.to_string()).or_else(|| {
            Some(
                FakeReply::echo()
                    .with_delay(FIRST_CHUNK)
                    .with_chunk_delay(BETWEEN_CHUNKS),
            )
        })
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let state = std::env::temp_dir().join(format!("exai-soak-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&state);
    let daemon = start_exai_ws(&fake, port, &state);
    let pid = daemon.0.id();
    rt.block_on(wait_up(port));
    std::thread::sleep(Duration::from_secs(1));
    let (baseline_fds, baseline_targets, rss_start) = (open_fds(pid), fd_targets(pid), rss_kib(pid));
    println!("soak: {calls} calls by {clients} clients through exai-ws (pid {pid}, port {port})");

    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampling = sampler(pid, done.clone(), stop.clone());
    let started = Instant::now();
    let results = rt.block_on(soak(port, calls, clients, done));
    let took = started.elapsed();
    let rss_end = rss_kib(pid);
    stop.store(true, Ordering::Relaxed);
    let samples = sampling.join().unwrap_or_default();
    let (fds_10s, fds_end, settled_in) = settle(pid, baseline_fds);

    let mut tally = Tally::new(calls);
    for (call, outcome) in &results {
        tally.add(call, outcome);
    }
    let verdict = tally.report(&tally::Run {
        took,
        samples: &samples,
        rss_start,
        rss_end,
        baseline_fds,
        fds_10s,
        fds_end,
        settled_in,
        upstream_completed: fake.completed(),
        upstream_cut_short: fake.cut_short(),
    });
    if fds_end > baseline_fds {
        let mut before = baseline_targets;
        let extra: Vec<String> = fd_targets(pid)
            .into_iter()
            .filter(|t| match before.iter().position(|b| b == t) {
                Some(i) => {
                    before.swap_remove(i);
                    false
                }
                None => true,
            })
            .collect();
        println!(
            "open files not there before the load (the upstream is port {}):",
            fake.addr().port()
        );
        for target in extra {
            println!("  {target}");
        }
    }
    println!("exai-ws's log: {}", state.join("exai-ws.log").display());
    drop(daemon);
    drop(fake);
    if let Err(failed) = verdict {
        println!("\nSOAK FAILED: {}", failed.join("; "));
        std::process::exit(1);
    }
    println!("\nsoak passed");
}
