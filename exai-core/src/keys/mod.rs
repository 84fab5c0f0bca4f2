//! API keys: who may call a shared gateway, with what limits, and what each has spent.
//!
//! A team shares one exai by giving each person or service a key (`exai keys create NAME`). A
//! key's secret (`exai-sk-…`) is shown once; the state store keeps only its SHA-256, its
//! [`KeyLimits`], when it was created and last used, and what it spent per period. Every front
//! door authenticates with [`Gateway::authenticate`](crate::Gateway::authenticate) and opens its
//! session with the [`Caller`] it got; the session then admits each call the same way whichever
//! door it came through (`admit.rs`): revoked or expired keys, the model and tool allow-lists,
//! the budget, tokens and requests per minute, calls in flight.
//!
//! - `types.rs`: the values — [`KeyLimits`], [`KeyUpdate`], a key as stored and as shown
//!   ([`KeyInfo`], [`KeyStatus`], [`CreatedKey`]), [`KeyError`].
//! - `handle.rs`: the [`Keys`] handle — its store, this process's copy, the poll.
//! - `admin.rs`: creating, listing, updating, revoking and rotating keys.
//! - `auth.rs`: who is calling ([`Caller`], `Keys::authenticate`).
//! - `admit.rs`: the checks of one call, and the per-key limiters (shared through Redis when
//!   keys live there).
//! - `meter.rs`: what each call spent and used, added to its key's meters.
//! - `store.rs`: the keys in the SQLite file or in Redis, and their meters.
//! - `view.rs`: this process's copy of the keys and meters, polled every
//!   [`POLL`](handle::POLL) so that a change made anywhere (another daemon, `exai keys` in a shell) applies
//!   everywhere within a second, without reading the store on the hot path.
//! - `period.rs`: budget periods; `secret.rs`: generating and hashing secrets.
//!
//! Once any key exists, a request without a valid key is refused; the master token
//! (`EXAI_WS_TOKEN`) passes every check. With no key and no master token the gateway is open, as
//! it was before keys.

mod admin;
mod admit;
mod auth;
mod handle;
mod meter;
mod period;
mod secret;
mod store;
mod types;
mod view;

pub use auth::Caller;
pub use handle::Keys;
pub use period::Period;
pub use types::{CreatedKey, KeyError, KeyInfo, KeyLimits, KeyStatus, KeyUpdate, parse_date};

pub(crate) use admit::{Ask, KeyPass, narrow_plan};
pub(crate) use handle::{Clock, system_clock};
// The SHA-256 of a text, hex: also what shortens long tool names.
pub(crate) use secret::hash as sha256_hex;
pub(crate) use store::KeyStore;
pub(crate) use types::StoredKey;
