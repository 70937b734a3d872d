//! # gatehouse-telemetry
//!
//! What every Gatehouse server (the native gateway and authorization service, the regional
//! origin) reports about itself besides metrics: logs (`tracing`, text or JSON, level from
//! `GATEHOUSE_LOG`), traces exported over OTLP ([`otel`]) and error and panic reports to
//! Sentry ([`sentry`](crate::sentry)). One `[telemetry]` section configures them; [`init`]
//! installs one subscriber for all three.

#![warn(missing_docs)]

pub mod otel;
pub mod sentry;

use serde::Deserialize;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The `[telemetry]` section of a server's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Traces over OTLP, when set.
    #[serde(default)]
    pub otlp: Option<otel::OtlpConfig>,
    /// Error and panic reports to Sentry, when set.
    #[serde(default)]
    pub sentry: Option<sentry::SentryConfig>,
}

impl TelemetryConfig {
    /// Field checks, naming the field (`telemetry.otlp.endpoint: …`).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(o) = &self.otlp {
            o.validate()?;
        }
        if let Some(s) = &self.sentry {
            s.validate()?;
        }
        Ok(())
    }
}

/// Keeps the exporters alive; dropping it flushes what is buffered.
#[must_use = "dropping the guard stops exporting"]
pub struct Guard {
    _otel: Option<otel::Guard>,
    _sentry: Option<sentry::Guard>,
}

/// A layer of the process's subscriber, boxed.
pub type Boxed = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Install the process's subscriber: logs to stderr (JSON with `json_logs`), and the
/// trace and error-report layers `config` enables, for a server called `service`
/// (`gatehouse-gateway`, `gatehouse-origin`). Call once, inside a Tokio runtime when
/// `config` exports anything.
pub fn init(config: &TelemetryConfig, service: &str, json_logs: bool) -> anyhow::Result<Guard> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let fmt: Boxed = if json_logs { fmt.json().boxed() } else { fmt.boxed() };
    let mut layers: Vec<Boxed> = vec![fmt.with_filter(filter).boxed()];
    let otel = match &config.otlp {
        Some(c) => {
            let (layer, guard) = otel::layer(c, service)?;
            layers.push(layer);
            Some(guard)
        }
        None => None,
    };
    let sentry = match &config.sentry {
        Some(c) => {
            let (layer, guard) = sentry::layer(c, service)?;
            layers.push(layer);
            Some(guard)
        }
        None => None,
    };
    tracing_subscriber::registry().with(layers).try_init()?;
    Ok(Guard { _otel: otel, _sentry: sentry })
}
