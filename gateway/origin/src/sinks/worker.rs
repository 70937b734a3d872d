//! The delivery loop: one task per sink. Woken by commits (or every `sweep_secs`), it
//! takes one batch per tenant with undelivered records in turn (so one busy tenant does
//! not hold the others back), delivers it with retries and backoff, and moves the
//! tenant's cursor once the receiver accepted — or, after the last attempt, records the
//! batch's ids as dead letters and moves on.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::api::app::App;
use crate::audit::Filter;
use crate::store::audit::Record;

use super::cursors::{self, Pending};
use super::record::TenantName;
use super::Sink;

/// Tenants looked at per round.
const TENANTS_PER_ROUND: i64 = 1000;

/// The running delivery tasks; [`Workers::stop`] ends them.
pub struct Workers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Start one delivery task per sink of `app`.
pub fn start(app: Arc<App>) -> Workers {
    let tasks = app
        .sinks
        .all()
        .iter()
        .map(|sink| {
            let (app, sink) = (app.clone(), sink.clone());
            tokio::spawn(async move { run(app, sink).await })
        })
        .collect();
    Workers { tasks }
}

impl Workers {
    /// Stop every task (a delivery in flight is abandoned; its records were not counted
    /// as accepted, so they go out again after a restart).
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn run(app: Arc<App>, sink: Arc<Sink>) {
    let sweep = Duration::from_secs(sink.settings.sweep_secs);
    loop {
        if let Err(e) = drain(&app, &sink).await {
            tracing::warn!(sink = %sink.name(), error = %format!("{e:#}"), "audit sink pass failed");
        }
        tokio::select! {
            _ = sink.wake.notified() => {}
            _ = tokio::time::sleep(sweep) => {}
        }
    }
}

/// Rounds of one batch per pending tenant, until a round moves no cursor.
async fn drain(app: &App, sink: &Sink) -> Result<()> {
    loop {
        let pending = {
            let d = app.store.directory.lock().await;
            cursors::pending(&d, sink.name(), &app.cfg.region, TENANTS_PER_ROUND).await?
        };
        let mut moved = false;
        for p in &pending {
            match next_batch(app, sink, p).await {
                Ok(m) => moved |= m,
                Err(e) => {
                    tracing::warn!(sink = %sink.name(), tenant = %p.tenant.id, error = %format!("{e:#}"), "audit sink: cannot read the tenant's log")
                }
            }
        }
        if !moved {
            return Ok(());
        }
    }
}

/// The records of `t` after `after`, at most `limit`, in order.
pub(crate) async fn records_after(app: &App, t: &str, after: i64, limit: usize) -> Result<Vec<Record>> {
    let db = app.store.tenant(t, false).await?;
    let h = db.lock().await;
    let f = Filter { after: Some(after), limit: Some(limit as u32), ..Filter::default() };
    crate::audit::query(&h, &f).await
}

/// `records` of tenant `t` opened when `sink` includes personal data, else `None`.
pub(crate) async fn opened(app: &App, sink: &Sink, t: &str, records: &[Record]) -> Result<Option<Vec<Record>>> {
    if !sink.settings.include_personal {
        return Ok(None);
    }
    Ok(Some(crate::privacy::open_records(app, t, records).await?))
}

/// Deliver the next batch of `p`'s tenant; whether its cursor moved.
async fn next_batch(app: &App, sink: &Sink, p: &Pending) -> Result<bool> {
    let s = &sink.settings;
    let records = records_after(app, &p.tenant.id, p.cursor, s.batch_size).await?;
    let now = crate::now();
    let Some(first) = records.first() else {
        // The head is ahead of the log (records cut off the end): nothing to send, and
        // `audit verify` reports it.
        let d = app.store.directory.lock().await;
        cursors::advance(&d, sink.name(), &p.tenant.id, p.head, now).await?;
        return Ok(true);
    };
    if first.seq != p.cursor + 1 {
        tracing::info!(sink = %sink.name(), tenant = %p.tenant.id, from = p.cursor + 1, to = first.seq - 1,
            "audit sink: records purged before delivery");
    }
    let opened = opened(app, sink, &p.tenant.id, &records).await?;
    let encoded = sink.batch(&p.tenant, &app.cfg.region, &records, opened.as_deref());
    if encoded.is_empty() {
        let e = format!("record larger than max_batch_bytes ({})", s.max_batch_bytes);
        give_up(app, sink, &p.tenant, &[first.seq], 0, &e).await?;
        return Ok(true);
    }
    let seqs: Vec<i64> = records.iter().take(encoded.len()).map(|r| r.seq).collect();
    let last = seqs[seqs.len() - 1];
    let label = [sink.name()];
    for attempt in 1..=s.max_attempts {
        match sink.attempt(&p.tenant, &app.cfg.region, &encoded).await {
            Ok(()) => {
                app.metrics.sink_delivered.with_label_values(&label).inc_by(seqs.len() as u64);
                let d = app.store.directory.lock().await;
                cursors::advance(&d, sink.name(), &p.tenant.id, last, crate::now()).await?;
                return Ok(true);
            }
            Err(e) => {
                app.metrics.sink_failures.with_label_values(&label).inc();
                tracing::warn!(sink = %sink.name(), tenant = %p.tenant.id, attempt, error = %e, "audit sink delivery failed");
                if attempt == s.max_attempts {
                    give_up(app, sink, &p.tenant, &seqs, attempt.into(), &e).await?;
                    return Ok(true);
                }
                tokio::time::sleep(sink.backoff(attempt)).await;
            }
        }
    }
    Ok(false)
}

/// Record `seqs` as dead letters and move the cursor past them, in one transaction.
async fn give_up(app: &App, sink: &Sink, t: &TenantName, seqs: &[i64], attempts: i64, error: &str) -> Result<()> {
    let now = crate::now();
    let d = app.store.directory.lock().await;
    crate::store::begin_immediate(&d).await?;
    cursors::add_dead(&d, sink.name(), &t.id, seqs, attempts, error, now).await?;
    let last = seqs.iter().copied().max().unwrap_or(0);
    cursors::advance(&d, sink.name(), &t.id, last, now).await?;
    crate::store::commit(&d).await?;
    drop(d);
    app.metrics.sink_dead_letters.with_label_values(&[sink.name()]).inc_by(seqs.len() as u64);
    tracing::warn!(sink = %sink.name(), tenant = %t.id, records = seqs.len(), "audit sink: dead letters");
    Ok(())
}
