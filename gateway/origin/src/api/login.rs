//! The hosted sign-in page: HTML, the CSRF double-submit, and the signed-in answer.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::tokens::{self};

use crate::api::app::App;
use crate::api::extract::{meta, residency, tenant, AppState, Peer, QueryParams, RawBody};
use crate::api::pages::{cookie, csrf_mac, esc, html, signed_in};
use crate::api::sso::connections::buttons;
use crate::api::tenant::{issue, password_session};

/// The sign-in page: the password form, then "Continue with …" for each enabled SSO
/// connection (`(id, name)`) and home-realm discovery by email.
pub(crate) fn login_page(
    slug: &str,
    csrf: &str,
    return_to: &str,
    error: Option<&str>,
    sso: &[(String, String)],
) -> String {
    let error = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e))).unwrap_or_default();
    let rt = percent_encoding::utf8_percent_encode(return_to, percent_encoding::NON_ALPHANUMERIC).to_string();
    let sso = if sso.is_empty() {
        String::new()
    } else {
        let mut b = String::from("<hr>\n");
        for (id, name) in sso {
            b.push_str(&format!(
                "<a class=\"sso\" href=\"/t/{slug}/sso/{id}/start?return_to={rt}\">Continue with {name}</a>\n",
                slug = esc(slug),
                id = esc(id),
                rt = esc(&rt),
                name = esc(name)
            ));
        }
        b.push_str(&format!(
            "<form method=\"get\" action=\"/t/{slug}/sso/discover\"><input type=\"hidden\" name=\"return_to\" value=\"{return_to}\"><label for=\"sso-email\">Work email</label><input id=\"sso-email\" name=\"email\" type=\"email\" required><button type=\"submit\">Continue with single sign-on</button></form>\n",
            slug = esc(slug),
            return_to = esc(return_to)
        ));
        b
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · {slug}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}}label,input,button,a.sso{{display:block;width:100%;margin:.4rem 0}}a.sso{{padding:.6rem;border:1px solid #888;text-align:center;box-sizing:border-box}}input{{padding:.5rem}}button{{padding:.6rem}}.error{{color:#b00020}}</style>
</head><body>
<h1>Sign in to {slug}</h1>
{error}
<form method="post" action="/t/{slug}/login">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="return_to" value="{return_to}">
<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
{sso}</body></html>
"#,
        slug = esc(slug),
        return_to = esc(return_to),
        csrf = esc(csrf),
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    #[serde(default)]
    return_to: Option<String>,
}

/// A fresh CSRF pair: the nonce for the cookie, the page's token.
pub(crate) fn csrf_pair(app: &App, slug: &str) -> (String, String) {
    let nonce = tokens::opaque("");
    let cookie = format!("gh_csrf={nonce}; Path=/t/{slug}/login; HttpOnly; SameSite=Strict{}", app.secure_cookie());
    (cookie, csrf_mac(app, &nonce))
}

pub(crate) async fn login_form(
    State(app): AppState,
    Path(slug): Path<String>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<LoginQuery>,
) -> Response {
    let path = format!("/t/{slug}/login");
    let t = match tenant(&app, &slug, &path).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let (set, token) = csrf_pair(&app, &t.slug);
    let buttons = match buttons(&t).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    html(StatusCode::OK, login_page(&t.slug, &token, q.return_to.as_deref().unwrap_or(""), None, &buttons), &[set])
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginForm {
    email: String,
    password: String,
    csrf: String,
    #[serde(default)]
    return_to: String,
}

pub(crate) async fn login_submit(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let t = match tenant(&app, &slug, &format!("/t/{slug}/login")).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return ApiError::bad_request("invalid_body", "expected the sign-in form").into_response();
    };
    // Double-submit, bound to this origin: the form's token is an HMAC of the cookie's nonce.
    let csrf_ok = cookie(&headers, "gh_csrf").is_some_and(|nonce| {
        let want = csrf_mac(&app, &nonce);
        want.len() == form.csrf.len() && bool::from(want.as_bytes().ct_eq(form.csrf.as_bytes()))
    });
    if !csrf_ok {
        let (set, token) = csrf_pair(&app, &t.slug);
        let buttons = buttons(&t).await.unwrap_or_default();
        let page =
            login_page(&t.slug, &token, &form.return_to, Some("The form expired. Please sign in again."), &buttons);
        return html(StatusCode::FORBIDDEN, page, &[set]);
    }
    let m = meta(&headers, &peer);
    let session = password_session(&app, &t, &m, &form.email, &form.password).await;
    app.metrics.signin("password", &session);
    let issued = match session {
        Ok(s) => issue(&app, &t, &m, s, None).await,
        Err(e) => Err(e),
    };
    let tokens = match issued {
        Ok(v) => v,
        Err(
            e @ (ApiError::InvalidCredentials
            | ApiError::InvalidGrant
            | ApiError::Forbidden {
                code: "sso_required" | "user_disabled" | "tenant_suspended" | "email_unverified",
                ..
            }),
        ) => {
            let (status, message) = match e {
                ApiError::Forbidden { code: "user_disabled", .. } => {
                    (StatusCode::FORBIDDEN, "This account is deactivated. Ask an administrator of the organisation.")
                }
                ApiError::Forbidden { code: "tenant_suspended", .. } => {
                    (StatusCode::FORBIDDEN, "This organisation is suspended.")
                }
                ApiError::Forbidden { code: "email_unverified", .. } => {
                    (StatusCode::FORBIDDEN, "Verify your email address first: a link is on its way to it.")
                }
                ApiError::Forbidden { .. } => {
                    (StatusCode::FORBIDDEN, "This organisation signs in with single sign-on: use a button below.")
                }
                _ => (StatusCode::UNAUTHORIZED, "Invalid email or password."),
            };
            let (set, token) = csrf_pair(&app, &t.slug);
            let buttons = buttons(&t).await.unwrap_or_default();
            let page = login_page(&t.slug, &token, &form.return_to, Some(message), &buttons);
            return html(status, page, &[set]);
        }
        Err(ApiError::SecondStep { code, mfa_token, methods, .. }) => {
            return crate::api::mfa::pages::second_step(&app, &t, code, &mfa_token, &methods, &form.return_to).await;
        }
        Err(e) => return e.into_response(),
    };
    let clear_csrf = format!("gh_csrf=; Path=/t/{}/login; Max-Age=0; HttpOnly; SameSite=Strict", t.slug);
    signed_in(&app, &t, &tokens, &form.return_to, clear_csrf).await
}
