//! The Anthropic-wire quirks of each provider, applied in one place to a Messages request on its
//! way to the provider — relayed to its Anthropic endpoint, or translated to its chat endpoint:
//!
//! - **Betas** (relay only; a translation sends none): the `anthropic-beta` values outside the
//!   provider's allow-list are dropped, with a debug line and `exai_anthropic_betas_dropped_total`.
//!   The list is `providers.NAME.anthropic_betas` (`NAME_ANTHROPIC_BETAS`, `*` for all), else
//!   what the provider's quirks say its endpoint accepts (GLM, Kimi, MiniMax: none; other
//!   endpoints: all).
//! - **Tool types** (relay): a provider that refuses a tool without `type` (GLM) gets `custom`,
//!   which is what Anthropic means by a missing type.
//! - **The tool cap** (both paths): over the provider's cap (Kimi: 128) the request is refused
//!   with a 400 naming the cap and the count, or, with `anthropic.trim_tools`, the tools past it
//!   are dropped (built-in tools kept first) and the reply carries a warning.
//!
//! Each provider's values are its own file's [`Quirks`]; nothing here names a provider.

use serde_json::Value;

use super::Quirks;
use crate::config::ProviderConfig;
use crate::error::Error;
use crate::wire::json::{Edit, Fields};

/// What to do over a provider's tool cap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ToolCap {
    /// Drop the tools past the cap instead of refusing (`anthropic.trim_tools`).
    pub trim: bool,
}

/// The `anthropic-beta` header to forward to `provider`: the values on its allow-list.
pub(crate) fn forwarded_betas(quirks: &dyn Quirks, provider: &ProviderConfig, beta: Option<&str>) -> Option<String> {
    let beta = beta?;
    let configured = provider.anthropic_betas.as_deref();
    let allowed = |b: &str| match configured {
        Some(list) => list.iter().any(|a| a == "*" || a == b),
        None => quirks.anthropic_betas().is_none_or(|list| list.contains(&b)),
    };
    let mut kept = Vec::new();
    for b in beta.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        if allowed(b) {
            kept.push(b);
        } else {
            tracing::debug!(provider = %provider.name, beta = b, "an anthropic-beta the provider does not take is dropped");
            metrics::counter!("exai_anthropic_betas_dropped_total", "provider" => provider.name.clone()).increment(1);
        }
    }
    (!kept.is_empty()).then(|| kept.join(","))
}

/// Whether an Anthropic tool is one of Anthropic's own (a typed server or client tool, such as
/// `web_search_20250305` or `bash_20250124`), kept first when tools are trimmed.
fn built_in(tool: &Value) -> bool {
    tool.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty() && t != "custom" && t != "function")
}

/// `tools` within `cap`: refused, or trimmed (built-in ones first) with the warning to send.
fn capped(tools: Vec<Value>, cap: usize, provider: &str, how: ToolCap) -> Result<(Vec<Value>, Option<String>), Error> {
    let count = tools.len();
    if count <= cap {
        return Ok((tools, None));
    }
    if !how.trim {
        return Err(Error::InvalidRequest(format!(
            "tools: {provider} takes at most {cap} tools and this request has {count}; send fewer, or set \
             anthropic.trim_tools = true (EXAI_ANTHROPIC_TRIM_TOOLS) to drop the tools past the cap"
        )));
    }
    let (mut kept, rest): (Vec<Value>, Vec<Value>) = tools.into_iter().partition(built_in);
    kept.extend(rest);
    kept.truncate(cap);
    let warning = format!(
        "{provider} takes at most {cap} tools: {} of {count} were dropped",
        count - cap
    );
    tracing::warn!(
        provider,
        cap,
        count,
        "tools past the provider's cap were dropped (anthropic.trim_tools)"
    );
    Ok((kept, Some(warning)))
}

/// The edits a Messages body needs before it is relayed to `provider`: tool types filled in,
/// tools within the cap. Returns them with the warning to send, if tools were dropped.
pub(crate) fn messages_edits(
    quirks: &dyn Quirks,
    provider: &str,
    fields: &Fields<'_>,
    how: ToolCap,
) -> Result<(Vec<Edit>, Option<String>), Error> {
    // Most relayed bodies need nothing: no tree is built for them (Claude Code's tools are tens
    // of kilobytes).
    let over_cap = match quirks.max_tools() {
        Some(cap) => fields
            .parsed::<Vec<serde::de::IgnoredAny>>("tools")
            .ok()
            .flatten()
            .is_some_and(|tools| tools.len() > cap),
        None => false,
    };
    /// A tool as far as its `type` (the rest skipped).
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type", default)]
        kind: Option<String>,
    }
    let untyped = quirks.tool_type_required()
        && fields
            .parsed::<Vec<Typed>>("tools")
            .ok()
            .flatten()
            .is_some_and(|tools| tools.iter().any(|t| t.kind.as_deref().is_none_or(str::is_empty)));
    if !untyped && !over_cap {
        return Ok((Vec::new(), None));
    }
    let Ok(Some(mut tools)) = fields.parsed::<Vec<Value>>("tools") else {
        return Ok((Vec::new(), None));
    };
    let mut changed = false;
    if quirks.tool_type_required() {
        for tool in &mut tools {
            let typed = tool.get("type").and_then(Value::as_str).is_some_and(|t| !t.is_empty());
            if !typed && let Some(object) = tool.as_object_mut() {
                object.insert("type".into(), Value::String("custom".into()));
                changed = true;
            }
        }
    }
    let mut warning = None;
    if let Some(cap) = quirks.max_tools() {
        let before = tools.len();
        let (kept, said) = capped(tools, cap, provider, how)?;
        changed |= kept.len() != before;
        (tools, warning) = (kept, said);
    }
    let edits = match changed {
        true => vec![Edit::set(fields, "tools", &Value::Array(tools).to_string())],
        false => Vec::new(),
    };
    Ok((edits, warning))
}

/// The tool cap on a chat body translated from another wire: its `tools`, within the cap.
pub(crate) fn cap_chat_tools(
    quirks: &dyn Quirks,
    provider: &str,
    body: &mut Value,
    how: ToolCap,
) -> Result<Option<String>, Error> {
    let Some(cap) = quirks.max_tools() else {
        return Ok(None);
    };
    let Some(tools) = body.get_mut("tools").and_then(Value::as_array_mut) else {
        return Ok(None);
    };
    let (kept, warning) = capped(std::mem::take(tools), cap, provider, how)?;
    *tools = kept;
    Ok(warning)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::quirks_for;
    use serde_json::json;

    fn provider(name: &str, betas: Option<Vec<String>>) -> ProviderConfig {
        let config = crate::Config::from_parts(&Default::default(), None).unwrap_or_else(|e| panic!("{e}"));
        let mut p = config
            .providers
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name}"));
        p.anthropic_betas = betas;
        p
    }

    #[test]
    fn betas_are_kept_only_on_the_allow_list() {
        let glm = provider("glm", None);
        let quirks = quirks_for(glm.kind);
        let sent = "interleaved-thinking-2025-05-14, context-1m-2025-08-07";
        assert_eq!(forwarded_betas(quirks.as_ref(), &glm, Some(sent)), None);
        let glm = provider("glm", Some(vec!["context-1m-2025-08-07".into()]));
        assert_eq!(
            forwarded_betas(quirks.as_ref(), &glm, Some(sent)).as_deref(),
            Some("context-1m-2025-08-07")
        );
        let all = provider("glm", Some(vec!["*".into()]));
        assert_eq!(
            forwarded_betas(quirks.as_ref(), &all, Some(sent)).as_deref(),
            Some("interleaved-thinking-2025-05-14,context-1m-2025-08-07")
        );
    }

    #[test]
    fn glm_tools_get_a_type_and_kimi_tools_are_capped_or_refused() -> Result<(), Error> {
        let body = json!({"tools": [{"name": "a", "input_schema": {}}, {"type": "", "name": "b"}]}).to_string();
        let fields = Fields::parse(body.as_bytes()).map_err(Error::InvalidRequest)?;
        let glm = quirks_for(crate::config::ProviderKind::Glm);
        let (edits, warning) = messages_edits(glm.as_ref(), "glm", &fields, ToolCap { trim: false })?;
        let edited: Value = serde_json::from_slice(&crate::wire::json::splice(body.as_bytes(), edits))
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        assert_eq!(edited["tools"][0]["type"], "custom");
        assert_eq!(edited["tools"][1]["type"], "custom");
        assert!(warning.is_none());

        let mut tools: Vec<Value> = (0..130).map(|i| json!({"name": format!("t{i}")})).collect();
        tools.push(json!({"type": "web_search_20250305", "name": "web_search"}));
        let body = json!({"tools": tools}).to_string();
        let fields = Fields::parse(body.as_bytes()).map_err(Error::InvalidRequest)?;
        let kimi = quirks_for(crate::config::ProviderKind::Kimi);
        let refused = messages_edits(kimi.as_ref(), "kimi", &fields, ToolCap { trim: false });
        assert!(refused.is_err_and(|e| e.to_string().contains("at most 128") && e.to_string().contains("131")));
        let (edits, warning) = messages_edits(kimi.as_ref(), "kimi", &fields, ToolCap { trim: true })?;
        let edited: Value = serde_json::from_slice(&crate::wire::json::splice(body.as_bytes(), edits))
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        assert_eq!(edited["tools"].as_array().map(Vec::len), Some(128));
        assert_eq!(
            edited["tools"][0]["name"], "web_search",
            "built-in tools are kept first"
        );
        assert!(warning.is_some_and(|w| w.contains("3 of 131")));
        Ok(())
    }
}
