//! End-to-end tests of the native gateway: a real upstream on loopback, the `gatehouse
//! gateway` process with the built filter components under wasmtime, real HTTP.

mod support;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use support::*;

/// The upstream: echoes what it received as JSON (path, headers, body size, streamed),
/// answers `/slow` after 1.5 s, and echoes WebSocket messages on `/ws`.
async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(
                        |req: Request<Incoming>| async move { Ok::<_, Infallible>(echo(req).await) },
                    );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Requests the echo upstream has received (every test's gateway shares it per process).
static UPSTREAM_REQUESTS: AtomicUsize = AtomicUsize::new(0);

async fn echo(mut req: Request<Incoming>) -> Response<TestBody> {
    UPSTREAM_REQUESTS.fetch_add(1, Ordering::SeqCst);
    if req.uri().path() == "/ws" {
        let key = req.headers().get("sec-websocket-key").cloned().unwrap();
        let on_up = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let up = on_up.await.unwrap();
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(up),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() || msg.is_binary() {
                    ws.send(msg).await.unwrap();
                }
            }
        });
        return Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header(
                "sec-websocket-accept",
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
            )
            .body(body(Bytes::new()))
            .unwrap();
    }
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let path = req.uri().to_string();
    let headers: serde_json::Map<String, Value> =
        req.headers().iter().map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap_or("")))).collect();
    let mut n = 0usize;
    let mut b = req.into_body();
    // A body the gateway cut short (the timeout tests) ends the count.
    while let Some(Ok(f)) = b.frame().await {
        if let Ok(d) = f.into_data() {
            n += d.len();
        }
    }
    let out = serde_json::json!({"path": path, "headers": headers, "body_bytes": n});
    Response::new(body(out.to_string()))
}

/// An upstream that answers in the framings a hyper server does not choose: `/chunked`
/// (chunked, with a trailer), `/close` (HTTP/1.0, body delimited by closing), `/early`
/// (a 103 Early Hints, then the answer).
async fn raw_upstream() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end);
                    if head.starts_with("POST /stall") {
                        // Takes the head and then nothing: the body backs up.
                        tokio::time::sleep(Duration::from_secs(15)).await;
                        return;
                    }
                    let answer: &[u8] = if head.starts_with("GET /chunked") {
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=1\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n"
                    } else if head.starts_with("GET /early") {
                        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                    } else {
                        let _ = s.write_all(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil close").await;
                        return;
                    };
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Write `request` as is on a new connection, read until the gateway closes it (at most 5 s).
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn policy(tiny_limit: u64) -> String {
    format!(
        r#"
[settings]
leeway_secs = 30

[client_ip]
source = "x-forwarded-for"
trusted_proxies = ["127.0.0.2/32"]

[geo]
country_header = "x-test-country"
trust_header_from_any_peer = true

[tiers.team]
limits.user = {{ requests = 1000000, per_secs = 1 }}

[tiers.tiny]
limits.org = {{ requests = {tiny_limit}, per_secs = 3600 }}

[[issuers]]
issuer = "https://login.test"
audiences = ["gatehouse"]
jwks_file = "keys/token-signing.jwks.json"

[orgs.acme]
tier = "team"
hosts = ["acme.test"]
ip = {{ allow = ["127.0.0.0/8"], deny = ["127.0.0.9"] }}
geo = {{ deny = ["KP"] }}

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

struct Env {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    gw: GatewayProc,
    token: String,
}

impl Env {
    fn bundle(&self) -> PathBuf {
        self.dir.join("bundle.ghb")
    }
}

async fn start() -> Env {
    start_with_limits("").await
}

/// [`start`], with `limits` added to the `[limits]` table of the gateway's configuration.
async fn start_with_limits(limits: &str) -> Env {
    let up = upstream().await;
    let raw = raw_upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    compile_bundle(&dir, &policy(3), 1, &dir.join("bundle.ghb"));
    let comps = component_dir();
    let cache = comps.parent().unwrap().parent().unwrap().join("gatehouse-test-cwasm");
    let (addr, admin) = (free_port(), free_port());
    // One route per custom component: three that misbehave, one third-party example.
    let custom_routes: String = [
        ("trap.test", "gatehouse_testing_trap.wasm"),
        ("spin.test", "gatehouse_testing_spin.wasm"),
        ("hog.test", "gatehouse_testing_hog.wasm"),
        ("custom.test", "gatehouse_example_require_header.wasm"),
    ]
    .iter()
    .map(|(host, file)| {
        format!(
            "\n[[routes]]\nhost = \"{host}\"\nupstream = \"http://{up}\"\nfilters = [\"{}\"]\n",
            comps.join(file).display()
        )
    })
    .collect::<String>()
        + &format!(
            "\n[[routes]]\nhost = \"raw.test\"\nupstream = \"http://{raw}\"\nfilters = [\"{}\"]\n",
            comps.join("gatehouse_example_require_header.wasm").display()
        )
        + &format!(
            // Port 1 (tcpmux): nothing listens there.
            "\n[[routes]]\nhost = \"down.test\"\nupstream = \"http://127.0.0.1:1\"\nfilters = [\"{}\"]\n",
            comps.join("gatehouse_example_require_header.wasm").display()
        );
    let config = format!(
        r#"
[listen]
addr = "127.0.0.1:{addr}"
admin = "127.0.0.1:{admin}"

[bundle]
file = "bundle.ghb"
public_key = "keys/bundle-signing.pub.pem"
secrets = "keys/edge-secrets.toml"
poll_secs = 1

[filters]
# These tests run the built-ins as components (the wasm engine: caching, bounds, the
# pool); the native engine, the default, is what every other gateway test runs.
engine = "wasm"
builtin_dir = "{builtin}"
cache_dir = "{cache}"
max_call_ms = 50
max_memory_mib = 32
pool_size = 16

[limits]
max_body_bytes = 104857600
drain_secs = 10
{limits}

[geo]
maxmind_db = "{mmdb}"
{custom_routes}
[[routes]]
path_prefix = "/split"
upstream = "http://{up}"
filters = ["ip", "geo", "token", "rate"]

[[routes]]
upstream = "http://{up}"
"#,
        builtin = comps.display(),
        cache = cache.display(),
        custom_routes = custom_routes,
        mmdb = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
            .join("../../tests/testdata/geo/test-country.mmdb")
            .display(),
    );
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    let gw = GatewayProc::start(
        &dir.join("gateway.toml"),
        format!("127.0.0.1:{addr}").parse().unwrap(),
        format!("127.0.0.1:{admin}").parse().unwrap(),
        &dir.join("gateway.log"),
    );
    let token = mint(&dir, "alice", "acme", "viewer");
    Env { _dir: tmp, dir, gw, token }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| panic!("not JSON: {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allow_and_every_kind_of_deny() {
    let e = start().await;
    let a = e.gw.addr;
    let auth = bearer(&e.token);

    // Allowed, with identity headers; client copies of them are removed first.
    let (s, _, b) = send(
        a,
        get(
            "acme.test",
            "/api/things?x=1",
            &[("authorization", &auth), ("x-gatehouse-subject", "root"), ("x-gatehouse-org", "evil")],
        ),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let up = json(&b);
    assert_eq!(up["path"], "/api/things?x=1");
    assert_eq!(up["headers"]["x-gatehouse-subject"], "alice");
    assert_eq!(up["headers"]["x-gatehouse-org"], "acme");
    assert_eq!(up["headers"]["x-gatehouse-roles"], "viewer");
    assert_eq!(up["headers"]["x-forwarded-for"], "127.0.0.1");
    // The same decision through the chain of four single-check components.
    let (s, _, b) =
        send(a, get("acme.test", "/split/x", &[("authorization", &auth), ("x-gatehouse-subject", "root")]), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(json(&b)["headers"]["x-gatehouse-subject"], "alice");
    let (s, h, _) =
        send(a, get("acme.test", "/split/x", &[("authorization", &auth), ("x-test-country", "KP")]), None).await;
    assert_eq!((s, h.get("x-gatehouse-reason").unwrap().to_str().unwrap()), (403, "geo_denied"));
    assert_eq!(send(a, get("acme.test", "/split/x", &[]), None).await.0, 401);
    // Public route: no identity, and spoofed identity headers still never arrive.
    let (s, _, b) = send(a, get("acme.test", "/public/x", &[("x-gatehouse-subject", "root")]), None).await;
    assert_eq!(s, 200);
    assert!(json(&b)["headers"].as_object().unwrap().keys().all(|k| !k.starts_with("x-gatehouse-")), "{b}");

    type Case<'a> = (&'a str, Request<TestBody>, Option<IpAddr>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("no credential", get("acme.test", "/api", &[]), None, 401, "credential_missing"),
        ("bad token", get("acme.test", "/api", &[("authorization", "Bearer x.y.z")]), None, 401, "token_malformed"),
        (
            "denied address",
            get("acme.test", "/api", &[("authorization", &auth)]),
            Some("127.0.0.9".parse().unwrap()),
            403,
            "ip_denied",
        ),
        (
            "XFF spoof from untrusted peer",
            get("acme.test", "/api", &[("authorization", &auth), ("x-forwarded-for", "127.0.0.1")]),
            Some("127.0.0.9".parse().unwrap()),
            403,
            "ip_denied",
        ),
        (
            "blocked country",
            get("acme.test", "/api", &[("authorization", &auth), ("x-test-country", "KP")]),
            None,
            403,
            "geo_denied",
        ),
        ("role", get("acme.test", "/admin", &[("authorization", &auth)]), None, 403, "role_required"),
        ("unknown tenant", get("nobody.test", "/api", &[]), None, 404, "tenant_unknown"),
        ("path traversal", get("acme.test", "/public/../admin", &[]), None, 400, "request_malformed"),
    ];
    for (what, req, from, status, reason) in cases {
        let (s, h, b) = send(a, req, from).await;
        assert_eq!(
            (s, h.get("x-gatehouse-reason").map(|v| v.to_str().unwrap().to_string())),
            (status, Some(reason.to_string())),
            "{what}: {b}"
        );
        assert_eq!(json(&b)["error"], reason, "{what}");
    }
    // Rate limit: 3 per hour for the tiny tier, then 429 with headers.
    for _ in 0..3 {
        assert_eq!(send(a, get("limited.test", "/public/x", &[]), None).await.0, 200);
    }
    let (s, h, _) = send(a, get("limited.test", "/public/x", &[]), None).await;
    assert_eq!(s, 429);
    assert!(h.get("retry-after").is_some() && h.get("ratelimit-remaining").is_some(), "{h:?}");

    // Metrics count decisions by reason.
    let (_, m) = admin_get(e.gw.admin, "/metrics").unwrap();
    assert!(m.contains(r#"gatehouse_requests_total{decision="deny",reason="ip_denied"} 2"#), "{m}");
    assert!(m.contains("gatehouse_filter_chain_seconds_bucket"), "{m}");
    assert!(m.contains("gatehouse_bundle_age_seconds"), "{m}");
    assert_eq!(admin_get(e.gw.admin, "/healthz").unwrap().0, 200);

    // SIGHUP rereads the bundle at once, even when the file did not change.
    let loads = || {
        let (_, m) = admin_get(e.gw.admin, "/metrics").unwrap();
        m.lines()
            .find(|l| l.starts_with(r#"gatehouse_bundle_loads_total{result="ok"}"#))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    let before = loads();
    assert!(Command::new("kill").args(["-HUP", &e.gw.pid().to_string()]).status().unwrap().success());
    let t = Instant::now();
    while loads() != before + 1 {
        assert!(t.elapsed() < Duration::from_secs(5), "SIGHUP did not reload the bundle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(e.gw.logs().contains("SIGHUP"));
    assert_eq!(send(a, get("acme.test", "/api", &[("authorization", &auth)]), None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn misbehaving_components_fail_closed_and_the_gateway_stays_up() {
    let e = start().await;
    let a = e.gw.addr;
    for host in ["trap.test", "spin.test", "hog.test"] {
        let t = Instant::now();
        let (s, h, _) = match try_send(a, get(host, "/x", &[])).await {
            Ok(r) => r,
            Err(err) => panic!("{host}: {err}\n{}", e.gw.logs()),
        };
        assert_eq!((s, h.get("x-gatehouse-reason").unwrap().to_str().unwrap()), (503, "filter_failed"), "{host}");
        assert!(t.elapsed() < Duration::from_secs(5), "{host} took {:?}", t.elapsed());
    }
    // Twice more, and everything else still works.
    for host in ["trap.test", "spin.test"] {
        assert_eq!(send(a, get(host, "/x", &[]), None).await.0, 503);
    }
    assert_eq!(send(a, get("acme.test", "/api", &[("authorization", &bearer(&e.token))]), None).await.0, 200);
    // A third-party component written against the WIT alone.
    let (s, h, b) = send(a, get("custom.test", "/x", &[]), None).await;
    assert_eq!((s, h.get("x-gatehouse-reason").unwrap().to_str().unwrap()), (403, "demo_key_missing"));
    assert_eq!(json(&b)["error"], "demo_key_missing");
    assert_eq!(send(a, get("custom.test", "/x", &[("x-demo-key", "1")]), None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_body_streams_with_bounded_memory() {
    let e = start().await;
    let a = e.gw.addr;
    let auth = bearer(&e.token);
    // Warm up, then measure the peak resident size around a 50 MB upload.
    for _ in 0..5 {
        send(a, get("acme.test", "/api", &[("authorization", &auth)]), None).await;
    }
    let before = e.gw.mem_kb("VmHWM:");
    let size = 50 * 1024 * 1024;
    let req = Request::builder()
        .method("POST")
        .uri("/api/upload")
        .header("host", "acme.test")
        .header("authorization", &auth)
        .body(Generated { left: size }.boxed())
        .unwrap();
    let (s, _, b) = send(a, req, None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(json(&b)["body_bytes"], size);
    let after = e.gw.mem_kb("VmHWM:");
    eprintln!("gateway peak RSS: {before} kB before, {after} kB after a 50 MB upload");
    assert!(after < before + 20 * 1024, "peak RSS grew by {} kB", after - before);
    // Over the limit by Content-Length: refused before any byte is forwarded.
    let req = Request::builder()
        .method("POST")
        .uri("/api/upload")
        .header("host", "acme.test")
        .header("authorization", &auth)
        .header("content-length", "209715200")
        .body(body(Bytes::new()))
        .unwrap();
    assert_eq!(send(a, req, None).await.0, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_passes_through_after_the_check() {
    let e = start().await;
    let connect = |token: Option<String>| {
        let addr = e.gw.addr;
        async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut req =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request("ws://acme.test/ws")
                    .unwrap();
            if let Some(t) = token {
                req.headers_mut().insert("authorization", bearer(&t).parse().unwrap());
            }
            tokio_tungstenite::client_async(req, stream).await
        }
    };
    let (mut ws, resp) = connect(Some(e.token.clone())).await.unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        ws.send(tokio_tungstenite::tungstenite::Message::text(format!("hello {i}"))).await.unwrap();
        let m = ws.next().await.unwrap().unwrap();
        assert_eq!(m.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    // Without a token the upgrade is refused.
    match connect(None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|x| x.1)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bundle_reload_under_load_fails_nothing_and_bad_bundles_are_refused() {
    let e = start().await;
    let a = e.gw.addr;
    let auth = bearer(&e.token);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (okc, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (stop, okc, bad, auth) = (stop.clone(), okc.clone(), bad.clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = connect(a, None).await;
            while !stop.load(Ordering::Relaxed) {
                s.ready().await.unwrap();
                let r = s.send_request(get("acme.test", "/api", &[("authorization", &auth)])).await.unwrap();
                let status = r.status().as_u16();
                r.into_body().collect().await.unwrap();
                if status == 200 {
                    okc.fetch_add(1, Ordering::Relaxed)
                } else {
                    bad.fetch_add(1, Ordering::Relaxed)
                };
            }
        }));
    }
    // Five new revisions while the load runs.
    for rev in 2..7 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        compile_bundle(&e.dir, &policy(3 + rev), rev, &e.bundle());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, m) = admin_get(e.gw.admin, "/metrics").unwrap();
    assert!(m.contains("gatehouse_bundle_revision 6"), "{m}");
    // A tampered bundle: refused, the old one stays, nothing fails.
    let mut bytes = std::fs::read(e.bundle()).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(e.bundle(), &bytes).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let (_, m) = admin_get(e.gw.admin, "/metrics").unwrap();
    assert!(m.contains(r#"gatehouse_bundle_loads_total{result="refused"} 1"#), "{m}");
    assert!(m.contains("gatehouse_bundle_revision 6"), "{m}");
    assert!(e.gw.logs().contains("bundle refused"), "{}", e.gw.logs());
    let (ok_n, bad_n) = (okc.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    eprintln!("reload under load: {ok_n} requests ok, {bad_n} failed");
    assert!(ok_n > 100, "too little load: {ok_n}");
    assert_eq!(bad_n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_requests() {
    let mut e = start().await;
    let a = e.gw.addr;
    let auth = bearer(&e.token);
    let inflight =
        tokio::spawn(async move { send(a, get("acme.test", "/slow", &[("authorization", &auth)]), None).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(Command::new("kill").args(["-TERM", &e.gw.pid().to_string()]).status().unwrap().success());
    let (s, _, _) = inflight.await.unwrap();
    assert_eq!(s, 200, "the in-flight request must complete");
    let t = Instant::now();
    loop {
        if let Some(status) = e.gw.child.try_wait().unwrap() {
            assert!(status.success(), "exit {status}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "gateway did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(tokio::net::TcpStream::connect(a).await.is_err(), "listener must be closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_and_stops_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, ports, rx) = spawn_demo(tmp.path());
    let (listen, origin) = (ports.listen, ports.origin);
    // The walkthrough names an allowed request; find its token.
    let mut token = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while token.is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
            if line.contains("Authorization: Bearer ") && token.is_none() {
                token =
                    line.split("Authorization: Bearer ").nth(1).and_then(|r| r.split('\'').next()).map(str::to_string);
            }
        }
    }
    let token = token.expect("demo printed no curl line with a token");
    let addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    let (s, _, b) =
        send(addr, get("acme.example.test", "/api/invoices", &[("authorization", &bearer(&token))]), None).await;
    // The token was issued by the demo's origin, whose bundle the gateway pulled.
    assert_eq!(s, 200, "{b}");
    let identity = &json(&b)["identity"];
    assert!(identity["x-gatehouse-subject"].as_str().unwrap().starts_with("u_"), "{b}");
    assert_eq!(
        (identity["x-gatehouse-org"].as_str(), identity["x-gatehouse-roles"].as_str()),
        (Some("acme"), Some("viewer"))
    );
    assert_eq!(send(addr, get("acme.example.test", "/api/invoices", &[]), None).await.0, 401);
    // Signing out at the origin reaches the running gateway with its next bundle poll.
    let origin_addr: SocketAddr = format!("127.0.0.1:{origin}").parse().unwrap();
    let logout = Request::post("/t/acme/logout")
        .header("host", origin_addr.to_string())
        .header("authorization", bearer(&token))
        .body(body(Bytes::new()))
        .unwrap();
    assert_eq!(send(origin_addr, logout, None).await.0, 204);
    let t = Instant::now();
    loop {
        let (s, h, _) =
            send(addr, get("acme.example.test", "/api/invoices", &[("authorization", &bearer(&token))]), None).await;
        if s == 401 {
            assert_eq!(h["x-gatehouse-reason"], "session_revoked");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "the revoked session was still admitted after 10 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "demo exit {status}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "demo did not stop on Ctrl-C");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stand-in origin that serves the bundle with an ETag and answers 304 to a matching
/// `If-None-Match`; counts what it answered.
/// What the stand-in origin serves and counts: (bundle, etag, full answers, 304 answers).
type OriginState = Arc<std::sync::Mutex<(Vec<u8>, String, usize, usize)>>;

async fn bundle_origin(state: OriginState) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move {
                        let mut st = state.lock().unwrap();
                        let authorized =
                            req.headers().get("authorization").map(|v| v == "Bearer edge-secret").unwrap_or(false);
                        let resp = if !authorized {
                            Response::builder().status(401).body(body(Bytes::new())).unwrap()
                        } else if req
                            .headers()
                            .get("if-none-match")
                            .map(|v| v.to_str().unwrap() == st.1)
                            .unwrap_or(false)
                        {
                            st.3 += 1;
                            Response::builder().status(304).body(body(Bytes::new())).unwrap()
                        } else {
                            st.2 += 1;
                            Response::builder().header("etag", st.1.clone()).body(body(st.0.clone())).unwrap()
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bundle_from_an_origin_with_etag_polling_and_h2c() {
    let up = upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    compile_bundle(&dir, &policy(3), 1, &dir.join("b1.ghb"));
    let state =
        Arc::new(std::sync::Mutex::new((std::fs::read(dir.join("b1.ghb")).unwrap(), "\"r1\"".to_string(), 0, 0)));
    let origin = bundle_origin(state.clone()).await;
    let comps = component_dir();
    let cache = comps.parent().unwrap().parent().unwrap().join("gatehouse-test-cwasm");
    let (addr, admin) = (free_port(), free_port());
    let config = format!(
        "[listen]\naddr = \"127.0.0.1:{addr}\"\nadmin = \"127.0.0.1:{admin}\"\n[bundle]\norigin_url = \"http://{origin}/v1/bundles/test\"\norigin_token = \"edge-secret\"\npublic_key = \"keys/bundle-signing.pub.pem\"\nsecrets = \"keys/edge-secrets.toml\"\npoll_secs = 1\n[filters]\nbuiltin_dir = \"{}\"\ncache_dir = \"{}\"\n[[routes]]\nupstream = \"http://{up}\"\n",
        comps.display(),
        cache.display()
    );
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    // This gateway runs on one thread (a current-thread runtime), as in the benchmarks.
    let gw = GatewayProc::start_with_env(
        &dir.join("gateway.toml"),
        format!("127.0.0.1:{addr}").parse().unwrap(),
        format!("127.0.0.1:{admin}").parse().unwrap(),
        &dir.join("gateway.log"),
        &[("GATEHOUSE_THREADS", "1")],
    );
    let token = mint(&dir, "alice", "acme", "viewer");
    assert_eq!(send(gw.addr, get("acme.test", "/api", &[("authorization", &bearer(&token))]), None).await.0, 200);
    // Unchanged: the gateway asks with If-None-Match and gets 304s.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    {
        let st = state.lock().unwrap();
        assert_eq!(st.2, 1, "one full download");
        assert!(st.3 >= 1, "conditional polls answered 304");
    }
    // A revocation published at the origin reaches the running gateway within a poll.
    let mut revoked = policy(3);
    revoked.push_str("\n[revoked]\nsessions = []\n");
    let jti_line = {
        let t = token.split('.').nth(1).unwrap();
        use base64::Engine as _;
        let claims: Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t).unwrap()).unwrap();
        claims["jti"].as_str().unwrap().to_string()
    };
    revoked = revoked.replace("sessions = []", &format!("sessions = []\njti = [\"{jti_line}\"]"));
    compile_bundle(&dir, &revoked, 2, &dir.join("b2.ghb"));
    {
        let mut st = state.lock().unwrap();
        st.0 = std::fs::read(dir.join("b2.ghb")).unwrap();
        st.1 = "\"r2\"".into();
    }
    let t = Instant::now();
    loop {
        let (s, h, _) = send(gw.addr, get("acme.test", "/api", &[("authorization", &bearer(&token))]), None).await;
        if s == 401 {
            assert_eq!(h.get("x-gatehouse-reason").unwrap(), "token_revoked");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "revocation did not arrive within the poll interval");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // h2c (HTTP/2 with prior knowledge) on the same listener.
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let other = mint(&dir, "bob", "acme", "viewer");
    let req = Request::builder()
        .uri("http://acme.test/api/h2")
        .header("authorization", bearer(&other))
        .body(body(Bytes::new()))
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(json(&String::from_utf8_lossy(&b))["headers"]["x-gatehouse-subject"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_bundle_fails_closed_and_compiled_components_are_cached() {
    let e = start().await;
    let a = e.gw.addr;
    // Precompiled components are kept on disk for the next start.
    let cache = component_dir().parent().unwrap().parent().unwrap().join("gatehouse-test-cwasm");
    let cached = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|f| f.path().extension().is_some_and(|x| x == "cwasm"))
        .count();
    assert!(cached >= 5, "{cached} cached components in {}", cache.display());
    // A bundle that expires in a few seconds: enforced, then everything is denied.
    compile_bundle_ttl(&e.dir, &policy(3), 9, &e.bundle(), "4s");
    let auth = bearer(&e.token);
    let t = Instant::now();
    loop {
        let (_, m) = admin_get(e.gw.admin, "/metrics").unwrap();
        if m.contains("gatehouse_bundle_revision 9") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "short-lived bundle not loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(send(a, get("acme.test", "/api", &[("authorization", &auth)]), None).await.0, 200);
    assert_eq!(admin_get(e.gw.admin, "/readyz").unwrap().0, 200);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (s, h, _) = send(a, get("acme.test", "/api", &[("authorization", &auth)]), None).await;
    assert_eq!((s, h.get("x-gatehouse-reason").unwrap().to_str().unwrap()), (503, "bundle_expired"));
    assert_eq!(send(a, get("acme.test", "/public/x", &[]), None).await.0, 503);
    assert_eq!(admin_get(e.gw.admin, "/readyz").unwrap().0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_policy_reading_other_headers_is_served_from_its_first_request() {
    let e = start().await;
    let a = e.gw.addr;
    // Warm the filters on bundle 1 (they report the headers they read: `x-api-key`, ...).
    assert_eq!(send(a, get("acme.test", "/api", &[("authorization", &bearer(&e.token))]), None).await.0, 200);
    // Bundle 2 reads API keys from another header and has a key for acme.
    let out = ok(&[
        "apikey",
        "create",
        "--secrets",
        e.dir.join("keys/edge-secrets.toml").to_str().unwrap(),
        "--subject",
        "bot",
    ]);
    let key = out.lines().next().unwrap().trim_start_matches("API key (shown once): ").to_string();
    let entry: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("[[orgs")).collect();
    let mut p2 = policy(3).replace("leeway_secs = 30", "leeway_secs = 30\napi_key_header = \"x-key-2\"");
    p2.push('\n');
    p2.push_str(&entry.join("\n").replace("<org>", "acme"));
    compile_bundle(&e.dir, &p2, 2, &e.bundle());
    let t = Instant::now();
    while !admin_get(e.gw.admin, "/metrics").unwrap().1.contains("gatehouse_bundle_revision 2") {
        assert!(t.elapsed() < Duration::from_secs(5), "bundle 2 not loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..2 {
        let (s, _, b) = send(a, get("acme.test", "/api", &[("x-key-2", &key)]), None).await;
        assert_eq!(s, 200, "request {i} after the reload: {b}");
        assert_eq!(json(&b)["headers"]["x-gatehouse-subject"], "bot");
    }
}

/// The HTTP/1.1 front end on the wire: pipelining, chunked uploads, 100-continue, a refused
/// request's body dropped with the connection kept, HEAD, and the framing attacks of
/// request smuggling refused before anything reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http1_framing_on_the_wire() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let e = start().await;
    let a = e.gw.addr;
    let auth = format!("Authorization: Bearer {}\r\n", e.token);
    let count = |r: &str, what: &str| r.matches(what).count();

    // Two pipelined requests in one write: two answers, in order.
    let r = raw_exchange(
        a,
        format!("GET /api/one HTTP/1.1\r\nHost: acme.test\r\n{auth}\r\nGET /api/two HTTP/1.1\r\nHost: acme.test\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(count(&r, "HTTP/1.1 200 OK"), 2, "{r}");
    assert!(r.find("/api/one").unwrap() < r.find("/api/two").unwrap(), "{r}");

    // A chunked upload reaches the upstream whole, chunked again by the gateway.
    let r = raw_exchange(
        a,
        format!("POST /api/up HTTP/1.1\r\nHost: acme.test\r\n{auth}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6;ext\r\n world\r\n0\r\nx-t: 1\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    assert!(r.contains(r#""body_bytes":11"#) && r.contains(r#""transfer-encoding":"chunked""#), "{r}");

    // Expect: 100-continue: the gateway asks for the body once the request is allowed.
    let mut s = tokio::net::TcpStream::connect(a).await.unwrap();
    s.write_all(format!("POST /api/up HTTP/1.1\r\nHost: acme.test\r\n{auth}Content-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut got = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut got)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&got[..n]).starts_with("HTTP/1.1 100 Continue\r\n\r\n"));
    s.write_all(b"abcde").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("200 OK") && rest.contains(r#""body_bytes":5"#), "{rest}");
    // Without a credential, no 100: the refusal comes at once.
    let r = raw_exchange(
        a,
        b"POST /api/up HTTP/1.1\r\nHost: acme.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 401") && !r.contains("100 Continue"), "{r}");

    // A refused request with a small body: its body is dropped and the connection goes on.
    let r = raw_exchange(
        a,
        format!("POST /api/x HTTP/1.1\r\nHost: acme.test\r\nContent-Length: 4\r\n\r\nabcdGET /api/next HTTP/1.1\r\nHost: acme.test\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 401") && r.contains("credential_missing"), "{r}");
    assert!(r.contains("HTTP/1.1 200 OK") && r.contains("/api/next"), "{r}");

    // HEAD: a length, no body; the next answer follows at once.
    let r = raw_exchange(
        a,
        format!("HEAD /api/h HTTP/1.1\r\nHost: acme.test\r\n{auth}\r\nGET /api/after HTTP/1.1\r\nHost: acme.test\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(count(&r, "HTTP/1.1 200 OK"), 2, "{r}");
    assert!(r.contains("/api/after") && !r.contains("/api/h\""), "{r}");

    // Smuggling and other framing attacks: 400 (or 431), and the upstream sees nothing.
    let before = UPSTREAM_REQUESTS.load(Ordering::SeqCst);
    let smuggled = "GET /admin HTTP/1.1\r\nHost: acme.test\r\n\r\n";
    for (what, req, status) in [
        ("CL.TE", format!("POST /api HTTP/1.1\r\nHost: acme.test\r\n{auth}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"), "400"),
        ("TE.CL", format!("POST /api HTTP/1.1\r\nHost: acme.test\r\n{auth}Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{smuggled}"), "400"),
        ("two lengths", format!("POST /api HTTP/1.1\r\nHost: acme.test\r\n{auth}Content-Length: 4\r\nContent-Length: 40\r\n\r\nabcd{smuggled}"), "400"),
        ("obfuscated TE", format!("POST /api HTTP/1.1\r\nHost: acme.test\r\n{auth}Transfer-Encoding: xchunked\r\n\r\n{smuggled}"), "400"),
        ("TE list", format!("POST /api HTTP/1.1\r\nHost: acme.test\r\n{auth}Transfer-Encoding: chunked, identity\r\n\r\n{smuggled}"), "400"),
        ("space before colon", format!("POST /api HTTP/1.1\r\nHost: acme.test\r\n{auth}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}"), "400"),
        ("bad chunk size", format!("POST /api HTTP/1.1\r\nHost: acme.test\r\n{auth}Transfer-Encoding: chunked\r\n\r\nzz\r\n{smuggled}"), "400"),
        ("two hosts", format!("GET /api HTTP/1.1\r\nHost: acme.test\r\nHost: evil.test\r\n{auth}\r\n"), "400"),
        ("no host", format!("GET /api HTTP/1.1\r\n{auth}\r\n"), "400"),
        ("huge head", format!("GET /api HTTP/1.1\r\nHost: acme.test\r\nX: {}\r\n\r\n", "a".repeat(70_000)), "431"),
    ] {
        let r = raw_exchange(a, req.as_bytes()).await;
        assert!(r.starts_with(&format!("HTTP/1.1 {status}")), "{what}: {r}");
        assert_eq!(count(&r, "HTTP/1.1"), 1, "{what}: one answer, then the connection closes: {r}");
    }
    // "bad chunk size" is refused after the head went upstream, without its body: the
    // upstream connection is dropped, and no request it could complete was ever sent.
    let smuggled_through = UPSTREAM_REQUESTS.load(Ordering::SeqCst) - before;
    assert!(smuggled_through <= 1, "{smuggled_through} of the attack requests reached the upstream");

    // Answers framed by chunks, by a close, and after a 103 come through intact.
    let r = raw_exchange(a, b"GET /chunked HTTP/1.1\r\nHost: raw.test\r\nX-Demo-Key: 1\r\n\r\nGET /early HTTP/1.1\r\nHost: raw.test\r\nX-Demo-Key: 1\r\nConnection: close\r\n\r\n").await;
    assert!(
        r.contains("transfer-encoding: chunked\r\n") && r.contains("5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"),
        "{r}"
    );
    assert!(r.contains("HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload") && r.ends_with("\r\n\r\nok"), "{r}");
    let r = raw_exchange(a, b"GET /close HTTP/1.1\r\nHost: raw.test\r\nX-Demo-Key: 1\r\n\r\n").await;
    assert!(r.contains("transfer-encoding: chunked\r\n") && r.contains("b\r\nuntil close\r\n0\r\n\r\n"), "{r}");
    let r = raw_exchange(a, b"GET /close HTTP/1.0\r\nHost: raw.test\r\nX-Demo-Key: 1\r\n\r\n").await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK") && r.contains("connection: close") && r.ends_with("\r\n\r\nuntil close"),
        "{r}"
    );
}

/// Upstream failures get their reason codes, a slow upload that keeps moving is not cut
/// off by the upstream timeout, and a request body that stops moving is refused with 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_and_body_timeouts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let e = start_with_limits("upstream_timeout_secs = 1\nbody_timeout_secs = 2").await;
    let a = e.gw.addr;
    let auth = bearer(&e.token);
    let reason = |h: &hyper::HeaderMap| h.get("x-gatehouse-reason").unwrap().to_str().unwrap().to_string();

    // Nothing listens behind down.test: 502; /slow answers after 1.5 s: 504.
    let (s, h, _) = send(a, get("down.test", "/x", &[("x-demo-key", "1")]), None).await;
    assert_eq!((s, reason(&h).as_str()), (502, "upstream_unavailable"));
    let (s, h, _) = send(a, get("acme.test", "/slow", &[("authorization", &auth)]), None).await;
    assert_eq!((s, reason(&h).as_str()), (504, "upstream_timeout"));
    // The gateway goes on serving on the same route.
    assert_eq!(send(a, get("acme.test", "/api/x", &[("authorization", &auth)]), None).await.0, 200);

    // A slow upload (three parts, 0.7 s apart: longer than the upstream timeout in all,
    // never idle for the body timeout) reaches the upstream whole.
    let mut c = tokio::net::TcpStream::connect(a).await.unwrap();
    let head = format!(
        "POST /api/up HTTP/1.1\r\nHost: acme.test\r\nAuthorization: {auth}\r\nContent-Length: 15\r\nConnection: close\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    for part in [b"aaaaa", b"bbbbb", b"ccccc"] {
        c.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200 OK") && out.contains(r#""body_bytes":15"#), "{out}");

    // A body that stops moving, with a length or chunked: 408 request_timeout after the
    // body timeout, and the connection closes.
    for (framing, first) in [("Content-Length: 10", "hello"), ("Transfer-Encoding: chunked", "5\r\nhello\r\n")] {
        let t0 = std::time::Instant::now();
        let mut c = post_upload(a, &auth, &format!("{framing}\r\n\r\n{first}")).await;
        let mut out = Vec::new();
        let done = tokio::time::timeout(Duration::from_secs(6), c.read_to_end(&mut out)).await;
        let out = String::from_utf8_lossy(&out);
        assert!(done.is_ok(), "{framing}: the connection stayed open");
        assert!(out.starts_with("HTTP/1.1 408 ") && out.contains("request_timeout"), "{framing}: {out}");
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_millis(3500),
            "{framing}: refused after {took:?}"
        );
    }

    // A trickle (a byte every 1.2 s: never idle for the body timeout) is cut once the body
    // falls behind the minimum average rate, not after its 100 bytes' 2 minutes.
    let t0 = std::time::Instant::now();
    let mut c = post_upload(a, &auth, "Content-Length: 100\r\n\r\n").await;
    let mut out = Vec::new();
    let trickle = async {
        loop {
            if c.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1200)).await;
            let mut b = [0u8; 4096];
            match tokio::time::timeout(Duration::from_millis(1), c.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => out.extend_from_slice(&b[..n]),
                Err(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(8), trickle).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408 ") && out.contains("request_timeout"), "trickle: {out}");
    assert!(t0.elapsed() < Duration::from_secs(6), "trickle lasted {:?}", t0.elapsed());

    // Chunked trailers count: a flood of trailer lines is refused (431), not streamed on.
    let flood = "x-t: y\r\n".repeat(10_000);
    let r = raw_exchange(
        a,
        format!("POST /api/up HTTP/1.1\r\nHost: acme.test\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n{flood}\r\n").as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 431 ") && r.contains("headers_too_large"), "{r}");

    // An upstream that takes the head and then nothing: the body backs up and the request
    // ends with 504 after the body timeout.
    let mut c = tokio::net::TcpStream::connect(a).await.unwrap();
    c.write_all(b"POST /stall HTTP/1.1\r\nHost: raw.test\r\nX-Demo-Key: 1\r\nContent-Length: 67108864\r\n\r\n")
        .await
        .unwrap();
    let (mut rd, mut wr) = c.into_split();
    let t0 = std::time::Instant::now();
    let writer = tokio::spawn(async move {
        let zeros = vec![0u8; 1 << 16];
        while wr.write_all(&zeros).await.is_ok() {}
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut out)).await;
    writer.abort();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 504 ") && out.contains("upstream_timeout"), "stalled upstream: {out}");
    assert!(t0.elapsed() < Duration::from_secs(8), "stalled upstream took {:?}", t0.elapsed());

    // The same rules for HTTP/2 clients (h2c): a slow upload that keeps moving passes (1.4 s
    // in all, within the first body timeout's allowance), a body that stops gets 408.
    let stream = tokio::net::TcpStream::connect(a).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for (parts, stall) in [(3, false), (1, true)] {
        let (tx, frames) = channel_body(1);
        let req = Request::builder()
            .method("POST")
            .uri("http://acme.test/api/up")
            .header("authorization", &auth)
            .body(frames)
            .unwrap();
        let feeder = tokio::spawn(async move {
            for i in 0..parts {
                tx.send(Bytes::from_static(b"aaaaa")).await.unwrap();
                if i + 1 < parts {
                    tokio::time::sleep(Duration::from_millis(700)).await;
                }
            }
            if stall {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        });
        let t0 = std::time::Instant::now();
        let resp = tokio::time::timeout(Duration::from_secs(6), h2.send_request(req)).await.unwrap().unwrap();
        let status = resp.status().as_u16();
        let why = resp.headers().get("x-gatehouse-reason").map(|v| v.to_str().unwrap().to_string());
        let b = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        if stall {
            assert_eq!((status, why.as_deref()), (408, Some("request_timeout")));
            let took = t0.elapsed();
            assert!(
                took >= Duration::from_millis(1900) && took < Duration::from_millis(3500),
                "h2: refused after {took:?}"
            );
        } else {
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
            assert_eq!(json(&String::from_utf8_lossy(&b))["body_bytes"], 15);
        }
        feeder.abort();
    }
    // HTTP/2 client, upstream that stops reading: 504 after the body timeout.
    let (tx, frames) = channel_body(4);
    let req =
        Request::builder().method("POST").uri("http://raw.test/stall").header("x-demo-key", "1").body(frames).unwrap();
    let feeder = tokio::spawn(async move {
        let chunk = Bytes::from(vec![0u8; 1 << 16]);
        while tx.send(chunk.clone()).await.is_ok() {}
    });
    let t0 = std::time::Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(8), h2.send_request(req)).await.unwrap().unwrap();
    feeder.abort();
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.headers().get("x-gatehouse-reason").unwrap(), "upstream_timeout");
    assert!(t0.elapsed() < Duration::from_secs(6), "h2 stalled upstream took {:?}", t0.elapsed());
}

/// A request body fed through a channel (pending until the test sends; ended when the
/// sender is dropped).
fn channel_body(depth: usize) -> (tokio::sync::mpsc::Sender<Bytes>, TestBody) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(depth);
    let frames = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|b| b.map(|b| Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hyper::body::Frame::data(b))))
    });
    (tx, BodyExt::boxed(http_body_util::StreamBody::new(frames)))
}

/// A connection that has sent the head of `POST /api/up` to acme.test with `auth`, then
/// `rest` (the framing header, the blank line, any first body bytes).
async fn post_upload(a: SocketAddr, auth: &str, rest: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut c = tokio::net::TcpStream::connect(a).await.unwrap();
    let head = format!("POST /api/up HTTP/1.1\r\nHost: acme.test\r\nAuthorization: {auth}\r\n{rest}");
    c.write_all(head.as_bytes()).await.unwrap();
    c
}
