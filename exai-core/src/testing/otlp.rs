//! An OTLP/HTTP trace receiver on 127.0.0.1, for tests of what the binaries export: it takes
//! `POST /v1/traces` (protobuf), decodes it with OpenTelemetry's own types
//! (`opentelemetry-proto`) and keeps every span with its service name.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use exai_core::testing::otlp::Receiver;
//! let receiver = Receiver::start().await?;
//! // OTEL_EXPORTER_OTLP_ENDPOINT = receiver.endpoint()
//! let spans = receiver.trace("4bf92f3577b34da6a3ce929d0e0e4736", |spans| spans.len() >= 2).await;
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
pub use opentelemetry_proto::tonic::trace::v1::Span;
pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;

/// The receiver; it stops with the test's runtime.
pub struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

impl Receiver {
    /// Starts on a free port.
    pub async fn start() -> std::io::Result<Self> {
        let spans: Arc<Mutex<Vec<(String, Span)>>> = Arc::default();
        let store = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let store = store.clone();
                async move {
                    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                        return axum::http::StatusCode::BAD_REQUEST;
                    };
                    let mut kept = store.lock().unwrap_or_else(|p| p.into_inner());
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .as_ref()
                            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                            .and_then(|a| text(a.value.as_ref()?.value.as_ref()?))
                            .unwrap_or_default();
                        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                            kept.push((service.clone(), span));
                        }
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { endpoint, spans })
    }

    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every span received so far, with the service name of its resource.
    pub fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The spans of trace `trace_id` (32 hex digits) once `done` accepts them; panics after 10 s.
    pub async fn trace(&self, trace_id: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let of_trace = |all: Vec<(String, Span)>| -> Vec<Span> {
            all.into_iter()
                .map(|(_, s)| s)
                .filter(|s| hex(&s.trace_id) == trace_id)
                .collect()
        };
        of_trace(self.until(|all| done(&of_trace(all.to_vec()))).await)
    }

    /// Every span received (with its service name) once `done` accepts them; panics after 10 s.
    pub async fn until(&self, done: impl Fn(&[(String, Span)]) -> bool) -> Vec<(String, Span)> {
        let mut last = Vec::new();
        for _ in 0..200 {
            last = self.spans();
            if done(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the spans awaited did not come in 10 s: {last:#?}");
    }
}

fn text(value: &Any) -> Option<String> {
    match value {
        Any::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// A span's attribute as text (strings, integers, doubles, booleans; arrays of strings joined
/// with `,`).
pub fn attr(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        Any::StringValue(s) => s.clone(),
        Any::IntValue(i) => i.to_string(),
        Any::DoubleValue(d) => d.to_string(),
        Any::BoolValue(b) => b.to_string(),
        Any::ArrayValue(a) => a
            .values
            .iter()
            .filter_map(|v| text(v.value.as_ref()?))
            .collect::<Vec<_>>()
            .join(","),
        other => format!("{other:?}"),
    })
}

/// Bytes (a trace or span id) as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
