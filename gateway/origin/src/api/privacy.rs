//! GDPR endpoints: the export of one person (`GET /v1/orgs/{slug}/users/{id}/export`,
//! `privacy:read`; self-service `GET /t/{slug}/me/export` with the bearer access token)
//! and their erasure (`POST /v1/orgs/{slug}/users/{id}/erase`, `privacy:delete`). Both are
//! served only in the tenant's home region (421 elsewhere, like every tenant route) and
//! audited (`privacy.export`, `privacy.erase`, `privacy.erase_refused`). The work itself
//! is [`crate::privacy`]'s.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{bad, ApiError, ApiResult};
use crate::privacy::{self, erase, export};
use crate::store::users;

use crate::api::account::me_from_token;
use crate::api::admin::roles::may_grant;
use crate::api::admin::sessions::device;
use crate::api::app::App;
use crate::api::extract::{
    bearer, meta, refuse_impersonation, residency, tenant, AppState, Authed, JsonBody, Peer, Tenant,
};
use crate::api::transaction::{begin, commit};

/// An export as a download that no cache keeps.
fn archive(v: Value, user: &str) -> Response {
    let mut r = Json(v).into_response();
    let h = r.headers_mut();
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"export-{user}.json\"")) {
        h.insert("content-disposition", v);
    }
    r
}

/// The export of `user` in tenant `t` (in the caller's transaction), with each session's
/// device named.
async fn build(app: &App, t: &Tenant, h: &libsql::Connection, user: &str) -> ApiResult<Value> {
    let sealer = privacy::sealer(app, &t.id);
    let at = export::Tenant { id: &t.id, slug: &t.slug, region: &app.cfg.region };
    let mut v = export::export(h, &sealer, &at, user)
        .await?
        .ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))?;
    if let Some(list) = v["sessions"].as_array_mut() {
        for s in list {
            s["device"] = json!(device(s["user_agent"].as_str().unwrap_or_default()));
        }
    }
    Ok(v)
}

/// What the `privacy.export` record says (counts, no personal data).
fn export_record(v: &Value, by: &str) -> Value {
    json!({ "schema": export::SCHEMA, "by": by, "audit_records": v["audit"]["records"].as_array().map_or(0, Vec::len) })
}

/// Ids are generated (`u_` + hex); anything else is no user.
fn user_id(id: &str) -> ApiResult<&str> {
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ApiError::not_found("user_not_found", "no such user"));
    }
    Ok(id)
}

/// `GET /v1/orgs/{slug}/users/{id}/export`.
pub(crate) async fn export_user(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = user_id(&id)?;
    let h = begin(&authed.t).await?;
    let v = build(&app, &authed.t, &h, id).await?;
    authed.commit(&app, h, "privacy.export", format!("user:{id}"), None, Some(export_record(&v, "admin"))).await?;
    Ok(archive(v, id))
}

/// `GET /t/{slug}/me/export`: one's own export (not under an impersonation: the person
/// asks for it, not somebody acting as them).
pub(crate) async fn export_me(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/me/export")).await?;
        let token = bearer(&headers)
            .ok_or_else(|| ApiError::unauthorized("credential_missing", "send your access token as the bearer"))?;
        let me = me_from_token(&app, &t, token).await?;
        if me.act.is_some() {
            return Err(refuse_impersonation());
        }
        self_export(&app, &t, &me.user, &peer, &headers).await
    };
    run.await.unwrap_or_else(|e| residency(e, &headers))
}

async fn self_export(app: &App, t: &Tenant, user: &str, peer: &SocketAddr, headers: &HeaderMap) -> ApiResult<Response> {
    let h = begin(t).await?;
    let v = build(app, t, &h, user).await?;
    let who = format!("user:{user}");
    let e = crate::api::transaction::ev(who.clone(), "privacy.export", who, None, Some(export_record(&v, "self")));
    commit(app, t, h, &meta(headers, peer), vec![e]).await?;
    Ok(archive(v, user))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EraseRequest {
    reason: String,
}

/// `POST /v1/orgs/{slug}/users/{id}/erase` with `{"reason": "…"}` (1–500 bytes; kept in
/// the audit record, so it should name no personal data). Refused: the caller themself
/// (`cannot_erase_self`), a user above the caller's role (`role_too_high`), the last owner
/// (`last_owner`), a person a legal hold covers (409 `legal_hold`, audited as
/// `privacy.erase_refused`, nothing deleted).
pub(crate) async fn erase_user(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
    JsonBody(req): JsonBody<EraseRequest>,
) -> ApiResult<Json<Value>> {
    let id = user_id(&id)?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.len() > 500 || reason.chars().any(char::is_control) {
        return Err(bad("invalid_reason", "reason: 1–500 bytes, no control characters"));
    }
    let (t, c) = (&authed.t, &authed.caller);
    let now = crate::now();
    let h = begin(t).await?;
    let user = users::by_id(&h, id, now).await?.ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))?;
    if c.actor() == format!("user:{id}") {
        return Err(ApiError::conflict("cannot_erase_self", "you cannot erase your own account"));
    }
    if user.role.as_deref().is_some_and(|r| !may_grant(c, r)) {
        return Err(ApiError::forbidden("role_too_high", "you cannot erase a user above your own role"));
    }
    if user.role.as_deref() == Some("owner") && !user.disabled && users::enabled_owners(&h, now).await? <= 1 {
        return Err(ApiError::conflict("last_owner", "the organisation's last owner cannot be erased"));
    }
    let sealer = privacy::sealer(&app, &t.id);
    let subjects = erase::subjects_of(&sealer, id, &user.email);
    if let Some(hold) = erase::covering_hold(&h, &subjects).await? {
        let after = json!({ "reason_code": "legal_hold", "hold": hold, "reason": reason });
        authed.commit(&app, h, "privacy.erase_refused", format!("user:{id}"), None, Some(after)).await?;
        return Err(ApiError::conflict("legal_hold", format!("legal hold {hold} covers this person's records")));
    }
    let out = erase::erase(&h, &sealer, id, &user.email, now).await?;
    let after = json!({ "reason": reason, "removed": out });
    authed.commit(&app, h, "privacy.erase", format!("user:{id}"), None, Some(after.clone())).await?;
    // The deleted pages leave the write-ahead log too (embedded files; a libSQL server
    // keeps its own log).
    if app.store.is_local() {
        t.db.lock().await.query("PRAGMA wal_checkpoint(TRUNCATE)", ()).await?;
    }
    app.changed(&t.id).await?;
    Ok(Json(after))
}
