//! Log events for clients: a tracing layer that copies events to whoever subscribes.
//!
//! MCP clients can ask for log notifications (`logging/setLevel`); both the stdio server and the
//! daemon offer them. They install [`LogTap::layer`] in their subscriber and, per client,
//! [`LogTap::subscribe`] and forward the records at or above the level that client set. Records
//! carry the message and fields of the event — the same text that goes to stderr, so no secret
//! can appear here that does not appear there (and none does: the library never logs one).

use std::fmt::Write;

use serde_json::{Map, Value};
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Records buffered per slow subscriber before the oldest are dropped.
const BUFFER: usize = 256;

/// One log event.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// Its level.
    pub level: Level,
    /// Its target (module path).
    pub target: String,
    /// The message.
    pub message: String,
    /// The other fields.
    pub fields: Map<String, Value>,
}

/// The tap: cheap to clone, one per process.
#[derive(Clone)]
pub struct LogTap {
    sender: broadcast::Sender<LogRecord>,
}

impl Default for LogTap {
    fn default() -> Self {
        Self::new()
    }
}

impl LogTap {
    /// A tap with no subscriber yet.
    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(BUFFER).0,
        }
    }

    /// The layer to install in the tracing subscriber. It takes exai's events only — no spans
    /// (enabling them would cost every request a span) and nothing from other crates.
    pub fn layer<S>(&self) -> impl Layer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let only_exai_events = filter_fn(|meta| meta.is_event() && meta.target().starts_with("exai"));
        TapLayer {
            sender: self.sender.clone(),
        }
        .with_filter(only_exai_events)
    }

    /// Records from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LogRecord> {
        self.sender.subscribe()
    }
}

/// The tracing layer.
pub struct TapLayer {
    sender: broadcast::Sender<LogRecord>,
}

impl<S: Subscriber> Layer<S> for TapLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        let meta = event.metadata();
        let _ = self.sender.send(LogRecord {
            level: *meta.level(),
            target: meta.target().to_string(),
            message: visitor.message,
            fields: visitor.fields,
        });
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: Map<String, Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.fields
                .insert(field.name().to_string(), Value::String(format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields
                .insert(field.name().to_string(), Value::String(value.to_string()));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name().to_string(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().to_string(), Value::from(value));
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn events_reach_subscribers_with_message_and_fields() {
        let tap = LogTap::new();
        let mut rx = tap.subscribe();
        let subscriber = tracing_subscriber::registry().with(tap.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(provider = "glm", delay_ms = 250u64, "retrying");
        });
        let record = rx.try_recv().ok();
        assert_eq!(
            record.as_ref().map(|r| (r.level, r.message.as_str())),
            Some((Level::WARN, "retrying"))
        );
        let fields = record.map(|r| r.fields).unwrap_or_default();
        assert_eq!(fields.get("provider"), Some(&Value::from("glm")));
        assert_eq!(fields.get("delay_ms"), Some(&Value::from(250)));
    }
}
