//! `exai mock-upstream`: the fake upstream the tests use, as a server for people — every wire
//! format exai speaks (OpenAI chat completions, plain and streamed; Anthropic Messages), on
//! 127.0.0.1, no key, nothing leaving the machine. It prints the environment that points exai at
//! it, echoes prompts, and fails on request: a prompt containing `[fault:429]` (any HTTP status),
//! `[fault:drop]` (the stream breaks), `[fault:hang]` (no answer) or `[fault:slow]` (2 s late)
//! gets that fault — so the gateway's retries, fallback, timeouts and errors can be seen offline.

use std::time::Duration;

use exai_core::testing::{FakeReply, FakeUpstream};
use serde_json::Value;

use crate::exit::Failure;

/// The last user message's text (OpenAI or Anthropic shape).
fn last_prompt(request: &Value) -> String {
    let messages = request.get("messages").and_then(Value::as_array);
    let last = messages.and_then(|m| m.iter().rev().find(|m| m["role"] == "user"));
    match last.map(|m| &m["content"]) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The fault a prompt asks for, if any.
pub(crate) fn fault(prompt: &str) -> Option<FakeReply> {
    let start = prompt.find("[fault:")? + "[fault:".len();
    let name = &prompt[start..start + prompt[start..].find(']')?];
    Some(match name.trim() {
        "drop" => FakeReply::drop_after(3),
        "hang" => FakeReply::hang(),
        "slow" => FakeReply::echo().with_delay(Duration::from_secs(2)),
        status => match status.parse::<u16>() {
            Ok(code @ 400..=599) => {
                let reply = FakeReply::status(code);
                if code == 429 { reply.with_retry_after(1) } else { reply }
            }
            _ => return None,
        },
    })
}

pub async fn run(port: u16) -> Result<i32, Failure> {
    let fake = FakeUpstream::start_on(port).await.map_err(|e| {
        Failure::new(
            2,
            format!("cannot listen on 127.0.0.1:{port}: {e} (choose another with --port)"),
        )
    })?;
    fake.stop_recording();
    fake.respond_with(|request| fault(&last_prompt(request)));
    let (base, anthropic) = (fake.base_url(), fake.anthropic_base_url());
    println!(
        "# exai mock upstream on http://{} — no key needed, nothing leaves this machine.",
        fake.addr()
    );
    println!("# Point exai at it (any shell, then exai chat, exai-ws, exai-stdio):");
    for p in ["GLM", "KIMI", "MINIMAX"] {
        println!("export {p}_API_KEY=mock {p}_BASE_URL={base} {p}_ANTHROPIC_BASE_URL={anthropic}");
    }
    println!(
        "# Faults on request: put [fault:429], [fault:500], [fault:drop], [fault:hang] or [fault:slow] in a prompt."
    );
    println!("# Ctrl-C stops it.");
    stop_signal().await;
    Ok(0)
}

/// Waits for Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_asked_for_in_the_prompt() {
        assert!(fault("hello").is_none());
        assert!(fault("please [fault:500] now").is_some());
        assert!(fault("[fault:drop]").is_some());
        assert!(fault("[fault:hang]").is_some());
        assert!(fault("[fault:nonsense]").is_none());
        assert!(fault("[fault:200]").is_none());
        assert_eq!(
            last_prompt(
                &serde_json::json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]})
            ),
            "a"
        );
    }
}
