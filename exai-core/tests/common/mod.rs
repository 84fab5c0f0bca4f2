//! Shared helpers for exai-core's integration tests: gateways pointed at fake upstreams.

#![allow(dead_code)]

use std::collections::HashMap;

use exai_core::testing::FakeUpstream;
use exai_core::{Config, Gateway};

/// Settings that keep tests quick (short backoff, no long waits) and to themselves (memory in
/// process unless a test asks for a store).
pub fn fast_env() -> HashMap<String, String> {
    HashMap::from([
        ("EXAI_MEMORY".to_string(), "memory".to_string()),
        ("EXAI_RETRY_BASE_DELAY_MS".to_string(), "10".to_string()),
        ("EXAI_RETRY_MAX_DELAY_MS".to_string(), "50".to_string()),
        ("EXAI_QUEUE_TIMEOUT_MS".to_string(), "5000".to_string()),
    ])
}

/// A config with `providers` pointed at `fake`, plus `extra` settings.
pub fn config(fake: &FakeUpstream, providers: &[&str], extra: &[(&str, &str)]) -> Config {
    let mut env = fast_env();
    env.extend(fake.env_for(providers));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_parts(&env, None).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// A gateway with `providers` pointed at `fake`.
pub async fn gateway(fake: &FakeUpstream, providers: &[&str], extra: &[(&str, &str)]) -> Gateway {
    Gateway::new(config(fake, providers, extra))
        .await
        .unwrap_or_else(|e| panic!("gateway: {e}"))
}
