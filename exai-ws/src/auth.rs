//! Who may talk to the daemon.
//!
//! - Every protected route authenticates its caller with the core
//!   ([`exai_core::Gateway::authenticate`]): a key (`exai-sk-…`) or the master token
//!   (`EXAI_WS_TOKEN`), sent as `Authorization: Bearer …` or `x-api-key: …` (what Anthropic's
//!   clients send). The [`Caller`] it answers goes into the request's extensions; the routes open
//!   their sessions with it, so the key's limits apply in the core. Once a key exists, a request
//!   without a valid one is refused with 401, in the protocol of the front door the layer
//!   guards (`authenticate::<E>`, one instance per route group in `lib.rs`). `/healthz` and
//!   `/readyz` stay open (they reveal no secret); `/metrics` is for the admin or master token
//!   (or anyone while the daemon is open).
//! - `/admin/keys` takes only `EXAI_ADMIN_TOKEN` (`admin.rs`).
//! - Browser-originated requests must come from a loopback origin: a web page on another site
//!   cannot drive a local daemon (MCP's DNS-rebinding rule).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use exai_core::{Caller, Error, ErrorClass};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::failure::{DoorError, Failure};
use crate::state::AppState;

/// A refusal of the daemon's own routes (`/metrics`, `/admin/keys`, a foreign `Origin`):
/// `{"error": {message, type, code}}`, the type being the code.
pub(crate) fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": code, "code": code}});
    (status, axum::Json(body)).into_response()
}

/// The token a request presents: `Authorization: Bearer …`, or `x-api-key`.
pub(crate) fn presented(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// Whether `headers` carry `expected`, compared in constant time.
pub(crate) fn token_ok(headers: &HeaderMap, expected: &str) -> bool {
    same_secret(presented(headers).unwrap_or(""), expected)
}

/// Whether `given` is `expected`, compared in constant time.
pub(crate) fn same_secret(given: &str, expected: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// `/metrics`' refusal of a caller that is not an operator, as JSON with 401 (503 while the
/// keys cannot be read).
fn unauthorized(error: &Error) -> Response {
    // The core's one classification decides the status; only the code is this route's.
    let class = error.class();
    let code = match class {
        ErrorClass::KeysUnavailable => "keys_unavailable",
        ErrorClass::RateLimited => "rate_limited",
        _ => "invalid_api_key",
    };
    let status = StatusCode::from_u16(class.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    refuse(status, code, &error.to_string())
}

/// Authenticates the request and hands its [`Caller`] to the route; a refusal is `E`, the
/// error of the front door this layer guards (`authenticate::<OpenAiError>`, …).
pub(crate) async fn authenticate<E: DoorError>(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let address = crate::client::client_ip(request.extensions()).to_string();
    match state
        .gateway
        .authenticate_from(&address, presented(request.headers()))
        .await
    {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => E::from(Failure::from(e)).into_response(),
    }
}

/// The caller the `authenticate` layer found (anyone, for a router used without it).
pub(crate) fn caller_of(extensions: &axum::http::Extensions) -> Caller {
    extensions.get::<Caller>().cloned().unwrap_or_default()
}

/// `/metrics` shows every key's name and spend: for the admin or master token, or anyone while
/// the daemon is open — not for a key's holder.
pub(crate) async fn operators_only(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let admin = state
        .gateway
        .config()
        .daemon
        .admin_token
        .as_ref()
        .is_some_and(|t| token_ok(request.headers(), t.expose()));
    if !admin {
        let address = crate::client::client_ip(request.extensions()).to_string();
        match state
            .gateway
            .authenticate_from(&address, presented(request.headers()))
            .await
        {
            Err(e) => return unauthorized(&e),
            Ok(caller) if caller.key_name().is_some() => {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "/metrics is for the admin or master token, not for a key",
                );
            }
            Ok(_) => {}
        }
    }
    next.run(request).await
}

fn loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| &h[1..]).unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

pub(crate) async fn check_origin(request: Request, next: Next) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && !loopback_origin(origin)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            &format!("requests from origin {origin} are not accepted"),
        );
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_origins_pass() {
        for ok in ["http://localhost:3000", "http://127.0.0.1", "https://[::1]:8079/x"] {
            assert!(loopback_origin(ok), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "http://127.0.0.1.evil.example",
            "null",
            "http://localhost.evil:80",
        ] {
            assert!(!loopback_origin(bad), "{bad}");
        }
    }

    #[test]
    fn tokens_must_match_exactly_and_come_as_bearer_or_x_api_key() {
        let mut h = HeaderMap::new();
        assert!(!token_ok(&h, "s3cret"));
        h.insert("x-api-key", "s3cret".parse().unwrap_or_else(|_| unreachable!()));
        assert!(token_ok(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            "Bearer s3cret2".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(!token_ok(&h, "s3cret"), "the bearer token comes first");
        assert!(token_ok(&h, "s3cret2"));
    }
}
