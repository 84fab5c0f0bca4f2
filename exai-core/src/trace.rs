//! Traces: the spans a request makes, named and attributed after the OpenTelemetry GenAI
//! semantic conventions, as `tracing` spans. Whoever installs `tracing-opentelemetry` (the
//! binaries do, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set) exports them; without it they cost a
//! span each.
//!
//! - A request (a turn, an Anthropic Messages call, a tool call) is one span `chat {model}` (or
//!   `execute_tool {tool}`): kind SERVER when it is the first span of the process for that
//!   request, continuing the caller's W3C `traceparent` if the front door passed one
//!   ([`TraceContext`]); kind INTERNAL inside a tool call.
//! - Each HTTP attempt to a provider is a CLIENT span `chat {model}` under it, so retries and
//!   fallbacks show as its children.
//!
//! Message content is recorded only when `log.otel_content` (`EXAI_OTEL_CONTENT`) is on.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::error::Error;
use crate::request::Usage;

/// The caller's trace, as W3C Trace Context headers (`traceparent`, and `tracestate` if any):
/// the request's span continues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    traceparent: String,
    tracestate: Option<String>,
}

impl TraceContext {
    /// From the `traceparent` and `tracestate` header values. A malformed `traceparent` is
    /// ignored when the span is made (the request starts a trace of its own).
    pub fn new(traceparent: impl Into<String>, tracestate: Option<String>) -> Self {
        Self {
            traceparent: traceparent.into(),
            tracestate,
        }
    }

    /// From an HTTP request's `traceparent` and `tracestate` headers; `None` without a
    /// `traceparent`. Every front door that speaks HTTP reads them here.
    pub fn from_headers(headers: &reqwest::header::HeaderMap) -> Option<Self> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Some(Self::new(text("traceparent")?, text("tracestate").map(str::to_string)))
    }

    fn context(&self) -> opentelemetry::Context {
        let mut carrier = HashMap::from([("traceparent".to_string(), self.traceparent.clone())]);
        if let Some(state) = &self.tracestate {
            carrier.insert("tracestate".to_string(), state.clone());
        }
        TraceContextPropagator::new().extract(&carrier)
    }
}

/// What a request span is for.
#[derive(Clone, Copy)]
pub(crate) enum Operation<'a> {
    /// A chat turn or an Anthropic Messages call, for the model asked.
    Chat { model: &'a str },
    /// An MCP tool call.
    Tool { name: &'a str },
}

/// The span of one request: SERVER when it starts the process's part of the trace (continuing
/// `parent` if given), INTERNAL inside another request's span (a tool's turns).
pub(crate) fn request_span(op: Operation<'_>, parent: Option<&TraceContext>, key: Option<&str>) -> Span {
    // `exai.key` is recorded later where the key is known only after admission.
    // Nested only in a request span of ours (a tool call's turns): a span of another crate
    // (rmcp's, with RUST_LOG=info) does not make this one internal.
    let root = Span::current().metadata().is_none_or(|m| m.target() != module_path!());
    let kind = if root { "server" } else { "internal" };
    let span = match op {
        Operation::Chat { model } => tracing::info_span!(
            "chat",
            otel.name = format!("chat {model}"),
            otel.kind = kind,
            otel.status_code = Empty,
            gen_ai.operation.name = "chat",
            gen_ai.request.model = model,
            gen_ai.provider.name = Empty,
            gen_ai.response.model = Empty,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            gen_ai.response.finish_reasons = Empty,
            gen_ai.input.messages = Empty,
            gen_ai.output.messages = Empty,
            error.type = Empty,
            exai.cost_usd = Empty,
            exai.key = key,
            exai.fallback_from = Empty,
            exai.deployment = Empty,
            // For log lines.
            request_id = Empty,
            session = Empty,
            conversation = Empty,
            provider = Empty,
            model = Empty,
        ),
        Operation::Tool { name } => tracing::info_span!(
            "tool",
            otel.name = format!("execute_tool {name}"),
            otel.kind = kind,
            otel.status_code = Empty,
            gen_ai.operation.name = "execute_tool",
            gen_ai.tool.name = name,
            error.type = Empty,
            exai.key = key,
        ),
    };
    if let (true, Some(parent)) = (root, parent) {
        let _ = span.set_parent(parent.context());
    }
    span
}

/// The span of one HTTP attempt to a provider's deployment (at `url`, its base URL, when
/// known).
pub(crate) fn attempt_span(provider: &str, deployment: &str, model: &str, url: Option<&str>) -> Span {
    let (address, port) = url.map(server_of).unzip();
    tracing::info_span!(
        "provider",
        otel.name = format!("chat {model}"),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = provider,
        exai.deployment = deployment,
        gen_ai.request.model = model,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.response.finish_reasons = Empty,
        server.address = address,
        server.port = port,
        http.response.status_code = Empty,
        error.type = Empty,
    )
}

/// The host and port of a base URL, for `server.address` and `server.port`.
fn server_of(url: &str) -> (String, u16) {
    match reqwest::Url::parse(url) {
        Ok(u) => (
            u.host_str().unwrap_or_default().to_string(),
            u.port_or_known_default().unwrap_or(0),
        ),
        Err(_) => (String::new(), 0),
    }
}

/// Records on `span` who answered and what it cost.
pub(crate) fn record_answer(
    span: &Span,
    provider: &str,
    model: &str,
    usage: Usage,
    finish_reason: Option<&str>,
    cost: Option<f64>,
) {
    span.record("gen_ai.provider.name", provider);
    span.record("gen_ai.response.model", model);
    span.record("gen_ai.usage.input_tokens", usage.input_tokens);
    span.record("gen_ai.usage.output_tokens", usage.output_tokens);
    if let Some(reason) = finish_reason {
        span.record("gen_ai.response.finish_reasons", format!("[\"{reason}\"]"));
    }
    if let Some(cost) = cost {
        span.record("exai.cost_usd", cost);
    }
}

/// The turn's messages as the GenAI conventions record them (`gen_ai.input.messages`).
pub(crate) fn messages_json(messages: &[crate::request::Message]) -> String {
    let parts: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| serde_json::json!({"role": m.role, "parts": [{"type": "text", "content": m.content}]}))
        .collect();
    serde_json::Value::Array(parts).to_string()
}

/// The reply as the GenAI conventions record it (`gen_ai.output.messages`).
pub(crate) fn reply_json(text: &str) -> String {
    serde_json::json!([{"role": "assistant", "parts": [{"type": "text", "content": text}]}]).to_string()
}

/// Marks `span` failed, with `error.type` set to `kind`.
pub(crate) fn record_error(span: &Span, kind: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", kind);
}

/// The `error.type` of a gateway error: the provider failure's label, or the error's kind.
pub(crate) fn error_type(e: &Error) -> &'static str {
    match e {
        Error::Provider(p) => p.label(),
        Error::Config(_) => "config",
        Error::UnknownModel { .. } => "unknown_model",
        Error::ProviderNotConfigured { .. } | Error::NoProviderConfigured => "no_provider",
        Error::InvalidRequest(_) => "invalid_request",
        Error::OverCapacity { .. } => "over_capacity",
        Error::RateLimited { .. } => "rate_limited",
        Error::DeadlineExceeded { .. } => "deadline_exceeded",
        Error::Unauthorized { .. } => "unauthorized",
        Error::Forbidden { .. } => "forbidden",
        Error::BudgetExceeded { .. } => "budget_exceeded",
        Error::KeyLimited { .. } => "key_limited",
        Error::KeysUnavailable(_) | Error::Keys(_) => "keys_unavailable",
        Error::ThreadNotFound(_) => "thread_not_found",
        Error::ResponseNotFound(_) => "response_not_found",
        Error::Cancelled => "cancelled",
        Error::ShuttingDown => "shutting_down",
        Error::SessionClosed(_) => "session_closed",
        Error::Memory(_) => "memory",
        Error::Internal(_) => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gives_the_server_address_and_port() {
        assert_eq!(server_of("https://api.z.ai/api/paas/v4"), ("api.z.ai".to_string(), 443));
        assert_eq!(server_of("http://127.0.0.1:8089/v1"), ("127.0.0.1".to_string(), 8089));
    }
}
