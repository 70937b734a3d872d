//! PLACEHOLDER (groundwork): Traces over OTLP; its helper replaces this file.

use serde::Deserialize;

/// Traces over OTLP: the `[telemetry.otlp]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {}

impl OtlpConfig {
    /// Field checks.
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Flushes on drop.
pub struct Guard;

/// The layer for the process's subscriber.
pub fn layer(config: &OtlpConfig, service: &str) -> anyhow::Result<(super::Boxed, Guard)> {
    let _ = (config, service);
    anyhow::bail!("not built yet")
}
