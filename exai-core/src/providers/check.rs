//! Is this provider's key accepted? A cheap authenticated call (`GET {base_url}/models`), made
//! only when asked (`exai doctor`, readiness checks) — never on the request path.

use std::time::Duration;

use reqwest::header::DATE;
use serde::Serialize;

use super::ProviderClient;
use super::openai_wire::error_message;
use crate::error::scrub;

/// How long a check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome of a key check.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderCheck {
    /// Provider name.
    pub provider: String,
    /// The deployment checked (`glm#1`): its endpoint and key, named without the key.
    pub deployment: String,
    /// Whether it has a key (or needs none) and is enabled.
    pub configured: bool,
    /// Whether the provider accepted the call.
    pub ok: bool,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// One line a person can act on.
    pub message: String,
    /// The provider's `Date` header, for clock checks.
    pub server_date: Option<String>,
}

impl ProviderClient {
    /// Checks the key with `GET /models`.
    pub async fn check(&self) -> ProviderCheck {
        let config = &self.config;
        let mut out = ProviderCheck {
            provider: config.name.clone(),
            deployment: config
                .deployments
                .first()
                .map_or_else(|| config.name.clone(), |d| d.label.clone()),
            configured: config.is_ready(),
            ok: false,
            status: None,
            message: String::new(),
            server_date: None,
        };
        if !out.configured {
            out.message = format!("not configured: {}", config.setup_hint());
            return out;
        }
        let mut request = self
            .http
            .get(format!("{}/models", config.base_url))
            .timeout(CHECK_TIMEOUT);
        if let Some(key) = &config.api_key {
            request = request.bearer_auth(key.expose());
        }
        let source = config.key_source.clone().unwrap_or_else(|| "no key".into());
        match request.send().await {
            Err(e) if e.is_timeout() => {
                out.message = format!("no answer from {} within {CHECK_TIMEOUT:?}", config.base_url)
            }
            Err(e) if e.is_connect() => out.message = format!("cannot connect to {}", config.base_url),
            Err(e) => out.message = format!("request to {} failed: {}", config.base_url, scrub(&e.to_string())),
            Ok(response) => {
                let status = response.status().as_u16();
                out.status = Some(status);
                out.server_date = response
                    .headers()
                    .get(DATE)
                    .and_then(|d| d.to_str().ok())
                    .map(str::to_string);
                let body = response.text().await.unwrap_or_default();
                out.ok = (200..300).contains(&status);
                if out.ok
                    && let Some(state) = &self.deployment
                {
                    // A key rejected earlier is good again.
                    state.key_accepted();
                }
                out.message = match status {
                    200..=299 => format!("key from {source} accepted"),
                    401 | 403 => format!("{} rejected the key from {source} ({status})", config.name),
                    _ => format!("{} answered {status}: {}", config.name, scrub(&error_message(&body))),
                };
            }
        }
        out
    }
}
