//! The offline quickstart: a whole conversation through the gateway — a reply, a streamed reply,
//! a continued turn, and what it all cost — with no provider key and no Redis.
//!
//! ```sh
//! cargo run -p exai-examples --example quickstart
//! ```
//!
//! It starts exai's built-in fake provider (a real HTTP server on 127.0.0.1 speaking the OpenAI
//! wire format) and points the GLM provider at it, so every byte goes through the real gateway:
//! limits, routing, the provider worker, HTTP and SSE, memory and the usage ledger. Offline, its
//! conversation and (fake) usage go to a scratch state directory it prints (`exai-quickstart` in
//! the system's temporary directory, or `EXAI_STATE_DIR` when set), never to the real history in
//! `~/.local/state/exai`. With `GLM_API_KEY`, `KIMI_API_KEY` or `MINIMAX_API_KEY` set, it talks to
//! the real provider instead, and the real calls are kept with the others.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use exai_core::testing::{FakeReply, FakeUpstream};
use exai_core::{ChatEvent, ChatRequest, Config, Gateway};
use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let real = Config::from_env()?;
    let fake = FakeUpstream::start().await?;
    let (config, offline) = if real.ready_providers().next().is_some() {
        (real, false)
    } else {
        let mut env: HashMap<String, String> = fake.env_for(&["GLM"]);
        let scratch = std::env::var_os("EXAI_STATE_DIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| std::env::temp_dir().join("exai-quickstart"), PathBuf::from);
        env.insert("EXAI_STATE_DIR".into(), scratch.display().to_string());
        fake.push(FakeReply::text("Ownership means every value has exactly one owner; when the owner goes out of scope, the value is dropped.").with_usage(24, 27));
        fake.push(
            FakeReply::text("Borrowing lets code use a value without taking ownership: many shared borrows, or one mutable borrow, never both.")
                .with_reasoning("The user asked about borrowing; contrast & and &mut.")
                .with_usage(61, 30),
        );
        (Config::from_parts(&env, None)?, true)
    };
    if offline {
        println!(
            "No provider key set: using the built-in fake provider at {}.",
            fake.base_url()
        );
        println!(
            "Fake calls keep to a scratch state directory, {} — not your real history.",
            config.state_dir.display()
        );
        println!("Set GLM_API_KEY, KIMI_API_KEY or MINIMAX_API_KEY (and optionally REDIS_URL) to reach a real one.\n");
    }
    let gateway = Gateway::new(config).await?;

    println!("1. A reply");
    let first = gateway
        .chat(ChatRequest::new("What is ownership in Rust? One sentence.").system("Be brief."))
        .await?;
    println!(
        "   {}\n   — answered by {} / {}, continuation {}\n",
        first.text, first.provider, first.model, first.continuation_id
    );

    println!("2. A streamed reply, continuing the conversation");
    let mut stream = gateway
        .chat_stream(ChatRequest::new("And borrowing?").continuation(&first.continuation_id))
        .await?;
    print!("   ");
    while let Some(event) = stream.next().await {
        match event? {
            ChatEvent::Reasoning(r) => print!("[thinking: {r}] "),
            ChatEvent::Text(t) => print!("{t}"),
            ChatEvent::Done(r) => println!(
                "\n   — {} tokens in, {} out\n",
                r.usage.input_tokens, r.usage.output_tokens
            ),
            // Status updates (and events later versions add) are not part of the reply.
            _ => {}
        }
        std::io::stdout().flush()?;
    }

    println!("3. A third turn: the provider receives the whole conversation as native messages");
    let third = gateway
        .chat(ChatRequest::new("Summarise what we covered.").continuation(&first.continuation_id))
        .await?;
    println!("   {}\n", third.text);
    let thread = gateway
        .thread(&first.continuation_id)
        .await?
        .map(|t| t.turns.len())
        .unwrap_or(0);
    println!(
        "   The conversation now holds {thread} turns ({} memory).\n",
        gateway.memory_status().await.backend
    );

    println!("4. What it cost (the usage ledger)");
    for row in gateway.usage().await.since_start {
        println!(
            "   {}/{}: {} requests, {} errors, {} tokens in, {} out, ${:.6}",
            row.provider, row.model, row.requests, row.errors, row.input_tokens, row.output_tokens, row.cost_usd
        );
    }
    if offline {
        println!(
            "\nTo look at it again: EXAI_STATE_DIR={} cargo run -q -p exai-cli -- threads",
            gateway.config().state_dir.display()
        );
    }
    gateway.shutdown().await;
    Ok(())
}
