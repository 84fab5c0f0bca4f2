//! `/admin/keys`: managing keys over HTTP, as `exai keys` does in a shell — allowed only with
//! `EXAI_ADMIN_TOKEN` (`Authorization: Bearer …`), refused when it is not set.
//!
//! - `GET /admin/keys` lists the keys (never a secret); `GET /admin/keys/{name}` shows one;
//! - `POST /admin/keys` with `{"name": …, "budget_usd": …, "period": …, "rpm": …, "tpm": …,
//!   "max_inflight": …, "models": […], "tools": […], "expires": "YYYY-MM-DD", "cache": true}`
//!   creates one and answers 201 with its `secret`, shown this once (`cache`: the response
//!   cache answers its calls even when `cache.mode` is off);
//! - `PATCH /admin/keys/{name}` changes the limits given (`null` removes one);
//! - `POST /admin/keys/{name}/revoke`, `POST /admin/keys/{name}/rotate` (a new `secret`);
//! - `DELETE /admin/keys/{name}` deletes one (204); keys stay required (`exai keys allow-keyless`,
//!   on the daemon's machine only, is the way back to a daemon without keys);
//! - `POST /admin/reload` reads the configuration file again and applies its providers'
//!   deployments and the keys, without dropping a call in flight (as `SIGHUP` does): 200 with
//!   the deployments added, changed and removed, 400 with the reason when the file no longer
//!   loads (nothing changes then).

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use exai_core::{KeyError, KeyLimits, KeyUpdate};
use serde_json::Value;

use crate::auth::{refuse, token_ok};
use crate::state::AppState;

pub(crate) fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(list).post(create))
        .route("/{name}", get(show).patch(update).delete(delete))
        .route("/{name}/revoke", post(revoke))
        .route("/{name}/rotate", post(rotate))
        .layer(middleware::from_fn_with_state(state, admin_only))
}

/// `POST /admin/reload`, behind the admin token.
pub(crate) fn reload_route(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", post(reload))
        .layer(middleware::from_fn_with_state(state, admin_only))
}

async fn reload(State(state): State<AppState>) -> Response {
    match state.gateway.reload().await {
        Ok(report) => (StatusCode::OK, Json(report)).into_response(),
        Err(exai_core::Error::Config(e)) => refuse(StatusCode::BAD_REQUEST, "invalid_config", &e.to_string()),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, "reload_failed", &e.to_string()),
    }
}

async fn admin_only(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match &state.gateway.config().daemon.admin_token {
        None => refuse(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "key management over HTTP is off: set EXAI_ADMIN_TOKEN (or use `exai keys`)",
        ),
        Some(_) if crate::auth::presented(request.headers()).is_none() => refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_admin_token",
            "send Authorization: Bearer <EXAI_ADMIN_TOKEN>",
        ),
        Some(token) => {
            // A token that was sent and is wrong counts against the address, as for keys.
            let address = crate::client::client_ip(request.extensions()).to_string();
            let valid = || token_ok(request.headers(), token.expose());
            match state.gateway.check_operator_token(&address, valid) {
                Ok(true) => next.run(request).await,
                Ok(false) => refuse(
                    StatusCode::UNAUTHORIZED,
                    "invalid_admin_token",
                    "send Authorization: Bearer <EXAI_ADMIN_TOKEN>",
                ),
                Err(e) => refuse(StatusCode::TOO_MANY_REQUESTS, "rate_limited", &e.to_string()),
            }
        }
    }
}

fn failed(e: &KeyError) -> Response {
    let (status, code) = match e {
        KeyError::Exists(_) => (StatusCode::CONFLICT, "key_exists"),
        KeyError::NotFound(_) => (StatusCode::NOT_FOUND, "key_not_found"),
        KeyError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        KeyError::NoStore => (StatusCode::CONFLICT, "no_state_store"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "key_store_unavailable"),
    };
    refuse(status, code, &e.to_string())
}

fn answer<T: serde::Serialize>(status: StatusCode, result: Result<T, KeyError>) -> Response {
    match result {
        Ok(value) => (status, Json(value)).into_response(),
        Err(e) => failed(&e),
    }
}

fn bad_body(message: String) -> Response {
    refuse(StatusCode::BAD_REQUEST, "invalid_request", &message)
}

async fn list(State(state): State<AppState>) -> Response {
    answer(StatusCode::OK, state.gateway.keys().list().await)
}

async fn show(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    answer(StatusCode::OK, state.gateway.keys().show(&name).await)
}

async fn create(State(state): State<AppState>, Json(mut body): Json<Value>) -> Response {
    let name = match body.as_object_mut().and_then(|o| o.remove("name")) {
        Some(Value::String(name)) => name,
        _ => return bad_body("the body needs \"name\": the key's name".into()),
    };
    let limits: KeyLimits = match serde_json::from_value(body) {
        Ok(l) => l,
        Err(e) => return bad_body(format!("invalid limits: {e}")),
    };
    answer(StatusCode::CREATED, state.gateway.keys().create(&name, limits).await)
}

async fn update(State(state): State<AppState>, Path(name): Path<String>, Json(body): Json<Value>) -> Response {
    let update: KeyUpdate = match serde_json::from_value(body) {
        Ok(u) => u,
        Err(e) => return bad_body(format!("invalid update: {e}")),
    };
    answer(StatusCode::OK, state.gateway.keys().update(&name, update).await)
}

async fn revoke(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    answer(StatusCode::OK, state.gateway.keys().revoke(&name).await)
}

async fn rotate(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    answer(StatusCode::OK, state.gateway.keys().rotate(&name).await)
}

async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match state.gateway.keys().delete(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failed(&e),
    }
}
