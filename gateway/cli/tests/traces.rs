//! OpenTelemetry traces end to end: the real `gatehouse gateway` exports its spans over
//! OTLP (HTTP/protobuf and gRPC) to receivers in this test, which decode them with the
//! OpenTelemetry protos. Checked: one span per request with the decision's attributes,
//! the filter chain and upstream children, the upstream's `traceparent` naming the
//! gateway's span, a trusted client's trace continued and an untrusted one's replaced,
//! sampling ratio 0 exporting nothing, and no credential or query text in any attribute;
//! the real `gatehouse origin` continuing the gateway's trace, with its storage spans.

#[allow(dead_code)] // only its configuration is used here (the origin runs as a process)
mod in_process_origin;
#[path = "traces/receiver.rs"]
mod receiver;
mod support;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use receiver::{grpc_receiver, http_receiver, Got, Received};
use serde_json::{json, Value};
use support::*;

const POLICY: &str = r#"
[[issuers]]
issuer = "https://login.test"
audiences = ["gatehouse"]
jwks_file = "keys/token-signing.jwks.json"

[tiers.team]
limits.user = { requests = 1000000, per_secs = 1 }

[orgs.acme]
tier = "team"
hosts = ["acme.test"]

[[routes]]
name = "api"
path = "/"
"#;

/// A client's trace context (W3C example ids).
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn client_traceparent() -> String {
    format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
}

/// The trusted client's address (the untrusted one is 127.0.0.1).
const TRUSTED: &str = "127.0.0.2";

/// The upstream: answers with the trace-context fields it received, as JSON.
async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                    let seen = json!({ "traceparent": h("traceparent"), "tracestate": h("tracestate") });
                    Ok::<_, Infallible>(Response::new(body(seen.to_string())))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}

struct Gateway {
    proc: GatewayProc,
    token: String,
    _dir: tempfile::TempDir,
}

/// A gateway exporting to `collector` with `protocol` and `ratio`, in front of `up`.
fn gateway(up: SocketAddr, collector: SocketAddr, protocol: &str, ratio: f64) -> Gateway {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    compile_bundle(dir, POLICY, 1, &dir.join("bundle.ghb"));
    let comps = component_dir();
    let cache = comps.parent().unwrap().parent().unwrap().join("gatehouse-test-cwasm");
    let (addr, admin) = (free_port(), free_port());
    let config = format!(
        r#"[listen]
addr = "127.0.0.1:{addr}"
admin = "127.0.0.1:{admin}"

[bundle]
file = "bundle.ghb"
public_key = "keys/bundle-signing.pub.pem"
secrets = "keys/edge-secrets.toml"

[filters]
builtin_dir = "{builtin}"
cache_dir = "{cache}"

[telemetry.otlp]
endpoint = "http://{collector}"
protocol = "{protocol}"
sample_ratio = {ratio:?}
trusted_clients = ["{TRUSTED}/32"]
service_name = "edge-under-test"

[[routes]]
upstream = "http://{up}"
"#,
        builtin = comps.display(),
        cache = cache.display(),
    );
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    let proc = GatewayProc::start_with_env(
        &dir.join("gateway.toml"),
        format!("127.0.0.1:{addr}").parse().unwrap(),
        format!("127.0.0.1:{admin}").parse().unwrap(),
        &dir.join("gateway.log"),
        // Export every 100 ms (the SDK's batch delay), not every 5 s.
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    let token = mint(dir, "alice", "acme", "viewer");
    Gateway { proc, token, _dir: tmp }
}

/// GET `path` on acme.test from `from` with extra headers: status and the JSON body.
async fn call(gw: &Gateway, from: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let from: IpAddr = from.parse().unwrap();
    let (status, _, text) = send(gw.proc.addr, get("acme.test", path, headers), Some(from)).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The upstream's parent as it saw it: (trace id, parent span id, flags).
fn seen_parent(seen: &Value) -> (String, String, String) {
    let tp = seen["traceparent"].as_str().unwrap_or_else(|| panic!("no traceparent upstream: {seen}"));
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00", "{tp}");
    (parts[1].to_string(), parts[2].to_string(), parts[3].to_string())
}

fn named<'a>(spans: &'a [Got], name: &str, trace: &str) -> Vec<&'a Got> {
    spans.iter().filter(|g| g.span.name == name && g.trace_id() == trace).collect()
}

/// The spans of the request whose upstream call saw `seen`: (request, chain, upstream).
fn request_spans(spans: &[Got], seen: &Value) -> (Got, Got, Got) {
    let (trace, parent, _) = seen_parent(seen);
    let upstream = spans
        .iter()
        .find(|g| g.span_id() == parent)
        .unwrap_or_else(|| panic!("the upstream's parent {parent} is no exported span: {spans:#?}"))
        .clone();
    assert_eq!(upstream.span.name, "gatehouse.upstream");
    assert_eq!(upstream.trace_id(), trace);
    assert_eq!(upstream.span.kind, 3, "client kind");
    let request = spans
        .iter()
        .find(|g| g.span_id() == upstream.parent_id())
        .unwrap_or_else(|| panic!("the upstream span's parent is no exported span: {spans:#?}"))
        .clone();
    let chain = named(spans, "gatehouse.filter_chain", &trace);
    assert_eq!(chain.len(), 1, "{chain:#?}");
    assert_eq!(chain[0].parent_id(), request.span_id(), "the chain is a child of the request");
    (request, chain[0].clone(), upstream)
}

/// Every span of one gateway, for an allowed request with a given trust.
async fn wait_spans(r: &Received, traces: &[String]) -> Vec<Got> {
    r.wait_for(Duration::from_secs(20), "the requests' spans", |got| {
        traces.iter().all(|t| {
            let names: Vec<&str> = got.iter().filter(|g| &g.trace_id() == t).map(|g| g.span.name.as_str()).collect();
            ["GET", "gatehouse.filter_chain", "gatehouse.upstream"].iter().all(|n| names.contains(n))
        })
    })
    .await
}

fn terminate(gw: &Gateway) {
    assert!(Command::new("kill").args(["-TERM", &gw.proc.pid().to_string()]).status().unwrap().success());
}

/// Wait (bounded) for the process to exit after SIGTERM.
fn wait_exit(gw: &mut Gateway) {
    let t = Instant::now();
    while gw.proc.child.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(20), "gateway did not exit: {}", gw.proc.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn check_request_span(request: &Got, status: &str) {
    assert_eq!(request.service, "edge-under-test");
    assert_eq!(request.span.kind, 2, "server kind");
    assert_eq!(request.attr("http.request.method").as_deref(), Some("GET"));
    assert_eq!(request.attr("url.path").as_deref(), Some("/orders"));
    assert_eq!(request.attr("server.address").as_deref(), Some("acme.test"));
    assert_eq!(request.attr("http.response.status_code").as_deref(), Some(status));
}

async fn allowed_denied_trusted_untrusted(protocol: &str, collector: SocketAddr, received: Received) {
    let up = upstream().await;
    let gw = gateway(up, collector, protocol, 1.0);
    let auth = format!("Bearer {}", gw.token);

    // Untrusted client with its own trace context: the gateway starts a new trace.
    let tp = client_traceparent();
    let (s, untrusted) = call(
        &gw,
        "127.0.0.1",
        "/orders?api_key=querysecret",
        &[("authorization", &auth), ("traceparent", &tp), ("tracestate", "client=1")],
    )
    .await;
    assert_eq!(s, 200, "{untrusted}");
    let (u_trace, _, u_flags) = seen_parent(&untrusted);
    assert_ne!(u_trace, CLIENT_TRACE, "an untrusted client's trace is not continued");
    assert_eq!(u_flags, "01");
    assert!(untrusted["tracestate"].is_null(), "an untrusted client's tracestate is dropped: {untrusted}");

    // Trusted client: its trace goes on through the gateway to the upstream.
    let (s, trusted) = call(
        &gw,
        TRUSTED,
        "/orders?api_key=querysecret",
        &[("authorization", &auth), ("traceparent", &tp), ("tracestate", "client=1")],
    )
    .await;
    assert_eq!(s, 200, "{trusted}");
    let (t_trace, t_parent, _) = seen_parent(&trusted);
    assert_eq!(t_trace, CLIENT_TRACE, "a trusted client's trace is continued");
    assert_ne!(t_parent, CLIENT_SPAN, "the upstream's parent is the gateway's span");
    assert_eq!(trusted["tracestate"], "client=1");

    // Denied: no credential.
    let (s, _) = call(&gw, "127.0.0.1", "/orders", &[]).await;
    assert_eq!(s, 401);

    let spans = wait_spans(&received, &[u_trace.clone(), t_trace.clone()]).await;
    let (request, chain, up_span) = request_spans(&spans, &untrusted);
    check_request_span(&request, "200");
    assert!(request.parent_id().is_empty(), "a new trace starts at the gateway: {request:#?}");
    assert_eq!(request.attr("gatehouse.decision").as_deref(), Some("allow"));
    assert_eq!(request.attr("gatehouse.org").as_deref(), Some("acme"));
    assert_eq!(request.attr("gatehouse.route").as_deref(), Some("api"));
    assert_eq!(up_span.attr("http.response.status_code").as_deref(), Some("200"));
    assert_eq!(up_span.attr("server.address").as_deref(), Some("127.0.0.1"));
    let t0 = |g: &Got| g.span.start_time_unix_nano;
    let t1 = |g: &Got| g.span.end_time_unix_nano;
    assert!(t0(&request) <= t0(&chain) && t1(&chain) <= t1(&request), "the chain runs inside the request");
    assert!(t0(&request) <= t0(&up_span) && t1(&up_span) <= t1(&request), "the upstream call too");

    let (request, _, _) = request_spans(&spans, &trusted);
    check_request_span(&request, "200");
    assert_eq!(request.parent_id(), CLIENT_SPAN, "the request span continues the client's");
    assert_eq!(request.trace_id(), CLIENT_TRACE);

    // The denied request: a span of its own, the reason on it, no upstream call.
    let denied = received
        .wait_for(Duration::from_secs(20), "the denied request's span", |got| {
            got.iter().any(|g| g.attr("gatehouse.decision").as_deref() == Some("deny"))
        })
        .await;
    let deny = denied.iter().find(|g| g.attr("gatehouse.decision").as_deref() == Some("deny")).unwrap();
    check_request_span(deny, "401");
    assert_eq!(deny.attr("gatehouse.reason").as_deref(), Some("credential_missing"));
    assert_eq!(deny.attr("gatehouse.org").as_deref(), Some("acme"));
    assert!(named(&denied, "gatehouse.upstream", &deny.trace_id()).is_empty(), "a refusal calls no upstream");
    assert_eq!(named(&denied, "gatehouse.filter_chain", &deny.trace_id()).len(), 1);

    // No credential, query or client address in anything exported.
    let all: String = denied.iter().map(Got::all_text).collect();
    for secret in [gw.token.as_str(), "querysecret", "api_key", "Bearer", TRUSTED] {
        assert!(!all.contains(secret), "`{secret}` exported in a span attribute");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_over_otlp_http() {
    let (collector, received) = http_receiver().await;
    allowed_denied_trusted_untrusted("http/protobuf", collector, received).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_over_otlp_grpc() {
    let (collector, received) = grpc_receiver().await;
    allowed_denied_trusted_untrusted("grpc", collector, received).await;
}

/// Ratio 0: nothing is exported, not even at shutdown's flush; the upstream still gets
/// the gateway's (unsampled) span as its parent, never the untrusted client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_ratio_zero_exports_nothing() {
    let (http_collector, http_got) = http_receiver().await;
    let (grpc_collector, grpc_got) = grpc_receiver().await;
    let up = upstream().await;
    for (collector, got, protocol) in
        [(http_collector, &http_got, "http/protobuf"), (grpc_collector, &grpc_got, "grpc")]
    {
        let mut gw = gateway(up, collector, protocol, 0.0);
        let auth = format!("Bearer {}", gw.token);
        let tp = client_traceparent();
        for _ in 0..5 {
            let (s, seen) = call(&gw, "127.0.0.1", "/orders", &[("authorization", &auth), ("traceparent", &tp)]).await;
            assert_eq!(s, 200);
            let (trace, parent, flags) = seen_parent(&seen);
            assert_ne!(trace, CLIENT_TRACE);
            assert_ne!(parent, CLIENT_SPAN);
            assert_eq!(flags, "00", "not sampled");
        }
        assert_eq!(call(&gw, "127.0.0.1", "/orders", &[]).await.0, 401);
        // A sampled trace of a trusted client is still recorded (parent-based).
        let (s, _) = call(&gw, TRUSTED, "/orders", &[("authorization", &auth), ("traceparent", &tp)]).await;
        assert_eq!(s, 200);
        terminate(&gw);
        wait_exit(&mut gw);
        let spans = got.spans();
        assert!(!spans.is_empty(), "{protocol}: the flush at shutdown delivers the trusted client's trace");
        assert!(
            spans.iter().all(|g| g.trace_id() == CLIENT_TRACE),
            "{protocol}: at ratio 0 only the continued sampled trace is exported: {spans:#?}"
        );
    }
}

/// The real origin process exports its own spans; behind the gateway it continues the
/// gateway's trace (the gateway is its trusted client), and its storage spans are
/// children of its request span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_continues_the_gateways_trace() {
    let (collector, received) = http_receiver().await;
    let tmp = tempfile::tempdir().unwrap();
    let odir = tmp.path().join("origin");
    let port = free_port();
    let _ = in_process_origin::origin_config(&odir, port, None);
    let mut text = std::fs::read_to_string(odir.join("origin.toml")).unwrap();
    text.push_str(&format!("[telemetry.otlp]\nendpoint = \"http://{collector}\"\ntrusted_clients = [\"127.0.0.1\"]\n"));
    std::fs::write(odir.join("origin.toml"), text).unwrap();
    let origin: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _origin = Killed(
        bin()
            .args(["origin", "--config", odir.join("origin.toml").to_str().unwrap()])
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("GATEHOUSE_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while tokio::net::TcpStream::connect(origin).await.is_err() {
        assert!(t.elapsed() < Duration::from_secs(60), "origin not listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Straight to the origin, without trace context: a new trace, with its storage spans.
    let org = json!({ "slug": "acme", "name": "Acme", "tier": "team", "owner_email": "o@acme.test",
        "owner_password": "owner password 1", "policy": { "hosts": ["acme.test"] } });
    let req = Request::builder()
        .method("POST")
        .uri("/v1/orgs")
        .header("host", origin.to_string())
        .header("authorization", format!("Bearer {}", in_process_origin::OPERATOR))
        .header("content-type", "application/json")
        .body(body(org.to_string()))
        .unwrap();
    assert_eq!(send(origin, req, None).await.0, 201);
    let spans = received
        .wait_for(Duration::from_secs(20), "the origin's request and storage spans", |got| {
            let Some(r) = got.iter().find(|g| g.span.name == "POST /v1/orgs") else { return false };
            got.iter().any(|g| g.span.name == "gatehouse.storage" && g.trace_id() == r.trace_id())
        })
        .await;
    let request = spans.iter().find(|g| g.span.name == "POST /v1/orgs").unwrap();
    assert_eq!(request.service, "gatehouse-origin");
    assert_eq!(request.attr("http.route").as_deref(), Some("/v1/orgs"));
    assert_eq!(request.attr("http.response.status_code").as_deref(), Some("201"));
    assert!(request.parent_id().is_empty(), "no trace context: a new trace");
    let storage: Vec<&Got> = spans.iter().filter(|g| g.span.name == "gatehouse.storage").collect();
    assert!(storage.iter().all(|g| g.attr("db.operation.name").is_some()), "{storage:#?}");
    assert!(storage.iter().any(|g| g.trace_id() == request.trace_id()));
    let all: String = spans.iter().map(Got::all_text).collect();
    for secret in ["owner password 1", "o@acme.test", in_process_origin::OPERATOR] {
        assert!(!all.contains(secret), "`{secret}` exported in a span attribute");
    }

    // Through the gateway: the origin's span is the child of the gateway's upstream span.
    let (gw_collector, gw_received) = http_receiver().await;
    let gw = gateway(origin, gw_collector, "http/protobuf", 1.0);
    let auth = format!("Bearer {}", gw.token);
    let (s, _) = call(&gw, "127.0.0.1", "/t/acme/.well-known/jwks.json", &[("authorization", &auth)]).await;
    assert_eq!(s, 200);
    let gw_spans = gw_received
        .wait_for(Duration::from_secs(20), "the gateway's upstream span", |got| {
            got.iter().any(|g| g.span.name == "gatehouse.upstream")
        })
        .await;
    let up_span = gw_spans.iter().find(|g| g.span.name == "gatehouse.upstream").unwrap();
    let spans = received
        .wait_for(Duration::from_secs(20), "the origin's span under the gateway's", |got| {
            got.iter().any(|g| g.parent_id() == up_span.span_id())
        })
        .await;
    let child = spans.iter().find(|g| g.parent_id() == up_span.span_id()).unwrap();
    assert_eq!(child.span.name, "GET /t/{slug}/.well-known/jwks.json");
    assert_eq!(child.trace_id(), up_span.trace_id());
    assert_eq!(child.attr("gatehouse.org").as_deref(), Some("acme"));
}

/// An h2c (prior knowledge) client's request: the HTTP/2 front end makes the same spans
/// and hands the upstream the gateway's span as its parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_requests_are_traced_too() {
    let (collector, received) = http_receiver().await;
    let up = upstream().await;
    let gw = gateway(up, collector, "http/protobuf", 1.0);
    let stream = tokio::net::TcpStream::connect(gw.proc.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!("http://acme.test/orders?token={}", gw.token))
        .header("authorization", format!("Bearer {}", gw.token))
        .header("traceparent", client_traceparent())
        .body(body(""))
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    let seen: Value = serde_json::from_slice(&text).unwrap();
    let (trace, _, _) = seen_parent(&seen);
    assert_ne!(trace, CLIENT_TRACE, "an untrusted h2 client's trace is not continued");
    let spans = wait_spans(&received, std::slice::from_ref(&trace)).await;
    let (request, _, up_span) = request_spans(&spans, &seen);
    check_request_span(&request, "200");
    assert_eq!(request.attr("gatehouse.decision").as_deref(), Some("allow"));
    assert_eq!(up_span.attr("http.response.status_code").as_deref(), Some("200"));
    let all: String = spans.iter().map(Got::all_text).collect();
    assert!(!all.contains(gw.token.as_str()), "the token is exported");
}

/// Without `[telemetry.otlp]`: the client's traceparent reaches the upstream unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_telemetry_traceparent_passes_unchanged() {
    let up = upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    compile_bundle(dir, POLICY, 1, &dir.join("bundle.ghb"));
    let comps = component_dir();
    let cache = comps.parent().unwrap().parent().unwrap().join("gatehouse-test-cwasm");
    let (addr, admin) = (free_port(), free_port());
    let config = format!(
        "[listen]\naddr = \"127.0.0.1:{addr}\"\nadmin = \"127.0.0.1:{admin}\"\n[bundle]\nfile = \"bundle.ghb\"\npublic_key = \"keys/bundle-signing.pub.pem\"\nsecrets = \"keys/edge-secrets.toml\"\n[filters]\nbuiltin_dir = \"{}\"\ncache_dir = \"{}\"\n[[routes]]\nupstream = \"http://{up}\"\n",
        comps.display(),
        cache.display()
    );
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    let proc = GatewayProc::start(
        &dir.join("gateway.toml"),
        format!("127.0.0.1:{addr}").parse().unwrap(),
        format!("127.0.0.1:{admin}").parse().unwrap(),
        &dir.join("gateway.log"),
    );
    let token = mint(dir, "alice", "acme", "viewer");
    let gw = Gateway { proc, token, _dir: tmp };
    let auth = format!("Bearer {}", gw.token);
    let tp = client_traceparent();
    let (s, seen) =
        call(&gw, "127.0.0.1", "/orders", &[("authorization", &auth), ("traceparent", &tp), ("tracestate", "c=1")])
            .await;
    assert_eq!(s, 200);
    assert_eq!(seen["traceparent"], tp.as_str());
    assert_eq!(seen["tracestate"], "c=1");
}
