//! An organisation's lifecycle: rename and change of tier, suspension and resumption
//! (operator), and deletion with a confirmation step (operator).
//!
//! A suspended organisation signs nobody in (`403 tenant_suspended` on password, refresh
//! and SSO sign-ins) and its edges refuse its requests after their next bundle; its data
//! and sessions stay, so a resumption restores it. A deletion removes the tenant's
//! database files in its home region and replaces its directory entry by a tombstone: the
//! slug's routes answer 404 from then on, replication never brings the entry back, and
//! the slug stays taken (a new organisation under an old slug could be handed tokens,
//! bookmarks and edge state meant for the old one). Suspensions, tier changes and
//! deletions are recorded in the operator's log ([`super::operator_audit`]).

use std::sync::Arc;

use anyhow::anyhow;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::audit::RequestMeta;
use crate::error::{bad, ApiError, ApiResult};
use crate::store::directory::{self as tenants, Confirmation};
use crate::store::{self, orgs, users};
use crate::tokens;

use crate::api::admin::operator_audit;
use crate::api::admin::orgs::{check_tenant_policy, org_row};
use crate::api::app::App;
use crate::api::caps::{in_use, limit, Cap};
use crate::api::extract::{caller, meta, residency, tenant, AppState, Authed, Caller, JsonBody, Peer, Tenant};
use crate::api::transaction::{begin, commit, ev};

/// How long a deletion confirmation is valid.
pub(crate) const DELETION_CONFIRM_SECS: i64 = 300;

/// An operator request on one organisation (`/v1/orgs/{slug}/…`): the tenant (homed
/// here; 421 or a redirect otherwise) and the operator's token. A token of this tenant
/// is `403 operator_only`; one of another tenant `403 wrong_tenant`, as on every tenant
/// route.
pub struct OperatorOrg {
    pub(crate) t: Tenant,
    pub(crate) meta: RequestMeta,
}

impl FromRequestParts<Arc<App>> for OperatorOrg {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, app: &Arc<App>) -> Result<Self, Response> {
        let run = async {
            let slug = parts.uri.path().strip_prefix("/v1/orgs/").and_then(|r| r.split('/').next()).unwrap_or_default();
            let t = tenant(app, slug, parts.uri.path()).await?;
            if let Caller::User { .. } = caller(app, &parts.headers, slug).await? {
                return Err(ApiError::forbidden("operator_only", "only the platform operator may do this"));
            }
            let peer = parts.extensions.get::<Peer>().ok_or_else(|| anyhow!("no peer address on the request"))?;
            ApiResult::Ok(OperatorOrg { t, meta: meta(&parts.headers, &peer.0) })
        };
        run.await.map_err(|e| residency(e, &parts.headers))
    }
}

pub(crate) use gatehouse_admin_bodies::bodies::{ConfirmDeletion, PatchOrg};

/// `PATCH /v1/orgs/{slug}`: the display name (`settings:write`) and the tier (the
/// operator only; it must be a tier of the region's template).
pub(crate) async fn patch_org(
    State(app): AppState,
    authed: Authed,
    JsonBody(req): JsonBody<PatchOrg>,
) -> ApiResult<Json<Value>> {
    let (t, c) = (&authed.t, &authed.caller);
    req.check()?;
    let h = begin(t).await?;
    let (name, tier, policy, _) = org_row(&h).await?;
    let tier_change = req.tier.as_ref().filter(|x| **x != tier);
    if tier_change.is_some() && !matches!(c, Caller::Operator) {
        return Err(ApiError::forbidden("operator_only", "only the platform operator changes the tier"));
    }
    if let Some(new) = tier_change {
        check_tenant_policy(&app, &t.slug, new, &policy)?;
        orgs::set_tier(&h, new).await?;
    }
    if let Some(n) = &req.name {
        orgs::set_name(&h, n.trim()).await?;
    }
    let before = json!({ "name": name, "tier": tier });
    let after =
        json!({ "name": req.name.as_deref().map(str::trim).unwrap_or(&name), "tier": tier_change.unwrap_or(&tier) });
    authed.commit(&app, h, "org.update", format!("org:{}", t.slug), Some(before.clone()), Some(after.clone())).await?;
    let mut out = after.clone();
    if let Some(new) = tier_change {
        let target = format!("org:{}", t.slug);
        operator_audit::append(&app, &authed.meta, "org.tier", target, Some(before), Some(after)).await?;
        app.changed(&t.id).await?;
        // A tier with lower caps is allowed; what already exceeds them is said (nothing is
        // removed, only additions are refused).
        out["over_limits"] = over_limits(&app, &*t.db.lock().await, new).await?;
    }
    Ok(Json(out))
}

/// The caps of `tier` that the organisation in `h` already exceeds: `[{cap, limit, in_use}]`.
async fn over_limits(app: &App, h: &libsql::Connection, tier: &str) -> ApiResult<Value> {
    let mut over = Vec::new();
    for cap in [Cap::Users, Cap::CustomRoles, Cap::ApiKeys] {
        if let Some(max) = limit(app, tier, cap) {
            let n = in_use(h, cap).await?;
            if n > max as i64 {
                over.push(json!({ "cap": cap.key(), "limit": max, "in_use": n }));
            }
        }
    }
    Ok(Value::Array(over))
}

/// `POST /v1/orgs/{slug}/suspend` (operator).
pub(crate) async fn suspend_org(State(app): AppState, op: OperatorOrg) -> ApiResult<Json<Value>> {
    set_suspension(&app, &op, true).await
}

/// `POST /v1/orgs/{slug}/resume` (operator).
pub(crate) async fn resume_org(State(app): AppState, op: OperatorOrg) -> ApiResult<Json<Value>> {
    set_suspension(&app, &op, false).await
}

async fn set_suspension(app: &App, op: &OperatorOrg, suspend: bool) -> ApiResult<Json<Value>> {
    let t = &op.t;
    let h = begin(t).await?;
    let was = orgs::suspended_at(&h).await?;
    let now = crate::now();
    let at = match (suspend, was) {
        // Already so: nothing changes, nothing is recorded.
        (true, Some(at)) => return Ok(Json(json!({ "slug": t.slug, "suspended_at": at }))),
        (false, None) => return Ok(Json(json!({ "slug": t.slug, "suspended_at": null }))),
        (true, None) => Some(now),
        (false, Some(_)) => None,
    };
    orgs::set_suspended(&h, at).await?;
    let action = if suspend { "org.suspend" } else { "org.resume" };
    let (before, after) = (json!({ "suspended_at": was }), json!({ "suspended_at": at }));
    let target = format!("org:{}", t.slug);
    let e = ev("operator", action, target.clone(), Some(before.clone()), Some(after.clone()));
    commit(app, t, h, &op.meta, vec![e]).await?;
    operator_audit::append(app, &op.meta, action, target, Some(before), Some(after)).await?;
    app.changed(&t.id).await?;
    tracing::info!(org = %t.slug, suspended = suspend, "organisation suspension changed by the operator");
    Ok(Json(json!({ "slug": t.slug, "suspended_at": at })))
}

/// `POST /v1/orgs/{slug}/deletion` (operator): a confirmation token for
/// `DELETE /v1/orgs/{slug}`, single use, valid five minutes.
pub(crate) async fn request_deletion(State(app): AppState, op: OperatorOrg) -> ApiResult<Response> {
    let token = tokens::opaque("ghdel_");
    let expires_at = crate::now() + DELETION_CONFIRM_SECS;
    let d = app.store.directory.lock().await;
    store::begin_immediate(&d).await?;
    tenants::insert_deletion(&d, &tokens::secret_hash(&token), &op.t.id, expires_at).await?;
    let after = json!({ "id": op.t.id, "expires_at": expires_at });
    operator_audit::append_in(&d, &op.meta, "org.deletion_requested", format!("org:{}", op.t.slug), None, Some(after))
        .await?;
    store::commit(&d).await?;
    let body = json!({ "slug": op.t.slug, "confirm": token, "expires_at": expires_at });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /v1/orgs/{slug}` (operator) with `{"confirm": "<token>"}`: the tenant's
/// directory entry becomes a tombstone and its database files are removed.
pub(crate) async fn delete_org(
    State(app): AppState,
    op: OperatorOrg,
    JsonBody(req): JsonBody<ConfirmDeletion>,
) -> ApiResult<Json<Value>> {
    if !app.store.can_delete_tenants() {
        // Removing a replica would not remove the primary on the libSQL server.
        return Err(ApiError::conflict(
            "deletion_unsupported",
            "tenants on a libSQL server without storage.remote.admin_url are deleted on the server; this origin only holds replicas",
        ));
    }
    req.check()?;
    let OperatorOrg { t, meta: m } = op;
    // What is deleted, for the record (read before anything changes).
    let (name, tier, _, _) = org_row(&*t.db.lock().await).await?;
    let (user_count, _) = users::counts(&*t.db.lock().await).await?;
    let now = crate::now();
    let entry = {
        let d = app.store.directory.lock().await;
        store::begin_immediate(&d).await?;
        match tenants::take_deletion(&d, &tokens::secret_hash(&req.confirm), &t.id, now).await? {
            Confirmation::Taken => {}
            Confirmation::Invalid => return Err(bad("confirmation_invalid", "unknown or used confirmation")),
            Confirmation::Expired => {
                return Err(bad("confirmation_expired", "the confirmation expired; request a new one"))
            }
        }
        let entry = tenants::tombstone(&d, &t.id, now).await?.ok_or_else(|| anyhow!("tenant left the directory"))?;
        // The last head of the tenant's own log: what was deleted, provably.
        let head = store::audit::head_of(&d, &t.id).await?;
        store::audit::forget_head(&d, &t.id).await?;
        let record = json!({ "id": t.id, "slug": t.slug, "name": name, "tier": tier, "users": user_count,
            "region": entry.home_region, "deleted_at": now,
            "audit_head": head.map(|(seq, hash)| json!({ "seq": seq, "hash": hash })) });
        operator_audit::append_in(&d, &m, "org.delete", format!("org:{}", t.slug), Some(record), None).await?;
        store::commit(&d).await?;
        entry
    };
    // New requests no longer find the tenant; close its database, then remove its files
    // and, on a libSQL server, its namespace.
    let Tenant { id, slug, db } = t;
    drop(db);
    let deleted = app.store.delete_tenant(&id).await?;
    app.changed_region();
    app.peers.push_tombstone(&entry, now).await;
    let (files, namespace) = (deleted.files, deleted.namespace);
    tracing::info!(org = %slug, tenant = %id, files, namespace = ?namespace, "organisation deleted by the operator");
    Ok(Json(
        json!({ "slug": slug, "id": id, "deleted_at": now, "files_removed": files, "namespace_deleted": namespace }),
    ))
}
