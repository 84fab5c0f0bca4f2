//! Running wrk — the load generator a user would compare with — and reading its report.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkReport {
    /// Completed requests per second.
    pub requests_per_sec: f64,
    /// Completed requests.
    pub requests: u64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Answers that were not 2xx (they make the run fail).
    pub non_2xx: u64,
    /// Connect, read, write errors and timeouts (they make the run fail).
    pub socket_errors: u64,
}

/// A Lua script that makes wrk POST `body` as JSON (with `headers`).
pub fn post_script(dir: &Path, name: &str, body: &str, headers: &[(&str, &str)]) -> std::path::PathBuf {
    let mut lua = format!(
        "wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
    );
    for (k, v) in headers {
        lua.push_str(&format!("wrk.headers[\"{k}\"] = \"{v}\"\n"));
    }
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, lua).unwrap_or_else(|e| panic!("{e}"));
    path
}

fn duration_of(text: &str) -> Duration {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((text, ""), |at| text.split_at(at));
    let n: f64 = number.parse().unwrap_or(0.0);
    Duration::from_secs_f64(match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => 0.0,
    })
}

/// Reads wrk's text report.
pub fn parse(report: &str) -> WrkReport {
    let mut r = WrkReport::default();
    for line in report.lines().map(str::trim) {
        let field = |prefix: &str| line.strip_prefix(prefix).map(str::trim);
        if let Some(v) = field("Requests/sec:") {
            r.requests_per_sec = v.parse().unwrap_or(0.0);
        } else if let Some(v) = field("50%") {
            r.p50 = duration_of(v);
        } else if let Some(v) = field("99%") {
            r.p99 = duration_of(v);
        } else if let Some(v) = field("Non-2xx or 3xx responses:") {
            r.non_2xx = v.parse().unwrap_or(0);
        } else if let Some(v) = field("Socket errors:") {
            r.socket_errors = v
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        } else if line.contains("requests in") {
            r.requests = line.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        }
    }
    r
}

/// Runs wrk with `connections` clients for `secs` against `url`, POSTing per `script`. Any
/// non-2xx answer or socket error fails the run (a panic naming the row).
pub fn run(name: &str, url: &str, script: &Path, connections: usize, secs: u64) -> WrkReport {
    let threads = connections.clamp(1, 2);
    let out = Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{secs}s"),
            "--timeout",
            "60s",
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("wrk (run scripts/bench-load.sh, which installs it): {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let report = parse(&text);
    assert!(
        report.non_2xx == 0 && report.socket_errors == 0 && report.requests > 0,
        "{name}: every answer must be 2xx — {report:?}\n{text}"
    );
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrk_report_is_read() {
        let text = "Running 2s test @ http://127.0.0.1:1/\n  2 threads and 64 connections\n\
            Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   1.20ms  300.00us   9.00ms   80.00%\n\
          Latency Distribution\n     50%    1.10ms\n     75%    1.30ms\n     90%    1.60ms\n     99%  850.00us\n\
          43210 requests in 2.00s, 10.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n\
          Non-2xx or 3xx responses: 5\nRequests/sec:  21605.00\nTransfer/sec:      5.00MB\n";
        let r = parse(text);
        assert_eq!((r.requests, r.non_2xx, r.socket_errors), (43210, 5, 3));
        assert_eq!(r.p50, Duration::from_micros(1100));
        assert_eq!(r.p99, Duration::from_micros(850));
        assert!((r.requests_per_sec - 21605.0).abs() < 1e-6);
    }
}
