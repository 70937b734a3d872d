//! The Cloudflare Worker (components/worker, built by scripts/build-worker) under workerd,
//! the runtime Cloudflare runs, with a generated configuration: the Worker, its Durable
//! Object namespace (SQLite-backed, in memory), and outbound access to an upstream on
//! loopback.
//!
//! Needs `GATEHOUSE_WORKER_BUILD` (the folder with index.js and index_bg.wasm) and
//! `GATEHOUSE_WORKERD` (the workerd binary); `scripts/test` sets both after building.
//! Without them each test prints `SKIPPED` (`support::skip`) and does nothing.

mod support;

// The corpus reader of the conformance runner (gatehouse-proxy), one copy for every host.
#[path = "../../proxy/tests/conformance/support.rs"]
mod corpus;
#[path = "../../proxy/tests/conformance/echo.rs"]
mod echo;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
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

/// Where the scheduled bundle refresh pulls from, and the socket that fires it.
struct Refresh {
    /// `ORIGIN_BUNDLE_URL`.
    url: String,
    /// `EDGE_TOKEN`.
    token: String,
    /// A socket whose every request runs the Worker's scheduled handler once (through a
    /// service binding's `scheduled()`, as Cloudflare's cron trigger would).
    trigger: SocketAddr,
}

/// Run the built Worker under workerd in `dir` with these bindings; returns the process
/// and the address it serves. With `refresh`, also the KV namespace and the origin the
/// scheduled handler refreshes the bundle from: KV is served by workerd's KV binding
/// protocol from a small in-memory service in the same workerd (the part Miniflare plays
/// under `wrangler dev`).
#[allow(clippy::too_many_arguments)]
fn start_workerd(
    dir: &Path,
    build: &Path,
    workerd: &Path,
    bundle: &str,
    pinned: &str,
    edge_secrets: &str,
    up: SocketAddr,
    refresh: Option<&Refresh>,
) -> (Killed, SocketAddr) {
    for f in ["index.js", "index_bg.wasm"] {
        std::fs::copy(build.join(f), dir.join(f)).unwrap();
    }
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (extra_services, extra_sockets, extra_bindings) = match refresh {
        None => (String::new(), String::new(), String::new()),
        Some(r) => {
            std::fs::write(dir.join("kv.js"), KV_SERVICE).unwrap();
            std::fs::write(dir.join("trigger.js"), TRIGGER_SERVICE).unwrap();
            (
                r#"(name = "kv", worker = (modules = [(name = "kv.js", esModule = embed "kv.js")], compatibilityDate = "2026-04-01")),
    (name = "trigger", worker = (modules = [(name = "trigger.js", esModule = embed "trigger.js")], compatibilityDate = "2026-04-01",
      compatibilityFlags = ["service_binding_extra_handlers"], bindings = [(name = "GATEWAY", service = "main")])),"#
                    .to_string(),
                format!(r#", (name = "trigger", address = "{}", http = (), service = "trigger")"#, r.trigger),
                format!(
                    r#"(name = "GATEHOUSE_BUNDLES", kvNamespace = "kv"),
    (name = "ORIGIN_BUNDLE_URL", text = "{}"),
    (name = "EDGE_TOKEN", text = "{}"),"#,
                    r.url, r.token
                ),
            )
        }
    };
    let config = format!(
        r#"using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .gateway),
    (name = "net", network = (allow = ["public", "private", "local"])),
    {extra_services}
  ],
  sockets = [ (name = "http", address = "{addr}", http = (), service = "main"){extra_sockets} ],
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
    {extra_bindings}
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
    if let Some(r) = refresh {
        wait_port(r.trigger);
    }
    (process, addr)
}

/// workerd's KV binding speaks HTTP to the service it names: `GET /{key}` (404 when
/// absent), `PUT /{key}` with the value, `DELETE /{key}`; keys URL-encoded.
const KV_SERVICE: &str = r#"
const store = new Map();
export default {
  async fetch(req) {
    const key = decodeURIComponent(new URL(req.url).pathname.slice(1));
    if (req.method === "GET") return store.has(key) ? new Response(store.get(key)) : new Response("Not Found", { status: 404 });
    if (req.method === "PUT") { store.set(key, await req.text()); return new Response(null); }
    if (req.method === "DELETE") { store.delete(key); return new Response(null); }
    return new Response("unsupported", { status: 501 });
  },
};
"#;

/// Fires the gateway's scheduled handler once per request and answers with its outcome.
const TRIGGER_SERVICE: &str = r#"
export default {
  async fetch(req, env) {
    const r = await env.GATEWAY.scheduled({ cron: "*/5 * * * *" });
    return new Response(JSON.stringify(r), { headers: { "content-type": "application/json" } });
  },
};
"#;

/// The built Worker and the workerd binary, or `None` (and `test` reported as skipped)
/// when the environment does not name them.
fn worker_env(test: &str) -> Option<(std::ffi::OsString, std::ffi::OsString)> {
    match (std::env::var_os("GATEHOUSE_WORKER_BUILD"), std::env::var_os("GATEHOUSE_WORKERD")) {
        (Some(b), Some(w)) => Some((b, w)),
        _ => {
            skip(test, "GATEHOUSE_WORKER_BUILD / GATEHOUSE_WORKERD not set (scripts/test sets them)");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_under_workerd() {
    let Some((build, workerd)) = worker_env("worker_under_workerd") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    compile_bundle(dir, POLICY, 1, &dir.join("bundle.ghb"));
    let bundle = base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join("bundle.ghb")).unwrap());
    let pinned =
        base64::engine::general_purpose::STANDARD.encode(raw_public_key(&dir.join("keys/bundle-signing.pub.pem")));
    let up: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _upstream =
        Killed(bin().args(["upstream", "--listen", &up.to_string()]).stdout(Stdio::null()).spawn().unwrap());
    let (_workerd, addr) = start_workerd(dir, Path::new(&build), Path::new(&workerd), &bundle, &pinned, "", up, None);
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

/// workerd running the Worker with the corpus's bundle and secrets, forwarding to `up`.
fn corpus_workerd(
    dir: &Path,
    build: &std::ffi::OsStr,
    workerd: &std::ffi::OsStr,
    up: SocketAddr,
) -> (Killed, SocketAddr) {
    let b = corpus::bundle();
    let b64 = base64::engine::general_purpose::STANDARD;
    let secrets = String::from_utf8(b.secrets_json.clone()).unwrap();
    let (bundle, pinned) = (b64.encode(&b.bytes), b64.encode(b.public_key));
    start_workerd(dir, Path::new(build), Path::new(workerd), &bundle, &pinned, &secrets, up, None)
}

/// A request as Cloudflare hands it to a Worker: `Host`, `CF-Connecting-IP`, the fields.
fn cf_request(
    method: &str,
    target: &str,
    host: &str,
    peer: &str,
    headers: &[(String, String)],
) -> hyper::Request<TestBody> {
    let mut req = hyper::Request::builder().method(method).uri(target).header("host", host);
    req = req.header("cf-connecting-ip", peer);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    req.body(body(bytes::Bytes::new())).unwrap()
}

/// The conformance corpus through the Worker under workerd: every case as the corpus says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_conformance_corpus() {
    let Some((build, workerd)) = worker_env("worker_conformance_corpus") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let up = echo::echo_upstream(&[]).await;
    let (_workerd, addr) = corpus_workerd(tmp.path(), &build, &workerd, up.addr);
    let mut outcomes = Vec::new();
    for c in corpus::cases() {
        let target = match &c.query {
            Some(q) => format!("{}?{q}", c.path),
            None => c.path.clone(),
        };
        let (status, h, _) = send(addr, cf_request(&c.method, &target, &c.host, &c.peer, &c.headers), None).await;
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

/// The wire cases (the HTTP contract: what the upstream receives, what the client gets)
/// through the Worker under workerd, to an upstream on loopback that reports what it got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_wire_contract() {
    let Some((build, workerd)) = worker_env("worker_wire_contract") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let up = echo::echo_upstream(corpus::WIRE_UPSTREAM_RESPONSE).await;
    let (_workerd, addr) = corpus_workerd(tmp.path(), &build, &workerd, up.addr);
    let mut seen = Vec::new();
    for c in corpus::wire_cases() {
        let before = up.hits.load(std::sync::atomic::Ordering::SeqCst);
        let req = cf_request(&c.method, &c.target(), &c.host, &c.peer, &c.headers);
        let (status, h, text) = send(addr, req, None).await;
        let reached = up.hits.load(std::sync::atomic::Ordering::SeqCst) > before;
        seen.push(corpus::WireSeen {
            status,
            upstream: reached.then(|| echo::echoed_headers(text.as_bytes())),
            response: h.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("?").to_string())).collect(),
            body: text.into_bytes(),
        });
    }
    let mut it = seen.into_iter();
    corpus::check_wire("worker (workerd)", false, |_| it.next().unwrap());
}

/// The scheduled handler pulls the bundle from the origin into KV (bearer edge token,
/// `If-None-Match`), only after its signature checks out; requests then use it. A
/// tampered bundle, one signed by another key, and an origin error all leave the bundle
/// in force as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_refreshes_its_bundle_on_schedule() {
    use std::sync::{Arc, Mutex};
    let Some((build, workerd)) = worker_env("worker_refreshes_its_bundle_on_schedule") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    compile_bundle(dir, POLICY, 1, &dir.join("a.ghb"));
    // Revision 2 moves acme's allowed network.
    let moved = POLICY.replace(r#"allow = ["198.51.100.0/24"]"#, r#"allow = ["203.0.113.0/24"]"#);
    compile_bundle(dir, &moved, 2, &dir.join("b.ghb"));
    let other = tempfile::tempdir().unwrap();
    compile_bundle(other.path(), &moved, 3, &other.path().join("c.ghb"));
    let (a, b) = (std::fs::read(dir.join("a.ghb")).unwrap(), std::fs::read(dir.join("b.ghb")).unwrap());
    let other_key = std::fs::read(other.path().join("c.ghb")).unwrap();
    let mut tampered = b.clone();
    let n = tampered.len();
    tampered[n - 10] ^= 1;

    // The origin: serves `served` (bytes, ETag) to the edge token, 304 on a matching
    // If-None-Match; remembers the If-None-Match it saw.
    let served: Arc<Mutex<(Vec<u8>, String, u16)>> = Arc::new(Mutex::new((b.clone(), "\"2\"".into(), 200)));
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    {
        let (served, seen) = (served.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (served, seen) = (served.clone(), seen.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (served, seen) = (served.clone(), seen.clone());
                        async move {
                            let inm =
                                req.headers().get("if-none-match").and_then(|v| v.to_str().ok()).map(String::from);
                            seen.lock().unwrap().push(inm.clone());
                            let authed = req.headers().get("authorization").and_then(|v| v.to_str().ok())
                                == Some("Bearer edge-token-0123456789abcdef");
                            let (bytes, etag, status) = served.lock().unwrap().clone();
                            let r = if !authed {
                                hyper::Response::builder().status(401).body(body(bytes::Bytes::new()))
                            } else if status != 200 {
                                hyper::Response::builder().status(status).body(body(bytes::Bytes::new()))
                            } else if inm.as_deref() == Some(etag.as_str()) {
                                hyper::Response::builder()
                                    .status(304)
                                    .header("etag", etag)
                                    .body(body(bytes::Bytes::new()))
                            } else {
                                hyper::Response::builder().status(200).header("etag", etag).body(body(bytes))
                            };
                            Ok::<_, std::convert::Infallible>(r.unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    }
    let up: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _upstream =
        Killed(bin().args(["upstream", "--listen", &up.to_string()]).stdout(Stdio::null()).spawn().unwrap());
    let refresh = Refresh {
        url: format!("http://{origin}/v1/bundles/test"),
        token: "edge-token-0123456789abcdef".into(),
        trigger: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let pinned = b64.encode(raw_public_key(&dir.join("keys/bundle-signing.pub.pem")));
    let (_workerd, addr) =
        start_workerd(dir, Path::new(&build), Path::new(&workerd), &b64.encode(&a), &pinned, "", up, Some(&refresh));
    let logs = || std::fs::read_to_string(dir.join("workerd.log")).unwrap_or_default();
    let bearer = format!("Bearer {}", mint(dir, "ada", "acme", "viewer"));
    let from = |ip: &'static str| [("authorization", bearer.clone()), ("cf-connecting-ip", ip.to_string())];
    let status = |ip: &'static str| {
        let h = from(ip);
        async move {
            let hs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (s, hd, _) = request(addr, "acme.test", "/items", &hs).await;
            (s, hd.get("x-gatehouse-reason").and_then(|v| v.to_str().ok()).unwrap_or("").to_string())
        }
    };
    let fire = || async {
        let (s, _, body) = send(refresh.trigger, get("trigger.test", "/", &[]), None).await;
        assert_eq!(s, 200, "trigger: {body}\n{}", logs());
        serde_json::from_str::<Value>(&body).unwrap()
    };

    // Bundle A (the BUNDLE binding) is in force.
    assert_eq!(status("198.51.100.7").await.0, 200);
    assert_eq!(status("203.0.113.7").await, (403, "ip_not_allowed".into()));

    // The cron fires: bundle B is fetched, verified, put in KV, and decides from then on.
    let outcome = fire().await;
    assert_eq!(outcome["outcome"], "ok", "{outcome}");
    assert_eq!(status("203.0.113.7").await.0, 200, "{}", logs());
    assert_eq!(status("198.51.100.7").await, (403, "ip_not_allowed".into()));

    // Next run: conditional on the stored ETag, answered 304; nothing changes.
    fire().await;
    assert_eq!(seen.lock().unwrap().last().cloned().flatten().as_deref(), Some("\"2\""));
    assert_eq!(status("203.0.113.7").await.0, 200);

    // A tampered bundle, one signed by another key, and an origin error are refused;
    // bundle B stays in force.
    for (bytes, etag, code) in [(tampered, "\"3\"", 200), (other_key, "\"4\"", 200), (b.clone(), "\"5\"", 503)] {
        *served.lock().unwrap() = (bytes, etag.into(), code);
        fire().await;
        assert_eq!(status("203.0.113.7").await.0, 200, "after serving {etag} ({code})\n{}", logs());
        assert_eq!(status("198.51.100.7").await, (403, "ip_not_allowed".into()));
    }
    let log = logs();
    assert!(log.contains("bundle refused") && log.contains("origin answered 503"), "{log}");
    assert_eq!(seen.lock().unwrap().len(), 5, "one origin call per run");
}
