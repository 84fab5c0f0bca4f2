//! Routing: which provider and model answer a request, and who to try next.
//!
//! An explicit model goes to its provider, and only there — answering with another model than the
//! one asked for would be a surprise. `auto` builds a chain from the configured fallback order,
//! keeping providers that are ready and have a model able to do the job, and puts first:
//! - for web search, providers with native web search (GLM, then Kimi);
//! - for long prompts or attached files, the longest context window (Kimi);
//! - for images, providers with a vision model;
//! - otherwise the fallback order as configured (the fast default first).
//!
//! An alias over several models (`[aliases] coder = { models = […], strategy = … }`) plans
//! those that are ready and able, and the engine orders them per call by the alias's strategy
//! (`providers::order_models`).
//!
//! The gateway walks the chain, moving on after a transient failure or an open circuit (see
//! `ProviderError::allows_fallback`); every response names the provider and model that answered.

use crate::catalog::{Catalog, ModelInfo};
use crate::config::Config;
use crate::error::Error;

/// What a request needs from a model.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Needs {
    /// Estimated prompt tokens, history included.
    pub tokens: u64,
    /// Files were embedded.
    pub files: bool,
    /// Provider-native web search.
    pub web_search: bool,
    /// Images attached.
    pub vision: bool,
}

/// The alias over several models that `requested` names, if it names one.
pub(crate) fn group_of<'a>(config: &'a Config, requested: Option<&str>) -> Option<&'a crate::config::ModelGroup> {
    let name = requested
        .filter(|m| !m.trim().is_empty())
        .unwrap_or(&config.default_model)
        .trim();
    config.groups.get(name)
}

/// Plans the models to try, in order.
pub(crate) fn plan(
    config: &Config,
    catalog: &Catalog,
    requested: Option<&str>,
    needs: Needs,
) -> Result<Vec<ModelInfo>, Error> {
    let name = requested
        .filter(|m| !m.trim().is_empty())
        .unwrap_or(&config.default_model)
        .trim();
    if name.eq_ignore_ascii_case("auto") {
        return auto(config, catalog, needs);
    }
    if let Some(group) = config.groups.get(name) {
        return group_plan(config, catalog, name, &group.models, needs);
    }
    let model = catalog.resolve(name, config).ok_or_else(|| Error::UnknownModel {
        model: name.to_string(),
        known: std::iter::once("auto".to_string())
            .chain(catalog.names())
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let provider = config
        .provider(&model.provider)
        .ok_or_else(|| Error::Internal(format!("model {} names unknown provider {}", model.id, model.provider)))?;
    if !provider.is_ready() {
        return Err(Error::ProviderNotConfigured {
            model: model.id.clone(),
            provider: provider.name.clone(),
            hint: provider.setup_hint(),
        });
    }
    if needs.web_search && !model.capabilities.web_search {
        return Err(Error::InvalidRequest(format!(
            "{} has no web search; use a GLM or Kimi model, or model 'auto'",
            model.id
        )));
    }
    if needs.vision && !model.capabilities.vision {
        return Err(Error::InvalidRequest(format!(
            "{} cannot read images; use a vision model such as glm-4.5v, or model 'auto'",
            model.id
        )));
    }
    Ok(vec![model])
}

/// An alias over several models: those whose provider is ready and that can take the request,
/// in the order written (the engine orders them by the alias's strategy per call).
fn group_plan(
    config: &Config,
    catalog: &Catalog,
    alias: &str,
    models: &[String],
    needs: Needs,
) -> Result<Vec<ModelInfo>, Error> {
    let mut plan = Vec::new();
    for name in models {
        let model = catalog.resolve(name, config).ok_or_else(|| Error::UnknownModel {
            model: format!("{name} (in alias {alias})"),
            known: catalog.names().join(", "),
        })?;
        let ready = config.provider(&model.provider).is_some_and(|p| p.is_ready());
        let fits = (!needs.web_search || model.capabilities.web_search) && (!needs.vision || model.capabilities.vision);
        if ready
            && fits
            && !plan
                .iter()
                .any(|m: &ModelInfo| m.provider == model.provider && m.id == model.id)
        {
            plan.push(model);
        }
    }
    if plan.is_empty() {
        return Err(Error::InvalidRequest(format!(
            "no model of alias {alias} ({}) is configured and able to take this request",
            models.join(", ")
        )));
    }
    Ok(plan)
}

fn auto(config: &Config, catalog: &Catalog, needs: Needs) -> Result<Vec<ModelInfo>, Error> {
    let mut chain: Vec<(usize, ModelInfo)> = Vec::new();
    for (order, name) in config.routing.fallback.iter().enumerate() {
        let Some(provider) = config.provider(name).filter(|p| p.is_ready()) else {
            continue;
        };
        let fits = |m: &ModelInfo| {
            (!needs.web_search || m.capabilities.web_search)
                && (!needs.vision || m.capabilities.vision)
                && u64::from(m.context_window) > needs.tokens
        };
        let default = catalog
            .resolve(&provider.default_model, config)
            .filter(|m| m.provider == provider.name);
        let chosen = default.filter(|m| fits(m)).or_else(|| {
            catalog
                .models()
                .iter()
                .filter(|m| m.provider == provider.name && fits(m))
                .max_by_key(|m| m.context_window)
                .cloned()
        });
        if let Some(model) = chosen {
            chain.push((order, model));
        }
    }
    if chain.is_empty() {
        if config.ready_providers().next().is_none() {
            return Err(Error::NoProviderConfigured);
        }
        return Err(Error::InvalidRequest(format!(
            "no configured model can take this request (about {} tokens{}{}); configure a provider that can",
            needs.tokens,
            if needs.web_search { ", web search" } else { "" },
            if needs.vision { ", images" } else { "" },
        )));
    }
    let long = needs.files || needs.tokens > config.routing.long_context_tokens;
    chain.sort_by_key(|(order, m)| {
        let web_rank = if needs.web_search {
            match config.provider(&m.provider).map(|p| p.kind) {
                Some(crate::config::ProviderKind::Glm) => 0,
                Some(crate::config::ProviderKind::Kimi) => 1,
                _ => 2,
            }
        } else {
            0
        };
        let context_rank = if long { u32::MAX - m.context_window } else { 0 };
        (web_rank, context_rank, *order)
    });
    Ok(chain.into_iter().map(|(_, m)| m).collect())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn setup(keys: &[&str]) -> (Config, Catalog) {
        let env: HashMap<String, String> = keys.iter().map(|k| (k.to_string(), "k".to_string())).collect();
        let config = Config::from_parts(&env, None).unwrap_or_else(|e| panic!("{e}"));
        let catalog = Catalog::from_config(&config);
        (config, catalog)
    }

    fn ids(r: Result<Vec<ModelInfo>, Error>) -> Vec<String> {
        r.map(|v| v.into_iter().map(|m| m.id).collect())
            .unwrap_or_else(|e| vec![e.to_string()])
    }

    const ALL: [&str; 3] = ["GLM_API_KEY", "KIMI_API_KEY", "MINIMAX_API_KEY"];

    #[test]
    fn auto_prefers_the_fast_default_then_falls_back_in_order() {
        let (c, cat) = setup(&ALL);
        assert_eq!(
            ids(plan(&c, &cat, None, Needs::default())),
            ["glm-4.6", "kimi-k2-0905-preview", "MiniMax-M2"]
        );
    }

    #[test]
    fn auto_sends_long_context_and_files_to_kimi_and_web_search_to_glm() {
        let (c, cat) = setup(&ALL);
        let long = Needs {
            tokens: 150_000,
            ..Needs::default()
        };
        assert_eq!(ids(plan(&c, &cat, Some("auto"), long))[0], "kimi-k2-0905-preview");
        let files = Needs {
            files: true,
            ..Needs::default()
        };
        assert_eq!(ids(plan(&c, &cat, Some("auto"), files))[0], "kimi-k2-0905-preview");
        let web = Needs {
            web_search: true,
            ..Needs::default()
        };
        assert_eq!(
            ids(plan(&c, &cat, Some("auto"), web)),
            ["glm-4.6", "kimi-k2-0905-preview"]
        );
    }

    #[test]
    fn auto_uses_only_configured_providers_and_says_when_there_are_none() {
        let (c, cat) = setup(&["MINIMAX_API_KEY"]);
        assert_eq!(ids(plan(&c, &cat, None, Needs::default())), ["MiniMax-M2"]);
        let (c, cat) = setup(&[]);
        assert!(matches!(
            plan(&c, &cat, None, Needs::default()),
            Err(Error::NoProviderConfigured)
        ));
    }

    #[test]
    fn explicit_models_go_only_to_their_provider_with_clear_errors() {
        let (c, cat) = setup(&["GLM_API_KEY"]);
        assert_eq!(ids(plan(&c, &cat, Some("flash"), Needs::default())), ["glm-4.5-flash"]);
        assert!(matches!(
            plan(&c, &cat, Some("kimi"), Needs::default()),
            Err(Error::ProviderNotConfigured { .. })
        ));
        assert!(matches!(
            plan(&c, &cat, Some("gpt-9"), Needs::default()),
            Err(Error::UnknownModel { .. })
        ));
        let vision = Needs {
            vision: true,
            ..Needs::default()
        };
        assert!(matches!(
            plan(&c, &cat, Some("glm"), vision),
            Err(Error::InvalidRequest(_))
        ));
        assert_eq!(ids(plan(&c, &cat, Some("auto"), vision)), ["glm-4.5v"]);
    }
}
