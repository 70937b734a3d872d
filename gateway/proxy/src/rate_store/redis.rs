//! The rate store on Redis (or Valkey): each request's rate steps in one Lua script
//! (`gcra.lua`: the core's GCRA, in microseconds, on the server's clock), over a pool of
//! multiplexed connections that reconnect by themselves, every call bounded in time.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use gatehouse_core::engine::RateStep;
use gatehouse_core::ratelimit::RateDecision;

use super::{OnError, RateStoreConfig};

/// The script, as the server runs it.
pub const SCRIPT: &str = include_str!("gcra.lua");

/// Why the store gave no answer (the request then gets `on_error`'s).
#[derive(Debug, thiserror::Error)]
pub enum RateStoreError {
    /// No answer within `timeout_ms` (connecting included).
    #[error("the rate store did not answer within {0} ms")]
    Timeout(u64),
    /// The connection or the script failed.
    #[error("the rate store failed: {0}")]
    Failed(String),
    /// The script's answer was not one answer per step.
    #[error("the rate store answered with {0}")]
    BadAnswer(String),
}

impl RateStoreError {
    /// The stable code, for logs and `gatehouse_rate_store_errors_total`.
    pub fn code(&self) -> &'static str {
        match self {
            RateStoreError::Timeout(_) => "rate_store_timeout",
            RateStoreError::Failed(_) => "rate_store_failed",
            RateStoreError::BadAnswer(_) => "rate_store_bad_answer",
        }
    }
}

/// Rate limits counted in Redis, shared by every gateway that uses the same server and
/// key prefix.
pub struct RedisRates {
    conns: Vec<ConnectionManager>,
    next: AtomicUsize,
    script: ::redis::Script,
    timeout: Duration,
    timeout_ms: u64,
    prefix: String,
    /// What a request gets when the store does not answer.
    pub on_error: OnError,
    errors: prometheus::IntCounterVec,
    last_warned: AtomicU64,
}

/// A step's emission interval in whole microseconds (at least 1), as the script counts.
fn interval_us(interval_ns: u64) -> u64 {
    interval_ns.div_ceil(1_000).max(1)
}

impl RedisRates {
    /// The store of `config` (kind `redis`, validated). Connections open on first use and
    /// reopen by themselves, so a gateway starts while Redis is away (its requests then
    /// get `on_error`'s). Needs a Tokio runtime. `errors` counts unanswered checks.
    pub fn new(config: &RateStoreConfig, errors: prometheus::IntCounterVec) -> anyhow::Result<RedisRates> {
        let url = config.url.as_deref().ok_or_else(|| anyhow::anyhow!("rate_store.url is not set"))?;
        let client = ::redis::Client::open(url).map_err(|_| anyhow::anyhow!("rate_store.url: not a Redis URL"))?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(500));
        let conns = (0..config.pool_size)
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), manager.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("rate store: {e}"))?;
        Ok(RedisRates {
            conns,
            next: AtomicUsize::new(0),
            script: ::redis::Script::new(SCRIPT),
            timeout,
            timeout_ms: config.timeout_ms,
            prefix: config.key_prefix.clone(),
            on_error: config.on_error,
            errors,
            last_warned: AtomicU64::new(0),
        })
    }

    /// Run `steps` (one organisation's, in order) on the server's clock: one answer per
    /// step, fewer when a step was refused (it is the last).
    pub async fn run(&self, org: &str, steps: &[RateStep]) -> Result<Vec<RateDecision>, RateStoreError> {
        self.run_at(org, steps, 0).await
    }

    /// [`RedisRates::run`] at `now_us` microseconds since 1970 instead of the server's
    /// clock (0: the server's): for tests against a reference under a fake clock.
    pub async fn run_at(
        &self,
        org: &str,
        steps: &[RateStep],
        now_us: u64,
    ) -> Result<Vec<RateDecision>, RateStoreError> {
        let result = self.invoke(org, steps, now_us).await;
        if let Err(e) = &result {
            self.errors.with_label_values(&[e.code()]).inc();
            // One line a second at most: an outage must not flood the log.
            let now = crate::filters::now_nanos() / 1_000_000_000;
            let last = self.last_warned.load(Ordering::Relaxed);
            if now > last && self.last_warned.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                tracing::warn!(code = e.code(), on_error = ?self.on_error, "rate store unavailable: {e}");
            }
        }
        result
    }

    async fn invoke(&self, org: &str, steps: &[RateStep], now_us: u64) -> Result<Vec<RateDecision>, RateStoreError> {
        let mut call = self.script.prepare_invoke();
        call.arg(now_us);
        for s in steps {
            // The organisation as the hash tag: one request's keys share a cluster slot.
            call.key(format!("{}{{{org}}}:{}", self.prefix, s.key));
            call.arg(interval_us(s.gcra.interval)).arg(s.gcra.burst.max(1));
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let mut conn = self.conns[i].clone();
        let answer: Vec<Vec<i64>> = tokio::time::timeout(self.timeout, call.invoke_async(&mut conn))
            .await
            .map_err(|_| RateStoreError::Timeout(self.timeout_ms))?
            .map_err(|e| RateStoreError::Failed(bounded(&e.to_string())))?;
        decode(&answer, steps.len())
    }
}

/// At most 200 bytes of an error's text, on a character boundary.
fn bounded(s: &str) -> String {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The script's answers as decisions: one per step up to and including the first
/// refusal, five non-negative numbers each.
fn decode(answer: &[Vec<i64>], steps: usize) -> Result<Vec<RateDecision>, RateStoreError> {
    if answer.len() > steps || (answer.len() < steps && answer.last().is_none_or(|a| a.first() != Some(&0))) {
        return Err(RateStoreError::BadAnswer(format!("{} answers to {steps} steps", answer.len())));
    }
    answer
        .iter()
        .map(|a| match a.as_slice() {
            &[allowed @ (0 | 1), limit, remaining, reset_us, retry_us]
                if limit >= 0 && remaining >= 0 && reset_us >= 0 && retry_us >= 0 =>
            {
                Ok(RateDecision {
                    allowed: allowed == 1,
                    limit: limit as u64,
                    remaining: remaining as u64,
                    reset_after: (reset_us as u64).saturating_mul(1_000),
                    retry_after: (retry_us as u64).saturating_mul(1_000),
                })
            }
            other => Err(RateStoreError::BadAnswer(format!("{other:?}"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_one_per_step_up_to_the_first_refusal() {
        let ok = vec![1, 10, 9, 100, 0];
        let no = vec![0, 10, 0, 1000, 100];
        assert_eq!(decode(&[ok.clone(), ok.clone()], 2).unwrap().len(), 2);
        let d = decode(&[ok.clone(), no.clone()], 3).unwrap();
        assert!(d[0].allowed && !d[1].allowed);
        assert_eq!((d[1].reset_after, d[1].retry_after), (1_000_000, 100_000));
        for (bad, steps) in [
            (vec![ok.clone()], 2),              // stopped without a refusal
            (vec![ok.clone(), ok.clone()], 1),  // more answers than steps
            (vec![vec![2, 10, 9, 100, 0]], 1),  // not a boolean
            (vec![vec![1, 10, -1, 100, 0]], 1), // negative
            (vec![vec![1, 10, 9]], 1),          // short
        ] {
            assert!(matches!(decode(&bad, steps), Err(RateStoreError::BadAnswer(_))), "{bad:?}");
        }
        assert_eq!(interval_us(1), 1);
        assert_eq!(interval_us(10_000_000), 10_000);
        assert_eq!(interval_us(10_000_001), 10_001);
        assert_eq!(bounded(&"é".repeat(150)).len(), 200);
    }
}
