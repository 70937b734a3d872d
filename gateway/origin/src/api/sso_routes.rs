//! SSO routes: the administrators' connection API and enforcement setting, and the
//! browser's sign-in through a connection (start, callback, home-realm discovery).
//!
//! A sign-in is a transaction: `start` stores `state` (hashed), the `nonce` and the PKCE
//! verifier with a short lifetime and sets the `state` in a cookie scoped to the tenant's
//! SSO path; `callback` needs that cookie, consumes the transaction (single use) and only
//! then talks to the provider. Every outcome is audited; a failure is a page with its
//! reason code (also in `x-gatehouse-reason`).

use super::*;
use crate::sso::oidc::{Profile, SsoError, Started};
use crate::sso::{saml, Connection, ConnectionInput, Protocol};

/// The cookie binding a sign-in transaction to the browser that started it.
const TX_COOKIE: &str = "gh_sso";
/// Largest query value read on the callback.
const MAX_PARAM: usize = 4096;

/// Whether password sign-in is refused for `email` (normalised): the organisation
/// enforces SSO and `email` is not its break-glass owner.
pub(super) async fn sso_enforced_for(h: &libsql::Connection, email: &str) -> ApiResult<bool> {
    let (enforce, break_glass) = enforcement(h).await?;
    if !enforce {
        return Ok(false);
    }
    if break_glass.as_deref() != Some(email) {
        return Ok(true);
    }
    // The break-glass exemption holds only while that user is still an owner.
    let role: Option<String> =
        one(h, "SELECT m.role FROM users u JOIN memberships m ON m.user_id = u.id WHERE u.email = ?1", [email]).await?;
    Ok(role.as_deref() != Some("owner"))
}

/// Whether the organisation enforces SSO, and its break-glass email.
async fn enforcement(h: &libsql::Connection) -> ApiResult<(bool, Option<String>)> {
    let mut rows = h.query("SELECT enforce_sso, break_glass FROM org WHERE id = 1", ()).await?;
    let r = rows.next().await?.ok_or_else(|| anyhow!("org row missing"))?;
    Ok((r.get::<i64>(0)? != 0, r.get(1)?))
}

/// `(id, name)` of the enabled connections, by name.
async fn enabled(h: &libsql::Connection) -> ApiResult<Vec<(String, String)>> {
    let mut rows = h.query("SELECT id, name FROM sso_connections WHERE enabled = 1 ORDER BY name, id", ()).await?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().await? {
        out.push((r.get::<String>(0)?, r.get::<String>(1)?));
    }
    Ok(out)
}

/// The enabled connections, for the sign-in page.
pub(super) async fn buttons(t: &Tenant) -> ApiResult<Vec<(String, String)>> {
    enabled(&*t.db.lock().await).await
}

/// Refuse taking connection `id` out of use when it is the last enabled one of an
/// organisation that enforces SSO (nobody but the break-glass owner could sign in).
async fn keep_one_enabled(h: &libsql::Connection, id: &str, what: &str) -> ApiResult<()> {
    if enforcement(h).await?.0 && enabled(h).await?.iter().all(|(other, _)| other == id) {
        return Err(ApiError::Conflict(
            "sso_enforced",
            format!("the organisation enforces SSO: turn enforcement off before {what} its last connection"),
        ));
    }
    Ok(())
}

/// A stored connection and its sealed secret.
async fn load(h: &libsql::Connection, id: &str) -> ApiResult<Option<(Connection, Option<Vec<u8>>)>> {
    let mut rows = h.query("SELECT config, secret FROM sso_connections WHERE id = ?1", [id]).await?;
    let Some(r) = rows.next().await? else { return Ok(None) };
    let c: Connection = serde_json::from_str(&r.get::<String>(0)?)?;
    let secret: Option<Vec<u8>> = r.get(1)?;
    Ok(Some((c, secret)))
}

fn redirect_uri(app: &App, slug: &str, id: &str) -> String {
    format!("{}/t/{slug}/sso/{id}/callback", app.cfg.public_url)
}

/// A SAML connection's SP entity id, which is also where its SP metadata is served.
fn sp_entity_id(app: &App, slug: &str, id: &str) -> String {
    format!("{}/t/{slug}/sso/{id}/saml/metadata", app.cfg.public_url)
}

fn acs_url(app: &App, slug: &str, id: &str) -> String {
    format!("{}/t/{slug}/sso/{id}/saml/acs", app.cfg.public_url)
}

/// A connection as the API shows it: never the secret, and the redirect URI to register
/// at the provider.
fn view(app: &App, slug: &str, c: &Connection, has_secret: bool) -> Value {
    let mut v = json!(c);
    if c.protocol == Protocol::Saml {
        // What the IdP needs to know about this service provider.
        v["sp_entity_id"] = json!(sp_entity_id(app, slug, &c.id));
        v["acs_url"] = json!(acs_url(app, slug, &c.id));
        v["sp_metadata_url"] = json!(sp_entity_id(app, slug, &c.id));
    } else {
        v["has_client_secret"] = json!(has_secret);
        v["redirect_uri"] = json!(redirect_uri(app, slug, &c.id));
    }
    v
}

pub(super) async fn list(
    State(app): AppState,
    authed: Authed,
    QueryParams(p): QueryParams<Page>,
) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    let h = t.db.lock().await;
    let sql = "SELECT config, secret IS NOT NULL FROM sso_connections WHERE id > ?1 ORDER BY id LIMIT ?2";
    let (items, next) = page_of(&h, sql, &p, "id", |r| {
        let c: Connection = serde_json::from_str(&r.get::<String>(0)?)?;
        Ok(view(&app, &t.slug, &c, r.get::<i64>(1)? != 0))
    })
    .await?;
    Ok(Json(json!({ "items": items, "next": next })))
}

pub(super) async fn get_one(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    let (c, secret) = load(&*t.db.lock().await, &id).await?.ok_or_else(not_found)?;
    Ok(Json(view(&app, &t.slug, &c, secret.is_some())))
}

fn not_found() -> ApiError {
    ApiError::NotFound("sso_connection_not_found", "no such SSO connection".into())
}

/// Who signs in through SSO is an owner's decision: a connection (or enforcement) lets
/// its provider vouch for the organisation's members, so only owners (and the platform
/// operator) write them — not every holder of `settings:write` (editors hold `*:write`).
fn require_owner(c: &Caller) -> ApiResult<()> {
    match c {
        Caller::Operator => Ok(()),
        Caller::User { roles, .. } if roles.iter().any(|r| r == "owner") => Ok(()),
        _ => Err(ApiError::Forbidden("owner_required", "only an owner may change single sign-on".into())),
    }
}

/// Validate `input` as connection `id` (its default role must exist and be one the caller
/// may grant; SAML needs an https origin).
async fn checked(
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
        return Err(ApiError::Forbidden("role_too_high", "default_role: you cannot grant this role".into()));
    }
    if c.protocol == Protocol::Saml && !app.cfg.public_url.starts_with("https://") && !app.cfg.sso.allow_http_loopback {
        // The ACS binds the response to the browser with a SameSite=None cookie, which
        // browsers only keep over TLS.
        return Err(bad("invalid_connection", "protocol saml: the origin's public_url must be https"));
    }
    Ok(c)
}

pub(super) async fn create(
    State(app): AppState,
    authed: Authed,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(input): JsonBody<ConnectionInput>,
) -> ApiResult<Response> {
    let Authed { t, caller } = authed;
    require_owner(&caller)?;
    let input = fetch_metadata(&app, input).await?;
    let secret = input.client_secret.clone();
    let h = begin(&t).await?;
    let count: Option<i64> = one(&h, "SELECT COUNT(*) FROM sso_connections", ()).await?;
    if count.unwrap_or(0) >= 50 {
        return Err(ApiError::Conflict("sso_connection_limit", "at most 50 SSO connections per organisation".into()));
    }
    let mut c = checked(&app, &h, &caller, new_id("c_"), input).await?;
    let sealed = match sp_key(&mut c, None)? {
        Some(pem) => Some(app.sso_box.seal(&t.id, &c.id, &pem)),
        None => secret.as_deref().map(|s| app.sso_box.seal(&t.id, &c.id, s)),
    };
    let now = crate::now();
    h.execute(
        "INSERT INTO sso_connections (id, name, protocol, config, secret, enabled, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        libsql::params![
            c.id.as_str(),
            c.name.as_str(),
            c.protocol.as_str(),
            serde_json::to_string(&c)?,
            sealed,
            c.enabled as i64,
            now
        ],
    )
    .await?;
    let shown = view(&app, &t.slug, &c, secret.is_some());
    let events = vec![ev(caller.actor(), "sso.connection.create", format!("sso:{}", c.id), None, Some(shown.clone()))];
    commit(&app, &t, h, &meta(&headers, &peer), events).await?;
    Ok((StatusCode::CREATED, Json(shown)).into_response())
}

pub(super) async fn replace(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(input): JsonBody<ConnectionInput>,
) -> ApiResult<Json<Value>> {
    let Authed { t, caller } = authed;
    require_owner(&caller)?;
    let input = fetch_metadata(&app, input).await?;
    let secret = input.client_secret.clone();
    let h = begin(&t).await?;
    let (before, old_secret) = load(&h, &id).await?.ok_or_else(not_found)?;
    let mut c = checked(&app, &h, &caller, id.clone(), input).await?;
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
        h.execute("DELETE FROM sso_identities WHERE connection_id = ?1", [id.as_str()]).await?;
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
    h.execute(
        "UPDATE sso_connections SET name = ?2, protocol = ?3, config = ?4, secret = ?5, enabled = ?6, updated_at = ?7
         WHERE id = ?1",
        libsql::params![
            c.id.as_str(),
            c.name.as_str(),
            c.protocol.as_str(),
            serde_json::to_string(&c)?,
            sealed.clone(),
            c.enabled as i64,
            crate::now()
        ],
    )
    .await?;
    let shown = view(&app, &t.slug, &c, sealed.is_some());
    let mut after = shown.clone();
    after["client_secret_replaced"] = json!(secret.is_some());
    let events =
        vec![ev(caller.actor(), "sso.connection.update", format!("sso:{id}"), Some(json!(before)), Some(after))];
    commit(&app, &t, h, &meta(&headers, &peer), events).await?;
    app.rp.forget(&t.id, &id);
    Ok(Json(shown))
}

pub(super) async fn remove(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let Authed { t, caller } = authed;
    require_owner(&caller)?;
    let h = begin(&t).await?;
    let (before, _) = load(&h, &id).await?.ok_or_else(not_found)?;
    keep_one_enabled(&h, &id, "deleting").await?;
    h.execute("DELETE FROM sso_connections WHERE id = ?1", [id.as_str()]).await?;
    h.execute("DELETE FROM sso_identities WHERE connection_id = ?1", [id.as_str()]).await?;
    h.execute("DELETE FROM sso_transactions WHERE connection_id = ?1", [id.as_str()]).await?;
    let events = vec![ev(caller.actor(), "sso.connection.delete", format!("sso:{id}"), Some(json!(before)), None)];
    commit(&app, &t, h, &meta(&headers, &peer), events).await?;
    app.rp.forget(&t.id, &id);
    Ok(StatusCode::NO_CONTENT)
}

/// SAML with `idp_metadata_url`: fetch the metadata once, now (https, bounded, timed).
async fn fetch_metadata(app: &App, mut input: ConnectionInput) -> ApiResult<ConnectionInput> {
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
fn sp_key(c: &mut Connection, existing: Option<String>) -> ApiResult<Option<String>> {
    let Some(saml) = c.saml.as_mut().filter(|s| s.sign_requests) else { return Ok(None) };
    if let Some(cert) = existing {
        saml.sp_certificate = Some(cert);
        return Ok(None);
    }
    let (pem, cert) = crate::sso::saml::new_sp_keypair(&format!("gatehouse {}", c.id)).map_err(|e| anyhow!(e))?;
    saml.sp_certificate = Some(cert);
    Ok(Some(pem))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Enforcement {
    enforce: bool,
    /// Email of an owner who may still sign in with a password.
    #[serde(default)]
    break_glass: Option<String>,
}

async fn enforcement_of(h: &libsql::Connection) -> ApiResult<Value> {
    let (enforce, break_glass) = enforcement(h).await?;
    Ok(json!({ "enforce": enforce, "break_glass": break_glass }))
}

pub(super) async fn get_enforcement(authed: Authed) -> ApiResult<Json<Value>> {
    Ok(Json(enforcement_of(&*authed.t.db.lock().await).await?))
}

pub(super) async fn put_enforcement(
    State(app): AppState,
    authed: Authed,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<Enforcement>,
) -> ApiResult<Json<Value>> {
    let Authed { t, caller } = authed;
    require_owner(&caller)?;
    let h = begin(&t).await?;
    let break_glass = match req.break_glass.as_deref() {
        Some(e) => {
            let e = identity::normalise_email(e).ok_or_else(|| bad("invalid_email", "break_glass: not an email"))?;
            let role: Option<String> = one(
                &h,
                "SELECT m.role FROM users u JOIN memberships m ON m.user_id = u.id WHERE u.email = ?1",
                [e.as_str()],
            )
            .await?;
            if role.as_deref() != Some("owner") {
                return Err(bad("break_glass_not_owner", "break_glass: must be an owner of the organisation"));
            }
            Some(e)
        }
        None => None,
    };
    if req.enforce && enabled(&h).await?.is_empty() {
        return Err(ApiError::Conflict("sso_no_connection", "enforcing SSO needs an enabled SSO connection".into()));
    }
    let before = enforcement_of(&h).await?;
    h.execute(
        "UPDATE org SET enforce_sso = ?1, break_glass = ?2 WHERE id = 1",
        libsql::params![req.enforce as i64, break_glass.clone()],
    )
    .await?;
    let after = enforcement_of(&h).await?;
    let mut events = vec![ev(caller.actor(), "sso.enforcement.set", "org", Some(before), Some(after.clone()))];
    let mut ended = 0;
    if req.enforce {
        // Sessions that began with a password end now (edges learn with the next bundle),
        // except the break-glass owner's.
        let now = crate::now();
        let mut rows = h
            .query(
                "SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.revoked_at IS NULL AND s.idp IS NULL AND u.email != ?1",
                [break_glass.clone().unwrap_or_default()],
            )
            .await?;
        let mut ids = Vec::new();
        while let Some(r) = rows.next().await? {
            ids.push(r.get::<String>(0)?);
        }
        drop(rows);
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
    commit(&app, &t, h, &meta(&headers, &peer), events).await?;
    if ended > 0 {
        app.changed();
    }
    let mut out = after;
    out["password_sessions_ended"] = json!(ended);
    Ok(Json(out))
}

// ---------------------------------------------------------------------------------------
// Browser sign-in

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StartQuery {
    #[serde(default)]
    return_to: Option<String>,
}

/// A refused SSO step: its status and reason code, audited and shown.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    detail: String,
}

fn refusal(status: StatusCode, reason: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal { status, reason, detail: detail.into() }
}

impl From<SsoError> for Refusal {
    fn from(e: SsoError) -> Refusal {
        let status = match &e {
            SsoError::Discovery(_) | SsoError::Config(_) | SsoError::Userinfo(_) => StatusCode::BAD_GATEWAY,
            SsoError::HostedDomain | SsoError::EntraTenant => StatusCode::FORBIDDEN,
            // A response that is not well-formed, or not an answer to a request of ours.
            SsoError::Saml(
                "sso_saml_malformed"
                | "sso_saml_dtd_refused"
                | "sso_saml_comment_refused"
                | "sso_saml_wrapping_refused"
                | "sso_saml_unsolicited"
                | "sso_saml_in_response_to",
                _,
            ) => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        };
        Refusal { status, reason: e.reason(), detail: e.to_string() }
    }
}

impl From<anyhow::Error> for Refusal {
    fn from(e: anyhow::Error) -> Refusal {
        ApiError::Internal(e).into()
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Refusal {
        tracing::error!(error = %e, "sso sign-in failed on the origin side");
        Refusal { status: StatusCode::SERVICE_UNAVAILABLE, reason: "internal_error", detail: String::new() }
    }
}

/// Audit a refused step and answer with a page naming the reason.
async fn refuse(app: &App, t: &Tenant, m: &RequestMeta, connection: &str, r: Refusal) -> Response {
    tracing::info!(tenant = %t.slug, connection, reason = r.reason, detail = %r.detail, "sso sign-in refused");
    let after = json!({ "reason": r.reason, "connection": connection, "detail": r.detail });
    let audited = match begin(t).await {
        Ok(h) => {
            commit(app, t, h, m, vec![ev("anonymous", "sso.failure", format!("sso:{connection}"), None, Some(after))])
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = audited {
        tracing::error!(error = %e, "could not audit an SSO failure");
    }
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in failed</title></head><body><h1>Sign-in failed</h1><p>Reason: <code>{}</code></p><p><a href=\"/t/{}/login\">Back to sign-in</a></p></body></html>\n",
        r.reason,
        esc(&t.slug)
    );
    // The transaction cookie stays: a forged callback must not cancel the real sign-in
    // in progress (a consumed transaction's cookie is useless anyway).
    let mut resp = html(r.status, body, &[]);
    resp.headers_mut().insert("x-gatehouse-reason", HeaderValue::from_static(r.reason));
    resp
}

pub(super) async fn start(
    State(app): AppState,
    Path((slug, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    QueryParams(q): QueryParams<StartQuery>,
) -> Response {
    let t = match tenant(&app, &slug, &format!("/t/{slug}/sso/{id}/start")).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let m = meta(&headers, &peer);
    let loaded = match load(&*t.db.lock().await, &id).await {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let Some((c, sealed)) = loaded.filter(|(c, _)| c.enabled) else {
        return refuse(&app, &t, &m, &id, refusal(StatusCode::NOT_FOUND, "sso_connection_not_found", "")).await;
    };
    let return_to = q.return_to.unwrap_or_default();
    if return_to.len() > 2048 {
        return refuse(&app, &t, &m, &id, refusal(StatusCode::BAD_REQUEST, "request_malformed", "return_to too long"))
            .await;
    }
    let started = match c.protocol {
        Protocol::Saml => {
            let state = tokens::opaque("");
            let key = sealed.as_deref().and_then(|s| app.sso_box.open(&t.id, &c.id, s));
            let (entity, acs) = (sp_entity_id(&app, &t.slug, &c.id), acs_url(&app, &t.slug, &c.id));
            // The request ID stands in the nonce's place: InResponseTo must equal it.
            saml::start(&c, &entity, &acs, &state, key.as_deref()).map(|s| Started {
                url: s.url,
                state,
                nonce: s.request_id,
                verifier: String::new(),
            })
        }
        _ => app.rp.start(&t.id, &c, &redirect_uri(&app, &t.slug, &c.id)).await,
    };
    let started = match started {
        Ok(s) => s,
        Err(e) => return refuse(&app, &t, &m, &id, e.into()).await,
    };
    let now = crate::now();
    let ttl = app.cfg.sso.transaction_ttl_secs as i64;
    let stored = async {
        let h = t.db.lock().await;
        h.execute("DELETE FROM sso_transactions WHERE expires_at <= ?1", [now]).await?;
        h.execute(
            "INSERT INTO sso_transactions (id, connection_id, nonce, verifier, return_to, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            libsql::params![
                tokens::secret_hash(&started.state),
                c.id.as_str(),
                started.nonce.as_str(),
                started.verifier.as_str(),
                return_to.as_str(),
                now + ttl
            ],
        )
        .await?;
        ApiResult::Ok(())
    };
    if let Err(e) = stored.await {
        return e.into_response();
    }
    let mut r = StatusCode::FOUND.into_response();
    // SAML comes back as a cross-site POST, which only carries a `SameSite=None` cookie
    // (and browsers take those only over TLS).
    let same_site =
        if c.protocol == Protocol::Saml && app.cfg.public_url.starts_with("https://") { "None" } else { "Lax" };
    let cookie = format!(
        "{TX_COOKIE}={}; Path=/t/{}/sso; Max-Age={ttl}; HttpOnly; SameSite={same_site}{}",
        started.state,
        t.slug,
        app.secure_cookie()
    );
    match (HeaderValue::from_str(&started.url), HeaderValue::from_str(&cookie)) {
        (Ok(loc), Ok(set)) => {
            r.headers_mut().insert("location", loc);
            r.headers_mut().insert("set-cookie", set);
            r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
            r
        }
        _ => ApiError::Internal(anyhow!("unrepresentable redirect")).into_response(),
    }
}

pub(super) async fn callback(
    State(app): AppState,
    Path((slug, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    QueryParams(q): QueryParams<std::collections::HashMap<String, String>>,
) -> Response {
    let t = match tenant(&app, &slug, &format!("/t/{slug}/sso/{id}/callback")).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let m = meta(&headers, &peer);
    match finish(&app, &t, &m, &id, &headers, &q).await {
        Ok(r) => r,
        Err(r) => refuse(&app, &t, &m, &id, r).await,
    }
}

/// Everything of a callback after the tenant is known; a refusal is audited by the
/// caller.
async fn finish(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    id: &str,
    headers: &HeaderMap,
    q: &std::collections::HashMap<String, String>,
) -> Result<Response, Refusal> {
    let param = |k: &str| q.get(k).filter(|v| !v.is_empty() && v.len() <= MAX_PARAM).map(String::as_str);
    let bad_state = |d: &str| refusal(StatusCode::BAD_REQUEST, "sso_state_invalid", d);
    let state = param("state").ok_or_else(|| bad_state("no state"))?;
    // The browser that comes back must be the one that started (login CSRF).
    let bound = cookie(headers, TX_COOKIE)
        .is_some_and(|c| c.len() == state.len() && bool::from(c.as_bytes().ct_eq(state.as_bytes())));
    if !bound {
        return Err(refusal(StatusCode::BAD_REQUEST, "sso_state_mismatch", "state does not match this browser"));
    }
    // Single use: the transaction is deleted as it is read.
    let now = crate::now();
    let tx = {
        let h = t.db.lock().await;
        let mut rows = h
            .query(
                "DELETE FROM sso_transactions WHERE id = ?1
                 RETURNING connection_id, nonce, verifier, return_to, expires_at",
                [tokens::secret_hash(state)],
            )
            .await
            .map_err(ApiError::from)?;
        match rows.next().await.map_err(ApiError::from)? {
            Some(r) => Some((
                r.get::<String>(0).map_err(ApiError::from)?,
                r.get::<String>(1).map_err(ApiError::from)?,
                r.get::<String>(2).map_err(ApiError::from)?,
                r.get::<String>(3).map_err(ApiError::from)?,
                r.get::<i64>(4).map_err(ApiError::from)?,
            )),
            None => None,
        }
    };
    let (conn_id, nonce, verifier, return_to, expires_at) =
        tx.ok_or_else(|| bad_state("unknown or already used state"))?;
    if conn_id != id {
        return Err(bad_state("state of another connection"));
    }
    if expires_at <= now {
        return Err(refusal(StatusCode::BAD_REQUEST, "sso_state_expired", "the sign-in took too long"));
    }
    if let Some(err) = param("error") {
        let detail: String = format!("{err}: {}", param("error_description").unwrap_or("")).chars().take(300).collect();
        return Err(refusal(StatusCode::UNAUTHORIZED, "sso_idp_error", detail));
    }
    let code = param("code").ok_or_else(|| refusal(StatusCode::BAD_REQUEST, "sso_code_missing", ""))?;
    let (c, sealed) = load(&*t.db.lock().await, id)
        .await?
        .filter(|(c, _)| c.enabled)
        .ok_or_else(|| refusal(StatusCode::NOT_FOUND, "sso_connection_not_found", ""))?;
    let secret = match &sealed {
        Some(s) => Some(app.sso_box.open(&t.id, &c.id, s).ok_or_else(|| {
            refusal(StatusCode::BAD_GATEWAY, "sso_connection_misconfigured", "the client secret does not unseal")
        })?),
        None => None,
    };
    let redirect = redirect_uri(app, &t.slug, &c.id);
    let profile = app.rp.finish(&t.id, &c, secret.as_deref(), &redirect, code, &nonce, &verifier, now).await?;
    complete(app, t, m, &c, &profile, &return_to).await
}

/// After the provider: the user (linked, or provisioned), the session, the tokens, the
/// audit records, and the signed-in answer.
async fn complete(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    c: &Connection,
    profile: &Profile,
    return_to: &str,
) -> Result<Response, Refusal> {
    let now = crate::now();
    let c = c.clone();
    let email = check_email(&c, profile)?;
    let h = begin(t).await?;
    let (user, mut events) = resolve_user(app, &h, &c, profile, &email, now).await?;
    let disabled: Option<i64> = one(&h, "SELECT disabled FROM users WHERE id = ?1", [user.as_str()]).await?;
    if disabled != Some(0) {
        drop(h);
        return Err(refusal(StatusCode::FORBIDDEN, "sso_user_disabled", format!("user:{user}")));
    }
    let amr = session_amr(&profile.amr);
    events.push(ev(
        format!("user:{user}"),
        "sso.success",
        format!("sso:{}", c.id),
        None,
        Some(json!({ "subject": profile.subject, "issuer": profile.issuer, "email": email, "amr": amr })),
    ));
    let (sid, family) = open_session(app, &h, &user, &amr, Some(&c.id), now, &mut events).await?;
    let session = Session { held: h, user, sid, family, amr, events };
    let tokens = issue(app, t, m, session, None).await?;
    let clear = format!("{TX_COOKIE}=; Path=/t/{}/sso; Max-Age=0; HttpOnly; SameSite=Lax", t.slug);
    Ok(signed_in(app, t, &tokens, return_to, clear).await)
}

/// SP metadata of a SAML connection (its entity id is this URL).
pub(super) async fn saml_metadata(
    State(app): AppState,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let t = match tenant(&app, &slug, &format!("/t/{slug}/sso/{id}/saml/metadata")).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let loaded = match load(&*t.db.lock().await, &id).await {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let Some((c, _)) = loaded.filter(|(c, _)| c.protocol == Protocol::Saml) else {
        return not_found().into_response();
    };
    match saml::sp_metadata(&c, &sp_entity_id(&app, &t.slug, &id), &acs_url(&app, &t.slug, &id)) {
        Ok(xml) => ([("content-type", "application/samlmetadata+xml")], xml).into_response(),
        Err(e) => ApiError::Internal(anyhow!("{e}")).into_response(),
    }
}

/// The Assertion Consumer Service (HTTP-POST binding).
pub(super) async fn saml_acs(
    State(app): AppState,
    Path((slug, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let t = match tenant(&app, &slug, &format!("/t/{slug}/sso/{id}/saml/acs")).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let m = meta(&headers, &peer);
    match saml_finish(&app, &t, &m, &id, &headers, &body).await {
        Ok(r) => r,
        Err(r) => refuse(&app, &t, &m, &id, r).await,
    }
}

async fn saml_finish(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Refusal> {
    let malformed = |d: &str| refusal(StatusCode::BAD_REQUEST, "sso_saml_malformed", d);
    let form: std::collections::HashMap<String, String> =
        serde_urlencoded::from_bytes(body).map_err(|_| malformed("not a form"))?;
    let response = form.get("SAMLResponse").ok_or_else(|| malformed("no SAMLResponse"))?;
    let relay = form.get("RelayState").filter(|r| !r.is_empty() && r.len() <= 256);
    let xml = saml::decode_response(response).map_err(Refusal::from)?;
    let (c, _) = load(&*t.db.lock().await, id)
        .await?
        .filter(|(c, _)| c.enabled && c.protocol == Protocol::Saml)
        .ok_or_else(|| refusal(StatusCode::NOT_FOUND, "sso_connection_not_found", ""))?;
    let (entity, acs) = (sp_entity_id(app, &t.slug, id), acs_url(app, &t.slug, id));
    let now = crate::now();
    let tx = match relay {
        Some(r) => {
            let h = t.db.lock().await;
            let mut rows = h
                .query(
                    "SELECT connection_id, nonce, return_to, expires_at FROM sso_transactions WHERE id = ?1",
                    [tokens::secret_hash(r)],
                )
                .await
                .map_err(ApiError::from)?;
            match rows.next().await.map_err(ApiError::from)? {
                Some(row) => Some((
                    row.get::<String>(0).map_err(ApiError::from)?,
                    row.get::<String>(1).map_err(ApiError::from)?,
                    row.get::<String>(2).map_err(ApiError::from)?,
                    row.get::<i64>(3).map_err(ApiError::from)?,
                )),
                None => None,
            }
        }
        None => None,
    };
    let Some((conn_id, request_id, return_to, expires_at)) = tx else {
        // No live transaction: a replay of a consumed response, or an unsolicited one
        // (IdP-initiated sign-in is off). The unverified ID only picks the reason.
        if let Some(aid) = saml::unverified_assertion_id(&xml) {
            let seen: Option<i64> =
                one(&*t.db.lock().await, "SELECT 1 FROM saml_assertions WHERE id = ?1", [aid]).await?;
            if seen.is_some() {
                return Err(refusal(StatusCode::BAD_REQUEST, "sso_saml_replayed", "assertion already used"));
            }
        }
        return Err(match saml::finish(&c, &entity, &acs, &xml, None) {
            Err(e) => e.into(),
            Ok(_) => refusal(StatusCode::BAD_REQUEST, "sso_saml_unsolicited", "no sign-in in progress"),
        });
    };
    if conn_id != id {
        return Err(refusal(StatusCode::BAD_REQUEST, "sso_state_invalid", "state of another connection"));
    }
    if expires_at <= now {
        return Err(refusal(StatusCode::BAD_REQUEST, "sso_state_expired", "the sign-in took too long"));
    }
    // Over TLS the browser that started must be the one posting (login CSRF).
    if app.cfg.public_url.starts_with("https://") {
        let state = relay.map(String::as_str).unwrap_or_default();
        let bound = cookie(headers, TX_COOKIE)
            .is_some_and(|c| c.len() == state.len() && bool::from(c.as_bytes().ct_eq(state.as_bytes())));
        if !bound {
            return Err(refusal(StatusCode::BAD_REQUEST, "sso_state_mismatch", "state does not match this browser"));
        }
    }
    let signin = saml::finish(&c, &entity, &acs, &xml, Some(&request_id)).map_err(Refusal::from)?;
    {
        // One-time assertion IDs, and one-time transactions.
        let h = t.db.lock().await;
        h.execute("DELETE FROM saml_assertions WHERE expires_at <= ?1", [now]).await.map_err(ApiError::from)?;
        let fresh = h
            .execute(
                "INSERT INTO saml_assertions (id, expires_at) VALUES (?1, ?2) ON CONFLICT(id) DO NOTHING",
                libsql::params![signin.assertion_id.as_str(), now + 86_400],
            )
            .await
            .map_err(ApiError::from)?;
        if fresh == 0 {
            return Err(refusal(StatusCode::BAD_REQUEST, "sso_saml_replayed", "assertion already used"));
        }
        let gone = h
            .execute(
                "DELETE FROM sso_transactions WHERE id = ?1",
                [tokens::secret_hash(relay.map(String::as_str).unwrap_or_default())],
            )
            .await
            .map_err(ApiError::from)?;
        if gone == 0 {
            return Err(refusal(StatusCode::BAD_REQUEST, "sso_state_invalid", "already used"));
        }
    }
    complete(app, t, m, &c, &signin.profile, &return_to).await
}

/// The profile's email, if it may sign in through `c`.
fn check_email(c: &Connection, p: &Profile) -> Result<String, Refusal> {
    let raw = p.email.as_deref().ok_or_else(|| refusal(StatusCode::FORBIDDEN, "sso_email_missing", ""))?;
    let email = identity::normalise_email(raw)
        .ok_or_else(|| refusal(StatusCode::FORBIDDEN, "sso_email_missing", "not an email address"))?;
    if c.require_verified_email && !p.email_verified {
        return Err(refusal(StatusCode::FORBIDDEN, "sso_email_unverified", email));
    }
    if !c.allows_email(&email) {
        return Err(refusal(StatusCode::FORBIDDEN, "sso_domain_not_allowed", email));
    }
    Ok(email)
}

/// The session's `amr`: `sso`, the provider's RFC 8176 values, and `mfa` when the
/// provider reports a second factor.
fn session_amr(idp: &[String]) -> Vec<String> {
    const KNOWN: &[&str] =
        &["pwd", "mfa", "otp", "hwk", "swk", "sms", "tel", "fpt", "face", "iris", "retina", "pin", "sc", "kba", "user"];
    const SECOND: &[&str] = &["mfa", "otp", "hwk", "sms", "tel", "fpt", "face", "iris", "retina", "sc"];
    let mut amr = vec!["sso".to_string()];
    for a in idp {
        if KNOWN.contains(&a.as_str()) && !amr.contains(a) {
            amr.push(a.clone());
        }
    }
    if idp.iter().any(|a| SECOND.contains(&a.as_str())) && !amr.iter().any(|a| a == "mfa") {
        amr.push("mfa".into());
    }
    amr
}

/// The user signing in: linked by the provider's subject, else by verified email (and
/// linked), else provisioned with the connection's default role when JIT is on.
async fn resolve_user(
    app: &App,
    h: &libsql::Connection,
    c: &Connection,
    p: &Profile,
    email: &str,
    now: i64,
) -> Result<(String, Vec<Event>), Refusal> {
    let linked: Option<String> = one(
        h,
        "SELECT user_id FROM sso_identities WHERE connection_id = ?1 AND subject = ?2",
        [c.id.as_str(), p.subject.as_str()],
    )
    .await
    .map_err(ApiError::from)?;
    if let Some(u) = linked {
        return Ok((u, Vec::new()));
    }
    let link = |u: &str| {
        h.execute(
            "INSERT INTO sso_identities (connection_id, subject, user_id, created_at) VALUES (?1, ?2, ?3, ?4)",
            libsql::params![c.id.as_str(), p.subject.as_str(), u, now],
        )
    };
    let existing: Option<String> =
        one(h, "SELECT id FROM users WHERE email = ?1", [email]).await.map_err(ApiError::from)?;
    if let Some(u) = existing {
        // A provider's say-so about an email is not proof of owning the account that
        // already has it: linking needs the connection to allow it, a verified email, and
        // a user who is not an owner or admin.
        if !c.link_existing_users {
            return Err(refusal(StatusCode::FORBIDDEN, "sso_account_exists", email.to_string()));
        }
        if !p.email_verified {
            return Err(refusal(StatusCode::FORBIDDEN, "sso_email_unverified", email.to_string()));
        }
        let role: Option<String> =
            one(h, "SELECT role FROM memberships WHERE user_id = ?1", [u.as_str()]).await.map_err(ApiError::from)?;
        if matches!(role.as_deref(), Some("owner" | "admin")) {
            return Err(refusal(StatusCode::FORBIDDEN, "sso_privileged_link_refused", format!("user:{u}")));
        }
        link(&u).await.map_err(ApiError::from)?;
        let e = ev(
            format!("user:{u}"),
            "sso.link",
            format!("user:{u}"),
            None,
            Some(json!({ "connection": c.id, "subject": p.subject })),
        );
        return Ok((u, vec![e]));
    }
    if !c.jit {
        return Err(refusal(StatusCode::FORBIDDEN, "sso_user_unknown", email.to_string()));
    }
    if !role_exists(app, h, &c.default_role).await? {
        return Err(refusal(StatusCode::BAD_GATEWAY, "sso_connection_misconfigured", "default role no longer exists"));
    }
    let u = new_id("u_");
    h.execute(
        "INSERT INTO users (id, email, name, password_hash, created_at) VALUES (?1, ?2, ?3, NULL, ?4)",
        libsql::params![u.as_str(), email, p.name.as_str(), now],
    )
    .await
    .map_err(ApiError::from)?;
    h.execute(
        "INSERT INTO memberships (user_id, role, expires_at) VALUES (?1, ?2, NULL)",
        libsql::params![u.as_str(), c.default_role.as_str()],
    )
    .await
    .map_err(ApiError::from)?;
    link(&u).await.map_err(ApiError::from)?;
    let e = ev(
        format!("sso:{}", c.id),
        "user.provision",
        format!("user:{u}"),
        None,
        Some(json!({ "email": email, "role": c.default_role, "connection": c.id, "subject": p.subject })),
    );
    Ok((u, vec![e]))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DiscoverQuery {
    email: String,
    #[serde(default)]
    return_to: Option<String>,
}

/// Home-realm discovery: the enabled connection whose allowed domains hold the email's
/// domain. Answers with a page that moves on to that connection (a page, not a redirect:
/// the sign-in page's `form-action 'self'` would block a redirect to the provider).
pub(super) async fn discover(
    State(app): AppState,
    Path(slug): Path<String>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<DiscoverQuery>,
) -> Response {
    let t = match tenant(&app, &slug, &format!("/t/{slug}/sso/discover")).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let found = async {
        let Some(email) = identity::normalise_email(&q.email) else { return ApiResult::Ok(None) };
        let h = t.db.lock().await;
        let mut rows = h.query("SELECT config FROM sso_connections WHERE enabled = 1 ORDER BY id", ()).await?;
        while let Some(r) = rows.next().await? {
            let c: Connection = serde_json::from_str(&r.get::<String>(0)?)?;
            if c.allows_email(&email) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    };
    let c = match found.await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(c) = c else {
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>No single sign-on</title></head><body><h1>No single sign-on for this email</h1><p><a href=\"/t/{}/login\">Back to sign-in</a></p></body></html>\n",
            esc(&t.slug)
        );
        let mut r = html(StatusCode::NOT_FOUND, body, &[]);
        r.headers_mut().insert("x-gatehouse-reason", HeaderValue::from_static("sso_no_connection"));
        return r;
    };
    let rt =
        percent_encoding::utf8_percent_encode(q.return_to.as_deref().unwrap_or(""), percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let next = format!("/t/{}/sso/{}/start?return_to={rt}", t.slug, c.id);
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url={next}\"><title>Continue with {name}</title></head><body><p><a id=\"continue\" href=\"{next}\">Continue with {name}</a></p></body></html>\n",
        next = esc(&next),
        name = esc(&c.name)
    );
    html(StatusCode::OK, body, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_amr_keeps_known_methods_and_flags_mfa() {
        assert_eq!(session_amr(&[]), ["sso"]);
        assert_eq!(session_amr(&["pwd".into()]), ["sso", "pwd"]);
        assert_eq!(session_amr(&["pwd".into(), "otp".into()]), ["sso", "pwd", "otp", "mfa"]);
        assert_eq!(session_amr(&["mfa".into(), "mfa".into()]), ["sso", "mfa"]);
        assert_eq!(session_amr(&["<script>".into()]), ["sso"]);
    }
}
