//! The authorization service's gRPC protocol (Envoy `ext_authz` v3) over real gRPC on
//! loopback: the gateway's engine serves `envoy.service.auth.v3.Authorization/Check`
//! with tonic (`gatehouse_proxy::authz::grpc::serve`, as `gatehouse authz` runs it) and
//! the tests call it with the client generated from the same protos (envoy-types).
//! Envoy itself is not installable here; its configs are in deploy/integrations.
//!
//! Every kind of answer (allow with identity headers and spoofed ones removed, 401 with
//! `WWW-Authenticate`, 403, 429 with `Retry-After` and `RateLimit-*`, the sign-in
//! redirect, unreadable checks), the bounds and the drain; and the whole conformance
//! corpus through gRPC, under both built-in chains, each case's `peer` as
//! `attributes.source.address`.
//!
//! `cargo test -p gatehouse-proxy --test authz_grpc`

#[path = "conformance/support.rs"]
mod corpus;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corpus::{Case, Outcome};
use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address, Address, HeaderMap, HeaderValue, Pipe, SocketAddress,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use envoy_types::pb::google::protobuf::value::Kind;
use gatehouse_proxy::bundle::BundleStore;
use gatehouse_proxy::config::GatewayConfig;
use gatehouse_proxy::filters::{FilterHost, Shared};
use gatehouse_proxy::gateway::Gateway;
use gatehouse_proxy::metrics::Metrics;
use tonic::transport::Channel;

/// A gateway serving checks on a loopback port.
struct Service {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Start the gateway on the corpus's bundle, its one route running `chain`.
async fn start(chain: &[&str], drain: Duration) -> Service {
    let b = corpus::bundle();
    let dir = corpus::dir();
    let chain: Vec<String> = chain.iter().map(|c| format!("{c:?}")).collect();
    let config: GatewayConfig = toml::from_str(&format!(
        r#"
        [listen]
        admin = "127.0.0.1:0"
        [bundle]
        public_key = {pk:?}
        [filters]
        pool_size = 2
        [authz]
        grpc = "127.0.0.1:0"
        [[routes]]
        filters = [{chain}]
        "#,
        pk = dir.join("keys/bundle-signing.pub.pem"),
        chain = chain.join(", "),
    ))
    .expect("gateway config");
    let metrics = Arc::new(Metrics::new());
    let bundles = Arc::new(BundleStore::new(b.public_key, b.secrets, b.secrets_json, metrics.clone()));
    bundles.install(b.bytes).expect("corpus bundle");
    let components = corpus::component_dir();
    let sources: Vec<(String, std::path::PathBuf)> = config.routes[0]
        .filters
        .iter()
        .map(|n| (n.clone(), gatehouse_proxy::filters::builtin_path(&components, n)))
        .collect();
    let shared = Arc::new(Shared::new(gatehouse_core::MemoryRateStore::new(10_000, [7; 16]), None));
    // Compiled components are cached between runs and shared by this file's tests (one
    // compiles while the others wait, then they load its code).
    static COMPILE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let mut settings = config.filters.clone();
    settings.cache_dir = Some(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("authz-grpc-cwasm"));
    let host = {
        let _one = COMPILE.lock().unwrap_or_else(|p| p.into_inner());
        Arc::new(FilterHost::new(&settings, &sources, shared).expect("filter components"))
    };
    let gateway = Arc::new(Gateway::new(config, bundles, host, metrics, None).expect("gateway"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(gatehouse_proxy::authz::grpc::serve(listener, gateway, rx, drain));
    Service { addr, stop, task }
}

async fn client(addr: SocketAddr) -> AuthorizationClient<Channel> {
    AuthorizationClient::connect(format!("http://{addr}")).await.expect("connect").max_decoding_message_size(1 << 20)
}

fn peer(ip: &str, port: u32) -> Peer {
    Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.to_string(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

/// The check Envoy sends for `c`: `headers` as a map (lower-case names, as Envoy sends
/// them) or, when a name repeats, as `header_map` (Envoy's `encode_raw_headers`); the
/// pseudo-headers Envoy adds; the case's peer as the source.
fn check_of(c: &Case) -> CheckRequest {
    let target = match &c.query {
        Some(q) => format!("{}?{q}", c.path),
        None => c.path.clone(),
    };
    let mut names: Vec<String> = c.headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
    names.sort();
    let repeats = names.windows(2).any(|w| w[0] == w[1]);
    let pseudo = [(":authority", c.host.as_str()), (":method", c.method.as_str()), (":path", target.as_str())];
    let mut http = HttpRequest {
        method: c.method.clone(),
        host: c.host.clone(),
        path: target.clone(),
        scheme: "https".into(),
        protocol: "HTTP/1.1".into(),
        ..Default::default()
    };
    let all = pseudo.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let all = all.chain(c.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())));
    if repeats {
        let headers =
            all.map(|(key, v)| HeaderValue { key, value: String::new(), raw_value: v.into_bytes() }).collect();
        http.header_map = Some(HeaderMap { headers });
    } else {
        http.headers = all.collect::<HashMap<_, _>>();
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer(&c.peer, 51_000)),
            destination: Some(peer("127.0.0.1", 8080)),
            request: Some(Request { http: Some(http), ..Default::default() }),
            ..Default::default()
        }),
    }
}

/// One request's answer as the conformance outcome (identity headers, reason, location),
/// checking the gRPC status agrees with the HTTP one.
fn outcome_of(r: &CheckResponse) -> Outcome {
    let code = r.status.as_ref().map_or(-1, |s| s.code);
    match &r.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            assert_eq!(code, tonic::Code::Ok as i32, "an allow is status OK");
            Outcome::allow(
                ok.headers.iter().filter_map(|h| h.header.as_ref()).map(|h| (h.key.clone(), h.value.clone())).collect(),
            )
        }
        Some(HttpResponse::DeniedResponse(d)) => {
            let status = d.status.as_ref().map_or(0, |s| s.code as u16);
            let expect = if status == 401 { tonic::Code::Unauthenticated } else { tonic::Code::PermissionDenied };
            assert_eq!(code, expect as i32, "gRPC status of an HTTP {status}");
            if status == 302 {
                return Outcome::redirect(&header(d.headers.as_slice(), "location").unwrap_or_default());
            }
            Outcome::deny(status, &header(&d.headers, "x-gatehouse-reason").unwrap_or_default())
        }
        other => panic!("no http_response: {other:?}"),
    }
}

fn header(h: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption], name: &str) -> Option<String> {
    h.iter().filter_map(|o| o.header.as_ref()).find(|h| h.key.eq_ignore_ascii_case(name)).map(|h| h.value.clone())
}

fn meta(r: &CheckResponse, key: &str) -> Option<String> {
    match r.dynamic_metadata.as_ref()?.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(s) => Some(s.clone()),
        Kind::NumberValue(n) => Some(n.to_string()),
        _ => None,
    }
}

fn case(name: &str) -> Case {
    corpus::cases().into_iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no corpus case {name}"))
}

async fn ask(client: &mut AuthorizationClient<Channel>, req: CheckRequest) -> CheckResponse {
    client.check(req).await.expect("check call").into_inner()
}

fn denied(r: &CheckResponse) -> &envoy_types::pb::envoy::service::auth::v3::DeniedHttpResponse {
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => d,
        other => panic!("not denied: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_answer() {
    let svc = start(&["gatehouse"], Duration::from_secs(5)).await;
    let mut client = client(svc.addr).await;

    // Allow: identity headers set (overwriting a spoofed one), other spoofed identity
    // headers removed, metadata without the token.
    let mut c = case("viewer reads");
    c.headers.push(("X-Gatehouse-Subject".into(), "mallory".into()));
    c.headers.push(("X_Gatehouse_Roles".into(), "admin".into()));
    let r = ask(&mut client, check_of(&c)).await;
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else { panic!("not allowed: {r:?}") };
    assert_eq!(header(&ok.headers, "x-gatehouse-subject").as_deref(), Some("alice"));
    assert_eq!(header(&ok.headers, "x-gatehouse-org").as_deref(), Some("acme"));
    assert_eq!(header(&ok.headers, "x-gatehouse-roles").as_deref(), Some("viewer"));
    assert!(ok.headers.iter().all(|h| h.append_action == 2 && h.keep_empty_value), "OVERWRITE_IF_EXISTS_OR_ADD");
    assert_eq!(ok.headers_to_remove, vec!["x_gatehouse_roles".to_string()]);
    for h in ok.response_headers_to_add.iter().filter_map(|h| h.header.as_ref()) {
        assert!(h.key.starts_with("ratelimit"), "response header {}", h.key);
    }
    assert_eq!(meta(&r, "decision").as_deref(), Some("allow"));
    assert_eq!(meta(&r, "org").as_deref(), Some("acme"));
    assert_eq!(meta(&r, "subject").as_deref(), Some("alice"));
    assert_eq!(meta(&r, "auth").as_deref(), Some("jwt"));
    let token = c.headers[0].1.trim_start_matches("Bearer ");
    let all_meta = format!("{:?}", r.dynamic_metadata);
    assert!(!all_meta.contains(token) && !all_meta.contains("mallory"), "{all_meta}");

    // 401 with WWW-Authenticate, the JSON body and UNAUTHENTICATED.
    let r = ask(&mut client, check_of(&case("no credential"))).await;
    let d = denied(&r);
    assert_eq!(d.status.as_ref().unwrap().code, 401);
    assert!(header(&d.headers, "www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{d:?}");
    assert_eq!(header(&d.headers, "x-gatehouse-reason").as_deref(), Some("credential_missing"));
    assert_eq!(header(&d.headers, "content-type").as_deref(), Some("application/json"));
    assert_eq!(d.body, "{\"error\":\"credential_missing\"}\n");
    assert_eq!(r.status.as_ref().unwrap().code, tonic::Code::Unauthenticated as i32);
    assert_eq!(meta(&r, "reason").as_deref(), Some("credential_missing"));

    // 403.
    let r = ask(&mut client, check_of(&case("IP outside the allowlist"))).await;
    assert_eq!(outcome_of(&r), Outcome::deny(403, "ip_not_allowed"));
    assert_eq!((meta(&r, "decision").as_deref(), meta(&r, "status").as_deref()), (Some("deny"), Some("403")));

    // 429 once the tiny org's three requests are spent, with Retry-After and RateLimit-*;
    // each check counts once.
    let tiny = check_of(&case("tiny org over its limit"));
    for i in 0..3 {
        let r = ask(&mut client, tiny.clone()).await;
        assert!(matches!(r.http_response, Some(HttpResponse::OkResponse(_))), "request {i} of the limit: {r:?}");
    }
    let r = ask(&mut client, tiny).await;
    let d = denied(&r);
    assert_eq!(d.status.as_ref().unwrap().code, 429);
    assert_eq!(header(&d.headers, "x-gatehouse-reason").as_deref(), Some("rate_limited"));
    assert!(header(&d.headers, "retry-after").is_some_and(|v| v.parse::<u64>().is_ok()), "{d:?}");
    assert!(d.headers.iter().filter_map(|h| h.header.as_ref()).any(|h| h.key.starts_with("ratelimit")), "{d:?}");

    // The sign-in redirect for a browser: 302 with Location.
    let r = ask(&mut client, check_of(&case("browser without a session is redirected"))).await;
    let d = denied(&r);
    assert_eq!(d.status.as_ref().unwrap().code, 302);
    let location = header(&d.headers, "location").unwrap();
    assert!(location.starts_with("https://login.corpus.test/t/acme/login"), "{location}");
    assert_eq!(meta(&r, "decision").as_deref(), Some("redirect"));

    svc.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), svc.task).await.expect("drained").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_checks_are_refused() {
    let svc = start(&["gatehouse"], Duration::from_secs(5)).await;
    let mut client = client(svc.addr).await;
    let good = check_of(&case("viewer reads"));
    let malformed = |r: &CheckResponse| {
        let d = denied(r);
        assert_eq!(d.status.as_ref().unwrap().code, 400, "{r:?}");
        assert_eq!(header(&d.headers, "x-gatehouse-reason").as_deref(), Some("request_malformed"));
        assert_eq!(r.status.as_ref().unwrap().code, tonic::Code::PermissionDenied as i32);
    };

    let mut no_source = good.clone();
    no_source.attributes.as_mut().unwrap().source = None;
    malformed(&ask(&mut client, no_source).await);

    let mut pipe = good.clone();
    pipe.attributes.as_mut().unwrap().source = Some(Peer {
        address: Some(Address { address: Some(address::Address::Pipe(Pipe { path: "/run/x".into(), mode: 0 })) }),
        ..Default::default()
    });
    malformed(&ask(&mut client, pipe).await);

    let mut named = good.clone();
    named.attributes.as_mut().unwrap().source = Some(peer("client.example", 1));
    malformed(&ask(&mut client, named).await);

    let mut no_http = good.clone();
    no_http.attributes.as_mut().unwrap().request = None;
    malformed(&ask(&mut client, no_http).await);
    malformed(&ask(&mut client, CheckRequest::default()).await);

    // Too many header fields: 431, as the HTTP front end answers.
    let mut many = good.clone();
    let http = many.attributes.as_mut().unwrap().request.as_mut().unwrap().http.as_mut().unwrap();
    http.headers.extend((0..=100).map(|i| (format!("x-h{i}"), "v".to_string())));
    let r = ask(&mut client, many).await;
    assert_eq!(outcome_of(&r), Outcome::deny(431, "headers_too_large"));

    // A message beyond the decode bound fails the call (Envoy then denies: failure_mode_allow
    // is off in the shipped configs).
    let mut huge = good.clone();
    let http = huge.attributes.as_mut().unwrap().request.as_mut().unwrap().http.as_mut().unwrap();
    http.body = "x".repeat(gatehouse_proxy::authz::grpc::MAX_MESSAGE_BYTES + 1);
    let err = client.check(huge).await.expect_err("an oversized check must fail");
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");

    // The connection still serves good checks.
    let r = ask(&mut client, good).await;
    assert!(matches!(r.http_response, Some(HttpResponse::OkResponse(_))));
    svc.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), svc.task).await.expect("drained").unwrap();
}

/// The conformance corpus through gRPC, in file order (the rate-limit cases depend on
/// it), on a fresh gateway per chain.
async fn corpus_through(chain: &[&str], label: &str) {
    let svc = start(chain, Duration::from_secs(5)).await;
    let mut client = client(svc.addr).await;
    let mut answers = HashMap::new();
    let started = Instant::now();
    for c in corpus::cases() {
        let r = ask(&mut client, check_of(&c)).await;
        answers.insert(c.name.clone(), outcome_of(&r));
    }
    eprintln!("{label}: {} checks in {:?}", answers.len(), started.elapsed());
    corpus::check_all(label, false, |c| answers[&c.name].clone());
    svc.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), svc.task).await.expect("drained").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_through_grpc_one_call() {
    corpus_through(&["gatehouse"], "authz gRPC (gatehouse component)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_through_grpc_split_chain() {
    corpus_through(&["ip", "geo", "token", "rate"], "authz gRPC (ip, geo, token, rate)").await;
}

/// Shutdown: a call in flight when the drain starts still gets its answer, and the
/// listener ends within the drain bound even with a client that keeps its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_within_its_bound() {
    let svc = start(&["gatehouse"], Duration::from_millis(500)).await;
    let mut client = client(svc.addr).await;
    let r = ask(&mut client, check_of(&case("viewer reads"))).await;
    assert!(matches!(r.http_response, Some(HttpResponse::OkResponse(_))));
    let t = Instant::now();
    svc.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), svc.task).await.expect("ended").unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let after = client.check(check_of(&case("viewer reads"))).await;
    assert!(after.is_err(), "the listener still answered after shutdown");
}
