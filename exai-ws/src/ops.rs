//! `/healthz` (the process is alive and serving), `/readyz` (it can do useful work: a provider
//! is configured and memory answers) and `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use exai_core::SharedLimitsStatus;

use crate::state::AppState;

pub(crate) async fn healthz() -> Response {
    axum::Json(json!({"status": "ok", "service": "exai-ws", "version": env!("CARGO_PKG_VERSION")})).into_response()
}

pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let gateway = &state.gateway;
    let mut reasons = Vec::new();
    if gateway.config().ready_providers().next().is_none() {
        reasons.push("no provider configured: set GLM_API_KEY, KIMI_API_KEY or MINIMAX_API_KEY".to_string());
    }
    let memory = gateway.memory_status().await;
    if !memory.reachable {
        reasons.push(format!(
            "memory ({}) unreachable: {}",
            memory.backend,
            memory.error.unwrap_or_default()
        ));
    }
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // Degraded, still ready: with the shared limits' store failing, this daemon serves on its
    // own limits.
    let (limits, through) = (gateway.shared_limits(), gateway.shared_limits_backend());
    let mut body = json!({
        "ready": reasons.is_empty(),
        "reasons": reasons,
        "memory": memory.backend,
        "limits": limits,
        "limits_through": through,
    });
    if limits == SharedLimitsStatus::Degraded {
        let store = through.unwrap_or("the store");
        body["degraded"] = json!([format!(
            "shared limits: {store} is failing; this daemon runs on its local limits"
        )]);
    }
    (status, axum::Json(body)).into_response()
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [("content-type", "text/plain; version=0.0.4")],
            float_counters_typed(handle.render()),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled in this process").into_response(),
    }
}

/// The gateway keeps dollars in gauges that only go up (the facade's counters are integers);
/// Prometheus is told they are counters, so `rate()` and `increase()` apply.
fn float_counters_typed(mut text: String) -> String {
    for name in exai_core::FLOAT_COUNTERS {
        text = text.replace(&format!("# TYPE {name} gauge\n"), &format!("# TYPE {name} counter\n"));
    }
    text
}
