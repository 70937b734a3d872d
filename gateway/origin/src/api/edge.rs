//! Edge endpoints: the signed bundle of the region, and the decision events edges send.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{bad, ApiError, ApiResult};
use crate::store::one;

use crate::api::extract::{edge_name, page_of, tenant, AppState, Authed, JsonBody, Page, QueryParams};
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
            .ok_or_else(|| ApiError::NotFound("unknown_region", format!("no region `{region}`")))?;
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
    let seen: Option<String> =
        one(&*app.store.directory.lock().await, "SELECT id FROM edge_batches WHERE id = ?1", [batch.as_str()]).await?;
    if seen.is_some() {
        return Ok(Json(json!({ "accepted": 0, "duplicate": true })));
    }
    // Each event is written with a deterministic id (batch + index), so a retry after a
    // crash half-way through inserts only what is missing.
    let mut by_org: std::collections::BTreeMap<&str, Vec<(usize, &EdgeEvent)>> = Default::default();
    for (i, e) in b.events.iter().enumerate() {
        if e.decision.len() > 16 || e.reason.len() > 64 {
            return Err(bad("invalid_event", format!("events[{i}]: decision ≤ 16 and reason ≤ 64 bytes")));
        }
        by_org.entry(e.org.as_str()).or_default().push((i, e));
    }
    let mut accepted = 0;
    for (org, events) in by_org {
        // Events of tenants homed elsewhere are not stored here.
        let Ok(t) = tenant(&app, org, "/v1/audit/edge").await else { continue };
        let h = begin(&t).await?;
        for (i, e) in events {
            accepted += h
                .execute("INSERT OR IGNORE INTO edge_events (id, at, decision, reason, route, ip, request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    libsql::params![format!("{batch}:{i}"), e.at, e.decision.as_str(), e.reason.as_str(), e.route.clone(), e.ip.clone(), e.request_id.clone()])
                .await
                ?;
        }
        h.execute("COMMIT", ()).await?;
    }
    app.store
        .directory
        .lock()
        .await
        .execute(
            "INSERT OR IGNORE INTO edge_batches (id, received_at) VALUES (?1, ?2)",
            libsql::params![batch, crate::now()],
        )
        .await?;
    Ok(Json(json!({ "accepted": accepted, "duplicate": false })))
}

pub(crate) async fn list_edge_events(
    Authed { t, .. }: Authed,
    QueryParams(p): QueryParams<Page>,
) -> ApiResult<Json<Value>> {
    let h = t.db.lock().await;
    let sql =
        "SELECT id, at, decision, reason, route, ip, request_id FROM edge_events WHERE id > ?1 ORDER BY id LIMIT ?2";
    let (items, next) = page_of(&h, sql, &p, "id", |r| {
        Ok(json!({ "id": r.get::<String>(0)?, "at": r.get::<i64>(1)?, "decision": r.get::<String>(2)?,
            "reason": r.get::<String>(3)?, "route": r.get::<Option<String>>(4)?, "ip": r.get::<Option<String>>(5)?,
            "request_id": r.get::<Option<String>>(6)? }))
    })
    .await?;
    Ok(Json(json!({ "items": items, "next": next })))
}
