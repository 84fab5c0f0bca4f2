//! The status page at `/ui`: one HTML file served from the binary (no build step, no CDN, no
//! framework; `page.html`), and the documented JSON it reads, which scripts can use too:
//! - `GET /ui/api/status`: providers (health, circuit, in flight against each limit), the last
//!   hour per provider and model (requests, errors, p50, p95, per minute), tokens, cost, cached
//!   calls and USD saved today per model (and per key when keys exist), the response cache
//!   (`cache`: hits, misses, coalesced, bytes held of `max_bytes`, entries, and its Redis level
//!   `shared`: `off`, `ok` or `degraded`), the last 100 requests;
//! - `GET /ui/api/events`: server-sent events, one `request` event per finished request.
//!
//! Behind the admin or master token (`Authorization: Bearer`, or `?token=` since a browser's
//! address bar and `EventSource` cannot send headers). With neither token configured, open to
//! loopback clients only. A key's holder is refused: the page shows every key's spend.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use tokio_stream::wrappers::BroadcastStream;

use crate::state::AppState;

/// The page: HTML, CSS and JS in one file.
const PAGE: &str = include_str!("page.html");

pub(crate) async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

/// Everything the page shows, as one JSON document.
pub(crate) async fn status(State(state): State<AppState>) -> Response {
    let gateway = &state.gateway;
    let limits = gateway.limit_usage();
    let providers: Vec<_> = match gateway.provider_health().await {
        Ok(health) => health
            .into_iter()
            .map(|h| {
                let limit = limits.iter().find(|l| l.scope == h.provider);
                json!({
                    "name": h.provider,
                    "configured": h.configured,
                    "circuit": h.circuit,
                    "consecutive_failures": h.consecutive_failures,
                    "calls": h.calls,
                    "failures": h.failures,
                    "last_error": h.last_error.map(|(message, at_ms)| json!({"message": message, "at_ms": at_ms})),
                    "in_flight": limit.map(|l| l.in_flight),
                    "max_in_flight": limit.map(|l| l.max),
                    "strategy": h.strategy,
                    // Each endpoint and key, by its label: never the key.
                    "deployments": h.deployments,
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let usage = gateway.usage().await;
    let keys = gateway.usage_by_key().await;
    let deployments = gateway.usage_by_deployment().await;
    let cache = gateway.cache_stats().await;
    let body = json!({
        "service": "exai-ws",
        "version": env!("CARGO_PKG_VERSION"),
        "providers": providers,
        "limits": limits,
        "shared_limits": gateway.shared_limits(),
        "cache": cache,
        "activity": gateway.activity(),
        "today": {
            "backend": usage.backend,
            "models": usage.today,
            "keys": keys.today,
            "deployments": deployments.today,
        },
    });
    ([(header::CACHE_CONTROL, "no-cache")], axum::Json(body)).into_response()
}

/// Each finished request as a `request` event, as it finishes; a comment every 15 s keeps
/// proxies from closing the stream.
pub(crate) async fn events(State(state): State<AppState>) -> Response {
    let shutdown = state.shutdown.clone();
    let stream = BroadcastStream::new(state.gateway.watch_activity())
        .filter_map(|record| async move {
            // A watcher that fell behind skips what it missed.
            let record = record.ok()?;
            Event::default().event("request").json_data(record).ok()
        })
        .map(Ok::<_, Infallible>)
        .take_until(async move { shutdown.cancelled().await });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The admin or master token (header or `?token=`), or — with neither configured — a loopback
/// client.
pub(crate) async fn operators(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let daemon = &state.gateway.config().daemon;
    let tokens: Vec<&str> = [&daemon.admin_token, &daemon.token]
        .into_iter()
        .flatten()
        .map(|t| t.expose())
        .collect();
    let presented = crate::auth::presented(request.headers())
        .map(str::to_string)
        .or_else(|| query_token(request.uri().query()));
    let address = crate::client::client_ip(request.extensions());
    let allowed = if tokens.is_empty() {
        address.is_loopback()
    } else if let Some(given) = presented {
        // A token that was sent and is wrong counts against the address, as for keys.
        let valid = || tokens.iter().any(|t| crate::auth::same_secret(&given, t));
        match state.gateway.check_operator_token(&address.to_string(), valid) {
            Ok(allowed) => allowed,
            Err(e) => {
                let body = json!({"error": {"type": "rate_limited", "message": e.to_string()}});
                return (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
            }
        }
    } else {
        false
    };
    if allowed {
        return next.run(request).await;
    }
    let message = if tokens.is_empty() {
        "the status page is open to this machine only; set EXAI_ADMIN_TOKEN to open it to others"
    } else {
        "the status page needs the admin or master token: open /ui?token=…"
    };
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": {"type": "unauthorized", "message": message}})),
    )
        .into_response()
}

/// `token` from a query string (percent-decoded).
fn query_token(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}
