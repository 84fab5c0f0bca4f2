//! Where each configuration value came from, and secrets that never print.
//!
//! Loading resolves every setting through a [`Resolver`]: environment first, then the file, then
//! the built-in default. Each resolution is recorded as a [`ConfigEntry`] (key, printable value,
//! [`Source`]), so `exai config` can show the effective configuration with its sources and with
//! secrets redacted — the old system's docs and config disagreed on ports; ours prints the truth.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use super::ConfigError;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Source {
    /// The built-in default.
    Default,
    /// The configuration file (its path is in [`super::Config::file`]).
    File,
    /// An environment variable, by name.
    Env(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File => f.write_str("file"),
            Source::Env(name) => write!(f, "env {name}"),
        }
    }
}

/// A secret value (an API key, a URL with a password). `Debug` and `Display` redact it; only
/// [`Secret::expose`] gives the value, and only provider and memory clients call it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[redacted, {} chars]", self.0.chars().count())
    }
}

/// One line of the effective configuration.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConfigEntry {
    /// Dotted key, as in the file (`limits.global_max_inflight`).
    pub key: String,
    /// The value as printed; secrets are redacted, unset values are `None`.
    pub value: Option<String>,
    /// Where it came from.
    pub source: Source,
    /// Whether the value is a secret (and so redacted).
    pub secret: bool,
}

/// Resolves settings from env, file and defaults, recording each as a [`ConfigEntry`].
pub(crate) struct Resolver<'a> {
    env: &'a HashMap<String, String>,
    pub(crate) entries: Vec<ConfigEntry>,
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(env: &'a HashMap<String, String>) -> Self {
        Self {
            env,
            entries: Vec::new(),
        }
    }

    /// The first non-empty variable among `names`, with its name.
    pub(crate) fn env_var(&self, names: &[&str]) -> Option<(String, &'a str)> {
        names.iter().find_map(|name| {
            self.env
                .get(*name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(|v| ((*name).to_string(), v))
        })
    }

    /// Resolves a parsed value: env, then file, then default.
    pub(crate) fn value<T>(
        &mut self,
        key: &str,
        env: &[&str],
        file: Option<T>,
        default: Option<T>,
    ) -> Result<Option<T>, ConfigError>
    where
        T: FromStr + fmt::Display,
        T::Err: fmt::Display,
    {
        let (value, source) = if let Some((name, raw)) = self.env_var(env) {
            let parsed = raw.parse::<T>().map_err(|e| ConfigError::Invalid {
                key: key.to_string(),
                origin: Source::Env(name.clone()),
                message: format!("cannot parse '{raw}': {e}"),
            })?;
            (Some(parsed), Source::Env(name))
        } else if let Some(v) = file {
            (Some(v), Source::File)
        } else {
            (default, Source::Default)
        };
        self.entries.push(ConfigEntry {
            key: key.to_string(),
            value: value.as_ref().map(ToString::to_string),
            source,
            secret: false,
        });
        Ok(value)
    }

    /// Resolves a value that must be present (it has a default).
    pub(crate) fn required<T>(&mut self, key: &str, env: &[&str], file: Option<T>, default: T) -> Result<T, ConfigError>
    where
        T: FromStr + fmt::Display,
        T::Err: fmt::Display,
    {
        self.value(key, env, file, Some(default))?
            .ok_or_else(|| ConfigError::Invalid {
                key: key.to_string(),
                origin: Source::Default,
                message: "missing".into(),
            })
    }

    /// Resolves a secret: env, then file. Returns the secret and a description of its source
    /// that is safe to print (`GLM_API_KEY (env)`).
    pub(crate) fn secret(&mut self, key: &str, env: &[&str], file: Option<String>) -> (Option<Secret>, Option<String>) {
        let (value, source, label) = if let Some((name, raw)) = self.env_var(env) {
            let label = format!("{name} (env)");
            (Some(Secret::new(raw)), Source::Env(name), Some(label))
        } else if let Some(v) = file.filter(|v| !v.trim().is_empty()) {
            let label = format!("{key} (file)");
            (Some(Secret::new(v.trim())), Source::File, Some(label))
        } else {
            (None, Source::Default, None)
        };
        self.entries.push(ConfigEntry {
            key: key.to_string(),
            value: value.as_ref().map(ToString::to_string),
            source,
            secret: true,
        });
        (value, label)
    }

    /// Records a value decided elsewhere (a list, a derived value).
    pub(crate) fn record(&mut self, key: &str, value: Option<String>, source: Source) {
        self.entries.push(ConfigEntry {
            key: key.to_string(),
            value,
            source,
            secret: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_wins_over_file_and_default_and_is_recorded() -> Result<(), ConfigError> {
        let env = HashMap::from([("N".to_string(), " 7 ".to_string())]);
        let mut r = Resolver::new(&env);
        assert_eq!(r.required("a.n", &["N"], Some(5u32), 1)?, 7);
        assert_eq!(r.required("a.m", &["M"], Some(5u32), 1)?, 5);
        assert_eq!(r.required("a.d", &["D"], None, 1u32)?, 1);
        let sources: Vec<_> = r.entries.iter().map(|e| e.source.to_string()).collect();
        assert_eq!(sources, ["env N", "file", "default"]);
        Ok(())
    }

    #[test]
    fn bad_env_value_names_key_and_variable() {
        let env = HashMap::from([("N".to_string(), "lots".to_string())]);
        let mut r = Resolver::new(&env);
        let err = r.required("limits.n", &["N"], None, 1u32).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("limits.n") && msg.contains("env N") && msg.contains("lots"),
            "{msg}"
        );
    }

    #[test]
    fn secrets_never_print() {
        let env = HashMap::from([("K".to_string(), "sk-very-secret".to_string())]);
        let mut r = Resolver::new(&env);
        let (secret, label) = r.secret("providers.glm.api_key", &["K"], None);
        let secret = secret.map(|s| format!("{s} {s:?}")).unwrap_or_default();
        assert!(!secret.contains("very-secret"));
        assert_eq!(label.as_deref(), Some("K (env)"));
        assert!(!format!("{:?}", r.entries).contains("very-secret"));
    }
}
