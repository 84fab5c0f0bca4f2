//! Headless Chromium (Debian's `chromium`, installed by scripts/setup.sh), driven over the Chrome
//! DevTools Protocol on a WebSocket: navigate, evaluate JavaScript, resize, take a screenshot.
//! The few CDP calls a page test needs, over tokio-tungstenite (already here for the WebSocket
//! tests), rather than a CDP client crate that would weigh on every build.

use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

use super::ws::Ws;

/// A headless Chromium and one page of it; killed when dropped.
pub struct Browser {
    _child: Child,
    page: Ws,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium with an empty profile and connects to its first page.
    pub async fn start() -> Self {
        let profile = std::env::temp_dir().join(format!("exai-chromium-{}-{}", std::process::id(), unique_suffix()));
        let mut child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("chromium (scripts/setup.sh installs it): {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("stderr"));
        let mut lines = BufReader::new(stderr).lines();
        let browser_ws = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    return url.trim().to_string();
                }
            }
            panic!("chromium exited without a DevTools address");
        })
        .await
        .unwrap_or_else(|_| panic!("chromium did not start within 30 s"));
        // Keep draining its stderr so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = browser_ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let targets: Value = reqwest::get(format!("http://{http}/json/list"))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or_default();
        let page_ws = targets
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page target: {targets}"))
            .to_string();
        let (page, _) = tokio_tungstenite::connect_async(page_ws)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Self {
            _child: child,
            page,
            next_id: 0,
        }
    }

    /// Sends a CDP command and returns its `result` (events in between are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let frame = json!({"id": id, "method": method, "params": params});
        self.page
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.page.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer"));
            let Some(Ok(Message::Text(text))) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(&text).unwrap_or_default();
            if value["id"] == id {
                assert!(value["error"].is_null(), "{method}: {value}");
                return value["result"].clone();
            }
        }
    }

    /// Opens `url` in the page.
    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
    }

    /// The value of a JavaScript expression in the page.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is `true`; how long that took, or `None` after `within`.
    pub async fn until(&mut self, expression: &str, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.eval(expression).await == Value::Bool(true) {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Sets the viewport (a phone is 390 px wide).
    pub async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    /// A PNG of the page as it is now.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
