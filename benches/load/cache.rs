//! The response cache's rows of the load harness: what a hit costs against nginx, and the
//! in-process level's memory while it is filled far past `cache.max_bytes`.
//!
//! - **A hit**: a daemon with `cache.mode = exact` asked the plain (and the streamed) question
//!   once, then measured like the other rows — every call after the first is answered from the
//!   cache. Compared with nginx `proxy_pass` of the same reply (requests/s at 64 clients) and
//!   with nginx serving the reply directly (the median at one client).
//! - **The bound**: a daemon with `cache.max_bytes` at [`BOUND_BYTES`] gets a distinct question
//!   per call for the run, each answered by the upstream with a [`BIG_REPLY_BYTES`] reply and
//!   kept; the level's weighed size (`/ui/api/status`) and the process's RSS are sampled every
//!   250 ms. The level must never weigh more than its bound. The same load on a daemon with the
//!   cache off is the control: what the request path alone leaves in the RSS (the allocator
//!   keeps what a burst of 16 KiB replies used), so the difference is what the level holds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exai_benches::rss_kib;
use exai_benches::wrk::{self, WrkReport};
use serde_json::json;

/// `cache.max_bytes` of the daemon filled past it.
pub const BOUND_BYTES: u64 = 16 << 20;

/// The text of each reply that fills it.
pub const BIG_REPLY_BYTES: usize = 16 << 10;

/// The upstream's reply for the fill: a chat completion of [`BIG_REPLY_BYTES`] of text.
pub fn big_completion() -> String {
    let text = "cached words ".repeat(BIG_REPLY_BYTES / 13);
    json!({"id": "chatcmpl-big", "object": "chat.completion", "created": 0, "model": "big",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 4096, "total_tokens": 4104}})
    .to_string()
}

/// A wrk script asking `model` a question no call asked before: each wrk thread numbers its
/// own.
pub fn distinct_script(dir: &Path, model: &str) -> PathBuf {
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
         local threads = 0\n\
         function setup(thread) thread:set(\"id\", threads); threads = threads + 1 end\n\
         local n = 0\n\
         function request()\n  n = n + 1\n  \
           return wrk.format(nil, nil, nil, '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"question ' .. id .. '-' .. n .. '\"}}]}}')\n\
         end\n"
    );
    let path = dir.join("distinct.lua");
    std::fs::write(&path, lua).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// Asks `url` the body of `script`'s question once, so that every call after it is a hit.
pub async fn warm(url: &str, body: &str) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("warming the cache: {e}"));
    let cache = response.headers().get("x-exai-cache").cloned();
    assert!(
        response.status().is_success(),
        "warming the cache: {}",
        response.status()
    );
    let _ = response.bytes().await;
    assert_eq!(cache.as_ref().and_then(|v| v.to_str().ok()), Some("miss"));
}

/// The figures printed for the cache's targets, from the rows of one run.
pub fn print_targets(find: impl Fn(&str) -> Option<(WrkReport, WrkReport)>) {
    if let (Some(hit), Some(nginx), Some(direct)) = (
        find("plain: exai-ws, cache hit"),
        find("plain: nginx proxy_pass"),
        find("plain: direct"),
    ) {
        println!(
            "cache hit, plain: exai-ws answers {:.0} requests/s at {} clients, {:.2}× nginx proxy_pass's {:.0} (target ≥ 1.5×); \
             at 1 client it adds {:.0} µs over nginx serving the reply directly ({:.0} µs; target < 50 µs)",
            hit.0.requests_per_sec,
            super::CLIENTS,
            hit.0.requests_per_sec / nginx.0.requests_per_sec,
            nginx.0.requests_per_sec,
            (hit.1.p50.as_secs_f64() - direct.1.p50.as_secs_f64()) * 1e6,
            direct.1.p50.as_secs_f64() * 1e6,
        );
    }
}

/// What the sampler saw.
#[derive(Default)]
struct Peak {
    bytes: u64,
    entries: u64,
    rss_kib: u64,
    samples: u64,
}

/// The header of the fill's table.
pub fn print_fill_header() {
    println!(
        "\n| {} KiB replies, a distinct question per call, {} clients | replies | weighed size: peak of the samples; at the end | entries: peak; at the end | RSS: before → peak → end |\n|---|---|---|---|---|",
        BIG_REPLY_BYTES >> 10,
        super::CLIENTS,
    );
}

/// Fills the level of the daemon at `port` (pid `pid`) with distinct replies for the run, at
/// the harness's clients, sampling its weighed size and RSS; prints the row named `name`.
pub fn fill(name: &str, port: u16, pid: u32, script: &Path, secs: u64) {
    let status_url = format!("http://127.0.0.1:{port}/ui/api/status");
    // The level's weighed size, entries and bound, from the status page's JSON (open to this
    // machine: the daemon has no admin token).
    let read = |url: &str| -> Option<(u64, u64, u64)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let status: serde_json::Value = runtime.block_on(async { reqwest::get(url).await.ok()?.json().await.ok() })?;
        let cache = &status["cache"];
        Some((
            cache["bytes"].as_u64()?,
            cache["entries"].as_u64()?,
            cache["max_bytes"].as_u64()?,
        ))
    };
    let rss_before = rss_kib(pid);
    let peak = Arc::new(Mutex::new(Peak::default()));
    let running = Arc::new(AtomicU64::new(1));
    let sampler = {
        let (peak, running, url) = (peak.clone(), running.clone(), status_url.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) == 1 {
                let rss = rss_kib(pid);
                if let (Some((bytes, entries, _)), Ok(mut p)) = (read(&url), peak.lock()) {
                    p.bytes = p.bytes.max(bytes);
                    p.entries = p.entries.max(entries);
                    p.rss_kib = p.rss_kib.max(rss);
                    p.samples += 1;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let report = wrk::run(name, &url, script, super::CLIENTS, secs);
    running.store(0, Ordering::Relaxed);
    let _ = sampler.join();
    let (bytes_after, entries_after, max_bytes) = read(&status_url).unwrap_or_default();
    let rss_after = rss_kib(pid);
    let p = peak
        .lock()
        .map(|p| (p.bytes, p.entries, p.rss_kib, p.samples))
        .unwrap_or_default();
    let mb = |kib: u64| kib as f64 / 1024.0;
    let bound = match (p.1.max(entries_after), p.0.max(bytes_after) <= max_bytes) {
        (0, _) => "nothing kept".to_string(),
        (_, true) => format!("never above {:.0} MiB", max_bytes as f64 / 1048576.0),
        (_, false) => format!("ABOVE {:.0} MiB", max_bytes as f64 / 1048576.0),
    };
    println!(
        "| {name} | {} in {secs} s | {:.2} MiB; {:.2} MiB ({} samples: {bound}) | {}; {} | {:.1} → {:.1} → {:.1} MB (+{:.1} MB) |",
        report.requests,
        p.0 as f64 / 1048576.0,
        bytes_after as f64 / 1048576.0,
        p.3,
        p.1,
        entries_after,
        mb(rss_before),
        mb(p.2.max(rss_after)),
        mb(rss_after),
        mb(p.2.max(rss_after).saturating_sub(rss_before)),
    );
}
