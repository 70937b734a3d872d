//! Error reports from the real `gatehouse gateway` and `gatehouse origin` processes to a
//! Sentry endpoint on loopback (`[telemetry.sentry] dsn = "http://publickey@127.0.0.1:…/1"`):
//! a filter that traps, an upstream that is down, a refused bundle, and an origin whose
//! tenant storage is unreadable each arrive as an error event with the message, the
//! service and the request id, and nothing personal or secret is anywhere in what was sent.

#[path = "../../telemetry/tests/sentry_receiver/mod.rs"]
mod sentry_receiver;
mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Request;
use sentry_receiver::{Envelope, Receiver};
use serde_json::{json, Value};
use support::*;

const WAIT: Duration = Duration::from_secs(20);
const CLIENT: &str = "127.0.0.7";
const FORWARDED: &str = "203.0.113.77";
const COOKIE_SECRET: &str = "s3ss10nC00k1eValue";

const POLICY: &str = r#"
[tiers.team]
limits.user = { requests = 1000000, per_secs = 1 }

[[issuers]]
issuer = "https://login.test"
audiences = ["gatehouse"]
jwks_file = "keys/token-signing.jwks.json"

[orgs.acme]
tier = "team"
hosts = ["acme.test"]

[[routes]]
name = "api"
path = "/"
"#;

/// No event's raw envelope holds any of `secrets`.
fn assert_clean(envelopes: &[Envelope], secrets: &[&str]) {
    assert!(!envelopes.is_empty());
    for env in envelopes {
        let raw = String::from_utf8_lossy(&env.raw);
        for s in secrets {
            assert!(!raw.contains(s), "`{s}` was sent to Sentry: {raw}");
        }
    }
}

fn is_error(e: &Value) -> bool {
    // The protocol's default level goes unsaid.
    e["level"].is_null() || e["level"] == "error"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_arrive_with_the_request_id() {
    let rx = Receiver::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    compile_bundle(dir, POLICY, 1, &dir.join("bundle.ghb"));
    let token = mint(dir, "alice", "acme", "viewer");
    let comps = component_dir();
    let cache = comps.parent().unwrap().parent().unwrap().join("gatehouse-test-cwasm");
    let (addr, admin) = (free_port(), free_port());
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
builtin_dir = "{builtin}"
cache_dir = "{cache}"
max_call_ms = 50

[telemetry.sentry]
dsn = "{dsn}"
environment = "test"

[[routes]]
host = "trap.test"
upstream = "http://127.0.0.1:1"
filters = ["{trap}"]

# Port 1 (tcpmux): nothing listens there.
[[routes]]
host = "down.test"
upstream = "http://127.0.0.1:1"
filters = ["{require_header}"]

[[routes]]
upstream = "http://127.0.0.1:1"
"#,
        builtin = comps.display(),
        cache = cache.display(),
        dsn = rx.dsn(),
        trap = comps.join("gatehouse_testing_trap.wasm").display(),
        require_header = comps.join("gatehouse_example_require_header.wasm").display(),
    );
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    let gw = GatewayProc::start(
        &dir.join("gateway.toml"),
        format!("127.0.0.1:{addr}").parse().unwrap(),
        format!("127.0.0.1:{admin}").parse().unwrap(),
        &dir.join("gateway.log"),
    );
    let from: Option<IpAddr> = Some(CLIENT.parse().unwrap());
    let auth = format!("Bearer {token}");
    let personal = [
        ("authorization", auth.as_str()),
        ("cookie", &format!("session={COOKIE_SECRET}")),
        ("x-forwarded-for", FORWARDED),
    ];

    // (a) A filter that traps: denied, and reported with the request's id.
    let mut headers = vec![("x-request-id", "req-trap-1")];
    headers.extend(personal.iter().map(|(k, v)| (*k, *v)));
    let (status, h, _) = send(gw.addr, get("trap.test", "/x?email=carol@example.com", &headers), from).await;
    assert_eq!((status, h.get("x-gatehouse-reason").unwrap().to_str().unwrap()), (503, "filter_failed"));
    let (e, _) = rx
        .wait_event(WAIT, |e| e["tags"]["request_id"] == "req-trap-1")
        .unwrap_or_else(|| panic!("no report of the filter failure: {:?}\n{}", rx.envelopes(), gw.logs()));
    assert_eq!(e["message"], "filter failed; request denied");
    assert!(is_error(&e), "{e}");
    assert_eq!(e["tags"]["service"], "gatehouse-gateway");
    assert_eq!(e["environment"], "test");

    // An upstream that is down: 502, reported with the id.
    let mut headers = vec![("x-request-id", "req-down-1"), ("x-demo-key", "1")];
    headers.extend(personal.iter().map(|(k, v)| (*k, *v)));
    assert_eq!(send(gw.addr, get("down.test", "/y", &headers), from).await.0, 502);
    let (e, _) = rx
        .wait_event(WAIT, |e| e["tags"]["request_id"] == "req-down-1")
        .unwrap_or_else(|| panic!("no report of the upstream failure\n{}", gw.logs()));
    assert_eq!(e["message"], "upstream connect failed");
    assert!(is_error(&e), "{e}");

    // A bundle the gateway refuses: reported (no request to name), the old one kept.
    std::fs::write(dir.join("bundle.ghb"), b"not a bundle").unwrap();
    let (e, _) = rx
        .wait_event(WAIT, |e| e["message"] == "bundle refused; keeping the bundle in force")
        .unwrap_or_else(|| panic!("no report of the refused bundle\n{}", gw.logs()));
    assert_eq!(e["tags"]["service"], "gatehouse-gateway");
    assert_eq!(e["tags"].get("request_id"), None);

    assert_clean(&rx.envelopes(), &[&token, COOKIE_SECRET, FORWARDED, CLIENT, "carol@example.com"]);
}

const OPERATOR: &str = ORIGIN_OPERATOR;

fn start_origin(dir: &Path, addr: SocketAddr) -> Killed {
    let child: Child = bin()
        .args(["origin", "--config", dir.join("origin.toml").to_str().unwrap()])
        .env("GATEHOUSE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("origin.log")).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "origin did not start: {}",
            std::fs::read_to_string(dir.join("origin.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Killed(child)
}

/// The tenants' database files under `dir` (not their audit files).
fn tenant_databases(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.parent().is_some_and(|d| d.ends_with("tenants"))
                && p.extension().is_some_and(|x| x == "db")
                && !p.to_string_lossy().ends_with(".audit.db")
            {
                out.push(p);
            }
        }
    }
    out
}

fn origin_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    request_id: Option<&str>,
    body: Value,
) -> Request<TestBody> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {OPERATOR}"))
        .header("x-forwarded-for", FORWARDED)
        .header("content-type", "application/json");
    if let Some(id) = request_id {
        b = b.header("x-request-id", id);
    }
    let body = if body.is_null() { Bytes::new() } else { Bytes::from(body.to_string()) };
    b.body(support::body(body)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_internal_errors_arrive_with_the_request_id() {
    let rx = Receiver::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    write_origin_config(dir, addr.port(), &format!("[telemetry.sentry]\ndsn = \"{}\"\n", rx.dsn()));
    let origin = start_origin(dir, addr);
    let org = json!({ "slug": "acme", "name": "Acme", "tier": "team", "owner_email": "owner@acme.example",
                      "owner_password": "owner password 1" });
    let (s, _, b) = send(addr, origin_request(addr, "POST", "/v1/orgs", None, org), None).await;
    assert_eq!(s, 201, "{b}");
    drop(origin);

    // The tenant's storage becomes unreadable (the file is no database any more).
    let dbs = tenant_databases(&dir.join("data"));
    assert_eq!(dbs.len(), 1, "{dbs:?}");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", dbs[0].display()));
    }
    std::fs::write(&dbs[0], vec![0x5a; 8192]).unwrap();
    let _origin = start_origin(dir, addr);

    let list = |id| origin_request(addr, "GET", "/v1/orgs/acme/users?email=owner@acme.example", id, Value::Null);
    let (s, _, b) = send(addr, list(Some("req-origin-1")), Some(CLIENT.parse().unwrap())).await;
    assert_eq!(s, 500, "{b}");
    assert_eq!(serde_json::from_str::<Value>(&b).unwrap()["error"], "internal_error");
    let (e, _) = rx.wait_event(WAIT, |e| e["tags"]["request_id"] == "req-origin-1").unwrap_or_else(|| {
        panic!(
            "no report of the 500: {:?}\n{}",
            rx.envelopes(),
            std::fs::read_to_string(dir.join("origin.log")).unwrap_or_default()
        )
    });
    assert!(e["message"].as_str().unwrap().starts_with("request failed"), "{e}");
    assert!(is_error(&e), "{e}");
    assert_eq!(e["tags"]["service"], "gatehouse-origin");

    // Without an id from the client, the origin's own (the one its audit records use).
    let (s, _, _) = send(addr, list(None), None).await;
    assert_eq!(s, 500);
    let seen = rx.envelopes().len();
    let (e, _) = rx
        .wait_event(WAIT, |e| e["tags"]["request_id"].as_str().is_some_and(|id| id.starts_with("r_")))
        .unwrap_or_else(|| panic!("no report with the origin's own request id ({seen} envelopes)"));
    assert!(e["message"].as_str().unwrap().starts_with("request failed"), "{e}");

    assert_clean(&rx.envelopes(), &[OPERATOR, FORWARDED, CLIENT, "owner@acme.example", "owner password 1"]);
}
