//! The gateway's moving parts.
//!
//! - `session.rs`: the session registry actor (one session per client, idle expiry).
//! - `conversation.rs`: the conversation queue — one actor per active conversation runs its
//!   turns strictly in order; different conversations run in parallel; idle ones are evicted.
//! - `limits.rs`: the semaphore manager (global, per-provider, per-session permits), and
//!   `shared/`: the same limits shared by every process on one store — Redis, or the SQLite
//!   state file of one machine (leases, `rpm`, cool-downs).
//!
//! Provider workers live with the providers (`providers/worker.rs`). Every request/reply
//! exchange with an actor goes through [`ask`], which maps ractor's send and timeout failures into
//! [`Error`] in one place.

pub(crate) mod conversation;
pub(crate) mod limits;
pub(crate) mod session;
pub(crate) mod shared;

use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

use crate::error::Error;

/// How long an actor may take to answer a question about its state.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks `actor` something and waits for the reply.
pub(crate) async fn ask<M, R>(
    actor: &ActorRef<M>,
    build: impl FnOnce(RpcReplyPort<R>) -> M,
    what: &str,
) -> Result<R, Error>
where
    M: Message,
    R: Send + 'static,
{
    match actor.call(build, Some(ASK_TIMEOUT)).await {
        Ok(CallResult::Success(reply)) => Ok(reply),
        Ok(CallResult::Timeout) => Err(Error::Internal(format!("{what} did not answer within {ASK_TIMEOUT:?}"))),
        Ok(CallResult::SenderError) => Err(Error::Internal(format!("{what} dropped the request"))),
        Err(_) => Err(Error::Internal(format!("{what} is not running"))),
    }
}
