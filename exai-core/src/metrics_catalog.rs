//! What the gateway's metrics mean, for whoever exports them: one `# HELP` text per metric, the
//! histogram buckets its durations need, and which `_total` series are float counters.
//!
//! The gateway records through the `metrics` facade; a front door that serves `/metrics`
//! installs the Prometheus exporter, calls [`describe_metrics`] once the recorder is in place,
//! sets [`DURATION_BUCKETS`] on every `*_seconds` series (so they are histograms, which add up
//! across daemons, not summaries), and types [`FLOAT_COUNTERS`] as counters: the facade's
//! counters are integers, so dollars are kept in gauges that only ever go up.

/// Bucket bounds, in seconds, for every duration: an LLM call takes from a few milliseconds (a
/// cached or refused call) to minutes (a long reasoning stream), so 5 ms to 10 min.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Monotonic float series recorded as gauges (the facade's counters are integers): exporters
/// type them `counter`.
pub const FLOAT_COUNTERS: &[&str] = &[
    "exai_cost_usd_total",
    "exai_key_cost_usd_total",
    "exai_cache_saved_usd_total",
];

/// Registers the `# HELP` text of every metric the gateway records. Call it after installing the
/// recorder (descriptions go to the recorder in place); calling it twice is harmless.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "exai_deployment_inflight",
        "Calls in flight at each deployment (a provider's endpoint and key, by label)."
    );
    describe_counter!(
        "exai_deployment_calls_total",
        "Calls sent to each deployment, by provider and deployment label."
    );
    describe_counter!(
        "exai_deployment_errors_total",
        "Calls that failed at each deployment, by provider and deployment label."
    );
    describe_counter!(
        "exai_deployment_cooldowns_total",
        "Times a deployment was cooled (a 429) or taken out (a rejected key)."
    );
    describe_histogram!(
        "exai_deployment_ttfb_seconds",
        "Time to first byte at each deployment (the whole reply for a plain call)."
    );
    describe_counter!(
        "exai_cache_hits_total",
        "Calls answered from the response cache, by front door (a tool's name for a gateway turn)."
    );
    describe_counter!(
        "exai_cache_misses_total",
        "Calls the response cache had no reply for, sent to a provider, by front door."
    );
    describe_counter!(
        "exai_coalesced_total",
        "Wire calls that followed an identical call already in flight instead of calling a provider."
    );
    describe_counter!(
        "exai_cache_redis_errors_total",
        "Operations of the response cache's Redis level that failed or timed out, by operation (the call went on without it)."
    );
    describe_gauge!(
        "exai_cache_bytes",
        "Bytes held by the in-process response cache (never above cache.max_bytes)."
    );
    describe_gauge!(
        "exai_cache_saved_usd_total",
        "What cache hits would have cost at the catalog's prices, by provider and model (a counter)."
    );
    describe_counter!(
        "exai_requests_total",
        "Provider calls finished, by provider, model and status (ok, or the failure's kind)."
    );
    describe_histogram!(
        "exai_request_duration_seconds",
        "Time from the gateway taking a call to its last byte, by provider."
    );
    describe_counter!(
        "exai_tokens_total",
        "Tokens the providers reported, by provider, model and direction (input, output)."
    );
    describe_gauge!(
        "exai_cost_usd_total",
        "Estimated cost in US dollars from the catalog's prices, by provider and model (a counter)."
    );
    describe_counter!(
        "exai_provider_retries_total",
        "Provider attempts retried, by provider and reason (429, 5xx, timeout, connection)."
    );
    describe_gauge!(
        "exai_inflight",
        "Calls holding a concurrency slot now, by scope (global, provider) and name."
    );
    describe_histogram!(
        "exai_queue_wait_seconds",
        "Time a call waited for a concurrency slot, by scope (request, provider)."
    );
    describe_counter!(
        "exai_over_capacity_total",
        "Calls refused because a limit stayed full past the queue timeout, by scope."
    );
    describe_gauge!("exai_sessions", "Sessions open now (one per connected client).");
    describe_counter!(
        "exai_memory_errors_total",
        "Failed reads or writes of the state store (conversations, ledger, keys), by operation."
    );
    describe_counter!(
        "exai_shared_limits_errors_total",
        "Redis failures of the shared limits; the daemon ran on its local limits meanwhile."
    );
    describe_counter!(
        "exai_key_requests_total",
        "Calls made with an API key, by key name and status."
    );
    describe_counter!(
        "exai_key_tokens_total",
        "Tokens used with an API key, by key name and direction."
    );
    describe_gauge!(
        "exai_key_cost_usd_total",
        "Estimated cost in US dollars spent with an API key, by key name (a counter)."
    );
    describe_counter!(
        "exai_key_refusals_total",
        "Calls an API key was refused, by key name and reason (budget, rpm, tpm, model, tool, …)."
    );
    describe_counter!(
        "exai_auth_failures_total",
        "Authentications that failed (no, unknown, revoked or expired key) from network clients."
    );
    describe_counter!(
        "exai_auth_throttled_total",
        "Authentication attempts refused unread: their address was over limits.auth_failures_per_minute."
    );
}
