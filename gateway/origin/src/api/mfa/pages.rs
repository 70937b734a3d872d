//! Hosted MFA pages: the second-factor form a password sign-in continues to (code, or a
//! passkey button), the enrolment page of a member who must enrol (QR code and secret,
//! or a passkey), the recovery codes shown once, and the step-up page edges redirect
//! browsers to (`/t/{slug}/stepup?return_to=…&max_age=…`). Every form is CSRF-protected
//! (double submit); the only script is the same-origin `/t/{slug}/mfa/webauthn.js`
//! (`script-src 'self'`, no inline script).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::tokens;

use crate::api::admin::orgs::org_row;
use crate::api::app::App;
use crate::api::extract::{meta, residency, tenant, AppState, Peer, QueryParams, RawBody, Tenant};
use crate::api::mfa::factors_api::{self, Who};
use crate::api::mfa::flow::{self, Proof};
use crate::api::mfa::stepup;
use crate::api::pages::{cookie, csrf_mac, esc, own_page, safe_return_to, session_cookie, signed_in};
use crate::api::transaction::begin;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}label,input,button{display:block;width:100%;margin:.4rem 0;box-sizing:border-box}input{padding:.5rem}button{padding:.6rem}.error{color:#b00020}.secret{font-family:monospace;word-break:break-all}ol.codes{font-family:monospace}";

/// A page with a CSP that allows the same-origin passkey script and its fetches.
pub(crate) fn page(status: StatusCode, body: String, set_cookies: &[String]) -> Response {
    let mut r = (status, [("content-type", "text/html; charset=utf-8")], body).into_response();
    let h = r.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append("set-cookie", v);
        }
    }
    r
}

fn shell(slug: &str, title: &str, inner: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title} · {slug}</title>\n<style>{STYLE}</style>\n<script src=\"/t/{slug}/mfa/webauthn.js\" defer></script>\n</head><body>\n{inner}</body></html>\n",
        slug = esc(slug),
        title = esc(title),
    )
}

/// A CSRF pair for forms posted to `path`: the cookie (scoped to it) and the token.
fn csrf_for(app: &App, path: &str) -> (String, String) {
    let nonce = tokens::opaque("");
    let cookie = format!("gh_csrf={nonce}; Path={path}; HttpOnly; SameSite=Strict{}", app.secure_cookie());
    (cookie, csrf_mac(app, &nonce))
}

fn csrf_ok(app: &App, headers: &HeaderMap, token: &str) -> bool {
    cookie(headers, "gh_csrf").is_some_and(|nonce| {
        let want = csrf_mac(app, &nonce);
        want.len() == token.len() && bool::from(want.as_bytes().ct_eq(token.as_bytes()))
    })
}

/// The second-factor form (sign-in or step-up), posting to `action`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn second_factor_page(
    slug: &str,
    heading: &str,
    action: &str,
    csrf: &str,
    mfa_token: &str,
    return_to: &str,
    methods: &[String],
    error: Option<&str>,
) -> String {
    let error = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>\n", esc(e))).unwrap_or_default();
    let has = |m: &str| methods.iter().any(|x| x == m);
    let code = if has("totp") || has("recovery_code") {
        let label = match (has("totp"), has("recovery_code")) {
            (true, true) => "Code from your authenticator app, or a recovery code",
            (true, false) => "Code from your authenticator app",
            _ => "Recovery code",
        };
        format!("<label for=\"code\">{label}</label><input id=\"code\" name=\"code\" autocomplete=\"one-time-code\" inputmode=\"text\" maxlength=\"32\" autofocus>\n<button type=\"submit\">Verify</button>\n")
    } else {
        String::new()
    };
    let passkey = if has("webauthn") {
        format!("<button type=\"button\" data-passkey=\"get\" data-slug=\"{}\">Use a passkey</button>\n", esc(slug))
    } else {
        String::new()
    };
    shell(
        slug,
        heading,
        &format!(
            "<h1>{heading}</h1>\n{error}<form method=\"post\" action=\"{action}\">\n<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n<input type=\"hidden\" name=\"mfa_token\" value=\"{token}\">\n<input type=\"hidden\" name=\"return_to\" value=\"{rt}\">\n<input type=\"hidden\" name=\"credential\" value=\"\">\n{code}{passkey}<p class=\"error\" data-passkey-error hidden></p>\n</form>\n",
            heading = esc(heading),
            action = esc(action),
            csrf = esc(csrf),
            token = esc(mfa_token),
            rt = esc(return_to),
        ),
    )
}

/// The enrolment page: the TOTP QR code and secret with a code field (when TOTP is
/// allowed and `totp` holds the pending enrolment), and a passkey button (when allowed).
pub(crate) fn enrol_page(
    slug: &str,
    csrf: &str,
    mfa_token: &str,
    return_to: &str,
    totp: Option<&Value>,
    passkeys: bool,
    error: Option<&str>,
) -> String {
    let error = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>\n", esc(e))).unwrap_or_default();
    let totp = totp
        .map(|e| {
            // The SVG is the qrcode crate's output for our own URI (no user data beyond the
            // escaped email in the URI); it is embedded as an image, not as markup.
            use base64::Engine as _;
            let svg = base64::engine::general_purpose::STANDARD.encode(e["qr_svg"].as_str().unwrap_or_default());
            format!(
                "<h2>Authenticator app</h2>\n<p>Scan this code with your authenticator app, or enter the secret by hand.</p>\n<img alt=\"QR code of the authenticator secret\" width=\"200\" height=\"200\" src=\"data:image/svg+xml;base64,{svg}\">\n<p class=\"secret\">{secret}</p>\n<input type=\"hidden\" name=\"factor_id\" value=\"{id}\">\n<label for=\"code\">Code from the app</label><input id=\"code\" name=\"code\" autocomplete=\"one-time-code\" inputmode=\"numeric\" maxlength=\"6\" autofocus>\n<button type=\"submit\">Confirm</button>\n",
                secret = esc(e["secret"].as_str().unwrap_or_default()),
                id = esc(e["id"].as_str().unwrap_or_default()),
            )
        })
        .unwrap_or_default();
    let passkey = if passkeys {
        format!(
            "<h2>Passkey</h2>\n<input type=\"hidden\" name=\"challenge_id\" value=\"\">\n<button type=\"button\" data-passkey=\"create\" data-slug=\"{}\">Create a passkey</button>\n",
            esc(slug)
        )
    } else {
        String::new()
    };
    shell(
        slug,
        "Set up a second factor",
        &format!(
            "<h1>Set up a second factor</h1>\n<p>{slug} requires a second factor to sign in.</p>\n{error}<form method=\"post\" action=\"/t/{slug}/login/enroll\">\n<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n<input type=\"hidden\" name=\"mfa_token\" value=\"{token}\">\n<input type=\"hidden\" name=\"return_to\" value=\"{rt}\">\n<input type=\"hidden\" name=\"credential\" value=\"\">\n{totp}{passkey}<p class=\"error\" data-passkey-error hidden></p>\n</form>\n",
            slug = esc(slug),
            csrf = esc(csrf),
            token = esc(mfa_token),
            rt = esc(return_to),
        ),
    )
}

/// The recovery codes, shown once, and where to go on.
fn recovery_page(slug: &str, codes: &[String], next: Option<&str>) -> String {
    let items: String = codes.iter().map(|c| format!("<li>{}</li>", esc(c))).collect();
    let next = match next {
        Some(to) => format!("<p><a href=\"{}\">Continue</a></p>\n", esc(to)),
        None => format!("<p>You are signed in to {}.</p>\n", esc(slug)),
    };
    shell(
        slug,
        "Recovery codes",
        &format!(
            "<h1>Save your recovery codes</h1>\n<p>Each code signs you in once if you lose your second factor. They are shown only now.</p>\n<ol class=\"codes\">{items}</ol>\n{next}"
        ),
    )
}

/// The hosted answer to a password sign-in that needs a second step: the second-factor
/// form, or the enrolment page (a TOTP enrolment is started for it).
pub(crate) async fn second_step(
    app: &App,
    t: &Tenant,
    code: &str,
    mfa_token: &str,
    methods: &[String],
    return_to: &str,
) -> Response {
    let (set, csrf) = csrf_for(app, &format!("/t/{}/login", t.slug));
    if code == "mfa_required" {
        let body = second_factor_page(
            &t.slug,
            "Two-step verification",
            &format!("/t/{}/login/mfa", t.slug),
            &csrf,
            mfa_token,
            return_to,
            methods,
            None,
        );
        return page(StatusCode::OK, body, &[set]);
    }
    match enrol_view(app, t, mfa_token, return_to, &csrf, None).await {
        Ok(body) => page(StatusCode::OK, body, &[set]),
        Err(e) => e.into_response(),
    }
}

/// The enrolment page of enrolment token `mfa_token`, with a fresh TOTP enrolment.
async fn enrol_view(
    app: &App,
    t: &Tenant,
    mfa_token: &str,
    return_to: &str,
    csrf: &str,
    error: Option<&str>,
) -> Result<String, ApiError> {
    let h = begin(t).await?;
    let who = factors_api::who(app, t, &h, Some(mfa_token)).await?;
    let policy = crate::api::admin::auth_policy::load(&h).await?;
    let totp = if policy.allows(crate::auth_policy::MfaMethod::Totp) {
        Some(factors_api::start_totp(app, t, &h, who.user(), "Authenticator app").await?)
    } else {
        None
    };
    crate::store::commit(&h).await?;
    let passkeys = policy.allows(crate::auth_policy::MfaMethod::Webauthn);
    Ok(enrol_page(&t.slug, csrf, mfa_token, return_to, totp.as_ref(), passkeys, error))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecondForm {
    csrf: String,
    mfa_token: String,
    #[serde(default)]
    return_to: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    credential: Option<String>,
    #[serde(default)]
    factor_id: Option<String>,
    #[serde(default)]
    challenge_id: Option<String>,
}

fn proof_of(form: &SecondForm) -> Option<Proof> {
    if let Some(c) = form.credential.as_deref().filter(|c| !c.is_empty()) {
        return serde_json::from_str(c).ok().map(Proof::Passkey);
    }
    let code = form.code.as_deref().map(str::trim).filter(|c| !c.is_empty())?;
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        Some(Proof::Otp(code.to_string()))
    } else {
        Some(Proof::Recovery(code.to_string()))
    }
}

/// Finish a hosted second step (sign-in at `/t/{slug}/login/mfa`, step-up at
/// `/t/{slug}/stepup`): the session cookie and the way back, or the form again.
async fn finish(app: &App, t: &Tenant, headers: &HeaderMap, peer: &SocketAddr, body: &[u8], path: &str) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<SecondForm>(body) else {
        return ApiError::bad_request("invalid_body", "expected the verification form").into_response();
    };
    let stepping = path.ends_with("/stepup");
    let heading = if stepping { "Confirm it is you" } else { "Two-step verification" };
    // The sign-in's CSRF cookie is the login page's; the step-up page has its own.
    let csrf_path = if stepping { path.to_string() } else { format!("/t/{}/login", t.slug) };
    let again = |status: StatusCode, message: &str, methods: &[String]| {
        let (set, csrf) = csrf_for(app, &csrf_path);
        let body =
            second_factor_page(&t.slug, heading, path, &csrf, &form.mfa_token, &form.return_to, methods, Some(message));
        page(status, body, &[set])
    };
    let all = ["totp".to_string(), "webauthn".to_string(), "recovery_code".to_string()];
    if !csrf_ok(app, headers, &form.csrf) {
        return again(StatusCode::FORBIDDEN, "The form expired. Please try again.", &all);
    }
    let Some(proof) = proof_of(&form) else {
        return again(StatusCode::BAD_REQUEST, "Enter a code or use a passkey.", &all);
    };
    let m = meta(headers, peer);
    let answer = flow::mfa_grant(app, t, &m, &form.mfa_token, proof, None).await;
    if !stepping {
        app.metrics.signin("mfa", &answer);
    }
    match answer {
        Ok(tokens) => {
            let clear = format!("gh_csrf=; Path={csrf_path}; Max-Age=0; HttpOnly; SameSite=Strict");
            signed_in(app, t, &tokens, &form.return_to, clear).await
        }
        Err(ApiError::Unauthorized { code: "mfa_token_invalid", .. }) => {
            let login = format!("/t/{}/login", t.slug);
            let body = shell(
                &t.slug,
                "Sign in again",
                &format!(
                    "<h1>Sign in again</h1>\n<p class=\"error\" role=\"alert\">This verification expired.</p>\n<p><a href=\"{}\">Sign in</a></p>\n",
                    esc(&login)
                ),
            );
            page(StatusCode::UNAUTHORIZED, body, &[])
        }
        Err(e @ (ApiError::Unauthorized { .. } | ApiError::Forbidden { .. })) => {
            let methods = {
                let h = t.db.lock().await;
                let user = match flow::live(&h, &form.mfa_token, &["signin", "stepup"], crate::now()).await {
                    Ok(Some(c)) => c.user_id.unwrap_or_default(),
                    _ => String::new(),
                };
                match crate::api::admin::auth_policy::load(&h).await {
                    Ok(p) => flow::methods(&h, &user, &p).await.unwrap_or_default(),
                    Err(_) => Vec::new(),
                }
            };
            let status = e.status();
            let message = if e.code() == "mfa_method_not_allowed" {
                "This organisation does not allow that method."
            } else {
                "That code or passkey was not accepted."
            };
            again(status, message, &methods)
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /t/{slug}/login/mfa`: the second-factor form of a hosted sign-in.
pub(crate) async fn login_mfa(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let t = match tenant(&app, &slug, &format!("/t/{slug}/login/mfa")).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    finish(&app, &t, &headers, &peer, &body, &format!("/t/{}/login/mfa", t.slug)).await
}

/// `POST /t/{slug}/login/enroll`: the enrolment form of a hosted sign-in (a TOTP code
/// for the pending factor, or a registered passkey); the recovery codes page with the
/// session cookie.
pub(crate) async fn login_enroll(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let t = match tenant(&app, &slug, &format!("/t/{slug}/login/enroll")).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let Ok(form) = serde_urlencoded::from_bytes::<SecondForm>(&body) else {
        return ApiError::bad_request("invalid_body", "expected the enrolment form").into_response();
    };
    let login_path = format!("/t/{}/login", t.slug);
    let retry = |message: &'static str| {
        let app = &app;
        let t = &t;
        let form = &form;
        let login_path = &login_path;
        async move {
            let (set, csrf) = csrf_for(app, login_path);
            match enrol_view(app, t, &form.mfa_token, &form.return_to, &csrf, Some(message)).await {
                Ok(b) => page(StatusCode::UNAUTHORIZED, b, &[set]),
                Err(e) => e.into_response(),
            }
        }
    };
    if !csrf_ok(&app, &headers, &form.csrf) {
        return retry("The form expired. Please try again.").await;
    }
    let m = meta(&headers, &peer);
    let run = async {
        let h = begin(&t).await?;
        let who = factors_api::who(&app, &t, &h, Some(&form.mfa_token)).await?;
        if !matches!(who, Who::Enrolling { .. }) {
            return Err(flow::token_invalid());
        }
        match (form.credential.as_deref().filter(|c| !c.is_empty()), form.code.as_deref(), form.factor_id.as_deref()) {
            (Some(cred), _, _) => {
                let cred: Value = serde_json::from_str(cred)
                    .map_err(|_| ApiError::bad_request("invalid_request", "credential is not a WebAuthn credential"))?;
                let challenge = form.challenge_id.clone().unwrap_or_default();
                factors_api::finish_passkey(&app, &t, &m, h, who, &challenge, &cred, None).await
            }
            (None, Some(code), Some(id)) => factors_api::confirm_totp_inner(&app, &t, &m, h, who, id, code).await,
            _ => Err(ApiError::bad_request("invalid_request", "enter the code from the app")),
        }
    };
    match run.await {
        Ok(out) => {
            let access = out["tokens"]["access_token"].as_str().unwrap_or_default();
            let codes: Vec<String> = out["recovery_codes"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c.as_str().map(String::from)).collect())
                .unwrap_or_default();
            let tp = match org_row(&*t.db.lock().await).await {
                Ok((_, _, tp, _)) => tp,
                Err(e) => return e.into_response(),
            };
            let next = safe_return_to(&tp, &form.return_to).or_else(|| own_page(&t.slug, &form.return_to));
            let clear = format!("gh_csrf=; Path={login_path}; Max-Age=0; HttpOnly; SameSite=Strict");
            page(
                StatusCode::OK,
                recovery_page(&t.slug, &codes, next.as_deref()),
                &[session_cookie(&app, access), clear],
            )
        }
        Err(ApiError::Unauthorized { code: "mfa_invalid_code", .. }) => {
            retry("That code was not accepted. Scan the new code and try again.").await
        }
        Err(ApiError::BadRequest { code: "passkey_invalid", .. }) => retry("The passkey was not accepted.").await,
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct StepUpQuery {
    #[serde(default)]
    return_to: Option<String>,
    #[serde(default)]
    max_age: Option<u64>,
}

/// `GET /t/{slug}/stepup?return_to=…&max_age=…`: the step-up form for the session in
/// the cookie (no session: the sign-in page, which ends in a fresh authentication too).
pub(crate) async fn stepup_form(
    State(app): AppState,
    Path(slug): Path<String>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<StepUpQuery>,
) -> Response {
    let path = format!("/t/{slug}/stepup");
    let t = match tenant(&app, &slug, &path).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let return_to = q.return_to.unwrap_or_default();
    let _ = q.max_age; // any step-up here is a fresh authentication (auth_time = now)
    let cookie_name = app.template().settings.session_cookie.clone();
    let opened = match cookie(&headers, &cookie_name) {
        Some(tok) => stepup::open(&app, &t, &tok).await,
        None => Err(ApiError::unauthorized("credential_missing", "no session")),
    };
    match opened {
        Ok((mfa_token, methods, _)) => {
            let (set, csrf) = csrf_for(&app, &path);
            let body =
                second_factor_page(&t.slug, "Confirm it is you", &path, &csrf, &mfa_token, &return_to, &methods, None);
            page(StatusCode::OK, body, &[set])
        }
        Err(ApiError::Conflict { code: "mfa_not_enrolled", .. }) => {
            let body = shell(
                &t.slug,
                "Second factor needed",
                "<h1>Second factor needed</h1>\n<p>This page needs a second factor, and your account has none yet. Add an authenticator app or a passkey to your account first.</p>\n",
            );
            page(StatusCode::FORBIDDEN, body, &[])
        }
        Err(ApiError::Unauthorized { .. } | ApiError::Forbidden { .. }) => {
            let rt = percent_encoding::utf8_percent_encode(&return_to, percent_encoding::NON_ALPHANUMERIC);
            let mut r = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/t/{}/login?return_to={rt}", t.slug)) {
                r.headers_mut().insert("location", v);
            }
            r
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /t/{slug}/stepup`: finish the step-up; a fresh session cookie and the way back.
pub(crate) async fn stepup_submit(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let t = match tenant(&app, &slug, &format!("/t/{slug}/stepup")).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    finish(&app, &t, &headers, &peer, &body, &format!("/t/{}/stepup", t.slug)).await
}

/// The passkey buttons' script: fetch the options, call `navigator.credentials`, put the
/// answer in the form and submit it.
const SCRIPT: &str = r#"(function () {
  "use strict";
  function bytes(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    return Uint8Array.from(atob(s), function (c) { return c.charCodeAt(0); });
  }
  function text(buf) {
    var s = "", b = new Uint8Array(buf);
    for (var i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function post(url, init) {
    return fetch(url, init).then(function (r) {
      if (!r.ok) throw new Error("the server refused (" + r.status + ")");
      return r.json();
    });
  }
  document.querySelectorAll("[data-passkey]").forEach(function (btn) {
    btn.addEventListener("click", function (ev) {
      ev.preventDefault();
      var form = btn.closest("form"), slug = encodeURIComponent(btn.dataset.slug);
      var field = form.querySelector("[name=mfa_token]"), token = field ? field.value : "";
      // The factor page registers with its session cookie and CSRF token instead.
      var register = btn.dataset.register;
      var done;
      if (btn.dataset.passkey === "get") {
        done = post("/t/" + slug + "/mfa/challenge", {
          method: "POST", headers: { "content-type": "application/json" },
          body: JSON.stringify({ mfa_token: token })
        }).then(function (o) {
          var pk = o.publicKey;
          pk.challenge = bytes(pk.challenge);
          (pk.allowCredentials || []).forEach(function (c) { c.id = bytes(c.id); });
          return navigator.credentials.get({ publicKey: pk });
        }).then(function (c) {
          return { id: c.id, rawId: text(c.rawId), type: c.type, clientExtensionResults: {}, response: {
            authenticatorData: text(c.response.authenticatorData), clientDataJSON: text(c.response.clientDataJSON),
            signature: text(c.response.signature),
            userHandle: c.response.userHandle ? text(c.response.userHandle) : null } };
        });
      } else {
        done = post(register || "/t/" + slug + "/mfa/passkeys/register", {
          method: "POST", headers: register ? { "x-csrf-token": form.querySelector("[name=csrf]").value }
            : { "authorization": "Bearer " + token }
        }).then(function (o) {
          form.querySelector("[name=challenge_id]").value = o.challenge_id;
          var pk = o.publicKey;
          pk.challenge = bytes(pk.challenge);
          pk.user.id = bytes(pk.user.id);
          (pk.excludeCredentials || []).forEach(function (c) { c.id = bytes(c.id); });
          return navigator.credentials.create({ publicKey: pk });
        }).then(function (c) {
          return { id: c.id, rawId: text(c.rawId), type: c.type, clientExtensionResults: {}, response: {
            attestationObject: text(c.response.attestationObject), clientDataJSON: text(c.response.clientDataJSON) } };
        });
      }
      done.then(function (cred) {
        form.querySelector("[name=credential]").value = JSON.stringify(cred);
        form.submit();
      }).catch(function (e) {
        var p = form.querySelector("[data-passkey-error]");
        p.textContent = "The passkey did not work: " + e.message;
        p.hidden = false;
      });
    });
  });
})();
"#;

/// `GET /t/{slug}/mfa/webauthn.js`: the passkey buttons' script (same origin, so the
/// pages' CSP needs no inline script).
pub(crate) async fn script() -> Response {
    let mut r = (StatusCode::OK, [("content-type", "text/javascript; charset=utf-8")], SCRIPT).into_response();
    r.headers_mut().insert("cache-control", HeaderValue::from_static("max-age=3600"));
    r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show_and_offer_the_methods_given() {
        let p = second_factor_page(
            "acme",
            "Two-step verification",
            "/t/acme/login/mfa",
            "c\"srf",
            "ghm_x",
            "\"><script>",
            &["totp".into(), "webauthn".into()],
            Some("<b>no</b>"),
        );
        assert!(p.contains("&quot;&gt;&lt;script&gt;") && !p.contains("\"><script>"));
        assert!(p.contains("&lt;b&gt;no&lt;/b&gt;"));
        assert!(p.contains("data-passkey=\"get\"") && p.contains("name=\"code\""));
        assert!(p.contains("<script src=\"/t/acme/mfa/webauthn.js\" defer></script>"));
        assert_eq!(p.matches("<script").count(), 1, "no inline script");
        let p = second_factor_page("acme", "x", "/a", "c", "t", "", &["webauthn".into()], None);
        assert!(!p.contains("name=\"code\""), "no code field without a code method");
        let e = serde_json::json!({ "id": "mf_1", "secret": "ABC", "qr_svg": "<svg></svg>" });
        let p = enrol_page("acme", "c", "t", "", Some(&e), false, None);
        assert!(
            p.contains("data:image/svg+xml;base64,") && p.contains(">ABC<") && !p.contains("data-passkey=\"create\"")
        );
        let p = recovery_page("acme", &["aaaa-bbbb".into()], Some("https://app.acme.test/?a=1&b=2"));
        assert!(p.contains("<li>aaaa-bbbb</li>") && p.contains("a=1&amp;b=2"));
    }

    #[test]
    fn forms_read_codes_recovery_codes_and_credentials() {
        let f = |code: Option<&str>, cred: Option<&str>| SecondForm {
            csrf: String::new(),
            mfa_token: String::new(),
            return_to: String::new(),
            code: code.map(String::from),
            credential: cred.map(String::from),
            factor_id: None,
            challenge_id: None,
        };
        assert!(matches!(proof_of(&f(Some(" 123456 "), None)), Some(Proof::Otp(c)) if c == "123456"));
        assert!(matches!(proof_of(&f(Some("abcd-efgh-ijkm-npqr"), None)), Some(Proof::Recovery(_))));
        assert!(matches!(proof_of(&f(Some("1"), Some("{\"id\":\"x\"}"))), Some(Proof::Passkey(_))));
        assert!(proof_of(&f(Some(""), Some(""))).is_none());
        assert!(proof_of(&f(None, Some("not json"))).is_none());
    }
}
