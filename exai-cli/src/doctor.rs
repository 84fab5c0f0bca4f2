//! `exai doctor`: every way the set-up can be wrong, checked, one verdict per line — so that no
//! one has to write an investigation report again.
//!
//! Config valid; each provider's key present and accepted (a cheap authenticated `GET /models`);
//! Redis reachable and writable; the daemon port free or held by a healthy exai-ws (asked via
//! `/healthz`) or by something else; the clock (against the providers' `Date` headers) and TLS.
//! Exit 0 when nothing failed, 1 otherwise. `--offline` skips whatever leaves this machine.

use std::time::Duration;

use exai_core::{Config, Gateway, MemoryBackend};
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::exit::Failure;

/// Clock skew beyond which the clock check fails (signed requests and TLS start to break).
const MAX_SKEW: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Serialize)]
struct Check {
    name: String,
    verdict: Verdict,
    detail: String,
}

fn check(name: impl Into<String>, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        verdict,
        detail: detail.into(),
    }
}

pub async fn run(offline: bool, as_json: bool) -> Result<i32, Failure> {
    let mut checks = Vec::new();
    match Config::from_env() {
        Err(e) => checks.push(check("config", Verdict::Fail, e.to_string())),
        Ok(config) => {
            let source = config
                .file
                .as_ref()
                .map_or("environment and defaults".to_string(), |f| f.display().to_string());
            checks.push(check("config", Verdict::Pass, format!("valid ({source})")));
            let gateway = Gateway::new(config).await?;
            checks.extend(providers(&gateway, offline).await);
            checks.push(memory(&gateway, offline).await);
            checks.push(daemon_port(&gateway).await);
            checks.push(tls());
            gateway.shutdown().await;
        }
    }
    let ok = checks.iter().all(|c| c.verdict != Verdict::Fail);
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"ok": ok, "checks": checks}))?
        );
    } else {
        for c in &checks {
            let verdict = format!("{:?}", c.verdict).to_uppercase();
            println!("{verdict:<5} {:<16} {}", c.name, c.detail);
        }
    }
    Ok(if ok { 0 } else { 1 })
}

async fn providers(gateway: &Gateway, offline: bool) -> Vec<Check> {
    let config = gateway.config();
    let mut out = Vec::new();
    if config.ready_providers().next().is_none() {
        out.push(check(
            "providers",
            Verdict::Fail,
            "no provider configured: set GLM_API_KEY, KIMI_API_KEY or MINIMAX_API_KEY, or declare an \
             OpenAI-compatible provider in exai.toml ([providers.NAME] base_url = …); `exai mock-upstream` runs one offline",
        ));
    }
    if offline {
        for p in &config.providers {
            let (verdict, detail) = match (&p.key_source, p.is_ready()) {
                (_, false) => (Verdict::Skip, format!("not configured: {}", p.setup_hint())),
                (Some(source), true) => (
                    Verdict::Pass,
                    format!("key present ({source}); not checked (--offline)"),
                ),
                (None, true) => (
                    Verdict::Pass,
                    format!("{} without a key; not checked (--offline)", p.base_url),
                ),
            };
            out.push(check(format!("provider {}", p.name), verdict, detail));
        }
        out.push(clock(&[], true));
        return out;
    }
    let results = gateway.check_providers().await;
    let dates: Vec<String> = results.iter().filter_map(|r| r.server_date.clone()).collect();
    // A provider with several deployments is checked once per deployment, named by its label
    // (`glm#2`), never its key.
    let several = |provider: &str| results.iter().filter(|r| r.provider == provider).count() > 1;
    let names: Vec<String> = results
        .iter()
        .map(|r| match several(&r.provider) {
            true => format!("provider {} deployment {}", r.provider, r.deployment),
            false => format!("provider {}", r.provider),
        })
        .collect();
    for (r, name) in results.into_iter().zip(names) {
        let verdict = match (r.configured, r.ok) {
            (false, _) => Verdict::Skip,
            (true, true) => Verdict::Pass,
            (true, false) => Verdict::Fail,
        };
        out.push(check(name, verdict, r.message));
    }
    out.push(clock(&dates, false));
    out
}

async fn memory(gateway: &Gateway, offline: bool) -> Check {
    let memory = &gateway.config().memory;
    match memory.backend {
        MemoryBackend::Memory => {
            return check(
                "memory",
                Verdict::Pass,
                "in this process only (memory.backend = memory); unset EXAI_MEMORY to keep conversations in SQLite",
            );
        }
        MemoryBackend::Redis if offline => {
            return check("memory", Verdict::Skip, "redis configured; not checked (--offline)");
        }
        _ => {}
    }
    let status = gateway.check_memory().await;
    let path = memory.sqlite_path.display();
    match (memory.backend, status.backend, status.reachable) {
        (MemoryBackend::Sqlite, "sqlite", true) => check("memory", Verdict::Pass, format!("sqlite {path}: writable")),
        (MemoryBackend::Sqlite, "sqlite", false) => check(
            "memory",
            Verdict::Fail,
            format!(
                "sqlite {path}: {}; requests still work, in process",
                status.error.unwrap_or_default()
            ),
        ),
        (MemoryBackend::Sqlite, _, _) => check(
            "memory",
            Verdict::Fail,
            format!("sqlite {path} could not be opened (the log says why); conversations stay in process"),
        ),
        (_, _, true) => check("memory", Verdict::Pass, "redis reachable and writable"),
        (_, _, false) => {
            let why = status.error.unwrap_or_default();
            check(
                "memory",
                Verdict::Fail,
                format!("redis unreachable ({why}); start it or fix REDIS_URL — requests still work, in process"),
            )
        }
    }
}

async fn daemon_port(gateway: &Gateway) -> Check {
    let daemon = &gateway.config().daemon;
    let addr = format!("{}:{}", daemon.host, daemon.port);
    match std::net::TcpListener::bind(&addr) {
        Ok(_) => check("daemon port", Verdict::Pass, format!("{addr} is free for exai-ws")),
        Err(_) => {
            let url = format!("http://{addr}/healthz");
            let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build();
            let healthy = match client {
                Ok(c) => match c.get(&url).send().await {
                    Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default().contains("exai"),
                    _ => false,
                },
                Err(_) => false,
            };
            if healthy {
                check(
                    "daemon port",
                    Verdict::Pass,
                    format!("{addr} is held by a healthy exai-ws"),
                )
            } else {
                let holder = match exai_mcp::port_holder(daemon.port) {
                    Some(h) => h.to_string(),
                    None => "another program".to_string(),
                };
                check(
                    "daemon port",
                    Verdict::Fail,
                    format!("{addr} is held by {holder}, not a healthy exai-ws: stop it, or set EXAI_WS_PORT"),
                )
            }
        }
    }
}

fn clock(server_dates: &[String], offline: bool) -> Check {
    let now = OffsetDateTime::now_utc();
    // RFC 3339 to the second (`2026-11-25T18:05:00Z`), not `… +00:00:00`.
    let now_text = now
        .replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.to_string());
    if now.year() < 2025 {
        return check(
            "clock",
            Verdict::Fail,
            format!("the system clock says {now_text}; set the time (TLS and signatures will fail)"),
        );
    }
    let skews: Vec<i64> = server_dates
        .iter()
        .filter_map(|d| OffsetDateTime::parse(d, &Rfc2822).ok())
        .map(|server| (now - server).whole_seconds().abs())
        .collect();
    match skews.iter().max() {
        Some(skew) if *skew as u64 > MAX_SKEW.as_secs() => check(
            "clock",
            Verdict::Fail,
            format!("{skew} s away from the providers' clocks; sync the system time (NTP)"),
        ),
        Some(skew) => check(
            "clock",
            Verdict::Pass,
            format!("within {skew} s of the providers' clocks"),
        ),
        None if offline => check("clock", Verdict::Pass, format!("{now_text} (not compared: --offline)")),
        None => check(
            "clock",
            Verdict::Pass,
            format!("{now_text} (no provider answered with a date to compare)"),
        ),
    }
}

fn tls() -> Check {
    match reqwest::Client::builder().https_only(true).build() {
        Ok(_) => check(
            "tls",
            Verdict::Pass,
            "rustls client ready, with the platform's root certificates",
        ),
        Err(e) => check("tls", Verdict::Fail, format!("cannot set up TLS: {e}")),
    }
}
