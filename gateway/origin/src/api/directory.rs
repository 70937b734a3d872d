//! Peer endpoints: the directory entries of this region, and those other regions push.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::api::app::App;
use crate::api::extract::{bearer, AppState, JsonBody};
use crate::config::secrets::sha;
use crate::error::{ApiError, ApiResult};
use crate::replication::DirectoryEntry;

/// Refuse a caller without the peer token.
fn require_peer(app: &App, headers: &HeaderMap) -> ApiResult<()> {
    let token = bearer(headers).ok_or_else(|| ApiError::unauthorized("credential_missing", "peer token required"))?;
    if bool::from(sha(token).ct_eq(&app.secrets.peer_hash)) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("peer_token_invalid", "unknown peer token"))
    }
}

/// `GET /v1/directory`: the tenants homed in this region.
pub(crate) async fn get_directory(State(app): AppState, headers: HeaderMap) -> ApiResult<Json<Value>> {
    require_peer(&app, &headers)?;
    Ok(Json(json!({ "region": app.cfg.region, "tenants": app.peers.local(&app.store.directory).await? })))
}

/// What a peer pushes: its region and its tenants.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DirectoryPush {
    region: String,
    tenants: Vec<DirectoryEntry>,
}

/// `POST /v1/directory`: store the entries a peer region pushed.
pub(crate) async fn post_directory(
    State(app): AppState,
    headers: HeaderMap,
    JsonBody(p): JsonBody<DirectoryPush>,
) -> ApiResult<Json<Value>> {
    require_peer(&app, &headers)?;
    let n = app.peers.upsert(&app.store.directory, &p.region, &p.tenants).await?;
    Ok(Json(json!({ "upserted": n })))
}
