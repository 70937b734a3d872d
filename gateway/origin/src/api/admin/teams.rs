//! Teams and their members.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{bad, ApiError, ApiResult};
use crate::identity::{new_id, valid_slug};
use crate::store::one;

use crate::api::extract::{meta, page_limit, AppState, Authed, JsonBody, Page, Peer, QueryParams};
use crate::api::transaction::{begin, commit, ev};

pub(crate) async fn list_teams(authed: Authed, QueryParams(p): QueryParams<Page>) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    let h = t.db.lock().await;
    let mut rows = h
        .query(
            "SELECT id, name, parent_id, (SELECT COUNT(*) FROM team_members m WHERE m.team_id = teams.id) FROM teams
             WHERE name > ?1 AND (?2 IS NULL OR parent_id = ?2) ORDER BY name LIMIT ?3",
            libsql::params![p.after.clone().unwrap_or_default(), p.parent.clone(), page_limit(&p)],
        )
        .await?;
    let mut items = Vec::new();
    while let Some(r) = rows.next().await? {
        items.push(json!({ "id": r.get::<String>(0)?, "name": r.get::<String>(1)?,
            "parent_id": r.get::<Option<String>>(2)?, "members": r.get::<i64>(3)? }));
    }
    let next = if items.len() as i64 == page_limit(&p) { items.last().map(|i| i["name"].clone()) } else { None };
    Ok(Json(json!({ "items": items, "next": next })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTeam {
    name: String,
    #[serde(default)]
    parent_id: Option<String>,
}

pub(crate) async fn create_team(
    State(app): AppState,
    authed: Authed,

    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CreateTeam>,
) -> ApiResult<Response> {
    let Authed { t, caller: c } = authed;
    if !valid_slug(&req.name) {
        return Err(bad("invalid_name", "team names: 2–40 of a-z, 0-9, -"));
    }
    let h = begin(&t).await?;
    if let Some(p) = &req.parent_id {
        if one::<String>(&h, "SELECT id FROM teams WHERE id = ?1", [p.as_str()]).await?.is_none() {
            return Err(bad("unknown_team", "parent_id names no team"));
        }
    }
    if one::<String>(&h, "SELECT id FROM teams WHERE name = ?1", [req.name.as_str()]).await?.is_some() {
        return Err(ApiError::Conflict("team_exists", "a team with this name exists".into()));
    }
    let id = new_id("tm_");
    h.execute(
        "INSERT INTO teams (id, name, parent_id) VALUES (?1, ?2, ?3)",
        libsql::params![id.as_str(), req.name.as_str(), req.parent_id.clone()],
    )
    .await?;
    let after = json!({ "id": id, "name": req.name, "parent_id": req.parent_id });
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(c.actor(), "team.create", format!("team:{id}"), None, Some(after.clone()))],
    )
    .await?;
    Ok((StatusCode::CREATED, Json(after)).into_response())
}

pub(crate) async fn add_team_member(
    State(app): AppState,
    authed: Authed,
    Path((_, team, user)): Path<(String, String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let Authed { t, caller: c } = authed;
    let h = begin(&t).await?;
    if one::<String>(&h, "SELECT id FROM teams WHERE id = ?1", [team.as_str()]).await?.is_none() {
        return Err(ApiError::NotFound("team_not_found", "no such team".into()));
    }
    if one::<String>(&h, "SELECT id FROM users WHERE id = ?1", [user.as_str()]).await?.is_none() {
        return Err(ApiError::NotFound("user_not_found", "no such user".into()));
    }
    h.execute(
        "INSERT OR IGNORE INTO team_members (team_id, user_id) VALUES (?1, ?2)",
        libsql::params![team.as_str(), user.as_str()],
    )
    .await?;
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(c.actor(), "team.member_add", format!("team:{team}"), None, Some(json!({ "user": user })))],
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
