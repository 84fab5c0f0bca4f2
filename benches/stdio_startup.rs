//! exai-stdio start-up and idle memory: time from spawn to the `initialize` response, over 50
//! spawns, and the resident set size of an idle server after initialisation.
//!
//! ```sh
//! cargo build --release -p exai-stdio && cargo bench -p exai-benches --bench stdio_startup
//! ```
//! Uses `target/release/exai-stdio` (or `$EXAI_STDIO_BIN`). No provider key or network is needed:
//! a dummy key is set and no call is made.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use exai_benches::rss_kib;

const RUNS: usize = 50;
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;

fn binary() -> PathBuf {
    std::env::var_os("EXAI_STDIO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/exai-stdio"))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets without `--bench`: nothing to measure.
        println!("stdio_startup: run with `cargo bench` to measure");
        return;
    }
    let bin = binary();
    assert!(
        bin.exists(),
        "build it first: cargo build --release -p exai-stdio ({} missing)",
        bin.display()
    );
    let mut times = Vec::with_capacity(RUNS);
    let mut rss = 0;
    for run in 0..RUNS {
        let started = Instant::now();
        let mut child = Command::new(&bin)
            .env("GLM_API_KEY", "bench")
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("stdin"));
        writeln!(stdin, "{INITIALIZE}").unwrap_or_else(|e| panic!("write: {e}"));
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("stdout")));
        stdout.read_line(&mut line).unwrap_or_else(|e| panic!("read: {e}"));
        times.push(started.elapsed());
        assert!(line.contains("\"protocolVersion\""), "unexpected reply: {line}");
        if run == RUNS - 1 {
            writeln!(stdin, r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#)
                .unwrap_or_else(|e| panic!("{e}"));
            std::thread::sleep(Duration::from_secs(1));
            rss = rss_kib(child.id());
        }
        drop(stdin);
        let _ = child.wait();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("exai-stdio spawn → initialize response over {RUNS} runs:");
    println!(
        "  median {:.2} ms, p90 {:.2} ms, min {:.2} ms",
        ms(times[RUNS / 2]),
        ms(times[RUNS * 9 / 10]),
        ms(times[0])
    );
    println!("idle RSS after initialize: {:.1} MB ({rss} KiB)", rss as f64 / 1024.0);
}
