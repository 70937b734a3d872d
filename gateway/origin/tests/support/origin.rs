//! One way for the origin's integration tests to run an origin: its secrets and
//! `origin.toml` written to a directory, the app served on loopback, and HTTP helpers
//! (raw request, JSON request, token claims, a new organisation, a password sign-in).

// Each test binary uses part of the harness.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use gatehouse_origin::{App, OriginConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

/// The operator's bearer token.
pub const OPERATOR: &str = "operator-token-0123456789";
/// The token edges fetch bundles with.
pub const EDGE: &str = "edge-token-0123456789abcdef";
/// The token regions call each other with.
pub const PEER: &str = "peer-token-0123456789abcdef";
/// The owner password of every organisation [`create_org`] makes.
pub const OWNER_PASSWORD: &str = "owner password 1";

/// A running origin; it stops when dropped.
pub struct Origin {
    /// The URL the tests call it at.
    pub url: String,
    /// Its directory (secrets, `origin.toml`, `data/`, `mail/`).
    pub dir: PathBuf,
    /// The bundle-signing public key edges pin (PEM).
    pub bundle_public_pem: String,
    /// The app it serves, for looking into its stores.
    pub app: Arc<App>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A port free on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The head of an `origin.toml`: `region` listening on `port` with public URL
/// `http://{host}:{port}`, `regions` (name → port on `host`; no section when empty), the
/// secrets [`launch`] writes, and cheap Argon2. The caller appends the rest of `[signin]`
/// and any further sections.
pub fn config(region: &str, port: u16, host: &str, regions: &[(&str, u16)]) -> String {
    let regions: String = if regions.is_empty() {
        String::new()
    } else {
        let list: String = regions.iter().map(|(r, p)| format!("{r} = \"http://{host}:{p}\"\n")).collect();
        format!("[regions]\n{list}")
    };
    format!(
        r#"
region = "{region}"
listen = "127.0.0.1:{port}"
public_url = "http://{host}:{port}"
data_dir = "data"
{regions}
[secrets]
bundle_signing_key = "bundle.pem"
edge_tokens = "edge.tokens"
operator_token = "operator.token"
peer_token = "peer.token"
api_key_secret = "apikey.secret"
[signin]
argon2_memory_kib = 64
argon2_iterations = 1
"#
    )
}

/// Write the secrets and `toml` as `origin.toml` into `dir`, open the app and serve it on
/// `port` (the one `toml` listens on); the tests call it at `url`.
pub async fn launch(dir: &Path, port: u16, url: String, toml: &str) -> Origin {
    log_to_test_output();
    std::fs::create_dir_all(dir).unwrap();
    let (pem, public_pem) = gatehouse_bundler::keys::generate_bundle_keys();
    std::fs::write(dir.join("bundle.pem"), pem).unwrap();
    std::fs::write(dir.join("edge.tokens"), format!("edge-1 {EDGE}\n")).unwrap();
    std::fs::write(dir.join("operator.token"), OPERATOR).unwrap();
    std::fs::write(dir.join("peer.token"), PEER).unwrap();
    std::fs::write(dir.join("apikey.secret"), "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0NQ==").unwrap();
    std::fs::write(dir.join("origin.toml"), toml).unwrap();
    let cfg = OriginConfig::load(&dir.join("origin.toml")).unwrap();
    let app = Arc::new(App::open(cfg).await.unwrap());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gatehouse_origin::api::serve(app.clone(), listener, async move {
        let _ = rx.await;
    }));
    Origin { url, dir: dir.to_path_buf(), bundle_public_pem: public_pem, app, _stop: tx }
}

/// Print the origin's warnings and errors (`RUST_LOG` overrides) into the test's output, so
/// a failing test shows why the origin answered 500; once per test binary.
pub fn log_to_test_output() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// One HTTP request with `headers` and a raw body; (status, headers, body). A `localhost`
/// URL (the public URL of an origin that is a WebAuthn relying party) is reached on
/// 127.0.0.1; the `host` header is the URL's authority.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, hyper::HeaderMap, Vec<u8>) {
    let uri: hyper::Uri = url.parse().unwrap();
    let port = uri.port_u16().unwrap();
    let host = uri.host().unwrap().replace("localhost", "127.0.0.1");
    let addr: SocketAddr = format!("{host}:{port}").parse().unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(uri.path_and_query().unwrap().as_str())
        .header("host", format!("{}:{port}", uri.host().unwrap()));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = send.send_request(b.body(Full::new(Bytes::from(body.unwrap_or_default()))).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    (status, h, resp.into_body().collect().await.unwrap().to_bytes().to_vec())
}

/// One HTTP request with an optional bearer token, an optional (content type, body) and
/// `extra` headers; (status, headers, body).
pub async fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, String)>,
    extra: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, Vec<u8>) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    if let Some((ct, _)) = &body {
        headers.push(("content-type", ct));
    }
    headers.extend_from_slice(extra);
    request(method, url, &headers, body.map(|(_, data)| data.into_bytes())).await
}

/// A request with an optional JSON body; (status, JSON answer or `null`).
pub async fn js(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let (s, _, b) = call(method, url, token, body.map(|v| ("application/json", v.to_string())), &[]).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// The claims of a JWT (not verified: the origin issued it; this reads what it says).
pub fn claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Create organisation `slug` (named `name`, tier `tier`, owner `owner@{slug}.test` with
/// [`OWNER_PASSWORD`]) as the operator; the created organisation.
pub async fn create_org(o: &Origin, slug: &str, name: &str, tier: &str) -> Value {
    let body = json!({ "slug": slug, "name": name, "tier": tier, "owner_email": format!("owner@{slug}.test"),
        "owner_password": OWNER_PASSWORD });
    let (s, v) = js("POST", &format!("{}/v1/orgs", o.url), Some(OPERATOR), Some(body)).await;
    assert_eq!(s, 201, "{v}");
    v
}

/// A password sign-in to `slug` with `extra` headers; (status, token answer).
pub async fn sign_in(o: &Origin, slug: &str, email: &str, password: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let body = json!({ "grant_type": "password", "email": email, "password": password }).to_string();
    let url = format!("{}/t/{slug}/token", o.url);
    let (s, _, b) = call("POST", &url, None, Some(("application/json", body)), extra).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}
