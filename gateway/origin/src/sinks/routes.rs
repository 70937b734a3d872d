//! The operator's view of the sinks:
//!
//! - `GET /v1/sinks`: every sink with its destination, what it delivered and failed
//!   since the start (the metrics' counters), its lag (records written and not yet
//!   accepted, over every tenant), each tenant's cursor and head (the first 100 tenants),
//!   and its dead letters (count, and the first 100 record ids with their last error).
//! - `POST /v1/sinks/{name}/replay`: send the sink's dead letters again, now, once each
//!   (up to 1000 per call, oldest first, in chain order per tenant, batched as the sink
//!   batches). Delivered ones, and ones whose record retention has purged meanwhile,
//!   leave the dead-letter table; the rest stay with their attempts counted. The answer
//!   says how many went, failed, were gone and remain; the operator's audit log records
//!   the replay (`sink.replay`). Replayed records reach the receiver after later ones:
//!   receivers order and de-duplicate by `id` / `seq`.

use std::collections::BTreeMap;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use crate::api::extract::{meta, require_operator, AppState, Peer};
use crate::error::{ApiError, ApiResult};

use super::cursors;
use super::record::{record_id, TenantName};
use super::worker::{opened, records_after};

/// Dead letters one replay sends at most.
const REPLAY_MAX: i64 = 1000;
/// Tenants and dead letters listed per sink.
const LISTED: i64 = 100;

/// `GET /v1/sinks`.
pub(crate) async fn list(State(app): AppState, headers: HeaderMap) -> ApiResult<Json<Value>> {
    require_operator(&app, &headers)?;
    let d = app.store.directory.lock().await;
    let mut items = Vec::new();
    for sink in app.sinks.all() {
        let name = sink.name();
        let label = [name];
        let tenants: Vec<Value> = cursors::positions(&d, name, &app.cfg.region, LISTED)
            .await?
            .into_iter()
            .map(|p| {
                json!({ "tenant": p.tenant.id, "org": p.tenant.slug, "cursor": p.cursor, "head": p.head,
                    "lag": (p.head - p.cursor).max(0) })
            })
            .collect();
        let dead: Vec<Value> = cursors::dead(&d, name, LISTED)
            .await?
            .into_iter()
            .map(|x| json!({ "id": record_id(&x.tenant, x.seq), "attempts": x.attempts, "error": x.error, "at": x.at }))
            .collect();
        let status = sink.status();
        items.push(json!({
            "name": name,
            "kind": sink.settings.kind,
            "destination": sink.destination(),
            "include_personal": sink.settings.include_personal,
            "delivered": app.metrics.sink_delivered.with_label_values(&label).get(),
            "failures": app.metrics.sink_failures.with_label_values(&label).get(),
            "lag": cursors::lag(&d, name, &app.cfg.region).await?,
            "dead_letters": cursors::dead_count(&d, name).await?,
            "dead_letter_ids": dead,
            "last_error": status.last_error,
            "last_success_at": status.last_success_at,
            "tenants": tenants,
        }));
    }
    Ok(Json(json!({ "items": items })))
}

/// What a replay did.
#[derive(Default)]
struct Replayed {
    delivered: u64,
    failed: u64,
    gone: u64,
}

/// `POST /v1/sinks/{name}/replay`.
pub(crate) async fn replay(
    State(app): AppState,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    require_operator(&app, &headers)?;
    let sink =
        app.sinks.get(&name).cloned().ok_or_else(|| ApiError::not_found("sink_not_found", "no sink of that name"))?;
    let letters = cursors::dead(&*app.store.directory.lock().await, &name, REPLAY_MAX).await?;
    let mut by_tenant: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for l in letters {
        by_tenant.entry(l.tenant).or_default().push(l.seq);
    }
    let mut done = Replayed::default();
    for (tenant, seqs) in by_tenant {
        replay_tenant(&app, &sink, tenant, &seqs, &mut done).await?;
    }
    let remaining = cursors::dead_count(&*app.store.directory.lock().await, &name).await?;
    let answer = json!({ "sink": name, "delivered": done.delivered, "failed": done.failed, "gone": done.gone,
        "remaining": remaining });
    let m = meta(&headers, &peer);
    crate::api::admin::operator_audit::append(
        &app,
        &m,
        "sink.replay",
        format!("sink:{name}"),
        None,
        Some(answer.clone()),
    )
    .await?;
    Ok(Json(answer))
}

/// Replay the dead letters `seqs` (ascending) of `tenant`.
async fn replay_tenant(
    app: &crate::api::app::App,
    sink: &super::Sink,
    tenant: String,
    seqs: &[i64],
    done: &mut Replayed,
) -> ApiResult<()> {
    let slug = crate::store::one::<String>(
        &*app.store.directory.lock().await,
        "SELECT slug FROM tenants WHERE id = ?1",
        [tenant.as_str()],
    )
    .await?;
    let mut records = Vec::new();
    for &seq in seqs {
        let found = match &slug {
            Some(_) => records_after(app, &tenant, seq - 1, 1).await?.into_iter().find(|r| r.seq == seq),
            None => None,
        };
        match found {
            Some(r) => records.push(r),
            None => {
                cursors::remove_dead(&*app.store.directory.lock().await, sink.name(), &tenant, seq).await?;
                done.gone += 1;
            }
        }
    }
    let t = TenantName { id: tenant, slug: slug.unwrap_or_default() };
    let label = [sink.name()];
    let opened = opened(app, sink, &t.id, &records).await?;
    let mut start = 0;
    while start < records.len() {
        let rest = &records[start..];
        let encoded = sink.batch(&t, &app.cfg.region, rest, opened.as_ref().map(|o| &o[start..]));
        // A record too large for any batch stays a dead letter.
        let batch = &rest[..encoded.len().max(1)];
        start += batch.len();
        let outcome = if encoded.is_empty() {
            Err(format!("record larger than max_batch_bytes ({})", sink.settings.max_batch_bytes))
        } else {
            sink.attempt(&t, &app.cfg.region, &encoded).await
        };
        let d = app.store.directory.lock().await;
        match outcome {
            Ok(()) => {
                for r in batch {
                    cursors::remove_dead(&d, sink.name(), &t.id, r.seq).await?;
                }
                app.metrics.sink_delivered.with_label_values(&label).inc_by(batch.len() as u64);
                done.delivered += batch.len() as u64;
            }
            Err(e) => {
                let seqs: Vec<i64> = batch.iter().map(|r| r.seq).collect();
                cursors::add_dead(&d, sink.name(), &t.id, &seqs, 1, &e, crate::now()).await?;
                app.metrics.sink_failures.with_label_values(&label).inc();
                done.failed += batch.len() as u64;
            }
        }
    }
    Ok(())
}
