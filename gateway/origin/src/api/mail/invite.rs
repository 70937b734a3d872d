//! Invitations, the invitee's side.
//!
//! - `GET /t/{slug}/invite?token=…`: a page saying who invites whom to what, with three
//!   ways in: set a password, continue with one of the organisation's SSO connections, or
//!   create the account without a password and go on to register a passkey (the browser
//!   lands on the hosted account page, a JSON client gets `next`: the passkey
//!   registration route).
//! - `POST /t/{slug}/invite/accept` (the page's form, CSRF-protected, or JSON): creates
//!   the account with the invited role and team, its email verified, marks the invitation
//!   accepted and signs in (a session cookie for the form, tokens for JSON) — through the
//!   MFA step (enrolment under `mfa_required`) when the organisation asks for it.
//! - SSO: [`accept_by_sso`] honours a pending invitation when an SSO sign-in of that
//!   (provider-verified) email provisions the user.
//!
//! Refusals: `invitation_invalid` (unknown token), `invitation_expired`,
//! `invitation_revoked`, `invitation_used` (accepted, or replaced by a resend: the old
//! token is then unknown), `already_member`.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::audit::Event;
use crate::error::{bad, ApiError, ApiResult};
use crate::identity::{self, new_id};
use crate::sso::oidc::Profile;
use crate::store::invitations::{self as store, Invitation};
use crate::store::{memberships, sso as sso_store, teams, users, verifications};
use crate::tokens;

use crate::api::admin::roles::role_exists;
use crate::api::app::App;
use crate::api::extract::{is_form, parse_body};
use crate::api::extract::{meta, AppState, Peer, QueryParams, RawBody, Tenant};
use crate::api::mail::{link_refused, link_tenant};
use crate::api::pages::{cookie, csrf_mac, esc, html, signed_in};
use crate::api::session::{issue, open_session, Session};
use crate::api::sso::connections::buttons;
use crate::api::transaction::{begin, commit, ev};

/// The CSRF cookie of the acceptance form.
const CSRF_COOKIE: &str = "gh_invite";

/// What an account created without a password does next: register a passkey with the
/// MFA API (`POST`, bearer access token), the `next` of the JSON answer.
pub(crate) fn passkey_registration_path(slug: &str) -> String {
    format!("/t/{slug}/mfa/passkeys/register")
}

/// Where the browser goes after a passwordless acceptance: the hosted account page (its
/// factors), signed in by the session cookie just set.
pub(crate) fn account_page_path(slug: &str) -> String {
    format!("/t/{slug}/account")
}

/// The pending invitation whose token is `token`, or why it cannot be used.
async fn check(h: &libsql::Connection, token: &str, now: i64) -> ApiResult<Invitation> {
    let invalid = || ApiError::bad_request("invitation_invalid", "this invitation link is not valid");
    if token.is_empty() || token.len() > 128 {
        return Err(invalid());
    }
    let inv = store::by_token(h, &tokens::secret_hash(token), now).await?.ok_or_else(invalid)?;
    match inv.status {
        "accepted" => Err(ApiError::conflict("invitation_used", "this invitation was already accepted")),
        "revoked" => Err(ApiError::bad_request("invitation_revoked", "this invitation was revoked")),
        "expired" => Err(ApiError::bad_request("invitation_expired", "this invitation has expired; ask for a new one")),
        _ if users::id_by_email(h, &inv.email).await?.is_some() => {
            Err(ApiError::conflict("already_member", "an account with this email already exists: sign in"))
        }
        _ => Ok(inv),
    }
}

/// Create the invited member in the caller's transaction (not in a suspended organisation,
/// not past the tier's `max_users`): the user (password hash or none), email verified,
/// role, team, and the invitation marked accepted. The user id and
/// the audit records.
async fn create_member(
    app: &App,
    h: &libsql::Connection,
    inv: &Invitation,
    name: &str,
    password_hash: Option<&str>,
    via: &str,
    now: i64,
) -> ApiResult<(String, Vec<Event>)> {
    crate::api::lifecycle::refuse_if_suspended(h).await?;
    crate::api::caps::check_org_cap(app, h, crate::api::caps::Cap::Users).await?;
    if !role_exists(app, h, &inv.role).await? {
        return Err(ApiError::bad_request(
            "invitation_invalid",
            "the invited role no longer exists; ask for a new invitation",
        ));
    }
    let id = new_id("u_");
    let row = users::NewUser { id: &id, email: &inv.email, name, password_hash, created_at: now };
    users::insert(h, &row).await?;
    memberships::insert(h, &id, &inv.role, None).await?;
    let mut team = None;
    if let Some(t) = &inv.team_id {
        // A team deleted since the invitation is skipped, not an error.
        if teams::exists_id(h, t).await? {
            teams::add_member(h, t, &id).await?;
            team = Some(t.clone());
        }
    }
    verifications::mark_verified(h, &id, now).await?;
    if !store::accept(h, &inv.id, &id, now).await? {
        return Err(ApiError::conflict("invitation_used", "this invitation was already accepted"));
    }
    let actor = format!("user:{id}");
    let events = vec![
        ev(
            actor.clone(),
            "invitation.accept",
            format!("invitation:{}", inv.id),
            None,
            Some(json!({ "user": id, "email": inv.email, "role": inv.role, "team": team, "via": via })),
        ),
        ev(actor, "user.create", format!("user:{id}"), None, Some(json!({ "email": inv.email, "role": inv.role }))),
    ];
    Ok((id, events))
}

/// An SSO sign-in provisioning `email`: if a pending invitation holds that address and the
/// provider verified it, the user is created with the invitation's role and team and
/// linked to the provider's subject. `None`: no invitation applies (JIT rules go on).
pub(crate) async fn accept_by_sso(
    app: &App,
    h: &libsql::Connection,
    connection: &str,
    p: &Profile,
    email: &str,
    now: i64,
) -> ApiResult<Option<(String, Vec<Event>)>> {
    if !p.email_verified {
        return Ok(None);
    }
    let Some(inv) = store::open_for_email(h, email, now).await?.into_iter().find(|i| i.status == "pending") else {
        return Ok(None);
    };
    let (user, events) = create_member(app, h, &inv, &p.name, None, &format!("sso:{connection}"), now).await?;
    sso_store::link(h, connection, &p.subject, &user, now).await?;
    Ok(Some((user, events)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenQuery {
    #[serde(default)]
    token: String,
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}}label,input,button,a.sso{{display:block;width:100%;margin:.4rem 0;box-sizing:border-box}}input,button,a.sso{{padding:.55rem}}a.sso{{border:1px solid #888;text-align:center}}.error{{color:#b00020}}</style></head>\
         <body><h1>{t}</h1>\n{body}</body></html>\n",
        t = esc(title)
    )
}

fn error_page(e: &ApiError) -> Response {
    let body = format!("<p class=\"error\" role=\"alert\" data-reason=\"{}\">{}</p>\n", e.code(), esc(&e.to_string()));
    html(e.status(), page("Invitation", &body), &[])
}

/// The acceptance page of `inv`; `error` above the form.
async fn accept_page(app: &App, t: &Tenant, inv: &Invitation, token: &str, error: Option<&str>) -> Response {
    let nonce = tokens::opaque("");
    let set =
        format!("{CSRF_COOKIE}={nonce}; Path=/t/{}/invite; HttpOnly; SameSite=Strict{}", t.slug, app.secure_cookie());
    let csrf = csrf_mac(app, &nonce);
    let org = crate::api::mail::org_name(&*t.db.lock().await).await.unwrap_or_default();
    let sso = buttons(t).await.unwrap_or_default();
    let slug = esc(&t.slug);
    let error = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>\n", esc(e))).unwrap_or_default();
    let hidden = format!(
        "<input type=\"hidden\" name=\"token\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(token),
        esc(&csrf)
    );
    let mut body = format!(
        "<p>You are invited to join <b>{org}</b> as <b>{role}</b> with <b>{email}</b>.</p>\n{error}\
         <form method=\"post\" action=\"/t/{slug}/invite/accept\">{hidden}<input type=\"hidden\" name=\"mode\" value=\"password\">\
         <label for=\"name\">Your name</label><input id=\"name\" name=\"name\" autocomplete=\"name\">\
         <label for=\"password\">Choose a password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" minlength=\"10\" required>\
         <button type=\"submit\">Create my account</button></form>\n\
         <form method=\"post\" action=\"/t/{slug}/invite/accept\">{hidden}<input type=\"hidden\" name=\"mode\" value=\"passkey\">\
         <button type=\"submit\">Use a passkey instead of a password</button></form>\n",
        org = esc(&org),
        role = esc(&inv.role),
        email = esc(&inv.email),
    );
    if !sso.is_empty() {
        body.push_str("<hr>\n");
        for (id, name) in sso {
            body.push_str(&format!(
                "<a class=\"sso\" href=\"/t/{slug}/sso/{}/start\">Continue with {}</a>\n",
                esc(&id),
                esc(&name)
            ));
        }
    }
    html(StatusCode::OK, page(&format!("Join {org}"), &body), &[set])
}

/// `GET /t/{slug}/invite?token=…`.
pub(crate) async fn invite_page(
    State(app): AppState,
    Path(slug): Path<String>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<TokenQuery>,
) -> Response {
    let t = match link_tenant(&app, &slug, &format!("/t/{slug}/invite"), &headers).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let inv = check(&*t.db.lock().await, &q.token, crate::now()).await;
    match inv {
        Err(e) => link_refused(e, error_page),
        Ok(inv) => accept_page(&app, &t, &inv, &q.token, None).await,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Accept {
    token: String,
    /// `password` (default) or `passkey` (no password; passkey registration next).
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    name: Option<String>,
    /// The form's CSRF token (form posts only).
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /t/{slug}/invite/accept`.
pub(crate) async fn accept(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let form = is_form(&headers);
    let t = match link_tenant(&app, &slug, &format!("/t/{slug}/invite/accept"), &headers).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let req: Accept = match parse_body(&headers, &body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if form {
        // Double-submit: the form's token is an HMAC of the cookie's nonce.
        let csrf_ok = cookie(&headers, CSRF_COOKIE).zip(req.csrf.as_deref()).is_some_and(|(nonce, got)| {
            let want = csrf_mac(&app, &nonce);
            want.len() == got.len() && bool::from(want.as_bytes().ct_eq(got.as_bytes()))
        });
        if !csrf_ok {
            return error_page(&ApiError::forbidden("csrf_failed", "the form expired: open the invitation link again"));
        }
    }
    let passkey = match req.mode.as_deref().unwrap_or("password") {
        "password" => false,
        "passkey" => true,
        _ => return bad("invalid_body", "mode: password or passkey").into_response(),
    };
    let result = accept_inner(&app, &t, &peer, &headers, &req, passkey).await;
    match result {
        Ok((user, tokens)) if form => {
            let clear = format!("{CSRF_COOKIE}=; Path=/t/{}/invite; Max-Age=0; HttpOnly; SameSite=Strict", t.slug);
            let mut r = signed_in(&app, &t, &tokens, "", clear).await;
            if passkey {
                *r.status_mut() = StatusCode::SEE_OTHER;
                if let Ok(v) = HeaderValue::from_str(&account_page_path(&t.slug)) {
                    r.headers_mut().insert("location", v);
                }
            }
            tracing::info!(user = %user, "invitation accepted");
            r
        }
        Ok((user, mut tokens)) => {
            tokens["user"] = user.into();
            if passkey {
                tokens["next"] = passkey_registration_path(&t.slug).into();
            }
            (StatusCode::CREATED, Json(tokens)).into_response()
        }
        Err(e @ (ApiError::Storage(_) | ApiError::Internal(_))) => e.into_response(),
        // The account exists; the organisation wants a second factor (or its enrolment).
        Err(ApiError::SecondStep { code, mfa_token, methods, .. }) if form => {
            crate::api::mfa::pages::second_step(&app, &t, code, &mfa_token, &methods, "").await
        }
        Err(e @ ApiError::BadRequest { code: "weak_password", .. }) if form => {
            let inv = check(&*t.db.lock().await, &req.token, crate::now()).await;
            match inv {
                Ok(inv) => accept_page(&app, &t, &inv, &req.token, Some(&e.to_string())).await,
                Err(e) => error_page(&e),
            }
        }
        Err(e) if form => error_page(&e),
        Err(e) => e.into_response(),
    }
}

async fn accept_inner(
    app: &App,
    t: &Tenant,
    peer: &std::net::SocketAddr,
    headers: &HeaderMap,
    req: &Accept,
    passkey: bool,
) -> ApiResult<(String, serde_json::Value)> {
    let name = req.name.as_deref().unwrap_or_default().trim().to_string();
    if name.len() > 200 {
        return Err(bad("invalid_name", "name: at most 200 bytes"));
    }
    let hash = if passkey {
        None
    } else {
        let p = req.password.as_deref().unwrap_or_default();
        identity::password_acceptable(p).map_err(|m| bad("weak_password", m))?;
        Some(app.passwords.hash(p)?)
    };
    let now = crate::now();
    let m = meta(headers, peer);
    let h = begin(t).await?;
    let inv = check(&h, &req.token, now).await?;
    let via = if passkey { "passkey" } else { "password" };
    let (user, events) = create_member(app, &h, &inv, &name, hash.as_deref(), via, now).await?;
    // The account stands from here, whatever the sign-in below needs.
    commit(app, t, h, &m, events).await?;
    app.changed(&t.id).await?;
    // The session's method: a password, or none yet (the passkey comes next). Under
    // `mfa_required` the new member is taken through enrolment like any sign-in.
    let amr: Vec<String> = if passkey { Vec::new() } else { vec!["pwd".to_string()] };
    let h = crate::api::mfa::second_step(app, t, begin(t).await?, &m, &user, &amr, None, 0).await?;
    let mut events = Vec::new();
    let (sid, family) = open_session(app, &h, &user, &amr, None, now, &mut events).await?;
    let session = Session { held: h, user: user.clone(), sid, family, amr, events };
    let tokens = issue(app, t, &m, session, None).await?;
    Ok((user, tokens))
}
