//! Who may talk to the daemon.
//!
//! - The token (`EXAI_WS_TOKEN`), when set, must come as `Authorization: Bearer …`; it is
//!   compared in constant time. `/healthz` and `/readyz` stay open (they reveal no secret).
//! - Browser-originated requests must come from a loopback origin: a web page on another site
//!   cannot drive a local daemon (MCP's DNS-rebinding rule).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::state::AppState;

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": code, "code": code}});
    (status, axum::Json(body)).into_response()
}

/// Whether `headers` carry the expected bearer token.
pub(crate) fn token_ok(headers: &HeaderMap, expected: &str) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

pub(crate) async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.gateway.config().daemon.token
        && !token_ok(request.headers(), expected.expose())
    {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong token: send Authorization: Bearer <EXAI_WS_TOKEN>",
        );
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
    fn tokens_must_match_exactly() {
        let mut h = HeaderMap::new();
        assert!(!token_ok(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            "Bearer s3cret".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(token_ok(&h, "s3cret"));
        assert!(!token_ok(&h, "s3cret2"));
    }
}
