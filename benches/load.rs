//! The exai-ws load harness, as a user would measure it, on one machine in one run: wrk as the
//! load generator, nginx as the upstream (its own process, one worker per core), and four ways to
//! reach it — directly, through nginx `proxy_pass` (its own process, one worker per core: the
//! proxy to beat), through a bare axum + reqwest proxy that streams the reply untouched (the floor
//! of exai-ws's own stack) and through exai-ws. The upstream serves:
//! - `/plain/v1/chat/completions`: a fixed chat completion;
//! - `/stream/v1/chat/completions`: the same as a 200-chunk SSE stream;
//! - `/trickle/v1/chat/completions`: that stream trickled over ~8 s (`limit_rate`), for the
//!   long-stream rows (2,000 at once: memory per open stream and CPU for the run);
//! - `/anthropic/v1/messages`: a fixed Anthropic message, for the `/v1/messages` passthrough row.
//!
//! - `/big/v1/chat/completions`: a chat completion of 16 KiB of text, for filling the response
//!   cache (`load/cache.rs`).
//!
//! `/v1/responses` rows ask exai-ws the same plain and streamed questions in the Responses API,
//! which it translates to the chat upstreams above (no upstream speaks Responses) — on a daemon
//! of their own, since each call stores its response. The cache
//! rows ask a daemon with `cache.mode = exact` the plain and streamed questions it has kept
//! (every call a hit), and fill another's in-process level far past its `cache.max_bytes`
//! (`load/cache.rs`).
//!
//! exai-ws routes `glm-4.6` to the plain location, `kimi-k2-0905-preview` to the stream, and
//! `vllm/trickle` (an OpenAI-compatible provider declared in an `exai.toml`) to the trickle. Plain and streamed rows run at 64 clients (requests/s, p50, p99,
//! the proxying process's CPU per request) and at 1 client (p50). Any non-2xx answer or socket
//! error fails the run. Also: exai-ws with its limits shared through a redis-server, exai-ws
//! exporting traces over OTLP/HTTP (to the upstream nginx, which answers 200 to each batch), and
//! the RSS of 1,000 idle WebSocket sessions.
//!
//! ```sh
//! bash scripts/bench-load.sh   # installs wrk and nginx-light if missing, builds exai-ws, runs this
//! ```
//! `EXAI_LOAD_SECS` (8) sets each wrk run's length; `EXAI_WS_BIN`, `NGINX_BIN` override the
//! binaries; `EXAI_LOAD_ONLY=Responses` measures only the rows whose name holds that text, and
//! nothing after the table. Runs only under `cargo bench`.

#[path = "load/cache.rs"]
mod cache;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use exai_benches::wrk::{self, WrkReport};
use exai_benches::{Killed, cpu_seconds, free_port, peak_rss_kib, rss_kib};
use exai_core::testing::RedisServer;
use futures::{SinkExt, StreamExt};
use serde_json::json;

const CLIENTS: usize = 64;
const LONG_STREAMS: usize = 2_000;
const IDLE_SESSIONS: usize = 1_000;
/// Chunks in a streamed reply.
const CHUNKS: usize = 200;

fn secs() -> u64 {
    std::env::var("EXAI_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// `EXAI_LOAD_ONLY`: the text a row's name must hold to be measured (all rows without it).
fn only() -> Option<String> {
    std::env::var("EXAI_LOAD_ONLY").ok().filter(|o| !o.is_empty())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
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

/// The upstream's fixed chat completion.
fn completion() -> String {
    json!({"id": "chatcmpl-load", "object": "chat.completion", "created": 0, "model": "load",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}})
    .to_string()
}

/// The upstream's 200-chunk stream, ending with usage and `[DONE]`.
fn stream() -> String {
    let mut out = String::new();
    for i in 0..CHUNKS {
        let chunk = json!({"id": "chatcmpl-load", "object": "chat.completion.chunk", "created": 0, "model": "load",
            "choices": [{"index": 0, "delta": {"content": format!("word{i} ")}, "finish_reason": null}]});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    let last = json!({"id": "chatcmpl-load", "object": "chat.completion.chunk", "created": 0, "model": "load",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": CHUNKS, "total_tokens": CHUNKS + 8}});
    out.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
    out
}

fn message() -> String {
    json!({"id": "msg_load", "type": "message", "role": "assistant", "model": "load",
        "content": [{"type": "text", "text": "pong"}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 8, "output_tokens": 1}})
    .to_string()
}

/// Starts nginx with `body` inside `http {}`, one worker per core.
fn start_nginx(name: &str, body: &str) -> Killed {
    let bin = std::env::var("NGINX_BIN").unwrap_or_else(|_| "nginx".into());
    let dir = nginx_dir(name);
    let _ = std::fs::create_dir_all(dir.join("logs"));
    let conf = format!(
        "worker_processes {workers};\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/logs/error.log error;\n\
         worker_rlimit_nofile 16384;\nevents {{ worker_connections 8192; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir}; \
         uwsgi_temp_path {dir}; scgi_temp_path {dir};\n{body}\n}}\n",
        workers = cores(),
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new(&bin)
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("nginx ({bin}; run scripts/bench-load.sh, which installs it): {e}"));
    Killed(child)
}

fn nginx_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("exai-load-{name}-{}", std::process::id()))
}

/// The upstream: static files answered to POSTs (`error_page 405 =200 $uri` turns nginx's
/// refusal to POST a static file into serving it).
fn upstream(port: u16) -> Killed {
    let www = nginx_dir("upstream").join("www");
    for (path, body) in [
        ("plain/v1/chat/completions", completion()),
        ("stream/v1/chat/completions", stream()),
        ("trickle/v1/chat/completions", stream()),
        ("anthropic/v1/messages", message()),
        ("big/v1/chat/completions", cache::big_completion()),
    ] {
        let file = www.join(path);
        let _ = std::fs::create_dir_all(file.parent().unwrap_or(&www));
        std::fs::write(&file, body).unwrap_or_else(|e| panic!("{e}"));
    }
    // Trickled: the whole stream over about 8 s.
    let rate = stream().len() / 8;
    let body = format!(
        "  server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    keepalive_requests 1000000;\n    root {www};\n\
             error_page 405 =200 $uri;\n\
             location = /healthz {{ return 200 'ok'; }}\n\
             location = /v1/traces {{ return 200; }}\n\
             location /plain/ {{ default_type application/json; }}\n\
             location /anthropic/ {{ default_type application/json; }}\n\
             location /big/ {{ default_type application/json; }}\n\
             location /stream/ {{ default_type text/event-stream; }}\n\
             location /trickle/ {{ default_type text/event-stream; limit_rate {rate}; }}\n  }}",
        www = www.display()
    );
    start_nginx("upstream", &body)
}

fn nginx_proxy(port: u16, upstream: u16) -> Killed {
    let body = format!(
        "  upstream up {{ server 127.0.0.1:{upstream}; keepalive 256; }}\n\
           server {{ listen 127.0.0.1:{port} backlog=4096; keepalive_requests 1000000;\n\
             location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; }} }}"
    );
    start_nginx("proxy", &body)
}

fn start_exai_ws(upstream: u16, port: u16, extra: &[(&str, String)]) -> Killed {
    let bin = std::env::var_os("EXAI_WS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/exai-ws"));
    assert!(
        bin.exists(),
        "build it first: cargo build --release -p exai-ws ({} missing)",
        bin.display()
    );
    let state = std::env::temp_dir().join(format!("exai-load-{port}-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&state);
    let base = |location: &str| format!("http://127.0.0.1:{upstream}/{location}/v1");
    // The trickle is an OpenAI-compatible provider's (its chat is relayed, as GLM's and Kimi's
    // is; MiniMax's chat replies are rewritten for their `<think>` tags, so not relayed).
    let config = state.join("exai.toml");
    let toml = format!(
        "[providers.vllm]\nbase_url = \"{}\"\nmax_inflight = 4096\n[[providers.vllm.models]]\nid = \"trickle\"\n\
         [providers.big]\nbase_url = \"{}\"\nmax_inflight = 4096\n[[providers.big.models]]\nid = \"reply16k\"\n",
        base("trickle"),
        base("big")
    );
    std::fs::write(&config, toml).unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new(bin)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &state)
        .env("EXAI_STATE_DIR", &state)
        .env("EXAI_WS_PORT", port.to_string())
        .env("EXAI_CONFIG", &config)
        .envs([("GLM", "plain"), ("KIMI", "stream")].map(|(p, l)| (format!("{p}_BASE_URL"), base(l))))
        .envs(["GLM", "KIMI"].map(|p| (format!("{p}_API_KEY"), "load".to_string())))
        .envs(["GLM", "KIMI"].map(|p| (format!("{p}_MAX_INFLIGHT"), "4096".to_string())))
        .env(
            "GLM_ANTHROPIC_BASE_URL",
            format!("http://127.0.0.1:{upstream}/anthropic"),
        )
        .env("EXAI_GLOBAL_MAX_INFLIGHT", "4096")
        .env("EXAI_SESSION_MAX_INFLIGHT", "4096")
        .env("EXAI_REQUESTS_PER_MINUTE", "100000000")
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

/// The floor of exai-ws's own stack: axum receiving, reqwest forwarding the body to the same
/// path upstream, the reply streamed back untouched — no parsing, no gateway. Runs as a child
/// process (`load --bare-proxy PORT UPSTREAM_ROOT`) with the runtime exai-ws uses.
fn bare_proxy(port: &str, upstream: &str) {
    use axum::body::{Body, Bytes};
    use axum::http::{StatusCode, Uri};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let root = upstream.to_string();
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let forward = move |uri: Uri, body: Bytes| {
            let (client, url) = (client.clone(), format!("{root}{}", uri.path()));
            async move {
                match client.post(&url).bearer_auth("load").body(body).send().await {
                    Ok(r) => {
                        let status = r.status();
                        (status, Body::from_stream(r.bytes_stream()))
                    }
                    Err(_) => (StatusCode::BAD_GATEWAY, Body::empty()),
                }
            }
        };
        let app = axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .fallback(axum::routing::post(forward));
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // As exai-ws does: without TCP_NODELAY a streamed reply's last writes wait for the
        // client's delayed ACK (~40 ms per reply of a keep-alive connection).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await.unwrap_or_else(|e| panic!("{e}"));
    });
}

fn start_bare_proxy(upstream: u16, port: u16) -> Killed {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new(exe)
        .args([
            "--bare-proxy",
            &port.to_string(),
            &format!("http://127.0.0.1:{upstream}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    Killed(child)
}

/// One row: a name, where to send, what, and which process proxies (for its CPU).
struct Row {
    name: &'static str,
    url: String,
    script: PathBuf,
    /// The proxying processes (nginx's workers), none for a direct row.
    pids: Vec<u32>,
}

/// CPU seconds used so far by `pids` together.
fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().map(|p| cpu_seconds(*p)).sum()
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Runs a row at 64 clients and at 1; prints its line.
fn measure(row: &Row) -> (WrkReport, WrkReport) {
    let before = cpu_of(&row.pids);
    let loaded = wrk::run(row.name, &row.url, &row.script, CLIENTS, secs());
    let cpu = if row.pids.is_empty() {
        "—".to_string()
    } else {
        format!(
            "{:.0} µs",
            (cpu_of(&row.pids) - before) / loaded.requests.max(1) as f64 * 1e6
        )
    };
    let single = wrk::run(row.name, &row.url, &row.script, 1, secs());
    println!(
        "| {} | {:.0} | {} | {} | {} | {} |",
        row.name,
        loaded.requests_per_sec,
        micros(loaded.p50),
        micros(loaded.p99),
        cpu,
        micros(single.p50)
    );
    (loaded, single)
}

/// 2,000 trickled streams at once through `url`: requests completed, the proxy's RSS growth
/// and CPU for the run.
fn long_streams(name: &str, url: &str, script: &Path, pids: &[u32]) {
    let rss = |pids: &[u32]| pids.iter().map(|p| rss_kib(*p)).sum::<u64>();
    let (rss_before, cpu_before) = (rss(pids), cpu_of(pids));
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss_before));
    let sampler = {
        let (peak, pids) = (peak.clone(), pids.to_vec());
        std::thread::spawn(move || {
            for _ in 0..(secs().max(10) + 2) * 4 {
                peak.fetch_max(rss(&pids), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let report = wrk::run(name, url, script, LONG_STREAMS, secs().max(10) + 2);
    let _ = sampler.join();
    let grown = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(rss_before);
    println!(
        "| {name} | {} | +{:.1} MB (≈ {:.0} KB per stream) | {:.2} s |",
        report.requests,
        grown as f64 / 1024.0,
        grown as f64 / LONG_STREAMS as f64,
        cpu_of(pids) - cpu_before
    );
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
    let (up, proxy_port, bare_port, ws_port, shared_port, traced_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let (cached_port, bounded_port, responses_port) = (free_port(), free_port(), free_port());
    let _upstream = upstream(up);
    let proxy = nginx_proxy(proxy_port, up);
    let bare = start_bare_proxy(up, bare_port);
    let exai = start_exai_ws(up, ws_port, &[]);
    let redis = RedisServer::start();
    let shared = start_exai_ws(
        up,
        shared_port,
        &[("REDIS_URL", redis.url()), ("EXAI_MEMORY", "sqlite".into())],
    );
    // Traces exported over OTLP/HTTP to the upstream nginx, which answers 200 to each batch.
    let traced = start_exai_ws(
        up,
        traced_port,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{up}"))],
    );
    let cached = start_exai_ws(up, cached_port, &[("EXAI_CACHE", "exact".into())]);
    // The Responses rows on a daemon of their own: each of their calls stores its response (a
    // SQLite write), a backlog the other rows' daemon should not carry.
    let responder = start_exai_ws(up, responses_port, &[]);
    let bounded = start_exai_ws(
        up,
        bounded_port,
        &[
            ("EXAI_CACHE", "exact".into()),
            ("EXAI_CACHE_MAX_BYTES", cache::BOUND_BYTES.to_string()),
        ],
    );
    rt.block_on(async {
        for port in [
            up,
            proxy_port,
            bare_port,
            ws_port,
            shared_port,
            traced_port,
            cached_port,
            bounded_port,
            responses_port,
        ] {
            wait_up(&format!("http://127.0.0.1:{port}/healthz")).await;
        }
    });
    let dir = std::env::temp_dir().join(format!("exai-load-scripts-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let ask = |model: &str, stream: bool| {
        json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "ping"}]}).to_string()
    };
    let plain = wrk::post_script(&dir, "plain", &ask("glm-4.6", false), &[]);
    let streamed = wrk::post_script(&dir, "streamed", &ask("kimi-k2-0905-preview", true), &[]);
    let trickled = wrk::post_script(&dir, "trickled", &ask("vllm/trickle", true), &[]);
    let messages = wrk::post_script(
        &dir,
        "messages",
        &json!({"model": "glm-4.6", "max_tokens": 16, "messages": [{"role": "user", "content": "ping"}]}).to_string(),
        &[("anthropic-version", "2023-06-01")],
    );
    // The Responses API, translated to the same chat upstreams (plain, and the 200-chunk stream).
    let responses = |model: &str, stream: bool| json!({"model": model, "stream": stream, "input": "ping"}).to_string();
    let responses_plain = wrk::post_script(&dir, "responses_plain", &responses("glm-4.6", false), &[]);
    let responses_streamed = wrk::post_script(
        &dir,
        "responses_streamed",
        &responses("kimi-k2-0905-preview", true),
        &[],
    );
    let at = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
    rt.block_on(async {
        let url = at(cached_port, "/v1/chat/completions");
        cache::warm(&url, &ask("glm-4.6", false)).await;
        cache::warm(&url, &ask("kimi-k2-0905-preview", true)).await;
    });
    // nginx's work is its workers'; the master is idle.
    let workers = nginx_workers(proxy.0.id());
    let (bare_pid, exai_pid, shared_pid) = (vec![bare.0.id()], vec![exai.0.id()], vec![shared.0.id()]);
    let cached_pid = vec![cached.0.id()];
    let responder_pid = vec![responder.0.id()];
    let responder_rss = rss_kib(responder.0.id());
    let traced_pid = vec![traced.0.id()];
    let row = |name, url: String, script: &PathBuf, pids: &Vec<u32>| Row {
        name,
        url,
        script: script.clone(),
        pids: pids.clone(),
    };
    let none = Vec::new();
    println!(
        "| path | requests/s at {CLIENTS} clients | p50 | p99 | proxy CPU per request | p50 at 1 client |\n|---|---|---|---|---|---|"
    );
    let rows = [
        row("plain: direct", at(up, "/plain/v1/chat/completions"), &plain, &none),
        row(
            "plain: nginx proxy_pass",
            at(proxy_port, "/plain/v1/chat/completions"),
            &plain,
            &workers,
        ),
        row(
            "plain: axum + reqwest, bare",
            at(bare_port, "/plain/v1/chat/completions"),
            &plain,
            &bare_pid,
        ),
        row("plain: exai-ws", at(ws_port, "/v1/chat/completions"), &plain, &exai_pid),
        row(
            "plain: exai-ws, cache hit",
            at(cached_port, "/v1/chat/completions"),
            &plain,
            &cached_pid,
        ),
        row(
            "plain: exai-ws, limits shared (Redis)",
            at(shared_port, "/v1/chat/completions"),
            &plain,
            &shared_pid,
        ),
        row(
            "plain: exai-ws, traces exported (OTLP)",
            at(traced_port, "/v1/chat/completions"),
            &plain,
            &traced_pid,
        ),
        row(
            "200-chunk stream: direct",
            at(up, "/stream/v1/chat/completions"),
            &streamed,
            &none,
        ),
        row(
            "200-chunk stream: nginx proxy_pass",
            at(proxy_port, "/stream/v1/chat/completions"),
            &streamed,
            &workers,
        ),
        row(
            "200-chunk stream: axum + reqwest, bare",
            at(bare_port, "/stream/v1/chat/completions"),
            &streamed,
            &bare_pid,
        ),
        row(
            "200-chunk stream: exai-ws",
            at(ws_port, "/v1/chat/completions"),
            &streamed,
            &exai_pid,
        ),
        row(
            "200-chunk stream: exai-ws, cache hit",
            at(cached_port, "/v1/chat/completions"),
            &streamed,
            &cached_pid,
        ),
        row(
            "Responses, plain: exai-ws (translated to chat)",
            at(responses_port, "/v1/responses"),
            &responses_plain,
            &responder_pid,
        ),
        row(
            "Responses, 200-chunk stream: exai-ws (translated to chat)",
            at(responses_port, "/v1/responses"),
            &responses_streamed,
            &responder_pid,
        ),
        row(
            "Anthropic message: direct",
            at(up, "/anthropic/v1/messages"),
            &messages,
            &none,
        ),
        row(
            "Anthropic message: exai-ws passthrough",
            at(ws_port, "/v1/messages"),
            &messages,
            &exai_pid,
        ),
    ];
    let only = only();
    let results: Vec<(&str, WrkReport, WrkReport)> = rows
        .iter()
        .filter(|r| only.as_deref().is_none_or(|o| r.name.contains(o)))
        .map(|r| {
            let (loaded, single) = measure(r);
            (r.name, loaded, single)
        })
        .collect();
    let find = |name: &str| results.iter().find(|r| r.0 == name).map(|r| (r.1, r.2));
    for kind in ["plain", "200-chunk stream"] {
        if let (Some(n), Some(x), Some(d)) = (
            find(&format!("{kind}: nginx proxy_pass")),
            find(&format!("{kind}: exai-ws")),
            find(&format!("{kind}: direct")),
        ) {
            println!(
                "{kind}: exai-ws reaches {:.0}% of nginx's requests/s; at 1 client it adds {:.0} µs over direct (nginx: {:.0} µs)",
                100.0 * x.0.requests_per_sec / n.0.requests_per_sec,
                (x.1.p50.as_secs_f64() - d.1.p50.as_secs_f64()) * 1e6,
                (n.1.p50.as_secs_f64() - d.1.p50.as_secs_f64()) * 1e6,
            );
        }
    }
    cache::print_targets(find);
    println!(
        "Responses rows (each call stores its response): their daemon's RSS {:.1} MB before them, {:.1} MB after, {:.1} MB at most",
        responder_rss as f64 / 1024.0,
        rss_kib(responder.0.id()) as f64 / 1024.0,
        peak_rss_kib(responder.0.id()) as f64 / 1024.0
    );
    if only.is_some() {
        return;
    }
    if let (Some(x), Some(t)) = (find("plain: exai-ws"), find("plain: exai-ws, traces exported (OTLP)")) {
        println!(
            "traces: exai-ws exporting every request's spans keeps {:.0}% of its requests/s (target ≥ 90%)",
            100.0 * t.0.requests_per_sec / x.0.requests_per_sec
        );
    }
    // Idle sessions before the long streams, whose memory the allocator keeps afterwards.
    let (before, after) = rt.block_on(idle_sessions(ws_port, exai.0.id()));
    println!(
        "\n{IDLE_SESSIONS} idle WebSocket sessions: RSS {:.1} MB → {:.1} MB, +{:.1} MB (target < 100 MB)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0
    );
    println!(
        "\n| {LONG_STREAMS} trickled streams at once (~8 s each) | completed | proxy RSS growth | proxy CPU for the run |\n|---|---|---|---|"
    );
    long_streams(
        "nginx proxy_pass",
        &at(proxy_port, "/trickle/v1/chat/completions"),
        &trickled,
        &workers,
    );
    long_streams(
        "axum + reqwest, bare",
        &at(bare_port, "/trickle/v1/chat/completions"),
        &trickled,
        &bare_pid,
    );
    long_streams("exai-ws", &at(ws_port, "/v1/chat/completions"), &trickled, &exai_pid);
    let distinct = cache::distinct_script(&dir, "big/reply16k");
    cache::print_fill_header();
    let bound = format!("exai-ws, cache on, `cache.max_bytes` {} MiB", cache::BOUND_BYTES >> 20);
    cache::fill(&bound, bounded_port, bounded.0.id(), &distinct, secs());
    drop(bounded);
    // The same load with the cache off: what the request path alone leaves in the RSS.
    let unbounded = start_exai_ws(up, bounded_port, &[]);
    rt.block_on(wait_up(&format!("http://127.0.0.1:{bounded_port}/healthz")));
    cache::fill(
        "exai-ws, cache off (control)",
        bounded_port,
        unbounded.0.id(),
        &distinct,
        secs(),
    );
    drop(unbounded);
    drop(cached);
    drop(responder);
    drop(shared);
    drop(traced);
    drop(redis);
}

/// The pids of nginx's workers (where the proxying happens).
fn nginx_workers(master: u32) -> Vec<u32> {
    std::thread::sleep(Duration::from_millis(300));
    std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}
