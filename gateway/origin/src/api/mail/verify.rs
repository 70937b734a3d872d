//! Email verification of local accounts.
//!
//! A link `{issuer}/email/verify?token=ghv_…` is mailed when an admin creates a user, when
//! the user asks (`POST /t/{slug}/email/verify-request` with their bearer access token),
//! and when a sign-in is refused with `email_unverified`. The token is stored hashed,
//! works once, expires after `mail.verify_ttl_secs`, and a newer link voids the older
//! ones. At most `mail.verify_per_hour` links per user and hour (`rate_limited`, 429 with
//! `Retry-After`). Opening the link shows a page whose button POSTs the token: a mail
//! scanner that follows links does not consume it.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::audit::{Event, RequestMeta};
use crate::auth_policy::EmailVerification;
use crate::error::{ApiError, ApiResult};
use crate::mailer::templates::{human_time, Kind};
use crate::mailer::Message;
use crate::store::{sessions, users, verifications, Held};
use crate::tokens;

use crate::api::app::App;
use crate::api::extract::{
    bearer, is_form, meta, parse_body, residency, tenant, verify_access, AppState, Authed, Peer, QueryParams, RawBody,
    Tenant,
};
use crate::api::mail::{compose, deliver, link_refused, link_tenant, mail_failed, rate_limited};
use crate::api::pages::{esc, html};
use crate::api::transaction::{begin, commit, ev};

/// The outcome of asking for a new link.
pub(crate) enum Issued {
    /// A new token and when it expires.
    Token(String, i64),
    /// Over the hourly limit: seconds until the next link may go out.
    Limited(i64),
}

/// Issue a verification token for `user` in the caller's transaction (older links void),
/// unless the hourly limit is reached.
pub(crate) async fn issue_token(
    app: &App,
    h: &libsql::Connection,
    user: &str,
    email: &str,
    now: i64,
) -> ApiResult<Issued> {
    let (count, oldest) = verifications::issued_since(h, user, now - 3600).await?;
    if count >= app.cfg.mail.verify_per_hour as i64 {
        return Ok(Issued::Limited(oldest.map(|o| o + 3600 - now).unwrap_or(3600)));
    }
    verifications::void_all(h, user, now).await?;
    let token = tokens::opaque("ghv_");
    let expires = now + app.cfg.mail.verify_ttl_secs as i64;
    verifications::insert(h, &tokens::secret_hash(&token), user, email, now, expires).await?;
    Ok(Issued::Token(token, expires))
}

/// The verification mail carrying `token`.
pub(crate) async fn message(
    app: &App,
    h: &libsql::Connection,
    slug: &str,
    email: &str,
    token: &str,
    expires: i64,
) -> ApiResult<Message> {
    let link = format!("{}/email/verify?token={token}", app.cfg.issuer(slug));
    compose(h, Kind::VerifyEmail, email, &[("link", &link), ("expires", &human_time(expires))]).await
}

fn sent_event(actor: String, user: &str) -> Event {
    ev(actor, "email.verification_sent", format!("user:{user}"), None, None)
}

/// After `actor` created `user` with `email`: mail the first verification link (its own
/// transaction, audited). A failure to send is logged; the user can ask again.
pub(crate) async fn send_first(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    actor: String,
    user: &str,
    email: &str,
) -> ApiResult<&'static str> {
    let now = crate::now();
    let h = begin(t).await?;
    let Issued::Token(token, expires) = issue_token(app, &h, user, email, now).await? else {
        return Ok("rate_limited");
    };
    let msg = message(app, &h, &t.slug, email, &token, expires).await?;
    commit(app, t, h, m, vec![sent_event(actor, user)]).await?;
    Ok(deliver(app, &msg).await)
}

/// After an admin created `user`: [`send_first`], a failure logged (the user exists; the
/// link can be asked for again).
pub(crate) async fn after_create(app: &App, authed: &Authed, user: &str, email: &str) {
    let r = send_first(app, &authed.t, &authed.meta, authed.caller.actor(), user, email).await;
    if let Err(e) = r {
        tracing::error!(error = %e, code = e.code(), "verification mail of a new user not prepared");
    }
}

/// Whether the organisation's policy refuses `user`'s sign-in for an unverified address:
/// `email_verification = "required"` and a local account (a password, no identity
/// provider) whose email is not verified. SSO users count as verified.
pub(crate) async fn must_verify(h: &libsql::Connection, user: &str) -> ApiResult<bool> {
    let policy = crate::api::admin::auth_policy::load(h).await?;
    if policy.email_verification != EmailVerification::Required {
        return Ok(false);
    }
    Ok(verifications::verified_at(h, user).await? == Some(None) && verifications::is_local(h, user).await?)
}

/// Refuse a sign-in with `email_unverified` (after the password check): audit it, and
/// mail a fresh link within the hourly limit, so a user who cannot sign in is not stuck.
pub(crate) async fn refuse_unverified(
    app: &App,
    t: &Tenant,
    h: Held<'_>,
    m: &RequestMeta,
    user: &str,
    email: &str,
) -> ApiError {
    let run = async {
        let now = crate::now();
        let actor = format!("user:{user}");
        let mut events = vec![ev(actor.clone(), "signin.email_unverified", actor.clone(), None, None)];
        let msg = match issue_token(app, &h, user, email, now).await? {
            Issued::Token(token, expires) => {
                events.push(sent_event(actor, user));
                Some(message(app, &h, &t.slug, email, &token, expires).await?)
            }
            Issued::Limited(_) => None,
        };
        commit(app, t, h, m, events).await?;
        if let Some(msg) = msg {
            deliver(app, &msg).await;
        }
        ApiResult::Ok(())
    };
    match run.await {
        Ok(()) => ApiError::forbidden(
            "email_unverified",
            "verify your email address before signing in: a link was sent to it",
        ),
        Err(e) => e,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// Why a link does not work, as a reason code.
async fn check(h: &libsql::Connection, token: &str, now: i64) -> ApiResult<verifications::Token> {
    let invalid = || ApiError::bad_request("verification_invalid", "this verification link is not valid");
    if token.is_empty() || token.len() > 128 {
        return Err(invalid());
    }
    let row = verifications::find(h, &tokens::secret_hash(token)).await?.ok_or_else(invalid)?;
    if row.used_at.is_some() {
        return Err(ApiError::conflict("verification_used", "this verification link was already used or replaced"));
    }
    if row.expires_at <= now {
        return Err(ApiError::bad_request("verification_expired", "this verification link has expired"));
    }
    // The account's address must still be the one the link was sent to.
    if users::email_of(h, &row.user_id).await?.as_deref() != Some(row.email.as_str()) {
        return Err(invalid());
    }
    Ok(row)
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem}}button{{padding:.6rem;width:100%}}.error{{color:#b00020}}</style></head>\
         <body><h1>{t}</h1>\n{body}</body></html>\n",
        t = esc(title)
    )
}

fn error_page(e: &ApiError) -> Response {
    let body = format!("<p class=\"error\" role=\"alert\" data-reason=\"{}\">{}</p>\n", e.code(), esc(&e.to_string()));
    html(e.status(), page("Email verification", &body), &[])
}

/// `GET /t/{slug}/email/verify?token=…`: a page that confirms with a POST (the link is
/// not consumed by opening it).
pub(crate) async fn verify_page(
    State(app): AppState,
    Path(slug): Path<String>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<TokenQuery>,
) -> Response {
    let t = match link_tenant(&app, &slug, &format!("/t/{slug}/email/verify"), &headers).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let row = check(&*t.db.lock().await, &q.token, crate::now()).await;
    match row {
        Err(e) => link_refused(e, error_page),
        Ok(row) => {
            let body = format!(
                "<p>Confirm that <b>{email}</b> is your address.</p>\n<form method=\"post\" action=\"/t/{slug}/email/verify\">\
                 <input type=\"hidden\" name=\"token\" value=\"{token}\"><button type=\"submit\">Verify my email address</button></form>\n",
                email = esc(&row.email),
                slug = esc(&t.slug),
                token = esc(&q.token),
            );
            html(StatusCode::OK, page("Verify your email address", &body), &[])
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyRequest {
    token: String,
}

/// `POST /t/{slug}/email/verify` (form or JSON `{"token"}`): verify the address, once.
pub(crate) async fn verify_submit(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let form = is_form(&headers);
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/email/verify")).await?;
        let req: VerifyRequest = parse_body(&headers, &body)?;
        let now = crate::now();
        let h = begin(&t).await?;
        let row = check(&h, &req.token, now).await?;
        verifications::void_all(&h, &row.user_id, now).await?;
        verifications::mark_verified(&h, &row.user_id, now).await?;
        let actor = format!("user:{}", row.user_id);
        let e = ev(actor.clone(), "email.verify", actor, None, Some(json!({ "email": row.email })));
        commit(&app, &t, h, &meta(&headers, &peer), vec![e]).await?;
        ApiResult::Ok(row)
    };
    match run.await {
        Ok(row) if form => {
            let body = format!("<p><b>{}</b> is verified. You can close this page.</p>\n", esc(&row.email));
            html(StatusCode::OK, page("Email verified", &body), &[])
        }
        Ok(row) => Json(json!({ "status": "verified", "user": row.user_id, "email": row.email })).into_response(),
        Err(e @ ApiError::WrongRegion { .. }) => residency(e, &headers),
        Err(e @ (ApiError::Storage(_) | ApiError::Internal(_))) => e.into_response(),
        Err(e) if form => error_page(&e),
        Err(e) => e.into_response(),
    }
}

/// `POST /t/{slug}/email/verify-request` (bearer access token of the user): mail a new
/// link. 202 when sent, 200 `already_verified`, 429 `rate_limited`, 502 `mail_failed`.
pub(crate) async fn verify_request(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/email/verify-request")).await?;
        let tok = bearer(&headers)
            .ok_or_else(|| ApiError::unauthorized("credential_missing", "a bearer access token is required"))?;
        let c = verify_access(&app, tok, Some(&t.slug))?;
        let user = c.subject.clone().unwrap_or_default();
        let now = crate::now();
        let h = begin(&t).await?;
        if !sessions::is_live(&h, &c.custom.sid, &user, now).await? {
            return Err(ApiError::unauthorized("session_revoked", "the session has ended"));
        }
        let email =
            users::email_of(&h, &user).await?.ok_or_else(|| ApiError::unauthorized("token_invalid", "no such user"))?;
        if verifications::verified_at(&h, &user).await?.flatten().is_some() {
            return Ok(Json(json!({ "status": "already_verified", "email": email })).into_response());
        }
        let (token, expires) = match issue_token(&app, &h, &user, &email, now).await? {
            Issued::Token(token, expires) => (token, expires),
            Issued::Limited(retry) => {
                return Ok(rate_limited(retry, "too many verification mails for this account; try again later"))
            }
        };
        let msg = message(&app, &h, &t.slug, &email, &token, expires).await?;
        commit(&app, &t, h, &meta(&headers, &peer), vec![sent_event(format!("user:{user}"), &user)]).await?;
        Ok(match deliver(&app, &msg).await {
            "sent" => (StatusCode::ACCEPTED, Json(json!({ "status": "sent", "expires_at": expires }))).into_response(),
            _ => mail_failed(),
        })
    };
    match run.await {
        Ok(r) => r,
        Err(e) => residency(e, &headers),
    }
}
