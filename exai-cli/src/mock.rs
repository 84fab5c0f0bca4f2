//! `exai mock-upstream`: the fake upstream the tests use, as a server for people — every wire
//! format exai speaks (OpenAI chat completions, plain and streamed; Anthropic Messages), on
//! 127.0.0.1, no key, nothing leaving the machine. It prints the environment that points exai at
//! it, echoes prompts, and fails on request: a prompt containing `[fault:429]` (any HTTP status),
//! `[fault:drop]` (the stream breaks), `[fault:hang]` (no answer) or `[fault:slow]` (2 s late)
//! gets that fault — so the gateway's retries, fallback, timeouts and errors can be seen offline.
//! A prompt containing `[tool:NAME]` gets a call of the client's tool NAME, and the tool's result
//! a text answer quoting it: an SDK's tool round trip, offline.

use exai_core::testing::FakeUpstream;

use crate::exit::Failure;

pub async fn run(port: u16) -> Result<i32, Failure> {
    let fake = FakeUpstream::start_on(port).await.map_err(|e| {
        Failure::new(
            2,
            format!("cannot listen on 127.0.0.1:{port}: {e} (choose another with --port)"),
        )
    })?;
    fake.stop_recording();
    fake.answer_prompts();
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
    println!("# Tool calls on request: [tool:NAME] in a prompt calls your tool NAME; its result gets a text answer.");
    println!("# Ctrl-C stops it.");
    exai_mcp::shutdown_signal().await;
    Ok(0)
}
