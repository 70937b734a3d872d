//! Writes to a tenant: a transaction that commits together with its audit records.

use serde_json::Value;

use crate::audit::{self, Event, RequestMeta};
use crate::error::ApiResult;
use crate::store::Held;

use crate::api::app::App;
use crate::api::extract::{Authed, Tenant};

/// Start a write transaction on the tenant's database. An early return drops the
/// transaction uncommitted (the next holder rolls it back).
#[tracing::instrument(level = "debug", name = "gatehouse.storage", skip_all, fields(db.system.name = "sqlite", db.operation.name = "begin"))]
pub(crate) async fn begin(t: &Tenant) -> ApiResult<Held<'_>> {
    let h = t.db.lock().await;
    crate::store::begin_immediate(&h).await?;
    Ok(h)
}

/// Append `events` to the audit log, commit, and record the new audit head in the
/// directory database.
#[tracing::instrument(level = "debug", name = "gatehouse.storage", skip_all, fields(db.system.name = "sqlite", db.operation.name = "commit", gatehouse.audit_records = events.len()))]
pub(crate) async fn commit(
    app: &App,
    t: &Tenant,
    h: Held<'_>,
    meta: &RequestMeta,
    events: Vec<Event>,
) -> ApiResult<()> {
    let _timer = app.metrics.storage.start("commit");
    let now = crate::now() as u64;
    let mut head = None;
    let sealer = crate::privacy::sealer(app, &t.id);
    for e in &events {
        head = Some(audit::append(&h, &sealer, e, meta, now).await?);
    }
    crate::store::commit(&h).await?;
    drop(h);
    if let Some((seq, hash)) = head {
        record_head(app, &t.id, seq, &hash).await?;
        app.sinks.wake();
    }
    Ok(())
}

pub(crate) async fn record_head(app: &App, tenant_id: &str, seq: i64, hash: &str) -> ApiResult<()> {
    crate::store::audit::record_head(&*app.store.directory.lock().await, tenant_id, seq, hash).await?;
    Ok(())
}

pub(crate) fn ev(
    actor: impl Into<String>,
    action: &'static str,
    target: impl Into<String>,
    before: Option<Value>,
    after: Option<Value>,
) -> Event {
    Event { actor: actor.into(), action, target: target.into(), before, after, act: None }
}

impl Authed {
    /// Commit `h` with one audit record: the caller did `action` on `target`.
    pub(crate) async fn commit(
        &self,
        app: &App,
        h: Held<'_>,
        action: &'static str,
        target: impl Into<String>,
        before: Option<Value>,
        after: Option<Value>,
    ) -> ApiResult<()> {
        self.commit_all(app, h, vec![ev(self.caller.actor(), action, target, before, after)]).await
    }

    /// Commit `h` with `events`, from this request. Under an impersonation, the events
    /// the caller is the actor of name the real actor (`act`).
    pub(crate) async fn commit_all(&self, app: &App, h: Held<'_>, mut events: Vec<Event>) -> ApiResult<()> {
        if let Some(act) = self.caller.act() {
            let actor = self.caller.actor();
            for e in events.iter_mut().filter(|e| e.actor == actor && e.act.is_none()) {
                e.act = Some(act.to_string());
            }
        }
        commit(app, &self.t, h, &self.meta, events).await
    }
}
