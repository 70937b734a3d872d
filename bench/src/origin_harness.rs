//! An origin on loopback for the benchmarks (`origin_bench`, `origin_server_bench`,
//! `bundle_swap`): its configuration with throwaway secrets, the server started in this
//! process, and a plain HTTP/1.1 client for its API.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

/// The operator's bearer token.
pub const OPERATOR: &str = "operator-token-0123456789";
/// The edges' bearer token (`GET /v1/bundles/bench`).
pub const EDGE: &str = "edge-token-0123456789abcdef";
/// Every bench tenant owner's password.
pub const PASSWORD: &str = "owner password 1";

/// An origin configuration for region `bench` in `dir` (its secrets written there, the
/// bundle's public key as `bundle.pub.pem`), with `extra` TOML appended.
pub fn config(dir: &Path, extra: &str) -> gatehouse_origin::OriginConfig {
    std::fs::create_dir_all(dir).unwrap();
    let (pem, public) = gatehouse_bundler::keys::generate_bundle_keys();
    std::fs::write(dir.join("bundle.pem"), pem).unwrap();
    std::fs::write(dir.join("bundle.pub.pem"), public).unwrap();
    std::fs::write(dir.join("edge.tokens"), format!("edge {EDGE}\n")).unwrap();
    std::fs::write(dir.join("operator.token"), OPERATOR).unwrap();
    std::fs::write(dir.join("peer.token"), "peer-token-0123456789abcdef").unwrap();
    std::fs::write(dir.join("apikey.secret"), "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0NQ==").unwrap();
    let toml = format!(
        r#"region = "bench"
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:1"
data_dir = "data"
[secrets]
bundle_signing_key = "bundle.pem"
edge_tokens = "edge.tokens"
operator_token = "operator.token"
peer_token = "peer.token"
api_key_secret = "apikey.secret"
{extra}"#
    );
    std::fs::write(dir.join("origin.toml"), toml).unwrap();
    gatehouse_origin::OriginConfig::load(&dir.join("origin.toml")).unwrap()
}

/// `[signin]` with cheap argon2id settings (bulk tenant creation) or given ones.
pub fn argon(kib: u32, iterations: u32) -> String {
    format!("[signin]\nargon2_memory_kib = {kib}\nargon2_iterations = {iterations}\n")
}

/// Serve the origin for `cfg` on a loopback port of this process.
pub async fn start(cfg: gatehouse_origin::OriginConfig) -> SocketAddr {
    let app = Arc::new(gatehouse_origin::App::open(cfg).await.unwrap());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(gatehouse_origin::api::serve(app, l, std::future::pending()));
    addr
}

/// One HTTP/1.1 connection.
pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Connect to `addr`.
pub async fn conn(addr: SocketAddr) -> Sender {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, c) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s)).await.unwrap();
    tokio::spawn(c);
    send
}

/// One request; the status and the body.
pub async fn call(s: &mut Sender, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Bytes) {
    let mut b = hyper::Request::builder().method(method).uri(path).header("host", "bench");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(Full::new(Bytes::from(body.map(|v| v.to_string()).unwrap_or_default()))).unwrap();
    s.ready().await.unwrap();
    let resp = s.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// The `q` quantile of `v` (sorts it).
pub fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

/// Create tenant `t{i:05}` (tier team, host `t{i:05}.example.test`, owner
/// `o@t{i:05}.test`).
pub async fn create_org(s: &mut Sender, i: usize) {
    let slug = format!("t{i:05}");
    let body = json!({ "slug": slug, "name": slug, "tier": "team", "owner_email": format!("o@{slug}.test"),
        "owner_password": PASSWORD, "policy": { "hosts": [format!("{slug}.example.test")] } });
    let (st, b) = call(s, "POST", "/v1/orgs", Some(OPERATOR), Some(body)).await;
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
}

/// Sign in as tenant `t00000`'s owner: the token response.
pub async fn sign_in(s: &mut Sender) -> Value {
    let body = json!({ "grant_type": "password", "email": "o@t00000.test", "password": PASSWORD });
    let (st, b) = call(s, "POST", "/t/t00000/token", None, Some(body)).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}
