//! Users of an organisation and their memberships.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::{bad, ApiError, ApiResult};
use crate::identity::{self, new_id};
use crate::store::{memberships, users};

use crate::api::admin::roles::{may_grant, role_exists};
use crate::api::admin::sessions::end_all_of_user;
use crate::api::app::App;
use crate::api::caps::{check_org_cap, Cap};
use crate::api::extract::{cursor, page_limit, AppState, Authed, Caller, JsonBody, Page, QueryParams};
use crate::api::transaction::begin;

pub(crate) async fn list_users(authed: Authed, QueryParams(p): QueryParams<Page>) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    let h = t.db.lock().await;
    let now = crate::now();
    let email = p.email.as_deref().and_then(identity::normalise_email);
    let items = users::page(&h, cursor(&p), email.as_deref(), page_limit(&p), now).await?;
    let next = if items.len() as i64 == page_limit(&p) { items.last().map(|u| u.id.clone()) } else { None };
    Ok(Json(json!({ "items": items, "next": next })))
}

pub(crate) use gatehouse_admin_bodies::bodies::{CreateUser, SetRole};

pub(crate) async fn create_user(
    State(app): AppState,
    authed: Authed,
    JsonBody(req): JsonBody<CreateUser>,
) -> ApiResult<Response> {
    let (t, c) = (&authed.t, &authed.caller);
    let email = req.check()?;
    let hash = match req.password.as_deref() {
        Some(p) => Some(app.passwords.hash(p)?),
        None => None,
    };
    if !may_grant(c, &req.role) {
        return Err(ApiError::forbidden("role_too_high", "you cannot grant a role above your own"));
    }
    let h = begin(t).await?;
    if !role_exists(&app, &h, &req.role).await? {
        return Err(bad("unknown_role", format!("no role `{}`", req.role)));
    }
    check_org_cap(&app, &h, Cap::Users).await?;
    if users::id_by_email(&h, &email).await?.is_some() {
        return Err(ApiError::conflict("email_taken", "a user with this email exists"));
    }
    let id = new_id("u_");
    let now = crate::now();
    let row =
        users::NewUser { id: &id, email: &email, name: &req.name, password_hash: hash.as_deref(), created_at: now };
    users::insert(&h, &row).await?;
    memberships::insert(&h, &id, &req.role, req.role_expires_at).await?;
    let after = json!({ "email": email, "role": req.role, "role_expires_at": req.role_expires_at });
    authed.commit(&app, h, "user.create", format!("user:{id}"), None, Some(after)).await?;
    crate::api::mail::verify::after_create(&app, &authed, &id, &email).await;
    let user = users::by_id(&*t.db.lock().await, &id, now).await?;
    Ok((StatusCode::CREATED, Json(json!(user))).into_response())
}

pub(crate) async fn delete_user(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (t, c) = (&authed.t, &authed.caller);
    let h = begin(t).await?;
    let now = crate::now();
    let before =
        users::by_id(&h, &id, now).await?.ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))?;
    if let Some(r) = &before.role {
        if !may_grant(c, r) {
            return Err(ApiError::forbidden("role_too_high", "you cannot remove a user above your own role"));
        }
    }
    if before.role.as_deref() == Some("owner") && !before.disabled && users::enabled_owners(&h, now).await? <= 1 {
        return Err(ApiError::conflict("last_owner", "the organisation's last owner cannot be deleted"));
    }
    end_all_of_user(&h, &id, now).await?;
    users::delete(&h, &id).await?;
    authed.commit(&app, h, "user.delete", format!("user:{id}"), Some(json!(before)), None).await?;
    app.changed(&t.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn set_role(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
    JsonBody(req): JsonBody<SetRole>,
) -> ApiResult<Json<Value>> {
    let (t, c) = (&authed.t, &authed.caller);
    if !may_grant(c, &req.role) {
        return Err(ApiError::forbidden("role_too_high", "you cannot grant a role above your own"));
    }
    let h = begin(t).await?;
    if !role_exists(&app, &h, &req.role).await? {
        return Err(bad("unknown_role", format!("no role `{}`", req.role)));
    }
    let before = users::by_id(&h, &id, crate::now())
        .await?
        .ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))?;
    if let Some(r) = &before.role {
        if !may_grant(c, r) {
            return Err(ApiError::forbidden("role_too_high", "you cannot change a user above your own role"));
        }
    }
    let demotes_owner = before.role.as_deref() == Some("owner") && (req.role != "owner" || req.expires_at.is_some());
    if demotes_owner && !before.disabled && users::enabled_owners(&h, crate::now()).await? <= 1 {
        return Err(ApiError::conflict("last_owner", "the organisation's last owner keeps the owner role"));
    }
    memberships::upsert(&h, &id, &req.role, req.expires_at).await?;
    let after = json!({ "role": req.role, "expires_at": req.expires_at });
    authed
        .commit(
            &app,
            h,
            "membership.set",
            format!("user:{id}"),
            Some(json!({ "role": before.role, "expires_at": before.role_expires_at })),
            Some(after.clone()),
        )
        .await?;
    Ok(Json(after))
}

/// The user `id` that caller `c` may manage: it exists, is not the caller, and holds no
/// role above the caller's (so an admin never deactivates an owner).
async fn manageable(h: &libsql::Connection, c: &Caller, id: &str, now: i64) -> ApiResult<users::User> {
    let user = users::by_id(h, id, now).await?.ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))?;
    if matches!(c, Caller::User { user, .. } if user == id) {
        return Err(ApiError::conflict("cannot_deactivate_self", "you cannot deactivate your own account"));
    }
    if let Some(r) = &user.role {
        if !may_grant(c, r) {
            return Err(ApiError::forbidden("role_too_high", "you cannot manage a user above your own role"));
        }
    }
    Ok(user)
}

/// `POST /v1/orgs/{slug}/users/{id}/deactivate`: the user can no longer sign in
/// (`user_disabled`), their sessions and refresh tokens end now, and edges refuse their
/// tokens and API keys (`user_disabled`) from their next bundle. Nothing else of theirs is
/// revoked, so a reactivation restores the account as it was. The last owner stays.
pub(crate) async fn deactivate_user(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    set_disabled(&app, &authed, &id, true).await
}

/// `POST /v1/orgs/{slug}/users/{id}/reactivate`: the user signs in again (a new sign-in;
/// the ended sessions stay ended). Counts against the tier's `max_users` again.
pub(crate) async fn reactivate_user(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    set_disabled(&app, &authed, &id, false).await
}

/// Deactivate (`disable`) or reactivate user `id`, audited as `user.deactivate` or
/// `user.reactivate`; the user as it is afterwards (unchanged when already so).
async fn set_disabled(app: &App, authed: &Authed, id: &str, disable: bool) -> ApiResult<Json<Value>> {
    let (t, c) = (&authed.t, &authed.caller);
    let now = crate::now();
    let h = begin(t).await?;
    let before = manageable(&h, c, id, now).await?;
    if before.disabled == disable {
        return Ok(Json(json!(before)));
    }
    let mut after = json!({ "disabled": disable });
    if disable {
        if before.role.as_deref() == Some("owner") && users::enabled_owners(&h, now).await? <= 1 {
            return Err(ApiError::conflict("last_owner", "the organisation's last owner cannot be deactivated"));
        }
        users::set_disabled(&h, id, true).await?;
        after["sessions_ended"] = json!(end_all_of_user(&h, id, now).await?);
    } else {
        check_org_cap(app, &h, Cap::Users).await?;
        users::set_disabled(&h, id, false).await?;
    }
    let action = if disable { "user.deactivate" } else { "user.reactivate" };
    let before = Some(json!({ "disabled": !disable }));
    authed.commit(app, h, action, format!("user:{id}"), before, Some(after)).await?;
    app.changed(&t.id).await?;
    let user = users::by_id(&*t.db.lock().await, id, now).await?;
    Ok(Json(json!(user)))
}

/// `POST /v1/orgs/{slug}/users/{id}/unlock`: end a lockout after repeated failures (the
/// failure count starts again).
pub(crate) async fn unlock_user(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let t = &authed.t;
    let now = crate::now();
    let h = begin(t).await?;
    let before =
        users::by_id(&h, &id, now).await?.ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))?;
    users::clear_failures(&h, &id).await?;
    authed
        .commit(
            &app,
            h,
            "user.unlock",
            format!("user:{id}"),
            Some(json!({ "locked_until": before.locked_until })),
            Some(json!({ "locked_until": 0 })),
        )
        .await?;
    let user = users::by_id(&*t.db.lock().await, &id, now).await?;
    Ok(Json(json!(user)))
}
