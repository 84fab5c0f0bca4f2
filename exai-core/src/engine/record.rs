//! What is recorded once per call, whatever its front door: the usage ledger (and the request
//! metrics), the key's spend, the status page's line and the request span's answer.

use std::sync::Arc;

use tokio::time::Instant;

use crate::activity::RequestRecord;
use crate::catalog::ModelInfo;
use crate::error::Error;
use crate::gateway::Gateway;
use crate::request::{FallbackNote, Usage};
use crate::trace;
use crate::usage::Who;

use super::deployment::DeploymentPermit;

/// Whose call it was, for the ledger: `model`, at `deployment` (its label), made with `key`.
fn who<'a>(model: &'a ModelInfo, deployment: Option<&'a str>, key: Option<&'a str>) -> Who<'a> {
    Who {
        provider: &model.provider,
        model: &model.id,
        deployment,
        key,
    }
}

/// Records a call that `model` answered at `deployment`, made with `key` if any: the usage
/// ledger (which also counts it as `ok` in the metrics, with handles kept per model), the
/// deployment's tokens this minute (its `tpm`) and the key's spend. Returns its cost.
pub(crate) fn record_success(
    gateway: &Gateway,
    model: &ModelInfo,
    deployment: &DeploymentPermit,
    key: Option<&str>,
    usage: Usage,
    started: Instant,
) -> f64 {
    let cost = model.price.cost_of(&usage);
    gateway
        .ledger()
        .success(who(model, Some(&deployment.label), key), usage, cost, started.elapsed());
    deployment.used(gateway, usage.input_tokens + usage.output_tokens);
    if let Some(key) = key {
        gateway
            .keys()
            .record(key, cost, usage.input_tokens + usage.output_tokens);
    }
    cost
}

/// Records a call the response cache answered with a reply of `model`, made with `key` if any:
/// the ledger's `cached` and `saved_usd`, and the metrics' dollars saved. The key is charged
/// nothing.
pub(crate) fn record_cached(gateway: &Gateway, model: &ModelInfo, key: Option<&str>, saved: f64) {
    gateway.ledger().cached(who(model, None, key), saved);
    metrics::gauge!("exai_cache_saved_usd_total", "provider" => model.provider.clone(), "model" => model.id.clone())
        .increment(saved);
}

/// Records a call to `model` at `deployment` that failed (`status`: the failure's label): the
/// usage ledger and the request metrics.
pub(crate) fn record_failure(
    gateway: &Gateway,
    model: &ModelInfo,
    deployment: &str,
    key: Option<&str>,
    status: &'static str,
    started: Instant,
) {
    gateway.ledger().error(who(model, Some(deployment), key));
    metrics::counter!("exai_requests_total", "provider" => model.provider.clone(), "model" => model.id.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("exai_request_duration_seconds", "provider" => model.provider.clone())
        .record(started.elapsed().as_secs_f64());
}

/// A call as the status page and its span know it, from admission to its end.
#[derive(Clone)]
pub(crate) struct CallRecord {
    /// `openai`, `anthropic`, a tool's name, `api`.
    pub front_door: &'static str,
    pub asked: String,
    pub key: Option<Arc<str>>,
    pub started: Instant,
    pub span: tracing::Span,
}

impl CallRecord {
    /// `model` answered at `deployment` (after `fallbacks`) with `usage`: the ledger, the key's
    /// spend, the span and the status page. Returns the cost.
    pub fn answered(
        &self,
        gateway: &Gateway,
        (model, deployment): (&ModelInfo, &DeploymentPermit),
        fallbacks: &[FallbackNote],
        usage: Usage,
        stop: Option<&str>,
    ) -> f64 {
        let cost = record_success(gateway, model, deployment, self.key.as_deref(), usage, self.started);
        trace::record_answer(&self.span, &model.provider, &model.id, usage, stop, Some(cost));
        if let Some(first) = fallbacks.first() {
            self.span.record(
                "exai.fallback_from",
                format!("{}/{}", first.provider, first.model).as_str(),
            );
        }
        let line = self
            .line()
            .answered(&model.provider, &model.id, tried(fallbacks), usage, cost)
            .at(Some(&deployment.label));
        gateway.activity_log().record(line);
        cost
    }

    /// The cache answered with a reply `model` gave earlier (`usage`): the ledger counts it as
    /// `cached` with what it would have cost, nothing is charged to the key; the status page
    /// shows it as `cached`, and the metrics count the dollars saved.
    pub fn cached(&self, gateway: &Gateway, model: &ModelInfo, usage: Usage) {
        self.answered_without_a_call(gateway, model, usage, "cached");
    }

    /// An identical call in flight answered this one (in-flight coalescing): recorded as a cache
    /// hit is — the ledger's `cached` with what it saved, nothing charged — and shown on the
    /// status page as `coalesced`.
    pub fn coalesced(&self, gateway: &Gateway, model: &ModelInfo, usage: Usage) {
        self.answered_without_a_call(gateway, model, usage, "coalesced");
    }

    fn answered_without_a_call(&self, gateway: &Gateway, model: &ModelInfo, usage: Usage, status: &str) {
        record_cached(gateway, model, self.key.as_deref(), model.price.cost_of(&usage));
        trace::record_answer(&self.span, &model.provider, &model.id, usage, None, Some(0.0));
        let mut line = self.line().answered(&model.provider, &model.id, Vec::new(), usage, 0.0);
        line.status = status.to_string();
        gateway.activity_log().record(line);
    }

    /// `model` began to answer at `deployment`, and the reply broke (upstream, deadline, or the
    /// client left).
    pub fn broken(
        &self,
        gateway: &Gateway,
        (model, deployment): (&ModelInfo, &DeploymentPermit),
        fallbacks: &[FallbackNote],
        usage: Usage,
    ) {
        record_failure(
            gateway,
            model,
            &deployment.label,
            self.key.as_deref(),
            "stream_interrupted",
            self.started,
        );
        // What it used before it broke still counts against its `tpm`.
        deployment.used(gateway, usage.input_tokens + usage.output_tokens);
        trace::record_error(&self.span, "stream_interrupted");
        let mut line = self
            .line()
            .answered(&model.provider, &model.id, tried(fallbacks), usage, 0.0)
            .at(Some(&deployment.label));
        line.status = "stream_interrupted".to_string();
        gateway.activity_log().record(line);
    }

    /// The call failed before any model answered.
    pub fn failed(&self, gateway: &Gateway, error: &Error) {
        trace::record_error(&self.span, trace::error_type(error));
        gateway.activity_log().record(self.line().failed(error));
    }

    fn line(&self) -> RequestRecord {
        RequestRecord::new(
            self.front_door.to_string(),
            self.asked.clone(),
            self.key.as_deref().map(str::to_string),
            self.started,
        )
    }
}

/// `provider/model` of each model left before the one that answered.
fn tried(fallbacks: &[FallbackNote]) -> Vec<String> {
    fallbacks
        .iter()
        .map(|f| format!("{}/{}", f.provider, f.model))
        .collect()
}
