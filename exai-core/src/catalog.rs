//! The model catalog: which models exist, who serves them, what they can do and what they cost.
//!
//! Built-in entries cover the three vendors; the config file can override any field, declare
//! models for OpenAI-compatible providers, and add aliases. Names resolve in this order: an alias,
//! an exact model id, `provider/model` (any model at that provider, even one the catalog does not
//! know), then a case-insensitive id.
//!
//! Prices are USD per million tokens as published by each vendor when this table was written;
//! override them in `exai.toml` when they change.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{Config, ModelDecl};

/// What a model can do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Has a thinking/reasoning mode.
    pub thinking: bool,
    /// Accepts images.
    pub vision: bool,
    /// Has provider-native web search.
    pub web_search: bool,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Price {
    /// Input (prompt) tokens.
    pub input_per_m: f64,
    /// Output (completion, including reasoning) tokens.
    pub output_per_m: f64,
    /// Input tokens read from the provider's prompt cache (`None`: the input price).
    pub cached_input_per_m: Option<f64>,
}

impl Price {
    /// Cost in USD of a call.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_per_m + output_tokens as f64 * self.output_per_m) / 1e6
    }

    /// Cost in USD of a call's usage: its cached input tokens at the cached rate.
    pub fn cost_of(&self, usage: &crate::request::Usage) -> f64 {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let cached_rate = self.cached_input_per_m.unwrap_or(self.input_per_m);
        self.cost(usage.input_tokens - cached, usage.output_tokens) + cached as f64 * cached_rate / 1e6
    }
}

/// One model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Upstream model id.
    pub id: String,
    /// The provider's configured name.
    pub provider: String,
    /// Context window in tokens.
    pub context_window: u32,
    /// Largest output in tokens.
    pub max_output: u32,
    /// What it can do.
    pub capabilities: Capabilities,
    /// What it costs.
    pub price: Price,
    /// Other names that resolve to it.
    pub aliases: Vec<String>,
}

/// One built-in model, as written in [`BUILTIN`]: [`ModelInfo`] with `'static` strings, so the
/// table is a `const`.
struct Builtin {
    id: &'static str,
    provider: &'static str,
    context_window: u32,
    max_output: u32,
    capabilities: Capabilities,
    price: Price,
    aliases: &'static [&'static str],
}

impl Builtin {
    fn model_info(&self) -> ModelInfo {
        ModelInfo {
            id: self.id.into(),
            provider: self.provider.into(),
            context_window: self.context_window,
            max_output: self.max_output,
            capabilities: self.capabilities,
            price: self.price,
            aliases: self.aliases.iter().map(|a| a.to_string()).collect(),
        }
    }
}

const BUILTIN: &[Builtin] = &[
    Builtin {
        id: "glm-4.6",
        provider: "glm",
        context_window: 200_000,
        max_output: 128_000,
        capabilities: Capabilities {
            thinking: true,
            vision: false,
            web_search: true,
        },
        price: Price {
            input_per_m: 0.60,
            output_per_m: 2.20,
            cached_input_per_m: Some(0.11),
        },
        aliases: &["glm"],
    },
    Builtin {
        id: "glm-4.5",
        provider: "glm",
        context_window: 128_000,
        max_output: 96_000,
        capabilities: Capabilities {
            thinking: true,
            vision: false,
            web_search: true,
        },
        price: Price {
            input_per_m: 0.60,
            output_per_m: 2.20,
            cached_input_per_m: Some(0.11),
        },
        aliases: &[],
    },
    Builtin {
        id: "glm-4.5-air",
        provider: "glm",
        context_window: 128_000,
        max_output: 96_000,
        capabilities: Capabilities {
            thinking: true,
            vision: false,
            web_search: true,
        },
        price: Price {
            input_per_m: 0.20,
            output_per_m: 1.10,
            cached_input_per_m: Some(0.03),
        },
        aliases: &[],
    },
    Builtin {
        id: "glm-4.5-flash",
        provider: "glm",
        context_window: 128_000,
        max_output: 96_000,
        capabilities: Capabilities {
            thinking: true,
            vision: false,
            web_search: true,
        },
        price: Price {
            input_per_m: 0.0,
            output_per_m: 0.0,
            cached_input_per_m: Some(0.0),
        },
        aliases: &["flash"],
    },
    Builtin {
        id: "glm-4.5v",
        provider: "glm",
        context_window: 64_000,
        max_output: 16_000,
        capabilities: Capabilities {
            thinking: true,
            vision: true,
            web_search: false,
        },
        price: Price {
            input_per_m: 0.60,
            output_per_m: 1.80,
            cached_input_per_m: Some(0.11),
        },
        aliases: &["glm-vision"],
    },
    Builtin {
        id: "kimi-k2-0905-preview",
        provider: "kimi",
        context_window: 262_144,
        max_output: 65_536,
        capabilities: Capabilities {
            thinking: false,
            vision: false,
            web_search: true,
        },
        price: Price {
            input_per_m: 0.60,
            output_per_m: 2.50,
            cached_input_per_m: Some(0.15),
        },
        aliases: &["kimi"],
    },
    Builtin {
        id: "kimi-k2-turbo-preview",
        provider: "kimi",
        context_window: 262_144,
        max_output: 65_536,
        capabilities: Capabilities {
            thinking: false,
            vision: false,
            web_search: true,
        },
        price: Price {
            input_per_m: 1.15,
            output_per_m: 8.00,
            cached_input_per_m: Some(0.15),
        },
        aliases: &[],
    },
    Builtin {
        id: "kimi-k2-thinking",
        provider: "kimi",
        context_window: 262_144,
        max_output: 65_536,
        capabilities: Capabilities {
            thinking: true,
            vision: false,
            web_search: true,
        },
        price: Price {
            input_per_m: 0.60,
            output_per_m: 2.50,
            cached_input_per_m: Some(0.15),
        },
        aliases: &[],
    },
    Builtin {
        id: "MiniMax-M2",
        provider: "minimax",
        context_window: 204_800,
        max_output: 131_072,
        capabilities: Capabilities {
            thinking: true,
            vision: false,
            web_search: false,
        },
        price: Price {
            input_per_m: 0.30,
            output_per_m: 1.20,
            cached_input_per_m: Some(0.03),
        },
        aliases: &["minimax"],
    },
];

/// Fallback figures for models the catalog does not know (`provider/anything`).
const UNKNOWN_CONTEXT: u32 = 32_768;
const UNKNOWN_OUTPUT: u32 = 8_192;

/// All models, with name resolution.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    models: Vec<ModelInfo>,
    aliases: BTreeMap<String, usize>,
}

impl Catalog {
    /// The built-in table merged with the config's declarations and aliases.
    pub fn from_config(config: &Config) -> Self {
        let mut catalog = Catalog::default();
        for builtin in BUILTIN {
            if config.provider(builtin.provider).is_some() {
                catalog.models.push(builtin.model_info());
            }
        }
        for provider in &config.providers {
            for decl in &provider.models {
                catalog.declare(&provider.name, decl);
            }
        }
        catalog.reindex();
        for (alias, target) in &config.aliases {
            if let Some(idx) = catalog.position(target) {
                catalog.models[idx].aliases.push(alias.clone());
                catalog.aliases.insert(alias.clone(), idx);
            }
        }
        catalog
    }

    fn declare(&mut self, provider: &str, decl: &ModelDecl) {
        let idx = match self
            .models
            .iter()
            .position(|m| m.provider == provider && m.id == decl.id)
        {
            Some(idx) => idx,
            None => {
                self.models.push(ModelInfo {
                    id: decl.id.clone(),
                    provider: provider.into(),
                    context_window: UNKNOWN_CONTEXT,
                    max_output: UNKNOWN_OUTPUT,
                    capabilities: Capabilities::default(),
                    price: Price::default(),
                    aliases: Vec::new(),
                });
                self.models.len() - 1
            }
        };
        let m = &mut self.models[idx];
        let caps = &mut m.capabilities;
        m.context_window = decl.context_window.unwrap_or(m.context_window);
        m.max_output = decl.max_output.unwrap_or(m.max_output);
        caps.thinking = decl.thinking.unwrap_or(caps.thinking);
        caps.vision = decl.vision.unwrap_or(caps.vision);
        caps.web_search = decl.web_search.unwrap_or(caps.web_search);
        m.price.input_per_m = decl.input_per_m.unwrap_or(m.price.input_per_m);
        m.price.output_per_m = decl.output_per_m.unwrap_or(m.price.output_per_m);
        m.price.cached_input_per_m = decl.cached_input_per_m.or(m.price.cached_input_per_m);
        m.aliases.extend(decl.aliases.iter().cloned());
    }

    fn reindex(&mut self) {
        self.aliases.clear();
        for (idx, m) in self.models.iter().enumerate() {
            for a in &m.aliases {
                self.aliases.insert(a.clone(), idx);
            }
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        if let Some(idx) = self.aliases.get(name) {
            return Some(*idx);
        }
        if let Some(idx) = self.models.iter().position(|m| m.id == name) {
            return Some(idx);
        }
        if let Some((provider, id)) = name.split_once('/')
            && let Some(idx) = self.models.iter().position(|m| m.provider == provider && m.id == id)
        {
            return Some(idx);
        }
        self.models.iter().position(|m| m.id.eq_ignore_ascii_case(name))
    }

    /// Resolves an alias, id or `provider/model`. A `provider/model` the catalog does not know
    /// resolves to a generic entry for that provider, so new upstream models work at once.
    pub fn resolve(&self, name: &str, config: &Config) -> Option<ModelInfo> {
        if let Some(idx) = self.position(name) {
            return Some(self.models[idx].clone());
        }
        let (provider, id) = name.split_once('/')?;
        config.provider(provider)?;
        Some(ModelInfo {
            id: id.to_string(),
            provider: provider.to_string(),
            context_window: UNKNOWN_CONTEXT,
            max_output: UNKNOWN_OUTPUT,
            capabilities: Capabilities::default(),
            price: Price::default(),
            aliases: Vec::new(),
        })
    }

    /// Every model.
    pub fn models(&self) -> &[ModelInfo] {
        &self.models
    }

    /// Every model and alias name, for error messages and tool schemas.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.aliases.keys().cloned().collect();
        names.extend(self.models.iter().map(|m| m.id.clone()));
        names
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;

    fn config(toml: &str) -> Config {
        Config::from_parts(&HashMap::new(), Some((Path::new("t.toml"), toml))).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn aliases_resolve_to_the_documented_models() {
        let c = config("");
        let cat = Catalog::from_config(&c);
        let id = |n: &str| cat.resolve(n, &c).map(|m| m.id);
        assert_eq!(id("glm").as_deref(), Some("glm-4.6"));
        assert_eq!(id("kimi").as_deref(), Some("kimi-k2-0905-preview"));
        assert_eq!(id("minimax").as_deref(), Some("MiniMax-M2"));
        assert_eq!(id("flash").as_deref(), Some("glm-4.5-flash"));
        assert_eq!(id("minimax-m2").as_deref(), Some("MiniMax-M2"));
        assert_eq!(id("nonsense"), None);
    }

    #[test]
    fn file_overrides_prices_and_declares_custom_models() {
        let c = config(
            r#"
            [aliases]
            cheap = "glm-4.5-air"
            [[providers.glm.models]]
            id = "glm-4.6"
            input_per_m = 1.0
            [providers.local]
            base_url = "http://127.0.0.1:11434/v1"
            [[providers.local.models]]
            id = "llama3"
            context_window = 8192
            aliases = ["llama"]
            "#,
        );
        let cat = Catalog::from_config(&c);
        let glm = cat.resolve("glm", &c).map(|m| m.price.input_per_m);
        assert_eq!(glm, Some(1.0));
        let llama = cat.resolve("llama", &c);
        assert_eq!(
            llama.as_ref().map(|m| (m.provider.as_str(), m.context_window)),
            Some(("local", 8192))
        );
        assert_eq!(cat.resolve("cheap", &c).map(|m| m.id).as_deref(), Some("glm-4.5-air"));
        let unknown = cat.resolve("local/qwen3", &c);
        assert_eq!(unknown.map(|m| m.id).as_deref(), Some("qwen3"));
        assert!(cat.resolve("nobody/qwen3", &c).is_none());
    }

    #[test]
    fn cost_is_per_million_tokens() {
        let p = Price {
            input_per_m: 0.6,
            output_per_m: 2.2,
            cached_input_per_m: Some(0.1),
        };
        assert!((p.cost(1_000_000, 500_000) - 1.7).abs() < 1e-9);
        let usage = crate::request::Usage {
            input_tokens: 1_000_000,
            output_tokens: 500_000,
            cached_input_tokens: 400_000,
            ..Default::default()
        };
        // 600k at 0.6, 400k cached at 0.1, 500k out at 2.2.
        assert!((p.cost_of(&usage) - (0.36 + 0.04 + 1.1)).abs() < 1e-9);
    }
}
