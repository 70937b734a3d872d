//! Organisation hierarchy over HTTP (issue 15, part E): attaching a child to a parent
//! (operator), an organisation's children, its effective policy with where each rule
//! comes from, and the roles a team grants its members.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::RequestMeta;
use crate::error::{bad, ApiError, ApiResult};
use crate::hierarchy::{self, links};
use crate::store::hierarchy::{self as tree, Node};
use crate::store::teams;

use crate::api::admin::org_lifecycle::OperatorOrg;
use crate::api::admin::roles::{may_grant, role_exists};
use crate::api::app::App;
use crate::api::extract::{AppState, Authed, JsonBody, Tenant};
use crate::api::transaction::{begin, commit, ev};

/// Most roles one team grants.
const MAX_TEAM_ROLES: usize = 16;

/// The parent a new organisation is to be created under, checked before it is created:
/// homed in this region, with room for one more level below it.
pub(crate) async fn parent_for_new(app: &App, parent: Option<&str>) -> ApiResult<Option<Node>> {
    let Some(slug) = parent else { return Ok(None) };
    let d = app.store.directory.lock().await;
    let p = tree::node_by_slug(&d, slug)
        .await?
        .ok_or_else(|| ApiError::not_found("parent_not_found", "parent: no such organisation"))?;
    let unborn = Node { id: String::new(), slug: String::new(), home_region: app.cfg.region.clone(), parent_id: None };
    links::check(&d, &unborn, &p, &app.cfg.region).await?;
    Ok(Some(p))
}

/// Make `parent` (or nobody) `child`'s parent: the link, an `org.parent_set` record in
/// the child's log and in the old and new parent's, and what the child and its
/// descendants inherit from now on. The parent, if any, was checked with
/// [`links::check`].
pub(crate) async fn attach(app: &App, child: &Tenant, parent: Option<&Node>, m: &RequestMeta) -> ApiResult<()> {
    let old = {
        let d = app.store.directory.lock().await;
        let me = tree::node_by_id(&d, &child.id).await?.ok_or_else(|| anyhow::anyhow!("tenant left the directory"))?;
        let old = match me.parent_id.as_deref() {
            Some(p) => tree::node_by_id(&d, p).await?,
            None => None,
        };
        tree::set_parent(&d, &child.id, parent.map(|p| p.id.as_str())).await?;
        old
    };
    let (before, after) = (old.as_ref().map(|n| n.slug.clone()), parent.map(|p| p.slug.clone()));
    let record = |target: String| {
        ev("operator", "org.parent_set", target, Some(json!({ "parent": before })), Some(json!({ "parent": after })))
    };
    commit(app, child, begin(child).await?, m, vec![record(format!("org:{}", child.slug))]).await?;
    let mut others: Vec<&Node> = old.iter().chain(parent).collect();
    others.dedup_by(|a, b| a.id == b.id);
    for n in others {
        if n.home_region != app.cfg.region {
            continue;
        }
        let t = Tenant { db: app.store.tenant(&n.id, false).await?, id: n.id.clone(), slug: n.slug.clone() };
        let h = begin(&t).await?;
        commit(app, &t, h, m, vec![record(format!("org:{}", child.slug))]).await?;
    }
    match parent {
        Some(p) => links::propagate(&app.store, &p.id).await?,
        None => links::detach(&app.store, &child.id).await?,
    }
    app.changed(&child.id).await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutParent {
    /// The parent's slug; `null` detaches.
    parent: Option<String>,
}

/// `PUT /v1/orgs/{slug}/parent` (operator; a tenant's token is refused as on every
/// operator route of one organisation).
pub(crate) async fn put_parent(
    State(app): AppState,
    OperatorOrg { t: child, meta }: OperatorOrg,
    Path(slug): Path<String>,
    JsonBody(req): JsonBody<PutParent>,
) -> ApiResult<Json<Value>> {
    let parent = match req.parent.as_deref() {
        None => None,
        Some(p) => {
            let d = app.store.directory.lock().await;
            let parent = tree::node_by_slug(&d, p)
                .await?
                .ok_or_else(|| ApiError::not_found("parent_not_found", "parent: no such organisation"))?;
            let me =
                tree::node_by_id(&d, &child.id).await?.ok_or_else(|| anyhow::anyhow!("tenant left the directory"))?;
            links::check(&d, &me, &parent, &app.cfg.region).await?;
            Some(parent)
        }
    };
    attach(&app, &child, parent.as_ref(), &meta).await?;
    Ok(Json(json!({ "slug": slug, "parent": req.parent })))
}

/// `GET /v1/orgs/{slug}/children`.
pub(crate) async fn list_children(State(app): AppState, authed: Authed) -> ApiResult<Json<Value>> {
    let kids = tree::children(&*app.store.directory.lock().await, &authed.t.id).await?;
    let items: Vec<Value> =
        kids.iter().map(|n| json!({ "id": n.id, "slug": n.slug, "region": n.home_region })).collect();
    Ok(Json(json!({ "items": items })))
}

/// `GET /v1/orgs/{slug}/effective-policy`: the rules in force, the organisation's own,
/// and which organisation each effective rule comes from.
pub(crate) async fn effective_policy(authed: Authed) -> ApiResult<Json<Value>> {
    let h = authed.t.db.lock().await;
    let e = hierarchy::effective(&h, &authed.t.slug).await?;
    let own = hierarchy::own_rules(&h).await?;
    Ok(Json(json!({
        "org": authed.t.slug,
        "ancestors": e.from,
        "effective": e.rules,
        "sources": e.sources,
        "own": own,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutTeamRoles {
    roles: Vec<String>,
}

/// `PUT /v1/orgs/{slug}/teams/{id}/roles`: the roles every member of the team (and of
/// its descendant teams) holds on top of their membership role.
pub(crate) async fn put_team_roles(
    State(app): AppState,
    authed: Authed,
    Path((_, team)): Path<(String, String)>,
    JsonBody(req): JsonBody<PutTeamRoles>,
) -> ApiResult<Json<Value>> {
    if req.roles.len() > MAX_TEAM_ROLES {
        return Err(bad("invalid_roles", format!("roles: at most {MAX_TEAM_ROLES}")));
    }
    let mut roles = req.roles.clone();
    roles.sort();
    roles.dedup();
    let h = begin(&authed.t).await?;
    if !teams::exists_id(&h, &team).await? {
        return Err(ApiError::not_found("team_not_found", "no such team"));
    }
    let before = tree::team_roles(&h, &team).await?;
    for r in roles.iter().chain(before.iter().filter(|b| !roles.contains(b))) {
        // Granting (or taking away) a role through a team is granting it.
        if !may_grant(&authed.caller, r) {
            return Err(ApiError::forbidden(
                "role_too_high",
                format!("roles: you cannot grant `{r}`, above your own role"),
            ));
        }
    }
    for r in &roles {
        if !role_exists(&app, &h, r).await? {
            return Err(bad("unknown_role", format!("roles: no role `{r}`")));
        }
    }
    tree::set_team_roles(&h, &team, &roles).await?;
    authed
        .commit(
            &app,
            h,
            "team.roles_set",
            format!("team:{team}"),
            Some(json!({ "roles": before })),
            Some(json!({ "roles": roles })),
        )
        .await?;
    Ok(Json(json!({ "team": team, "roles": roles })))
}
