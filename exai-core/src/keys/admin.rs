//! Managing keys (`exai keys`, the admin API): create, list, show, update, revoke, rotate and
//! delete — and `allow_keyless`, the one way back to a gateway that takes no key,
//! each written to the store and seen by this process at once (others at their next poll), and
//! a key as shown, with what it spent ([`KeyInfo`]).

use time::OffsetDateTime;

use super::auth::{Caller, Who};
use super::handle::Keys;
use super::store::Meters;
use super::types::{CreatedKey, KeyError, KeyInfo, KeyLimits, KeyStatus, KeyUpdate, StoredKey};
use super::{period, secret, view};

/// A key name is 1 to 64 letters, digits, `-`, `_`, `.` or `@`, starting with a letter or digit.
fn check_name(name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::Invalid(format!(
            "'{name}' is not a key name: 1 to 64 letters, digits, '-', '_', '.' or '@', starting with a letter or digit"
        )))
    }
}

/// A budget is a finite positive number; a rate or a number in flight is at least 1.
fn check_limits(limits: &KeyLimits) -> Result<(), KeyError> {
    if limits.budget_usd.is_some_and(|b| !b.is_finite() || b < 0.0) {
        return Err(KeyError::Invalid("the budget must be a positive number of USD".into()));
    }
    for (what, zero) in [
        ("rpm", limits.rpm == Some(0)),
        ("tpm", limits.tpm == Some(0)),
        ("max-inflight", limits.max_inflight == Some(0)),
    ] {
        if zero {
            return Err(KeyError::Invalid(format!(
                "{what} must be at least 1 (revoke the key to refuse it everything)"
            )));
        }
    }
    Ok(())
}

impl Keys {
    /// Creates a key; its secret is in the answer and nowhere else.
    pub async fn create(&self, name: &str, limits: KeyLimits) -> Result<CreatedKey, KeyError> {
        check_name(name)?;
        check_limits(&limits)?;
        let secret = secret::generate().map_err(|e| KeyError::Store(format!("no randomness: {e}")))?;
        let key = StoredKey {
            name: name.to_string(),
            hash: secret::hash(&secret),
            limits,
            created_ms: self.now().unix_timestamp() * 1000,
            revoked_ms: None,
            last_used_ms: None,
        };
        self.store()?.insert(&key).await?;
        self.changed().await;
        Ok(CreatedKey {
            info: self.describe(&key, &Default::default()),
            secret,
        })
    }

    /// Every key, by name (never a secret).
    pub async fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        let store = self.store()?;
        let loaded = store.load().await?;
        let meters = store.meters(view::meter_ids(self.now())).await?;
        Ok(loaded.keys.iter().map(|k| self.describe(k, &meters)).collect())
    }

    /// One key.
    pub async fn show(&self, name: &str) -> Result<KeyInfo, KeyError> {
        self.list()
            .await?
            .into_iter()
            .find(|k| k.name == name)
            .ok_or_else(|| KeyError::NotFound(name.to_string()))
    }

    async fn stored(&self, name: &str) -> Result<StoredKey, KeyError> {
        self.store()?
            .load()
            .await?
            .keys
            .into_iter()
            .find(|k| k.name == name)
            .ok_or_else(|| KeyError::NotFound(name.to_string()))
    }

    /// Changes a key's limits; every process applies them within a second.
    pub async fn update(&self, name: &str, update: KeyUpdate) -> Result<KeyInfo, KeyError> {
        let mut key = self.stored(name).await?;
        update.apply(&mut key.limits);
        check_limits(&key.limits)?;
        self.store()?.replace(&key).await?;
        self.changed().await;
        self.show(name).await
    }

    /// Revokes a key: refused everywhere within a second. Its record (and what it spent) stays.
    pub async fn revoke(&self, name: &str) -> Result<KeyInfo, KeyError> {
        let mut key = self.stored(name).await?;
        if key.revoked_ms.is_none() {
            key.revoked_ms = Some(self.now().unix_timestamp() * 1000);
            self.store()?.replace(&key).await?;
            self.changed().await;
        }
        self.show(name).await
    }

    /// Gives a key a new secret (the old one stops working within a second); its limits and
    /// spend stay.
    pub async fn rotate(&self, name: &str) -> Result<CreatedKey, KeyError> {
        let mut key = self.stored(name).await?;
        if key.revoked_ms.is_some() {
            return Err(KeyError::Invalid(format!(
                "key {name} is revoked; create a new key instead"
            )));
        }
        let secret = secret::generate().map_err(|e| KeyError::Store(format!("no randomness: {e}")))?;
        key.hash = secret::hash(&secret);
        self.store()?.replace(&key).await?;
        self.changed().await;
        Ok(CreatedKey {
            info: self.show(name).await?,
            secret,
        })
    }

    /// Deletes a key: refused everywhere within a second, its record and meters gone (the usage
    /// ledger keeps its calls), its name free again. Keys stay required: deleting the last key
    /// does not open the gateway (see [`Keys::allow_keyless`]).
    pub async fn delete(&self, name: &str) -> Result<(), KeyError> {
        if !self.store()?.delete(name, view::meter_ids(self.now())).await? {
            return Err(KeyError::NotFound(name.to_string()));
        }
        self.changed().await;
        Ok(())
    }

    /// Stops requiring keys, once none is left: a gateway on loopback without a master token
    /// then serves anyone on this machine again (a gateway beyond loopback never does).
    pub async fn allow_keyless(&self) -> Result<(), KeyError> {
        self.store()?.allow_keyless().await?;
        self.changed().await;
        Ok(())
    }

    /// Whether callers need a key (or the master token): a key exists, or one was made or
    /// deleted since the last [`Keys::allow_keyless`].
    pub async fn required(&self) -> Result<bool, KeyError> {
        let loaded = self.store()?.load().await?;
        Ok(loaded.required || !loaded.keys.is_empty())
    }

    /// After a change made here: this process sees it at once (others at their next poll).
    async fn changed(&self) {
        if self.inner.view.is_started()
            && let Some(store) = &self.inner.store
        {
            self.inner.view.refresh(store, self.now(), true).await;
        }
    }

    /// A key as shown, with its meters.
    fn describe(&self, key: &StoredKey, meters: &Meters) -> KeyInfo {
        let now = self.now();
        let mine = meters.get(&key.name);
        let meter = |id: String| mine.and_then(|m| m.get(&id)).copied().unwrap_or_default();
        let spent = meter(key.limits.period.id(now)).cost_usd;
        let status = match key.refusal(now) {
            None => KeyStatus::Active,
            Some(_) if key.revoked_ms.is_some() => KeyStatus::Revoked,
            Some(_) => KeyStatus::Expired,
        };
        let at = |ms: i64| {
            OffsetDateTime::from_unix_timestamp(ms / 1000)
                .map(period::rfc3339)
                .unwrap_or_default()
        };
        KeyInfo {
            name: key.name.clone(),
            status,
            limits: key.limits.clone(),
            created: at(key.created_ms),
            last_used: key.last_used_ms.map(at),
            revoked: key.revoked_ms.map(at),
            spent_usd: spent,
            remaining_usd: key.limits.budget_usd.map(|b| (b - spent).max(0.0)),
            period_resets: key.limits.period.resets_at(now).map(period::rfc3339),
            tokens_this_minute: meter(period::minute_id(now)).tokens,
        }
    }

    /// The caller's key as it stands now (for the `status` tool).
    pub(crate) fn info(&self, caller: &Caller) -> Option<KeyInfo> {
        let Who::Key { name, .. } = &caller.0 else {
            return None;
        };
        let (key, meters) = self.inner.view.key_and_meters(name)?;
        Some(self.describe(&key, &meters))
    }
}
