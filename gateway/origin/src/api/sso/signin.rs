//! SSO routes: the administrators' connection API and enforcement setting, and the
//! browser's sign-in through a connection (start, callback, home-realm discovery).
//!
//! A sign-in is a transaction: `start` stores `state` (hashed), the `nonce` and the PKCE
//! verifier with a short lifetime and sets the `state` in a cookie scoped to the tenant's
//! SSO path; `callback` needs that cookie, consumes the transaction (single use) and only
//! then talks to the provider. Every outcome is audited; a failure is a page with its
//! reason code (also in `x-gatehouse-reason`).

use anyhow::{anyhow, Result};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::audit::{Event, RequestMeta};
use crate::error::{ApiError, ApiResult};
use crate::identity::{self, new_id};
use crate::store::sso::{self as sso_store, NewTransaction, Transaction};
use crate::store::{memberships, users};
use crate::tokens::{self};

use crate::api::admin::roles::role_exists;
use crate::api::app::App;
use crate::api::extract::{meta, residency, tenant, AppState, Peer, QueryParams, Tenant};
use crate::api::pages::{cookie, esc, html, signed_in};
use crate::api::sso::connections::{acs_url, load, not_found, redirect_uri, sp_entity_id};
use crate::api::tenant::{issue, open_session, Session};
use crate::api::transaction::{begin, commit, ev};
use crate::sso::oidc::{Profile, SsoError, Started};
use crate::sso::{saml, Connection, Protocol};

/// The cookie binding a sign-in transaction to the browser that started it.
pub(crate) const TX_COOKIE: &str = "gh_sso";
/// Largest query value read on the callback.
pub(crate) const MAX_PARAM: usize = 4096;

// ---------------------------------------------------------------------------------------
// Browser sign-in

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartQuery {
    #[serde(default)]
    return_to: Option<String>,
}

/// A refused SSO step: its status and reason code, audited and shown.
pub(crate) struct Refusal {
    status: StatusCode,
    reason: &'static str,
    detail: String,
}

pub(crate) fn refusal(status: StatusCode, reason: &'static str, detail: impl Into<String>) -> Refusal {
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
                | "sso_saml_transform_refused"
                | "sso_saml_algorithm_refused"
                | "sso_saml_reference_refused"
                | "sso_saml_keyinfo_refused"
                | "sso_saml_unsolicited"
                | "sso_saml_in_response_to",
                _,
            ) => StatusCode::BAD_REQUEST,
            SsoError::Saml("sso_saml_too_large", _) => StatusCode::PAYLOAD_TOO_LARGE,
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

impl From<libsql::Error> for Refusal {
    fn from(e: libsql::Error) -> Refusal {
        ApiError::from(e).into()
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Refusal {
        tracing::error!(error = %e, "sso sign-in failed on the origin side");
        Refusal { status: StatusCode::SERVICE_UNAVAILABLE, reason: "internal_error", detail: String::new() }
    }
}

/// Audit a refused step and answer with a page naming the reason.
pub(crate) async fn refuse(app: &App, t: &Tenant, m: &RequestMeta, connection: &str, r: Refusal) -> Response {
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

pub(crate) async fn start(
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
        let id = tokens::secret_hash(&started.state);
        let tx = NewTransaction {
            id: &id,
            connection_id: &c.id,
            nonce: &started.nonce,
            verifier: &started.verifier,
            return_to: &return_to,
            expires_at: now + ttl,
        };
        sso_store::begin_transaction(&*t.db.lock().await, &tx, now).await?;
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

pub(crate) async fn callback(
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
    let finished = finish(&app, &t, &m, &id, &headers, &q).await;
    app.metrics.sso_outcome("oidc", finished.as_ref().map(|_| ()).map_err(|r| r.reason));
    match finished {
        Ok(r) => r,
        Err(r) => refuse(&app, &t, &m, &id, r).await,
    }
}

/// Everything of a callback after the tenant is known; a refusal is audited by the
/// caller.
pub(crate) async fn finish(
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
    let tx = sso_store::take_transaction(&*t.db.lock().await, &tokens::secret_hash(state)).await?;
    let Transaction { connection_id: conn_id, nonce, verifier, return_to, expires_at } =
        tx.ok_or_else(|| bad_state("unknown or already used state"))?;
    let verifier = verifier.unwrap_or_default();
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
pub(crate) async fn complete(
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
    if users::disabled(&h, &user).await? != Some(false) {
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
    let h = match crate::api::mfa::sso_second_step(app, t, h, m, &user, &amr, &c.id, &mut events).await {
        Ok(h) => h,
        Err(ApiError::SecondStep { code, mfa_token, methods, .. }) => {
            return Ok(crate::api::mfa::pages::second_step(app, t, code, &mfa_token, &methods, return_to).await);
        }
        Err(e) => return Err(e.into()),
    };
    let (sid, family) = open_session(app, &h, &user, &amr, Some(&c.id), now, &mut events).await?;
    let session = Session { held: h, user, sid, family, amr, events };
    let tokens = issue(app, t, m, session, None).await?;
    let clear = format!("{TX_COOKIE}=; Path=/t/{}/sso; Max-Age=0; HttpOnly; SameSite=Lax", t.slug);
    Ok(signed_in(app, t, &tokens, return_to, clear).await)
}

/// SP metadata of a SAML connection (its entity id is this URL).
pub(crate) async fn saml_metadata(
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
        Err(e) => ApiError::Internal(anyhow::Error::from(e).context("SAML SP metadata")).into_response(),
    }
}

/// The Assertion Consumer Service (HTTP-POST binding).
pub(crate) async fn saml_acs(
    State(app): AppState,
    Path((slug, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let t = match tenant(&app, &slug, &format!("/t/{slug}/sso/{id}/saml/acs")).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let m = meta(&headers, &peer);
    // Its own bound, read here, so an oversized post is refused like every other
    // response: the error page, its reason code and an audit record.
    let finished = match acs_body(body).await {
        Ok(body) => saml_finish(&app, &t, &m, &id, &headers, &body).await,
        Err(r) => Err(r),
    };
    app.metrics.sso_outcome("saml", finished.as_ref().map(|_| ()).map_err(|r| r.reason));
    match finished {
        Ok(r) => r,
        Err(r) => refuse(&app, &t, &m, &id, r).await,
    }
}

/// The posted form, at most [`saml::MAX_ACS_BODY`] bytes.
async fn acs_body(body: axum::body::Body) -> Result<axum::body::Bytes, Refusal> {
    use http_body_util::BodyExt as _;
    match http_body_util::Limited::new(body, saml::MAX_ACS_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "sso_saml_too_large",
            format!("the posted form is over {} bytes", saml::MAX_ACS_BODY),
        )),
        Err(_) => Err(refusal(StatusCode::BAD_REQUEST, "sso_saml_malformed", "the body could not be read")),
    }
}

pub(crate) async fn saml_finish(
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
        Some(r) => sso_store::peek_transaction(&*t.db.lock().await, &tokens::secret_hash(r)).await?,
        None => None,
    };
    let Some(Transaction { connection_id: conn_id, nonce: request_id, return_to, expires_at, .. }) = tx else {
        // No live transaction: a replay of a consumed response, or an unsolicited one
        // (IdP-initiated sign-in is off). The unverified ID only picks the reason.
        if let Some(aid) = saml::unverified_assertion_id(&xml) {
            if sso_store::assertion_seen(&*t.db.lock().await, &aid).await? {
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
        if !sso_store::use_assertion(&h, &signin.assertion_id, now, now + 86_400).await? {
            return Err(refusal(StatusCode::BAD_REQUEST, "sso_saml_replayed", "assertion already used"));
        }
        let tx = tokens::secret_hash(relay.map(String::as_str).unwrap_or_default());
        if sso_store::end_transaction(&h, &tx).await? == 0 {
            return Err(refusal(StatusCode::BAD_REQUEST, "sso_state_invalid", "already used"));
        }
    }
    complete(app, t, m, &c, &signin.profile, &return_to).await
}

/// The profile's email, if it may sign in through `c`.
pub(crate) fn check_email(c: &Connection, p: &Profile) -> Result<String, Refusal> {
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
pub(crate) fn session_amr(idp: &[String]) -> Vec<String> {
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
pub(crate) async fn resolve_user(
    app: &App,
    h: &libsql::Connection,
    c: &Connection,
    p: &Profile,
    email: &str,
    now: i64,
) -> Result<(String, Vec<Event>), Refusal> {
    let linked = sso_store::linked_user(h, &c.id, &p.subject).await?;
    if let Some(u) = linked {
        return Ok((u, Vec::new()));
    }
    let existing = users::id_by_email(h, email).await?;
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
        let role = memberships::role_of(h, &u).await?;
        if matches!(role.as_deref(), Some("owner" | "admin")) {
            return Err(refusal(StatusCode::FORBIDDEN, "sso_privileged_link_refused", format!("user:{u}")));
        }
        sso_store::link(h, &c.id, &p.subject, &u, now).await?;
        let e = ev(
            format!("user:{u}"),
            "sso.link",
            format!("user:{u}"),
            None,
            Some(json!({ "connection": c.id, "subject": p.subject })),
        );
        return Ok((u, vec![e]));
    }
    // A pending invitation of this (provider-verified) email: its role and team apply.
    if let Some(invited) = crate::api::mail::invite::accept_by_sso(app, h, &c.id, p, email, now).await? {
        return Ok(invited);
    }
    if !c.jit {
        return Err(refusal(StatusCode::FORBIDDEN, "sso_user_unknown", email.to_string()));
    }
    if !role_exists(app, h, &c.default_role).await? {
        return Err(refusal(StatusCode::BAD_GATEWAY, "sso_connection_misconfigured", "default role no longer exists"));
    }
    // Provisioning adds a user: the tier's `max_users` applies (`limit_reached`).
    crate::api::caps::check_org_cap(app, h, crate::api::caps::Cap::Users).await?;
    let u = new_id("u_");
    let row = users::NewUser { id: &u, email, name: &p.name, password_hash: None, created_at: now };
    users::insert(h, &row).await?;
    // The provider vouches for the address: SSO users count as verified.
    crate::store::verifications::mark_verified(h, &u, now).await?;
    memberships::insert(h, &u, &c.default_role, None).await?;
    sso_store::link(h, &c.id, &p.subject, &u, now).await?;
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
pub(crate) struct DiscoverQuery {
    email: String,
    #[serde(default)]
    return_to: Option<String>,
}

/// Home-realm discovery: the enabled connection whose allowed domains hold the email's
/// domain. Answers with a page that moves on to that connection (a page, not a redirect:
/// the sign-in page's `form-action 'self'` would block a redirect to the provider).
pub(crate) async fn discover(
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
        let configs = sso_store::enabled_configs(&*t.db.lock().await).await?;
        for config in configs {
            let c: Connection = serde_json::from_str(&config)?;
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
    use super::session_amr;

    #[test]
    fn session_amr_keeps_known_methods_and_flags_mfa() {
        assert_eq!(session_amr(&[]), ["sso"]);
        assert_eq!(session_amr(&["pwd".into()]), ["sso", "pwd"]);
        assert_eq!(session_amr(&["pwd".into(), "otp".into()]), ["sso", "pwd", "otp", "mfa"]);
        assert_eq!(session_amr(&["mfa".into(), "mfa".into()]), ["sso", "mfa"]);
        assert_eq!(session_amr(&["<script>".into()]), ["sso"]);
    }
}
