//! Roles: who may grant which, and the organisation's custom roles.

use axum::extract::{Path, State};
use axum::Json;
use gatehouse_core::policy::BUILTIN_ROLES;
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::store::roles;

use crate::api::app::App;
use crate::api::extract::{cursor, next_cursor, page_limit, AppState, Authed, Caller, JsonBody, Page, QueryParams};
use crate::api::transaction::begin;

pub(crate) use gatehouse_admin_bodies::bodies::{role_rank, PutRole};

/// Whether `c` may hand out `role` (nobody grants more than they hold; only owners and
/// the operator make owners).
pub(crate) fn may_grant(c: &Caller, role: &str) -> bool {
    match c {
        Caller::Operator => true,
        Caller::User { roles, .. } => {
            let mine = roles.iter().filter_map(|r| role_rank(r)).min();
            match (role_rank(role), mine) {
                (Some(want), Some(have)) => have <= want && (role != "owner" || have == 0),
                (None, Some(have)) => have <= 1,
                _ => false,
            }
        }
    }
}

pub(crate) async fn role_exists(app: &App, h: &libsql::Connection, role: &str) -> ApiResult<bool> {
    Ok(role_rank(role).is_some() || app.template().roles.contains_key(role) || roles::exists_named(h, role).await?)
}

pub(crate) async fn list_roles(authed: Authed, QueryParams(p): QueryParams<Page>) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    let h = t.db.lock().await;
    let mut items = Vec::new();
    for r in roles::page(&h, cursor(&p), page_limit(&p)).await? {
        let perms: Value = serde_json::from_str(&r.permissions)?;
        items.push(json!({ "name": r.name, "permissions": perms }));
    }
    let next = next_cursor(&items, &p, "name");
    let builtin: Vec<Value> =
        BUILTIN_ROLES.iter().map(|(n, p)| json!({ "name": n, "permissions": p, "builtin": true })).collect();
    Ok(Json(json!({ "builtin": builtin, "items": items, "next": next })))
}

pub(crate) async fn put_role(
    State(app): AppState,
    authed: Authed,
    Path((_, name)): Path<(String, String)>,
    JsonBody(req): JsonBody<PutRole>,
) -> ApiResult<Json<Value>> {
    let t = &authed.t;
    req.check(&name)?;
    let perms = serde_json::to_string(&req.permissions)?;
    let h = begin(t).await?;
    if let Some(crate::store::role_templates::Origin::Synced(tpl)) =
        crate::store::role_templates::origin_of(&h, &name).await?
    {
        let m = format!("the role follows template `{tpl}`: fork it (from-template, mode fork) to edit it");
        return Err(crate::error::ApiError::conflict("role_synced", m));
    }
    let before = roles::permissions(&h, &name).await?;
    if before.is_none() {
        crate::api::caps::check_org_cap(&app, &h, crate::api::caps::Cap::CustomRoles).await?;
    }
    roles::upsert(&h, &name, &perms).await?;
    authed
        .commit(&app, h, "role.put", format!("role:{name}"), before.map(Value::String), Some(json!(req.permissions)))
        .await?;
    app.changed(&t.id).await?;
    Ok(Json(json!({ "name": name, "permissions": req.permissions })))
}
