//! MiniMax M2 quirks.
//!
//! - M2 always reasons. With `reasoning_split: true` the reasoning comes in
//!   `reasoning_details`; servers that ignore the flag inline it in `<think>` tags, which the
//!   shared think-tag splitter separates.
//! - Temperature must lie in (0, 1]: 0 is rejected, so it is raised to 0.01.
//! - Errors can arrive with HTTP 200 in `base_resp.status_code` (1004 bad key, 1002/1039 rate
//!   limit, 1008 no balance).
//! - It wants the whole previous reply back, thinking included: relayed Messages keep their
//!   thinking blocks, translated history carries `reasoning_content`; no `anthropic-beta` is
//!   forwarded.

use serde_json::{Value, json};

use super::openai_wire::{ChatBody, InBand};
use super::{ProviderCall, Quirks};
use crate::error::ProviderErrorKind;
use crate::wire::Wire;

/// The temperatures the endpoint accepts.
const TEMPERATURE: (f32, f32) = (0.01, 1.0);

/// MiniMax's adjustments.
pub(crate) struct Minimax;

impl Quirks for Minimax {
    fn takes_reasoning_back(&self) -> bool {
        true
    }

    /// MiniMax's Anthropic endpoint documents no beta: none is forwarded.
    fn anthropic_betas(&self) -> Option<&'static [&'static str]> {
        Some(&[])
    }

    fn temperature_range(&self) -> Option<(f32, f32)> {
        Some(TEMPERATURE)
    }

    /// Its chat replies carry reasoning in `<think>` tags, split out by the gateway: chat
    /// requests are read into the gateway's own call, not relayed. Messages are relayed.
    fn relays(&self, wire: Wire) -> bool {
        wire != Wire::Chat
    }

    fn shape(&self, _call: &ProviderCall, body: &mut ChatBody) {
        body.extra.insert("reasoning_split".into(), json!(true));
    }

    fn splits_think_tags(&self) -> bool {
        true
    }

    fn error_in_body(&self, reply: &InBand<'_>) -> Option<ProviderErrorKind> {
        let base_resp = reply.base_resp?;
        let code = base_resp.get("status_code")?.as_i64()?;
        let message = base_resp
            .get("status_msg")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match code {
            0 => None,
            1004 | 2049 => Some(ProviderErrorKind::Auth {
                status: 401,
                key_source: "MINIMAX_API_KEY".into(),
                message,
            }),
            1002 | 1039 => Some(ProviderErrorKind::RateLimited {
                retry_after: None,
                message,
            }),
            1008 => Some(ProviderErrorKind::InvalidRequest {
                status: 402,
                message: format!("the MiniMax account has no balance left: {message}"),
            }),
            1000 | 1001 | 1013 => Some(ProviderErrorKind::Transient { status: None, message }),
            _ => Some(ProviderErrorKind::InvalidRequest {
                status: 400,
                message: format!("code {code}: {message}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::tests::call_for;

    #[test]
    fn zero_temperature_is_raised_and_reasoning_is_split() {
        let mut call = call_for("MiniMax-M2", true);
        call.temperature = Some(0.0);
        let v = serde_json::to_value(super::super::shaped_body(&Minimax, &call)).unwrap_or_default();
        assert!((v["temperature"].as_f64().unwrap_or_default() - 0.01).abs() < 1e-6);
        assert_eq!(v["reasoning_split"], true);
    }

    #[test]
    fn base_resp_codes_map_to_the_taxonomy() {
        let e = |code: i64| {
            let base_resp = json!({"status_code": code, "status_msg": "x"});
            Minimax.error_in_body(&InBand {
                error: None,
                base_resp: Some(&base_resp),
            })
        };
        assert!(e(0).is_none());
        assert!(matches!(e(1004), Some(ProviderErrorKind::Auth { .. })));
        assert!(matches!(e(1002), Some(ProviderErrorKind::RateLimited { .. })));
        assert!(matches!(e(1008), Some(ProviderErrorKind::InvalidRequest { .. })));
    }
}
