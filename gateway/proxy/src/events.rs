//! Decision events for the origin's audit log (`POST /v1/audit/edge`).
//!
//! Every decision the gateway can attribute to an organisation is queued (bounded: when
//! the queue is full the oldest events are dropped and counted). A background task sends
//! them in batches. A batch keeps its id and its events until the origin acknowledges it:
//! after a failure — the origin restarting mid-batch, say — the same batch is sent again,
//! and the origin stores each event once (it de-duplicates by batch id and event index).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::config::AuditSink;
use crate::metrics::Metrics;

/// One decision, as the origin stores it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Organisation.
    pub org: String,
    /// Unix seconds.
    pub at: i64,
    /// `allow`, `deny` or `redirect`.
    pub decision: &'static str,
    /// Reason code (`allow` for an allow).
    pub reason: String,
    /// Route name, when known.
    pub route: Option<String>,
    /// Client address.
    pub ip: Option<String>,
    /// Request id (`x-request-id`), when the client sent one.
    pub request_id: Option<String>,
    /// Who really acted, for a request made under an impersonation (the token's
    /// `act.sub`); left out otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// The queue of events not yet sent.
pub struct EdgeEvents {
    queue: Mutex<VecDeque<Event>>,
    max: usize,
    metrics: Arc<Metrics>,
}

impl EdgeEvents {
    /// A queue of at most `max` events.
    pub fn new(max: usize, metrics: Arc<Metrics>) -> EdgeEvents {
        EdgeEvents { queue: Mutex::new(VecDeque::new()), max, metrics }
    }

    /// Queue one event (dropping the oldest if full).
    pub fn push(&self, e: Event) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= self.max {
            q.pop_front();
            self.metrics.audit_events_dropped.inc();
        }
        q.push_back(e);
    }

    fn take(&self, n: usize) -> Vec<Event> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let n = n.min(q.len());
        q.drain(..n).collect()
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Send batches to the origin until the process ends.
pub async fn send_loop(events: Arc<EdgeEvents>, sink: AuditSink, metrics: Arc<Metrics>) {
    use http_body_util::Full;
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    // Batch ids: this process's random id and a counter, so that ids never repeat.
    let instance: String = gatehouse_bundler::random::random_bytes::<8>().iter().map(|b| format!("{b:02x}")).collect();
    let mut seq = 0u64;
    let mut pending: Option<(String, Vec<Event>)> = None;
    let every = Duration::from_millis(sink.flush_ms);
    loop {
        tokio::time::sleep(every).await;
        if pending.is_none() {
            let batch = events.take(sink.batch_max);
            if batch.is_empty() {
                continue;
            }
            seq += 1;
            pending = Some((format!("{instance}-{seq}"), batch));
        }
        let Some((id, batch)) = &pending else { continue };
        let body = serde_json::json!({ "batch_id": id, "events": batch }).to_string();
        let req = hyper::Request::post(sink.url.as_str())
            .header("authorization", format!("Bearer {}", sink.token))
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body)));
        let Ok(req) = req else {
            tracing::error!(url = %sink.url, "bad audit URL");
            continue;
        };
        match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => {
                metrics.audit_events_sent.inc_by(batch.len() as u64);
                pending = None;
            }
            Ok(Ok(resp)) => {
                tracing::warn!(status = %resp.status(), batch = %id, "origin refused an audit batch; retrying")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, batch = %id, "audit batch not delivered; retrying"),
            Err(_) => tracing::warn!(batch = %id, "audit batch timed out; retrying"),
        }
    }
}
