//! What every handler needs from a request: the tenant (homed here), the caller and
//! its permission, bounded bodies and query parameters, and the request's metadata.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use axum::extract::{ConnectInfo, MatchedPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gatehouse_core::access::Permission;
use gatehouse_core::policy::BUILTIN_ROLES;
use jwt_simple::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::audit::RequestMeta;
use crate::config::secrets::sha;
use crate::error::{bad, ApiError, ApiResult};
use crate::identity::{new_id, valid_slug};
use crate::store::{self, Db};

use crate::api::app::App;
use crate::api::routes::permission_of;

/// The shared state as handlers take it.
pub(crate) type AppState = State<Arc<App>>;
/// The peer address as handlers take it.
pub(crate) type Peer = ConnectInfo<SocketAddr>;

pub(crate) fn meta(headers: &HeaderMap, peer: &SocketAddr) -> RequestMeta {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(256).collect::<String>());
    RequestMeta {
        ip: Some(peer.ip().to_string()),
        user_agent: h("user-agent"),
        request_id: h("x-request-id").filter(|s| !s.is_empty()).unwrap_or_else(|| new_id("r_")),
    }
}

/// Middleware (`axum::middleware::from_fn`): every request under one id, the client's
/// `x-request-id` (as [`meta`] reads it) or a new one set on the request, so that its audit
/// records and its error and panic reports (`request_scope`) name the same id.
pub(crate) async fn with_request_id(mut req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let given = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).filter(|s| !s.is_empty());
    let id = match given {
        Some(id) => id.chars().take(256).collect::<String>(),
        None => {
            let id = new_id("r_");
            if let Ok(v) = HeaderValue::from_str(&id) {
                req.headers_mut().insert("x-request-id", v);
            }
            id
        }
    };
    gatehouse_telemetry::sentry::request_scope(&id, next.run(req)).await
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers.get("accept").and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

// ---------------------------------------------------------------------------------------
// Tenants and residency

pub(crate) struct Tenant {
    pub(crate) id: String,
    pub(crate) slug: String,
    pub(crate) db: Arc<Db>,
}

/// The tenant `slug`, if it is homed here; 421 with the right region's URL otherwise.
pub(crate) async fn tenant(app: &App, slug: &str, path: &str) -> ApiResult<Tenant> {
    if !valid_slug(slug) {
        return Err(ApiError::not_found("tenant_not_found", "no such organisation"));
    }
    let row = store::directory::home_of(&*app.store.directory.lock().await, slug).await?;
    let Some(store::directory::Home { id, home_region: home }) = row else {
        return Err(ApiError::not_found("tenant_not_found", "no such organisation"));
    };
    if home != app.cfg.region {
        let base = app.cfg.regions.get(&home).cloned().unwrap_or_default();
        return Err(ApiError::WrongRegion { region: home, url: format!("{base}{path}") });
    }
    let db = app.store.tenant(&id, false).await?;
    Ok(Tenant { id, slug: slug.to_string(), db })
}

/// A wrong-region answer for a browser is a redirect.
pub(crate) fn residency(e: ApiError, headers: &HeaderMap) -> Response {
    match e {
        ApiError::WrongRegion { url, .. } if wants_html(headers) && !url.is_empty() => {
            let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
            if let Ok(v) = HeaderValue::from_str(&url) {
                r.headers_mut().insert("location", v);
            }
            r
        }
        e => e.into_response(),
    }
}

// ---------------------------------------------------------------------------------------
// Callers and permissions

#[derive(Debug, Clone)]
pub(crate) enum Caller {
    Operator,
    /// A member of the organisation; `act` is who really acts when the token is an
    /// impersonation's (RFC 8693 `act.sub`: `operator` or `user:<id>`).
    ///
    /// `home` is set for an owner or admin of an ancestor organisation administering this
    /// child (part E): `org` is then the child the caller was admitted to, `user` and
    /// `sid` are of `home`, and `roles` only the ancestor's `owner`/`admin`.
    User {
        org: String,
        user: String,
        roles: Vec<String>,
        scopes: Option<Vec<String>>,
        sid: String,
        act: Option<String>,
        home: Option<String>,
    },
}

impl Caller {
    pub(crate) fn actor(&self) -> String {
        match self {
            Caller::Operator => "operator".into(),
            Caller::User { user, home: Some(home), .. } => format!("user:{user}@{home}"),
            Caller::User { user, .. } => format!("user:{user}"),
        }
    }

    /// Who really acts, when the caller's token is an impersonation's.
    pub(crate) fn act(&self) -> Option<&str> {
        match self {
            Caller::Operator => None,
            Caller::User { act, .. } => act.as_deref(),
        }
    }
}

/// RFC 8693 `act`: who acts on behalf of the token's subject.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct Act {
    pub(crate) sub: String,
}

#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct OurClaims {
    pub(crate) org: String,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    #[serde(default)]
    pub(crate) scope: Option<String>,
    #[serde(default)]
    pub(crate) sid: String,
    /// Set on the tokens of an impersonation's session.
    #[serde(default)]
    pub(crate) act: Option<Act>,
}

pub(crate) fn verify_access(app: &App, token: &str, slug: Option<&str>) -> ApiResult<JWTClaims<OurClaims>> {
    let unauthorized = || ApiError::unauthorized("token_invalid", "the access token is not valid");
    let keys = app.keys();
    let mut opts = VerificationOptions {
        allowed_audiences: Some(HashSet::from([app.cfg.tokens.audience.clone()])),
        ..Default::default()
    };
    if let Some(s) = slug {
        opts.allowed_issuers = Some(HashSet::from([app.cfg.issuer(s)]));
    }
    opts.max_token_length = Some(8192);
    keys.verify::<OurClaims>(token, opts).map_err(|_| unauthorized())
}

pub(crate) async fn caller(app: &App, headers: &HeaderMap, slug: &str) -> ApiResult<Caller> {
    let token =
        bearer(headers).ok_or_else(|| ApiError::unauthorized("credential_missing", "a bearer token is required"))?;
    if bool::from(sha(token).ct_eq(&app.secrets.operator_hash)) {
        return Ok(Caller::Operator);
    }
    // A token of another tenant does not verify here (its issuer differs), except an
    // ancestor organisation's owner's or admin's (checked in `hierarchy::access`).
    if verify_access(app, token, Some(slug)).is_err() {
        if let Some(c) = ancestor_admin(app, token, slug).await? {
            return Ok(c);
        }
    }
    let c = verify_access(app, token, Some(slug)).map_err(|e| match e {
        ApiError::Unauthorized { .. } => {
            ApiError::forbidden("wrong_tenant", "credential is not valid for this organisation")
        }
        e => e,
    })?;
    let user = c.subject.clone().unwrap_or_default();
    Ok(Caller::User {
        org: c.custom.org.clone(),
        user,
        roles: c.custom.roles.clone(),
        scopes: c.custom.scope.as_ref().map(|s| s.split_whitespace().map(String::from).collect()),
        sid: c.custom.sid.clone(),
        act: c.custom.act.as_ref().map(|a| a.sub.clone()),
        home: None,
    })
}

/// The caller an ancestor organisation's token makes on child `slug`: its live `owner`
/// or `admin` roles there (none: not admitted), its session live in the ancestor.
async fn ancestor_admin(app: &App, token: &str, slug: &str) -> ApiResult<Option<Caller>> {
    let Ok(c) = verify_access(app, token, None) else { return Ok(None) };
    let home = c.custom.org.clone();
    if c.issuer.as_deref() != Some(app.cfg.issuer(&home).as_str()) {
        return Ok(None);
    }
    let user = c.subject.clone().unwrap_or_default();
    let who = crate::hierarchy::access::Admin { ancestor: &home, child: slug, user: &user, sid: &c.custom.sid };
    let Some(roles) = crate::hierarchy::access::admin_roles(&app.store, &app.cfg.region, &who, crate::now()).await?
    else {
        return Ok(None);
    };
    Ok(Some(Caller::User {
        org: slug.to_string(),
        user,
        roles,
        scopes: c.custom.scope.as_ref().map(|s| s.split_whitespace().map(String::from).collect()),
        sid: c.custom.sid.clone(),
        act: c.custom.act.as_ref().map(|a| a.sub.clone()),
        home: Some(home),
    }))
}

/// What an impersonation may not do: change the person's credentials (password, second
/// factors, step-up) or take their data out. 403 `impersonation_forbidden`.
pub(crate) fn refuse_impersonation() -> ApiError {
    ApiError::forbidden("impersonation_forbidden", "an impersonation cannot do this on the person's behalf")
}

/// Authorise `caller` for `need` in tenant `t` (checks revocation of the session too).
pub(crate) async fn authorise(c: &Caller, t: &Tenant, need: &str) -> ApiResult<()> {
    let Caller::User { org, roles, scopes, sid, user, home, .. } = c else { return Ok(()) };
    if org != &t.slug {
        return Err(ApiError::forbidden("wrong_tenant", "credential is not valid for this organisation"));
    }
    let h = t.db.lock().await;
    let now = crate::now();
    // An ancestor's admin: its session was checked in the ancestor (`ancestor_admin`).
    if home.is_none() && !store::sessions::is_live(&h, sid, user, now).await? {
        return Err(ApiError::unauthorized("session_revoked", "the session has ended"));
    }
    // A suspended organisation's members are refused here too (the operator is not).
    refuse_if_suspended(&h).await?;
    let need_p = Permission::parse(need).ok_or_else(|| anyhow!("bad permission {need}"))?;
    let mut granted: Vec<String> = Vec::new();
    for r in roles {
        if let Some((_, perms)) = BUILTIN_ROLES.iter().find(|(b, _)| b == r) {
            granted.extend(perms.iter().map(|p| p.to_string()));
        } else if let Some(p) = store::roles::permissions(&h, r).await? {
            granted.extend(serde_json::from_str::<Vec<String>>(&p).unwrap_or_default());
        }
    }
    let covers = |list: &[String]| list.iter().filter_map(|g| Permission::parse(g)).any(|g| g.covers(&need_p));
    let ok = covers(&granted) && scopes.as_ref().is_none_or(|s| covers(s));
    if !ok {
        return Err(ApiError::forbidden("permission_denied", format!("needs `{need}`")));
    }
    Ok(())
}

/// A tenant admin request, resolved and authorised before any body is read: the tenant
/// (homed here; 421 or a redirect otherwise) and a caller holding the permission that
/// [`ROUTES`] names for the matched route.
pub struct Authed {
    pub(crate) t: Tenant,
    pub(crate) caller: Caller,
    /// Where the request came from, for the audit records it writes.
    pub(crate) meta: RequestMeta,
}

impl axum::extract::FromRequestParts<Arc<App>> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, app: &Arc<App>) -> Result<Self, Response> {
        let run = async {
            let matched = parts.extensions.get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_default();
            let need = permission_of(parts.method.as_str(), &matched)
                .filter(|n| n.contains(':'))
                .ok_or_else(|| anyhow!("route {} {matched} has no tenant permission in ROUTES", parts.method))?;
            let slug = parts.uri.path().strip_prefix("/v1/orgs/").and_then(|r| r.split('/').next()).unwrap_or_default();
            let t = tenant(app, slug, parts.uri.path()).await?;
            let caller = caller(app, &parts.headers, slug).await?;
            authorise(&caller, &t, need).await?;
            let peer = parts.extensions.get::<Peer>().ok_or_else(|| anyhow!("no peer address on the request"))?;
            ApiResult::Ok(Authed { t, caller, meta: meta(&parts.headers, &peer.0) })
        };
        run.await.map_err(|e| residency(e, &parts.headers))
    }
}

/// A JSON body; a malformed one is a 400 `invalid_body` (413 `body_too_large` over the
/// limit) with a JSON error like every other refusal.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge),
            Err(e) => Err(bad("invalid_body", e.body_text())),
        }
    }
}

/// A raw body, bounded like the others.
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => Ok(RawBody(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge),
            Err(e) => Err(bad("invalid_body", e.body_text())),
        }
    }
}

/// Query parameters; unknown or malformed ones are a 400 `invalid_query`.
pub struct QueryParams<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryParams(v))
            .map_err(|e| bad("invalid_query", e.body_text()))
    }
}

pub(crate) fn require_operator(app: &App, headers: &HeaderMap) -> ApiResult<()> {
    let token =
        bearer(headers).ok_or_else(|| ApiError::unauthorized("credential_missing", "a bearer token is required"))?;
    if bool::from(sha(token).ct_eq(&app.secrets.operator_hash)) {
        Ok(())
    } else {
        Err(ApiError::forbidden("operator_only", "only the platform operator may do this"))
    }
}

pub(crate) fn edge_name(app: &App, headers: &HeaderMap) -> ApiResult<String> {
    let token =
        bearer(headers).ok_or_else(|| ApiError::unauthorized("credential_missing", "an edge token is required"))?;
    let h = sha(token);
    // Compare against every entry (no early exit).
    let mut found = None;
    for (name, want) in &app.secrets.edge_tokens {
        if bool::from(h.ct_eq(want)) {
            found = Some(name.clone());
        }
    }
    found.ok_or_else(|| ApiError::unauthorized("edge_token_invalid", "unknown edge token"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Page {
    #[serde(default)]
    pub(crate) after: Option<String>,
    #[serde(default)]
    pub(crate) limit: Option<u32>,
    #[serde(default)]
    pub(crate) email: Option<String>,
    /// Teams: only the children of this team.
    #[serde(default)]
    pub(crate) parent: Option<String>,
}

pub(crate) fn page_limit(p: &Page) -> i64 {
    p.limit.unwrap_or(50).clamp(1, 500) as i64
}

/// The cursor of the page after `items`: the last item's `key` field when the page is
/// full, else none.
pub(crate) fn next_cursor(items: &[Value], p: &Page, key: &str) -> Option<Value> {
    if items.len() as i64 == page_limit(p) {
        items.last().map(|i| i[key].clone())
    } else {
        None
    }
}

/// The cursor a page starts after (`""`: the first page).
pub(crate) fn cursor(p: &Page) -> &str {
    p.after.as_deref().unwrap_or_default()
}

/// The refusal of every sign-in, refresh and member request while the organisation is
/// suspended.
pub(crate) fn suspended() -> ApiError {
    ApiError::forbidden("tenant_suspended", "this organisation is suspended")
}

/// Refuse with `tenant_suspended` when the organisation is suspended.
pub(crate) async fn refuse_if_suspended(h: &libsql::Connection) -> ApiResult<()> {
    match store::orgs::suspended_at(h).await? {
        Some(_) => Err(suspended()),
        None => Ok(()),
    }
}

/// Whether the request's body is a form (`application/x-www-form-urlencoded`).
pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
}

pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> ApiResult<T> {
    if is_form(headers) {
        serde_urlencoded_from(body)
    } else {
        serde_json::from_slice(body).map_err(|e| bad("invalid_body", format!("invalid JSON body: {e}")))
    }
}

pub(crate) fn serde_urlencoded_from<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_urlencoded::from_bytes::<T>(body).map_err(|e| bad("invalid_body", format!("invalid form body: {e}")))
}
