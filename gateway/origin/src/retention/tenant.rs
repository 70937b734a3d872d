//! One organisation's retention: the periods in force per data type and the bounded purge
//! of each, in one transaction with the record of what was removed.

use std::collections::BTreeMap;

use anyhow::Result;
use libsql::Connection;
use serde::Serialize;
use serde_json::{json, Value};

use crate::api::app::App;
use crate::api::extract::Tenant;
use crate::api::transaction::{begin, commit, ev};
use crate::audit::RequestMeta;
use crate::config::retention::RetentionDays;
use crate::identity::new_id;
use crate::metrics::Metrics;
use crate::store::holds::HoldId;
use crate::store::retention::{self as rules, Kind};

/// The period in force for one data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The data type.
    pub kind: Kind,
    /// Days kept (`None`: everything is kept).
    pub days: Option<i64>,
    /// Whether the organisation chose it (else the region default applies).
    pub own: bool,
}

/// The periods in force in the organisation `h` holds: its own rules, else `defaults`.
pub async fn effective(h: &Connection, defaults: &RetentionDays) -> Result<Vec<Rule>> {
    let own = rules::rules(h).await?;
    Ok(Kind::ALL
        .into_iter()
        .map(|kind| match own.get(&kind) {
            Some(days) => Rule { kind, days: *days, own: true },
            None => Rule { kind, days: defaults.get(kind), own: false },
        })
        .collect())
}

/// What one purge of every data type removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// Rows removed per data type (`audit`, `edge_events`, …; kinds with a period only).
    pub removed: BTreeMap<&'static str, u64>,
    /// Data types where the batch ended the purge (more is past retention).
    pub more: Vec<&'static str>,
    /// The audit record the purge stopped at because a live hold covers it.
    pub audit_held: Option<(i64, HoldId)>,
}

impl Outcome {
    /// Rows removed in all.
    pub fn total(&self) -> u64 {
        self.removed.values().sum()
    }

    /// Add the counts to the metrics (`retention_purged{kind}`).
    pub fn count(&self, m: &Metrics) {
        for (kind, n) in &self.removed {
            m.retention_purged.with_label_values(&[kind]).inc_by(*n);
        }
    }

    /// As an answer and as the `after` of a `retention.run` record.
    pub fn to_json(&self) -> Value {
        let held = self.audit_held.as_ref().map(|(seq, hold)| json!({ "seq": seq, "hold": hold }));
        json!({ "removed": self.removed, "more": self.more, "audit_held": held })
    }
}

/// Purge every data type with a period in `rules` as of `now`, at most `batch` rows each,
/// inside the caller's transaction on `h`.
pub async fn purge_all(h: &Connection, rules: &[Rule], now: i64, batch: u64) -> Result<Outcome> {
    let mut out = Outcome::default();
    let limit = batch as i64;
    for rule in rules {
        let Some(days) = rule.days else { continue };
        let before = now - days * 86_400;
        let removed = match rule.kind {
            Kind::Audit => {
                let p = crate::audit::purge(h, before, batch).await?;
                if p.more {
                    out.more.push(rule.kind.name());
                }
                out.audit_held = p.held;
                p.removed
            }
            Kind::EdgeEvents => rules::purge_edge_events(h, before, limit).await?,
            Kind::Sessions => rules::purge_sessions(h, before, limit).await?,
            Kind::Tokens => rules::purge_tokens(h, before, limit).await?,
            Kind::Invitations => rules::purge_invitations(h, before, limit).await?,
        };
        if rule.kind != Kind::Audit && removed == batch {
            out.more.push(rule.kind.name());
        }
        out.removed.insert(rule.kind.name(), removed);
    }
    Ok(out)
}

/// The scheduler's turn at organisation `id` (`slug`): note impersonations whose time ran
/// out (`impersonation.expired`), purge, and record `retention.run` (actor `system`) when
/// something was removed.
pub(super) async fn run_scheduled(app: &App, id: &str, slug: &str) -> Result<()> {
    let db = app.store.tenant(id, false).await?;
    let t = Tenant { id: id.to_string(), slug: slug.to_string(), db };
    let meta = RequestMeta { ip: None, user_agent: None, request_id: new_id("r_") };
    crate::api::impersonation::sweep(app, &t, &meta).await?;
    let rules = effective(&*t.db.lock().await, &app.cfg.retention.defaults).await?;
    if rules.iter().all(|r| r.days.is_none()) {
        return Ok(());
    }
    let h = begin(&t).await?;
    let out = purge_all(&h, &rules, crate::now(), app.cfg.retention.batch).await?;
    if out.total() == 0 {
        crate::store::commit(&h).await?;
        return Ok(());
    }
    let record = ev("system", "retention.run", format!("org:{slug}"), None, Some(out.to_json()));
    commit(app, &t, h, &meta, vec![record]).await?;
    out.count(&app.metrics);
    tracing::info!(tenant = %id, removed = out.total(), "retention removed rows");
    Ok(())
}
