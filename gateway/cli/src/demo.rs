//! `gatehouse demo`: the whole thing on embedded defaults, and the demo upstream app.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// The example policy, shipped inside the binary.
pub const EXAMPLE_POLICY: &str = include_str!("../../../examples/policy.toml");

/// Serve the demo upstream: every request is answered with a JSON echo of what arrived
/// (method, path, the identity headers the gateway added, body size).
pub async fn upstream(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(
                    |req: Request<Incoming>| async move { Ok::<_, Infallible>(echo(req).await) },
                );
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn echo(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().to_string();
    let identity: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-gatehouse-"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
        .collect();
    let mut n = 0usize;
    let mut b = req.into_body();
    while let Some(Ok(f)) = b.frame().await {
        if let Ok(d) = f.into_data() {
            n += d.len();
        }
    }
    let body = serde_json::json!({"upstream": "gatehouse demo app", "method": method, "path": path, "identity": identity, "body_bytes": n});
    let mut r = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    // The identity also as response headers (`x-echo-gatehouse-subject`, …), so that a
    // HEAD request shows it too.
    for (k, v) in &identity {
        let name = format!("x-echo-{}", k.trim_start_matches("x-"));
        if let (Ok(n), Some(Ok(v))) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            v.as_str().map(hyper::header::HeaderValue::from_str),
        ) {
            r.headers_mut().insert(n, v);
        }
    }
    r
}

/// Options of `gatehouse demo`.
pub struct DemoOptions {
    /// Working directory (keys, secrets, the origin's databases, configuration).
    pub dir: PathBuf,
    /// Gateway listener.
    pub listen: SocketAddr,
    /// Gateway admin listener.
    pub admin: SocketAddr,
    /// Demo upstream listener.
    pub upstream: SocketAddr,
    /// Origin listener.
    pub origin: SocketAddr,
}

/// What `prepare` wrote.
pub struct Prepared {
    /// The origin's configuration.
    pub origin: gatehouse_origin::OriginConfig,
    /// The gateway's configuration file.
    pub gateway_config: PathBuf,
    /// The platform operator's token.
    pub operator_token: String,
}

fn secret_file(path: &Path, make: impl FnOnce() -> String) -> Result<String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        return Ok(t.trim().to_string());
    }
    let t = make();
    gatehouse_bundler::keys::write_file(path, t.as_bytes(), true, false).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(t)
}

fn random_token() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(gatehouse_bundler::random::random_bytes::<24>())
}

/// Write keys, secrets, the origin's template policy and both configurations into `dir`
/// (kept across runs: the origin's data and the admin's password survive a restart).
pub fn prepare(o: &DemoOptions, exe: &Path) -> Result<Prepared> {
    let dir = &o.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let keys = dir.join("keys");
    if !keys.join("bundle-signing.pem").exists() {
        let out = std::process::Command::new(exe).args(["keys", "generate", "--out-dir"]).arg(&keys).output()?;
        anyhow::ensure!(out.status.success(), "gatehouse keys generate: {}", String::from_utf8_lossy(&out.stderr));
    }
    // The API-key secret is shared: the origin hashes keys with it, edges verify with it.
    let edge: toml::Value = toml::from_str(&std::fs::read_to_string(keys.join("edge-secrets.toml"))?)?;
    let api_key_secret =
        edge.get("api_key_secret").and_then(|v| v.as_str()).context("edge-secrets.toml: no api_key_secret")?;
    std::fs::write(keys.join("apikey.secret"), api_key_secret)?;
    let edge_token = secret_file(&keys.join("edge.token"), random_token)?;
    std::fs::write(keys.join("edge.tokens"), format!("demo-gateway {edge_token}\n"))?;
    let operator_token = secret_file(&keys.join("operator.token"), random_token)?;
    secret_file(&keys.join("peer.token"), random_token)?;
    // The region-wide template: the example policy without its organisations and
    // issuers (those come from the origin's tenants).
    let mut template: gatehouse_core::policy::Policy = toml::from_str(EXAMPLE_POLICY)?;
    template.orgs.clear();
    template.issuers.clear();
    template.revoked = Default::default();
    template.settings.login_url = None;
    std::fs::write(dir.join("origin-template.toml"), toml::to_string(&template)?)?;
    let origin_url = format!("http://{}", o.origin);
    let origin_toml = format!(
        r#"region = "demo"
listen = "{origin}"
public_url = "{origin_url}"
data_dir = "origin-data"
[regions]
demo = "{origin_url}"
[secrets]
bundle_signing_key = "keys/bundle-signing.pem"
edge_tokens = "keys/edge.tokens"
operator_token = "keys/operator.token"
peer_token = "keys/peer.token"
api_key_secret = "keys/apikey.secret"
[bundle]
template = "origin-template.toml"
[sso]
# Demo only: lets an organisation's SSO connection point at an identity provider on
# this machine over plain http (e.g. a local test provider).
allow_http_loopback = true
[mail]
# The demo's mailer is the file mailer: each message (verification, invitation, password
# reset) is an .eml file in mail/. For real delivery: kind = "smtp" and a [mail.smtp] relay.
kind = "file"
dir = "mail"
"#,
        origin = o.origin
    );
    std::fs::write(dir.join("origin.toml"), origin_toml)?;
    let origin = gatehouse_origin::OriginConfig::load(&dir.join("origin.toml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = format!(
        r#"[listen]
addr = "{listen}"
admin = "{admin}"

[bundle]
origin_url = "{origin_url}/v1/bundles/demo"
origin_token = "{edge_token}"
poll_secs = 2
public_key = "keys/bundle-signing.pub.pem"
secrets = "keys/edge-secrets.toml"

[audit]
url = "{origin_url}/v1/audit/edge"
token = "{edge_token}"

[filters]
cache_dir = "cwasm"

[[routes]]
upstream = "http://{upstream}"
filters = ["ip", "geo", "token", "rate"]
"#,
        listen = o.listen,
        admin = o.admin,
        upstream = o.upstream
    );
    let gateway_config = dir.join("gateway.toml");
    std::fs::write(&gateway_config, config)?;
    Ok(Prepared { origin, gateway_config, operator_token })
}

/// One JSON request to the origin: (status, body).
async fn call(
    origin: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> Result<(u16, serde_json::Value)> {
    let stream = tokio::net::TcpStream::connect(origin).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", origin.to_string())
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let resp = send.send_request(b.body(Full::new(Bytes::from(body.to_string())))?).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)))
}

/// Create the demo organisation and its users through the origin's API (once; a rerun
/// finds them), then sign alice in. Returns the walkthrough to print.
pub async fn seed(o: &DemoOptions, p: &Prepared) -> Result<String> {
    let (origin, op) = (o.origin, p.operator_token.as_str());
    let pw =
        |name: &str| secret_file(&o.dir.join(format!("keys/{name}.password")), || format!("demo-{}", random_token()));
    let (admin_pw, alice_pw) = (pw("admin")?, pw("alice")?);
    let (s, v) = call(
        origin,
        "POST",
        "/v1/orgs",
        Some(op),
        serde_json::json!({
            "slug": "acme", "name": "Acme Corp", "tier": "team",
            "owner_email": "admin@acme.example.test", "owner_password": admin_pw,
            "policy": { "hosts": ["acme.example.test", "*.acme.example.test"] }
        }),
    )
    .await?;
    anyhow::ensure!(s == 201 || s == 409, "origin refused the demo organisation: {s} {v}");
    let (s, v) = call(
        origin,
        "POST",
        "/v1/orgs/acme/users",
        Some(op),
        serde_json::json!({
            "email": "alice@acme.example.test", "name": "Alice", "password": alice_pw, "role": "viewer"
        }),
    )
    .await?;
    anyhow::ensure!(s == 201 || s == 409, "origin refused the demo user: {s} {v}");
    let (s, key) = call(
        origin,
        "POST",
        "/v1/orgs/acme/api-keys",
        Some(op),
        serde_json::json!({
            "name": "deploy-bot", "scopes": ["invoices:read"]
        }),
    )
    .await?;
    anyhow::ensure!(s == 201, "origin refused the demo API key: {s} {key}");
    let sign_in =
        serde_json::json!({ "grant_type": "password", "email": "alice@acme.example.test", "password": alice_pw });
    let (s, tok) = call(origin, "POST", "/t/acme/token", None, sign_in.clone()).await?;
    anyhow::ensure!(s == 200, "demo sign-in failed: {s} {tok}");
    let token = tok["access_token"].as_str().unwrap_or_default();
    let key = key["key"].as_str().unwrap_or_default();
    let (g, admin, up) = (o.listen, o.admin, o.upstream);
    Ok(format!(
        r#"
Gatehouse demo
  gateway  http://{g}  ->  demo app http://{up}   (gateway admin http://{admin})
  origin   http://{origin}  (region "demo", libSQL files in {dir}/origin-data)
  organisation acme: admin admin@acme.example.test / {admin_pw}, user alice@acme.example.test / {alice_pw}

Allowed (alice, viewer; this token lasts 10 minutes):
  curl -s -H 'Host: acme.example.test' -H 'Authorization: Bearer {token}' http://{g}/api/invoices
Allowed (API key, scope invoices:read):
  curl -s -H 'Host: acme.example.test' -H 'X-Api-Key: {key}' http://{g}/api/invoices
Denied, no credential (401 credential_missing):
  curl -si -H 'Host: acme.example.test' http://{g}/api/invoices
Denied, a viewer may not pay (403 permission_denied):
  curl -si -X POST -H 'Host: acme.example.test' -H 'Authorization: Bearer {token}' http://{g}/api/invoices/7/pay
Browser without a session (302 to the origin's sign-in page for acme):
  curl -si -H 'Host: acme.example.test' -H 'Accept: text/html' http://{g}/api/invoices
Sign in (a fresh token from the origin):
  curl -s -X POST http://{origin}/t/acme/token -H 'content-type: application/json' -d '{sign_in}'
Sign out; within one bundle poll (2 s) the gateway refuses the token (401 session_revoked):
  curl -s -X POST -H 'Authorization: Bearer {token}' http://{origin}/t/acme/logout
The gateway's decisions, as the origin stored them (operator token):
  curl -s -H "Authorization: Bearer $(cat {dir}/keys/operator.token)" http://{origin}/v1/orgs/acme/audit/edge
Origin API (operator token in {dir}/keys/operator.token): http://{origin}/openapi.json
Mail (verification, invitations, resets) is not sent: the file mailer writes it to {dir}/mail
Health, readiness, metrics: curl -s http://{admin}/readyz; curl -s http://{admin}/metrics | grep gatehouse_requests_total

Ctrl-C stops everything.
"#,
        dir = o.dir.display(),
    ))
}
