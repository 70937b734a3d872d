//! Edge endpoints: the signed bundle of the region, and the decision events edges send.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{bad, ApiError, ApiResult};
use crate::store::edge_events::{self, EdgeEventRow};

use crate::api::extract::{
    cursor, edge_name, next_cursor, page_limit, tenant, AppState, Authed, JsonBody, Page, QueryParams,
};
use crate::api::transaction::begin;

pub(crate) async fn get_bundle(
    State(app): AppState,
    Path(region): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let edge = edge_name(&app, &headers)?;
    if region != app.cfg.region {
        let base = app
            .cfg
            .regions
            .get(&region)
            .ok_or_else(|| ApiError::not_found("unknown_region", format!("no region `{region}`")))?;
        return Err(ApiError::WrongRegion { region: region.clone(), url: format!("{base}/v1/bundles/{region}") });
    }
    let (bytes, etag) = app.bundle().await?;
    if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().insert("etag", HeaderValue::from_str(&etag).map_err(|e| ApiError::Internal(e.into()))?);
        return Ok(r);
    }
    tracing::debug!(edge = %edge, etag = %etag, "bundle served");
    let mut r = (*bytes).clone().into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/vnd.gatehouse.bundle"));
    r.headers_mut().insert("etag", HeaderValue::from_str(&etag).map_err(|e| ApiError::Internal(e.into()))?);
    Ok(r)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EdgeBatch {
    batch_id: String,
    events: Vec<EdgeEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EdgeEvent {
    org: String,
    at: i64,
    decision: String,
    reason: String,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    /// Who really acted, under an impersonation (the token's `act.sub`).
    #[serde(default)]
    actor: Option<String>,
}

pub(crate) async fn edge_audit(
    State(app): AppState,
    headers: HeaderMap,
    JsonBody(b): JsonBody<EdgeBatch>,
) -> ApiResult<Json<Value>> {
    let edge = edge_name(&app, &headers)?;
    if b.batch_id.is_empty() || b.batch_id.len() > 100 || b.events.len() > 1000 {
        return Err(bad("invalid_batch", "batch_id 1–100 bytes, at most 1000 events"));
    }
    let batch = format!("{edge}:{}", b.batch_id);
    if edge_events::batch_seen(&*app.store.directory.lock().await, &batch).await? {
        return Ok(Json(json!({ "accepted": 0, "duplicate": true })));
    }
    // Each event is written with a deterministic id (batch + index), so a retry after a
    // crash half-way through inserts only what is missing.
    let mut by_org: std::collections::BTreeMap<&str, Vec<(usize, &EdgeEvent)>> = Default::default();
    for (i, e) in b.events.iter().enumerate() {
        if e.decision.len() > 16 || e.reason.len() > 64 {
            return Err(bad("invalid_event", format!("events[{i}]: decision ≤ 16 and reason ≤ 64 bytes")));
        }
        if e.actor.as_deref().is_some_and(|a| !gatehouse_core::identity::header_safe(a)) {
            return Err(bad("invalid_event", format!("events[{i}]: actor is 1–256 printable bytes")));
        }
        by_org.entry(e.org.as_str()).or_default().push((i, e));
    }
    let mut accepted = 0;
    for (org, events) in by_org {
        // Events of tenants homed elsewhere are not stored here.
        let Ok(t) = tenant(&app, org, "/v1/audit/edge").await else { continue };
        let h = begin(&t).await?;
        for (i, e) in events {
            let row = EdgeEventRow {
                id: format!("{batch}:{i}"),
                at: e.at,
                decision: e.decision.clone(),
                reason: e.reason.clone(),
                route: e.route.clone(),
                ip: e.ip.clone(),
                request_id: e.request_id.clone(),
                actor: e.actor.clone(),
            };
            accepted += edge_events::insert(&h, &row).await?;
        }
        crate::store::commit(&h).await?;
    }
    edge_events::record_batch(&*app.store.directory.lock().await, &batch, crate::now()).await?;
    Ok(Json(json!({ "accepted": accepted, "duplicate": false })))
}

pub(crate) async fn list_edge_events(
    Authed { t, .. }: Authed,
    QueryParams(p): QueryParams<Page>,
) -> ApiResult<Json<Value>> {
    let h = t.db.lock().await;
    let items: Vec<Value> = edge_events::page(&h, cursor(&p), page_limit(&p))
        .await?
        .into_iter()
        .map(|e| {
            json!({ "id": e.id, "at": e.at, "decision": e.decision, "reason": e.reason, "route": e.route,
                "ip": e.ip, "request_id": e.request_id, "actor": e.actor })
        })
        .collect();
    let next = next_cursor(&items, &p, "id");
    Ok(Json(json!({ "items": items, "next": next })))
}
