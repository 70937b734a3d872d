//! The MFA tests' harness: an origin on loopback with a `localhost` public URL, HTTP
//! helpers, and TOTP codes computed with `totp-rs`.

// Each test binary uses part of the harness.
#![allow(dead_code)]

use std::path::Path;

use serde_json::{json, Value};

// The origin harness all the origin's tests share (`tests/support/origin.rs`).
#[path = "../support/origin.rs"]
mod common;
#[allow(unused_imports)]
pub use common::{call, claims, js, Origin, EDGE, OPERATOR};

/// An origin on loopback whose public URL is `http://localhost:{port}` (a WebAuthn
/// relying party id must be a domain name).
pub async fn start(root: &Path) -> Origin {
    let port = common::free_port();
    let mut toml = common::config("eu-west", port, "localhost", &[("eu-west", port)]);
    toml.push_str("max_failures = 5\nlockout_secs = 600\nmail_dir = \"mail\"\n");
    common::launch(&root.join("eu-west"), port, format!("http://localhost:{port}"), &toml).await
}

pub async fn create_org(o: &Origin, slug: &str) {
    common::create_org(o, slug, slug, "team").await;
}

pub async fn password(o: &Origin, slug: &str, email: &str, pw: &str) -> (u16, Value) {
    common::sign_in(o, slug, email, pw, &[]).await
}

pub async fn add_user(o: &Origin, slug: &str, admin: &str, email: &str) {
    let (s, v) = js(
        "POST",
        &format!("{}/v1/orgs/{slug}/users", o.url),
        Some(admin),
        Some(json!({ "email": email, "password": "member password 1", "role": "viewer" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
}

pub fn generator(secret_b32: &str, email: &str) -> totp_rs::Totp {
    let secret = totp_rs::Secret::try_from_base32(secret_b32).unwrap();
    totp_rs::Builder::new().with_secret(secret).with_account_name(email).build().unwrap()
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Wait until at least 8 seconds remain in the current 30-second step, so the codes
/// computed from `now()` mean the same step to the origin during the next checks.
pub async fn early_in_step() -> u64 {
    while now() % 30 > 21 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    now()
}

pub async fn mfa_grant(o: &Origin, slug: &str, token: &str, field: &str, value: Value) -> (u16, Value) {
    let mut body = json!({ "grant_type": "mfa", "mfa_token": token });
    body[field] = value;
    js("POST", &format!("{}/t/{slug}/token", o.url), None, Some(body)).await
}

/// Enrol TOTP with `bearer` (access or enrolment token), confirmed with the code of
/// `at`: (factor id, base32 secret, confirm answer).
pub async fn enrol_totp(o: &Origin, slug: &str, bearer: &str, email: &str, at: u64) -> (String, String, Value) {
    let (s, e) = js("POST", &format!("{}/t/{slug}/mfa/totp", o.url), Some(bearer), None).await;
    assert_eq!(s, 201, "{e}");
    let secret = e["secret"].as_str().unwrap().to_string();
    let id = e["id"].as_str().unwrap().to_string();
    let code = generator(&secret, email).generate(at).to_string();
    let (s, c) =
        js("POST", &format!("{}/t/{slug}/mfa/totp/{id}/confirm", o.url), Some(bearer), Some(json!({ "code": code })))
            .await;
    assert_eq!(s, 200, "{c}");
    (id, secret, c)
}

/// A form POST with `cookies`; (status, headers, page).
pub async fn post_form(url: &str, fields: &[(&str, &str)], cookies: &str) -> (u16, hyper::HeaderMap, String) {
    let body = serde_urlencoded::to_string(fields).unwrap();
    let (s, h, b) =
        call("POST", url, None, Some(("application/x-www-form-urlencoded", body)), &[("cookie", cookies)]).await;
    (s, h, String::from_utf8(b).unwrap())
}

/// The `name=value` of cookie `name` among the response's `set-cookie` fields.
pub fn set_cookie(h: &hyper::HeaderMap, name: &str) -> Option<String> {
    h.get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")) && !c.contains("Max-Age=0"))
        .map(|c| c.split(';').next().unwrap().to_string())
}

/// The value of hidden field `name` in a page.
pub fn field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    page.split(&marker).nth(1).unwrap_or_else(|| panic!("no {name} in {page}")).split('"').next().unwrap().to_string()
}
