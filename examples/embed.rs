//! Embedding exai in a dozen lines: build a `Gateway` from the environment and stream a reply.
//!
//! ```sh
//! GLM_API_KEY=... cargo run -p exai-examples --example embed -- "Explain ownership in one line"
//! ```
//! Without a key it prints which variables to set (try the offline `quickstart` example first).

use std::io::Write;

use exai_core::{ChatEvent, ChatRequest, Gateway};
use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let prompt = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "Say hello in five words.".into());
    let gateway = Gateway::from_env().await?;
    let mut stream = gateway.chat_stream(ChatRequest::new(prompt).model("auto")).await?;
    while let Some(event) = stream.next().await {
        match event? {
            ChatEvent::Text(text) => print!("{text}"),
            ChatEvent::Done(r) => println!(
                "\n[{} / {}: {} tokens in, {} out, ${:.6}]",
                r.provider, r.model, r.usage.input_tokens, r.usage.output_tokens, r.cost_usd
            ),
            // Reasoning, status updates, and events later versions add.
            _ => {}
        }
        std::io::stdout().flush()?;
    }
    Ok(())
}
