//! Organisations: creation and listing (operator), the signing-key rotation, an
//! organisation's policy, and the region's policy template.

use std::sync::Arc;

use anyhow::anyhow;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gatehouse_core::policy::Policy;
use serde_json::{json, Value};

use crate::bundles::{self, TenantPolicy};
use crate::error::{bad, ApiError, ApiResult};
use crate::identity::new_id;
use crate::store::directory::{self as tenants, TenantEntry};
use crate::store::{memberships, orgs, settings, users};
use crate::tokens::{self, SigningKeys};

use crate::api::admin::operator_audit;
use crate::api::app::{template_acceptable, App};
use crate::api::extract::{
    cursor, meta, next_cursor, page_limit, require_operator, AppState, Authed, Caller, JsonBody, Page, Peer,
    QueryParams, Tenant,
};
use crate::api::transaction::{begin, commit, ev};

pub(crate) use gatehouse_admin_bodies::bodies::{CreateOrg, PutPolicy};

/// Check a tenant policy by composing it with the region's template and validating the
/// result.
pub(crate) fn check_tenant_policy(app: &App, slug: &str, tier: &str, tp: &TenantPolicy) -> ApiResult<()> {
    Ok(gatehouse_admin_bodies::tenant_policy::check_tenant_policy(&app.template(), slug, tier, tp)?)
}

pub(crate) async fn create_org(
    State(app): AppState,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CreateOrg>,
) -> ApiResult<Response> {
    require_operator(&app, &headers)?;
    req.check_names()?;
    let home = req.home_region.clone().unwrap_or_else(|| app.cfg.region.clone());
    if home != app.cfg.region {
        // Created where it lives, never here.
        let base = app.cfg.regions.get(&home).ok_or_else(|| bad("unknown_region", format!("no region `{home}`")))?;
        return Err(ApiError::WrongRegion { region: home, url: format!("{base}/v1/orgs") });
    }
    check_tenant_policy(&app, &req.slug, &req.tier, &req.policy)?;
    let parent = crate::api::hierarchy::parent_for_new(&app, req.parent.as_deref()).await?;
    let email = req.check_owner()?;
    let id = new_id("t_");
    let now = crate::now();
    {
        let d = app.store.directory.lock().await;
        if tenants::id_by_slug(&d, &req.slug).await?.is_some() {
            return Err(ApiError::conflict("slug_taken", "an organisation with this slug exists"));
        }
        // A deleted organisation's slug stays taken (see `org_lifecycle`).
        if tenants::slug_tombstoned(&d, &req.slug).await? {
            return Err(ApiError::conflict("slug_taken", "this slug belonged to a deleted organisation"));
        }
        let entry = TenantEntry { id: id.clone(), slug: req.slug.clone(), home_region: home.clone(), created_at: now };
        tenants::insert(&d, &entry).await?;
    }
    let db = app.store.tenant(&id, true).await?;
    let t = Tenant { id: id.clone(), slug: req.slug.clone(), db };
    let hash = app.passwords.hash(&req.owner_password)?;
    let owner = new_id("u_");
    let h = begin(&t).await?;
    let policy = serde_json::to_string(&req.policy)?;
    let org = orgs::NewOrg {
        tenant_id: &id,
        slug: &req.slug,
        name: &req.name,
        tier: &req.tier,
        policy: &policy,
        created_at: now,
    };
    orgs::insert(&h, &org).await?;
    let owner_row = users::NewUser { id: &owner, email: &email, name: "", password_hash: Some(&hash), created_at: now };
    users::insert(&h, &owner_row).await?;
    memberships::insert(&h, &owner, "owner", None).await?;
    let after = json!({ "slug": req.slug, "name": req.name, "tier": req.tier, "region": home, "policy": req.policy });
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![
            ev("operator", "org.create", format!("org:{}", req.slug), None, Some(after)),
            ev(
                "operator",
                "user.create",
                format!("user:{owner}"),
                None,
                Some(json!({ "email": email, "role": "owner" })),
            ),
        ],
    )
    .await?;
    // The region's own record of its tenants outlives each tenant's log.
    let record = json!({ "id": id, "slug": req.slug, "tier": req.tier, "region": home });
    operator_audit::append(&app, &meta(&headers, &peer), "org.create", format!("org:{}", req.slug), None, Some(record))
        .await?;
    if parent.is_some() {
        crate::api::hierarchy::attach(&app, &t, parent.as_ref(), &meta(&headers, &peer)).await?;
    }
    app.changed(&id).await?;
    app.peers.push(&[(id.clone(), req.slug.clone(), home.clone(), now)]).await;
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "slug": req.slug, "region": home, "owner_id": owner, "issuer": app.cfg.issuer(&req.slug) }))).into_response())
}

pub(crate) async fn list_orgs(
    State(app): AppState,
    headers: HeaderMap,
    QueryParams(p): QueryParams<Page>,
) -> ApiResult<Json<Value>> {
    require_operator(&app, &headers)?;
    let d = app.store.directory.lock().await;
    let items: Vec<Value> = tenants::page(&d, cursor(&p), page_limit(&p))
        .await?
        .into_iter()
        .map(|e| json!({ "id": e.id, "slug": e.slug, "region": e.home_region, "created_at": e.created_at }))
        .collect();
    let next = next_cursor(&items, &p, "slug");
    Ok(Json(json!({ "items": items, "next": next })))
}

pub(crate) async fn rotate_keys(State(app): AppState, headers: HeaderMap) -> ApiResult<Json<Value>> {
    require_operator(&app, &headers)?;
    let now = crate::now();
    let d = app.store.directory.lock().await;
    // Old keys stay published until every token they signed has expired.
    let kid = tokens::rotate(&d, &app.cfg.tokens.alg, now, app.cfg.tokens.access_ttl_secs as i64 + 60).await?;
    let keys = SigningKeys::load(&d, &app.cfg.tokens.alg, now).await?;
    drop(d);
    *app.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    app.changed_region();
    tracing::info!(kid = %kid, "token signing key rotated");
    Ok(Json(json!({ "kid": kid })))
}

pub(crate) async fn org_row(h: &libsql::Connection) -> ApiResult<(String, String, TenantPolicy, Option<i64>)> {
    let r = orgs::get(h).await?.ok_or_else(|| anyhow!("tenant database has no org row"))?;
    let tp: TenantPolicy = serde_json::from_str(&r.policy)?;
    Ok((r.name, r.tier, tp, r.retention_days))
}

pub(crate) async fn get_org(State(app): AppState, Authed { t, .. }: Authed) -> ApiResult<Json<Value>> {
    let h = t.db.lock().await;
    let (name, tier, policy, retention) = org_row(&h).await?;
    let suspended_at = orgs::suspended_at(&h).await?;
    Ok(Json(json!({ "id": t.id, "slug": t.slug, "name": name, "tier": tier, "region": app.cfg.region,
        "issuer": app.cfg.issuer(&t.slug), "policy": policy, "audit_retention_days": retention,
        "suspended_at": suspended_at })))
}

pub(crate) async fn put_policy(
    State(app): AppState,
    authed: Authed,
    Path(slug): Path<String>,
    JsonBody(req): JsonBody<PutPolicy>,
) -> ApiResult<Json<Value>> {
    let (t, c) = (&authed.t, &authed.caller);
    let h = begin(t).await?;
    let (_, tier, before, _) = org_row(&h).await?;
    if req.tier.as_ref().is_some_and(|x| x != &tier) && !matches!(c, Caller::Operator) {
        return Err(ApiError::forbidden("operator_only", "only the platform operator changes the tier"));
    }
    let tier = req.tier.clone().unwrap_or(tier);
    check_tenant_policy(&app, &t.slug, &tier, &req.policy)?;
    crate::hierarchy::refuse_wider_ip_geo(&h, &req.policy.ip, &req.policy.geo).await?;
    orgs::set_policy(&h, &tier, &serde_json::to_string(&req.policy)?).await?;
    authed
        .commit(
            &app,
            h,
            "org.policy",
            format!("org:{slug}"),
            Some(json!(before)),
            Some(json!({ "tier": tier, "policy": req.policy })),
        )
        .await?;
    // The children inherit the new rules.
    crate::hierarchy::links::propagate(&app.store, &t.id).await?;
    app.changed(&t.id).await?;
    Ok(Json(json!({ "tier": tier, "policy": req.policy })))
}

pub(crate) async fn get_template(State(app): AppState, headers: HeaderMap) -> ApiResult<Json<Policy>> {
    require_operator(&app, &headers)?;
    Ok(Json((*app.template()).clone()))
}

pub(crate) async fn put_template(
    State(app): AppState,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(p): JsonBody<Policy>,
) -> ApiResult<Json<Value>> {
    require_operator(&app, &headers)?;
    template_acceptable(&p).map_err(|e| bad("invalid_policy", e))?;
    // Every tenant must still fit (its tier must exist, its rules validate).
    let keys = app.keys();
    let region = bundles::Region {
        template: &p,
        public_url: &app.cfg.public_url,
        audience: &app.cfg.tokens.audience,
        jwks: &keys.jwks,
        region: &app.cfg.region,
    };
    app.fragments
        .assemble(&app.store, &region, crate::now())
        .await
        .map_err(|e| bad("invalid_policy", format!("{e:#}")))?;
    settings::set_template(&*app.store.directory.lock().await, &serde_json::to_string(&p)?).await?;
    let before = app.template();
    *app.template.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p.clone());
    app.changed_region();
    // A region-wide change is a cross-tenant action: every tenant's log records it.
    let homed = tenants::refs_homed_in(&*app.store.directory.lock().await, &app.cfg.region).await?;
    let m = meta(&headers, &peer);
    for tenants::TenantRef { id, slug } in homed {
        let t = Tenant { db: app.store.tenant(&id, false).await?, id, slug };
        let h = begin(&t).await?;
        let e = ev(
            "operator",
            "policy.template",
            "region",
            Some(serde_json::to_value(&*before)?),
            Some(serde_json::to_value(&p)?),
        );
        commit(&app, &t, h, &m, vec![e]).await?;
    }
    tracing::info!(tiers = p.tiers.len(), routes = p.routes.len(), "policy template replaced by the operator");
    Ok(Json(json!({ "tiers": p.tiers.keys().collect::<Vec<_>>(), "routes": p.routes.len() })))
}
