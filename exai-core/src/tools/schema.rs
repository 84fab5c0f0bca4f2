//! The parameter schemas tools share. Descriptions are deliberately short: every tool definition
//! is sent to the client's model on every turn.

use serde_json::{Map, Value, json};

use crate::wire::CacheDirective;

/// An object schema that refuses unknown properties.
pub(crate) fn object(properties: Map<String, Value>, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// The common parameters, among `names`, in that order.
pub(crate) fn common(models: &[String], names: &[&str]) -> Map<String, Value> {
    names
        .iter()
        .filter_map(|name| {
            let schema = match *name {
                "prompt" => json!({"type": "string", "description": "Your request, with the context the model needs."}),
                "model" => json!({"type": "string", "enum": models, "description": "Model or alias; 'auto' lets exai choose."}),
                "continuation_id" => json!({"type": "string", "description": "Continue a conversation (from any tool)."}),
                "files" => json!({"type": "array", "items": {"type": "string"}, "description": "Absolute paths of files or directories to include."}),
                "images" => json!({"type": "array", "items": {"type": "string"}, "description": "Image paths or data URLs, for vision models."}),
                "temperature" => json!({"type": "number", "minimum": 0, "maximum": 2, "description": "Sampling temperature."}),
                "thinking_mode" => json!({"type": "string", "enum": ["minimal", "low", "medium", "high", "max"], "description": "Reasoning depth."}),
                "use_websearch" => json!({"type": "boolean", "description": "Allow provider-native web search."}),
                "cache" => json!({"type": "string", "enum": CacheDirective::NAMES, "description": "When the response cache is on: no-cache asks afresh (then keeps), no-store keeps nothing, bypass skips it."}),
                _ => return None,
            };
            Some((name.to_string(), schema))
        })
        .collect()
}

/// Every common parameter but `prompt`.
pub(crate) const MODEL_PARAMS: [&str; 7] = [
    "model",
    "continuation_id",
    "files",
    "images",
    "temperature",
    "thinking_mode",
    "use_websearch",
];

/// The step protocol's parameters.
pub(crate) fn workflow(models: &[String]) -> Map<String, Value> {
    let mut props: Map<String, Value> = [
        ("step", json!({"type": "string", "description": "What you are investigating in this step, and why."})),
        ("step_number", json!({"type": "integer", "minimum": 1})),
        ("total_steps", json!({"type": "integer", "minimum": 1, "description": "Your current estimate."})),
        ("next_step_required", json!({"type": "boolean", "description": "false on the final step."})),
        ("findings", json!({"type": "string", "description": "What this step found: evidence, not guesses."})),
        ("relevant_files", json!({"type": "array", "items": {"type": "string"}, "description": "Absolute paths that matter."})),
        ("issues_found", json!({"type": "array", "items": {
            "type": "object",
            "properties": {
                "severity": {"type": "string", "enum": ["critical", "high", "medium", "low"]},
                "description": {"type": "string"}
            },
            "required": ["severity", "description"],
            "additionalProperties": false
        }})),
        ("hypothesis", json!({"type": "string"})),
        ("confidence", json!({"type": "string", "enum": ["exploring", "low", "medium", "high", "very_high", "almost_certain", "certain"]})),
        ("use_assistant_model", json!({"type": "boolean", "description": "Ask the expert model at the end (default true)."})),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    props.extend(common(models, &MODEL_PARAMS));
    props
}

/// Required parameters of the step protocol.
pub(crate) const WORKFLOW_REQUIRED: [&str; 5] =
    ["step", "step_number", "total_steps", "next_step_required", "findings"];
