//! Self-service: the signed-in user's own account. JSON with the bearer access token —
//! `GET/PATCH /t/{slug}/me` (profile; the name is the only thing one changes here),
//! `GET /t/{slug}/me/sessions`, `DELETE /t/{slug}/me/sessions/{id}` (only one's own) — and
//! the hosted page `GET /t/{slug}/account` with the session cookie (profile, factors,
//! sessions with a revoke button each, CSRF double-submit like the sign-in page, the
//! same strict CSP). Every change is audited.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::error::{bad, ApiError, ApiResult};
use crate::store::{factors, orgs, sessions, teams, users};
use crate::tokens;

use crate::api::admin::sessions::{device, session_json};
use crate::api::app::App;
use crate::api::extract::parse_body;
use crate::api::extract::{bearer, meta, residency, tenant, verify_access, AppState, Peer, RawBody, Tenant};
use crate::api::lifecycle::suspended;
use crate::api::pages::{cookie, csrf_mac, esc, html, impersonation_banner, with_banner};
use crate::api::routes::ROUTES;
use crate::api::session::end_session;
use crate::api::transaction::{begin, commit, ev};

/// The signed-in user of a request: who, and through which session.
pub(crate) struct Me {
    pub(crate) user: String,
    pub(crate) sid: String,
    /// Who really acts, when the token is an impersonation's (`act.sub`).
    pub(crate) act: Option<String>,
}

impl Me {
    /// An audit event of this user doing `action` on `target` (naming the real actor
    /// under an impersonation).
    pub(crate) fn ev(
        &self,
        action: &'static str,
        target: impl Into<String>,
        before: Option<Value>,
        after: Option<Value>,
    ) -> crate::audit::Event {
        let mut e = ev(format!("user:{}", self.user), action, target, before, after);
        e.act = self.act.clone();
        e
    }
}

/// The user an access token of tenant `t` speaks for, if its session is live, the
/// account enabled and the organisation not suspended.
pub(crate) async fn me_from_token(app: &App, t: &Tenant, token: &str) -> ApiResult<Me> {
    let c = verify_access(app, token, Some(&t.slug))?;
    if c.custom.org != t.slug {
        return Err(ApiError::unauthorized("token_invalid", "the access token is not valid"));
    }
    let user = c.subject.clone().unwrap_or_default();
    let sid = c.custom.sid.clone();
    let h = t.db.lock().await;
    if !sessions::is_live(&h, &sid, &user, crate::now()).await? {
        return Err(ApiError::unauthorized("session_revoked", "the session has ended"));
    }
    if users::disabled(&h, &user).await? != Some(false) {
        return Err(ApiError::forbidden("user_disabled", "this account is deactivated"));
    }
    if orgs::suspended_at(&h).await?.is_some() {
        return Err(suspended());
    }
    Ok(Me { user, sid, act: c.custom.act.map(|a| a.sub) })
}

/// The user the request's bearer access token speaks for ([`me_from_token`]).
pub(crate) async fn me_from_bearer(app: &App, t: &Tenant, headers: &HeaderMap) -> ApiResult<Me> {
    let token = bearer(headers)
        .ok_or_else(|| ApiError::unauthorized("credential_missing", "send your access token as the bearer"))?;
    me_from_token(app, t, token).await
}

/// The profile of `user`: who they are, their role and teams, and how they sign in.
pub(crate) async fn profile(h: &libsql::Connection, user: &str) -> ApiResult<Value> {
    let now = crate::now();
    let u = users::by_id(h, user, now).await?.ok_or_else(|| ApiError::unauthorized("token_invalid", "no such user"))?;
    let team_names = teams::names_of_member(h, user).await?;
    let confirmed: Vec<Value> = factors::of_user(h, user)
        .await?
        .into_iter()
        .filter(|f| f.confirmed_at.is_some())
        .map(|f| {
            json!({ "id": f.id, "kind": f.kind, "name": f.name, "created_at": f.created_at,
            "last_used_at": f.last_used_at })
        })
        .collect();
    Ok(json!({
        "id": u.id, "email": u.email, "name": u.name, "role": u.role, "role_expires_at": u.role_expires_at,
        "teams": team_names, "email_verified": users::email_verified(h, user).await?, "created_at": u.created_at,
        "factors": {
            "password": users::has_password(h, user).await?,
            "mfa": confirmed,
            "recovery_codes_left": factors::recovery_left(h, user).await?,
        },
    }))
}

fn no_store(v: Value) -> Response {
    let mut r = Json(v).into_response();
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

/// `GET /t/{slug}/me`.
pub(crate) async fn get_me(State(app): AppState, Path(slug): Path<String>, headers: HeaderMap) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/me")).await?;
        let me = me_from_bearer(&app, &t, &headers).await?;
        let v = profile(&*t.db.lock().await, &me.user).await?;
        ApiResult::Ok(no_store(v))
    };
    run.await.unwrap_or_else(|e| residency(e, &headers))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchMe {
    name: String,
}

/// A display name one may give oneself: at most 200 bytes, no control characters.
pub(crate) fn acceptable_name(name: &str) -> ApiResult<&str> {
    let name = name.trim();
    if name.len() > 200 || name.chars().any(char::is_control) {
        return Err(bad("invalid_name", "name: at most 200 bytes, no control characters"));
    }
    Ok(name)
}

/// `PATCH /t/{slug}/me` with `{"name": "…"}`.
pub(crate) async fn patch_me(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/me")).await?;
        let me = me_from_bearer(&app, &t, &headers).await?;
        let req: PatchMe = parse_body(&headers, &body)?;
        let name = acceptable_name(&req.name)?;
        rename(&app, &t, &me, name, &peer, &headers).await?;
        let v = profile(&*t.db.lock().await, &me.user).await?;
        ApiResult::Ok(no_store(v))
    };
    run.await.unwrap_or_else(|e| residency(e, &headers))
}

async fn rename(app: &App, t: &Tenant, me: &Me, name: &str, peer: &SocketAddr, headers: &HeaderMap) -> ApiResult<()> {
    let h = begin(t).await?;
    let before = users::by_id(&h, &me.user, crate::now()).await?.map(|u| u.name);
    users::set_name(&h, &me.user, name).await?;
    let e = me.ev(
        "user.profile",
        format!("user:{}", me.user),
        Some(json!({ "name": before })),
        Some(json!({ "name": name })),
    );
    commit(app, t, h, &meta(headers, peer), vec![e]).await
}

/// `GET /t/{slug}/me/sessions`: one's live sessions, the current one marked.
pub(crate) async fn my_sessions(State(app): AppState, Path(slug): Path<String>, headers: HeaderMap) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/me/sessions")).await?;
        let me = me_from_bearer(&app, &t, &headers).await?;
        let list = sessions::live_of_user(&*t.db.lock().await, &me.user, crate::now()).await?;
        let items: Vec<Value> = list.iter().map(|s| session_json(s, Some(&me.sid))).collect();
        ApiResult::Ok(no_store(json!({ "items": items })))
    };
    run.await.unwrap_or_else(|e| residency(e, &headers))
}

/// End one's own session `id` (another user's is `404 session_not_found`).
async fn revoke_own(app: &App, t: &Tenant, me: &Me, id: &str, peer: &SocketAddr, headers: &HeaderMap) -> ApiResult<()> {
    let h = begin(t).await?;
    if sessions::user_of(&h, id).await?.as_deref() != Some(me.user.as_str()) {
        return Err(ApiError::not_found("session_not_found", "no such session"));
    }
    end_session(&h, id, crate::now()).await?;
    let e = me.ev("session.revoke", format!("session:{id}"), None, Some(json!({ "by": "self" })));
    commit(app, t, h, &meta(headers, peer), vec![e]).await?;
    app.changed(&t.id).await?;
    Ok(())
}

/// `DELETE /t/{slug}/me/sessions`: sign out everywhere else (every session but this one).
pub(crate) async fn delete_my_other_sessions(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/me/sessions")).await?;
        let me = me_from_bearer(&app, &t, &headers).await?;
        let h = begin(&t).await?;
        let now = crate::now();
        let others = sessions::open_of_user_except(&h, &me.user, &me.sid).await?;
        for s in &others {
            end_session(&h, s, now).await?;
        }
        let after = json!({ "sessions_ended": others.len(), "kept": me.sid });
        let e = me.ev("user.sessions_end", format!("user:{}", me.user), None, Some(after));
        commit(&app, &t, h, &meta(&headers, &peer), vec![e]).await?;
        app.changed(&t.id).await?;
        ApiResult::Ok(no_store(json!({ "sessions_ended": others.len() })))
    };
    run.await.unwrap_or_else(|e| residency(e, &headers))
}

/// `DELETE /t/{slug}/me/sessions/{id}`.
pub(crate) async fn delete_my_session(
    State(app): AppState,
    Path((slug, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/me/sessions/{id}")).await?;
        let me = me_from_bearer(&app, &t, &headers).await?;
        revoke_own(&app, &t, &me, &id, &peer, &headers).await?;
        ApiResult::Ok(StatusCode::NO_CONTENT.into_response())
    };
    run.await.unwrap_or_else(|e| residency(e, &headers))
}

// ---------------------------------------------------------------------------------------
// The hosted page

/// The CSRF cookie of the account page.
const CSRF_COOKIE: &str = "gh_account_csrf";

/// The hosted page that manages second factors; the account page links to it once the
/// route exists.
const MFA_PAGE: &str = "/t/{slug}/mfa";

/// The signed-in user of a browser request (the session cookie the hosted sign-in set).
async fn me_from_cookie(app: &App, t: &Tenant, headers: &HeaderMap) -> ApiResult<Me> {
    let name = app.template().settings.session_cookie.clone();
    let token = cookie(headers, &name).ok_or_else(|| ApiError::unauthorized("credential_missing", "not signed in"))?;
    me_from_token(app, t, &token).await
}

fn message_page(slug: &str, status: StatusCode, message: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Account · {slug}</title></head><body>\n<h1>Your account</h1>\n<p role=\"alert\">{message}</p>\n<p><a href=\"/t/{slug}/account\">Your account</a> · <a href=\"/t/{slug}/login\">Sign in</a></p>\n</body></html>\n",
        slug = esc(slug),
        message = esc(message)
    );
    html(status, page, &[])
}

/// `GET /t/{slug}/account`: the account page.
pub(crate) async fn account_page(State(app): AppState, Path(slug): Path<String>, headers: HeaderMap) -> Response {
    let t = match tenant(&app, &slug, &format!("/t/{slug}/account")).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let me = match me_from_cookie(&app, &t, &headers).await {
        Ok(me) => me,
        Err(e) => return message_page(&t.slug, e.status(), &e.to_string()),
    };
    let page = async {
        let h = t.db.lock().await;
        let p = profile(&h, &me.user).await?;
        let list = sessions::live_of_user(&h, &me.user, crate::now()).await?;
        ApiResult::Ok((p, list, impersonation_banner(&h, &me.sid).await?))
    };
    let (p, list, banner) = match page.await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let nonce = tokens::opaque("");
    let set =
        format!("{CSRF_COOKIE}={nonce}; Path=/t/{}/account; HttpOnly; SameSite=Strict{}", t.slug, app.secure_cookie());
    let page = with_banner(render(&t.slug, &p, &list, &me.sid, &csrf_mac(&app, &nonce)), &banner);
    html(StatusCode::OK, page, &[set])
}

/// The page: every value escaped, no script.
fn render(slug: &str, p: &Value, list: &[sessions::SessionView], current: &str, csrf: &str) -> String {
    let s = |v: &Value| esc(v.as_str().unwrap_or(""));
    let teams = p["teams"].as_array().map(|a| a.iter().map(s).collect::<Vec<_>>().join(", ")).unwrap_or_default();
    let mut factors = String::new();
    if p["factors"]["password"].as_bool() == Some(true) {
        factors.push_str("<li>Password</li>\n");
    }
    for f in p["factors"]["mfa"].as_array().into_iter().flatten() {
        factors.push_str(&format!("<li>{} ({})</li>\n", s(&f["name"]), s(&f["kind"])));
    }
    let left = p["factors"]["recovery_codes_left"].as_i64().unwrap_or(0);
    let mut rows = String::new();
    for x in list {
        let when = |t: Option<i64>| t.map(|t| esc(&unix_utc(t))).unwrap_or_else(|| "—".into());
        let this = if x.id == current { " <strong>(this session)</strong>" } else { "" };
        rows.push_str(&format!(
            "<tr><td>{device}{this}</td><td>{ip}</td><td>{created}</td><td>{seen}</td><td>{how}</td><td><form method=\"post\" action=\"/t/{slug}/account/sessions/{id}/revoke\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Sign out</button></form></td></tr>\n",
            device = esc(&device(x.user_agent.as_deref().unwrap_or_default())),
            ip = esc(x.ip.as_deref().unwrap_or("—")),
            created = when(Some(x.created_at)),
            seen = when(x.last_seen_at),
            how = esc(&serde_json::from_str::<Vec<String>>(&x.amr).unwrap_or_default().join(", ")),
            slug = esc(slug),
            id = esc(&x.id),
            csrf = esc(csrf),
        ));
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Account · {slug}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:3rem auto;padding:0 1rem}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.4rem;text-align:left}}</style>
</head><body>
<h1>Your account</h1>
<dl>
<dt>Email</dt><dd>{email}{verified}</dd>
<dt>Name</dt><dd>{name}</dd>
<dt>Role</dt><dd>{role}</dd>
<dt>Teams</dt><dd>{teams}</dd>
</dl>
<h2>Sign-in methods</h2>
<ul>
{factors}</ul>
<p>Recovery codes left: {left}</p>
{mfa_link}<h2>Name</h2>
<form method="post" action="/t/{slug}/account/profile">
<input type="hidden" name="csrf" value="{csrf}">
<label for="name">Display name</label> <input id="name" name="name" maxlength="200" value="{name}">
<button type="submit">Save</button>
</form>
<h2>Sessions</h2>
<table><thead><tr><th>Device</th><th>IP address</th><th>Signed in</th><th>Last active</th><th>Method</th><th></th></tr></thead>
<tbody>
{rows}</tbody></table>
</body></html>
"#,
        slug = esc(slug),
        email = s(&p["email"]),
        verified = if p["email_verified"].as_bool() == Some(true) { " (verified)" } else { " (not verified)" },
        name = s(&p["name"]),
        role = s(&p["role"]),
        csrf = esc(csrf),
        mfa_link = match ROUTES.iter().any(|(m, path, _, _)| *m == "GET" && *path == MFA_PAGE) {
            true => format!(
                "<p><a href=\"{}\">Manage two-factor authentication</a></p>\n",
                esc(&MFA_PAGE.replace("{slug}", slug))
            ),
            false => String::new(),
        },
    )
}

/// Unix seconds as `YYYY-MM-DD HH:MM UTC`.
fn unix_utc(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeForm {
    csrf: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileForm {
    csrf: String,
    name: String,
}

/// Whether the form's CSRF token is the HMAC of the page's cookie nonce.
fn csrf_ok(app: &App, headers: &HeaderMap, token: &str) -> bool {
    cookie(headers, CSRF_COOKIE).is_some_and(|nonce| {
        let want = csrf_mac(app, &nonce);
        want.len() == token.len() && bool::from(want.as_bytes().ct_eq(token.as_bytes()))
    })
}

/// Back to the account page after a form.
fn back_to_page(slug: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/t/{slug}/account")) {
        r.headers_mut().insert("location", v);
    }
    r
}

/// `POST /t/{slug}/account/profile` (the page's form): change one's display name.
pub(crate) async fn account_profile(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let t = match tenant(&app, &slug, &format!("/t/{slug}/account")).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let form = match serde_urlencoded::from_bytes::<ProfileForm>(&body) {
        Ok(f) if csrf_ok(&app, &headers, &f.csrf) => f,
        _ => return message_page(&t.slug, StatusCode::FORBIDDEN, "The form expired. Please reload the page."),
    };
    let me = match me_from_cookie(&app, &t, &headers).await {
        Ok(me) => me,
        Err(e) => return message_page(&t.slug, e.status(), &e.to_string()),
    };
    let done = match acceptable_name(&form.name) {
        Ok(name) => rename(&app, &t, &me, name, &peer, &headers).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => back_to_page(&t.slug),
        Err(e) => message_page(&t.slug, e.status(), &e.to_string()),
    }
}

/// `POST /t/{slug}/account/sessions/{id}/revoke` (the page's form): end one of one's
/// sessions, back to the page.
pub(crate) async fn account_revoke(
    State(app): AppState,
    Path((slug, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let t = match tenant(&app, &slug, &format!("/t/{slug}/account")).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    if !serde_urlencoded::from_bytes::<RevokeForm>(&body).is_ok_and(|f| csrf_ok(&app, &headers, &f.csrf)) {
        return message_page(&t.slug, StatusCode::FORBIDDEN, "The form expired. Please reload the page.");
    }
    let me = match me_from_cookie(&app, &t, &headers).await {
        Ok(me) => me,
        Err(e) => return message_page(&t.slug, e.status(), &e.to_string()),
    };
    match revoke_own(&app, &t, &me, &id, &peer, &headers).await {
        Ok(()) => back_to_page(&t.slug),
        Err(e) => message_page(&t.slug, e.status(), &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_users_control() {
        let p = json!({ "email": "a@b.co", "name": "<script>x</script>", "role": "viewer", "teams": ["\"t\""],
            "email_verified": false, "factors": { "password": true, "mfa": [{ "name": "<b>", "kind": "totp" }],
            "recovery_codes_left": 0 } });
        let s = sessions::SessionView {
            id: "s_1\"".into(),
            user_id: "u_1".into(),
            amr: "[\"pwd\"]".into(),
            idp: None,
            created_at: 0,
            expires_at: 10,
            auth_time: None,
            ip: Some("<ip>".into()),
            user_agent: Some("curl/8".into()),
            last_seen_at: None,
        };
        let page = render("acme", &p, &[s], "s_1\"", "tok");
        assert!(!page.contains("<script>") && page.contains("&lt;script&gt;x&lt;/script&gt;"), "{page}");
        assert!(page.contains("&lt;ip&gt;") && page.contains("&lt;b&gt; (totp)") && page.contains("&quot;t&quot;"));
        assert!(page.contains("(this session)") && page.contains("1970-01-01 00:00 UTC"));
        assert!(page.contains("/t/acme/account/sessions/s_1&quot;/revoke"));
        assert!(page.contains("action=\"/t/acme/account/profile\"") && page.contains("value=\"&lt;script&gt;"));
        // The link to the factor pages appears only where that page is served.
        let served = ROUTES.iter().any(|(m, p, _, _)| *m == "GET" && *p == MFA_PAGE);
        assert_eq!(page.contains("href=\"/t/acme/mfa\""), served);
        assert_eq!(acceptable_name(" Ada ").unwrap(), "Ada");
        assert_eq!(acceptable_name("a\u{7}").unwrap_err().code(), "invalid_name");
        assert_eq!(acceptable_name(&"x".repeat(201)).unwrap_err().code(), "invalid_name");
    }
}
