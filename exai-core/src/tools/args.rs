//! Parsing tool arguments: the schema's property list is the authority on which keys exist, so
//! a misspelt parameter is refused by name instead of silently ignored.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Failure;
use super::files::Prepared;
use crate::request::{ChatRequest, Message, ThinkingMode};
use crate::wire::CacheDirective;

/// Checks `args` against `schema` (known keys, required keys), then deserialises it.
pub(crate) fn parse<T: DeserializeOwned>(schema: &Value, args: Value) -> Result<T, Failure> {
    let args = match args {
        Value::Null => Value::Object(Default::default()),
        Value::Object(map) => Value::Object(map),
        other => {
            return Err(Failure::Arguments(format!(
                "arguments must be a JSON object, got {other}"
            )));
        }
    };
    let props = schema.get("properties").and_then(Value::as_object);
    if let (Some(map), Some(props)) = (args.as_object(), props) {
        if let Some(unknown) = map.keys().find(|k| !props.contains_key(*k)) {
            let known: Vec<&str> = props.keys().map(String::as_str).collect();
            return Err(Failure::Arguments(format!(
                "unknown parameter '{unknown}'; expected: {}",
                known.join(", ")
            )));
        }
        let required = schema.get("required").and_then(Value::as_array).into_iter().flatten();
        if let Some(missing) = required.filter_map(Value::as_str).find(|r| !map.contains_key(*r)) {
            return Err(Failure::Arguments(format!("missing required parameter '{missing}'")));
        }
    }
    serde_json::from_value(args).map_err(|e| Failure::Arguments(e.to_string()))
}

/// The parameters most tools share.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Common {
    pub model: Option<String>,
    pub continuation_id: Option<String>,
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub images: Vec<String>,
    pub temperature: Option<f32>,
    pub thinking_mode: Option<ThinkingMode>,
    #[serde(default)]
    pub use_websearch: bool,
    /// What the call asks of the response cache (offered by `chat` and `consensus`).
    pub cache: Option<CacheDirective>,
}

impl Common {
    /// A request for `prompt` with these parameters and the prepared files and images.
    pub fn request(&self, tool: &str, system: &str, prompt: String, prepared: &Prepared) -> ChatRequest {
        let mut message = Message::user(prompt);
        message.images = prepared.images.clone();
        ChatRequest {
            model: self.model.clone(),
            system: Some(system.to_string()),
            messages: vec![message],
            continuation_id: self.continuation_id.clone(),
            temperature: self.temperature,
            max_tokens: None,
            thinking: self.thinking_mode,
            web_search: self.use_websearch,
            files: self.files.clone(),
            tool: Some(tool.to_string()),
            context: prepared.context.clone(),
            ephemeral: false,
            cache: self.cache.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    struct Args {
        prompt: String,
        #[serde(flatten)]
        common: Common,
    }

    fn schema() -> Value {
        json!({"properties": {"prompt": {}, "model": {}, "thinking_mode": {}}, "required": ["prompt"]})
    }

    fn err(r: Result<Args, Failure>) -> String {
        match r {
            Err(Failure::Arguments(m)) => m,
            other => format!("not an argument error: {other:?}"),
        }
    }

    #[test]
    fn unknown_missing_and_mistyped_arguments_are_named() {
        assert!(err(parse(&schema(), json!({"prompt": "x", "modle": "glm"}))).contains("unknown parameter 'modle'"));
        assert!(err(parse(&schema(), json!({"model": "glm"}))).contains("missing required parameter 'prompt'"));
        assert!(err(parse(&schema(), json!({"prompt": 3}))).contains("expected a string"));
        assert!(err(parse(&schema(), json!({"prompt": "x", "thinking_mode": "huge"}))).contains("huge"));
        assert!(err(parse(&schema(), json!(["x"]))).contains("JSON object"));
        let ok: Result<Args, _> = parse(&schema(), json!({"prompt": "x", "thinking_mode": "high"}));
        assert!(matches!(ok, Ok(a) if a.prompt == "x" && a.common.thinking_mode == Some(ThinkingMode::High)));
    }
}
