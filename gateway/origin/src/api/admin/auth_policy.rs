//! The organisation's sign-in policy: MFA, email verification, session lifetimes.

use axum::extract::State;
use axum::Json;
use serde_json::Value;

use crate::auth_policy::AuthPolicy;
use crate::error::{bad, ApiResult};
use crate::store::orgs;

use crate::api::extract::{AppState, Authed, JsonBody};
use crate::api::transaction::begin;

/// The organisation's sign-in policy in force: as stored (the default when never set),
/// narrowed by what it inherits from its ancestors (MFA, allowed methods).
pub(crate) async fn load(h: &libsql::Connection) -> ApiResult<AuthPolicy> {
    let json = orgs::auth_policy(h).await?.unwrap_or_else(|| "{}".into());
    crate::hierarchy::narrow_auth(h, AuthPolicy::from_stored(&json)?).await
}

pub(crate) async fn get_auth_policy(authed: Authed) -> ApiResult<Json<AuthPolicy>> {
    Ok(Json(load(&*authed.t.db.lock().await).await?))
}

pub(crate) async fn put_auth_policy(
    State(app): AppState,
    authed: Authed,
    JsonBody(req): JsonBody<AuthPolicy>,
) -> ApiResult<Json<AuthPolicy>> {
    req.validate().map_err(|m| bad("invalid_auth_policy", m))?;
    let h = begin(&authed.t).await?;
    crate::hierarchy::refuse_wider_auth(&h, &req).await?;
    let before = serde_json::to_value(load(&h).await?)?;
    orgs::set_auth_policy(&h, &serde_json::to_string(&req)?).await?;
    let after: Value = serde_json::to_value(&req)?;
    authed.commit(&app, h, "org.auth_policy.set", "org", Some(before), Some(after)).await?;
    crate::hierarchy::links::propagate(&app.store, &authed.t.id).await?;
    app.changed(&authed.t.id).await?;
    Ok(Json(req))
}
