//! `exai mock-upstream`: the fake upstream the tests use, as a server for people — every wire
//! format exai speaks (OpenAI chat completions, plain and streamed; Anthropic Messages), on
//! 127.0.0.1, no key, nothing leaving the machine. It prints the environment that points exai at
//! it, echoes prompts, and fails on request: a prompt containing `[fault:429]` (any HTTP status),
//! `[fault:drop]` (the stream breaks), `[fault:hang]` (no answer) or `[fault:slow]` (2 s late)
//! gets that fault — so the gateway's retries, fallback, timeouts and errors can be seen offline.
//! A prompt containing `[tool:NAME]` gets a call of the client's tool NAME, and the tool's result
//! a text answer quoting it: an SDK's tool round trip, offline.
//!
//! The environment it prints includes a scratch state directory (`EXAI_STATE_DIR`, below the
//! system's temporary directory, one per port), so that what exai does against the mock — its
//! conversations, its fake spend — stays out of the real history (`~/.local/state/exai`). An
//! `EXAI_STATE_DIR` set for the mock itself is taken as the user's choice and printed instead.

use std::path::PathBuf;

use exai_core::testing::FakeUpstream;

use crate::exit::Failure;

/// Where exai's runs against the mock on `port` keep their state: `EXAI_STATE_DIR` when the
/// user set one, else `exai-mock-PORT` in the temporary directory — the same for every run on
/// that port, so export lines pasted earlier stay right.
fn scratch_state_dir(port: u16) -> Result<PathBuf, Failure> {
    let dir = std::env::var_os("EXAI_STATE_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| std::env::temp_dir().join(format!("exai-mock-{port}")), PathBuf::from);
    std::fs::create_dir_all(&dir).map_err(|e| {
        Failure::new(
            2,
            format!(
                "cannot create the scratch state directory {}: {e} (set EXAI_STATE_DIR to one of yours)",
                dir.display()
            ),
        )
    })?;
    Ok(dir)
}

/// `text` as one shell word: as is when only safe characters make it up, else single-quoted.
fn shell_word(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

pub async fn run(port: u16) -> Result<i32, Failure> {
    let fake = FakeUpstream::start_on(port).await.map_err(|e| {
        Failure::new(
            2,
            format!("cannot listen on 127.0.0.1:{port}: {e} (choose another with --port)"),
        )
    })?;
    fake.stop_recording();
    fake.answer_prompts();
    let state = scratch_state_dir(fake.addr().port())?;
    let (base, anthropic) = (fake.base_url(), fake.anthropic_base_url());
    println!(
        "# exai mock upstream on http://{} — no key needed, nothing leaves this machine.",
        fake.addr()
    );
    println!("# Point exai at it (any shell, then exai chat, exai-ws, exai-stdio):");
    for p in ["GLM", "KIMI", "MINIMAX"] {
        println!("export {p}_API_KEY=mock {p}_BASE_URL={base} {p}_ANTHROPIC_BASE_URL={anthropic}");
    }
    println!("# Conversations and (fake) usage go to a scratch state directory, not your real history:");
    println!("export EXAI_STATE_DIR={}", shell_word(&state.display().to_string()));
    println!(
        "# Faults on request: put [fault:429], [fault:500], [fault:drop], [fault:hang] or [fault:slow] in a prompt."
    );
    println!("# Tool calls on request: [tool:NAME] in a prompt calls your tool NAME; its result gets a text answer.");
    println!("# Ctrl-C stops it.");
    exai_mcp::shutdown_signal().await;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn a_path_is_quoted_for_the_shell_only_when_it_must_be() {
        assert_eq!(shell_word("/tmp/exai-mock-8089"), "/tmp/exai-mock-8089");
        assert_eq!(shell_word("/tmp/my dir"), "'/tmp/my dir'");
        assert_eq!(shell_word("/tmp/it's"), r"'/tmp/it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
