//! Prometheus metrics of the origin, served at `GET /metrics` (operator token): the
//! retention scheduler's progress and the audit sinks' deliveries.

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Every metric the origin exports.
pub struct Metrics {
    registry: Registry,
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

impl Metrics {
    /// Register everything.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("metric");
        let by =
            |name: &str, help: &str, label: &str| IntCounterVec::new(Opts::new(name, help), &[label]).expect("metric");
        let m = Metrics {
            registry,
            retention_runs: counter("gatehouse_origin_retention_runs_total", "Runs of the retention scheduler"),
            retention_purged: by(
                "gatehouse_origin_retention_purged_total",
                "Rows removed by retention, by data type",
                "kind",
            ),
            retention_last_run: IntGauge::new(
                "gatehouse_origin_retention_last_run_seconds",
                "Unix seconds of the retention scheduler's last finished run",
            )
            .expect("metric"),
            sink_delivered: by("gatehouse_origin_audit_sink_delivered_total", "Audit records a sink accepted", "sink"),
            sink_failures: by("gatehouse_origin_audit_sink_failures_total", "Failed audit sink deliveries", "sink"),
            sink_dead_letters: by(
                "gatehouse_origin_audit_sink_dead_letters_total",
                "Audit records given up on after the last retry",
                "sink",
            ),
        };
        for c in [&m.retention_purged, &m.sink_delivered, &m.sink_failures, &m.sink_dead_letters] {
            m.registry.register(Box::new(c.clone())).expect("register");
        }
        m.registry.register(Box::new(m.retention_runs.clone())).expect("register");
        m.registry.register(Box::new(m.retention_last_run.clone())).expect("register");
        m
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_counted() {
        let m = Metrics::new();
        m.retention_purged.with_label_values(&["sessions"]).inc_by(3);
        m.sink_dead_letters.with_label_values(&["siem"]).inc();
        let text = m.render();
        assert!(text.contains("gatehouse_origin_retention_purged_total{kind=\"sessions\"} 3"), "{text}");
        assert!(text.contains("gatehouse_origin_audit_sink_dead_letters_total{sink=\"siem\"} 1"), "{text}");
    }
}
