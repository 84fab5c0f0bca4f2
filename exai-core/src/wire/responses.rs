//! OpenAI Responses (`POST /v1/responses`) ⇄ OpenAI chat completions, for providers that serve
//! chat but not Responses (GLM, Kimi, MiniMax, most OpenAI-compatible servers). This is what
//! lets Codex, which speaks only Responses, run on them.
//!
//! - The request: `instructions` and `system`/`developer` messages become system messages;
//!   `input` (a string, or items) becomes chat messages — `input_text`/`output_text` parts as
//!   text, `input_image` as an `image_url` part, `function_call` items as the assistant's
//!   `tool_calls` (consecutive calls in one message), `function_call_output` as `tool`
//!   messages paired by `call_id`, `reasoning` items as the next assistant message's
//!   `reasoning_content` where the provider reads it (Kimi, GLM, MiniMax), else left out.
//!   Tools: `function` as is; `namespace` tools flattened to `namespace__name` functions;
//!   `custom` (free-form) tools as a function with one string argument `input`; `web_search` to
//!   the provider's own search where it has one in a single round (GLM) and the client allows
//!   live access (not `external_web_access: false`), else left out (a debug line), like every
//!   hosted tool. `tool_choice`, `parallel_tool_calls`, `max_output_tokens`,
//!   `temperature`, `top_p`, `text.format` (→ `response_format`), `reasoning.effort` (→ the
//!   provider's thinking switch, by its quirks), `user`/`safety_identifier` (→ `user`).
//! - The reply: a `response` object whose `output` holds a `reasoning` item (the provider's
//!   reasoning text as its summary), a `message` with `output_text`, and `function_call` /
//!   `custom_tool_call` items with the client's names restored; `usage` with cached and
//!   reasoning token details where known; `status` `incomplete` with `incomplete_details` when
//!   the reply stopped at its token limit.
//!
//! The stream is in `responses_stream.rs`. Names are kept in [`ToolMap`] for the reply.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::request::{ThinkingMode, Usage};

/// OpenAI's limit on a function name.
const MAX_TOOL_NAME: usize = 64;
/// Between a namespace and its function in a flattened name.
const NAMESPACE_JOIN: &str = "__";

/// The fields of a request echoed in its `response` object, as OpenAI's API does.
const ECHOED: &[&str] = &[
    "instructions",
    "max_output_tokens",
    "metadata",
    "parallel_tool_calls",
    "previous_response_id",
    "reasoning",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
    "truncation",
    "user",
    "store",
];

/// Tool names as sent to the provider, and the client's names back.
#[derive(Debug, Default, Clone)]
pub(crate) struct ToolMap {
    /// A flattened or shortened name → (namespace, the client's name).
    back: HashMap<String, (Option<String>, String)>,
    /// Free-form tools (their call's input is the `input` argument).
    custom: HashSet<String>,
}

/// A tool call as the client names it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClientName {
    pub namespace: Option<String>,
    pub name: String,
    pub custom: bool,
}

impl ToolMap {
    /// The provider's name for `name` (in `namespace`), within OpenAI's limits.
    fn outgoing(&mut self, namespace: Option<&str>, name: &str) -> String {
        let flat = match namespace {
            Some(ns) => format!("{ns}{NAMESPACE_JOIN}{name}"),
            None => name.to_string(),
        };
        let sent = if flat.len() <= MAX_TOOL_NAME {
            flat
        } else {
            let digest = crate::keys::sha256_hex(&flat);
            let cut: String = flat.chars().take(MAX_TOOL_NAME - 9).collect();
            format!("{cut}_{}", &digest[..8])
        };
        if namespace.is_some() || sent != name {
            self.back
                .insert(sent.clone(), (namespace.map(str::to_string), name.to_string()));
        }
        sent
    }

    /// The client's name for what the provider called `sent`.
    pub fn incoming(&self, sent: &str) -> ClientName {
        let (namespace, name) = self.back.get(sent).cloned().unwrap_or_else(|| (None, sent.to_string()));
        ClientName {
            custom: self.custom.contains(sent),
            namespace,
            name,
        }
    }
}

/// What translating a request keeps for its reply.
#[derive(Debug, Clone)]
pub(crate) struct Translated {
    /// The chat body for the provider.
    pub body: Value,
    pub names: ToolMap,
}

/// Fields and hosted tools a provider's quirks add for a thinking mode and a web search.
pub(crate) type Shape<'a> = &'a dyn Fn(Option<ThinkingMode>, bool) -> (Map<String, Value>, Vec<Value>);

/// How the provider takes what the chat wire has no field for.
#[derive(Default)]
pub(crate) struct ChatExtras<'a> {
    /// Earlier turns' reasoning goes back as `reasoning_content`.
    pub reasoning_content: bool,
    /// The provider searches the web within one round (a hosted tool).
    pub web_search: bool,
    /// Its quirks' fields for thinking and web search.
    pub shape: Option<Shape<'a>>,
}

/// `input` as a list of items: a string is one user message.
pub(crate) fn input_items(body: &Map<String, Value>) -> Vec<Value> {
    match body.get("input") {
        Some(Value::String(text)) => {
            vec![json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})]
        }
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// The text of a content value: a string, or the text of its text parts.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").or_else(|| p.get("refusal")).and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A user message's content: a string when it is only text, else chat parts.
fn user_content(content: &Value) -> Value {
    let Value::Array(parts) = content else {
        return Value::String(text_of(content));
    };
    let mut out = Vec::new();
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => {
                out.push(json!({"type": "text", "text": part.get("text").cloned().unwrap_or_default()}))
            }
            Some("input_image") => {
                if let Some(url) = part.get("image_url").and_then(Value::as_str) {
                    let mut image = json!({"url": url});
                    if let Some(detail) = part.get("detail").filter(|d| d.as_str() != Some("auto")) {
                        image["detail"] = detail.clone();
                    }
                    out.push(json!({"type": "image_url", "image_url": image}));
                }
            }
            _ => {}
        }
    }
    if out.iter().all(|p| p["type"] == "text") {
        Value::String(
            out.iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    } else {
        Value::Array(out)
    }
}

/// A reasoning item's text: its summary, or its content when it has no summary.
fn reasoning_text(item: &Value) -> String {
    let summary = text_of(item.get("summary").unwrap_or(&Value::Null));
    if summary.is_empty() {
        text_of(item.get("content").unwrap_or(&Value::Null))
    } else {
        summary
    }
}

/// The chat messages for `items`.
fn messages(items: &[Value], names: &mut ToolMap, extras: &ChatExtras) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    // Reasoning waits for the assistant message it belongs to.
    let mut reasoning: Option<String> = None;
    // The last message is an assistant message that later calls may join.
    let mut open_assistant = false;
    let assistant = |content: Value, reasoning: &mut Option<String>| {
        let mut m = json!({"role": "assistant", "content": content});
        if let Some(r) = reasoning.take().filter(|r| !r.is_empty() && extras.reasoning_content) {
            m["reasoning_content"] = Value::String(r);
        }
        m
    };
    for item in items {
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(if item.get("role").is_some() { "message" } else { "" });
        match kind {
            "message" => {
                let content = item.get("content").unwrap_or(&Value::Null);
                match item.get("role").and_then(Value::as_str).unwrap_or("user") {
                    "system" | "developer" => {
                        out.push(json!({"role": "system", "content": text_of(content)}));
                        open_assistant = false;
                    }
                    "assistant" => {
                        out.push(assistant(Value::String(text_of(content)), &mut reasoning));
                        open_assistant = true;
                    }
                    _ => {
                        out.push(json!({"role": "user", "content": user_content(content)}));
                        open_assistant = false;
                    }
                }
            }
            "reasoning" => {
                let text = reasoning_text(item);
                reasoning = Some(match reasoning.take() {
                    Some(before) if !before.is_empty() => format!("{before}\n{text}"),
                    _ => text,
                });
            }
            "function_call" | "custom_tool_call" => {
                let namespace = item.get("namespace").and_then(Value::as_str);
                let name = names.outgoing(namespace, item.get("name").and_then(Value::as_str).unwrap_or_default());
                let arguments = if kind == "custom_tool_call" {
                    names.custom.insert(name.clone());
                    json!({"input": item.get("input").and_then(Value::as_str).unwrap_or_default()}).to_string()
                } else {
                    match item.get("arguments") {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => "{}".into(),
                    }
                };
                let call = json!({"id": item.get("call_id").cloned().unwrap_or_default(), "type": "function",
                    "function": {"name": name, "arguments": arguments}});
                if !open_assistant {
                    out.push(assistant(Value::Null, &mut reasoning));
                    open_assistant = true;
                }
                if let Some(last) = out.last_mut() {
                    match last.get_mut("tool_calls").and_then(Value::as_array_mut) {
                        Some(calls) => calls.push(call),
                        None => last["tool_calls"] = json!([call]),
                    }
                }
            }
            "function_call_output" | "custom_tool_call_output" => {
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other @ Value::Array(_)) => text_of(other),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                out.push(
                    json!({"role": "tool", "tool_call_id": item.get("call_id").cloned().unwrap_or_default(),
                    "content": output}),
                );
                open_assistant = false;
            }
            other => {
                tracing::debug!(
                    item = other,
                    "a Responses input item with no chat equivalent is left out"
                );
            }
        }
    }
    // An assistant message with tool calls and no text has `content: null`; one with neither
    // (reasoning alone) says nothing and is dropped.
    out.retain(|m| !(m["role"] == "assistant" && m["content"].is_null() && m.get("tool_calls").is_none()));
    out
}

/// The chat tools for the request's `tools`; `web_search` is set when the client asked for a
/// web search the provider can do.
fn tools(body: &Map<String, Value>, names: &mut ToolMap, extras: &ChatExtras, web_search: &mut bool) -> Vec<Value> {
    let mut out = Vec::new();
    let function = |names: &mut ToolMap, namespace: Option<&str>, tool: &Value| {
        let name = names.outgoing(namespace, tool.get("name").and_then(Value::as_str).unwrap_or_default());
        let parameters = tool
            .get("parameters")
            .filter(|p| p.is_object())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        let mut f = json!({"name": name, "parameters": parameters});
        if let Some(d) = tool.get("description").filter(|d| d.is_string()) {
            f["description"] = d.clone();
        }
        json!({"type": "function", "function": f})
    };
    for tool in body.get("tools").and_then(Value::as_array).into_iter().flatten() {
        match tool.get("type").and_then(Value::as_str).unwrap_or_default() {
            "function" => out.push(function(names, None, tool)),
            "namespace" => {
                let namespace = tool.get("name").and_then(Value::as_str);
                for inner in tool.get("tools").and_then(Value::as_array).into_iter().flatten() {
                    if inner.get("type").and_then(Value::as_str).unwrap_or("function") == "function" {
                        out.push(function(names, namespace, inner));
                    }
                }
            }
            "custom" => {
                let name = names.outgoing(None, tool.get("name").and_then(Value::as_str).unwrap_or_default());
                names.custom.insert(name.clone());
                let mut about = tool
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if let Some(grammar) = tool.pointer("/format/definition").and_then(Value::as_str) {
                    about.push_str("\n\nThe input must follow this grammar:\n");
                    about.push_str(grammar);
                }
                out.push(
                    json!({"type": "function", "function": {"name": name, "description": about,
                    "parameters": {"type": "object", "properties": {"input": {"type": "string",
                        "description": "The tool's free-form input."}}, "required": ["input"]}}}),
                );
            }
            // Codex sends `external_web_access: false` unless live search is on: then no search.
            "web_search" | "web_search_preview" | "web_search_2025_08_26"
                if extras.web_search && tool.get("external_web_access") != Some(&Value::Bool(false)) =>
            {
                *web_search = true
            }
            other => {
                tracing::debug!(tool = other, "a Responses tool the provider cannot run is left out");
            }
        }
    }
    out
}

/// The chat `tool_choice` for the request's.
fn tool_choice(choice: &Value, names: &mut ToolMap) -> Value {
    match choice {
        Value::String(s) if matches!(s.as_str(), "none" | "required" | "auto") => choice.clone(),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function" | "custom") => {
                let namespace = o.get("namespace").and_then(Value::as_str);
                let name = names.outgoing(namespace, o.get("name").and_then(Value::as_str).unwrap_or_default());
                json!({"type": "function", "function": {"name": name}})
            }
            _ => json!("auto"),
        },
        _ => json!("auto"),
    }
}

/// The thinking mode `reasoning.effort` asks for.
fn thinking(body: &Map<String, Value>) -> Option<ThinkingMode> {
    match body.pointer_str("/reasoning/effort")? {
        "none" | "minimal" => Some(ThinkingMode::Minimal),
        "low" => Some(ThinkingMode::Low),
        "medium" => Some(ThinkingMode::Medium),
        "high" => Some(ThinkingMode::High),
        "xhigh" => Some(ThinkingMode::Max),
        _ => None,
    }
}

trait PointerStr {
    fn pointer_str(&self, pointer: &str) -> Option<&str>;
}

impl PointerStr for Map<String, Value> {
    fn pointer_str(&self, pointer: &str) -> Option<&str> {
        let mut parts = pointer.trim_start_matches('/').splitn(2, '/');
        let first = self.get(parts.next()?)?;
        match parts.next() {
            Some(rest) => first.pointer(&format!("/{rest}"))?.as_str(),
            None => first.as_str(),
        }
    }
}

/// Joins the system messages a conversation opens with (instructions, then Codex's developer
/// messages) into one: some chat providers take a single system message only.
fn merge_leading_system(messages: &mut Vec<Value>) {
    let leading = messages.iter().take_while(|m| m["role"] == "system").count();
    if leading < 2 {
        return;
    }
    let joined: Vec<String> = messages
        .drain(..leading)
        .filter_map(|m| m["content"].as_str().map(str::to_string))
        .filter(|t| !t.is_empty())
        .collect();
    messages.insert(0, json!({"role": "system", "content": joined.join("\n\n")}));
}

/// The chat body for a Responses request whose earlier items (`history`, from
/// `previous_response_id`) come first.
pub(crate) fn to_chat(
    body: &Map<String, Value>,
    history: &[Value],
    model: &str,
    stream: bool,
    extras: &ChatExtras,
) -> Translated {
    let mut names = ToolMap::default();
    let mut items = history.to_vec();
    items.extend(input_items(body));
    let mut web_search = false;
    let tools = tools(body, &mut names, extras, &mut web_search);
    let mut all = Vec::new();
    if let Some(instructions) = body.get("instructions").map(text_of).filter(|i| !i.is_empty()) {
        all.push(json!({"role": "system", "content": instructions}));
    }
    all.extend(messages(&items, &mut names, extras));
    merge_leading_system(&mut all);
    let mut out = json!({"model": model, "messages": all, "stream": stream});
    if stream {
        out["stream_options"] = json!({"include_usage": true});
    }
    for (from, to) in [
        ("max_output_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
    ] {
        if let Some(v) = body.get(from).filter(|v| !v.is_null()) {
            out[to] = v.clone();
        }
    }
    if let Some(user) = body
        .get("safety_identifier")
        .or_else(|| body.get("user"))
        .filter(|u| u.is_string())
    {
        out["user"] = user.clone();
    }
    match body.pointer_str("/text/format/type") {
        Some("json_schema") => {
            let format = body
                .get("text")
                .and_then(|t| t.get("format"))
                .cloned()
                .unwrap_or_default();
            let mut schema = json!({"name": format.get("name").cloned().unwrap_or(json!("response")),
                "schema": format.get("schema").cloned().unwrap_or(json!({}))});
            if let Some(strict) = format.get("strict") {
                schema["strict"] = strict.clone();
            }
            out["response_format"] = json!({"type": "json_schema", "json_schema": schema});
        }
        Some("json_object") => out["response_format"] = json!({"type": "json_object"}),
        _ => {}
    }
    let mut tools = tools;
    if let Some(shape) = extras.shape {
        let (fields, hosted) = shape(thinking(body), web_search);
        for (k, v) in fields {
            out[k] = v;
        }
        tools.extend(hosted);
    }
    if !tools.is_empty() {
        if let Some(choice) = body.get("tool_choice") {
            out["tool_choice"] = tool_choice(choice, &mut names);
        }
        if let Some(parallel) = body.get("parallel_tool_calls").filter(|p| p.is_boolean()) {
            out["parallel_tool_calls"] = parallel.clone();
        }
        out["tools"] = Value::Array(tools);
    } else if body.get("tool_choice").and_then(Value::as_str) == Some("none") {
        out["tool_choice"] = json!("none");
    }
    Translated { body: out, names }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A new response id.
pub(crate) fn new_id() -> String {
    format!("resp_{}", uuid::Uuid::new_v4().simple())
}

/// An item id with `prefix`.
pub(crate) fn item_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A `response` object's frame: its id, model, time and the request's echoed fields; `output`,
/// `usage` and `status` are filled in as the reply comes.
#[derive(Debug, Clone)]
pub(crate) struct ResponseFrame {
    pub id: String,
    pub model: String,
    created_at: u64,
    echoed: Map<String, Value>,
}

impl ResponseFrame {
    /// The frame of the response to `body`, answered by `model`.
    pub fn new(id: String, model: &str, body: &Map<String, Value>) -> Self {
        let echoed = ECHOED
            .iter()
            .filter_map(|k| body.get(*k).map(|v| ((*k).to_string(), v.clone())))
            .collect();
        Self {
            id,
            model: model.to_string(),
            created_at: now_secs(),
            echoed,
        }
    }

    /// The `response` object with `output`, `status` and `usage` as given.
    pub fn object(&self, status: &str, output: &[Value], usage: Option<&Usage>, stop: Option<&str>) -> Value {
        let mut response = json!({
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "background": false, "error": null, "incomplete_details": null, "instructions": null,
            "max_output_tokens": null, "metadata": {}, "model": self.model, "output": output,
            "parallel_tool_calls": true, "previous_response_id": null,
            "reasoning": {"effort": null, "summary": null}, "store": true, "temperature": null,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": null,
            "truncation": "disabled", "usage": null, "user": null,
        });
        for (k, v) in &self.echoed {
            response[k] = v.clone();
        }
        if status == "incomplete" {
            let reason = if stop == Some("content_filter") {
                "content_filter"
            } else {
                "max_output_tokens"
            };
            response["incomplete_details"] = json!({"reason": reason});
        }
        if let Some(usage) = usage {
            response["usage"] = usage_json(usage);
        }
        response
    }
}

/// The Responses `usage` for a call's usage.
pub(crate) fn usage_json(usage: &Usage) -> Value {
    json!({"input_tokens": usage.input_tokens, "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens})
}

/// The usage of a chat completion or its last chunk (`prompt_tokens_details.cached_tokens`
/// is carried into the Responses usage where the provider gives it).
pub(crate) fn chat_usage(usage: &Value) -> (Usage, u64) {
    let n = |p: &str| usage.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("/prompt_tokens_details/cached_tokens").max(n("/cached_tokens"));
    (
        Usage {
            input_tokens: n("/prompt_tokens"),
            output_tokens: n("/completion_tokens"),
            reasoning_tokens: n("/completion_tokens_details/reasoning_tokens"),
            cached_input_tokens: cached,
        },
        cached,
    )
}

/// A response's status for a chat finish reason.
pub(crate) fn status_for(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length" | "content_filter") => "incomplete",
        _ => "completed",
    }
}

/// The finished items of one reply.
pub(crate) fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [{"type": "summary_text", "text": text}]})
}

pub(crate) fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
}

/// A tool call item as the client knows the tool: `function_call` (with its namespace) or
/// `custom_tool_call` (its `input`).
pub(crate) fn call_item(id: &str, call_id: &str, name: &ClientName, arguments: &str, status: &str) -> Value {
    if name.custom {
        let input = serde_json::from_str::<Value>(arguments)
            .ok()
            .and_then(|v| v.get("input").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| arguments.to_string());
        return json!({"type": "custom_tool_call", "id": id, "call_id": call_id, "name": name.name,
            "input": input, "status": status});
    }
    let mut item = json!({"type": "function_call", "id": id, "call_id": call_id, "name": name.name,
        "arguments": arguments, "status": status});
    if let Some(ns) = &name.namespace {
        item["namespace"] = Value::String(ns.clone());
    }
    item
}

/// The `response` object for a whole chat completion; and its usage and stop reason.
pub(crate) fn from_chat(reply: &Value, frame: &ResponseFrame, names: &ToolMap, split_tags: bool) -> (Value, Usage) {
    let choice = reply.pointer("/choices/0").cloned().unwrap_or_default();
    let message = choice.get("message").cloned().unwrap_or_default();
    let mut reasoning = reasoning_of(&message);
    let mut text = message
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if split_tags {
        let mut splitter = crate::providers::ThinkSplitter::default();
        let mut pieces = splitter.feed(&text);
        pieces.extend(splitter.finish());
        text.clear();
        for piece in pieces {
            match piece {
                crate::providers::openai_wire::Piece::Text(t) => text.push_str(&t),
                crate::providers::openai_wire::Piece::Reasoning(r) => reasoning.push_str(&r),
            }
        }
    }
    let mut output = Vec::new();
    if !reasoning.is_empty() {
        output.push(reasoning_item(&item_id("rs"), &reasoning));
    }
    if !text.is_empty() {
        output.push(message_item(&item_id("msg"), &text, "completed"));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let sent = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        let call_id = call
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| item_id("call"), str::to_string);
        output.push(call_item(
            &item_id("fc"),
            &call_id,
            &names.incoming(sent),
            arguments,
            "completed",
        ));
    }
    let (usage, cached) = reply.get("usage").map(chat_usage).unwrap_or_default();
    let finish = choice.get("finish_reason").and_then(Value::as_str);
    let mut response = frame.object(status_for(finish), &output, Some(&usage), finish);
    response["usage"]["input_tokens_details"]["cached_tokens"] = json!(cached);
    (response, usage)
}

/// The reasoning text of a chat message or delta: `reasoning_content`, or MiniMax's
/// `reasoning_details`.
pub(crate) fn reasoning_of(message: &Value) -> String {
    if let Some(r) = message.get("reasoning_content").and_then(Value::as_str) {
        return r.to_string();
    }
    message
        .get("reasoning_details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("text").and_then(Value::as_str))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn kimi() -> ChatExtras<'static> {
        ChatExtras {
            reasoning_content: true,
            ..ChatExtras::default()
        }
    }

    #[test]
    fn a_codex_turn_becomes_chat_messages_with_calls_paired_and_reasoning_carried() {
        let request = body(json!({
            "model": "kimi-k2", "instructions": "be terse", "stream": true,
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sandbox: read-only"}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "cat the file"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "I should run cat"}]},
                {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": "{\"cmd\":\"cat a\"}"},
                {"type": "function_call", "call_id": "call_2", "name": "spawn", "namespace": "multi_agent_v1", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "hello"},
                {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "ok"}]},
            ],
            "tools": [
                {"type": "function", "name": "exec_command", "strict": false, "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
                {"type": "namespace", "name": "multi_agent_v1", "description": "agents", "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object"}}]},
                {"type": "custom", "name": "apply_patch", "description": "patch", "format": {"type": "grammar", "definition": "start: x"}},
                {"type": "web_search"},
            ],
            "tool_choice": "auto", "parallel_tool_calls": true, "max_output_tokens": 300,
            "reasoning": {"effort": "high", "summary": "auto"}, "store": false,
            "include": ["reasoning.encrypted_content"], "prompt_cache_key": "x",
        }));
        let t = to_chat(&request, &[], "kimi-k2-0905-preview", true, &kimi());
        let m = t.body["messages"].as_array().cloned().unwrap_or_default();
        let roles: Vec<&str> = m.iter().filter_map(|m| m["role"].as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "tool"]);
        assert_eq!(m[0]["content"], "be terse\n\nsandbox: read-only");
        assert_eq!(m[2]["reasoning_content"], "I should run cat");
        assert_eq!(m[2]["tool_calls"][1]["function"]["name"], "multi_agent_v1__spawn");
        assert_eq!(m[4]["content"], "ok");
        let tools: Vec<&str> = t.body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["function"]["name"].as_str())
            .collect();
        assert_eq!(tools, ["exec_command", "multi_agent_v1__spawn", "apply_patch"]);
        assert_eq!(t.body["max_tokens"], 300);
        assert_eq!(t.body["stream_options"]["include_usage"], true);
        for dropped in [
            "store",
            "include",
            "prompt_cache_key",
            "reasoning",
            "input",
            "instructions",
        ] {
            assert!(t.body.get(dropped).is_none(), "{dropped} is not a chat field");
        }
        let back = t.names.incoming("multi_agent_v1__spawn");
        assert_eq!(
            (back.namespace.as_deref(), back.name.as_str()),
            (Some("multi_agent_v1"), "spawn")
        );
        assert!(t.names.incoming("apply_patch").custom);
        // A provider that reads no reasoning gets none.
        let plain = to_chat(&request, &[], "m", false, &ChatExtras::default());
        assert!(plain.body["messages"][2].get("reasoning_content").is_none());
    }

    #[test]
    fn a_string_input_images_and_formats_map_to_chat() {
        let request = body(json!({"model": "glm-4.6", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "what is this"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAA", "detail": "auto"}]}],
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": true}},
            "tool_choice": {"type": "function", "name": "f"}, "temperature": 0.2}));
        let t = to_chat(&request, &[], "glm-4.6", false, &ChatExtras::default());
        assert_eq!(
            t.body["messages"][0]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AAA"
        );
        assert_eq!(t.body["response_format"]["json_schema"]["strict"], true);
        assert!(t.body.get("tool_choice").is_none(), "no tools, no choice");
        let simple = to_chat(
            &body(json!({"model": "m", "input": "hi"})),
            &[json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "before"}]})],
            "m",
            false,
            &ChatExtras::default(),
        );
        assert_eq!(
            simple.body["messages"],
            json!([{"role": "assistant", "content": "before"}, {"role": "user", "content": "hi"}])
        );
    }

    #[test]
    fn a_completion_becomes_a_response_with_names_restored() {
        let request = body(json!({"model": "glm", "input": "x", "metadata": {"a": "b"},
            "tools": [{"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "f"}]},
                      {"type": "custom", "name": "apply_patch"}]}));
        let t = to_chat(&request, &[], "glm-4.6", false, &ChatExtras::default());
        let frame = ResponseFrame::new(new_id(), "glm-4.6", &request);
        let reply = json!({"choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant",
            "reasoning_content": "think", "content": "<think>more</think>calling",
            "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "ns__f", "arguments": "{\"a\":1}"}},
                {"id": "call_10", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"*** Begin\"}"}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}}});
        let (response, usage) = from_chat(&reply, &frame, &t.names, true);
        assert_eq!(usage.input_tokens, 10);
        assert_eq!(response["status"], "completed");
        assert_eq!(response["metadata"]["a"], "b");
        let output = response["output"].as_array().cloned().unwrap_or_default();
        assert_eq!(output[0]["summary"][0]["text"], "thinkmore");
        assert_eq!(output[1]["content"][0]["text"], "calling");
        assert_eq!(
            (output[2]["name"].as_str(), output[2]["namespace"].as_str()),
            (Some("f"), Some("ns"))
        );
        assert_eq!(output[3]["type"], "custom_tool_call");
        assert_eq!(output[3]["input"], "*** Begin");
        assert_eq!(response["usage"]["input_tokens_details"]["cached_tokens"], 4);
        assert_eq!(response["usage"]["total_tokens"], 15);
        let cut = json!({"choices": [{"finish_reason": "length", "message": {"content": "abc"}}]});
        let (response, _) = from_chat(&cut, &frame, &t.names, false);
        assert_eq!(response["status"], "incomplete");
        assert_eq!(response["incomplete_details"]["reason"], "max_output_tokens");
    }
}
