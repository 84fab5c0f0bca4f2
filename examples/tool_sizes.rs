//! What the tool definitions cost an MCP client, per profile: the serialized `tools/list`
//! payload, in bytes and in tokens counted as bytes / 4.
//!
//! ```sh
//! cargo run -p exai-examples --example tool_sizes
//! ```

use std::collections::HashMap;

use exai_core::{Config, Gateway};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("| profile | tools | bytes | tokens (bytes/4) |\n|---|---|---|---|");
    for profile in ["standard", "lean"] {
        let env = HashMap::from([
            ("EXAI_TOOLS".to_string(), profile.to_string()),
            ("GLM_API_KEY".to_string(), "x".to_string()),
        ]);
        let gateway = Gateway::new(Config::from_parts(&env, None)?).await?;
        let tools = exai_core::ToolSuite::new(gateway.clone()).list();
        let bytes = serde_json::to_string(&tools)?.len();
        println!("| {profile} | {} | {bytes} | {} |", tools.len(), bytes / 4);
    }
    Ok(())
}
