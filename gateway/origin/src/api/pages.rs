//! What every hosted page shares: HTML escaping, the answer with its framing, caching and
//! CSP headers, cookies, the CSRF MAC, the `return_to` rule, and the signed-in answer
//! (session cookie and redirect).

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::Sha256;

use crate::bundles::TenantPolicy;

use crate::api::admin::orgs::org_row;
use crate::api::app::App;
use crate::api::extract::Tenant;

/// The banner of a hosted page while its session is an impersonation's: "Signed in as
/// <user> by <actor> until <time> — <reason>" (escaped); empty for any other session.
pub(crate) async fn impersonation_banner(h: &libsql::Connection, sid: &str) -> crate::error::ApiResult<String> {
    let Some(i) = crate::store::impersonations::of_session(h, sid).await? else { return Ok(String::new()) };
    let who = crate::store::users::email_of(h, &i.user_id).await?.unwrap_or(i.user_id);
    let until = chrono::DateTime::from_timestamp(i.ends_at, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    Ok(format!(
        "<p class=\"impersonation\" role=\"status\"><strong>Signed in as {} by {} until {}</strong> — {}</p>\n",
        esc(&who),
        esc(&i.actor),
        esc(&until),
        esc(&i.reason)
    ))
}

/// `page` with `banner` at the top of its body.
pub(crate) fn with_banner(page: String, banner: &str) -> String {
    if banner.is_empty() {
        return page;
    }
    page.replacen("<body>\n", &format!("<body>\n{banner}"), 1)
}

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

/// `return_to` if it is one of the origin's own pages of tenant `slug` that a finished
/// sign-in or step-up may land on: exactly the relative path `/t/{slug}/mfa` (the factor
/// page) or `/t/{slug}/account`. A relative path stays on the origin's host, so no other
/// host can be named; nothing else relative is accepted.
pub(crate) fn own_page(slug: &str, return_to: &str) -> Option<String> {
    [format!("/t/{slug}/mfa"), format!("/t/{slug}/account")].into_iter().find(|p| p == return_to)
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
    match safe_return_to(&tp, return_to).or_else(|| own_page(&t.slug, return_to)) {
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
