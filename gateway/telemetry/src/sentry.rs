//! PLACEHOLDER (groundwork): Error and panic reports to Sentry; its helper replaces this file.

use serde::Deserialize;

/// Error and panic reports to Sentry: the `[telemetry.sentry]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentryConfig {}

impl SentryConfig {
    /// Field checks.
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Flushes on drop.
pub struct Guard;

/// The layer for the process's subscriber.
pub fn layer(config: &SentryConfig, service: &str) -> anyhow::Result<(super::Boxed, Guard)> {
    let _ = (config, service);
    anyhow::bail!("not built yet")
}
