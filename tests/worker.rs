//! The Cloudflare Worker (components/worker, built by scripts/build-worker) under workerd,
//! the runtime Cloudflare runs, with a generated configuration: the Worker, its Durable
//! Object namespace (SQLite-backed, in memory), and outbound access to an upstream on
//! loopback.
//!
//! Needs `GATEHOUSE_WORKER_BUILD` (the folder with index.js and index_bg.wasm) and
//! `GATEHOUSE_WORKERD` (the workerd binary); `scripts/test` sets both after building.
//! Without them the test says so and does nothing.

mod support;

#[path = "conformance/support.rs"]
mod corpus;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use support::*;

const POLICY: &str = r#"
[tiers.team]
limits.user = { requests = 1000000, per_secs = 1 }

[tiers.tiny]
limits.org = { requests = 50, per_secs = 3600 }

[[issuers]]
issuer = "https://login.test"
audiences = ["gatehouse"]
jwks_file = "keys/token-signing.jwks.json"

[orgs.acme]
tier = "team"
hosts = ["acme.test"]
ip = { allow = ["198.51.100.0/24"], deny = ["198.51.100.9"] }

[orgs.limited]
tier = "tiny"
hosts = ["limited.test"]

[[routes]]
name = "public"
path = "/public"
auth = "public"

[[routes]]
name = "api"
path = "/"
"#;

/// Request headers, expected status, expected reason code.
type Case<'a> = (&'a [(&'a str, &'a str)], u16, &'a str);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(addr: SocketAddr) {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn raw_public_key(pem_path: &Path) -> [u8; 32] {
    let pem = std::fs::read_to_string(pem_path).unwrap();
    let pk = jwt_simple::prelude::Ed25519PublicKey::from_pem(&pem).unwrap();
    pk.to_bytes().try_into().unwrap()
}

async fn request(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, String) {
    send(addr, get(host, path, headers), None).await
}

/// Run the built Worker under workerd in `dir` with these bindings; returns the process
/// and the address it serves.
fn start_workerd(
    dir: &Path,
    build: &Path,
    workerd: &Path,
    bundle: &str,
    pinned: &str,
    edge_secrets: &str,
    up: SocketAddr,
) -> (Killed, SocketAddr) {
    for f in ["index.js", "index_bg.wasm"] {
        std::fs::copy(build.join(f), dir.join(f)).unwrap();
    }
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = format!(
        r#"using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .gateway),
    (name = "net", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [ (name = "http", address = "{addr}", http = (), service = "main") ],
);
const gateway :Workerd.Worker = (
  modules = [
    (name = "index.js", esModule = embed "index.js"),
    (name = "index_bg.wasm", wasm = embed "index_bg.wasm"),
  ],
  compatibilityDate = "2026-04-01",
  bindings = [
    (name = "UPSTREAM", text = "http://{up}"),
    (name = "ORIGIN_PUBLIC_KEY", text = "{pinned}"),
    (name = "BUNDLE", text = "{bundle}"),
    (name = "EDGE_SECRETS", text = "{secrets}"),
    (name = "RATE_LIMITER", durableObjectNamespace = "RateLimiter"),
  ],
  durableObjectNamespaces = [ (className = "RateLimiter", uniqueKey = "gatehouse-rate-limiter", enableSql = true) ],
  durableObjectStorage = (inMemory = void),
  globalOutbound = "net",
);
"#,
        secrets = edge_secrets.replace('\\', "\\\\").replace('"', "\\\"")
    );
    std::fs::write(dir.join("config.capnp"), config).unwrap();
    let log = std::fs::File::create(dir.join("workerd.log")).unwrap();
    let process = Killed(
        Command::new(workerd)
            .args(["serve", "config.capnp", "--experimental"])
            .current_dir(dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_port(up);
    wait_port(addr);
    (process, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_under_workerd() {
    let (Some(build), Some(workerd)) =
        (std::env::var_os("GATEHOUSE_WORKER_BUILD"), std::env::var_os("GATEHOUSE_WORKERD"))
    else {
        eprintln!("worker_under_workerd: GATEHOUSE_WORKER_BUILD / GATEHOUSE_WORKERD not set (scripts/test sets them); not run");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    compile_bundle(dir, POLICY, 1, &dir.join("bundle.ghb"));
    let bundle = base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join("bundle.ghb")).unwrap());
    let pinned =
        base64::engine::general_purpose::STANDARD.encode(raw_public_key(&dir.join("keys/bundle-signing.pub.pem")));
    let up: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _upstream =
        Killed(bin().args(["upstream", "--listen", &up.to_string()]).stdout(Stdio::null()).spawn().unwrap());
    let (_workerd, addr) = start_workerd(dir, Path::new(&build), Path::new(&workerd), &bundle, &pinned, "", up);
    let logs = || std::fs::read_to_string(dir.join("workerd.log")).unwrap_or_default();

    // Allowed: the upstream sees the identity headers, never the client's own.
    let token = mint(dir, "ada", "acme", "viewer");
    let bearer = format!("Bearer {token}");
    let (s, _, body) = request(
        addr,
        "acme.test",
        "/items?x=1",
        &[("authorization", &bearer), ("cf-connecting-ip", "198.51.100.7"), ("x-gatehouse-subject", "root")],
    )
    .await;
    assert_eq!(s, 200, "{body}\n{}", logs());
    let echo: Value = serde_json::from_str(&body).unwrap();
    let text = echo.to_string();
    assert!(text.contains("\"x-gatehouse-subject\":\"ada\""), "{text}");
    assert!(!text.contains("root"), "spoofed identity header reached the upstream: {text}");
    assert!(text.contains("/items?x=1"), "{text}");

    // Denied, each with its reason code, and nothing reaches the upstream.
    let cases: &[Case] = &[
        (&[("cf-connecting-ip", "198.51.100.7")], 401, "credential_missing"),
        (&[("cf-connecting-ip", "198.51.100.7"), ("authorization", "Bearer x.y.z")], 401, "token_malformed"),
        (&[("cf-connecting-ip", "198.51.100.9"), ("authorization", &bearer)], 403, "ip_denied"),
        (&[("cf-connecting-ip", "203.0.113.1"), ("authorization", &bearer)], 403, "ip_not_allowed"),
        (&[("authorization", &bearer)], 400, "request_malformed"),
    ];
    for (headers, status, reason) in cases {
        let (s, h, body) = request(addr, "acme.test", "/items", headers).await;
        assert_eq!(s, *status, "{headers:?}: {body}");
        assert_eq!(h.get("x-gatehouse-reason").and_then(|v| v.to_str().ok()), Some(*reason), "{headers:?}");
    }

    // 100 parallel requests for one organisation against a limit of 50: exactly 50 pass.
    let mut tasks = Vec::new();
    for i in 0..100u32 {
        let ip = format!("192.0.2.{}", i % 250 + 1);
        tasks.push(tokio::spawn(async move {
            let (s, _, _) = request(addr, "limited.test", "/public/x", &[("cf-connecting-ip", &ip)]).await;
            s
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    let ok = codes.iter().filter(|c| **c == 200).count();
    let limited = codes.iter().filter(|c| **c == 429).count();
    assert_eq!((ok, limited), (50, 50), "{codes:?}\n{}", logs());
}

/// The conformance corpus through the Worker under workerd: every case as the corpus says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_conformance_corpus() {
    let (Some(build), Some(workerd)) =
        (std::env::var_os("GATEHOUSE_WORKER_BUILD"), std::env::var_os("GATEHOUSE_WORKERD"))
    else {
        eprintln!("worker_conformance_corpus: GATEHOUSE_WORKER_BUILD / GATEHOUSE_WORKERD not set (scripts/test sets them); not run");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let b = corpus::bundle();
    let b64 = base64::engine::general_purpose::STANDARD;
    let up: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _upstream =
        Killed(bin().args(["upstream", "--listen", &up.to_string()]).stdout(Stdio::null()).spawn().unwrap());
    let secrets = String::from_utf8(b.secrets_json.clone()).unwrap();
    let (_workerd, addr) = start_workerd(
        tmp.path(),
        Path::new(&build),
        Path::new(&workerd),
        &b64.encode(&b.bytes),
        &b64.encode(b.public_key),
        &secrets,
        up,
    );
    let mut outcomes = Vec::new();
    for c in corpus::cases() {
        let target = match &c.query {
            Some(q) => format!("{}?{q}", c.path),
            None => c.path.clone(),
        };
        let mut req = hyper::Request::builder().method(c.method.as_str()).uri(target).header("host", &c.host);
        req = req.header("cf-connecting-ip", &c.peer);
        for (k, v) in &c.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let (status, h, _) = send(addr, req.body(body(bytes::Bytes::new())).unwrap(), None).await;
        let outcome = match status {
            200 => corpus::Outcome::allow(
                h.iter()
                    .filter_map(|(k, v)| {
                        let name = k.as_str().strip_prefix("x-echo-")?;
                        Some((format!("x-{name}"), v.to_str().ok()?.to_string()))
                    })
                    .collect(),
            ),
            302 => corpus::Outcome::redirect(h.get("location").and_then(|v| v.to_str().ok()).unwrap_or("")),
            s => corpus::Outcome::deny(s, h.get("x-gatehouse-reason").and_then(|v| v.to_str().ok()).unwrap_or("")),
        };
        outcomes.push(outcome);
    }
    let mut it = outcomes.into_iter();
    corpus::check_all("worker (workerd)", true, |_| it.next().unwrap());
}
