//! Error and panic reports to Sentry (or anything speaking its envelope protocol), from the
//! `[telemetry.sentry]` section.
//!
//! - `tracing::error!` events become Sentry events; `warn!` and `info!` events become the
//!   breadcrumbs sent with the next one. Panics are reported by the panic integration.
//! - Every event carries the tags `service` (`gatehouse-gateway`, `gatehouse-origin`, …)
//!   and, when it happened while serving a request, `request_id`: from the hub of the
//!   request ([`request_scope`], the origin's middleware), else from the event's own
//!   `request_id` field (the gateway's error events name it).
//! - Nothing personal or secret leaves: `send_default_pii` is always off, and every event
//!   and breadcrumb passes through [`scrub`] first.
//! - The DSN is a credential: it is never logged, and a bad one is refused without echoing
//!   it.

pub mod scrub;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_settings::{within, FieldError};
use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
use sentry::protocol::{Context, Event, Value};
use sentry::types::Dsn;
use sentry::{Hub, SentryFutureExt};
use serde::Deserialize;
use tracing_subscriber::filter::{filter_fn, LevelFilter};
use tracing_subscriber::Layer;

/// The tag naming the request an event happened in.
pub const REQUEST_ID_TAG: &str = "request_id";
/// The tag naming the server that reported.
pub const SERVICE_TAG: &str = "service";
/// The environment variable read for the DSN when the file sets none (Sentry's own name).
pub const DSN_ENV: &str = "SENTRY_DSN";
/// Sentry's limit on a tag's value.
const MAX_TAG_LEN: usize = 200;

/// Whether a client is installed in this process (so a request scope is worth a hub).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// A DSN as written: shown as `[redacted]` by `Debug`, never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct DsnText(String);

impl std::fmt::Debug for DsnText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Error and panic reports to Sentry: the `[telemetry.sentry]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentryConfig {
    /// Where reports go (`https://PUBLIC_KEY@HOST/PROJECT_ID`); when unset, the
    /// `SENTRY_DSN` environment variable.
    #[serde(default)]
    pub dsn: Option<DsnText>,
    /// The environment reported (`production`, `staging`); when unset `SENTRY_ENVIRONMENT`,
    /// else `production` for a release build and `development` for a debug build.
    #[serde(default)]
    pub environment: Option<String>,
    /// The release reported; default `gatehouse@<version>`.
    #[serde(default)]
    pub release: Option<String>,
    /// The share of error events sent, 0.0–1.0 (default 1.0).
    #[serde(default = "default_sample_rate")]
    pub sample_rate: f64,
    /// Always false: personal data is never sent. Accepted only so that a file saying
    /// `false` explicitly loads; `true` is refused.
    #[serde(default)]
    pub send_default_pii: bool,
    /// How many breadcrumbs (earlier `warn!`/`info!` events) travel with an event, 0–100
    /// (default 30).
    #[serde(default = "default_max_breadcrumbs")]
    pub max_breadcrumbs: usize,
    /// How long the process waits at exit for reports still queued, in milliseconds,
    /// 0–30000 (default 2000).
    #[serde(default = "default_flush_timeout_ms")]
    pub flush_timeout_ms: u64,
}

fn default_sample_rate() -> f64 {
    1.0
}

fn default_max_breadcrumbs() -> usize {
    30
}

fn default_flush_timeout_ms() -> u64 {
    2000
}

impl SentryConfig {
    /// Field checks, naming the field (`telemetry.sentry.dsn: …`). The DSN is checked
    /// (from the file, else `SENTRY_DSN`) and never echoed.
    pub fn validate(&self) -> Result<(), String> {
        self.dsn()?;
        if let Some(env) = &self.environment {
            label("telemetry.sentry.environment", env, 64)?;
        }
        if let Some(release) = &self.release {
            label("telemetry.sentry.release", release, 200)?;
            if matches!(release.as_str(), "." | ".." | "latest") {
                return Err(FieldError::new("telemetry.sentry.release", "must name a release").into());
            }
        }
        within("telemetry.sentry.sample_rate", self.sample_rate, 0.0..=1.0)?;
        if self.send_default_pii {
            return Err(FieldError::new(
                "telemetry.sentry.send_default_pii",
                "personal data is never sent to Sentry; remove the setting",
            )
            .into());
        }
        within("telemetry.sentry.max_breadcrumbs", self.max_breadcrumbs, 0..=100)?;
        within("telemetry.sentry.flush_timeout_ms", self.flush_timeout_ms, 0..=30_000)?;
        Ok(())
    }

    /// The DSN in force: the file's, else `SENTRY_DSN`'s.
    fn dsn(&self) -> Result<Dsn, FieldError> {
        let field = "telemetry.sentry.dsn";
        let text = match &self.dsn {
            Some(DsnText(t)) => t.trim().to_string(),
            None => std::env::var(DSN_ENV)
                .map_err(|_| FieldError::new(field, format!("set it, or {DSN_ENV} in the environment")))?,
        };
        let dsn: Dsn = text.trim().parse().map_err(|e: sentry::types::ParseDsnError| {
            // The parser's messages say what is missing without repeating the input.
            FieldError::new(field, format!("not a Sentry DSN (http(s)://PUBLIC_KEY@HOST/PROJECT_ID): {e}"))
        })?;
        if dsn.host().is_empty() {
            return Err(FieldError::new(field, "not a Sentry DSN: no host"));
        }
        Ok(dsn)
    }
}

/// An environment or release name: 1–`max` characters, no control characters or slashes.
fn label(field: &str, s: &str, max: usize) -> Result<(), FieldError> {
    if s.trim().is_empty() || s.chars().count() > max {
        return Err(FieldError::new(field, format!("must be 1–{max} characters")));
    }
    if s.chars().any(|c| c.is_control() || c == '/' || c == '\\') {
        return Err(FieldError::new(field, "must not contain control characters or slashes"));
    }
    Ok(())
}

/// Keeps the client; dropping it sends what is queued, waiting at most
/// `flush_timeout_ms`.
#[must_use = "dropping the guard stops error reports"]
pub struct Guard {
    _client: sentry::ClientInitGuard,
}

impl Drop for Guard {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
    }
}

/// Install the Sentry client for `service` and return the subscriber's layer: `error!`
/// events become events, `warn!`/`info!` events breadcrumbs.
pub fn layer(config: &SentryConfig, service: &str) -> anyhow::Result<(super::Boxed, Guard)> {
    let guard = init(config, service)?;
    let breadcrumbs = BreadcrumbLayer::new()
        .with_filter(filter_fn(|m| matches!(*m.level(), tracing::Level::WARN | tracing::Level::INFO)));
    let errors = ErrorLayer::new().with_filter(LevelFilter::ERROR);
    Ok((breadcrumbs.and_then(errors).boxed(), guard))
}

/// The client alone (no tracing layer): what [`layer`] installs. Panics are reported from
/// here on.
pub fn init(config: &SentryConfig, service: &str) -> anyhow::Result<Guard> {
    config.validate().map_err(anyhow::Error::msg)?;
    let dsn = config.dsn()?;
    let service: Arc<str> = Arc::from(service);
    let mut options = sentry::ClientOptions::new()
        .release(config.release.clone().unwrap_or_else(|| format!("gatehouse@{}", env!("CARGO_PKG_VERSION"))))
        .sample_rate(config.sample_rate as f32)
        .max_breadcrumbs(config.max_breadcrumbs)
        .send_default_pii(false)
        .shutdown_timeout(Duration::from_millis(config.flush_timeout_ms))
        .before_send(move |e| Some(prepare(e, &service)))
        .before_breadcrumb(|b| Some(scrub::breadcrumb(b)));
    options.dsn = Some(dsn);
    if let Some(env) = &config.environment {
        options.environment = Some(env.clone().into());
    }
    let client = sentry::init(options);
    ENABLED.store(client.is_enabled(), Ordering::Relaxed);
    Ok(Guard { _client: client })
}

/// An event on its way out: tagged with the service and the request, then scrubbed.
fn prepare(mut e: Event<'static>, service: &str) -> Event<'static> {
    e.tags.insert(SERVICE_TAG.into(), service.into());
    if !e.tags.contains_key(REQUEST_ID_TAG) {
        let field = e.contexts.get("Rust Tracing Fields").and_then(|c| match c {
            Context::Other(fields) => match fields.get(REQUEST_ID_TAG) {
                Some(Value::String(id)) if !id.is_empty() => Some(bounded(id)),
                _ => None,
            },
            _ => None,
        });
        if let Some(id) = field {
            e.tags.insert(REQUEST_ID_TAG.into(), id);
        }
    }
    scrub::event(e)
}

/// `s` cut to what a tag may hold.
fn bounded(s: &str) -> String {
    s.chars().take(MAX_TAG_LEN).collect()
}

/// Run `request` (one request's handling) in a Sentry scope of its own tagged
/// `request_id`: its errors and a panic while it runs are reported with that id, and its
/// breadcrumbs stay its own. Without a client it is `request` itself.
pub fn request_scope<F: Future>(request_id: &str, request: F) -> impl Future<Output = F::Output> {
    let hub = ENABLED.load(Ordering::Relaxed).then(|| {
        let hub = Arc::new(Hub::new_from_top(Hub::current()));
        hub.configure_scope(|s| s.set_tag(REQUEST_ID_TAG, bounded(request_id)));
        hub
    });
    async move {
        match hub {
            Some(hub) => request.bind_hub(hub).await,
            None => request.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> SentryConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn fields_are_checked_and_named() {
        let ok = parse("dsn = \"https://abc123@sentry.example/42\"\n");
        assert!(ok.validate().is_ok());
        assert_eq!(ok.sample_rate, 1.0);
        for (text, field) in [
            ("dsn = \"https://sentry.example/42\"", "telemetry.sentry.dsn"),
            ("dsn = \"ftp://k@sentry.example/42\"", "telemetry.sentry.dsn"),
            ("dsn = \"https://k@sentry.example/\"", "telemetry.sentry.dsn"),
            ("dsn = \"https://k@h/1\"\nsample_rate = 1.5", "telemetry.sentry.sample_rate"),
            ("dsn = \"https://k@h/1\"\nsend_default_pii = true", "telemetry.sentry.send_default_pii"),
            ("dsn = \"https://k@h/1\"\nenvironment = \"a/b\"", "telemetry.sentry.environment"),
            ("dsn = \"https://k@h/1\"\nrelease = \"\"", "telemetry.sentry.release"),
            ("dsn = \"https://k@h/1\"\nmax_breadcrumbs = 1000", "telemetry.sentry.max_breadcrumbs"),
            ("dsn = \"https://k@h/1\"\nflush_timeout_ms = 600000", "telemetry.sentry.flush_timeout_ms"),
        ] {
            let err = parse(text).validate().unwrap_err();
            assert!(err.starts_with(&format!("{field}: ")), "{text}: {err}");
        }
        assert!(toml::from_str::<SentryConfig>("dsn = \"https://k@h/1\"\ntraces = true").is_err());
    }

    #[test]
    fn the_dsn_is_never_echoed() {
        let secret = "https://s3cr3tkey0000@sentry.example/";
        let c = parse(&format!("dsn = \"{secret}\""));
        let err = c.validate().unwrap_err();
        assert!(!err.contains("s3cr3tkey0000"), "{err}");
        assert!(!format!("{c:?}").contains("s3cr3tkey0000"));
    }

    #[test]
    fn events_get_the_service_and_the_request_id_of_their_fields() {
        let mut fields = sentry::protocol::Map::new();
        fields.insert("request_id".into(), Value::String("req-7".into()));
        let mut e = Event::default();
        e.contexts.insert("Rust Tracing Fields".into(), Context::Other(fields));
        let e = prepare(e, "gatehouse-gateway");
        assert_eq!(e.tags[SERVICE_TAG], "gatehouse-gateway");
        assert_eq!(e.tags[REQUEST_ID_TAG], "req-7");
        // A scope's tag (the request's hub) wins over a field.
        let mut e = Event::default();
        e.tags.insert(REQUEST_ID_TAG.into(), "from-scope".into());
        assert_eq!(prepare(e, "s").tags[REQUEST_ID_TAG], "from-scope");
        assert_eq!(bounded(&"x".repeat(500)).len(), MAX_TAG_LEN);
    }
}
