//! Storage latency: `gatehouse_origin_storage_seconds{op}`, one histogram shared by the
//! store (which opens databases) and the API (which commits and checks readiness).
//!
//! Operations: `open` (opening and migrating a tenant database that was not open),
//! `commit` (a tenant write: its audit records appended, `COMMIT`, the audit head
//! recorded), `ready` (the readiness query on the directory database).

use prometheus::{HistogramOpts, HistogramVec};

/// The storage-latency histogram (cheap to clone: clones share the series).
#[derive(Clone)]
pub struct StorageTimes(HistogramVec);

impl StorageTimes {
    /// A histogram not yet registered anywhere.
    pub(crate) fn new() -> StorageTimes {
        let buckets = vec![1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
        let opts =
            HistogramOpts::new("gatehouse_origin_storage_seconds", "Storage latency by operation").buckets(buckets);
        StorageTimes(HistogramVec::new(opts, &["op"]).expect("metric"))
    }

    pub(crate) fn histogram(&self) -> HistogramVec {
        self.0.clone()
    }

    /// Start timing `op`; observed when the timer is dropped.
    pub fn start(&self, op: &'static str) -> StorageTimer {
        StorageTimer { times: self.clone(), op, started: std::time::Instant::now() }
    }
}

/// One storage operation being timed ([`StorageTimes::start`]).
pub struct StorageTimer {
    times: StorageTimes,
    op: &'static str,
    started: std::time::Instant,
}

impl Drop for StorageTimer {
    fn drop(&mut self) {
        self.times.0.with_label_values(&[self.op]).observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_series() {
        let t = StorageTimes::new();
        drop(t.clone().start("open"));
        drop(t.start("open"));
        drop(t.start("commit"));
        assert_eq!(t.histogram().with_label_values(&["open"]).get_sample_count(), 2);
        assert_eq!(t.histogram().with_label_values(&["commit"]).get_sample_count(), 1);
    }
}
