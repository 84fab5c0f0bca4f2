//! Shared helpers for exai-core's integration tests: gateways pointed at fake upstreams, and real
//! `redis-server` processes started per test (on a free port, killed on drop).

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use exai_core::testing::FakeUpstream;
use exai_core::{Config, Gateway};

/// Settings that keep tests quick: short backoff, no long waits.
pub fn fast_env() -> HashMap<String, String> {
    HashMap::from([
        ("EXAI_RETRY_BASE_DELAY_MS".to_string(), "10".to_string()),
        ("EXAI_RETRY_MAX_DELAY_MS".to_string(), "50".to_string()),
        ("EXAI_QUEUE_TIMEOUT_MS".to_string(), "5000".to_string()),
    ])
}

/// A config with `providers` pointed at `fake`, plus `extra` settings.
pub fn config(fake: &FakeUpstream, providers: &[&str], extra: &[(&str, &str)]) -> Config {
    let mut env = fast_env();
    env.extend(fake.env_for(providers));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_parts(&env, None).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// A gateway with `providers` pointed at `fake`.
pub async fn gateway(fake: &FakeUpstream, providers: &[&str], extra: &[(&str, &str)]) -> Gateway {
    Gateway::new(config(fake, providers, extra))
        .await
        .unwrap_or_else(|e| panic!("gateway: {e}"))
}

/// A real redis-server on a free loopback port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one. Panics with a clear message if `redis-server` is not installed: these tests
    /// must not silently skip (scripts/test.sh installs it).
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let mut server = Self { port, child: None };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}); install it (scripts/test.sh does)"));
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
