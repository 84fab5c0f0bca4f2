//! A fake upstream: a real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions wire
//! format and Anthropic's Messages format (below `/anthropic`), plain and SSE, and can be scripted
//! to fail. A prompt can ask for a fault or a tool call ([`FakeUpstream::answer_prompts`]).
//!
//! Every test of exai — and the offline quickstart — points a provider's `base_url` at one of
//! these instead of a real vendor. It records every request it receives (path, `Authorization`
//! header, JSON body), answers from a queue of [`FakeReply`]s (echoing the last user message when
//! the queue is empty), and counts replies that were cut short because the client went away — the
//! evidence that cancelling a request really aborts it upstream.
//!
//! [`ProviderRules`] make it refuse, as a given provider does, what that provider's API refuses
//! (a tool without a type, too many tools, an unknown beta, a tool turn without its reasoning).
//!
//! [`RedisServer`] starts a real `redis-server` per test; [`RedisCluster`] a real Redis Cluster.
//! [`StateFileLeases`] takes leases in a state file, for the bench of the shared limits.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use exai_core::testing::{FakeReply, FakeUpstream};
//! let fake = FakeUpstream::start().await?;
//! fake.push(FakeReply::status(429).with_retry_after(1));
//! fake.push(FakeReply::text("hello"));
//! // GLM_BASE_URL = fake.base_url(), GLM_API_KEY = anything
//! # Ok(()) }
//! ```

mod anthropic;
mod leases;
pub mod otlp;
mod prompts;
mod redis;
mod reply;
mod rules;
mod server;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, oneshot};

pub use leases::StateFileLeases;
pub use redis::{RedisCluster, RedisServer};

/// A provider pool of deployments that no call reaches, to measure the choice of a deployment
/// (`benches/gateway_overhead.rs`).
pub struct DeploymentChoice(crate::providers::Pool);

impl DeploymentChoice {
    /// `n` deployments of weight 1 under `strategy`.
    pub async fn new(strategy: crate::config::Strategy, n: usize) -> Result<Self, crate::Error> {
        crate::providers::idle_pool(strategy, &vec![1; n]).await.map(Self)
    }

    /// Orders the deployments for one call, as the attempt loop does; returns how many may
    /// take it.
    pub fn choose(&self) -> usize {
        self.0.order(tokio::time::Instant::now()).0.len()
    }
}
pub use reply::FakeReply;
pub use rules::ProviderRules;

/// The fake's routes: OpenAI's in `server.rs`, Anthropic's in `anthropic.rs`.
fn router(shared: Arc<Shared>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/chat/completions", post(server::chat))
        // A Responses endpoint, for a provider that declares the wire: scripted replies
        // (`FakeReply::raw`) are its answers.
        .route("/v1/responses", post(server::chat))
        .route("/v1/models", get(server::models))
        .route("/anthropic/v1/messages", post(anthropic::messages))
        .route("/anthropic/v1/messages/count_tokens", post(anthropic::count_tokens))
        .with_state(shared)
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Request path (`/v1/chat/completions`).
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `x-api-key` header (Anthropic), if any.
    pub x_api_key: Option<String>,
    /// The `anthropic-version` header, if any.
    pub anthropic_version: Option<String>,
    /// The `anthropic-beta` header, if any.
    pub anthropic_beta: Option<String>,
    /// The JSON body (`Null` for GETs).
    pub body: Value,
    /// The body as it arrived, byte for byte.
    pub raw: bytes::Bytes,
}

impl RecordedRequest {
    /// The `messages` array.
    pub fn messages(&self) -> Vec<Value> {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// The `model` field.
    pub fn model(&self) -> &str {
        self.body.get("model").and_then(Value::as_str).unwrap_or("")
    }

    /// Whether the request asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool).unwrap_or(false)
    }
}

/// State shared by the server's handlers and the test.
#[derive(Default)]
pub(crate) struct Shared {
    pub script: Mutex<VecDeque<FakeReply>>,
    pub requests: Mutex<Vec<RecordedRequest>>,
    pub api_key: Mutex<Option<String>>,
    pub not_recording: std::sync::atomic::AtomicBool,
    pub completed: AtomicUsize,
    pub cut_short: AtomicUsize,
    /// Chat requests accepted, and the most that were open at once.
    pub accepted: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub changed: Notify,
    /// `count_tokens` answers 404.
    pub no_count_tokens: std::sync::atomic::AtomicBool,
    /// Decides replies from the request itself, before the script is consulted.
    pub responder: Mutex<Option<Responder>>,
    /// The provider's rules: a request that breaks one is refused as the provider would.
    pub rules: Mutex<ProviderRules>,
}

/// Picks a reply from a request's JSON body (`None` leaves it to the script).
pub type Responder = Arc<dyn Fn(&Value) -> Option<FakeReply> + Send + Sync>;

/// The fake upstream. Dropping it stops the server.
pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
}

impl FakeUpstream {
    /// Starts a server on 127.0.0.1 with a free port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(0).await
    }

    /// Starts a server on 127.0.0.1:`port` (`0` for a free one) — `exai mock-upstream`.
    pub async fn start_on(port: u16) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(shared.clone());
        // Replies go out in several writes; without NODELAY, Nagle and delayed ACKs add ~40 ms.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            shared,
            _stop: stop,
        })
    }

    /// The base URL to configure as a provider's `base_url` (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The base URL to configure as a provider's `anthropic_base_url`
    /// (`http://127.0.0.1:PORT/anthropic`; it serves `/v1/messages` below it).
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}/anthropic", self.addr)
    }

    /// Answers each request by what it asks (a client that makes its own calls, such as an
    /// agent whose requests are not known in advance); `None` from `respond` falls back to the
    /// script.
    pub fn respond_with(&self, respond: impl Fn(&Value) -> Option<FakeReply> + Send + Sync + 'static) {
        if let Ok(mut r) = self.shared.responder.lock() {
            *r = Some(Arc::new(respond));
        }
    }

    /// Answers what prompts ask for, in the OpenAI or the Anthropic shape: the fault the last
    /// user message names ([`FakeReply::fault_in`]), a call of the client's tool for
    /// `[tool:NAME]`, and text quoting the tool's result once it comes back; the script
    /// otherwise. `exai mock-upstream` answers so.
    pub fn answer_prompts(&self) {
        self.respond_with(prompts::answer);
    }

    /// Refuses, from now on, what a provider refuses ([`ProviderRules::glm`], `kimi`,
    /// `minimax`), with a 400 in its shape.
    pub fn enforce(&self, rules: ProviderRules) {
        if let Ok(mut r) = self.shared.rules.lock() {
            *r = rules;
        }
    }

    /// Answers `/v1/messages/count_tokens` with 404 from now on, as a provider without it does.
    pub fn without_count_tokens(&self) {
        self.shared.no_count_tokens.store(true, Ordering::SeqCst);
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Environment entries that point the named built-in providers (`GLM`, `KIMI`, `MINIMAX`, or
    /// any custom name) at this fake, with a dummy key.
    pub fn env_for(&self, providers: &[&str]) -> HashMap<String, String> {
        let mut env = HashMap::new();
        for p in providers {
            let p = p.to_ascii_uppercase();
            env.insert(format!("{p}_API_KEY"), "test-key".to_string());
            env.insert(format!("{p}_BASE_URL"), self.base_url());
            env.insert(format!("{p}_ANTHROPIC_BASE_URL"), self.anthropic_base_url());
        }
        env
    }

    /// Queues a reply for the next request.
    pub fn push(&self, reply: FakeReply) {
        if let Ok(mut s) = self.shared.script.lock() {
            s.push_back(reply);
        }
    }

    /// Requires `Authorization: Bearer <key>`; others get 401.
    pub fn require_key(&self, key: &str) {
        if let Ok(mut k) = self.shared.api_key.lock() {
            *k = Some(key.to_string());
        }
    }

    /// Stops recording requests (benchmarks send millions).
    pub fn stop_recording(&self) {
        self.shared.not_recording.store(true, Ordering::SeqCst);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Replies delivered in full.
    pub fn completed(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// Replies abandoned because the client went away before the end.
    pub fn cut_short(&self) -> usize {
        self.shared.cut_short.load(Ordering::SeqCst)
    }

    /// The most chat requests that were open at once (accepted and not yet answered in full or
    /// abandoned) — what a limit on requests in flight must bound.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Chat requests open now (accepted, not yet answered in full or abandoned).
    pub fn in_flight(&self) -> usize {
        let shared = &self.shared;
        let accepted = shared.accepted.load(Ordering::SeqCst);
        accepted.saturating_sub(shared.completed.load(Ordering::SeqCst) + shared.cut_short.load(Ordering::SeqCst))
    }

    /// Waits until `check` holds (re-checked on every request and reply), or `timeout` passes.
    pub async fn wait_until(&self, timeout: Duration, check: impl Fn(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if check(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return check(self);
            }
        }
    }
}
