//! `listmodels`, `version` and `status`: what the server has, what it is, and how it is doing.
//! These answer without a provider call — and `status` is how a user sees whether requests and
//! credits are really flowing.

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::{Failure, Tool, ToolCtx, ToolOutput, args::parse, schema};

fn empty() -> Value {
    schema::object(Map::new(), &[])
}

/// `listmodels`.
pub(crate) struct ListModels;

#[async_trait]
impl Tool for ListModels {
    fn name(&self) -> &'static str {
        "listmodels"
    }
    fn description(&self) -> &'static str {
        "List the models this server can use: provider, context window, capabilities, price per million tokens, and whether the provider has a key."
    }
    fn schema(&self, _models: &[String]) -> Value {
        empty()
    }
    async fn run(&self, ctx: &ToolCtx<'_>, args: Value) -> Result<ToolOutput, Failure> {
        let _: Map<String, Value> = parse(&empty(), args)?;
        let gw = ctx.gateway();
        let models = gw.models();
        let mut text = String::from("Models (✓ = provider configured):\n");
        for provider in &gw.config().providers {
            let key = if provider.is_ready() { "ready" } else { "not configured" };
            text.push_str(&format!("\n{} ({}, {key})\n", provider.name, provider.kind));
            for m in models.iter().filter(|m| m.model.provider == provider.name) {
                let c = m.model.capabilities;
                let caps: Vec<&str> = [
                    (c.thinking, "thinking"),
                    (c.vision, "vision"),
                    (c.web_search, "web search"),
                ]
                .into_iter()
                .filter_map(|(on, name)| on.then_some(name))
                .collect();
                let aliases = if m.model.aliases.is_empty() {
                    String::new()
                } else {
                    format!(" (aliases: {})", m.model.aliases.join(", "))
                };
                text.push_str(&format!(
                    "  {} {}{aliases}: {}k context, {} · ${}/${} per M tokens\n",
                    if m.configured { "✓" } else { "✗" },
                    m.model.id,
                    m.model.context_window / 1000,
                    if caps.is_empty() {
                        "text".to_string()
                    } else {
                        caps.join(", ")
                    },
                    m.model.price.input_per_m,
                    m.model.price.output_per_m,
                ));
            }
        }
        text.push_str(&format!(
            "\nDefault model: {} ('auto' picks by task and falls back along {}).",
            gw.config().default_model,
            gw.config().routing.fallback.join(" → ")
        ));
        let providers: Vec<Value> = gw
            .config()
            .providers
            .iter()
            .map(|p| json!({"name": p.name, "kind": p.kind, "configured": p.is_ready(), "key_present": p.api_key.is_some()}))
            .collect();
        Ok(ToolOutput::ok(
            text,
            json!({"status": "ok", "providers": providers, "models": models}),
        ))
    }
}

/// `version`.
pub(crate) struct Version;

#[async_trait]
impl Tool for Version {
    fn name(&self) -> &'static str {
        "version"
    }
    fn description(&self) -> &'static str {
        "Server version, build and supported protocol versions."
    }
    fn schema(&self, _models: &[String]) -> Value {
        empty()
    }
    async fn run(&self, ctx: &ToolCtx<'_>, args: Value) -> Result<ToolOutput, Failure> {
        let _: Map<String, Value> = parse(&empty(), args)?;
        let protocols: Map<String, Value> = ctx
            .suite
            .protocols()
            .iter()
            .map(|(name, versions)| (name.clone(), json!(versions)))
            .collect();
        let info = json!({
            "status": "ok",
            "name": "exai",
            "version": env!("CARGO_PKG_VERSION"),
            "build": {"target_os": std::env::consts::OS, "target_arch": std::env::consts::ARCH, "debug": cfg!(debug_assertions)},
            "protocols": protocols,
        });
        let mut text = format!(
            "exai {} ({}/{}{})",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            if cfg!(debug_assertions) { ", debug build" } else { "" },
        );
        for (name, versions) in ctx.suite.protocols() {
            text.push_str(&format!("\nprotocol {name}: {}", versions.join(", ")));
        }
        Ok(ToolOutput::ok(text, info))
    }
}

/// `status`.
pub(crate) struct Status;

#[async_trait]
impl Tool for Status {
    fn name(&self) -> &'static str {
        "status"
    }
    fn description(&self) -> &'static str {
        "Health and activity: each provider's state and last error, memory backend, requests in flight and queued, \
         usage and cost so far, and recent conversations (to resume one by its continuation_id)."
    }
    fn schema(&self, _models: &[String]) -> Value {
        empty()
    }
    async fn run(&self, ctx: &ToolCtx<'_>, args: Value) -> Result<ToolOutput, Failure> {
        let _: Map<String, Value> = parse(&empty(), args)?;
        let gw = ctx.gateway();
        let status = gw.status().await?;
        let threads = gw.threads(10).await?;
        let mut text = format!("exai {} — providers:\n", status.version);
        for p in &status.providers {
            let last = p
                .last_error
                .as_ref()
                .map(|(e, _)| format!("; last error: {e}"))
                .unwrap_or_default();
            text.push_str(&format!(
                "  {}: {}, circuit {}, {} calls, {} failures{last}\n",
                p.provider,
                if p.configured { "configured" } else { "not configured" },
                p.circuit,
                p.calls,
                p.failures
            ));
        }
        let memory = &status.memory;
        text.push_str(&format!(
            "memory: {} ({})\n",
            memory.backend,
            if memory.reachable {
                "reachable".to_string()
            } else {
                format!("unreachable: {}", memory.error.clone().unwrap_or_default())
            }
        ));
        let inflight: Vec<String> = status
            .limits
            .iter()
            .map(|l| format!("{} {}/{}", l.scope, l.in_flight, l.max))
            .collect();
        text.push_str(&format!("in flight: {}\n", inflight.join(", ")));
        text.push_str(&format!(
            "queued turns: {} in {} active conversations; sessions: {}\n",
            status.queue.pending_turns,
            status.queue.conversations,
            status.sessions.len()
        ));
        text.push_str(&format!("usage ({}):\n", status.usage.backend));
        if status.usage.all_time.is_empty() {
            text.push_str("  no provider calls yet\n");
        }
        for r in &status.usage.all_time {
            let cached = match r.cached {
                0 => String::new(),
                n => format!(", {n} from the cache (saved ${:.6})", r.saved_usd),
            };
            text.push_str(&format!(
                "  {}/{}: {} requests, {} errors, {} tokens in, {} out, ${:.6}{cached}\n",
                r.provider, r.model, r.requests, r.errors, r.input_tokens, r.output_tokens, r.cost_usd
            ));
        }
        let c = &status.cache;
        text.push_str(&format!(
            "response cache ({}): {} hits, {} misses, {} coalesced; {} replies, {} of {} bytes; shared level {:?}\n",
            c.mode, c.hits, c.misses, c.coalesced, c.entries, c.bytes, c.max_bytes, c.shared
        ));
        let key = gw.keys().info(ctx.session.caller());
        if let Some(k) = &key {
            let budget = match (k.limits.budget_usd, k.remaining_usd) {
                (Some(b), Some(left)) => format!(
                    "${:.4} spent of ${b:.2} per {}, ${left:.4} left{}",
                    k.spent_usd,
                    k.limits.period,
                    k.period_resets
                        .as_ref()
                        .map(|r| format!(", resets {r}"))
                        .unwrap_or_default()
                ),
                _ => format!("${:.4} spent this {}, no budget", k.spent_usd, k.limits.period),
            };
            text.push_str(&format!("your key: {} ({:?}): {budget}\n", k.name, k.status));
        }
        // Other people's conversations are not shown to a key's holder.
        let threads = if key.is_some() { Vec::new() } else { threads };
        text.push_str("recent conversations:\n");
        for t in &threads {
            text.push_str(&format!(
                "  {} [{}] {} turns: {}\n",
                t.id,
                t.tool.as_deref().unwrap_or("chat"),
                t.turns,
                t.preview
            ));
        }
        let structured = json!({"status": "ok", "gateway": status, "threads": threads, "key": key});
        Ok(ToolOutput::ok(text, structured))
    }
}
