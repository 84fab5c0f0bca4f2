//! Where each configuration value came from, and secrets that never print.
//!
//! Loading resolves every setting through a [`Resolver`]: code first, then the environment, then
//! the file (its value looked up by the key's dotted name), then the built-in default. Each
//! resolution is recorded as a [`ConfigEntry`] (key, printable value, [`Source`]), so `exai config`
//! can show the effective configuration with its sources and with secrets redacted — the old
//! system's docs and config disagreed on ports; ours prints the truth.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::ConfigError;
use super::file::FileValues;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Source {
    /// The built-in default.
    Default,
    /// The configuration file (its path is in [`super::Config::file`]).
    File,
    /// An environment variable, by name.
    Env(String),
    /// Set in code ([`super::ConfigBuilder::set`]) by the program embedding exai.
    Code,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File => f.write_str("file"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Code => f.write_str("code"),
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

/// A check a resolved value must pass; the message says what would be right.
pub(crate) type Check<T> = fn(&T) -> Result<(), String>;

/// Accepts any value.
pub(crate) fn any<T>(_: &T) -> Result<(), String> {
    Ok(())
}

/// Accepts 1 and more.
pub(crate) fn positive<T: PartialOrd + From<u8>>(v: &T) -> Result<(), String> {
    if *v < T::from(1) {
        return Err("must be at least 1".into());
    }
    Ok(())
}

/// One setting, declared once (in `keys.rs`): its dotted key, the variables that set it (first
/// wins), its default as text (parsed like an environment value) and the check its value must
/// pass. `T` says how the resolver reads it: [`Resolver::get`] for a value parsed from its text,
/// [`Resolver::get_secret`], [`Resolver::get_list`] (or [`Resolver::get_table`]), [`Resolver::get_path`].
pub(crate) struct Key<T> {
    pub key: &'static str,
    pub env: &'static [&'static str],
    pub default: Option<&'static str>,
    pub check: Check<T>,
}

/// Resolves settings from values set in code, env, file and defaults (in that order), checks
/// each, and records each as a [`ConfigEntry`]. A failed check names the key and the source
/// the bad value really came from.
pub(crate) struct Resolver<'a> {
    env: &'a HashMap<String, String>,
    /// Values set in code ([`super::ConfigBuilder::set`]), by key; consumed as they are resolved,
    /// so what is left names a key that no setting took.
    code: HashMap<String, String>,
    /// The file's values of declared keys.
    file: FileValues,
    pub(crate) entries: Vec<ConfigEntry>,
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(env: &'a HashMap<String, String>, code: HashMap<String, String>, file: FileValues) -> Self {
        Self {
            env,
            code,
            file,
            entries: Vec::new(),
        }
    }

    /// Keys set in code that no setting took.
    pub(crate) fn unused_code_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.code.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// The value set in code for `key`, or else the first non-empty variable among `names`,
    /// with its source.
    fn raw(&mut self, key: &str, names: &[&str]) -> Option<(String, Source)> {
        if let Some(v) = self.code.remove(key) {
            return Some((v, Source::Code));
        }
        self.env_var(names).map(|(name, v)| (v.to_string(), Source::Env(name)))
    }

    /// The first non-empty variable among `names`, with its name.
    fn env_var(&self, names: &[&str]) -> Option<(String, &'a str)> {
        names.iter().find_map(|name| {
            self.env
                .get(*name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(|v| ((*name).to_string(), v))
        })
    }

    /// Resolves a declared setting that always has a value.
    pub(crate) fn get<T>(&mut self, key: &Key<T>) -> Result<T, ConfigError>
    where
        T: FromStr + fmt::Display,
        T::Err: fmt::Display,
    {
        let default = match key.default {
            Some(text) => Some(text.parse::<T>().map_err(|e| ConfigError::Invalid {
                key: key.key.to_string(),
                origin: Source::Default,
                message: format!("built-in default '{text}' does not parse: {e}"),
            })?),
            None => None,
        };
        let file = self.file_value(key)?;
        self.value(key.key, key.env, file, default, key.check)?
            .ok_or_else(|| ConfigError::Invalid {
                key: key.key.to_string(),
                origin: Source::Default,
                message: "missing".into(),
            })
    }

    /// Resolves a declared setting whose default is computed (`default` stands in for the
    /// declared one).
    pub(crate) fn get_or<T>(&mut self, key: &Key<T>, default: T) -> Result<T, ConfigError>
    where
        T: FromStr + fmt::Display,
        T::Err: fmt::Display,
    {
        let file = self.file_value(key)?;
        Ok(self
            .value(key.key, key.env, file, Some(default), key.check)?
            .unwrap_or_else(|| unreachable!("a default was given")))
    }

    /// A declared setting's value in the file, parsed from its text like an environment value.
    /// It is read even when code or env win, so a bad file fails the same way either way.
    fn file_value<T>(&self, key: &Key<T>) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.file.text(key.key)? {
            Some(text) => text
                .parse::<T>()
                .map(Some)
                .map_err(|e| self.file.invalid(key.key, format!("cannot parse '{text}': {e}"))),
            None => Ok(None),
        }
    }

    /// Resolves a declared secret (unset unless given).
    pub(crate) fn get_secret(&mut self, key: &Key<Secret>) -> Result<Option<Secret>, ConfigError> {
        let file = self.file.text(key.key)?;
        Ok(self.secret(key.key, key.env, file).0)
    }

    /// Resolves a declared list: an array in the file, comma-separated in code and env.
    pub(crate) fn get_list(
        &mut self,
        key: &Key<Vec<String>>,
        default: Vec<String>,
    ) -> Result<(Vec<String>, Source), ConfigError> {
        let file = self.file.list(key.key)?;
        let (list, source) = self.list(key.key, key.env, file, default);
        (key.check)(&list).map_err(|message| ConfigError::Invalid {
            key: key.key.to_string(),
            origin: source.clone(),
            message,
        })?;
        Ok((list, source))
    }

    /// Resolves a declared table of names to values: a table in the file, `NAME=VALUE,…` in code
    /// and env; either way a list of `NAME=VALUE` items (none by default).
    pub(crate) fn get_table(&mut self, key: &Key<Vec<String>>) -> Result<(Vec<String>, Source), ConfigError> {
        let file = self.file.table(key.key)?;
        Ok(self.list(key.key, key.env, file, Vec::new()))
    }

    /// Resolves a declared path whose default is computed.
    pub(crate) fn get_path(&mut self, key: &Key<PathBuf>, default: PathBuf) -> Result<PathBuf, ConfigError> {
        let file = self.file.text(key.key)?;
        let (path, source) = match self.raw(key.key, key.env) {
            Some((path, source)) => (PathBuf::from(path), source),
            None => match file {
                Some(path) => (PathBuf::from(path), Source::File),
                None => (default, Source::Default),
            },
        };
        self.record(key.key, Some(path.display().to_string()), source);
        Ok(path)
    }

    /// Resolves a value: code, then env, then file, then default; then checks it.
    pub(crate) fn value<T>(
        &mut self,
        key: &str,
        env: &[&str],
        file: Option<T>,
        default: Option<T>,
        check: Check<T>,
    ) -> Result<Option<T>, ConfigError>
    where
        T: FromStr + fmt::Display,
        T::Err: fmt::Display,
    {
        let (value, source) = if let Some((raw, source)) = self.raw(key, env) {
            let parsed = raw.parse::<T>().map_err(|e| ConfigError::Invalid {
                key: key.to_string(),
                origin: source.clone(),
                message: format!("cannot parse '{raw}': {e}"),
            })?;
            (Some(parsed), source)
        } else if let Some(v) = file {
            (Some(v), Source::File)
        } else {
            (default, Source::Default)
        };
        if let Some(v) = &value {
            check(v).map_err(|message| ConfigError::Invalid {
                key: key.to_string(),
                origin: source.clone(),
                message,
            })?;
        }
        self.entries.push(ConfigEntry {
            key: key.to_string(),
            value: value.as_ref().map(ToString::to_string),
            source,
            secret: false,
        });
        Ok(value)
    }

    /// Resolves a secret: code, then env, then file. Returns the secret and a description of
    /// its source that is safe to print (`GLM_API_KEY (env)`).
    pub(crate) fn secret(&mut self, key: &str, env: &[&str], file: Option<String>) -> (Option<Secret>, Option<String>) {
        let (value, source, label) = match self.raw(key, env) {
            Some((raw, Source::Env(name))) => {
                let label = format!("{name} (env)");
                (Some(Secret::new(raw)), Source::Env(name), Some(label))
            }
            Some((raw, source)) => (Some(Secret::new(raw.trim())), source, Some(format!("{key} (code)"))),
            None => match file.filter(|v| !v.trim().is_empty()) {
                Some(v) => (Some(Secret::new(v.trim())), Source::File, Some(format!("{key} (file)"))),
                None => (None, Source::Default, None),
            },
        };
        self.entries.push(ConfigEntry {
            key: key.to_string(),
            value: value.as_ref().map(ToString::to_string),
            source,
            secret: true,
        });
        (value, label)
    }

    /// Resolves a comma-separated list: code, then env, then file, then `default`.
    fn list(
        &mut self,
        key: &str,
        env: &[&str],
        file: Option<Vec<String>>,
        default: Vec<String>,
    ) -> (Vec<String>, Source) {
        let (list, source) = match self.raw(key, env) {
            Some((raw, source)) => (
                raw.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                source,
            ),
            None => match file {
                Some(list) => (list, Source::File),
                None => (default, Source::Default),
            },
        };
        self.record(key, Some(list.join(",")), source.clone());
        (list, source)
    }

    /// Records a value decided elsewhere (a derived value).
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
        let mut r = Resolver::new(&env, HashMap::new(), FileValues::default());
        assert_eq!(r.value("a.n", &["N"], Some(5u32), Some(1), any)?, Some(7));
        assert_eq!(r.value("a.m", &["M"], Some(5u32), Some(1), any)?, Some(5));
        assert_eq!(r.value("a.d", &["D"], None, Some(1u32), any)?, Some(1));
        let sources: Vec<_> = r.entries.iter().map(|e| e.source.to_string()).collect();
        assert_eq!(sources, ["env N", "file", "default"]);
        Ok(())
    }

    #[test]
    fn bad_env_value_names_key_and_variable() {
        let env = HashMap::from([("N".to_string(), "lots".to_string())]);
        let mut r = Resolver::new(&env, HashMap::new(), FileValues::default());
        let err = r.value("limits.n", &["N"], None, Some(1u32), any).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("limits.n") && msg.contains("env N") && msg.contains("lots"),
            "{msg}"
        );
    }

    #[test]
    fn a_failed_check_names_the_source_the_value_came_from() {
        let env = HashMap::from([("N".to_string(), "0".to_string())]);
        let mut r = Resolver::new(&env, HashMap::new(), FileValues::default());
        let msg = r
            .value("limits.n", &["N"], Some(3usize), Some(1), positive)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            msg.as_deref(),
            Some("invalid configuration: limits.n (from env N): must be at least 1")
        );
        let mut r = Resolver::new(
            &env,
            HashMap::from([("limits.n".to_string(), "0".to_string())]),
            FileValues::default(),
        );
        let msg = r
            .value("limits.n", &["N"], None, Some(1usize), positive)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            msg.as_deref(),
            Some("invalid configuration: limits.n (from code): must be at least 1")
        );
        let none = HashMap::new();
        let mut r = Resolver::new(&none, HashMap::new(), FileValues::default());
        let msg = r
            .value("limits.n", &["N"], Some(0usize), Some(1), positive)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            msg.as_deref(),
            Some("invalid configuration: limits.n (from file): must be at least 1")
        );
    }

    #[test]
    fn secrets_never_print() {
        let env = HashMap::from([("K".to_string(), "sk-very-secret".to_string())]);
        let mut r = Resolver::new(&env, HashMap::new(), FileValues::default());
        let (secret, label) = r.secret("providers.glm.api_key", &["K"], None);
        let secret = secret.map(|s| format!("{s} {s:?}")).unwrap_or_default();
        assert!(!secret.contains("very-secret"));
        assert_eq!(label.as_deref(), Some("K (env)"));
        assert!(!format!("{:?}", r.entries).contains("very-secret"));
    }
}
