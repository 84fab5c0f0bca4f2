//! `POST /v1/messages/count_tokens`: a Messages request's input tokens, counted by the first
//! planned provider with a Messages endpoint (its client, within the session's deadline), else
//! estimated by the gateway.
//!
//! Claude Code's editor extensions send dozens of counts of the same bodies in their first
//! second. A count is kept (in process, bounded, for [`KEPT_FOR`]) by a hash of the body, the
//! model it resolves to and the caller's key, and identical counts asked at once wait for the
//! first (moka's `try_get_with`): a burst costs one count. Each call is admitted like every
//! call (the client's rate, the key's limits) and charged nothing. An estimate made because the
//! provider failed is not kept, so the next call asks again.

use std::time::Duration;

use bytes::Bytes;

use super::wire_call::{headers, plan, target_model, unreadable};
use crate::error::Error;
use crate::gateway::{Session, context};
use crate::wire::{TokenCount, Wire, WireRequest};

/// How long a count is kept.
pub(crate) const KEPT_FOR: Duration = Duration::from_secs(600);
/// Counts kept at most.
pub(crate) const KEPT_AT_MOST: u64 = 10_000;

/// The counts kept by the gateway.
pub(crate) type CountCache = moka::future::Cache<String, TokenCount>;

/// A new, empty cache of counts.
pub(crate) fn cache() -> CountCache {
    moka::future::Cache::builder()
        .max_capacity(KEPT_AT_MOST)
        .time_to_live(KEPT_FOR)
        .build()
}

/// Counts a Messages request's input tokens: the provider's own count where its endpoint has
/// one, else the gateway's estimate. Admitted like every call, within the session's deadline.
pub(crate) async fn count_tokens(session: &Session, request: WireRequest) -> Result<TokenCount, Error> {
    let gateway = session.gateway();
    let target = target_model(gateway.config(), gateway.catalog(), &request.model);
    let pass = session.admit_call(None, Some(&target)).await?;
    let key = pass.as_ref().map(|p| p.key.clone());
    let owner = session.caller().key_name().unwrap_or_default();
    let mut hashed = Vec::with_capacity(request.raw.len() + target.len() + owner.len() + 2);
    for part in [target.as_bytes(), b"\0", owner.as_bytes(), b"\0", &request.raw[..]] {
        hashed.extend_from_slice(part);
    }
    let cache_key: String = {
        use sha2::Digest;
        use std::fmt::Write;
        sha2::Sha256::digest(&hashed)
            .iter()
            .fold(String::with_capacity(64), |mut out, b| {
                let _ = write!(out, "{b:02x}");
                out
            })
    };
    let counted = gateway
        .token_counts()
        .try_get_with(cache_key, count(session, &request, &target, key.as_deref()))
        .await;
    drop(pass);
    // Err: the estimate, not kept.
    Ok(counted.unwrap_or_else(|estimate| *estimate))
}

/// The provider's count (`Ok`, kept), or the estimate (`Err`, not kept when a provider was
/// asked and failed; kept when no provider counts).
async fn count(
    session: &Session,
    request: &WireRequest,
    target: &str,
    key: Option<&crate::keys::StoredKey>,
) -> Result<TokenCount, TokenCount> {
    let gateway = session.gateway();
    let estimate = TokenCount {
        input_tokens: context::estimate(request.text()),
        from_provider: false,
    };
    let Ok(plan) = plan(gateway, request, None, target, key) else {
        return Err(estimate);
    };
    // Only a Messages endpoint counts tokens; a translated provider gets the estimate.
    let Some((model, handle)) = plan.iter().find_map(|m| {
        let handle = gateway.provider(&m.provider)?;
        handle.client().config.speaks(Wire::Messages).then_some((m, handle))
    }) else {
        return Ok(estimate);
    };
    // Not a relay: `count_tokens` takes the Messages fields but `stream` (and the model).
    let Ok(mut body) = request.body_map() else {
        return Err(estimate);
    };
    body.remove("stream");
    body.insert("model".into(), serde_json::Value::String(model.id.clone()));
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let counted = session
        .within_deadline(async {
            let (response, _) = handle
                .client()
                .send_wire(
                    &model.id,
                    Wire::Messages,
                    "/v1/messages/count_tokens",
                    Bytes::from(body),
                    &headers(request, handle.client()),
                    false,
                )
                .await
                .map_err(Error::from)?;
            let body = response.bytes().await.map_err(|e| Error::from(unreadable(model, e)))?;
            Ok::<_, Error>(
                serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("input_tokens").and_then(serde_json::Value::as_u64)),
            )
        })
        .await;
    match counted {
        Ok(Some(n)) => Ok(TokenCount {
            input_tokens: n,
            from_provider: true,
        }),
        _ => Err(estimate),
    }
}
