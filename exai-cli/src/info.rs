//! The read-mostly subcommands: `config`, `models`, `tools`, `call`, `threads`, `thread`,
//! `usage`. Each prints a plain table (or `--json`), nothing decorative, so output pipes well.

use exai_core::{Config, DeploymentUsageRow, Gateway, KeyUsageRow, Source, ToolSuite, UsageRow};

use crate::cli::UsageArgs;
use serde_json::{Value, json};

use crate::exit::Failure;

fn print_json(value: &impl serde::Serialize) -> Result<i32, Failure> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(0)
}

/// `exai config`: loads the configuration only (no gateway), so it works even with no key.
pub fn config(as_json: bool) -> Result<i32, Failure> {
    let config = Config::from_env()?;
    let file = config.file.as_ref().map(|p| p.display().to_string());
    if as_json {
        let searched: Vec<String> = Config::search_paths().iter().map(|p| p.display().to_string()).collect();
        return print_json(&json!({"file": file, "searched": searched, "entries": config.entries()}));
    }
    match &file {
        Some(f) => println!("config file: {f}"),
        None => {
            let looked: Vec<String> = Config::search_paths().iter().map(|p| p.display().to_string()).collect();
            println!(
                "config file: none (environment and defaults; looked for $EXAI_CONFIG, then {})",
                looked.join(", then ")
            );
        }
    }
    let width = config.entries().iter().map(|e| e.key.len()).max().unwrap_or(10);
    for e in config.entries() {
        let source = match &e.source {
            Source::Env(name) => format!("env {name}"),
            other => other.to_string(),
        };
        let value = e.value.as_deref().unwrap_or("(unset)");
        println!("{:width$}  {value:<40}  {source}", e.key);
    }
    Ok(0)
}

pub fn models(gateway: &Gateway, as_json: bool) -> Result<i32, Failure> {
    let models = gateway.models();
    if as_json {
        return print_json(&models);
    }
    println!(
        "{:<24} {:<10} {:>8} {:<26} {:>14}  key",
        "model", "provider", "context", "capabilities", "$/M in/out"
    );
    for m in models {
        let c = m.model.capabilities;
        let caps: Vec<&str> = [(c.thinking, "thinking"), (c.vision, "vision"), (c.web_search, "web")]
            .into_iter()
            .filter_map(|(on, n)| on.then_some(n))
            .collect();
        let price = format!("{}/{}", m.model.price.input_per_m, m.model.price.output_per_m);
        let key = if m.configured { "yes" } else { "no" };
        println!(
            "{:<24} {:<10} {:>7}k {:<26} {:>14}  {key}",
            m.model.id,
            m.model.provider,
            m.model.context_window / 1000,
            caps.join(","),
            price
        );
    }
    Ok(0)
}

pub fn tools(gateway: &Gateway, as_json: bool) -> Result<i32, Failure> {
    let tools = ToolSuite::new(gateway.clone()).list();
    if as_json {
        return print_json(&tools);
    }
    for t in tools {
        println!("{:<12} {}", t.name, t.description);
    }
    Ok(0)
}

pub async fn call(gateway: &Gateway, tool: &str, args: &str, as_json: bool) -> Result<i32, Failure> {
    let args: Value = serde_json::from_str(args).map_err(|e| Failure::new(2, format!("--args is not JSON: {e}")))?;
    // A one-off command run by this machine's user: their files are theirs to send.
    let out = ToolSuite::new(gateway.clone())
        .with_file_access(exai_core::FileAccess::local())
        .call_embedded(tool, args, None)
        .await
        .map_err(|e| Failure::new(2, e.to_string()))?;
    if as_json {
        print_json(&json!({"text": out.text, "structured": out.structured, "is_error": out.is_error()}))?;
    } else if out.is_error() {
        eprintln!("{}", out.text);
    } else {
        println!("{}", out.text);
    }
    Ok(if out.is_error() { 1 } else { 0 })
}

pub async fn threads(gateway: &Gateway, limit: usize, as_json: bool) -> Result<i32, Failure> {
    let threads = gateway.threads(limit).await?;
    if as_json {
        return print_json(&threads);
    }
    if threads.is_empty() {
        eprintln!(
            "no conversations stored (memory: {})",
            gateway.memory_status().await.backend
        );
    }
    for t in threads {
        println!(
            "{}  {:<10} {:<12} {:>3} turns  {}",
            t.id,
            t.tool.as_deref().unwrap_or("-"),
            owner_label(t.owner.as_deref()),
            t.turns,
            t.preview.replace('\n', " ")
        );
    }
    Ok(0)
}

/// Who started a conversation: a key, by name, or `(no key)`.
fn owner_label(owner: Option<&str>) -> String {
    owner.map_or_else(|| "(no key)".to_string(), |k| format!("key {k}"))
}

pub async fn thread(gateway: &Gateway, id: &str, as_json: bool) -> Result<i32, Failure> {
    let thread = gateway
        .thread(id)
        .await?
        .ok_or_else(|| Failure::from(exai_core::Error::ThreadNotFound(id.to_string())))?;
    if as_json {
        return print_json(&thread);
    }
    println!("owner: {}", owner_label(thread.owner.as_deref()));
    for turn in &thread.turns {
        let who = match (&turn.model, turn.role) {
            (Some(model), _) => model.clone(),
            (None, role) => format!("{role:?}").to_lowercase(),
        };
        println!(
            "--- {who}{}",
            if turn.files.is_empty() {
                String::new()
            } else {
                format!(" (files: {})", turn.files.join(", "))
            }
        );
        println!("{}", turn.content);
    }
    Ok(0)
}

fn usage_table(title: &str, rows: &[UsageRow]) {
    println!("{title}");
    if rows.is_empty() {
        println!("  no provider calls");
        return;
    }
    let (mut total, mut saved) = (0.0, 0.0);
    for r in rows {
        total += r.cost_usd;
        saved += r.saved_usd;
        println!(
            "  {:<10} {:<24} {:>6} req {:>4} err {:>10} in {:>10} out  ${:.6}{}",
            r.provider,
            r.model,
            r.requests,
            r.errors,
            r.input_tokens,
            r.output_tokens,
            r.cost_usd,
            cached_part(r)
        );
    }
    if saved > 0.0 {
        println!("  total ${total:.6} (the cache saved ${saved:.6})");
    } else {
        println!("  total ${total:.6}");
    }
}

/// `  N cached, $X saved` for a row the response cache answered calls of.
fn cached_part(r: &UsageRow) -> String {
    match r.cached {
        0 => String::new(),
        n => format!("  {n} cached, ${:.6} saved", r.saved_usd),
    }
}

/// Per key: totals (`--by key`), or one key's rows per provider and model (`--key NAME`).
fn key_table(title: &str, rows: &[KeyUsageRow], by: &UsageArgs) {
    if let Some(name) = &by.key {
        let mine: Vec<UsageRow> = rows
            .iter()
            .filter(|r| &r.key == name)
            .map(|r| r.usage.clone())
            .collect();
        return usage_table(title, &mine);
    }
    println!("{title}");
    let mut totals: std::collections::BTreeMap<&str, UsageRow> = Default::default();
    for r in rows {
        let t = totals.entry(&r.key).or_default();
        t.requests += r.usage.requests;
        t.errors += r.usage.errors;
        t.input_tokens += r.usage.input_tokens;
        t.output_tokens += r.usage.output_tokens;
        t.cost_usd += r.usage.cost_usd;
        t.cached += r.usage.cached;
        t.saved_usd += r.usage.saved_usd;
    }
    if totals.is_empty() {
        println!("  no calls made with a key");
    }
    for (key, t) in totals {
        println!(
            "  {key:<24} {:>6} req {:>4} err {:>10} in {:>10} out  ${:.6}{}",
            t.requests,
            t.errors,
            t.input_tokens,
            t.output_tokens,
            t.cost_usd,
            cached_part(&t)
        );
    }
}

/// Per deployment: each label's calls per model.
fn deployment_table(title: &str, rows: &[DeploymentUsageRow]) {
    println!("{title}");
    if rows.is_empty() {
        println!("  no provider calls");
    }
    for r in rows {
        let u = &r.usage;
        println!(
            "  {:<16} {:<24} {:>6} req {:>4} err {:>10} in {:>10} out  ${:.6}",
            r.deployment, u.model, u.requests, u.errors, u.input_tokens, u.output_tokens, u.cost_usd
        );
    }
}

pub async fn usage(gateway: &Gateway, args: UsageArgs) -> Result<i32, Failure> {
    let as_json = args.json.json;
    if args.by.as_deref() == Some("deployment") {
        let report = gateway.usage_by_deployment().await;
        if as_json {
            return print_json(&report);
        }
        deployment_table("today (UTC):", &report.today);
        deployment_table("all time:", &report.all_time);
        return Ok(0);
    }
    if args.by.is_some() || args.key.is_some() {
        let mut report = gateway.usage_by_key().await;
        if let Some(name) = &args.key {
            report.today.retain(|r| &r.key == name);
            report.all_time.retain(|r| &r.key == name);
        }
        if as_json {
            return print_json(&report);
        }
        key_table("today (UTC):", &report.today, &args);
        key_table("all time:", &report.all_time, &args);
        return Ok(0);
    }
    let report = gateway.usage().await;
    if as_json {
        return print_json(&report);
    }
    usage_table("today (UTC):", &report.today);
    let all = if report.backend == "local" {
        "all time (this process only: memory.backend is memory):"
    } else {
        "all time:"
    };
    usage_table(all, &report.all_time);
    Ok(0)
}
