//! Passwords: change (signed in) and reset by a mailed single-use token.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::error::{bad, ApiError, ApiResult};
use crate::identity::{self, SigninOutcome};
use crate::store::{reset_tokens, sessions, users};
use crate::tokens::{self};

use crate::api::extract::{bearer, meta, refuse_impersonation, tenant, verify_access, AppState, JsonBody, Peer};
use crate::api::tenant::end_session;
use crate::api::transaction::{begin, commit, ev};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// End every session of `user` but `keep`.
pub(crate) async fn end_sessions_of(h: &libsql::Connection, user: &str, keep: Option<&str>, now: i64) -> ApiResult<()> {
    for id in sessions::open_of_user_except(h, user, keep.unwrap_or("")).await? {
        end_session(h, &id, now).await?;
    }
    Ok(())
}

pub(crate) async fn change_password(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ChangePassword>,
) -> ApiResult<StatusCode> {
    let t = tenant(&app, &slug, &format!("/t/{slug}/password/change")).await?;
    let tok = bearer(&headers)
        .ok_or_else(|| ApiError::unauthorized("credential_missing", "a bearer access token is required"))?;
    let c = verify_access(&app, tok, Some(&t.slug))?;
    if c.custom.act.is_some() {
        return Err(refuse_impersonation());
    }
    let user = c.subject.clone().unwrap_or_default();
    identity::password_acceptable(&req.new_password).map_err(|m| bad("weak_password", m))?;
    if req.current_password.len() > identity::MAX_PASSWORD {
        return Err(ApiError::InvalidCredentials);
    }
    let now = crate::now();
    let h = begin(&t).await?;
    let email = users::email_of(&h, &user).await?.ok_or(ApiError::InvalidCredentials)?;
    let m = meta(&headers, &peer);
    match identity::check_password(&h, &app.passwords, &app.cfg.signin, &email, &req.current_password, now).await? {
        SigninOutcome::Success(_) => {}
        _ => {
            commit(
                &app,
                &t,
                h,
                &m,
                vec![ev(format!("user:{user}"), "password.change_failure", format!("user:{user}"), None, None)],
            )
            .await?;
            return Err(ApiError::InvalidCredentials);
        }
    }
    let hash = app.passwords.hash(&req.new_password)?;
    users::set_password(&h, &user, &hash).await?;
    end_sessions_of(&h, &user, Some(&c.custom.sid), now).await?;
    commit(&app, &t, h, &m, vec![ev(format!("user:{user}"), "password.change", format!("user:{user}"), None, None)])
        .await?;
    app.changed(&t.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetRequest {
    email: String,
}

pub(crate) async fn reset_request(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ResetRequest>,
) -> ApiResult<Response> {
    let t = tenant(&app, &slug, &format!("/t/{slug}/password/reset-request")).await?;
    // The same answer whether or not the address has an account.
    let accepted =
        (StatusCode::ACCEPTED, Json(json!({ "status": "if the address has an account, a reset link is on its way" })));
    let Some(email) = identity::normalise_email(&req.email) else { return Ok(accepted.into_response()) };
    let now = crate::now();
    let h = begin(&t).await?;
    let user = users::enabled_id_by_email(&h, &email).await?;
    let m = meta(&headers, &peer);
    let Some(user) = user else {
        commit(
            &app,
            &t,
            h,
            &m,
            vec![ev("anonymous", "password.reset_request_unknown", format!("email:{email}"), None, None)],
        )
        .await?;
        return Ok(accepted.into_response());
    };
    let token = tokens::opaque("ghp_");
    let expires = now + app.cfg.signin.reset_ttl_secs as i64;
    reset_tokens::insert(&h, &tokens::secret_hash(&token), &user, expires).await?;
    let msg = crate::api::mail::reset_message(&app, &h, &t.slug, &email, &token, expires).await?;
    commit(&app, &t, h, &m, vec![ev("anonymous", "password.reset_request", format!("user:{user}"), None, None)])
        .await?;
    // Sent or not, the same answer (a failure is logged by the mailer, without the body).
    crate::api::mail::deliver(&app, &msg).await;
    Ok(accepted.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetPassword {
    token: String,
    new_password: String,
}

pub(crate) async fn reset_password(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ResetPassword>,
) -> ApiResult<StatusCode> {
    let t = tenant(&app, &slug, &format!("/t/{slug}/password/reset")).await?;
    identity::password_acceptable(&req.new_password).map_err(|m| bad("weak_password", m))?;
    if req.token.len() > 128 {
        return Err(ApiError::InvalidGrant);
    }
    let now = crate::now();
    let h = begin(&t).await?;
    let token_hash = tokens::secret_hash(&req.token);
    let user = reset_tokens::live_user(&h, &token_hash, now).await?.ok_or(ApiError::InvalidGrant)?;
    let hash = app.passwords.hash(&req.new_password)?;
    reset_tokens::mark_used(&h, &token_hash, now).await?;
    users::reset_password(&h, &user, &hash).await?;
    end_sessions_of(&h, &user, None, now).await?;
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(format!("user:{user}"), "password.reset", format!("user:{user}"), None, None)],
    )
    .await?;
    app.changed(&t.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
