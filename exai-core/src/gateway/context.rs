//! Fitting a conversation into a model's context window.
//!
//! A continued turn sends the earlier turns as native messages. When they do not all fit, the
//! oldest go first; the system prompt and this turn's messages always stay, and room is kept for
//! the reply. Token counts are estimated (bytes / 4, plus a few tokens per message): cheap, and
//! close enough for deciding what to drop — exact counts come back from the provider as usage.

use crate::catalog::ModelInfo;
use crate::error::Error;
use crate::request::Message;

/// Tokens of framing per message.
const PER_MESSAGE: u64 = 4;
/// Room kept for the reply when the request sets no `max_tokens`.
const DEFAULT_REPLY_ROOM: u32 = 4_096;

/// Estimated tokens of a text.
pub(crate) fn estimate(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// Estimated tokens of messages.
pub(crate) fn estimate_messages<'a>(messages: impl IntoIterator<Item = &'a Message>) -> u64 {
    messages.into_iter().map(|m| estimate(&m.content) + PER_MESSAGE).sum()
}

/// System prompt + as much recent history as fits + this turn.
pub(crate) fn fit(
    system: Option<&str>,
    history: &[Message],
    turn: &[Message],
    model: &ModelInfo,
    max_tokens: Option<u32>,
) -> Result<Vec<Message>, Error> {
    let reply_room = max_tokens.unwrap_or(DEFAULT_REPLY_ROOM.min(model.max_output));
    let budget = u64::from(model.context_window.saturating_sub(reply_room));
    let system_msg = system.filter(|s| !s.is_empty()).map(Message::system);
    let fixed = estimate_messages(system_msg.iter().chain(turn));
    if fixed > budget {
        return Err(Error::InvalidRequest(format!(
            "this turn is about {fixed} tokens but {} takes at most {budget} (its context window \
             less room for the reply); shorten it, pass large content as files, or choose a model \
             with a larger window",
            model.id
        )));
    }
    let mut room = budget - fixed;
    let mut kept = 0;
    for m in history.iter().rev() {
        let cost = estimate(&m.content) + PER_MESSAGE;
        if cost > room {
            break;
        }
        room -= cost;
        kept += 1;
    }
    let mut out = Vec::with_capacity(1 + kept + turn.len());
    out.extend(system_msg);
    out.extend_from_slice(&history[history.len() - kept..]);
    out.extend_from_slice(turn);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Capabilities, Price};

    fn model(window: u32) -> ModelInfo {
        ModelInfo {
            id: "m".into(),
            provider: "p".into(),
            context_window: window,
            max_output: 100,
            capabilities: Capabilities::default(),
            price: Price::default(),
            aliases: vec![],
        }
    }

    #[test]
    fn oldest_history_goes_first_and_the_turn_always_stays() -> Result<(), Error> {
        let history: Vec<Message> = (0..10).map(|i| Message::user(format!("{i}").repeat(40))).collect();
        let turn = [Message::user("now")];
        // 14 tokens per history message; budget 230 - 100 = 130, of which 10 for the system
        // prompt and the turn: 120 left, room for the 8 newest.
        let out = fit(Some("s"), &history, &turn, &model(230), None)?;
        assert_eq!(out.first().map(|m| m.content.as_str()), Some("s"));
        assert_eq!(out.last().map(|m| m.content.as_str()), Some("now"));
        let kept: Vec<_> = out[1..out.len() - 1].iter().map(|m| &m.content[..1]).collect();
        assert_eq!(kept, ["2", "3", "4", "5", "6", "7", "8", "9"]);
        Ok(())
    }

    #[test]
    fn a_turn_larger_than_the_window_is_refused_with_advice() {
        let turn = [Message::user("x".repeat(4_000))];
        let err = fit(None, &[], &turn, &model(500), None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("about 1004 tokens") && err.contains("files"), "{err}");
    }
}
