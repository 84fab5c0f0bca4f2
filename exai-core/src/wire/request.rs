//! [`WireRequest`]: a client's request in its own wire, as the front door received it, and the
//! body a provider that speaks the same wire receives.
//!
//! Reading it checks only what the gateway needs and what the error should name (the model,
//! `max_tokens` for Messages, a non-empty `messages`, whether it streams) with
//! [`Fields`](super::json::Fields): no JSON tree. A tree is built only when the call is
//! translated to another wire.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::Wire;
use super::json::{Edit, Fields, splice, string_literal};
use crate::error::Error;
use crate::trace::TraceContext;

/// The `anthropic-version` sent when the client sent none.
pub(crate) const DEFAULT_VERSION: &str = "2023-06-01";

/// A request as a client sent it, in its wire. Unknown fields are kept and forwarded.
#[derive(Debug, Clone)]
pub struct WireRequest {
    pub(crate) wire: Wire,
    /// The body, byte for byte.
    pub(crate) raw: Bytes,
    /// The model as asked (`auto` when a chat request names none).
    pub(crate) model: String,
    pub(crate) stream: bool,
    /// A chat client asked for the usage chunk (`stream_options.include_usage`).
    pub(crate) include_usage: bool,
    /// A Responses request asks for its response to be kept (`store`, `true` unless `false`).
    pub(crate) store: bool,
    /// A Responses request continues this stored response (`previous_response_id`).
    pub(crate) previous: Option<String>,
    /// Tools past a provider's cap are dropped rather than refused (`anthropic.trim_tools`,
    /// set by the engine).
    pub(crate) trim_tools: bool,
    /// `anthropic-version` and `anthropic-beta`, forwarded to a Messages endpoint.
    pub(crate) version: Option<String>,
    pub(crate) beta: Option<String>,
    pub(crate) trace: Option<TraceContext>,
    /// What the client asked of the response cache.
    pub(crate) cache: CacheDirective,
}

/// What a request asks of the response cache, from its `Cache-Control` and `x-exai-cache`
/// headers — or, for a gateway turn, the MCP tools' `cache` argument, whose values are the
/// serde names: `use`, `no-cache`, `no-store`, `bypass`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CacheDirective {
    /// Answered from the cache when it can be, kept when it may be.
    #[default]
    Use,
    /// A fresh answer, which is then kept (`Cache-Control: no-cache`).
    #[serde(rename = "no-cache")]
    Refresh,
    /// Answered from the cache when it can be, never kept (`Cache-Control: no-store`).
    NoStore,
    /// The cache and coalescing left out entirely (`x-exai-cache: bypass`, or both `no-cache`
    /// and `no-store`).
    Bypass,
}

impl CacheDirective {
    /// Every directive's name, as the MCP tools' `cache` argument takes them.
    pub const NAMES: [&'static str; 4] = ["use", "no-cache", "no-store", "bypass"];

    /// The directive of a request's headers.
    pub fn from_headers(headers: &reqwest::header::HeaderMap) -> Self {
        let bypass = headers
            .get("x-exai-cache")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("bypass"));
        let (mut no_cache, mut no_store) = (false, false);
        for value in headers.get_all(reqwest::header::CACHE_CONTROL) {
            for token in value.to_str().unwrap_or_default().split(',') {
                let token = token.trim();
                no_cache |= token.eq_ignore_ascii_case("no-cache");
                no_store |= token.eq_ignore_ascii_case("no-store");
            }
        }
        match (bypass || (no_cache && no_store), no_cache, no_store) {
            (true, _, _) => Self::Bypass,
            (false, true, _) => Self::Refresh,
            (false, false, true) => Self::NoStore,
            (false, false, false) => Self::Use,
        }
    }

    /// Whether a kept reply may answer.
    pub(crate) fn reads(self) -> bool {
        matches!(self, Self::Use | Self::NoStore)
    }

    /// Whether the reply may be kept.
    pub(crate) fn writes(self) -> bool {
        matches!(self, Self::Use | Self::Refresh)
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidRequest(message.into())
}

impl WireRequest {
    /// A `POST /v1/chat/completions` body: a non-empty `messages` is required; no `model`
    /// means `auto`.
    pub fn chat(raw: impl Into<Bytes>) -> Result<Self, Error> {
        let raw = raw.into();
        let fields = Fields::parse(&raw).map_err(|e| invalid(format!("invalid request body: {e}")))?;
        let model = fields.string("model").map_err(invalid)?;
        let model = model.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| "auto".into());
        fields.non_empty_array("messages").map_err(invalid)?;
        let stream = fields.flag("stream").map_err(invalid)?;
        let include_usage = fields
            .parsed::<Value>("stream_options")
            .map_err(invalid)?
            .and_then(|o| o.get("include_usage").and_then(Value::as_bool))
            .unwrap_or(false);
        let model = model.trim().to_string();
        Ok(Self::new(Wire::Chat, raw, model, stream, include_usage))
    }

    /// A `POST /v1/messages` body: `model`, `max_tokens` and a non-empty `messages` are
    /// required (the error names the field).
    pub fn messages(raw: impl Into<Bytes>) -> Result<Self, Error> {
        let request = Self::messages_body(raw.into())?;
        let fields = Fields::parse(&request.raw).map_err(invalid)?;
        match fields.get("max_tokens").map(|v| v.get()) {
            None => return Err(invalid("max_tokens: field required")),
            Some(v) if v.parse::<u64>().is_ok_and(|n| n > 0) => {}
            Some(_) => return Err(invalid("max_tokens: must be a positive integer")),
        }
        Ok(request)
    }

    /// A `POST /v1/responses` body: a `model` is required; `input` is a string or a list of
    /// items, and may be left out only by a request that continues a stored response.
    pub fn responses(raw: impl Into<Bytes>) -> Result<Self, Error> {
        let raw = raw.into();
        let fields = Fields::parse(&raw).map_err(|e| invalid(format!("invalid JSON body: {e}")))?;
        let model = match fields.string("model") {
            Ok(Some(m)) if !m.trim().is_empty() => m.trim().to_string(),
            Ok(Some(_)) | Err(_) => return Err(invalid("model: must be a non-empty string")),
            Ok(None) => return Err(invalid("Missing required parameter: 'model'.")),
        };
        let previous = fields
            .string("previous_response_id")
            .map_err(|_| invalid("previous_response_id: must be a string"))?;
        match fields
            .get("input")
            .map(|v| v.get().trim_start().as_bytes().first().copied())
        {
            Some(Some(b'"' | b'[')) => {}
            Some(_) => return Err(invalid("input: must be a string or an array of input items")),
            None if previous.is_none() => return Err(invalid("Missing required parameter: 'input'.")),
            None => {}
        }
        let stream = fields.flag("stream").map_err(invalid)?;
        let store = fields.parsed::<bool>("store").map_err(invalid)?.unwrap_or(true);
        let mut request = Self::new(Wire::Responses, raw.clone(), model, stream, false);
        request.store = store;
        request.previous = previous;
        Ok(request)
    }

    /// A `POST /v1/messages/count_tokens` body (`max_tokens` not needed).
    pub fn count_tokens(raw: impl Into<Bytes>) -> Result<Self, Error> {
        let mut request = Self::messages_body(raw.into())?;
        request.stream = false;
        Ok(request)
    }

    fn messages_body(raw: Bytes) -> Result<Self, Error> {
        let fields = Fields::parse(&raw).map_err(|e| invalid(format!("invalid JSON body: {e}")))?;
        let model = match fields.string("model") {
            Ok(Some(m)) if !m.trim().is_empty() => m.trim().to_string(),
            Ok(Some(_)) | Err(_) => return Err(invalid("model: must be a non-empty string")),
            Ok(None) => return Err(invalid("model: field required")),
        };
        fields.non_empty_array("messages").map_err(invalid)?;
        let stream = fields.flag("stream").unwrap_or(false);
        Ok(Self::new(Wire::Messages, raw, model, stream, false))
    }

    fn new(wire: Wire, raw: Bytes, model: String, stream: bool, include_usage: bool) -> Self {
        Self {
            wire,
            raw,
            model,
            stream,
            include_usage,
            store: false,
            previous: None,
            trim_tools: false,
            version: None,
            beta: None,
            trace: None,
            cache: CacheDirective::Use,
        }
    }

    /// Forwards the client's `anthropic-version`.
    pub fn anthropic_version(mut self, version: Option<String>) -> Self {
        self.version = version;
        self
    }

    /// The `anthropic-beta` header, passed through.
    pub fn anthropic_beta(mut self, beta: Option<String>) -> Self {
        self.beta = beta;
        self
    }

    /// Continues the caller's trace (its W3C `traceparent`): the call's span is its child.
    pub fn trace_context(mut self, trace: Option<TraceContext>) -> Self {
        self.trace = trace;
        self
    }

    /// What the client asks of the response cache ([`CacheDirective::from_headers`]).
    pub fn cache_directive(mut self, directive: CacheDirective) -> Self {
        self.cache = directive;
        self
    }

    /// The model as asked.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// The wire the client speaks.
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// The body as a JSON object, for a translation.
    pub(crate) fn body_map(&self) -> Result<Map<String, Value>, Error> {
        serde_json::from_slice(&self.raw).map_err(|e| invalid(format!("invalid JSON body: {e}")))
    }

    /// The body for a provider that speaks this wire: the client's bytes with `model` set to
    /// `model_id`, a chat stream asking for usage, and `more` (a provider's quirks) spliced in.
    pub(crate) fn upstream_body(&self, model_id: &str, more: impl FnOnce(&Fields<'_>) -> Vec<Edit>) -> Vec<u8> {
        let Ok(fields) = Fields::parse(&self.raw) else {
            return self.raw.to_vec();
        };
        let mut edits = more(&fields);
        edits.push(Edit::set(&fields, "model", &string_literal(model_id)));
        if self.wire == Wire::Chat && self.stream && !self.include_usage {
            let mut options = fields
                .parsed::<Map<String, Value>>("stream_options")
                .ok()
                .flatten()
                .unwrap_or_default();
            options.insert("include_usage".into(), Value::Bool(true));
            let options = Value::Object(options).to_string();
            edits.push(Edit::set(&fields, "stream_options", &options));
        }
        splice(&self.raw, edits)
    }

    /// A rough size of the input, for routing (context windows) and estimates.
    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.raw).unwrap_or_default()
    }
}

/// How many tokens a request's input is, and who counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCount {
    /// The count.
    pub input_tokens: u64,
    /// `true` when the provider counted; `false` for the gateway's estimate.
    pub from_provider: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_body_reaches_the_provider_with_only_the_model_and_usage_changed() -> Result<(), Error> {
        let raw = r#"{"model":"auto", "stream":true,"messages":[{"role":"user","content":"hi"}],"x_unknown":1.50}"#;
        let request = WireRequest::chat(raw)?;
        assert!(request.is_stream() && !request.include_usage);
        let body = String::from_utf8(request.upstream_body("glm-4.6", |_| Vec::new())).unwrap_or_default();
        assert_eq!(
            body,
            r#"{"stream_options":{"include_usage":true},"model":"glm-4.6", "stream":true,"messages":[{"role":"user","content":"hi"}],"x_unknown":1.50}"#
        );
        assert!(WireRequest::chat(r#"{"messages":[]}"#).is_err());
        assert_eq!(WireRequest::chat(r#"{"messages":[{"role":"user"}]}"#)?.model(), "auto");
        Ok(())
    }

    #[test]
    fn a_responses_body_needs_a_model_and_an_input_or_a_previous_response() -> Result<(), Error> {
        let err = |raw: &str| WireRequest::responses(raw.to_string()).err().map(|e| e.to_string());
        assert!(err(r#"{"input":"hi"}"#).is_some_and(|e| e.contains("'model'")));
        assert!(err(r#"{"model":"glm-4.6"}"#).is_some_and(|e| e.contains("'input'")));
        assert!(err(r#"{"model":"glm-4.6","input":5}"#).is_some_and(|e| e.contains("input")));
        let request = WireRequest::responses(r#"{"model":"glm-4.6","previous_response_id":"resp_1","store":false}"#)?;
        assert_eq!(request.previous.as_deref(), Some("resp_1"));
        assert!(!request.store && !request.is_stream());
        assert!(WireRequest::responses(r#"{"model":"m","input":[],"stream":true}"#)?.store);
        Ok(())
    }

    #[test]
    fn a_messages_body_names_the_missing_field() {
        let err = |raw: &str| WireRequest::messages(raw.to_string()).err().map(|e| e.to_string());
        assert!(
            err(r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":5}"#).is_some_and(|e| e.contains("model"))
        );
        assert!(
            err(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#)
                .is_some_and(|e| e.contains("max_tokens"))
        );
        assert!(err(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#).is_some());
        assert!(err(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":9}"#).is_none());
        assert!(WireRequest::count_tokens(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#).is_ok());
    }
}
