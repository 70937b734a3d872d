//! Users of an organisation and their memberships.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{bad, ApiError, ApiResult};
use crate::identity::{self, new_id, User, USER_COLUMNS, USER_FROM};
use crate::store::one;

use crate::api::admin::roles::{may_grant, role_exists};
use crate::api::extract::{meta, page_limit, AppState, Authed, JsonBody, Page, Peer, QueryParams};
use crate::api::tenant::end_session;
use crate::api::transaction::{begin, commit, ev};

pub(crate) async fn list_users(authed: Authed, QueryParams(p): QueryParams<Page>) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    let h = t.db.lock().await;
    let now = crate::now();
    let mut rows = h
        .query(
            &format!("SELECT {USER_COLUMNS} FROM {USER_FROM} WHERE u.id > ?1 AND (?2 IS NULL OR u.email = ?2) ORDER BY u.id LIMIT ?3"),
            libsql::params![p.after.clone().unwrap_or_default(), p.email.as_deref().and_then(identity::normalise_email), page_limit(&p)],
        )
        .await
        ?;
    let mut items: Vec<User> = Vec::new();
    while let Some(r) = rows.next().await? {
        items.push(identity::user_from_row(&r, now)?);
    }
    let next = if items.len() as i64 == page_limit(&p) { items.last().map(|u| u.id.clone()) } else { None };
    Ok(Json(json!({ "items": items, "next": next })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: Option<String>,
    role: String,
    #[serde(default)]
    role_expires_at: Option<i64>,
}

pub(crate) async fn create_user(
    State(app): AppState,
    authed: Authed,

    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CreateUser>,
) -> ApiResult<Response> {
    let Authed { t, caller: c } = authed;
    let email = identity::normalise_email(&req.email).ok_or_else(|| bad("invalid_email", "not an email address"))?;
    if req.name.len() > 200 {
        return Err(bad("invalid_name", "name: at most 200 bytes"));
    }
    let hash = match req.password.as_deref() {
        Some(p) => {
            identity::password_acceptable(p).map_err(|m| bad("weak_password", m))?;
            Some(app.passwords.hash(p)?)
        }
        None => None,
    };
    if !may_grant(&c, &req.role) {
        return Err(ApiError::Forbidden("role_too_high", "you cannot grant a role above your own".into()));
    }
    let h = begin(&t).await?;
    if !role_exists(&app, &h, &req.role).await? {
        return Err(bad("unknown_role", format!("no role `{}`", req.role)));
    }
    if one::<String>(&h, "SELECT id FROM users WHERE email = ?1", [email.as_str()]).await?.is_some() {
        return Err(ApiError::Conflict("email_taken", "a user with this email exists".into()));
    }
    let id = new_id("u_");
    let now = crate::now();
    h.execute(
        "INSERT INTO users (id, email, name, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        libsql::params![id.as_str(), email.as_str(), req.name.as_str(), hash, now],
    )
    .await?;
    h.execute(
        "INSERT INTO memberships (user_id, role, expires_at) VALUES (?1, ?2, ?3)",
        libsql::params![id.as_str(), req.role.as_str(), req.role_expires_at],
    )
    .await?;
    let after = json!({ "email": email, "role": req.role, "role_expires_at": req.role_expires_at });
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(c.actor(), "user.create", format!("user:{id}"), None, Some(after))],
    )
    .await?;
    let user = identity::user_by_id(&*t.db.lock().await, &id, now).await?;
    Ok((StatusCode::CREATED, Json(json!(user))).into_response())
}

pub(crate) async fn delete_user(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let Authed { t, caller: c } = authed;
    let h = begin(&t).await?;
    let now = crate::now();
    let before = identity::user_by_id(&h, &id, now)
        .await?
        .ok_or_else(|| ApiError::NotFound("user_not_found", "no such user".into()))?;
    if let Some(r) = &before.role {
        if !may_grant(&c, r) {
            return Err(ApiError::Forbidden("role_too_high", "you cannot remove a user above your own role".into()));
        }
    }
    let mut rows = h.query("SELECT id FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL", [id.as_str()]).await?;
    let mut sessions = Vec::new();
    while let Some(r) = rows.next().await? {
        sessions.push(r.get::<String>(0)?);
    }
    drop(rows);
    for s in &sessions {
        end_session(&h, s, now).await?;
    }
    h.execute("DELETE FROM users WHERE id = ?1", [id.as_str()]).await?;
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(c.actor(), "user.delete", format!("user:{id}"), Some(json!(before)), None)],
    )
    .await?;
    app.changed();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetRole {
    role: String,
    #[serde(default)]
    expires_at: Option<i64>,
}

pub(crate) async fn set_role(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<SetRole>,
) -> ApiResult<Json<Value>> {
    let Authed { t, caller: c } = authed;
    if !may_grant(&c, &req.role) {
        return Err(ApiError::Forbidden("role_too_high", "you cannot grant a role above your own".into()));
    }
    let h = begin(&t).await?;
    if !role_exists(&app, &h, &req.role).await? {
        return Err(bad("unknown_role", format!("no role `{}`", req.role)));
    }
    let before = identity::user_by_id(&h, &id, crate::now())
        .await?
        .ok_or_else(|| ApiError::NotFound("user_not_found", "no such user".into()))?;
    if let Some(r) = &before.role {
        if !may_grant(&c, r) {
            return Err(ApiError::Forbidden("role_too_high", "you cannot change a user above your own role".into()));
        }
    }
    h.execute("INSERT INTO memberships (user_id, role, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT(user_id) DO UPDATE SET role = ?2, expires_at = ?3",
        libsql::params![id.as_str(), req.role.as_str(), req.expires_at]).await?;
    let after = json!({ "role": req.role, "expires_at": req.expires_at });
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(
            c.actor(),
            "membership.set",
            format!("user:{id}"),
            Some(json!({ "role": before.role, "expires_at": before.role_expires_at })),
            Some(after.clone()),
        )],
    )
    .await?;
    Ok(Json(after))
}
