//! API keys: listing, creation, rotation and revocation.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::{bad, ApiError, ApiResult};
use crate::identity::new_id;
use crate::store::api_keys::{self, NewApiKey};

use crate::api::admin::roles::{may_grant, role_exists};
use crate::api::extract::{cursor, next_cursor, page_limit, AppState, Authed, JsonBody, Page, QueryParams};
use crate::api::transaction::begin;

pub(crate) use gatehouse_admin_bodies::bodies::CreateKey;

pub(crate) fn new_api_key(secret: &[u8]) -> (String, String, String) {
    let random: [u8; 41] = gatehouse_bundler::random::random_bytes();
    let (key, prefix) = gatehouse_core::apikey::generate(&random);
    let hash = gatehouse_core::apikey::hash_hex(secret, &key);
    (key, prefix, hash)
}

pub(crate) async fn list_keys(authed: Authed, QueryParams(p): QueryParams<Page>) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    let h = t.db.lock().await;
    let mut items = Vec::new();
    for k in api_keys::page(&h, cursor(&p), page_limit(&p)).await? {
        items.push(json!({ "id": k.id, "prefix": k.prefix, "name": k.name, "subject": k.subject,
            "roles": serde_json::from_str::<Value>(&k.roles)?, "scopes": serde_json::from_str::<Value>(&k.scopes)?,
            "created_at": k.created_at, "expires_at": k.expires_at, "revoked_at": k.revoked_at }));
    }
    let next = next_cursor(&items, &p, "id");
    Ok(Json(json!({ "items": items, "next": next })))
}

pub(crate) async fn create_key(
    State(app): AppState,
    authed: Authed,
    JsonBody(req): JsonBody<CreateKey>,
) -> ApiResult<Response> {
    let (t, c) = (&authed.t, &authed.caller);
    req.check(crate::now())?;
    for r in &req.roles {
        if !may_grant(c, r) {
            return Err(ApiError::forbidden("role_too_high", "a key cannot carry a role above your own"));
        }
    }
    let h = begin(t).await?;
    for r in &req.roles {
        if !role_exists(&app, &h, r).await? {
            return Err(bad("unknown_role", format!("no role `{r}`")));
        }
    }
    crate::api::caps::check_org_cap(&app, &h, crate::api::caps::Cap::ApiKeys).await?;
    let (key, prefix, hash) = new_api_key(&app.secrets.api_key_secret);
    let id = new_id("ak_");
    let (subject, roles, scopes) =
        (format!("apikey:{id}"), serde_json::to_string(&req.roles)?, serde_json::to_string(&req.scopes)?);
    let row = NewApiKey {
        id: &id,
        prefix: &prefix,
        hash: &hash,
        name: &req.name,
        subject: &subject,
        roles: &roles,
        scopes: &scopes,
        created_at: crate::now(),
        expires_at: req.expires_at,
    };
    api_keys::insert(&h, &row).await?;
    let after = json!({ "id": id, "prefix": prefix, "name": req.name, "roles": req.roles, "scopes": req.scopes, "expires_at": req.expires_at });
    authed.commit(&app, h, "api_key.create", format!("api_key:{id}"), None, Some(after.clone())).await?;
    app.changed(&t.id).await?;
    let mut out = after;
    out["key"] = key.into();
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

pub(crate) async fn rotate_key(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let t = &authed.t;
    let h = begin(t).await?;
    let old = api_keys::active_prefix(&h, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("api_key_not_found", "no such active key"))?;
    let (key, prefix, hash) = new_api_key(&app.secrets.api_key_secret);
    api_keys::set_secret(&h, &id, &prefix, &hash).await?;
    authed
        .commit(
            &app,
            h,
            "api_key.rotate",
            format!("api_key:{id}"),
            Some(json!({ "prefix": old })),
            Some(json!({ "prefix": prefix })),
        )
        .await?;
    app.changed(&t.id).await?;
    Ok(Json(json!({ "id": id, "prefix": prefix, "key": key })))
}

pub(crate) async fn revoke_key(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let t = &authed.t;
    let h = begin(t).await?;
    let n = api_keys::revoke(&h, &id, crate::now()).await?;
    if n == 0 {
        return Err(ApiError::not_found("api_key_not_found", "no such active key"));
    }
    authed.commit(&app, h, "api_key.revoke", format!("api_key:{id}"), None, None).await?;
    app.changed(&t.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
