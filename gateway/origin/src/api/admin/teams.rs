//! Teams and their members.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::{bad, ApiError, ApiResult};
use crate::identity::new_id;
use crate::store::{teams, users};

use crate::api::extract::{cursor, next_cursor, page_limit, AppState, Authed, JsonBody, Page, QueryParams};
use crate::api::transaction::begin;

pub(crate) async fn list_teams(authed: Authed, QueryParams(p): QueryParams<Page>) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    let h = t.db.lock().await;
    let items: Vec<Value> = teams::page(&h, cursor(&p), p.parent.as_deref(), page_limit(&p))
        .await?
        .into_iter()
        .map(|t| json!({ "id": t.id, "name": t.name, "parent_id": t.parent_id, "members": t.members }))
        .collect();
    let next = next_cursor(&items, &p, "name");
    Ok(Json(json!({ "items": items, "next": next })))
}

pub(crate) use gatehouse_admin_bodies::bodies::CreateTeam;

pub(crate) async fn create_team(
    State(app): AppState,
    authed: Authed,
    JsonBody(req): JsonBody<CreateTeam>,
) -> ApiResult<Response> {
    let t = &authed.t;
    req.check()?;
    let h = begin(t).await?;
    if let Some(p) = &req.parent_id {
        if !teams::exists_id(&h, p).await? {
            return Err(bad("unknown_team", "parent_id names no team"));
        }
    }
    if teams::name_taken(&h, &req.name).await? {
        return Err(ApiError::conflict("team_exists", "a team with this name exists"));
    }
    let id = new_id("tm_");
    teams::insert(&h, &id, &req.name, req.parent_id.as_deref()).await?;
    let after = json!({ "id": id, "name": req.name, "parent_id": req.parent_id });
    authed.commit(&app, h, "team.create", format!("team:{id}"), None, Some(after.clone())).await?;
    Ok((StatusCode::CREATED, Json(after)).into_response())
}

pub(crate) async fn add_team_member(
    State(app): AppState,
    authed: Authed,
    Path((_, team, user)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let t = &authed.t;
    let h = begin(t).await?;
    if !teams::exists_id(&h, &team).await? {
        return Err(ApiError::not_found("team_not_found", "no such team"));
    }
    if !users::exists_id(&h, &user).await? {
        return Err(ApiError::not_found("user_not_found", "no such user"));
    }
    teams::add_member(&h, &team, &user).await?;
    authed.commit(&app, h, "team.member_add", format!("team:{team}"), None, Some(json!({ "user": user }))).await?;
    Ok(StatusCode::NO_CONTENT)
}
