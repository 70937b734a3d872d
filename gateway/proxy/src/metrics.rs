//! Prometheus metrics of the gateway.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// Requests by decision (`allow`, `deny`, `redirect`, `error`) and reason code.
    pub requests: IntCounterVec,
    /// Time spent in the whole filter chain, by decision.
    pub chain_seconds: HistogramVec,
    /// Time spent in one filter call, by filter.
    pub filter_seconds: HistogramVec,
    /// Bundle loads by result (`ok`, `refused`).
    pub bundle_loads: IntCounterVec,
    /// Revision of the bundle in force.
    pub bundle_revision: IntGauge,
    /// Unix seconds at which the bundle in force was issued (age = now - this).
    pub bundle_issued_at: IntGauge,
    /// Unix seconds at which the bundle in force expires.
    pub bundle_expires_at: IntGauge,
    /// Decision events the origin acknowledged.
    pub audit_events_sent: prometheus::IntCounter,
    /// Decision events dropped because the queue was full (the origin unreachable).
    pub audit_events_dropped: prometheus::IntCounter,
    /// Configuration reloads (SIGHUP) by result (`ok`, `refused`).
    pub config_reloads: IntCounterVec,
    /// Rate checks the shared store (Redis) did not answer, by error code
    /// (`rate_store_timeout`, `rate_store_failed`, `rate_store_bad_answer`).
    pub rate_store_errors: IntCounterVec,
}

fn buckets() -> Vec<f64> {
    vec![1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 2.5e-2, 0.1]
}

impl Metrics {
    /// Register everything.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("gatehouse_requests_total", "Requests by decision and reason code"),
            &["decision", "reason"],
        )
        .expect("metric");
        let chain_seconds = HistogramVec::new(
            HistogramOpts::new("gatehouse_filter_chain_seconds", "Time in the filter chain").buckets(buckets()),
            &["decision"],
        )
        .expect("metric");
        let filter_seconds = HistogramVec::new(
            HistogramOpts::new("gatehouse_filter_call_seconds", "Time in one filter call").buckets(buckets()),
            &["filter"],
        )
        .expect("metric");
        let bundle_loads =
            IntCounterVec::new(Opts::new("gatehouse_bundle_loads_total", "Bundle loads by result"), &["result"])
                .expect("metric");
        let bundle_revision =
            IntGauge::new("gatehouse_bundle_revision", "Revision of the bundle in force").expect("metric");
        let bundle_issued_at =
            IntGauge::new("gatehouse_bundle_issued_at_seconds", "Issue time of the bundle in force").expect("metric");
        let bundle_expires_at =
            IntGauge::new("gatehouse_bundle_expires_at_seconds", "Expiry of the bundle in force").expect("metric");
        let audit_events_sent =
            prometheus::IntCounter::new("gatehouse_audit_events_sent_total", "Decision events the origin acknowledged")
                .expect("metric");
        let audit_events_dropped = prometheus::IntCounter::new(
            "gatehouse_audit_events_dropped_total",
            "Decision events dropped because the queue was full",
        )
        .expect("metric");
        let config_reloads = IntCounterVec::new(
            Opts::new("gatehouse_config_reloads_total", "Configuration reloads (SIGHUP) by result"),
            &["result"],
        )
        .expect("metric");
        let rate_store_errors = IntCounterVec::new(
            Opts::new("gatehouse_rate_store_errors_total", "Rate checks the shared store did not answer, by error"),
            &["error"],
        )
        .expect("metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rate_store_errors.clone()),
            Box::new(audit_events_sent.clone()),
            Box::new(audit_events_dropped.clone()),
            Box::new(chain_seconds.clone()),
            Box::new(filter_seconds.clone()),
            Box::new(bundle_loads.clone()),
            Box::new(bundle_revision.clone()),
            Box::new(bundle_issued_at.clone()),
            Box::new(bundle_expires_at.clone()),
            Box::new(config_reloads.clone()),
        ] {
            registry.register(c).expect("register metric");
        }
        Metrics {
            registry,
            requests,
            chain_seconds,
            filter_seconds,
            bundle_loads,
            bundle_revision,
            bundle_issued_at,
            bundle_expires_at,
            audit_events_sent,
            audit_events_dropped,
            config_reloads,
            rate_store_errors,
        }
    }

    /// The text exposition, plus the bundle age computed now.
    pub fn render(&self, now_secs: u64) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        let issued = self.bundle_issued_at.get();
        if issued > 0 {
            let age = now_secs as i64 - issued;
            buf.extend_from_slice(
                format!("# HELP gatehouse_bundle_age_seconds Age of the bundle in force\n# TYPE gatehouse_bundle_age_seconds gauge\ngatehouse_bundle_age_seconds {age}\n")
                    .as_bytes(),
            );
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
