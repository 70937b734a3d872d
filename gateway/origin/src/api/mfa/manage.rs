//! The hosted factor page `GET /t/{slug}/mfa` for the user of the session cookie: the
//! factors with rename and remove forms, adding an authenticator app (QR code and secret,
//! then a confirm-code form), adding a passkey (the same-origin `webauthn.js` ceremony, no
//! inline script) and new recovery codes (shown once, `no-store`). The forms post under
//! `/t/{slug}/mfa/manage/…`, each CSRF-protected (double submit: a nonce cookie scoped to
//! `/t/{slug}/mfa` and its HMAC in the form, or in the `x-csrf-token` header of the passkey
//! script's fetch). The rules are the JSON API's ([`factors_api`] functions): once the user
//! has a factor, the page and every change need a session that passed MFA — the browser
//! is sent to the step-up page with `return_to=/t/{slug}/mfa` (an own page of the origin,
//! see [`crate::api::pages::own_page`]) — and the organisation's `mfa_methods` policy.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::auth_policy::{AuthPolicy, MfaMethod};
use crate::error::{ApiError, ApiResult};
use crate::store::factors::Factor;
use crate::store::Held;
use crate::tokens;

use crate::api::account::me_from_token;
use crate::api::admin::auth_policy;
use crate::api::app::App;
use crate::api::extract::{meta, residency, tenant, AppState, Peer, RawBody, Tenant};
use crate::api::mfa::factors_api::{self, Who};
use crate::api::mfa::flow::{self, active_factors};
use crate::api::mfa::pages::page;
use crate::api::pages::{cookie, csrf_mac, esc, impersonation_banner, with_banner};
use crate::api::transaction::begin;

/// The CSRF nonce cookie of the factor page (scoped to `/t/{slug}/mfa`).
const CSRF_COOKIE: &str = "gh_mfa_csrf";

/// The longest form this page accepts (a passkey credential is the largest field).
const MAX_FORM: usize = 16 * 1024;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;vertical-align:top}form.inline{display:inline}.error{color:#b00020}.secret{font-family:monospace;word-break:break-all}ol.codes{font-family:monospace}";

/// The page's path.
fn page_path(slug: &str) -> String {
    format!("/t/{slug}/mfa")
}

fn shell(slug: &str, title: &str, inner: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title} · {slug}</title>\n<style>{STYLE}</style>\n<script src=\"/t/{slug}/mfa/webauthn.js\" defer></script>\n</head><body>\n{inner}<p><a href=\"/t/{slug}/mfa\">Two-factor authentication</a> · <a href=\"/t/{slug}/account\">Your account</a></p>\n</body></html>\n",
        slug = esc(slug),
        title = esc(title),
    )
}

fn message(slug: &str, status: StatusCode, text: &str) -> Response {
    let body = format!("<h1>Two-factor authentication</h1>\n<p class=\"error\" role=\"alert\">{}</p>\n", esc(text));
    page(status, shell(slug, "Two-factor authentication", &body), &[])
}

/// Where a browser whose session has not passed MFA is sent: the step-up page, back here.
pub(crate) fn stepup_location(slug: &str) -> String {
    format!("/t/{slug}/stepup?return_to={}", back_here(slug))
}

/// This page's path, percent-encoded for a `return_to` parameter.
fn back_here(slug: &str) -> String {
    percent_encoding::utf8_percent_encode(&page_path(slug), percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert("location", v);
    }
    r
}

/// The answer to a failed page action: step-up for `step_up_required`, the sign-in page
/// without a session, the reason otherwise.
fn refused(slug: &str, e: ApiError) -> Response {
    match e.code() {
        "step_up_required" => see_other(&stepup_location(slug)),
        "credential_missing" | "session_revoked" | "token_invalid" | "token_expired" | "wrong_tenant" => {
            see_other(&format!("/t/{slug}/login?return_to={}", back_here(slug)))
        }
        _ => message(slug, e.status(), &e.to_string()),
    }
}

/// The session's access token (the cookie the hosted sign-in set).
fn session_token(app: &App, headers: &HeaderMap) -> ApiResult<String> {
    let name = app.template().settings.session_cookie.clone();
    cookie(headers, &name).ok_or_else(|| ApiError::unauthorized("credential_missing", "not signed in"))
}

/// The signed-in user of the cookie, resolved in the caller's transaction like the JSON
/// API's bearer (live session, enabled account, organisation not suspended).
async fn visitor(app: &App, t: &Tenant, h: &libsql::Connection, token: &str) -> ApiResult<Who> {
    match factors_api::who(app, t, h, Some(token)).await? {
        who @ Who::Session { .. } => Ok(who),
        Who::Enrolling { .. } => Err(ApiError::unauthorized("token_invalid", "not signed in")),
    }
}

/// Whether `token` is the HMAC of the page's CSRF cookie nonce.
fn csrf_ok(app: &App, headers: &HeaderMap, token: &str) -> bool {
    cookie(headers, CSRF_COOKIE).is_some_and(|nonce| {
        let want = csrf_mac(app, &nonce);
        want.len() == token.len() && bool::from(want.as_bytes().ct_eq(token.as_bytes()))
    })
}

/// A fresh CSRF pair: the cookie and the token the forms carry.
fn csrf_pair(app: &App, slug: &str) -> (String, String) {
    let nonce = tokens::opaque("");
    let set = format!("{CSRF_COOKIE}={nonce}; Path=/t/{slug}/mfa; HttpOnly; SameSite=Strict{}", app.secure_cookie());
    (set, csrf_mac(app, &nonce))
}

/// The page's view of the user: confirmed factors, recovery codes left, the policy.
struct View {
    factors: Vec<Factor>,
    recovery_left: i64,
    policy: AuthPolicy,
}

async fn view(h: &libsql::Connection, user: &str) -> ApiResult<View> {
    Ok(View {
        factors: active_factors(h, user).await?,
        recovery_left: crate::store::factors::recovery_left(h, user).await?,
        policy: auth_policy::load(h).await?,
    })
}

/// `GET /t/{slug}/mfa`: the factor page (or step-up first, once the user has a factor
/// and the session did not pass MFA).
pub(crate) async fn manage_page(State(app): AppState, Path(slug): Path<String>, headers: HeaderMap) -> Response {
    let t = match tenant(&app, &slug, &page_path(&slug)).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let run = async {
        let token = session_token(&app, &headers)?;
        let me = me_from_token(&app, &t, &token).await?;
        let h = t.db.lock().await;
        let who = visitor(&app, &t, &h, &token).await?;
        let v = view(&h, who.user()).await?;
        if !v.factors.is_empty() && matches!(who, Who::Session { mfa: false, .. }) {
            return Err(ApiError::unauthorized("step_up_required", "step up first"));
        }
        ApiResult::Ok((v, impersonation_banner(&h, &me.sid).await?))
    };
    match run.await {
        Ok((v, banner)) => {
            let (set, csrf) = csrf_pair(&app, &t.slug);
            page(StatusCode::OK, with_banner(render(&t.slug, &v, &csrf), &banner), &[set])
        }
        Err(e) => refused(&t.slug, e),
    }
}

fn kind_name(kind: &str) -> &'static str {
    match kind {
        "totp" => "Authenticator app",
        "webauthn" => "Passkey",
        _ => "Factor",
    }
}

/// The page: every value escaped, only the same-origin script.
fn render(slug: &str, v: &View, csrf: &str) -> String {
    let slug_e = esc(slug);
    let csrf = esc(csrf);
    let mut rows = String::new();
    for f in &v.factors {
        let used = f.last_used_at.map(unix_utc).unwrap_or_else(|| "never".into());
        rows.push_str(&format!(
            "<tr><td>{name}</td><td>{kind}</td><td>{added}</td><td>{used}</td><td><form class=\"inline\" method=\"post\" action=\"/t/{slug_e}/mfa/manage/factors/{id}/rename\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><label>New name <input name=\"name\" maxlength=\"64\" value=\"{name}\" required></label> <button type=\"submit\">Rename</button></form> <form class=\"inline\" method=\"post\" action=\"/t/{slug_e}/mfa/manage/factors/{id}/remove\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Remove</button></form></td></tr>\n",
            name = esc(&f.name),
            kind = kind_name(&f.kind),
            added = esc(&unix_utc(f.created_at)),
            used = esc(&used),
            id = esc(&f.id),
        ));
    }
    let list = if v.factors.is_empty() {
        "<p>You have no second factor yet.</p>\n".to_string()
    } else {
        format!("<table><thead><tr><th>Name</th><th>Type</th><th>Added</th><th>Last used</th><th></th></tr></thead>\n<tbody>\n{rows}</tbody></table>\n")
    };
    let required = if v.policy.mfa_required { "<p>Your organisation requires a second factor.</p>\n" } else { "" };
    let totp = if v.policy.allows(MfaMethod::Totp) {
        format!("<h2>Add an authenticator app</h2>\n<form method=\"post\" action=\"/t/{slug_e}/mfa/manage/totp\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><label>Name <input name=\"name\" maxlength=\"64\" placeholder=\"Authenticator app\"></label> <button type=\"submit\">Add an authenticator app</button></form>\n")
    } else {
        String::new()
    };
    let passkey = if v.policy.allows(MfaMethod::Webauthn) {
        format!("<h2>Add a passkey</h2>\n<form method=\"post\" action=\"/t/{slug_e}/mfa/manage/passkeys\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"challenge_id\" value=\"\"><input type=\"hidden\" name=\"credential\" value=\"\"><label>Name <input name=\"name\" maxlength=\"64\" placeholder=\"Passkey\"></label> <button type=\"button\" data-passkey=\"create\" data-slug=\"{slug_e}\" data-register=\"/t/{slug_e}/mfa/manage/passkeys/register\">Add a passkey</button><p class=\"error\" data-passkey-error hidden></p></form>\n")
    } else {
        String::new()
    };
    let recovery = if v.factors.is_empty() {
        String::new()
    } else {
        format!("<h2>Recovery codes</h2>\n<p>Recovery codes left: {left}</p>\n<form method=\"post\" action=\"/t/{slug_e}/mfa/manage/recovery-codes\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">New recovery codes</button></form>\n<p>New codes replace every code you have now.</p>\n", left = v.recovery_left)
    };
    shell(
        slug,
        "Two-factor authentication",
        &format!(
            "<h1>Two-factor authentication</h1>\n{required}<h2>Your factors</h2>\n{list}{totp}{passkey}{recovery}"
        ),
    )
}

/// Unix seconds as `YYYY-MM-DD HH:MM UTC`.
fn unix_utc(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}

/// The TOTP enrolment: QR code (an image of the qrcode crate's SVG of our own URI, not
/// markup), the secret, and the confirm-code form.
fn totp_page(slug: &str, e: &Value, csrf: &str, error: Option<&str>) -> String {
    use base64::Engine as _;
    let svg = base64::engine::general_purpose::STANDARD.encode(e["qr_svg"].as_str().unwrap_or_default());
    let error = error.map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>\n", esc(m))).unwrap_or_default();
    shell(
        slug,
        "Add an authenticator app",
        &format!(
            "<h1>Add an authenticator app</h1>\n{error}<p>Scan this code with your authenticator app, or enter the secret by hand.</p>\n<img alt=\"QR code of the authenticator secret\" width=\"200\" height=\"200\" src=\"data:image/svg+xml;base64,{svg}\">\n<p class=\"secret\">{secret}</p>\n<form method=\"post\" action=\"/t/{slug}/mfa/manage/totp/{id}/confirm\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><label for=\"code\">Code from the app</label> <input id=\"code\" name=\"code\" autocomplete=\"one-time-code\" inputmode=\"numeric\" maxlength=\"6\" autofocus required> <button type=\"submit\">Confirm</button></form>\n",
            slug = esc(slug),
            secret = esc(e["secret"].as_str().unwrap_or_default()),
            id = esc(e["id"].as_str().unwrap_or_default()),
            csrf = esc(csrf),
        ),
    )
}

/// Recovery codes, shown once.
fn codes_page(slug: &str, codes: &[String]) -> String {
    let items: String = codes.iter().map(|c| format!("<li>{}</li>", esc(c))).collect();
    shell(
        slug,
        "Recovery codes",
        &format!("<h1>Save your recovery codes</h1>\n<p>Each code works once if you lose your second factor. They are shown only now; any earlier codes no longer work.</p>\n<ol class=\"codes\">{items}</ol>\n"),
    )
}

/// The forms of this page (each field optional; the action says which it needs).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Form {
    csrf: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    challenge_id: Option<String>,
    #[serde(default)]
    credential: Option<String>,
}

/// What a form asks for.
enum Action {
    Rename(String),
    Remove(String),
    StartTotp,
    ConfirmTotp(String),
    Recovery,
    Passkey,
}

/// Check the form and the session, then run `action` with the JSON API's logic.
async fn act(app: &App, slug: &str, peer: &SocketAddr, headers: &HeaderMap, body: &[u8], action: Action) -> Response {
    let t = match tenant(app, slug, &page_path(slug)).await {
        Ok(t) => t,
        Err(e) => return residency(e, headers),
    };
    let form = match serde_urlencoded::from_bytes::<Form>(body) {
        Ok(f) if body.len() <= MAX_FORM && csrf_ok(app, headers, &f.csrf) => f,
        _ => return message(&t.slug, StatusCode::FORBIDDEN, "The form expired. Please reload the page."),
    };
    let m = meta(headers, peer);
    let run = async {
        let token = session_token(app, headers)?;
        me_from_token(app, &t, &token).await?;
        let h: Held<'_> = begin(&t).await?;
        let who = visitor(app, &t, &h, &token).await?;
        let done = match action {
            Action::Rename(id) => {
                factors_api::rename(app, &t, &m, h, &who, &id, form.name.as_deref().unwrap_or_default()).await?;
                None
            }
            Action::Remove(id) => {
                factors_api::remove(app, &t, &m, h, &who, &id).await?;
                None
            }
            Action::StartTotp => {
                let e = factors_api::begin_totp(app, &t, &m, h, &who, form.name.as_deref()).await?;
                Some(totp_page(&t.slug, &e, &form.csrf, None))
            }
            Action::ConfirmTotp(id) => {
                let code = form.code.as_deref().map(str::trim).unwrap_or_default();
                let out = factors_api::confirm_totp_inner(app, &t, &m, h, who, &id, code).await?;
                recovery_of(&t.slug, &out)
            }
            Action::Recovery => {
                let codes = factors_api::new_recovery_codes(app, &t, &m, h, &who).await?;
                Some(codes_page(&t.slug, &codes))
            }
            Action::Passkey => {
                let cred = form.credential.as_deref().filter(|c| !c.is_empty()).unwrap_or("null");
                let cred: Value = serde_json::from_str(cred)
                    .map_err(|_| ApiError::bad_request("invalid_request", "credential is not a WebAuthn credential"))?;
                let cred = flow::credential_value(&cred)?;
                let challenge = form.challenge_id.as_deref().unwrap_or_default();
                let name = form.name.as_deref();
                let out = factors_api::finish_passkey(app, &t, &m, h, who, challenge, &cred, name).await?;
                recovery_of(&t.slug, &out)
            }
        };
        ApiResult::Ok(done)
    };
    match run.await {
        Ok(Some(body)) => page(StatusCode::OK, body, &[]),
        Ok(None) => see_other(&page_path(&t.slug)),
        Err(e) => refused(&t.slug, e),
    }
}

/// After a confirmed factor: the recovery codes when it was the first (shown once).
fn recovery_of(slug: &str, out: &Value) -> Option<String> {
    let codes: Vec<String> =
        out["recovery_codes"].as_array()?.iter().filter_map(|c| c.as_str().map(String::from)).collect();
    Some(codes_page(slug, &codes))
}

/// `POST /t/{slug}/mfa/manage/factors/{id}/rename` (`csrf`, `name`).
pub(crate) async fn rename(
    State(app): AppState,
    Path((slug, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    act(&app, &slug, &peer, &headers, &body, Action::Rename(id)).await
}

/// `POST /t/{slug}/mfa/manage/factors/{id}/remove` (`csrf`).
pub(crate) async fn remove(
    State(app): AppState,
    Path((slug, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    act(&app, &slug, &peer, &headers, &body, Action::Remove(id)).await
}

/// `POST /t/{slug}/mfa/manage/totp` (`csrf`, optional `name`): the QR code page.
pub(crate) async fn totp_start(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    act(&app, &slug, &peer, &headers, &body, Action::StartTotp).await
}

/// `POST /t/{slug}/mfa/manage/totp/{id}/confirm` (`csrf`, `code`).
pub(crate) async fn totp_confirm(
    State(app): AppState,
    Path((slug, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    act(&app, &slug, &peer, &headers, &body, Action::ConfirmTotp(id)).await
}

/// `POST /t/{slug}/mfa/manage/recovery-codes` (`csrf`): a new set, shown once.
pub(crate) async fn recovery_codes(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    act(&app, &slug, &peer, &headers, &body, Action::Recovery).await
}

/// `POST /t/{slug}/mfa/manage/passkeys` (`csrf`, `challenge_id`, `credential`, optional
/// `name`): finish a passkey registration the page's script started.
pub(crate) async fn passkey_finish(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    act(&app, &slug, &peer, &headers, &body, Action::Passkey).await
}

/// `POST /t/{slug}/mfa/manage/passkeys/register` (session cookie, CSRF token in the
/// `x-csrf-token` header): the options for `navigator.credentials.create` and the
/// `challenge_id` (JSON, for the page's script).
pub(crate) async fn passkey_start(State(app): AppState, Path(slug): Path<String>, headers: HeaderMap) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &page_path(&slug)).await?;
        let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !csrf_ok(&app, &headers, sent) {
            return Err(ApiError::forbidden("csrf_invalid", "the page expired: reload it"));
        }
        let token = session_token(&app, &headers)?;
        me_from_token(&app, &t, &token).await?;
        let h = begin(&t).await?;
        let who = visitor(&app, &t, &h, &token).await?;
        factors_api::begin_passkey(&app, &t, h, &who).await
    };
    match run.await {
        Ok(v) => {
            let mut r = Json(v).into_response();
            r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => residency(e, &headers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factor(name: &str) -> Factor {
        Factor {
            id: "mf_1\"".into(),
            user_id: "u_1".into(),
            kind: "totp".into(),
            name: name.into(),
            secret: None,
            last_step: 0,
            credential: None,
            credential_id: None,
            amr: Some("otp".into()),
            confirmed_at: Some(1),
            created_at: 0,
            last_used_at: None,
        }
    }

    #[test]
    fn the_page_escapes_names_and_offers_what_the_policy_allows() {
        let mut v =
            View { factors: vec![factor("<script>alert(1)</script>")], recovery_left: 7, policy: Default::default() };
        let p = render("acme", &v, "c\"t");
        assert_eq!(p.matches("<script").count(), 1, "only the same-origin script: {p}");
        assert!(p.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(p.contains("/t/acme/mfa/manage/factors/mf_1&quot;/rename") && p.contains("value=\"c&quot;t\""));
        assert!(
            p.contains("Recovery codes left: 7")
                && p.contains("data-register=\"/t/acme/mfa/manage/passkeys/register\"")
        );
        assert!(p.contains("action=\"/t/acme/mfa/manage/totp\""));
        v.policy.mfa_methods = vec![MfaMethod::Webauthn];
        v.factors.clear();
        let p = render("acme", &v, "c");
        assert!(!p.contains("/mfa/manage/totp") && p.contains("data-passkey=\"create\""));
        assert!(!p.contains("recovery-codes"), "no recovery codes without a factor");
    }

    #[test]
    fn only_the_origins_own_pages_are_relative_return_targets() {
        use crate::api::pages::own_page;
        assert_eq!(own_page("acme", "/t/acme/mfa").as_deref(), Some("/t/acme/mfa"));
        assert_eq!(own_page("acme", "/t/acme/account").as_deref(), Some("/t/acme/account"));
        for bad in
            ["/t/beta/mfa", "//evil.test/t/acme/mfa", "/t/acme/mfa?x=1", "/t/acme/mfa/../login", "t/acme/mfa", ""]
        {
            assert_eq!(own_page("acme", bad), None, "{bad}");
        }
    }

    #[test]
    fn refusals_send_the_browser_where_it_can_go_on() {
        assert_eq!(stepup_location("acme"), "/t/acme/stepup?return_to=%2Ft%2Facme%2Fmfa");
        let r = refused("acme", ApiError::unauthorized("step_up_required", "x"));
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], "/t/acme/stepup?return_to=%2Ft%2Facme%2Fmfa");
        let r = refused("acme", ApiError::unauthorized("credential_missing", "x"));
        assert_eq!(r.headers()["location"], "/t/acme/login?return_to=%2Ft%2Facme%2Fmfa");
        let r = refused("acme", ApiError::conflict("mfa_last_factor", "<b>"));
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let codes = codes_page("acme", &["ab<c".into()]);
        assert!(codes.contains("<li>ab&lt;c</li>"));
        let e = serde_json::json!({ "id": "mf_2", "secret": "ABC", "qr_svg": "<svg></svg>" });
        let p = totp_page("acme", &e, "tok", None);
        assert!(p.contains("data:image/svg+xml;base64,") && p.contains(">ABC<"));
        assert!(p.contains("action=\"/t/acme/mfa/manage/totp/mf_2/confirm\"") && !p.contains("<svg"));
    }
}
