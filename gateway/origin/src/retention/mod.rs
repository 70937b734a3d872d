//! Retention that runs by itself: a scheduler in the origin applies each organisation's
//! periods per data type (audit records, edge decision events, sessions, expired tokens,
//! invitations; the organisation's own or the region's defaults, `[retention.defaults]`).
//!
//! Every `[retention] interval_secs` (the first run at start) it visits up to
//! `tenants_per_run` organisations homed here, continuing after the last one it visited
//! (a cursor over tenant ids that wraps around), and removes at most `batch` rows per data
//! type from each: the work of a run is bounded, and what is left waits for the next.
//! Nothing a live legal hold covers is removed; the audit log stops at the first held
//! record and keeps its chain anchor ([`crate::store::audit::purge`]).
//!
//! Each turn also notes the organisation's impersonations whose time ran out
//! (`impersonation.expired`, [`crate::api::impersonation::sweep`]), so they are on record
//! when they end, not only at the next use.
//!
//! Progress: the metrics `retention_runs`, `retention_purged{kind}`,
//! `retention_last_run`, and a `retention.run` record (actor `system`, the counts per
//! data type) in the log of each organisation something was removed from — an idle
//! organisation's log does not grow every run.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::api::app::App;
use crate::store;

mod tenant;

pub use tenant::{effective, purge_all, Outcome, Rule};

/// Start the scheduler (unless `[retention] enabled = false`).
pub fn spawn(app: Arc<App>) -> Option<JoinHandle<()>> {
    if !app.cfg.retention.enabled {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(app.cfg.retention.interval_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cursor = String::new();
        loop {
            tick.tick().await;
            match run_once(&app, &mut cursor).await {
                Ok(visited) => tracing::debug!(visited, "retention run finished"),
                Err(e) => tracing::warn!(error = %e, "retention run failed"),
            }
        }
    }))
}

/// One run: up to `tenants_per_run` organisations after `cursor` (moved on; empty once
/// the last organisation was visited). How many were visited.
pub async fn run_once(app: &App, cursor: &mut String) -> anyhow::Result<usize> {
    let limit = app.cfg.retention.tenants_per_run as i64;
    let tenants = {
        let d = app.store.directory.lock().await;
        store::retention::tenants_after(&d, &app.cfg.region, cursor, limit).await?
    };
    for t in &tenants {
        // One organisation's failure (a damaged file) does not stop the others' turn.
        if let Err(e) = tenant::run_scheduled(app, &t.id, &t.slug).await {
            tracing::warn!(tenant = %t.id, error = %e, "retention of an organisation failed");
        }
    }
    *cursor = match tenants.last() {
        Some(t) if tenants.len() as i64 == limit => t.id.clone(),
        _ => String::new(),
    };
    app.metrics.retention_runs.inc();
    app.metrics.retention_last_run.set(crate::now());
    Ok(tenants.len())
}
