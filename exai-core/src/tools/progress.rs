//! Progress of a running tool: each stage (queued behind a limit, calling a provider, falling
//! back, streaming), and a heartbeat so that a long call never looks hung. Frontends turn these
//! into MCP `notifications/progress` or WebSocket `progress` frames.

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One progress report. `progress` increases with every report, as MCP requires.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// A counter that increases with every report.
    pub progress: u64,
    /// What is happening.
    pub message: String,
    /// A piece of the reply text, as it streams (`None` for stage reports). MCP clients get
    /// stage reports only; the EXAI WebSocket protocol relays these as `stream_chunk` frames.
    pub delta: Option<String>,
}

/// Where progress reports go.
pub type ProgressSender = mpsc::UnboundedSender<Progress>;

/// Streaming updates are reported at most this often.
const STREAM_EVERY: Duration = Duration::from_millis(500);

struct State {
    count: u64,
    last_message: String,
    last_stream_report: Option<Instant>,
}

/// Sends reports, numbering them.
pub(crate) struct Reporter {
    sender: Option<ProgressSender>,
    started: Instant,
    state: Mutex<State>,
}

impl Reporter {
    pub fn new(sender: Option<ProgressSender>) -> Self {
        let state = State {
            count: 0,
            last_message: "starting".into(),
            last_stream_report: None,
        };
        Self {
            sender,
            started: Instant::now(),
            state: Mutex::new(state),
        }
    }

    /// Numbers and sends one report; a stage report also becomes the heartbeat's "last stage".
    fn send(&self, message: String, delta: Option<String>, stage: bool) {
        let Some(sender) = &self.sender else { return };
        let Ok(mut state) = self.state.lock() else { return };
        state.count += 1;
        if stage {
            state.last_message = message.clone();
        }
        let _ = sender.send(Progress {
            progress: state.count,
            message,
            delta,
        });
    }

    /// Reports a stage.
    pub fn report(&self, message: impl Into<String>) {
        self.send(message.into(), None, true);
    }

    /// Relays a piece of reply text.
    pub fn text(&self, delta: &str) {
        self.send("streaming".into(), Some(delta.to_string()), false);
    }

    /// Reports streaming, throttled.
    pub fn streaming(&self, message: &str) {
        let due = self.state.lock().is_ok_and(|mut s| {
            let due = s.last_stream_report.is_none_or(|t| t.elapsed() >= STREAM_EVERY);
            if due {
                s.last_stream_report = Some(Instant::now());
            }
            due
        });
        if due {
            self.report(message);
        }
    }

    /// Reports "still working" every `period`, forever (the caller selects against the work).
    pub async fn heartbeat(&self, period: Duration) {
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            ticks.tick().await;
            let last = self.state.lock().map(|s| s.last_message.clone()).unwrap_or_default();
            let elapsed = self.started.elapsed().as_secs();
            self.send(format!("still working ({elapsed} s): {last}"), None, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reports_are_numbered_and_the_heartbeat_repeats_the_last_stage() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let r = Reporter::new(Some(tx));
        r.report("calling glm/glm-4.6");
        let beat = tokio::time::timeout(Duration::from_secs(11), r.heartbeat(Duration::from_secs(5))).await;
        assert!(beat.is_err(), "the heartbeat runs until stopped");
        let got: Vec<Progress> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        let numbers: Vec<u64> = got.iter().map(|p| p.progress).collect();
        assert_eq!(numbers, [1, 2, 3]);
        assert_eq!(got[1].message, "still working (5 s): calling glm/glm-4.6");
        assert_eq!(got[2].message, "still working (10 s): calling glm/glm-4.6");
    }
}
