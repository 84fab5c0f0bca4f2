//! A provider's deployments: the endpoints and keys that serve its models, each with its own
//! base URL, key, weight, `max_inflight`, `rpm` and `tpm`, and the strategy that spreads calls
//! over them.
//!
//! Where they come from, first found wins:
//! 1. the environment's lists: `NAME_API_KEYS=k1,k2` (and `NAME_BASE_URLS=u1,u2`: one URL for
//!    every key, one per key, or one key for every URL);
//! 2. the file's `[[providers.NAME.deployments]]` tables, each inheriting the provider's values
//!    for what it leaves out;
//! 3. the provider itself (`NAME_API_KEY`, `base_url`): one deployment, as before deployments
//!    existed.
//!
//! A deployment is named in every report by its label — `glm#1`, or `glm#eu` when named — and
//! never by its key.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use super::ConfigError;
use super::source::{Resolver, Secret, Source, positive};

/// How calls are spread over a provider's deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Strategy {
    /// In proportion to each deployment's weight (the default).
    #[default]
    Weighted,
    /// The deployment with the fewest calls in flight.
    LeastBusy,
    /// The deployment with the lowest moving average of time to first byte.
    Latency,
    /// The deployment with the most headroom under its rpm and tpm (as its `x-ratelimit-*`
    /// headers report it, where the provider sends them; else as counted here).
    Usage,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Weighted => "weighted",
            Strategy::LeastBusy => "least-busy",
            Strategy::Latency => "latency",
            Strategy::Usage => "usage",
        })
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "weighted" => Ok(Self::Weighted),
            "least-busy" | "least_busy" => Ok(Self::LeastBusy),
            "latency" => Ok(Self::Latency),
            "usage" => Ok(Self::Usage),
            other => Err(format!(
                "unknown strategy '{other}'; expected weighted, least-busy, latency or usage"
            )),
        }
    }
}

/// An alias over several models — of one provider or several — whose calls are spread over
/// them by `strategy` (each model's own deployments then by its provider's).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModelGroup {
    /// The models, as names the catalog resolves (`glm-4.6`, `kimi/kimi-k2-0905-preview`).
    pub models: Vec<String>,
    /// How calls are spread over them.
    pub strategy: Strategy,
}

/// One deployment, resolved.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeploymentConfig {
    /// `glm#1`, or `glm#eu` when named: how every report names it.
    pub label: String,
    /// Base URL up to (not including) `/chat/completions`.
    pub base_url: String,
    /// Its Anthropic-compatible endpoint, when the provider has one.
    pub anthropic_base_url: Option<String>,
    /// Its key, if any.
    pub api_key: Option<Secret>,
    /// Where the key came from, printable (`GLM_API_KEYS[2] (env)`).
    pub key_source: Option<String>,
    /// Its share of calls under the `weighted` strategy.
    pub weight: u32,
    /// Calls in flight at this deployment, if limited (the provider's `max_inflight` bounds
    /// them all together).
    pub max_inflight: Option<usize>,
    /// Requests per minute its key allows.
    pub rpm: Option<u32>,
    /// Tokens per minute its key allows.
    pub tpm: Option<u32>,
}

/// A `[[providers.NAME.deployments]]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDeployment {
    /// Its name in labels (`glm#eu`); the index when left out.
    pub name: Option<String>,
    pub base_url: Option<String>,
    pub anthropic_base_url: Option<String>,
    /// Discouraged (prefer `api_key_env`), but accepted; redacted when printed.
    pub api_key: Option<String>,
    /// The environment variable holding its key.
    pub api_key_env: Option<String>,
    pub weight: Option<u32>,
    pub max_inflight: Option<usize>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
}

/// What a deployment inherits from its provider.
pub(super) struct Inherited<'a> {
    pub provider: &'a str,
    pub prefix: &'a str,
    pub base_url: &'a str,
    pub anthropic_base_url: Option<&'a str>,
    pub api_key: Option<&'a Secret>,
    pub key_source: Option<&'a str>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
}

/// Resolves a provider's deployments (at least one).
pub(super) fn resolve(
    r: &mut Resolver<'_>,
    parent: &Inherited<'_>,
    file: Vec<FileDeployment>,
) -> Result<Vec<DeploymentConfig>, ConfigError> {
    let (provider, prefix) = (parent.provider, parent.prefix);
    let keys_var = format!("{prefix}_API_KEYS");
    let urls_var = format!("{prefix}_BASE_URLS");
    let (keys, _) = r.secret(&format!("providers.{provider}.api_keys"), &[&keys_var], None);
    let urls = r.value::<String>(
        &format!("providers.{provider}.base_urls"),
        &[&urls_var],
        None,
        None,
        |list: &String| split(list).iter().try_for_each(super::providers::http_url),
    )?;
    let invalid = |leaf: &str, message: String| ConfigError::Invalid {
        key: format!("providers.{provider}.{leaf}"),
        origin: Source::Env(urls_var.clone()),
        message,
    };
    let keys: Vec<String> = keys.map(|k| split(k.expose())).unwrap_or_default();
    let urls: Vec<String> = urls.map(|u| split(&u)).unwrap_or_default();
    if !keys.is_empty() || urls.len() > 1 {
        let count = keys.len().max(urls.len());
        if keys.len() > 1 && urls.len() > 1 && keys.len() != urls.len() {
            return Err(invalid(
                "base_urls",
                format!(
                    "{keys_var} has {} keys and {urls_var} {} URLs: give one URL for every key, one per key, or one key for every URL",
                    keys.len(),
                    urls.len()
                ),
            ));
        }
        return Ok((0..count)
            .map(|i| {
                let url = urls.get(i).or(urls.first()).map_or(parent.base_url, String::as_str);
                let (api_key, key_source) = match keys.get(i).or(if keys.len() == 1 { keys.first() } else { None }) {
                    Some(key) => (
                        Some(Secret::new(key.clone())),
                        Some(format!("{keys_var}[{}] (env)", i.min(keys.len() - 1) + 1)),
                    ),
                    None => (parent.api_key.cloned(), parent.key_source.map(str::to_string)),
                };
                DeploymentConfig {
                    label: format!("{provider}#{}", i + 1),
                    base_url: url.trim_end_matches('/').to_string(),
                    anthropic_base_url: parent.anthropic_base_url.map(str::to_string),
                    api_key,
                    key_source,
                    weight: 1,
                    max_inflight: None,
                    rpm: parent.rpm,
                    tpm: parent.tpm,
                }
            })
            .collect());
    }
    if file.is_empty() {
        return Ok(vec![DeploymentConfig {
            label: format!("{provider}#1"),
            base_url: parent.base_url.to_string(),
            anthropic_base_url: parent.anthropic_base_url.map(str::to_string),
            api_key: parent.api_key.cloned(),
            key_source: parent.key_source.map(str::to_string),
            weight: 1,
            max_inflight: None,
            rpm: parent.rpm,
            tpm: parent.tpm,
        }]);
    }
    let mut out: Vec<DeploymentConfig> = Vec::with_capacity(file.len());
    for (i, d) in file.into_iter().enumerate() {
        let name = d.name.clone().unwrap_or_else(|| (i + 1).to_string());
        let label = format!("{provider}#{name}");
        let at = |leaf: &str| format!("providers.{provider}.deployments.{name}.{leaf}");
        let file_invalid = |leaf: &str, message: String| ConfigError::Invalid {
            key: at(leaf),
            origin: Source::File,
            message,
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            // The label names the deployment in metrics, the ledger's rows and Redis fields.
            return Err(file_invalid(
                "name",
                format!("'{name}' may have only letters, digits, '-', '_' and '.'"),
            ));
        }
        if out.iter().any(|o| o.label == label) {
            return Err(file_invalid("name", format!("two deployments are named '{name}'")));
        }
        let env: Vec<&str> = d.api_key_env.iter().map(String::as_str).collect();
        let (api_key, key_source) = match r.secret(&at("api_key"), &env, d.api_key.clone()) {
            (Some(key), source) => (Some(key), source),
            (None, _) if d.api_key_env.is_some() => {
                return Err(file_invalid(
                    "api_key_env",
                    format!("{} is not set", d.api_key_env.unwrap_or_default()),
                ));
            }
            (None, _) => (parent.api_key.cloned(), parent.key_source.map(str::to_string)),
        };
        let base_url = d.base_url.unwrap_or_else(|| parent.base_url.to_string());
        super::providers::http_url(&base_url).map_err(|m| file_invalid("base_url", m))?;
        let anthropic_base_url = match d.anthropic_base_url.as_deref() {
            Some("none") => None,
            Some(url) => {
                super::providers::http_url(&url.to_string()).map_err(|m| file_invalid("anthropic_base_url", m))?;
                Some(url.trim_end_matches('/').to_string())
            }
            None => parent.anthropic_base_url.map(str::to_string),
        };
        for (leaf, value) in [("weight", d.weight), ("rpm", d.rpm), ("tpm", d.tpm)] {
            if let Some(v) = value {
                positive(&v).map_err(|m| file_invalid(leaf, m))?;
            }
        }
        if let Some(v) = d.max_inflight {
            positive(&v).map_err(|m| file_invalid("max_inflight", m))?;
        }
        out.push(DeploymentConfig {
            label,
            base_url: base_url.trim_end_matches('/').to_string(),
            anthropic_base_url,
            api_key,
            key_source,
            weight: d.weight.unwrap_or(1),
            max_inflight: d.max_inflight,
            rpm: d.rpm.or(parent.rpm),
            tpm: d.tpm.or(parent.tpm),
        });
    }
    Ok(out)
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}
