//! What the benchmarks share: reading a process's memory, CPU time and open files from `/proc`
//! (Linux), a child process stopped when dropped, a free port, and running wrk (`wrk.rs`).

pub mod wrk;

use std::process::{Child, Command};
use std::time::Duration;

/// A child process stopped when dropped: SIGTERM first, so that nginx's master takes its workers
/// down with it (a SIGKILLed master leaves them running, holding the port) and exai-ws drains,
/// then SIGKILL after 3 s.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        for _ in 0..60 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on 127.0.0.1 now (0 if none could be found).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A process's open file descriptors now (the entries of `/proc/PID/fd`; 0 if unreadable).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A process's resident set size now, in KiB (`VmRSS` in `/proc/PID/status`; 0 if unreadable).
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The most a process's resident set has been so far, in KiB (`VmHWM`; 0 if unreadable).
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// A KiB field of `/proc/PID/status` (0 if unreadable).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used so far, in seconds (`/proc/PID/stat`, 100 Hz).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_memory_and_has_used_cpu() {
        let pid = std::process::id();
        assert!(super::rss_kib(pid) > 0);
        let spin: u64 = (0..20_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(spin > 0);
        assert!(super::cpu_seconds(pid) > 0.0);
        assert!(super::open_fds(pid) > 0);
    }
}
