//! Who is calling: a front door hands [`Keys::authenticate`] the token it was given and gets a
//! [`Caller`] — a key, the master token, or anyone when the gateway is open (no key exists and no
//! master token is set) — and opens its session with it.

use std::sync::Arc;

use super::handle::Keys;
use super::secret;
use crate::config::Secret;
use crate::error::Error;

/// Who is calling: a key (its name), the master token, or anyone (no key exists and no master
/// token is set). Two callers are equal when they are the same key with the same secret (a
/// rotated key is another caller), so front doors can keep a session per caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Caller(pub(super) Who);

/// The caller, as the other files of `keys/` match on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) enum Who {
    #[default]
    Open,
    Master,
    Key {
        name: Arc<str>,
        hash: Arc<str>,
    },
}

impl Caller {
    /// The key's name, when a key is calling.
    pub fn key_name(&self) -> Option<&str> {
        match &self.0 {
            Who::Key { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Whether the master token was presented.
    pub fn is_master(&self) -> bool {
        matches!(self.0, Who::Master)
    }

    fn key(name: &str, hash: &str) -> Self {
        Self(Who::Key {
            name: Arc::from(name),
            hash: Arc::from(hash),
        })
    }
}

impl Keys {
    /// Who presented `token` (`None` when nothing was presented). `master` is the master token;
    /// `loopback`: whether the gateway is reachable only from this machine — beyond it, nobody
    /// is let in without a key or the master token, whatever the keys' state.
    pub(crate) async fn authenticate(
        &self,
        token: Option<&str>,
        master: Option<&Secret>,
        loopback: bool,
    ) -> Result<Caller, Error> {
        if let (Some(t), Some(m)) = (token, master)
            && secret::same(t, m.expose())
        {
            return Ok(Caller(Who::Master));
        }
        self.start().await;
        let view = &self.inner.view;
        if let Some(t) = token.filter(|t| t.starts_with(secret::PREFIX)) {
            let hash = secret::hash(t);
            let mut found = view.by_hash(&hash);
            // A key made a moment ago elsewhere: reread now rather than at the next poll (at
            // most every MISS_REFRESH, so unknown keys cannot hammer the store).
            if found.is_none()
                && let Some(store) = &self.inner.store
                && view.may_refresh_on_miss()
            {
                view.refresh(store, self.now(), false).await;
                found = view.by_hash(&hash);
            }
            if let Some(key) = found.filter(|k| secret::same(&k.hash, &hash)) {
                if let Some(reason) = key.refusal(self.now()) {
                    metrics::counter!("exai_key_refusals_total", "key" => key.name.clone(), "reason" => "revoked_or_expired")
                        .increment(1);
                    // The operator learns why; the caller gets what a wrong key gets.
                    tracing::info!(key = %key.name, %reason, "a revoked or expired key was refused");
                    return Err(invalid_key());
                }
                return Ok(Caller::key(&key.name, &key.hash));
            }
        }
        if !view.is_loaded() {
            return Err(Error::KeysUnavailable(view.last_error()));
        }
        if master.is_none() && !view.keys_required() && loopback {
            return Ok(Caller::default());
        }
        Err(match token {
            None | Some("") => Error::Unauthorized {
                reason: format!("no key. {HOW_TO_GET_IN}"),
            },
            Some(_) => invalid_key(),
        })
    }
}

/// What every refusal tells the caller: where the key goes, what always works, where keys are.
const HOW_TO_GET_IN: &str = "Send an exai key as `Authorization: Bearer exai-sk-…` (or `x-api-key`); \
     the daemon's master token EXAI_WS_TOKEN, when set, always works. On the daemon's machine \
     `exai keys list` shows the keys and `exai keys create NAME` makes one";

/// The answer to a key that does not work — unknown, revoked or expired alike, so that a
/// caller cannot tell a revoked key from a made-up one.
fn invalid_key() -> Error {
    Error::Unauthorized {
        reason: format!("invalid key (unknown, revoked or expired). {HOW_TO_GET_IN}"),
    }
}
