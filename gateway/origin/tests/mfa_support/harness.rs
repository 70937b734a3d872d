//! The MFA tests' harness: an origin on loopback with a `localhost` public URL, HTTP
//! helpers, and TOTP codes computed with `totp-rs`.

// Each test binary uses part of the harness.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use gatehouse_origin::{App, OriginConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

pub const OPERATOR: &str = "operator-token-0123456789";
/// The token edges fetch bundles with.
pub const EDGE: &str = "edge-token-0123456789abcdef";

pub struct Origin {
    pub url: String,
    /// The bundle-signing public key edges pin (PEM).
    pub bundle_public_pem: String,
    _stop: tokio::sync::oneshot::Sender<()>,
    _app: Arc<App>,
}

/// An origin on loopback whose public URL is `http://localhost:{port}` (a WebAuthn
/// relying party id must be a domain name).
pub async fn start(root: &Path) -> Origin {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = root.join("eu-west");
    std::fs::create_dir_all(&dir).unwrap();
    let (pem, public_pem) = gatehouse_bundler::keys::generate_bundle_keys();
    std::fs::write(dir.join("bundle.pem"), pem).unwrap();
    std::fs::write(dir.join("edge.tokens"), format!("edge-1 {EDGE}\n")).unwrap();
    std::fs::write(dir.join("operator.token"), OPERATOR).unwrap();
    std::fs::write(dir.join("peer.token"), "peer-token-0123456789abcdef").unwrap();
    std::fs::write(dir.join("apikey.secret"), "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0NQ==").unwrap();
    let toml = format!(
        r#"
region = "eu-west"
listen = "127.0.0.1:{port}"
public_url = "http://localhost:{port}"
data_dir = "data"
[regions]
eu-west = "http://localhost:{port}"
[secrets]
bundle_signing_key = "bundle.pem"
edge_tokens = "edge.tokens"
operator_token = "operator.token"
peer_token = "peer.token"
api_key_secret = "apikey.secret"
[signin]
argon2_memory_kib = 64
argon2_iterations = 1
max_failures = 5
lockout_secs = 600
mail_dir = "mail"
"#
    );
    std::fs::write(dir.join("origin.toml"), toml).unwrap();
    let cfg = OriginConfig::load(&dir.join("origin.toml")).unwrap();
    let app = Arc::new(App::open(cfg).await.unwrap());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gatehouse_origin::api::serve(app.clone(), listener, async move {
        let _ = rx.await;
    }));
    Origin { url: format!("http://localhost:{port}"), bundle_public_pem: public_pem, _stop: tx, _app: app }
}

/// One HTTP request (JSON or form body); returns (status, headers, body).
pub async fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, String)>,
    extra: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, Vec<u8>) {
    let uri: hyper::Uri = url.parse().unwrap();
    let port = uri.port_u16().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(uri.path_and_query().unwrap().as_str())
        .header("host", format!("localhost:{port}"));
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let data = match body {
        Some((ct, data)) => {
            b = b.header("content-type", ct);
            data
        }
        None => String::new(),
    };
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let resp = send.send_request(b.body(Full::new(Bytes::from(data))).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.into_body().collect().await.unwrap().to_bytes().to_vec())
}

pub async fn js(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let (s, _, b) = call(method, url, token, body.map(|v| ("application/json", v.to_string())), &[]).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// The claims of a JWT (not verified: the origin issued it; this reads what it says).
pub fn claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

pub async fn create_org(o: &Origin, slug: &str) {
    let (s, v) = js(
        "POST",
        &format!("{}/v1/orgs", o.url),
        Some(OPERATOR),
        Some(json!({ "slug": slug, "name": slug, "tier": "team", "owner_email": format!("owner@{slug}.test"), "owner_password": "owner password 1" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
}

pub async fn password(o: &Origin, slug: &str, email: &str, pw: &str) -> (u16, Value) {
    js(
        "POST",
        &format!("{}/t/{slug}/token", o.url),
        None,
        Some(json!({ "grant_type": "password", "email": email, "password": pw })),
    )
    .await
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
