//! The `exai.toml` file as it is written, before environment overlay and validation.
//!
//! The file is read as a TOML table. Fixed settings are not spelled again here: every leaf must
//! be a key declared in `keys.rs` (the resolver looks its value up by that dotted name), so a typo
//! (`global_max_inflght`) fails at start with the file name and the offending key instead of
//! being silently ignored. Two tables keep a shape of their own: `providers` (one
//! [`FileProvider`] per name, which denies unknown fields) and `aliases` (names to models). See
//! README's configuration reference for an annotated example.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, keys};

/// The whole file: the declared keys' values, the providers and the aliases.
#[derive(Debug, Default)]
pub(crate) struct FileConfig {
    pub values: FileValues,
    /// Providers by name. `glm`, `kimi` and `minimax` are built in; any other name declares an
    /// OpenAI-compatible provider and needs `base_url`.
    pub providers: BTreeMap<String, FileProvider>,
    /// Extra aliases: `fast = "glm-4.5-flash"`.
    pub aliases: BTreeMap<String, String>,
    /// Aliases over several models, of one provider or several: `coder = { models = […],
    /// strategy = "least-busy" }`.
    pub groups: BTreeMap<String, FileGroup>,
}

/// An alias as written: one model, or a group of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum FileAlias {
    One(String),
    Group(FileGroup),
}

/// An alias over several models, balanced by `strategy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileGroup {
    pub models: Vec<String>,
    pub strategy: Option<String>,
}

/// The tables with a shape of their own, read with serde (so their errors carry line and column).
#[derive(Deserialize)]
struct Sections {
    #[serde(default)]
    providers: BTreeMap<String, FileProvider>,
    #[serde(default)]
    aliases: BTreeMap<String, FileAlias>,
}

impl FileConfig {
    /// Reads the file's text; `path` names it in messages. Fails on TOML that does not parse,
    /// on a bad provider or alias, and on a key that is not declared.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let path = path.display().to_string();
        let invalid = |message: String| ConfigError::Parse {
            path: path.clone(),
            message,
        };
        let Sections { providers, aliases } = toml::from_str(text).map_err(|e| invalid(e.to_string().trim().into()))?;
        let mut rest: toml::Table = toml::from_str(text).map_err(|e| invalid(e.to_string().trim().into()))?;
        rest.remove("providers");
        rest.remove("aliases");
        let mut values = BTreeMap::new();
        collect("", rest, &mut values).map_err(invalid)?;
        Ok(Self {
            values: FileValues { path, values },
            providers,
            aliases: aliases
                .iter()
                .filter_map(|(name, a)| match a {
                    FileAlias::One(model) => Some((name.clone(), model.clone())),
                    FileAlias::Group(_) => None,
                })
                .collect(),
            groups: aliases
                .into_iter()
                .filter_map(|(name, a)| match a {
                    FileAlias::Group(group) => Some((name, group)),
                    FileAlias::One(_) => None,
                })
                .collect(),
        })
    }
}

/// Moves every leaf of `table` (under `section`, `""` at the top) into `values` by dotted key;
/// a name that is neither a declared key nor a section of some is refused.
fn collect(section: &str, table: toml::Table, values: &mut BTreeMap<String, toml::Value>) -> Result<(), String> {
    for (name, value) in table {
        let key = match section {
            "" => name.clone(),
            _ => format!("{section}.{name}"),
        };
        // A quoted name with a dot (`"limits.shared" = true`) is one name, not a path.
        let plain = !name.contains('.');
        if plain && keys::is_declared(&key) {
            values.insert(key, value);
        } else if plain && !keys::names_under(&key).is_empty() {
            let toml::Value::Table(inner) = value else {
                return Err(format!("`{key}` is a table ([{key}]), found {}", value.type_str()));
            };
            collect(&key, inner, values)?;
        } else {
            let mut known = keys::names_under(section);
            let place = match section {
                "" => {
                    known.extend(["providers", "aliases"]);
                    "the top level".to_string()
                }
                _ => format!("[{section}]"),
            };
            return Err(format!("unknown key `{key}`; {place} takes {}", known.join(", ")));
        }
    }
    Ok(())
}

/// The file's values of declared keys, by dotted key, converted when a key is resolved.
#[derive(Debug, Default)]
pub(crate) struct FileValues {
    /// The file, for messages.
    path: String,
    values: BTreeMap<String, toml::Value>,
}

impl FileValues {
    /// The text of `key`'s value: a string as written, a number or boolean as TOML prints it.
    pub(crate) fn text(&self, key: &str) -> Result<Option<String>, ConfigError> {
        self.values
            .get(key)
            .map(|value| scalar_text(value).map_err(|m| self.invalid(key, m)))
            .transpose()
    }

    /// `key`'s value as a list: an array of values, each as [`FileValues::text`] gives it.
    pub(crate) fn list(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(value) = self.values.get(key) else {
            return Ok(None);
        };
        let toml::Value::Array(items) = value else {
            return Err(self.invalid(key, format!("expected a list, found {}", value.type_str())));
        };
        items
            .iter()
            .map(|item| scalar_text(item).map_err(|m| self.invalid(key, format!("in the list, {m}"))))
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// `key`'s value as a table of names to values, as `NAME=VALUE` items sorted by name (the
    /// form its environment variable takes).
    pub(crate) fn table(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(value) = self.values.get(key) else {
            return Ok(None);
        };
        let toml::Value::Table(table) = value else {
            return Err(self.invalid(key, format!("expected a table, found {}", value.type_str())));
        };
        let mut items = table
            .iter()
            .map(|(name, value)| {
                let value = scalar_text(value).map_err(|m| self.invalid(key, format!("at {name}, {m}")))?;
                Ok((name.clone(), value))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        items.sort();
        Ok(Some(
            items
                .into_iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect(),
        ))
    }

    /// An error about `key`'s value, naming the file.
    pub(crate) fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Parse {
            path: self.path.clone(),
            message: format!("{key}: {message}"),
        }
    }
}

/// The text of a string, number or boolean.
fn scalar_text(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        // As TOML writes it (`10.0`), so a float is no integer.
        toml::Value::Float(_) => Ok(value.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!(
            "expected a string, number or boolean, found {}",
            other.type_str()
        )),
    }
}

/// One provider entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileProvider {
    /// `glm`, `kimi`, `minimax` or `openai_compat`; defaults to the name for built-ins and to
    /// `openai_compat` otherwise.
    pub kind: Option<String>,
    pub enabled: Option<bool>,
    /// Discouraged (prefer `api_key_env`), but accepted; redacted when printed.
    pub api_key: Option<String>,
    /// Name of an environment variable holding the key.
    pub api_key_env: Option<String>,
    pub base_url: Option<String>,
    /// The provider's Anthropic-compatible endpoint (`none` for none).
    pub anthropic_base_url: Option<String>,
    /// The wires its endpoints speak (`chat`, `messages`, `responses`), comma-separated in the
    /// environment.
    pub wires: Option<Vec<String>>,
    /// The `anthropic-beta` values forwarded to its Anthropic endpoint (`*` for all, an empty
    /// list for none); by default, those the endpoint is known to accept.
    pub anthropic_betas: Option<Vec<String>>,
    pub max_inflight: Option<usize>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub timeout_secs: Option<u64>,
    /// How calls are spread over the deployments (`weighted`, `least-busy`, `latency`,
    /// `usage`).
    pub strategy: Option<String>,
    /// The endpoints and keys serving this provider's models; none: the provider's own.
    #[serde(default)]
    pub deployments: Vec<super::deployments::FileDeployment>,
    pub default_model: Option<String>,
    /// Models this provider serves, in addition to (or, for OpenAI-compatible providers,
    /// instead of) the built-in catalog.
    #[serde(default)]
    pub models: Vec<FileModel>,
}

/// A model declared or overridden in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileModel {
    pub id: String,
    pub context_window: Option<u32>,
    pub max_output: Option<u32>,
    pub thinking: Option<bool>,
    pub vision: Option<bool>,
    pub web_search: Option<bool>,
    pub input_per_m: Option<f64>,
    pub output_per_m: Option<f64>,
    /// USD per million input tokens read from the provider's cache (default: the input price).
    pub cached_input_per_m: Option<f64>,
    #[serde(default)]
    pub aliases: Vec<String>,
}
