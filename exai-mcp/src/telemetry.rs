//! Traces out of a process: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the core's spans (`exai_core::trace`) are
//! exported over OTLP — HTTP/protobuf by default, gRPC with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`.
//! The standard variables apply: `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME` (default: the
//! binary's name), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and `_ARG`, `OTEL_BSP_*`;
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off.
//!
//! Export never blocks a request: spans go to the SDK's batch processor (its own thread and a
//! bounded queue that drops when full). A collector that cannot be reached is logged once (and
//! once more when it answers again) and counted in `exai_otel_export_errors_total`.
//!
//! HTTP export goes through the workspace's reqwest (rustls), run on the process's tokio runtime,
//! rather than the exporter's own reqwest 0.12 client: one HTTP stack, one TLS stack.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// The exporting pipeline of a process. [`Traces::shutdown`] sends what is still queued.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Sends the spans still queued (waiting at most `within`), then stops exporting.
    pub async fn shutdown(self, within: Duration) {
        let provider = self.provider;
        // The SDK blocks while it flushes; the HTTP export it waits for runs on this runtime.
        let flush = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(within));
        let _ = tokio::time::timeout(within + Duration::from_millis(100), flush).await;
    }
}

/// Whether the environment asks for traces.
fn wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let off = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    !off && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The tracing layer that exports the core's spans, and the pipeline behind it; `None` when the
/// environment does not ask for traces or the exporter cannot be built (said on stderr). Call
/// it inside the tokio runtime.
pub fn traces<S>(service: &'static str) -> Option<(impl Layer<S>, Traces)>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    if !wanted() {
        return None;
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "http/protobuf".into());
    let built = match protocol.trim() {
        "grpc" => opentelemetry_otlp::SpanExporter::builder().with_tonic().build(),
        "http/protobuf" => {
            let client = ReqwestOnRuntime {
                client: reqwest::Client::new(),
                runtime: tokio::runtime::Handle::current(),
            };
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_http_client(client)
                .build()
        }
        other => {
            eprintln!(
                "{service}: OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported (http/protobuf or grpc); no traces"
            );
            return None;
        }
    };
    let exporter = match built {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{service}: cannot export traces: {e}");
            return None;
        }
    };
    let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service);
    }
    let processor = BatchSpanProcessor::builder(Counted::new(exporter)).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource.build())
        .build();
    // Only what the GenAI conventions and exai's attributes say: no source location, thread,
    // target or busy/idle times per span (each costs an attribute per span, or a clock read per
    // poll), and no OpenTelemetry context switched on every poll (parents come from the span
    // tree).
    let layer = tracing_opentelemetry::layer()
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_tracer(provider.tracer("exai"))
        .with_filter(Targets::new().with_target("exai_core", tracing::Level::INFO));
    Some((layer, Traces { provider }))
}

/// The exporter, counting and reporting its failures: the first of a run of failures is logged
/// (and the recovery after it), every one is counted.
struct Counted<E> {
    inner: E,
    failing: Arc<AtomicBool>,
}

impl<E> Counted<E> {
    fn new(inner: E) -> Self {
        Self {
            inner,
            failing: Arc::default(),
        }
    }
}

impl<E> fmt::Debug for Counted<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Counted")
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        match &result {
            Err(e) => {
                metrics::counter!("exai_otel_export_errors_total").increment(1);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target: "exai_mcp::telemetry", error = %e, "cannot export traces; spans are dropped until the collector answers");
                }
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(target: "exai_mcp::telemetry", "the trace collector answers again");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter's HTTP client: reqwest, run on the process's runtime (the SDK calls it from
/// its own thread).
#[derive(Debug)]
struct ReqwestOnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for ReqwestOnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let response = client.execute(request).await?;
            let status = response.status();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        });
        let (status, body) = sent.await??;
        if !status.is_success() {
            return Err(format!("the collector answered {status}").into());
        }
        Ok(Response::builder().status(status).body(body)?)
    }
}
