//! Load harness for exai-ws, on one machine, in one run:
//! - requests/s at 64 concurrent clients and median latency at 1 client, for
//!   `/v1/chat/completions` through exai-ws, the same fake upstream called directly, and the same
//!   upstream behind nginx `proxy_pass` (the cost of one plain proxy hop: the practical limit),
//!   and a bare axum + reqwest proxy that forwards the body untouched (the floor of exai-ws's own
//!   stack, so the figures separate what the gateway costs from what its server and client do);
//! - the same through exai-ws with its limits shared through a redis-server on loopback
//!   (`limits.shared`: two leases per request), against exai-ws on its own;
//! - `/v1/messages` (the Anthropic API, passed through) against the fake's Anthropic endpoint
//!   called directly: what the passthrough adds;
//! - the RSS cost of 1,000 idle WebSocket sessions.
//!
//! ```sh
//! bash scripts/bench-load.sh   # installs nginx-light if missing, builds exai-ws, runs this
//! ```
//! Uses `target/release/exai-ws` (or `$EXAI_WS_BIN`) and `nginx` from PATH (or `$NGINX_BIN`).
//! `EXAI_LOAD_SECS` (8) and `EXAI_LOAD_SAMPLES` (2,000) change the run lengths (for profiling);
//! `EXAI_WS_THREADS` is passed on to the daemon. Besides requests/s and latency, it reports the
//! CPU time the proxying process (nginx or exai-ws) spent per request, from `/proc/PID/stat`.
//! Every process — fake upstream, nginx, exai-ws and this load generator — shares the machine, so
//! the figures compare the three paths under the same conditions. Runs only under `cargo bench`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use exai_benches::{cpu_seconds, rss_kib};
use exai_core::testing::{FakeUpstream, RedisServer};
use futures::{SinkExt, StreamExt};
use serde_json::json;

const CONCURRENCY: usize = 64;
/// How long each throughput run lasts (`EXAI_LOAD_SECS`, default 8).
fn throughput_for() -> Duration {
    Duration::from_secs(env_number("EXAI_LOAD_SECS", 8))
}

/// Sequential requests timed for the median (`EXAI_LOAD_SAMPLES`, default 2,000), after 100
/// warm-up requests.
fn latency_samples() -> usize {
    env_number("EXAI_LOAD_SAMPLES", 2_000) as usize
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
const IDLE_SESSIONS: usize = 1_000;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

async fn wait_up(url: &str) {
    for _ in 0..400 {
        if reqwest::get(url).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{url} did not come up");
}

fn start_exai_ws(upstream: &str, port: u16, extra: &[(&str, String)]) -> Killed {
    let bin = std::env::var_os("EXAI_WS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/exai-ws"));
    assert!(
        bin.exists(),
        "build it first: cargo build --release -p exai-ws ({} missing)",
        bin.display()
    );
    let state = std::env::temp_dir().join(format!("exai-load-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&state);
    let child = Command::new(bin)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &state)
        .env("EXAI_STATE_DIR", &state)
        .env("EXAI_WS_PORT", port.to_string())
        .env("GLM_API_KEY", "load")
        .env("GLM_BASE_URL", upstream)
        .env("GLM_MAX_INFLIGHT", "512")
        .env("EXAI_GLOBAL_MAX_INFLIGHT", "512")
        .env("EXAI_SESSION_MAX_INFLIGHT", "512")
        .env("EXAI_WS_REQUESTS_PER_MINUTE", "100000000")
        .env("EXAI_WS_MAX_CONNECTIONS", "4096")
        .env("EXAI_WS_MAX_CONNECTIONS_PER_IP", "4096")
        .env("RUST_LOG", "error")
        .envs(std::env::var("EXAI_WS_THREADS").map(|t| ("EXAI_WS_THREADS", t)))
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("exai-ws: {e}"));
    Killed(child)
}

fn start_nginx(upstream_port: u16, port: u16) -> Option<Killed> {
    let bin = std::env::var("NGINX_BIN").unwrap_or_else(|_| "nginx".into());
    let dir = std::env::temp_dir().join(format!("exai-load-nginx-{}", std::process::id()));
    let _ = std::fs::create_dir_all(dir.join("logs"));
    let conf = format!(
        "worker_processes 1;\nmaster_process off;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/logs/error.log error;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir}; uwsgi_temp_path {dir}; scgi_temp_path {dir};\n\
           upstream fake {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}\n\
           server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://fake; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n}}\n",
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).ok()?;
    let child = Command::new(bin)
        .args(["-p", &dir.display().to_string(), "-c", &path.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Killed(child))
}

/// The body a row's requests send: an OpenAI chat completion, or an Anthropic message for
/// `/v1/messages` rows.
fn body_for(url: &str) -> serde_json::Value {
    if url.ends_with("/v1/messages") {
        json!({"model": "glm-4.6", "max_tokens": 64, "messages": [{"role": "user", "content": "ping"}]})
    } else {
        json!({"model": "glm-4.6", "messages": [{"role": "user", "content": "ping"}]})
    }
}

/// Requests per second with `CONCURRENCY` clients looping for `throughput_for()`.
async fn throughput(url: &str) -> f64 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap_or_default();
    let body = body_for(url);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + throughput_for();
    let workers = (0..CONCURRENCY).map(|_| {
        let (client, body, done, url) = (client.clone(), body.clone(), done.clone(), url.to_string());
        tokio::spawn(async move {
            while Instant::now() < deadline {
                let ok = client
                    .post(&url)
                    .bearer_auth("load")
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().is_success());
                if matches!(ok, Ok(true)) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    });
    let started = Instant::now();
    futures::future::join_all(workers).await;
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Median latency of one client's sequential requests.
async fn latency(url: &str) -> Duration {
    let client = reqwest::Client::new();
    let body = body_for(url);
    let mut samples = Vec::with_capacity(latency_samples());
    for i in 0..latency_samples() + 100 {
        let started = Instant::now();
        let r = client.post(url).bearer_auth("load").json(&body).send().await;
        let _ = match r {
            Ok(r) => r.bytes().await.ok(),
            Err(_) => None,
        };
        if i >= 100 {
            samples.push(started.elapsed());
        }
    }
    samples.sort();
    samples[samples.len() / 2]
}

async fn idle_sessions(port: u16, pid: u32) -> (u64, u64) {
    let before = rss_kib(pid);
    let mut sockets = Vec::with_capacity(IDLE_SESSIONS);
    for _ in 0..IDLE_SESSIONS {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
            .await
            .unwrap_or_else(|e| panic!("ws: {e}"));
        let hello = json!({"op": "hello"}).to_string();
        ws.send(tokio_tungstenite::tungstenite::Message::Text(hello.into()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = ws.next().await;
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid);
    drop(sockets);
    (before, after)
}

/// The floor of exai-ws's own stack: axum receiving, reqwest forwarding the body to the upstream,
/// the reply's bytes returned — no parsing, no gateway. Runs as a child process of this harness
/// (`load --bare-proxy PORT UPSTREAM`) with the same runtime exai-ws uses (`EXAI_WS_THREADS`).
fn bare_proxy(port: &str, upstream: &str) {
    use axum::body::Bytes;
    use axum::http::StatusCode;
    let threads: usize = std::env::var("EXAI_WS_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b.enable_all().build()
    }
    .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("{upstream}/chat/completions");
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let forward = move |body: Bytes| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let reply = client.post(&url).bearer_auth("load").body(body).send().await;
                match reply {
                    Ok(r) => (r.status(), r.bytes().await.unwrap_or_default()),
                    Err(_) => (StatusCode::BAD_GATEWAY, Bytes::new()),
                }
            }
        };
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(forward))
            .route("/healthz", axum::routing::get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        axum::serve(listener, app).await.unwrap_or_else(|e| panic!("{e}"));
    });
}

fn start_bare_proxy(upstream: &str, port: u16) -> Option<Killed> {
    let exe = std::env::current_exe().ok()?;
    let child = Command::new(exe)
        .args(["--bare-proxy", &port.to_string(), upstream])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Killed(child))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, port, upstream] = args.as_slice()
        && flag == "--bare-proxy"
    {
        return bare_proxy(port, upstream);
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("load: run with `cargo bench` to measure");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let fake = FakeUpstream::start().await.unwrap_or_else(|e| panic!("fake: {e}"));
        fake.stop_recording();
        let (ws_port, nginx_port, bare_port, shared_port) = (free_port(), free_port(), free_port(), free_port());
        let exai = start_exai_ws(
            &fake.base_url(),
            ws_port,
            &[("GLM_ANTHROPIC_BASE_URL", fake.anthropic_base_url())],
        );
        // The same daemon with its limits shared through a redis-server on loopback.
        let redis = RedisServer::start();
        let shared_env = [("REDIS_URL", redis.url()), ("EXAI_MEMORY", "sqlite".to_string())];
        let shared = start_exai_ws(&fake.base_url(), shared_port, &shared_env);
        wait_up(&format!("http://127.0.0.1:{shared_port}/healthz")).await;
        let nginx = start_nginx(fake.addr().port(), nginx_port);
        let bare = start_bare_proxy(&fake.base_url(), bare_port);
        wait_up(&format!("http://127.0.0.1:{ws_port}/healthz")).await;
        let direct = format!("{}/chat/completions", fake.base_url());
        let through = format!("http://127.0.0.1:{ws_port}/v1/chat/completions");
        let proxied = format!("http://127.0.0.1:{nginx_port}/v1/chat/completions");
        if nginx.is_some() {
            wait_up(&format!("http://127.0.0.1:{nginx_port}/")).await;
        }
        wait_up(&format!("http://127.0.0.1:{bare_port}/healthz")).await;
        println!("| path | requests/s at {CONCURRENCY} clients | median latency at 1 client |\n|---|---|---|");
        let mut rows = vec![("direct (fake upstream)", direct.clone())];
        if nginx.is_some() {
            rows.push(("nginx proxy_pass", proxied));
        } else {
            println!("(nginx not found: install nginx-light or set NGINX_BIN for the proxy comparison)");
        }
        rows.push(("axum + reqwest, bare", format!("http://127.0.0.1:{bare_port}/v1/chat/completions")));
        rows.push(("exai-ws", through.clone()));
        rows.push((
            "exai-ws, limits shared (Redis)",
            format!("http://127.0.0.1:{shared_port}/v1/chat/completions"),
        ));
        // The Anthropic Messages API: the fake's own endpoint, and exai-ws passing it through.
        rows.push(("direct Anthropic /v1/messages", format!("{}/v1/messages", fake.anthropic_base_url())));
        rows.push((
            "exai-ws /v1/messages (passthrough)",
            format!("http://127.0.0.1:{ws_port}/v1/messages"),
        ));
        let pid_of = |name: &str| match name {
            "exai-ws" | "exai-ws /v1/messages (passthrough)" => Some(exai.0.id()),
            "exai-ws, limits shared (Redis)" => Some(shared.0.id()),
            "nginx proxy_pass" => nginx.as_ref().map(|n| n.0.id()),
            "axum + reqwest, bare" => bare.as_ref().map(|b| b.0.id()),
            _ => None,
        };
        let mut results = Vec::new();
        let mut cpu = Vec::new();
        for (name, url) in &rows {
            let pid = pid_of(name);
            let before = pid.map(cpu_seconds);
            let rps = throughput(url).await;
            let middle = pid.map(cpu_seconds);
            let median = latency(url).await;
            let after = pid.map(cpu_seconds);
            println!("| {name} | {rps:.0} | {:.1} µs |", median.as_secs_f64() * 1e6);
            results.push((name.to_string(), rps, median));
            if let (Some(b), Some(m), Some(a)) = (before, middle, after) {
                let loaded = (m - b) / (rps * throughput_for().as_secs_f64()) * 1e6;
                let single = (a - m) / (latency_samples() + 100) as f64 * 1e6;
                cpu.push(format!("| {name} | {loaded:.0} µs | {single:.0} µs |"));
            }
        }
        println!("\n| proxy process | CPU per request at {CONCURRENCY} clients | CPU per request at 1 client |\n|---|---|---|");
        for line in &cpu {
            println!("{line}");
        }
        let find = |n: &str| results.iter().find(|r| r.0.starts_with(n)).cloned();
        if let (Some(d), Some(x)) = (find("direct"), find("exai-ws")) {
            let added = x.2.as_secs_f64() * 1e6 - d.2.as_secs_f64() * 1e6;
            println!("\nexai-ws adds {added:.1} µs median latency over direct (target < 100 µs)");
            if let Some(b) = find("axum") {
                println!(
                    "the bare axum + reqwest proxy adds {:.1} µs: the floor of the stack; the gateway's own share is {:.1} µs",
                    b.2.as_secs_f64() * 1e6 - d.2.as_secs_f64() * 1e6,
                    x.2.as_secs_f64() * 1e6 - b.2.as_secs_f64() * 1e6
                );
            }
        }
        if let (Some(x), Some(s)) = (find("exai-ws"), find("exai-ws, limits shared")) {
            println!(
                "with shared limits, exai-ws keeps {:.0}% of its own requests/s (target ≥ 70%) and adds {:.1} µs at 1 client",
                100.0 * s.1 / x.1,
                s.2.as_secs_f64() * 1e6 - x.2.as_secs_f64() * 1e6
            );
        }
        if let (Some(d), Some(x)) = (find("direct Anthropic"), find("exai-ws /v1/messages")) {
            println!(
                "the /v1/messages passthrough adds {:.1} µs median latency over the provider's endpoint called directly, and keeps {:.0}% of its requests/s",
                x.2.as_secs_f64() * 1e6 - d.2.as_secs_f64() * 1e6,
                100.0 * x.1 / d.1
            );
        }
        if let (Some(n), Some(x)) = (find("nginx"), find("exai-ws")) {
            println!(
                "exai-ws reaches {:.0}% of nginx's requests/s (target ≥ 50%)",
                100.0 * x.1 / n.1
            );
        }
        let (before, after) = idle_sessions(ws_port, exai.0.id()).await;
        println!(
            "{IDLE_SESSIONS} idle WebSocket sessions: RSS {:.1} MB → {:.1} MB, +{:.1} MB (target < 100 MB)",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            after.saturating_sub(before) as f64 / 1024.0
        );
        drop(nginx);
        drop(bare);
        drop(shared);
        drop(exai);
    });
}
