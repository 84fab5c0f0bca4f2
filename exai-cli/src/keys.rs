//! `exai keys`: API keys for a shared exai, managed in the state store the configuration
//! selects (the SQLite file, or Redis) — the same store every daemon reads, so a change here
//! applies to them within a second. No gateway is started.

use exai_core::{Config, CreatedKey, KeyError, KeyInfo, KeyUpdate, Keys};

use crate::cli::{KeysCommand, LimitFlags};
use crate::exit::Failure;

fn print_json(value: &impl serde::Serialize) -> Result<i32, Failure> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(0)
}

/// A number, or `none` (no limit).
fn limit<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<Option<Option<T>>, Failure> {
    match value.as_deref().map(str::trim) {
        None => Ok(None),
        Some("none") => Ok(Some(None)),
        Some(v) => v
            .parse()
            .map(|n| Some(Some(n)))
            .map_err(|_| Failure::new(2, format!("--{flag} takes a number or `none`, not '{v}'"))),
    }
}

/// A comma-separated list, or `none`/`all` (no allow-list).
fn list(value: Option<String>) -> Option<Option<Vec<String>>> {
    let v = value?;
    match v.trim() {
        "none" | "all" | "" => Some(None),
        v => Some(Some(
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        )),
    }
}

fn update_of(flags: LimitFlags) -> Result<KeyUpdate, Failure> {
    let expires = match flags.expires.as_deref().map(str::trim) {
        None => None,
        Some("none") => Some(None),
        Some(d) => Some(Some(exai_core::parse_date(d).map_err(|e| Failure::new(2, e))?)),
    };
    Ok(KeyUpdate {
        budget_usd: limit("budget-usd", flags.budget_usd)?,
        period: flags.period,
        rpm: limit("rpm", flags.rpm)?,
        tpm: limit("tpm", flags.tpm)?,
        max_inflight: limit("max-inflight", flags.max_inflight)?,
        models: list(flags.models),
        tools: list(flags.tools),
        expires,
        cache: flags.cache.map(|v| v == "on"),
    })
}

fn limits_line(k: &KeyInfo) -> String {
    let l = &k.limits;
    let mut parts = Vec::new();
    match l.budget_usd {
        Some(b) => parts.push(format!("${:.4} of ${b:.2} per {}", k.spent_usd, l.period)),
        None => parts.push(format!("${:.4} this {} (no budget)", k.spent_usd, l.period)),
    }
    if let Some(n) = l.rpm {
        parts.push(format!("{n} rpm"));
    }
    if let Some(n) = l.tpm {
        parts.push(format!("{n} tpm"));
    }
    if let Some(n) = l.max_inflight {
        parts.push(format!("{n} in flight"));
    }
    if let Some(m) = &l.models {
        parts.push(format!("models {}", m.join(",")));
    }
    if let Some(t) = &l.tools {
        parts.push(format!("tools {}", t.join(",")));
    }
    if let Some(d) = l.expires {
        parts.push(format!("until {d}"));
    }
    if l.cache {
        parts.push("cached".to_string());
    }
    parts.join(", ")
}

fn print_key(k: &KeyInfo) {
    println!("{} ({:?})", k.name, k.status);
    println!("  limits:    {}", limits_line(k));
    if let Some(at) = &k.period_resets {
        println!("  resets:    {at}");
    }
    println!("  created:   {}", k.created);
    println!("  last used: {}", k.last_used.as_deref().unwrap_or("never"));
    if let Some(at) = &k.revoked {
        println!("  revoked:   {at}");
    }
}

fn print_created(created: &CreatedKey, as_json: bool, what: &str) -> Result<i32, Failure> {
    if as_json {
        return print_json(created);
    }
    println!("{what} key {}", created.info.name);
    println!("secret: {}", created.secret);
    println!("  (shown this once: only its SHA-256 is stored. Clients send it as Authorization: Bearer …)");
    println!("  limits: {}", limits_line(&created.info));
    Ok(0)
}

pub async fn run(config: &Config, command: KeysCommand) -> Result<i32, Failure> {
    let keys = Keys::open(config).await?;
    match command {
        KeysCommand::Create { name, limits, json } => {
            let limits = update_of(limits)?.applied_to(Default::default());
            print_created(&keys.create(&name, limits).await?, json.json, "created")
        }
        KeysCommand::List(json) => {
            let all = keys.list().await?;
            if json.json {
                return print_json(&all);
            }
            if all.is_empty() && keys.required().await? {
                println!("no keys, and keys are required: only EXAI_WS_TOKEN gets in");
                println!("create one with: exai keys create NAME, or stop requiring keys: exai keys allow-keyless");
            } else if all.is_empty() {
                println!("no keys: a daemon on loopback without EXAI_WS_TOKEN serves anyone on this machine");
                println!("create one with: exai keys create NAME [--budget-usd 10 --rpm 60]");
            }
            for k in &all {
                let last = k.last_used.as_deref().unwrap_or("never used");
                println!(
                    "{:<20} {:<8} {}  ({last})",
                    k.name,
                    format!("{:?}", k.status).to_lowercase(),
                    limits_line(k)
                );
            }
            Ok(0)
        }
        KeysCommand::Show { name, json } => {
            let k = keys.show(&name).await?;
            if json.json {
                return print_json(&k);
            }
            print_key(&k);
            Ok(0)
        }
        KeysCommand::Update { name, limits, json } => {
            let k = keys.update(&name, update_of(limits)?).await?;
            if json.json {
                return print_json(&k);
            }
            print_key(&k);
            Ok(0)
        }
        KeysCommand::Revoke { name, json } => {
            let k = keys.revoke(&name).await?;
            if json.json {
                return print_json(&k);
            }
            println!("revoked key {} (refused everywhere within a second)", k.name);
            Ok(0)
        }
        KeysCommand::Rotate { name, json } => print_created(&keys.rotate(&name).await?, json.json, "rotated"),
        KeysCommand::Delete { name, json } => {
            keys.delete(&name).await?;
            if json.json {
                return print_json(&serde_json::json!({"deleted": name}));
            }
            println!("deleted key {name} (refused everywhere within a second); keys are still required");
            Ok(0)
        }
        KeysCommand::AllowKeyless(json) => {
            keys.allow_keyless().await?;
            if json.json {
                return print_json(&serde_json::json!({"keys_required": false}));
            }
            println!(
                "keys are no longer required: a daemon on loopback without EXAI_WS_TOKEN serves anyone on this machine"
            );
            Ok(0)
        }
    }
}

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Self {
        let code = match e {
            KeyError::Invalid(_) => 2,
            KeyError::NoStore => 3,
            KeyError::Store(_) => 6,
            _ => 7,
        };
        Failure::new(code, e.to_string())
    }
}
