//! The hosted sign-in page: HTML, the CSRF double-submit, and the signed-in answer.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::bundles::TenantPolicy;
use crate::error::ApiError;
use crate::tokens::{self};

use crate::api::admin::orgs::org_row;
use crate::api::app::App;
use crate::api::extract::{meta, residency, tenant, AppState, Peer, QueryParams, RawBody, Tenant};
use crate::api::sso::connections::buttons;
use crate::api::tenant::{issue, password_session};

/// HTML-escape text for element content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// `return_to` if it is an absolute http(s) URL on one of the tenant's hosts (no
/// credentials in it); nothing else is ever redirected to.
pub(crate) fn safe_return_to(tp: &TenantPolicy, return_to: &str) -> Option<String> {
    if return_to.len() > 2048 {
        return None;
    }
    let uri: axum::http::Uri = return_to.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    if !matches!(scheme, "http" | "https") || authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    tp.hosts.iter().any(|p| gatehouse_core::access::HostPattern::parse(p).matches(&host)).then(|| return_to.to_string())
}

pub(crate) fn csrf_mac(app: &App, nonce: &str) -> String {
    use hmac::{Mac, SimpleHmac};
    let mut mac =
        <SimpleHmac<Sha256> as Mac>::new_from_slice(&app.secrets.csrf_key).expect("HMAC takes any key length");
    mac.update(nonce.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all("cookie").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

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

pub(crate) fn html(status: StatusCode, body: String, set_cookies: &[String]) -> Response {
    let mut r = (status, [("content-type", "text/html; charset=utf-8")], body).into_response();
    let h = r.headers_mut();
    // The pages must not be framed or cached.
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append("set-cookie", v);
        }
    }
    r
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
    let issued = match password_session(&app, &t, &m, &form.email, &form.password).await {
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

/// The session cookie holding `access` (the access token edges read).
pub(crate) fn session_cookie(app: &App, access: &str) -> String {
    let domain = app.cfg.signin.cookie_domain.as_deref().map(|d| format!("; Domain={d}")).unwrap_or_default();
    format!(
        "{}={access}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{domain}{}",
        app.template().settings.session_cookie,
        app.cfg.tokens.access_ttl_secs,
        app.secure_cookie()
    )
}

/// The answer to a finished sign-in (password or SSO): the session cookie, and a
/// redirect to `return_to` when it is one of the tenant's hosts (a page otherwise).
pub(crate) async fn signed_in(
    app: &App,
    t: &Tenant,
    tokens: &Value,
    return_to: &str,
    clear_cookie: String,
) -> Response {
    let tp = match org_row(&*t.db.lock().await).await {
        Ok((_, _, tp, _)) => tp,
        Err(e) => return e.into_response(),
    };
    let session = session_cookie(app, tokens["access_token"].as_str().unwrap_or_default());
    match safe_return_to(&tp, return_to) {
        Some(to) => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers_mut().insert("location", v);
            }
            for c in [session, clear_cookie] {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    r.headers_mut().append("set-cookie", v);
                }
            }
            r
        }
        // No (acceptable) destination: say so here rather than redirect anywhere.
        None => html(
            StatusCode::OK,
            format!("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signed in</title></head><body><h1>Signed in to {}</h1></body></html>\n", esc(&t.slug)),
            &[session, clear_cookie],
        ),
    }
}
