//! Provider entries: the three built-ins (GLM, Kimi, MiniMax) and any number of
//! OpenAI-compatible providers (vLLM, Ollama, LM Studio, OpenRouter…) declared in the file.
//!
//! Environment variables for a provider named `NAME` are `NAME_API_KEY`, `NAME_BASE_URL`,
//! `NAME_MAX_INFLIGHT`, `NAME_RPM` and `NAME_TIMEOUT_SECS` (upper-cased, `-` → `_`); the
//! built-ins also accept their vendors' historic key names (`ZHIPUAI_API_KEY`, …).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;
use super::deployments::{self, DeploymentConfig, Inherited, Strategy};
use super::file::{FileModel, FileProvider};
use super::source::{Resolver, Secret, Source, any, positive};

/// Which wire dialect a provider speaks (all are OpenAI chat-completions with quirks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProviderKind {
    /// Z.ai GLM.
    Glm,
    /// Moonshot Kimi.
    Kimi,
    /// MiniMax M2.
    Minimax,
    /// Any OpenAI-compatible endpoint.
    OpenaiCompat,
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderKind::Glm => "glm",
            ProviderKind::Kimi => "kimi",
            ProviderKind::Minimax => "minimax",
            ProviderKind::OpenaiCompat => "openai_compat",
        })
    }
}

impl FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "glm" => Ok(Self::Glm),
            "kimi" => Ok(Self::Kimi),
            "minimax" => Ok(Self::Minimax),
            "openai_compat" | "openai" => Ok(Self::OpenaiCompat),
            other => Err(format!(
                "unknown provider kind '{other}'; expected glm, kimi, minimax or openai_compat"
            )),
        }
    }
}

/// A model declared (or a built-in overridden) in the file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModelDecl {
    /// Upstream model id.
    pub id: String,
    /// Context window in tokens.
    pub context_window: Option<u32>,
    /// Largest output in tokens.
    pub max_output: Option<u32>,
    /// Supports a thinking switch.
    pub thinking: Option<bool>,
    /// Accepts images.
    pub vision: Option<bool>,
    /// Has provider-native web search.
    pub web_search: Option<bool>,
    /// USD per million input tokens.
    pub input_per_m: Option<f64>,
    /// USD per million output tokens.
    pub output_per_m: Option<f64>,
    /// USD per million input tokens read from the provider's cache.
    pub cached_input_per_m: Option<f64>,
    /// Extra names for this model.
    pub aliases: Vec<String>,
}

impl From<FileModel> for ModelDecl {
    fn from(m: FileModel) -> Self {
        Self {
            id: m.id,
            context_window: m.context_window,
            max_output: m.max_output,
            thinking: m.thinking,
            vision: m.vision,
            web_search: m.web_search,
            input_per_m: m.input_per_m,
            output_per_m: m.output_per_m,
            cached_input_per_m: m.cached_input_per_m,
            aliases: m.aliases,
        }
    }
}

/// One provider, resolved.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProviderConfig {
    /// Name used in model ids (`glm/glm-4.6`), metrics and the fallback chain.
    pub name: String,
    /// Wire dialect.
    pub kind: ProviderKind,
    /// Explicitly disabled in the file.
    pub enabled: bool,
    /// The key, if any.
    pub api_key: Option<Secret>,
    /// Where the key came from, printable (`GLM_API_KEY (env)`).
    pub key_source: Option<String>,
    /// Variables that would configure the key, for error messages.
    pub key_env: Vec<String>,
    /// Base URL up to (not including) `/chat/completions`.
    pub base_url: String,
    /// The provider's Anthropic-compatible endpoint, up to (not including) `/v1/messages`, when
    /// it has one: `/v1/messages` requests are passed through to it. `None` translates them.
    pub anthropic_base_url: Option<String>,
    /// The wires its endpoints speak: `chat` and `responses` at `base_url`, `messages` at
    /// `anthropic_base_url`.
    /// A request in one of them is relayed; in another, translated.
    pub wires: Vec<crate::wire::Wire>,
    /// The `anthropic-beta` values relayed to its Anthropic endpoint (`NAME_ANTHROPIC_BETAS`,
    /// comma-separated; `*` for all, `none` for none). `None`: the provider's own allow-list
    /// (its quirks: what the endpoint is known to accept).
    pub anthropic_betas: Option<Vec<String>>,
    /// Requests in flight at this provider, over all its deployments. By default, the
    /// built-in value for each deployment.
    pub max_inflight: usize,
    /// Requests per minute, if limited: each deployment's default (a key's limit).
    pub rpm: Option<u32>,
    /// Tokens per minute, if limited: each deployment's default.
    pub tpm: Option<u32>,
    /// The endpoints and keys that serve its models (at least one); `api_key` and `base_url`
    /// above are the first's.
    pub deployments: Vec<DeploymentConfig>,
    /// How calls are spread over them.
    pub strategy: Strategy,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// The model used when routing picks this provider without a model.
    pub default_model: String,
    /// Models declared in the file.
    pub models: Vec<ModelDecl>,
}

impl ProviderConfig {
    /// Whether its endpoints speak `wire` (a request in it is relayed, not translated).
    pub fn speaks(&self, wire: crate::wire::Wire) -> bool {
        self.wires.contains(&wire)
    }

    /// Whether requests can be sent: enabled, and with a key unless the provider is an
    /// OpenAI-compatible endpoint (local servers often need none).
    pub fn is_ready(&self) -> bool {
        self.enabled && (self.api_key.is_some() || self.kind == ProviderKind::OpenaiCompat)
    }

    /// The configuration one deployment's client runs with: this provider's, with the
    /// deployment's endpoint, key and rate.
    pub fn for_deployment(&self, deployment: &DeploymentConfig) -> ProviderConfig {
        ProviderConfig {
            api_key: deployment.api_key.clone(),
            key_source: deployment.key_source.clone(),
            base_url: deployment.base_url.clone(),
            anthropic_base_url: deployment.anthropic_base_url.clone(),
            rpm: deployment.rpm,
            tpm: deployment.tpm,
            deployments: vec![deployment.clone()],
            ..self.clone()
        }
    }

    /// A sentence saying how to configure this provider.
    pub fn setup_hint(&self) -> String {
        if !self.enabled {
            return format!("enable it in exai.toml ([providers.{}] enabled = true)", self.name);
        }
        format!("set {}", self.key_env.join(" or "))
    }
}

struct Builtin {
    name: &'static str,
    kind: ProviderKind,
    key_env: &'static [&'static str],
    base_url: &'static str,
    anthropic_base_url: &'static str,
    max_inflight: usize,
    default_model: &'static str,
}

const BUILTINS: [Builtin; 3] = [
    Builtin {
        name: "glm",
        kind: ProviderKind::Glm,
        key_env: &["GLM_API_KEY", "ZHIPUAI_API_KEY"],
        base_url: "https://api.z.ai/api/paas/v4",
        anthropic_base_url: "https://api.z.ai/api/anthropic",
        max_inflight: 4,
        default_model: "glm-4.6",
    },
    Builtin {
        name: "kimi",
        kind: ProviderKind::Kimi,
        key_env: &["KIMI_API_KEY", "MOONSHOT_API_KEY"],
        base_url: "https://api.moonshot.ai/v1",
        anthropic_base_url: "https://api.moonshot.ai/anthropic",
        max_inflight: 6,
        default_model: "kimi-k2-0905-preview",
    },
    Builtin {
        name: "minimax",
        kind: ProviderKind::Minimax,
        key_env: &["MINIMAX_API_KEY", "MINIMAX_M2_KEY"],
        base_url: "https://api.minimax.io/v1",
        anthropic_base_url: "https://api.minimax.io/anthropic",
        max_inflight: 4,
        default_model: "MiniMax-M2",
    },
];

fn env_prefix(name: &str) -> String {
    name.to_ascii_uppercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Resolves the built-ins (always present, ready when keyed) and the file's extra providers.
pub(super) fn resolve(
    r: &mut Resolver<'_>,
    mut file: BTreeMap<String, FileProvider>,
) -> Result<Vec<ProviderConfig>, ConfigError> {
    let mut out = Vec::new();
    for b in &BUILTINS {
        let entry = file.remove(b.name).unwrap_or_default();
        let mut key_env: Vec<String> = b.key_env.iter().map(|s| s.to_string()).collect();
        key_env.extend(entry.api_key_env.clone());
        out.push(one(r, b.name, Some(b), entry, key_env)?);
    }
    for (name, entry) in file {
        let prefix = env_prefix(&name);
        let mut key_env = vec![format!("{prefix}_API_KEY")];
        key_env.extend(entry.api_key_env.clone());
        out.push(one(r, &name, None, entry, key_env)?);
    }
    Ok(out)
}

fn one(
    r: &mut Resolver<'_>,
    name: &str,
    builtin: Option<&Builtin>,
    mut entry: FileProvider,
    key_env: Vec<String>,
) -> Result<ProviderConfig, ConfigError> {
    let key = |leaf: &str| format!("providers.{name}.{leaf}");
    let prefix = env_prefix(name);
    let invalid = |leaf: &str, origin: Source, message: String| ConfigError::Invalid {
        key: key(leaf),
        origin,
        message,
    };
    let kind = match (&entry.kind, builtin) {
        (Some(k), _) => k.parse().map_err(|m| invalid("kind", Source::File, m))?,
        (None, Some(b)) => b.kind,
        (None, None) => ProviderKind::OpenaiCompat,
    };
    r.record(
        &key("kind"),
        Some(kind.to_string()),
        if entry.kind.is_some() {
            Source::File
        } else {
            Source::Default
        },
    );
    let enabled = entry.enabled.unwrap_or(true);
    let env_names: Vec<&str> = key_env.iter().map(String::as_str).collect();
    let (api_key, key_source) = r.secret(&key("api_key"), &env_names, entry.api_key);
    let base_url_env = format!("{prefix}_BASE_URL");
    let base_url = r.value(
        &key("base_url"),
        &[&base_url_env],
        entry.base_url,
        builtin.map(|b| b.base_url.to_string()),
        http_url,
    )?;
    let base_url = match base_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            return Err(invalid(
                "base_url",
                Source::File,
                format!("an OpenAI-compatible provider needs base_url (or {base_url_env})"),
            ));
        }
    };
    // `none` turns a built-in provider's Anthropic endpoint off.
    let anthropic_base_url = r
        .value(
            &key("anthropic_base_url"),
            &[&format!("{prefix}_ANTHROPIC_BASE_URL")],
            entry.anthropic_base_url,
            builtin.map(|b| b.anthropic_base_url.to_string()),
            |url: &String| if url == "none" { Ok(()) } else { http_url(url) },
        )?
        .filter(|url| url != "none")
        .map(|url| url.trim_end_matches('/').to_string());
    let default_wires = if anthropic_base_url.is_some() {
        "chat,messages"
    } else {
        "chat"
    };
    let wires = r
        .value(
            &key("wires"),
            &[&format!("{prefix}_WIRES")],
            entry.wires.map(|w| w.join(",")),
            Some(default_wires.to_string()),
            |list: &String| parse_wires(list).map(|_| ()),
        )?
        .map(|list| parse_wires(&list))
        .transpose()
        .map_err(|m| invalid("wires", Source::File, m))?
        .unwrap_or_default();
    if wires.contains(&crate::wire::Wire::Messages) && anthropic_base_url.is_none() {
        return Err(invalid(
            "wires",
            Source::File,
            format!("messages needs an Anthropic endpoint: set anthropic_base_url (or {prefix}_ANTHROPIC_BASE_URL)"),
        ));
    }
    let anthropic_betas = r
        .value(
            &key("anthropic_betas"),
            &[&format!("{prefix}_ANTHROPIC_BETAS")],
            entry
                .anthropic_betas
                .map(|b| if b.is_empty() { "none".to_string() } else { b.join(",") }),
            None,
            any,
        )?
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|b| !b.is_empty() && *b != "none")
                .map(str::to_string)
                .collect::<Vec<_>>()
        });
    let rpm = r.value(&key("rpm"), &[&format!("{prefix}_RPM")], entry.rpm, None, |rpm| {
        positive(rpm).map_err(|m| format!("{m} (omit it for no limit)"))
    })?;
    let tpm = r.value(&key("tpm"), &[&format!("{prefix}_TPM")], entry.tpm, None, |tpm| {
        positive(tpm).map_err(|m| format!("{m} (omit it for no limit)"))
    })?;
    let strategy = r
        .value(
            &key("strategy"),
            &[&format!("{prefix}_STRATEGY")],
            entry
                .strategy
                .as_deref()
                .map(str::parse::<Strategy>)
                .transpose()
                .map_err(|m| invalid("strategy", Source::File, m))?,
            Some(Strategy::default()),
            any,
        )?
        .unwrap_or_default();
    let deployments = deployments::resolve(
        r,
        &Inherited {
            provider: name,
            prefix: &prefix,
            base_url: &base_url,
            anthropic_base_url: anthropic_base_url.as_deref(),
            api_key: api_key.as_ref(),
            key_source: key_source.as_deref(),
            rpm,
            tpm,
        },
        std::mem::take(&mut entry.deployments),
    )?;
    let max_inflight = r
        .value(
            &key("max_inflight"),
            &[&format!("{prefix}_MAX_INFLIGHT")],
            entry.max_inflight,
            // Without a value of its own, a provider's cap is the built-in one for each deployment.
            Some(builtin.map_or(8, |b| b.max_inflight) * deployments.len()),
            positive,
        )?
        .unwrap_or(1);
    let first = deployments
        .iter()
        .find(|d| d.api_key.is_some())
        .unwrap_or(&deployments[0]);
    let (api_key, key_source) = (first.api_key.clone(), first.key_source.clone());
    let timeout = Duration::from_secs(
        r.value(
            &key("timeout_secs"),
            &[&format!("{prefix}_TIMEOUT_SECS")],
            entry.timeout_secs,
            Some(300),
            positive,
        )?
        .unwrap_or(300),
    );
    let models: Vec<ModelDecl> = entry.models.into_iter().map(ModelDecl::from).collect();
    let fallback_model = builtin
        .map(|b| b.default_model.to_string())
        .or_else(|| models.first().map(|m| m.id.clone()));
    let default_model = r
        .value(
            &key("default_model"),
            &[&format!("{prefix}_DEFAULT_MODEL")],
            entry.default_model,
            fallback_model,
            any,
        )?
        .ok_or_else(|| {
            invalid(
                "default_model",
                Source::File,
                "declare at least one model ([[providers.NAME.models]] id = \"…\") or default_model".into(),
            )
        })?;
    Ok(ProviderConfig {
        name: name.to_string(),
        kind,
        enabled,
        api_key,
        key_source,
        key_env,
        base_url,
        anthropic_base_url,
        wires,
        anthropic_betas,
        max_inflight,
        rpm,
        tpm,
        deployments,
        strategy,
        timeout,
        default_model,
        models,
    })
}

/// A comma-separated list of wires (`chat`, `messages`, `responses`), at least one.
fn parse_wires(list: &str) -> Result<Vec<crate::wire::Wire>, String> {
    let mut wires = Vec::new();
    for name in list.split(',').filter(|n| !n.trim().is_empty()) {
        let wire: crate::wire::Wire = name.parse()?;
        if !wires.contains(&wire) {
            wires.push(wire);
        }
    }
    if wires.is_empty() {
        return Err("name at least one wire: chat, messages, responses".into());
    }
    Ok(wires)
}

/// Accepts an absolute `http` or `https` URL.
pub(super) fn http_url(url: &String) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(()),
        _ => Err(format!("'{url}' is not an http(s) URL")),
    }
}
