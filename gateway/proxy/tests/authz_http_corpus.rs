//! The conformance corpus (tests/conformance/cases.jsonl) through the HTTP authorization
//! endpoint, in each of its conventions: nginx `auth_request` (`X-Original-URI`, with the
//! refusal handed back the way the shipped nginx configuration does), Traefik/Caddy
//! (`X-Forwarded-Method/Uri/Host`) and Envoy's HTTP `ext_authz` (the request under
//! `authz.envoy_path_prefix`). The endpoint is a real hyper listener in this process,
//! asked over real HTTP; every case must come out as on the other hosts.
//!
//! The case's `peer` is the client's address, but the test's TCP peer is 127.0.0.1. So
//! the test plays the proxy in front, as nginx's `$proxy_add_x_forwarded_for` does: the
//! case's peer is appended to its `X-Forwarded-For`, and the corpus policy is compiled
//! with one change, 127.0.0.1 added to `client_ip.trusted_proxies` and `max_hops` raised
//! by the one hop this adds. The engine then finds the case's peer exactly where it would
//! have been the TCP peer: the right-most untrusted hop is the case's peer when the corpus
//! does not trust it, and when it does (10.9.0.0/16) the walk goes on into the case's own
//! `X-Forwarded-For` as it would from that peer. No case is left out.

#[path = "conformance/support.rs"]
mod corpus;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corpus::{Case, Outcome};
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request};
use hyper_util::rt::TokioIo;

use gatehouse_proxy::bundle::BundleStore;
use gatehouse_proxy::config::GatewayConfig;
use gatehouse_proxy::filters::{FilterHost, Shared};
use gatehouse_proxy::gateway::Gateway;
use gatehouse_proxy::metrics::Metrics;

/// The corpus policy with the loopback caller trusted as the proxy in front.
fn derived_bundle() -> Vec<u8> {
    let d = corpus::dir();
    let mut policy = gatehouse_bundler::load_policy(&d.join("policy.toml")).expect("corpus policy");
    policy.client_ip.trusted_proxies.push("127.0.0.1/32".parse().unwrap());
    policy.client_ip.max_hops += 1;
    let key = gatehouse_bundler::keys::read_signing_key(&d.join("keys/bundle-signing.pem")).expect("key");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let stamp =
        gatehouse_bundler::BundleStamp { revision: 1, region: "corpus".into(), issued_at: now, ttl_secs: 86_400 };
    gatehouse_bundler::compile(policy, &stamp, &key).expect("compile")
}

/// An authorization-only gateway on the corpus's (derived) bundle, its HTTP endpoint
/// listening on loopback. Each has its own rate store (the corpus's rate cases count
/// from zero).
async fn endpoint(dir: &std::path::Path) -> SocketAddr {
    let d = corpus::dir();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = format!(
        "[listen]\nadmin = \"{admin}\"\n[bundle]\nfile = \"{}\"\npublic_key = \"{}\"\nsecrets = \"{}\"\n\
         [filters]\nbuiltin_dir = \"{}\"\npool_size = 2\n[authz]\nhttp = \"{addr}\"\n[[routes]]\n",
        dir.join("bundle.ghb").display(),
        d.join("keys/bundle-signing.pub.pem").display(),
        d.join("keys/edge-secrets.toml").display(),
        corpus::component_dir().display(),
    );
    std::fs::write(dir.join("bundle.ghb"), derived_bundle()).unwrap();
    let path = dir.join(format!("authz-{}.toml", addr.port()));
    std::fs::write(&path, config).unwrap();
    let config = GatewayConfig::load(&path).unwrap();
    let b = corpus::bundle();
    let metrics = Arc::new(Metrics::new());
    let bundles = Arc::new(BundleStore::new(b.public_key, b.secrets, b.secrets_json, metrics.clone()));
    bundles.install(std::fs::read(dir.join("bundle.ghb")).unwrap()).unwrap();
    let dir_of = config.filters.builtin_dir.clone().unwrap();
    let sources = vec![("gatehouse".to_string(), dir_of.join("gatehouse_filter_gatehouse.wasm"))];
    let shared = Arc::new(Shared::new(gatehouse_core::MemoryRateStore::new(10_000, [7; 16]), None));
    let host = Arc::new(FilterHost::new(&config.filters, &sources, shared).unwrap());
    let gw = Arc::new(Gateway::new(config, bundles, host, metrics, None).unwrap());
    let (tx, rx) = tokio::sync::watch::channel(false);
    // The sender lives as long as the test process: the endpoint serves until then.
    std::mem::forget(tx);
    tokio::spawn(gatehouse_proxy::authz::http::serve(http, gw, rx, Duration::from_secs(1)));
    addr
}

#[derive(Clone, Copy, Debug)]
enum Convention {
    Nginx,
    Forwarded,
    Envoy,
}

/// One exchange with the endpoint.
async fn exchange(addr: SocketAddr, req: Request<Full<Bytes>>) -> (u16, HeaderMap, Vec<u8>) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req)).await.unwrap().unwrap();
    let (parts, body) = resp.into_parts();
    (parts.status.as_u16(), parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
}

/// The check request `convention` makes of case `c`, its peer appended to
/// `X-Forwarded-For` as the proxy in front does.
fn check_request(convention: Convention, c: &Case, addr: SocketAddr) -> Request<Full<Bytes>> {
    let target = match &c.query {
        Some(q) => format!("{}?{q}", c.path),
        None => c.path.clone(),
    };
    let mut xff: Vec<&str> =
        c.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("x-forwarded-for")).map(|(_, v)| v.as_str()).collect();
    xff.push(&c.peer);
    let b = match convention {
        Convention::Nginx => Request::get("/_gatehouse/check")
            .header("host", &c.host)
            .header("x-original-uri", &target)
            .header("x-original-method", &c.method),
        Convention::Forwarded => Request::get("/")
            .header("host", addr.to_string())
            .header("x-forwarded-method", &c.method)
            .header("x-forwarded-uri", &target)
            .header("x-forwarded-host", &c.host)
            .header("x-forwarded-proto", "http"),
        Convention::Envoy => {
            Request::builder().method(c.method.as_str()).uri(format!("/envoy{target}")).header("host", &c.host)
        }
    };
    let mut b = b.header("x-forwarded-for", xff.join(", "));
    for (k, v) in c.headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("x-forwarded-for")) {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// The decision the client would see.
async fn decide(convention: Convention, addr: SocketAddr, c: &Case) -> Outcome {
    let (mut status, mut h, mut body) = exchange(addr, check_request(convention, c, addr)).await;
    if let (Convention::Nginx, 401 | 403) = (convention, status) {
        // nginx's error_page location hands the reply back.
        let reply = h.get("x-gatehouse-reply").expect("a refusal carries its reply").clone();
        let back = Request::get(c.path.as_str()).header("x-gatehouse-reply", reply).body(Full::new(Bytes::new()));
        (status, h, body) = exchange(addr, back.unwrap()).await;
    }
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    match status {
        200 => {
            assert!(body.is_empty(), "{}: an allow has no body", c.name);
            let identity = h
                .iter()
                .filter(|(k, _)| k.as_str().starts_with("x-gatehouse-"))
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect();
            Outcome::allow(identity)
        }
        302 => Outcome::redirect(&text("location").unwrap_or_default()),
        s => {
            let reason = text("x-gatehouse-reason").unwrap_or_default();
            if c.method != "HEAD" {
                assert_eq!(
                    body,
                    format!("{{\"error\":\"{reason}\"}}\n").into_bytes(),
                    "{}: the refusal's body",
                    c.name
                );
            }
            Outcome::deny(s, &reason)
        }
    }
}

async fn run(convention: Convention) {
    let dir = tempfile::tempdir().unwrap();
    let addr = endpoint(dir.path()).await;
    let mut outcomes = Vec::new();
    for c in corpus::cases() {
        outcomes.push(decide(convention, addr, &c).await);
    }
    let mut it = outcomes.into_iter();
    corpus::check_all(&format!("authz http ({convention:?})"), false, |_| it.next().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request() {
    run(Convention::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_and_caddy_forward_auth() {
    run(Convention::Forwarded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_http_ext_authz() {
    run(Convention::Envoy).await;
}
