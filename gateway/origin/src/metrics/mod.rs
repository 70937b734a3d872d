//! Prometheus metrics of the origin, served at `GET /metrics` (the operator's token or the
//! scrape token of `[metrics] token_file`; or, without a token, on the `[metrics] listen`
//! listener): sign-ins, tokens, refreshes, SSO outcomes, bundle builds, storage latency,
//! open tenant databases, audit sink deliveries and lag, the retention scheduler.
//!
//! Every label value comes from a fixed set in the code (methods, results, stable reason
//! codes, storage operations, configured sink names): never an organisation, a user or an
//! email address. The gauges that describe state (open tenant databases, sink lag) are
//! set when the metrics are scraped (`crate::api::metrics`).

use anyhow::Result;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use subtle::ConstantTimeEq;

use crate::config::secrets::{read_secret, sha};
use crate::config::OriginConfig;
use crate::error::{ApiError, ApiResult};

mod storage;

pub use storage::{StorageTimer, StorageTimes};

/// Every metric the origin exports.
pub struct Metrics {
    registry: Registry,
    /// SHA-256 of the scrape token (`[metrics] token_file`), if there is one.
    scrape_hash: Option<[u8; 32]>,
    /// Unix seconds at which these metrics were made (the origin's start).
    started: i64,
    /// `gatehouse_origin_build_info{version,region}`: always 1.
    pub build_info: IntGaugeVec,
    /// Sign-in attempts by method (`password`, `mfa`, `passkey`, `sso`), result (`success`,
    /// `failure`, `challenge`: a second factor was asked for, `error`) and reason code.
    pub signins: IntCounterVec,
    /// Tokens issued, by kind (`access`, `refresh`).
    pub tokens_issued: IntCounterVec,
    /// Refresh-token grants by result (`success`, `invalid`, `reused`, `refused`).
    pub token_refreshes: IntCounterVec,
    /// SSO sign-ins coming back from the provider, by protocol (`oidc`: OIDC and OAuth2
    /// callbacks, `saml`), result (`success`, `failure`) and reason code.
    pub sso: IntCounterVec,
    /// Bundle builds by result (`ok`, `error`).
    pub bundle_builds: IntCounterVec,
    /// Time to build and sign a bundle.
    pub bundle_build_seconds: Histogram,
    /// Storage latency by operation (see [`StorageTimes`]).
    pub storage: StorageTimes,
    /// Tenant databases open now.
    pub open_tenant_databases: IntGauge,
    /// Audit records written and not yet accepted by a sink, by sink name.
    pub sink_lag_records: IntGaugeVec,
    /// How long a sink with records waiting has gone without an accepted delivery, by
    /// sink name (0 when it has caught up).
    pub sink_lag_seconds: IntGaugeVec,
    /// Runs of the retention scheduler.
    pub retention_runs: IntCounter,
    /// Rows the retention scheduler removed, by data type (`audit`, `edge_events`,
    /// `sessions`, `tokens`, `invitations`).
    pub retention_purged: IntCounterVec,
    /// Unix seconds at which the retention scheduler last finished a run.
    pub retention_last_run: IntGauge,
    /// Audit records a sink accepted, by sink name.
    pub sink_delivered: IntCounterVec,
    /// Failed delivery attempts, by sink name (each is retried with backoff).
    pub sink_failures: IntCounterVec,
    /// Records given up on after the last retry (dead letters), by sink name.
    pub sink_dead_letters: IntCounterVec,
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("metric")
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("metric")
}

impl Metrics {
    /// Register everything (no scrape token).
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let bundle_buckets = vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let m = Metrics {
            scrape_hash: None,
            started: crate::now(),
            build_info: gauge_vec(
                "gatehouse_origin_build_info",
                "The origin's version and region (always 1)",
                &["version", "region"],
            ),
            signins: counter_vec(
                "gatehouse_origin_signins_total",
                "Sign-in attempts by method, result and reason code",
                &["method", "result", "reason"],
            ),
            tokens_issued: counter_vec("gatehouse_origin_tokens_issued_total", "Tokens issued by kind", &["kind"]),
            token_refreshes: counter_vec(
                "gatehouse_origin_token_refreshes_total",
                "Refresh-token grants by result",
                &["result"],
            ),
            sso: counter_vec(
                "gatehouse_origin_sso_total",
                "SSO sign-ins back from the provider by protocol, result and reason code",
                &["protocol", "result", "reason"],
            ),
            bundle_builds: counter_vec("gatehouse_origin_bundle_builds_total", "Bundle builds by result", &["result"]),
            bundle_build_seconds: Histogram::with_opts(
                HistogramOpts::new("gatehouse_origin_bundle_build_seconds", "Time to build and sign a bundle")
                    .buckets(bundle_buckets),
            )
            .expect("metric"),
            storage: StorageTimes::new(),
            open_tenant_databases: IntGauge::new("gatehouse_origin_open_tenant_databases", "Tenant databases open now")
                .expect("metric"),
            sink_lag_records: gauge_vec(
                "gatehouse_origin_audit_sink_lag_records",
                "Audit records written and not yet accepted by the sink",
                &["sink"],
            ),
            sink_lag_seconds: gauge_vec(
                "gatehouse_origin_audit_sink_lag_seconds",
                "Seconds without an accepted delivery while records wait (0: caught up)",
                &["sink"],
            ),
            retention_runs: IntCounter::new("gatehouse_origin_retention_runs_total", "Runs of the retention scheduler")
                .expect("metric"),
            retention_purged: counter_vec(
                "gatehouse_origin_retention_purged_total",
                "Rows removed by retention, by data type",
                &["kind"],
            ),
            retention_last_run: IntGauge::new(
                "gatehouse_origin_retention_last_run_seconds",
                "Unix seconds of the retention scheduler's last finished run",
            )
            .expect("metric"),
            sink_delivered: counter_vec(
                "gatehouse_origin_audit_sink_delivered_total",
                "Audit records a sink accepted",
                &["sink"],
            ),
            sink_failures: counter_vec(
                "gatehouse_origin_audit_sink_failures_total",
                "Failed audit sink deliveries",
                &["sink"],
            ),
            sink_dead_letters: counter_vec(
                "gatehouse_origin_audit_sink_dead_letters_total",
                "Audit records given up on after the last retry",
                &["sink"],
            ),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.build_info.clone()),
            Box::new(m.signins.clone()),
            Box::new(m.tokens_issued.clone()),
            Box::new(m.token_refreshes.clone()),
            Box::new(m.sso.clone()),
            Box::new(m.bundle_builds.clone()),
            Box::new(m.bundle_build_seconds.clone()),
            Box::new(m.storage.histogram()),
            Box::new(m.open_tenant_databases.clone()),
            Box::new(m.sink_lag_records.clone()),
            Box::new(m.sink_lag_seconds.clone()),
            Box::new(m.retention_runs.clone()),
            Box::new(m.retention_purged.clone()),
            Box::new(m.retention_last_run.clone()),
            Box::new(m.sink_delivered.clone()),
            Box::new(m.sink_failures.clone()),
            Box::new(m.sink_dead_letters.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("register");
        }
        m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), ""]).set(1);
        m
    }

    /// The metrics of an origin configured by `cfg`: its region in the build info, the
    /// scrape token read from `metrics.token_file`.
    pub fn for_config(cfg: &OriginConfig) -> Result<Metrics> {
        let mut m = Metrics::new();
        let _ = m.build_info.remove_label_values(&[env!("CARGO_PKG_VERSION"), ""]);
        m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), &cfg.region]).set(1);
        if let Some(p) = &cfg.metrics.token_file {
            m.scrape_hash = Some(sha(&read_secret(p, "metrics.token_file")?));
        }
        Ok(m)
    }

    /// Whether `token` is the scrape token (constant time; false when there is none).
    pub fn is_scrape_token(&self, token: &str) -> bool {
        self.scrape_hash.is_some_and(|want| bool::from(sha(token).ct_eq(&want)))
    }

    /// Unix seconds at which the origin started (made these metrics).
    pub fn started_at(&self) -> i64 {
        self.started
    }

    /// Whether a scrape token is configured.
    pub fn has_scrape_token(&self) -> bool {
        self.scrape_hash.is_some()
    }

    /// Count a sign-in attempt by `method` from its answer: success, the second step asked
    /// for (`challenge`), a refusal (`failure`, by reason code) or an `error`. A request
    /// for a tenant homed in another region is not an attempt here.
    pub fn signin<T>(&self, method: &'static str, answer: &ApiResult<T>) {
        let (result, reason) = match answer {
            Ok(_) => ("success", "ok"),
            Err(ApiError::WrongRegion { .. }) => return,
            Err(e @ ApiError::SecondStep { .. }) => ("challenge", e.code()),
            Err(e @ (ApiError::Storage(_) | ApiError::Internal(_))) => ("error", e.code()),
            Err(e) => ("failure", e.code()),
        };
        self.signins.with_label_values(&[method, result, reason]).inc();
    }

    /// Count an SSO sign-in back from the provider (`protocol` `oidc` or `saml`): `Ok`, or
    /// refused with a reason code. It counts as a sign-in by `sso` too.
    pub fn sso_outcome(&self, protocol: &'static str, outcome: Result<(), &'static str>) {
        let (result, reason) = match outcome {
            Ok(()) => ("success", "ok"),
            Err("internal_error") => ("error", "internal_error"),
            Err(reason) => ("failure", reason),
        };
        self.sso.with_label_values(&[protocol, result, reason]).inc();
        self.signins.with_label_values(&["sso", result, reason]).inc();
    }

    /// Count a refresh-token grant by result (`success`, `invalid`, `reused`, `refused`).
    pub fn refresh(&self, result: &'static str) {
        self.token_refreshes.with_label_values(&[result]).inc();
    }

    /// Count the tokens of one issuance: an access token and a refresh token.
    pub fn issued(&self) {
        self.tokens_issued.with_label_values(&["access"]).inc();
        self.tokens_issued.with_label_values(&["refresh"]).inc();
    }

    /// Time a bundle build: the build counts as `error` unless [`BundleBuild::ok`] is
    /// called before the guard is dropped.
    pub fn bundle_build(&self) -> BundleBuild<'_> {
        BundleBuild { metrics: self, started: std::time::Instant::now(), ok: false }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the metric types registered here.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A bundle build being timed ([`Metrics::bundle_build`]).
pub struct BundleBuild<'a> {
    metrics: &'a Metrics,
    started: std::time::Instant,
    ok: bool,
}

impl BundleBuild<'_> {
    /// The bundle was built and signed.
    pub fn ok(mut self) {
        self.ok = true;
    }
}

impl Drop for BundleBuild<'_> {
    fn drop(&mut self) {
        let result = if self.ok { "ok" } else { "error" };
        self.metrics.bundle_builds.with_label_values(&[result]).inc();
        self.metrics.bundle_build_seconds.observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn renders_what_was_counted() {
        let m = Metrics::new();
        m.retention_purged.with_label_values(&["sessions"]).inc_by(3);
        m.sink_dead_letters.with_label_values(&["siem"]).inc();
        let text = m.render();
        assert!(text.contains("gatehouse_origin_retention_purged_total{kind=\"sessions\"} 3"), "{text}");
        assert!(text.contains("gatehouse_origin_audit_sink_dead_letters_total{sink=\"siem\"} 1"), "{text}");
    }

    #[test]
    fn sign_ins_are_counted_by_method_result_and_reason_code() {
        let m = Metrics::new();
        m.signin::<()>("password", &Ok(()));
        m.signin::<()>("password", &Err(ApiError::InvalidCredentials));
        m.signin::<()>("password", &Err(ApiError::InvalidCredentials));
        m.signin::<()>("password", &Err(ApiError::forbidden("sso_required", "use SSO")));
        m.signin::<()>(
            "password",
            &Err(ApiError::SecondStep {
                code: "mfa_required",
                message: "second factor",
                mfa_token: "secret-token".into(),
                methods: vec![],
            }),
        );
        m.signin::<()>("mfa", &Err(ApiError::Internal(anyhow::anyhow!("disk on fire"))));
        // Another region's tenant: not an attempt here.
        m.signin::<()>(
            "password",
            &Err(ApiError::WrongRegion { region: "us-east".into(), url: "https://us.example".into() }),
        );
        let text = m.render();
        for line in [
            r#"gatehouse_origin_signins_total{method="password",reason="ok",result="success"} 1"#,
            r#"gatehouse_origin_signins_total{method="password",reason="invalid_credentials",result="failure"} 2"#,
            r#"gatehouse_origin_signins_total{method="password",reason="sso_required",result="failure"} 1"#,
            r#"gatehouse_origin_signins_total{method="password",reason="mfa_required",result="challenge"} 1"#,
            r#"gatehouse_origin_signins_total{method="mfa",reason="internal_error",result="error"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains("wrong_region"), "{text}");
        assert!(!text.contains("secret-token") && !text.contains("disk on fire"), "no detail in labels: {text}");
        assert_eq!(ApiError::InvalidCredentials.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn sso_tokens_refreshes_and_bundle_builds() {
        let m = Metrics::new();
        m.sso_outcome("oidc", Ok(()));
        m.sso_outcome("saml", Err("sso_saml_replayed"));
        m.sso_outcome("saml", Err("internal_error"));
        m.issued();
        m.refresh("reused");
        m.bundle_build().ok();
        drop(m.bundle_build());
        let text = m.render();
        for line in [
            r#"gatehouse_origin_sso_total{protocol="oidc",reason="ok",result="success"} 1"#,
            r#"gatehouse_origin_sso_total{protocol="saml",reason="sso_saml_replayed",result="failure"} 1"#,
            r#"gatehouse_origin_sso_total{protocol="saml",reason="internal_error",result="error"} 1"#,
            r#"gatehouse_origin_signins_total{method="sso",reason="sso_saml_replayed",result="failure"} 1"#,
            r#"gatehouse_origin_tokens_issued_total{kind="access"} 1"#,
            r#"gatehouse_origin_tokens_issued_total{kind="refresh"} 1"#,
            r#"gatehouse_origin_token_refreshes_total{result="reused"} 1"#,
            r#"gatehouse_origin_bundle_builds_total{result="ok"} 1"#,
            r#"gatehouse_origin_bundle_builds_total{result="error"} 1"#,
            "gatehouse_origin_bundle_build_seconds_count 2",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn the_scrape_token_is_checked_only_when_configured() {
        let mut m = Metrics::new();
        assert!(!m.has_scrape_token());
        assert!(!m.is_scrape_token(""), "no token configured: nothing is the scrape token");
        m.scrape_hash = Some(sha("scrape-token-0123456789"));
        assert!(m.is_scrape_token("scrape-token-0123456789"));
        assert!(!m.is_scrape_token("scrape-token-012345678"));
        assert!(!m.is_scrape_token(""));
    }
}
