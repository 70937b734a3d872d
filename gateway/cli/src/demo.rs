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
    r
}

/// Options of `gatehouse demo`.
pub struct DemoOptions {
    /// Working directory (keys, policy, bundle).
    pub dir: PathBuf,
    /// Gateway listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// Demo upstream listener.
    pub upstream: SocketAddr,
}

/// Prepare keys, policy and bundle in `dir`; returns the gateway configuration path and
/// the printed walkthrough.
pub fn prepare(o: &DemoOptions, exe: &Path) -> Result<(PathBuf, String)> {
    let dir = &o.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let keys = dir.join("keys");
    let run = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new(exe).args(args).output()?;
        anyhow::ensure!(out.status.success(), "gatehouse {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    if !keys.join("bundle-signing.pem").exists() {
        run(&["keys", "generate", "--out-dir", keys.to_str().unwrap_or(".")])?;
    }
    let apikey = run(&[
        "apikey",
        "create",
        "--secrets",
        &keys.join("edge-secrets.toml").to_string_lossy(),
        "--subject",
        "deploy-bot",
        "--scopes",
        "invoices:read",
    ])?;
    let key = apikey.lines().next().unwrap_or("").trim_start_matches("API key (shown once): ").to_string();
    let entry: Vec<&str> = apikey.lines().skip_while(|l| !l.starts_with("[[orgs")).collect();
    let mut policy = EXAMPLE_POLICY.to_string();
    policy.push('\n');
    policy.push_str(&entry.join("\n").replace("<org>", "acme"));
    policy.push('\n');
    std::fs::write(dir.join("policy.toml"), policy)?;
    let bundle = dir.join("bundle.ghb");
    run(&[
        "policy",
        "compile",
        "--policy",
        &dir.join("policy.toml").to_string_lossy(),
        "--signing-key",
        &keys.join("bundle-signing.pem").to_string_lossy(),
        "--out",
        &bundle.to_string_lossy(),
        "--region",
        "demo",
    ])?;
    let mint = |sub: &str, roles: &str| {
        run(&[
            "token",
            "mint",
            "--key",
            &keys.join("token-signing.pem").to_string_lossy(),
            "--kid",
            "k1",
            "--iss",
            "https://login.example.test",
            "--aud",
            "gatehouse",
            "--sub",
            sub,
            "--org",
            "acme",
            "--roles",
            roles,
            "--ttl",
            "8h",
        ])
        .map(|t| t.trim().to_string())
    };
    let viewer = mint("alice", "viewer")?;
    let biller = mint("bob", "billing-manager")?;
    let config = format!(
        "[listen]\naddr = \"{}\"\nadmin = \"{}\"\n\n[bundle]\nfile = \"bundle.ghb\"\npublic_key = \"keys/bundle-signing.pub.pem\"\nsecrets = \"keys/edge-secrets.toml\"\n\n[filters]\ncache_dir = \"cwasm\"\n\n[[routes]]\nupstream = \"http://{}\"\nfilters = [\"ip\", \"geo\", \"token\", \"rate\"]\n",
        o.listen, o.admin, o.upstream
    );
    let config_path = dir.join("gateway.toml");
    std::fs::write(&config_path, config)?;
    let g = o.listen;
    let walkthrough = format!(
        r#"
Gatehouse demo: gateway http://{g} -> demo app http://{up}   (admin http://{admin})
Working files: {dir}

Allowed (alice, viewer):
  curl -s -H 'Host: acme.example.test' -H 'Authorization: Bearer {viewer}' http://{g}/api/invoices
Allowed (API key, scope invoices:read):
  curl -s -H 'Host: acme.example.test' -H 'X-Api-Key: {key}' http://{g}/api/invoices
Allowed (bob, billing-manager, POST /pay):
  curl -s -X POST -H 'Host: acme.example.test' -H 'Authorization: Bearer {biller}' http://{g}/api/invoices/7/pay
Denied, no credential (401 credential_missing):
  curl -si -H 'Host: acme.example.test' http://{g}/api/invoices
Denied, viewer may not pay (403 permission_denied):
  curl -si -X POST -H 'Host: acme.example.test' -H 'Authorization: Bearer {viewer}' http://{g}/api/invoices/7/pay
Browser without a session (302 to the sign-in page):
  curl -si -H 'Host: acme.example.test' -H 'Accept: text/html' http://{g}/api/invoices
Health, readiness, metrics:
  curl -s http://{admin}/readyz; curl -s http://{admin}/metrics | grep gatehouse_requests_total

Ctrl-C stops everything.
"#,
        up = o.upstream,
        admin = o.admin,
        dir = dir.display(),
    );
    Ok((config_path, walkthrough))
}
