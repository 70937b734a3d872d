//! Role templates (issue 15, part E): the operator's region-wide role sets, and an
//! organisation's custom role made from one, synced (it follows every change of the
//! template, applied to the organisations' roles when the template changes) or forked
//! (a copy the organisation owns).

use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::Json;
use gatehouse_core::policy::valid_permission;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{bad, ApiError, ApiResult};
use crate::identity::valid_slug;
use crate::store::directory as tenants;
use crate::store::role_templates::{self as templates, Origin, Template};
use crate::store::roles;

use crate::api::admin::operator_audit;
use crate::api::admin::roles::{may_grant, role_rank};
use crate::api::extract::{
    cursor, meta, next_cursor, page_limit, require_operator, AppState, Authed, JsonBody, Page, Peer, QueryParams,
    Tenant,
};
use crate::api::transaction::{begin, commit, ev};

/// Longest description.
const MAX_DESCRIPTION: usize = 500;

fn check_name(name: &str, what: &'static str) -> ApiResult<()> {
    if role_rank(name).is_some() || !valid_slug(name) {
        return Err(bad(what, "names: 2–40 of a-z, 0-9, -, and not a built-in role"));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutTemplate {
    permissions: Vec<String>,
    #[serde(default)]
    description: String,
}

/// `PUT /v1/role-templates/{name}` (operator): create or change a template; every
/// organisation's role synced with it gets the new permissions now (audited there as
/// `role_template.sync`).
pub(crate) async fn put_template(
    State(app): AppState,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<PutTemplate>,
) -> ApiResult<Json<Value>> {
    require_operator(&app, &headers)?;
    check_name(&name, "invalid_template")?;
    if req.permissions.is_empty() || req.permissions.len() > 64 || req.permissions.iter().any(|p| !valid_permission(p))
    {
        return Err(bad("invalid_permission", "permissions: 1–64 of the form resource:action"));
    }
    if req.description.len() > MAX_DESCRIPTION {
        return Err(bad("invalid_description", format!("description: at most {MAX_DESCRIPTION} bytes")));
    }
    let perms = serde_json::to_string(&req.permissions)?;
    let m = meta(&headers, &peer);
    let before = {
        let d = app.store.directory.lock().await;
        let before = templates::get(&d, &name).await?;
        let t = Template {
            name: name.clone(),
            permissions: perms.clone(),
            description: req.description.clone(),
            updated_at: crate::now(),
        };
        templates::upsert(&d, &t).await?;
        before
    };
    let before = before.map(|b| json!({ "permissions": serde_json::from_str::<Value>(&b.permissions).unwrap_or_default(), "description": b.description }));
    let after = json!({ "permissions": req.permissions, "description": req.description });
    operator_audit::append(&app, &m, "role_template.put", format!("role_template:{name}"), before, Some(after)).await?;
    // Synced roles follow now, in every organisation of the region.
    let homed = tenants::refs_homed_in(&*app.store.directory.lock().await, &app.cfg.region).await?;
    let mut synced = 0;
    for tenants::TenantRef { id, slug } in homed {
        let t = Tenant { db: app.store.tenant(&id, false).await?, id, slug };
        let h = begin(&t).await?;
        let changed = templates::sync(&h, &name, &perms).await?;
        synced += changed.len();
        let events = changed
            .iter()
            .map(|r| {
                let after = json!({ "template": name, "permissions": req.permissions });
                ev("operator", "role_template.sync", format!("role:{r}"), None, Some(after))
            })
            .collect();
        commit(&app, &t, h, &m, events).await?;
        if !changed.is_empty() {
            app.changed(&t.id).await?;
        }
    }
    Ok(Json(
        json!({ "name": name, "permissions": req.permissions, "description": req.description, "synced_roles": synced }),
    ))
}

/// `GET /v1/role-templates` (operator), by name.
pub(crate) async fn list_templates(
    State(app): AppState,
    headers: HeaderMap,
    QueryParams(p): QueryParams<Page>,
) -> ApiResult<Json<Value>> {
    require_operator(&app, &headers)?;
    let rows = templates::page(&*app.store.directory.lock().await, cursor(&p), page_limit(&p)).await?;
    let mut items = Vec::new();
    for t in rows {
        let perms: Value = serde_json::from_str(&t.permissions)?;
        items.push(
            json!({ "name": t.name, "permissions": perms, "description": t.description, "updated_at": t.updated_at }),
        );
    }
    let next = next_cursor(&items, &p, "name");
    Ok(Json(json!({ "items": items, "next": next })))
}

/// How an organisation takes a template.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    /// The role follows the template.
    Sync,
    /// The role is a copy the organisation owns.
    Fork,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FromTemplate {
    template: String,
    mode: Mode,
}

/// `POST /v1/orgs/{slug}/roles/{name}/from-template`: make custom role `name` from a
/// template, synced or forked. A role already made from the same template may switch
/// (forking a synced role makes it editable); any other role of that name is refused.
pub(crate) async fn from_template(
    State(app): AppState,
    authed: Authed,
    Path((_, name)): Path<(String, String)>,
    JsonBody(req): JsonBody<FromTemplate>,
) -> ApiResult<Json<Value>> {
    check_name(&name, "invalid_role")?;
    if !may_grant(&authed.caller, &name) {
        return Err(ApiError::forbidden("role_too_high", "only owners and admins make custom roles"));
    }
    let tpl = templates::get(&*app.store.directory.lock().await, &req.template)
        .await?
        .ok_or_else(|| ApiError::not_found("template_not_found", "template: no such role template"))?;
    let h = begin(&authed.t).await?;
    let origin = templates::origin_of(&h, &name).await?;
    match &origin {
        None => crate::api::caps::check_org_cap(&app, &h, crate::api::caps::Cap::CustomRoles).await?,
        Some(Origin::Synced(t) | Origin::Forked(t)) if t == &tpl.name => {}
        Some(_) => {
            return Err(ApiError::conflict("role_exists", "a custom role of this name exists (not from this template)"))
        }
    }
    let before = roles::permissions(&h, &name).await?;
    // A role forked from a synced one keeps the permissions it had.
    let perms = match (req.mode, &origin, &before) {
        (Mode::Fork, Some(Origin::Synced(_) | Origin::Forked(_)), Some(p)) => p.clone(),
        _ => tpl.permissions.clone(),
    };
    match req.mode {
        Mode::Sync => templates::put_synced(&h, &name, &tpl.name, &perms).await?,
        Mode::Fork => templates::put_forked(&h, &name, &tpl.name, &perms).await?,
    }
    let permissions: Value = serde_json::from_str(&perms)?;
    let mode = if req.mode == Mode::Sync { "sync" } else { "fork" };
    let after = json!({ "template": tpl.name, "mode": mode, "permissions": permissions });
    let before = before.map(|b| json!({ "permissions": serde_json::from_str::<Value>(&b).unwrap_or_default() }));
    authed.commit(&app, h, "role_template.instantiate", format!("role:{name}"), before, Some(after.clone())).await?;
    app.changed(&authed.t.id).await?;
    Ok(Json(json!({ "name": name, "template": tpl.name, "mode": mode, "permissions": permissions })))
}
