//! The front door: [`Gateway`], [`GatewayBuilder`], [`Session`] and [`ChatStream`].
//!
//! A `Gateway` owns the actors (provider workers, conversation queue, session registry), the
//! limits, memory and the usage ledger, behind an `Arc`: clone it freely. Frontends open one
//! [`Session`] per client; `Gateway::chat` and `Gateway::chat_stream` use a built-in session for
//! embedders that have no notion of clients.
//!
//! - `gateway/session.rs`: [`Session`] and its [`SessionOptions`], [`ChatStream`].
//! - `gateway/rate.rs`: requests per minute per client, shared by every front door.
//! - `gateway/turn.rs`: the path one turn takes (`turn/cached.rs`: a turn the response cache
//!   answered).
//! - `gateway/context.rs`: fitting history into a context window.
//! - `gateway/status.rs`: health and status reports.
//!
//! Cancellation: each request gets a child of its session's token, which is a child of the
//! gateway's. Dropping a `chat` future or a `ChatStream` cancels the request (a drop guard), which
//! aborts the upstream HTTP request and releases its permits. `shutdown` stops new work, waits for
//! in-flight work up to the grace period, then cancels what is left. Dropping the last handle
//! (every `Gateway` clone and every `Session`) without `shutdown` stops the actors too — a drop
//! guard, as mini-redis's `DbDropGuard`.

mod auth_failures;
pub(crate) mod context;
mod pools;
mod rate;
mod session;
mod status;
mod turn;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use pools::Reloaded;
use session::Call;
pub use session::{ChatStream, Session, SessionOptions};
pub use status::{GatewayStatus, MemoryStatus, ModelEntry, SharedLimitsStatus};

use crate::activity::{Activity, ActivityReport, RequestRecord};
use crate::actors::conversation::ConversationQueue;
use crate::actors::limits::Limits;
use crate::actors::session::{SessionCore, Sessions};
use crate::actors::shared::SharedLimits;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::config::MemoryBackend;
use crate::error::Error;
use crate::keys::{Caller, Clock, KeyStore, Keys, system_clock};
use crate::memory::{LocalStore, MemoryStore, RedisStore, SqliteStore, Thread, ThreadSummary, connect_redis};
use crate::providers::ProviderHandle;
use crate::request::{ChatRequest, ChatResponse, Message};
use crate::usage::{DeploymentUsageReport, KeyUsageReport, SharedLedger, UsageLedger, UsageReport};
use rate::ClientRate;

/// Events buffered between a streaming turn and its consumer.
const STREAM_BUFFER: usize = 64;

/// Shared state behind every `Gateway` clone.
struct Inner {
    config: Config,
    catalog: Catalog,
    limits: Limits,
    /// Each provider's deployments, swapped whole on a reload.
    pools: pools::Pools,
    /// The client every provider's calls go through (kept for reloads).
    http: reqwest::Client,
    /// Turns for drawing among an alias's models.
    group_turn: std::sync::atomic::AtomicU64,
    queue: ConversationQueue,
    sessions: Sessions,
    memory: Arc<dyn MemoryStore>,
    usage: UsageLedger,
    root: CancellationToken,
    tracker: TaskTracker,
    closing: AtomicBool,
    default_session: Arc<SessionCore>,
    /// Requests per minute per client, for every session opened with a client.
    rate: ClientRate,
    /// Failed authentications per client address.
    auth_failures: auth_failures::AuthFailures,
    /// API keys: who may call, and each key's limits and spend.
    keys: Keys,
    /// The last requests and the last hour per model, for status pages.
    activity: Activity,
    /// Responses whose stream has ended and whose store write is still under way: a
    /// `previous_response_id` sent the moment the stream ends finds them here. Bounded: new
    /// Responses calls wait while too many are being written.
    unsaved: Arc<crate::engine::Unsaved>,
    /// `count_tokens` answers kept by a hash of the body, so a burst of the same counts costs
    /// one.
    token_counts: crate::engine::CountCache,
    /// Replies of wire calls kept by a hash of the call (`cache.mode = exact`).
    response_cache: crate::engine::ResponseCache,
}

impl Drop for Inner {
    /// The last handle is gone: stop the actors, whose interval tickers would otherwise keep
    /// them (and their tasks) alive after the gateway.
    fn drop(&mut self) {
        self.root.cancel();
        self.keys.stop();
        self.limits.close();
        self.queue.stop();
        self.sessions.stop();
        self.pools.stop();
    }
}

/// The gateway. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

/// Builds a [`Gateway`].
#[derive(Default)]
pub struct GatewayBuilder {
    config: Option<Config>,
    memory: Option<Arc<dyn MemoryStore>>,
    http: Option<reqwest::Client>,
    clock: Option<Clock>,
}

impl GatewayBuilder {
    /// Uses this configuration (default: [`Config::from_env`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Uses this memory store instead of the one the configuration selects.
    pub fn memory(mut self, store: Arc<dyn MemoryStore>) -> Self {
        self.memory = Some(store);
        self
    }

    /// Uses this HTTP client for providers (default: a pooled rustls client).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Reckons key budgets' periods (and tokens per minute) by this wall clock instead of the
    /// system's — for tests of a period's end.
    pub fn clock(mut self, now: impl Fn() -> std::time::SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(move || time::OffsetDateTime::from(now())));
        self
    }

    /// Starts the actors and returns the gateway.
    pub async fn build(self) -> Result<Gateway, Error> {
        let config = match self.config {
            Some(c) => c,
            None => Config::from_env()?,
        };
        let http = match self.http {
            Some(c) => c,
            // No redirects: a chat completion is a POST that a provider answers, never moves; a
            // 3xx is reported with its Location so the base URL can be corrected (and a key is
            // never replayed to another address).
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(10))
                .pool_idle_timeout(Duration::from_secs(90))
                .user_agent(concat!("exai/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?,
        };
        // Shared with the SQLite store's group writes, so `shutdown` waits for them too.
        let tracker = TaskTracker::new();
        let (memory, shared) = match self.memory {
            Some(store) => (store, None),
            None => open_memory(&config, &tracker).await?,
        };
        let pools = pools::Pools::build(&config, &http).await?;
        let root = CancellationToken::new();
        let sessions = Sessions::spawn(config.sessions.idle_timeout, config.limits.session_max_inflight).await?;
        let default_session = sessions.open("embedded", &root, false);
        let shared_limits = open_shared_limits(&config, &shared).await?;
        let keys = open_keys(
            &shared,
            &shared_limits,
            &config,
            self.clock.unwrap_or_else(system_clock),
            tracker.clone(),
        );
        let inner = Inner {
            catalog: Catalog::from_config(&config),
            limits: share_limits(Limits::new(&config), shared_limits, &pools.load()),
            pools,
            http,
            group_turn: std::sync::atomic::AtomicU64::new(0),
            queue: ConversationQueue::spawn(config.sessions.conversation_idle).await?,
            sessions,
            memory,
            usage: UsageLedger::new(shared, tracker.clone()),
            root,
            tracker,
            closing: AtomicBool::new(false),
            default_session,
            rate: ClientRate::new(config.limits.requests_per_minute),
            auth_failures: auth_failures::AuthFailures::new(config.limits.auth_failures_per_minute),
            keys,
            activity: Activity::new(),
            unsaved: Arc::default(),
            token_counts: crate::engine::count_cache(),
            response_cache: crate::engine::ResponseCache::open(&config).await,
            config,
        };
        Ok(Gateway { inner: Arc::new(inner) })
    }
}

impl Gateway {
    /// A builder.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// A gateway configured from the environment and config file.
    pub async fn from_env() -> Result<Self, Error> {
        Self::builder().build().await
    }

    /// A gateway with this configuration.
    pub async fn new(config: Config) -> Result<Self, Error> {
        Self::builder().config(config).build().await
    }

    /// Opens a session for a client of this kind (no rate counted; the configured deadline).
    /// Dropping every clone of it closes it and cancels whatever it still has in flight.
    pub fn session(&self, kind: &str) -> Session {
        self.open_session(SessionOptions::new(kind))
    }

    /// Opens a session with these options: front doors name the client, so its rate counts,
    /// and the caller, so its key's limits apply.
    pub fn open_session(&self, options: SessionOptions) -> Session {
        Session {
            core: self.inner.sessions.open(&options.kind, &self.inner.root, true),
            gateway: self.clone(),
            client: options.client.map(Arc::from),
            deadline: options.deadline.unwrap_or(self.inner.config.limits.call_timeout),
            caller: options.caller,
        }
    }

    /// Who presented `token` (a bearer token, an `x-api-key`, `hello.token`; `None` when none
    /// was sent): the master token (`daemon.token`), a key, or — when keys are not required, no
    /// master token is set and `daemon.host` is loopback — anyone. Every front door calls this and opens its session with the
    /// answer. Fails with [`Error::Unauthorized`] (or [`Error::KeysUnavailable`] while the key
    /// store has never answered).
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Caller, Error> {
        self.inner
            .keys
            .authenticate(
                token,
                self.inner.config.daemon.token.as_ref(),
                self.inner.config.daemon.is_loopback(),
            )
            .await
    }

    /// [`Gateway::authenticate`] for a network client at `address`: past
    /// `limits.auth_failures_per_minute` failures from it, its attempts are refused unread with
    /// [`Error::RateLimited`] until the minute ends.
    pub async fn authenticate_from(&self, address: &str, token: Option<&str>) -> Result<Caller, Error> {
        self.inner.auth_failures.admit(address)?;
        let caller = self.authenticate(token).await;
        // Only a token that was sent and refused counts: a missing one guesses nothing.
        if let (Some(_), Err(Error::Unauthorized { .. })) = (token, &caller) {
            self.inner.auth_failures.failed(address);
        }
        caller
    }

    /// Checks an operator's token (the admin token, say) that a front door compares itself,
    /// under the same per-address limit as [`Gateway::authenticate_from`]: refused unread while
    /// `address` is over its failures, and counted when `valid` is false.
    pub fn check_operator_token(&self, address: &str, valid: impl FnOnce() -> bool) -> Result<bool, Error> {
        self.inner.auth_failures.admit(address)?;
        let ok = valid();
        if !ok {
            self.inner.auth_failures.failed(address);
        }
        Ok(ok)
    }

    /// The gateway's API keys: manage them, see what each spent.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// One reply, through the built-in session.
    pub async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        self.default_session().chat(request).await
    }

    /// A streamed reply, through the built-in session, once the call is admitted.
    pub async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream, Error> {
        self.default_session().chat_stream(request).await
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The model catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The usage ledger.
    pub async fn usage(&self) -> UsageReport {
        self.inner.usage.report().await
    }

    /// The ledger of calls made with keys, per key, provider and model.
    pub async fn usage_by_key(&self) -> KeyUsageReport {
        self.inner.usage.report_by_key().await
    }

    /// The ledger per deployment: the calls each endpoint and key answered or failed, by label
    /// (`glm#1`, `glm#eu`), never by key. A cache hit calls no deployment and is not in it.
    pub async fn usage_by_deployment(&self) -> DeploymentUsageReport {
        self.inner.usage.report_by_deployment().await
    }

    /// The last requests (newest first) and, per provider and model, the last hour: requests,
    /// errors, p50 and p95 latency, minute by minute. This process's only.
    pub fn activity(&self) -> ActivityReport {
        self.inner.activity.report(crate::actors::session::now_ms())
    }

    /// Each request from now on, as it finishes (what a live status page shows).
    pub fn watch_activity(&self) -> tokio::sync::broadcast::Receiver<RequestRecord> {
        self.inner.activity.watch()
    }

    /// A stored conversation.
    pub async fn thread(&self, id: &str) -> Result<Option<Thread>, Error> {
        Ok(self.inner.memory.load(id).await?)
    }

    /// The most recent conversations, newest first.
    pub async fn threads(&self, limit: usize) -> Result<Vec<ThreadSummary>, Error> {
        Ok(self.inner.memory.list(limit).await?)
    }

    /// Stops taking work, lets in-flight requests finish within the configured grace period,
    /// cancels the rest, and stops the actors. Safe to call more than once.
    pub async fn shutdown(&self) {
        self.shutdown_within(self.inner.config.sessions.shutdown_grace).await;
    }

    /// [`Gateway::shutdown`] with an explicit grace period (a stdio server whose client is gone
    /// has little time to lose).
    pub async fn shutdown_within(&self, grace: Duration) {
        if self.inner.closing.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait()).await.is_err() {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "in-flight requests outlived the grace period; cancelling them"
            );
        }
        self.inner.root.cancel();
        self.inner.keys.stop();
        self.inner.limits.close();
        self.inner.queue.stop();
        self.inner.sessions.stop();
        self.inner.pools.stop();
    }

    /// Records messages in a conversation without calling a provider — a workflow tool's
    /// intermediate step — creating the conversation (for `owner`, a key's name) when
    /// `continuation_id` is `None`. Runs in the conversation's queue, so it lands between the
    /// turns before and after it. Another key's conversation is an unknown one. Returns the
    /// conversation id.
    pub(crate) async fn note(
        &self,
        continuation_id: Option<String>,
        tool: Option<String>,
        messages: Vec<Message>,
        files: Vec<String>,
        owner: Option<String>,
    ) -> Result<String, Error> {
        if self.inner.closing.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        let key = continuation_id.clone();
        let inner = self.inner.clone();
        let write = async move {
            let thread = match &continuation_id {
                Some(id) => inner
                    .memory
                    .load(id)
                    .await?
                    .filter(|t| t.belongs_to(owner.as_deref()))
                    .ok_or_else(|| Error::ThreadNotFound(id.clone()))?,
                None => turn::new_thread(tool.clone(), owner),
            };
            let mut turns = Vec::new();
            turn::push_turns(&mut turns, messages, files, tool);
            Ok(turn::save(&inner, thread, turns).await)
        };
        match key {
            None => write.await,
            Some(conversation) => {
                let (tx, rx) = oneshot::channel();
                self.inner.queue.submit(
                    &conversation,
                    Box::pin(async move {
                        let _ = tx.send(write.await);
                    }),
                )?;
                rx.await.unwrap_or(Err(Error::Cancelled))
            }
        }
    }

    /// The limits every call takes its permits from (for the engine).
    pub(crate) fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// A provider's first deployment's worker: its quirks and wires (for the engine).
    pub(crate) fn provider(&self, name: &str) -> Option<ProviderHandle> {
        self.inner.pools.get(name).map(|pool| pool.first().clone())
    }

    /// Orders `plan` by the strategy of the alias over several models that `requested` names,
    /// if it names one (for the engine).
    pub(crate) fn order_group(&self, requested: Option<&str>, plan: &mut [crate::catalog::ModelInfo]) {
        if let Some(group) = crate::routing::group_of(&self.inner.config, requested) {
            let turn = self.inner.group_turn.fetch_add(1, Ordering::Relaxed);
            crate::providers::order_models(group.strategy, plan, |p| self.inner.pools.get(p), turn);
        }
    }

    /// A provider's deployments (for the engine).
    pub(crate) fn pool(&self, name: &str) -> Option<Arc<crate::providers::Pool>> {
        self.inner.pools.get(name)
    }

    /// Reads the configuration again ([`Config::reread`]: its file anew) and applies its
    /// providers' deployments (endpoints, keys, weights, limits) without dropping a call in
    /// flight: a deployment that did not change keeps its worker, circuit and cool-down; calls
    /// already running finish on the deployment they started on. The API keys are reread too.
    /// Other settings take a restart. A configuration that no longer loads changes nothing.
    pub async fn reload(&self) -> Result<Reloaded, Error> {
        let config = self.inner.config.reread()?;
        let report = self.inner.pools.reload(&config, &self.inner.http).await?;
        // A reload puts every deployment back: its rejected key and its cool-downs are
        // forgotten, here and in every process sharing the limits.
        for deployment in self.inner.pools.load().values().flat_map(|p| p.deployments()) {
            deployment.state.restore();
            if let Some(shared) = self.inner.limits.shared() {
                shared.cool(&deployment.scope, Duration::ZERO).await;
            }
        }
        self.inner.keys.reload().await;
        tracing::info!(added = ?report.added, changed = ?report.changed, removed = ?report.removed, "deployments reloaded");
        Ok(report)
    }

    /// Where conversations and stored responses live (for the engine).
    pub(crate) fn store(&self) -> &Arc<dyn MemoryStore> {
        &self.inner.memory
    }

    /// The `count_tokens` answers kept (for the engine).
    pub(crate) fn token_counts(&self) -> &crate::engine::CountCache {
        &self.inner.token_counts
    }

    /// Responses being written to the store (for the engine).
    pub(crate) fn response_cache(&self) -> &crate::engine::ResponseCache {
        &self.inner.response_cache
    }

    pub(crate) fn unsaved_responses(&self) -> &Arc<crate::engine::Unsaved> {
        &self.inner.unsaved
    }

    /// The usage ledger calls are recorded in (for the engine).
    pub(crate) fn ledger(&self) -> &UsageLedger {
        &self.inner.usage
    }

    /// The status page's record of calls (for the engine).
    pub(crate) fn activity_log(&self) -> &Activity {
        &self.inner.activity
    }

    /// A tracker token: shutdown waits for the work holding it.
    pub(crate) fn track(&self) -> tokio_util::task::task_tracker::TaskTrackerToken {
        self.inner.tracker.token()
    }

    /// The built-in session, as a [`Session`]: no rate counted, the configured deadline.
    pub(crate) fn default_session(&self) -> Session {
        Session {
            core: self.inner.default_session.clone(),
            gateway: self.clone(),
            client: None,
            deadline: self.inner.config.limits.call_timeout,
            caller: Caller::default(),
        }
    }

    fn admit(&self, core: &SessionCore) -> Result<(), Error> {
        if self.inner.closing.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        if core.cancel.is_cancelled() {
            return Err(Error::SessionClosed(core.id.clone()));
        }
        core.touch();
        Ok(())
    }

    async fn chat_in(&self, core: &SessionCore, request: ChatRequest, call: Call) -> Result<ChatResponse, Error> {
        let cancel = core.cancel.child_token();
        let _cancel_on_drop = cancel.clone().drop_guard();
        let _tracked = self.inner.tracker.token();
        let (limit, session_id) = (core.limit.clone(), core.id.clone());
        match queue_key(&request) {
            None => turn::run(self.clone(), limit, session_id, request, call, None, cancel).await,
            Some(conversation) => {
                let (tx, rx) = oneshot::channel();
                let gateway = self.clone();
                // In the caller's span (a tool call's), though it runs in the queue's task.
                let job = async move {
                    if cancel.is_cancelled() {
                        return;
                    }
                    let _ = tx.send(turn::run(gateway, limit, session_id, request, call, None, cancel).await);
                };
                self.inner
                    .queue
                    .submit(&conversation, Box::pin(job.instrument(tracing::Span::current())))?;
                rx.await.unwrap_or(Err(Error::Cancelled))
            }
        }
    }

    /// Starts a streamed turn; with a `deadline`, a turn that outlives it ends with
    /// [`Error::DeadlineExceeded`].
    fn stream_in(
        &self,
        core: &SessionCore,
        request: ChatRequest,
        call: Call,
        deadline: Option<Duration>,
    ) -> ChatStream {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let cancel = core.cancel.child_token();
        let guard = Some(cancel.clone().drop_guard());
        let tracked = self.inner.tracker.token();
        let (gateway, limit, session_id) = (self.clone(), core.limit.clone(), core.id.clone());
        let conversation = queue_key(&request);
        let job = async move {
            let _tracked = tracked;
            if cancel.is_cancelled() {
                return;
            }
            let late = tx.clone();
            let turn = turn::run(gateway, limit, session_id, request, call, Some(tx), cancel);
            match deadline {
                None => {
                    let _ = turn.await;
                }
                Some(after) => {
                    if tokio::time::timeout(after, turn).await.is_err() {
                        let _ = late.send(Err(Error::DeadlineExceeded { after })).await;
                    }
                }
            }
        };
        // In the caller's span (a tool call's), though it runs in a task of its own.
        let job = job.instrument(tracing::Span::current());
        match conversation {
            None => {
                tokio::spawn(job);
            }
            Some(conversation) => {
                if let Err(e) = self.inner.queue.submit(&conversation, Box::pin(job)) {
                    return ChatStream::failed(e);
                }
            }
        }
        ChatStream {
            events: rx,
            _cancel_on_drop: guard,
        }
    }
}

/// The keys, in the state store the ledger uses (none without one). Their per-key limits are
/// shared across daemons in Redis, and across the processes of the SQLite file with the shared
/// limits.
fn open_keys(
    shared: &Option<SharedLedger>,
    shared_limits: &Option<Arc<SharedLimits>>,
    config: &Config,
    clock: Clock,
    writes: TaskTracker,
) -> Keys {
    let store = match shared {
        Some(SharedLedger::Sqlite(db)) => Some(KeyStore::Sqlite(db.clone())),
        Some(SharedLedger::Redis(conn, prefix)) => Some(KeyStore::Redis {
            conn: conn.clone(),
            prefix: prefix.clone(),
        }),
        None => None,
    };
    let limits = match &store {
        Some(KeyStore::Redis { conn, prefix }) => {
            Some(Arc::new(SharedLimits::redis(conn.clone(), prefix, config.limits.lease)))
        }
        Some(KeyStore::Sqlite(_)) => shared_limits.clone(),
        None => None,
    };
    Keys::new(store, limits, clock, writes)
}

/// The limits shared with other processes when `limits.shared` is on: through Redis when a
/// Redis URL is set, else through the SQLite state file the memory opened. None without a store
/// to share (`memory.backend = memory`, a memory store given in code, a file that failed to
/// open — the processes then keep their own limits, as the log says).
async fn open_shared_limits(
    config: &Config,
    ledger: &Option<SharedLedger>,
) -> Result<Option<Arc<SharedLimits>>, Error> {
    if !config.limits.shared {
        return Ok(None);
    }
    if let Some(url) = &config.memory.redis_url {
        let conn = connect_redis(url).await?;
        return Ok(Some(Arc::new(SharedLimits::redis(
            conn,
            &config.memory.key_prefix,
            config.limits.lease,
        ))));
    }
    let Some(SharedLedger::Sqlite(db)) = ledger else {
        return Ok(None);
    };
    let (path, lease) = (db.path().to_path_buf(), config.limits.lease);
    let opened = tokio::task::spawn_blocking(move || SharedLimits::sqlite(&path, lease))
        .await
        .map_err(|e| Error::Internal(format!("opening the shared limits: {e}")))?;
    match opened {
        Ok(limits) => Ok(Some(Arc::new(limits))),
        Err(e) => {
            metrics::counter!("exai_shared_limits_errors_total").increment(1);
            tracing::warn!(error = %e, "the limits are this process's own, not shared through the state file");
            Ok(None)
        }
    }
}

/// Shares the global and provider limits through `shared`, and publishes each deployment's
/// circuit as it opens (a cool-down of its scope) so the other processes stop sending too.
fn share_limits(limits: Limits, shared: Option<Arc<SharedLimits>>, pools: &pools::PoolMap) -> Limits {
    let Some(shared) = shared else {
        return limits;
    };
    for deployment in pools.values().flat_map(|p| p.deployments()) {
        // Weak: the gateway owns the shared limits, and dropping it closes their store.
        let (shared, name, opened) = (
            Arc::downgrade(&shared),
            deployment.scope.clone(),
            deployment.handle.circuit_opened(),
        );
        tokio::spawn(async move {
            futures::pin_mut!(opened);
            while let Some(until) = futures::StreamExt::next(&mut opened).await {
                let Some(shared) = shared.upgrade() else { break };
                shared
                    .cool(&name, until.saturating_duration_since(tokio::time::Instant::now()))
                    .await;
            }
        });
    }
    limits.share(shared)
}

/// The memory store the configuration selects, and where the usage ledger is shared. A SQLite
/// file that cannot be opened (read-only, locked, not a database) is reported naming its path,
/// and the process carries on in process memory. The SQLite store writes on `writes`.
async fn open_memory(
    config: &Config,
    writes: &TaskTracker,
) -> Result<(Arc<dyn MemoryStore>, Option<SharedLedger>), Error> {
    let local = || Arc::new(LocalStore::new(config.memory.ttl)) as Arc<dyn MemoryStore>;
    match (config.memory.backend, &config.memory.redis_url) {
        (MemoryBackend::Redis, Some(url)) => {
            let store = Arc::new(RedisStore::new(connect_redis(url).await?, &config.memory)?);
            let shared = SharedLedger::Redis(store.connection(), store.prefix().to_string());
            if let Err(e) = store.ping().await {
                tracing::warn!(error = %e, "redis is not reachable at start; memory runs in process until it is");
            }
            Ok((store, Some(shared)))
        }
        (MemoryBackend::Sqlite, _) => {
            let (path, ttl, writes) = (config.memory.sqlite_path.clone(), config.memory.ttl, writes.clone());
            let opened = tokio::task::spawn_blocking(move || SqliteStore::open_tracked(&path, ttl, writes))
                .await
                .map_err(|e| Error::Internal(format!("opening the SQLite file: {e}")))?;
            match opened {
                Ok(store) => {
                    let shared = SharedLedger::Sqlite(store.db().clone());
                    Ok((Arc::new(store), Some(shared)))
                }
                Err(e) => {
                    metrics::counter!("exai_memory_errors_total", "op" => "open").increment(1);
                    tracing::error!(error = %e, "conversations and usage stay in this process's memory");
                    Ok((local(), None))
                }
            }
        }
        _ => Ok((local(), None)),
    }
}

/// The conversation whose queue a request must wait in: continued, stored turns only. New
/// conversations have no earlier turn to wait for, and ephemeral turns change nothing.
fn queue_key(request: &ChatRequest) -> Option<String> {
    request.continuation_id.clone().filter(|_| !request.ephemeral)
}

#[cfg(all(test, feature = "testing"))]
mod tests;
