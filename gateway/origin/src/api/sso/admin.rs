//! The administrators' SSO API: connections (create, read, replace, delete) and the
//! enforcement setting. Only owners and the operator write them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{bad, ApiError, ApiResult};
use crate::identity::{self, new_id};
use crate::store::orgs::{self, Enforcement as StoredEnforcement};
use crate::store::sso::{self as sso_store, ConnectionWrite};
use crate::store::{memberships, sessions};

use crate::api::admin::roles::{may_grant, role_exists};
use crate::api::app::App;
use crate::api::extract::{cursor, next_cursor, page_limit, AppState, Authed, Caller, JsonBody, Page, QueryParams};
use crate::api::sso::connections::{enabled, enforcement, keep_one_enabled, load, not_found, view};
use crate::api::tenant::end_session;
use crate::api::transaction::{begin, ev};
use crate::sso::{Connection, ConnectionInput, Protocol};

pub(crate) async fn list(
    State(app): AppState,
    authed: Authed,
    QueryParams(p): QueryParams<Page>,
) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    let h = t.db.lock().await;
    let mut items = Vec::new();
    for row in sso_store::page(&h, cursor(&p), page_limit(&p)).await? {
        let c: Connection = serde_json::from_str(&row.config)?;
        items.push(view(&app, &t.slug, &c, row.has_secret));
    }
    let next = next_cursor(&items, &p, "id");
    Ok(Json(json!({ "items": items, "next": next })))
}

pub(crate) async fn get_one(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    let (c, secret) = load(&*t.db.lock().await, &id).await?.ok_or_else(not_found)?;
    Ok(Json(view(&app, &t.slug, &c, secret.is_some())))
}

/// Who signs in through SSO is an owner's decision: a connection (or enforcement) lets
/// its provider vouch for the organisation's members, so only owners (and the platform
/// operator) write them — not every holder of `settings:write` (editors hold `*:write`).
pub(crate) fn require_owner(c: &Caller) -> ApiResult<()> {
    match c {
        Caller::Operator => Ok(()),
        Caller::User { roles, .. } if roles.iter().any(|r| r == "owner") => Ok(()),
        _ => Err(ApiError::forbidden("owner_required", "only an owner may change single sign-on")),
    }
}

/// Validate `input` as connection `id` (its default role must exist and be one the caller
/// may grant; SAML needs an https origin).
pub(crate) async fn checked(
    app: &App,
    h: &libsql::Connection,
    caller: &Caller,
    id: String,
    input: ConnectionInput,
) -> ApiResult<Connection> {
    let c =
        Connection::from_input(id, input, app.cfg.sso.allow_http_loopback).map_err(|m| bad("invalid_connection", m))?;
    if !role_exists(app, h, &c.default_role).await? {
        return Err(bad("unknown_role", format!("default_role: no role `{}`", c.default_role)));
    }
    if !may_grant(caller, &c.default_role) {
        return Err(ApiError::forbidden("role_too_high", "default_role: you cannot grant this role"));
    }
    if c.protocol == Protocol::Saml && !app.cfg.public_url.starts_with("https://") && !app.cfg.sso.allow_http_loopback {
        // The ACS binds the response to the browser with a SameSite=None cookie, which
        // browsers only keep over TLS.
        return Err(bad("invalid_connection", "protocol saml: the origin's public_url must be https"));
    }
    Ok(c)
}

pub(crate) async fn create(
    State(app): AppState,
    authed: Authed,
    JsonBody(input): JsonBody<ConnectionInput>,
) -> ApiResult<Response> {
    let (t, caller) = (&authed.t, &authed.caller);
    require_owner(caller)?;
    let input = fetch_metadata(&app, input).await?;
    let secret = input.client_secret.clone();
    let h = begin(t).await?;
    if sso_store::count(&h).await? >= 50 {
        return Err(ApiError::conflict("sso_connection_limit", "at most 50 SSO connections per organisation"));
    }
    let mut c = checked(&app, &h, caller, new_id("c_"), input).await?;
    let sealed = match sp_key(&mut c, None)? {
        Some(pem) => Some(app.sso_box.seal(&t.id, &c.id, &pem)),
        None => secret.as_deref().map(|s| app.sso_box.seal(&t.id, &c.id, s)),
    };
    let now = crate::now();
    let config = serde_json::to_string(&c)?;
    let row = ConnectionWrite {
        id: &c.id,
        name: &c.name,
        protocol: c.protocol.as_str(),
        config: &config,
        secret: sealed.as_deref(),
        enabled: c.enabled,
        at: now,
    };
    sso_store::insert(&h, &row).await?;
    let shown = view(&app, &t.slug, &c, secret.is_some());
    let events = vec![ev(caller.actor(), "sso.connection.create", format!("sso:{}", c.id), None, Some(shown.clone()))];
    authed.commit_all(&app, h, events).await?;
    Ok((StatusCode::CREATED, Json(shown)).into_response())
}

pub(crate) async fn replace(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
    JsonBody(input): JsonBody<ConnectionInput>,
) -> ApiResult<Json<Value>> {
    let (t, caller) = (&authed.t, &authed.caller);
    require_owner(caller)?;
    let input = fetch_metadata(&app, input).await?;
    let secret = input.client_secret.clone();
    let h = begin(t).await?;
    let (before, old_secret) = load(&h, &id).await?.ok_or_else(not_found)?;
    let mut c = checked(&app, &h, caller, id.clone(), input).await?;
    let same_provider = before.identity_fingerprint() == c.identity_fingerprint();
    if !same_provider && secret.is_none() && c.protocol != Protocol::Saml && old_secret.is_some() {
        // The stored secret is never sent to an endpoint it was not given for.
        return Err(bad("client_secret_required", "the provider changed: give its client_secret again"));
    }
    if !c.enabled {
        keep_one_enabled(&h, &id, "disabling").await?;
    }
    if !same_provider {
        // A subject means nothing at another provider: its links go.
        sso_store::unlink_all(&h, &id).await?;
    }
    let sealed = if c.protocol == crate::sso::Protocol::Saml {
        // A SAML connection keeps its SP key pair across edits (the IdP has its certificate).
        let kept = before.saml.as_ref().and_then(|s| s.sp_certificate.clone()).zip(old_secret);
        match sp_key(&mut c, kept.as_ref().map(|(cert, _)| cert.clone()))? {
            Some(pem) => Some(app.sso_box.seal(&t.id, &c.id, &pem)),
            None => kept.filter(|_| c.saml.as_ref().is_some_and(|s| s.sign_requests)).map(|(_, s)| s),
        }
    } else {
        match secret.as_deref() {
            Some(s) => Some(app.sso_box.seal(&t.id, &c.id, s)),
            None if before.protocol != crate::sso::Protocol::Saml => old_secret,
            None => None,
        }
    };
    let config = serde_json::to_string(&c)?;
    let row = ConnectionWrite {
        id: &c.id,
        name: &c.name,
        protocol: c.protocol.as_str(),
        config: &config,
        secret: sealed.as_deref(),
        enabled: c.enabled,
        at: crate::now(),
    };
    sso_store::update(&h, &row).await?;
    let shown = view(&app, &t.slug, &c, sealed.is_some());
    let mut after = shown.clone();
    after["client_secret_replaced"] = json!(secret.is_some());
    let events =
        vec![ev(caller.actor(), "sso.connection.update", format!("sso:{id}"), Some(json!(before)), Some(after))];
    authed.commit_all(&app, h, events).await?;
    app.rp.forget(&t.id, &id);
    Ok(Json(shown))
}

pub(crate) async fn remove(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (t, caller) = (&authed.t, &authed.caller);
    require_owner(caller)?;
    let h = begin(t).await?;
    let (before, _) = load(&h, &id).await?.ok_or_else(not_found)?;
    keep_one_enabled(&h, &id, "deleting").await?;
    sso_store::delete(&h, &id).await?;
    let events = vec![ev(caller.actor(), "sso.connection.delete", format!("sso:{id}"), Some(json!(before)), None)];
    authed.commit_all(&app, h, events).await?;
    app.rp.forget(&t.id, &id);
    Ok(StatusCode::NO_CONTENT)
}

/// SAML with `idp_metadata_url`: fetch the metadata once, now (https, bounded, timed).
pub(crate) async fn fetch_metadata(app: &App, mut input: ConnectionInput) -> ApiResult<ConnectionInput> {
    let Some(url) = input.idp_metadata_url.take() else { return Ok(input) };
    if input.idp_metadata_xml.is_some() {
        return Err(bad("invalid_connection", "give idp_metadata_xml or idp_metadata_url, not both"));
    }
    let req = http::Request::get(url.as_str())
        .header("accept", "application/samlmetadata+xml, application/xml")
        .body(Vec::new())
        .map_err(|_| bad("invalid_connection", "idp_metadata_url: not a URL"))?;
    // Generic answers: the details (refused address, status) go to the log only, so the
    // URL cannot be used to map the origin's network.
    let resp = app.rp.http().send(req).await.map_err(|e| {
        tracing::info!(error = %e, "idp_metadata_url fetch failed");
        bad("invalid_connection", "idp_metadata_url: could not be fetched")
    })?;
    if !resp.status().is_success() {
        tracing::info!(status = %resp.status(), "idp_metadata_url fetch refused");
        return Err(bad("invalid_connection", "idp_metadata_url: could not be fetched"));
    }
    let xml =
        String::from_utf8(resp.into_body()).map_err(|_| bad("invalid_connection", "idp_metadata_url: not UTF-8"))?;
    input.idp_metadata_xml = Some(xml);
    Ok(input)
}

/// For a SAML connection that signs its requests: keep `existing` (certificate) or make a
/// key pair; returns a new private key (PEM) to seal, if one was made.
pub(crate) fn sp_key(c: &mut Connection, existing: Option<String>) -> ApiResult<Option<String>> {
    let Some(saml) = c.saml.as_mut().filter(|s| s.sign_requests) else { return Ok(None) };
    if let Some(cert) = existing {
        saml.sp_certificate = Some(cert);
        return Ok(None);
    }
    let (pem, cert) = crate::sso::saml::new_sp_keypair(&format!("gatehouse {}", c.id))
        .map_err(|e| anyhow::Error::from(e).context("generate the SAML SP key pair"))?;
    saml.sp_certificate = Some(cert);
    Ok(Some(pem))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Enforcement {
    enforce: bool,
    /// Email of an owner who may still sign in with a password.
    #[serde(default)]
    break_glass: Option<String>,
}

pub(crate) async fn enforcement_of(h: &libsql::Connection) -> ApiResult<Value> {
    let (enforce, break_glass) = enforcement(h).await?;
    Ok(json!({ "enforce": enforce, "break_glass": break_glass }))
}

pub(crate) async fn get_enforcement(authed: Authed) -> ApiResult<Json<Value>> {
    Ok(Json(enforcement_of(&*authed.t.db.lock().await).await?))
}

pub(crate) async fn put_enforcement(
    State(app): AppState,
    authed: Authed,
    JsonBody(req): JsonBody<Enforcement>,
) -> ApiResult<Json<Value>> {
    let (t, caller) = (&authed.t, &authed.caller);
    require_owner(caller)?;
    let h = begin(t).await?;
    crate::hierarchy::refuse_wider_sso(&h, req.enforce).await?;
    let break_glass = match req.break_glass.as_deref() {
        Some(e) => {
            let e = identity::normalise_email(e).ok_or_else(|| bad("invalid_email", "break_glass: not an email"))?;
            let role = memberships::role_by_email(&h, &e).await?;
            if role.as_deref() != Some("owner") {
                return Err(bad("break_glass_not_owner", "break_glass: must be an owner of the organisation"));
            }
            Some(e)
        }
        None => None,
    };
    if req.enforce && enabled(&h).await?.is_empty() {
        return Err(ApiError::conflict("sso_no_connection", "enforcing SSO needs an enabled SSO connection"));
    }
    let before = enforcement_of(&h).await?;
    orgs::set_enforcement(&h, &StoredEnforcement { enforce: req.enforce, break_glass: break_glass.clone() }).await?;
    let after = enforcement_of(&h).await?;
    let mut events = vec![ev(caller.actor(), "sso.enforcement.set", "org", Some(before), Some(after.clone()))];
    let mut ended = 0;
    if req.enforce {
        // Sessions that began with a password end now (edges learn with the next bundle),
        // except the break-glass owner's.
        let now = crate::now();
        let ids = sessions::open_password_sessions_except(&h, break_glass.as_deref().unwrap_or_default()).await?;
        for sid in &ids {
            end_session(&h, sid, now).await?;
            events.push(ev(
                caller.actor(),
                "session.revoke",
                format!("session:{sid}"),
                None,
                Some(json!({"why": "sso_enforced"})),
            ));
        }
        ended = ids.len();
    }
    authed.commit_all(&app, h, events).await?;
    crate::hierarchy::links::propagate(&app.store, &t.id).await?;
    if ended > 0 {
        app.changed(&t.id).await?;
    }
    let mut out = after;
    out["password_sessions_ended"] = json!(ended);
    Ok(Json(out))
}
