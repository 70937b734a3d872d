//! The conformance corpus (tests/conformance/cases.jsonl, under tests/conformance/
//! policy.toml) run against the hosts in this process: the core engine alone, and the
//! native gateway's request path (`Gateway::run_chain`) on both engines — the built-in
//! checks on the natively linked core (`engine = "native"`, the default) and as filter
//! components under wasmtime (`engine = "wasm"`) — each with the one-call chain
//! (`gatehouse`) and the four single-check filters in a chain. Every case must come out as
//! the corpus says, on every host. The Worker runs the same files in
//! gateway/cli/tests/worker.rs.
//!
//! One host: `cargo test -p gatehouse-proxy --test conformance -- core` (or
//! `native_one_call`, `native_split_chain`, `wasm_one_call`, `wasm_split_chain`).

#[path = "conformance/support.rs"]
mod corpus;

use std::net::IpAddr;
use std::sync::Arc;

use corpus::{Case, Outcome};
use gatehouse_core::engine::{Engine, Env};
use gatehouse_core::{Decision, MemoryRateStore, NoCountryLookup, RequestHead};
use gatehouse_proxy::bundle::BundleStore;
use gatehouse_proxy::config::GatewayConfig;
use gatehouse_proxy::filters::Shared;
use gatehouse_proxy::gateway::{Gateway, HeadView};
use gatehouse_proxy::metrics::Metrics;
use gatehouse_proxy::reload::build_filters;

fn now_nanos() -> u64 {
    gatehouse_proxy::filters::now_nanos()
}

fn core_outcome(engine: &Engine, rates: &MemoryRateStore, c: &Case) -> Outcome {
    let pairs: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let head = RequestHead {
        method: &c.method,
        scheme: "https",
        host: &c.host,
        path: &c.path,
        query: c.query.as_deref(),
        headers: &pairs,
        peer: c.peer.parse::<IpAddr>().expect("peer"),
        platform_country: None,
    };
    let env = Env { now: now_nanos(), rates, countries: &NoCountryLookup, signatures: None };
    match engine.decide(&head, &env) {
        Decision::Allow(a) => {
            Outcome::allow(a.identity.as_ref().map(|i| i.upstream_headers().to_vec()).unwrap_or_default())
        }
        Decision::Deny(d) => Outcome::deny(d.status, d.reason.as_str()),
        Decision::Redirect(r) => Outcome::redirect(&r.location),
    }
}

#[test]
fn core() {
    let b = corpus::bundle();
    let engine = Engine::from_bundle(&b.bytes, &b.public_key, now_nanos() / 1_000_000_000, &b.secrets).unwrap();
    let rates = MemoryRateStore::new(10_000, [7; 16]);
    corpus::check_all("core", false, |c| core_outcome(&engine, &rates, c));
}

/// A gateway deciding the corpus through [`Gateway::run_chain`] (the path of the reverse
/// proxy and the authorization service): `engine` (`native` or `wasm`) and `chain` as a
/// configuration file says them, the corpus bundle installed, its own rate store.
fn corpus_gateway(dir: &std::path::Path, engine: &str, chain: &[&str]) -> Gateway {
    let d = corpus::dir();
    let b = corpus::bundle();
    std::fs::write(dir.join("bundle.ghb"), &b.bytes).unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let filters = chain.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", ");
    let config = format!(
        "[listen]\nadmin = \"{admin}\"\n[bundle]\nfile = \"{}\"\npublic_key = \"{}\"\nsecrets = \"{}\"\n\
         [filters]\nengine = \"{engine}\"\nbuiltin_dir = \"{}\"\npool_size = 2\n\
         [authz]\nhttp = \"127.0.0.1:1\"\n[[routes]]\nfilters = [{filters}]\n",
        dir.join("bundle.ghb").display(),
        d.join("keys/bundle-signing.pub.pem").display(),
        d.join("keys/edge-secrets.toml").display(),
        corpus::component_dir().display(),
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let config = GatewayConfig::load(&path).unwrap();
    let metrics = Arc::new(Metrics::new());
    let bundles = Arc::new(BundleStore::new(b.public_key, b.secrets, b.secrets_json, metrics.clone()));
    bundles.install(b.bytes).unwrap();
    let shared = Arc::new(Shared::new(MemoryRateStore::new(10_000, [7; 16]), None));
    let host = Arc::new(build_filters(&config, shared).unwrap());
    Gateway::new(config, bundles, host, metrics, None).unwrap()
}

fn gateway_outcome(gw: &Gateway, rt: &tokio::runtime::Runtime, c: &Case) -> Outcome {
    let headers: Vec<(&str, &[u8])> = c.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect();
    let peer: IpAddr = c.peer.parse().expect("peer");
    let view = HeadView {
        scheme: "https",
        method: &c.method,
        authority: &c.host,
        path: &c.path,
        query: c.query.as_deref(),
        headers: &headers,
        content_length: None,
        peer: std::net::SocketAddr::new(peer, 40_000),
        peer_text: &c.peer,
    };
    match rt.block_on(gw.run_chain(&view)) {
        gatehouse_proxy::gateway::Outcome::Forward(f) => Outcome::allow(f.identity_headers),
        gatehouse_proxy::gateway::Outcome::Reply(r) if r.status == 302 => {
            Outcome::redirect(r.headers.iter().find(|(k, _)| k == "location").map_or("", |(_, v)| v.as_str()))
        }
        gatehouse_proxy::gateway::Outcome::Reply(r) => {
            let reason = r.headers.iter().find(|(k, _)| k == gatehouse_core::wire::REASON_HEADER).expect("reason");
            Outcome::deny(r.status, &reason.1)
        }
    }
}

fn run_gateway(engine: &str, chain: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let gw = corpus_gateway(dir.path(), engine, chain);
    let label = format!("gateway, engine = {engine}, filters = {chain:?}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    corpus::check_all(&label, false, |c| gateway_outcome(&gw, &rt, c));
}

#[test]
fn native_one_call() {
    run_gateway("native", &["gatehouse"]);
}

#[test]
fn native_split_chain() {
    run_gateway("native", &["ip", "geo", "token", "rate"]);
}

#[test]
fn wasm_one_call() {
    run_gateway("wasm", &["gatehouse"]);
}

#[test]
fn wasm_split_chain() {
    run_gateway("wasm", &["ip", "geo", "token", "rate"]);
}

/// The wire cases (tests/conformance/wire.jsonl) through the core's contract alone: the
/// decision, then `gatehouse_core::wire` for the upstream request (as the test upstream
/// would receive it) and the client response (from the test upstream's answer). The hosts
/// run the same cases over real HTTP (gateway, Worker and Spin tests).
#[test]
fn wire_core() {
    use gatehouse_core::wire::{self, ConnectionTokens, Reply, UpstreamRequest};
    let b = corpus::bundle();
    let engine = Engine::from_bundle(&b.bytes, &b.public_key, now_nanos() / 1_000_000_000, &b.secrets).unwrap();
    let rates = MemoryRateStore::new(10_000, [7; 16]);
    corpus::check_wire("core", false, |c| {
        let pairs: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let head = RequestHead {
            method: &c.method,
            scheme: "http",
            host: &c.host,
            path: &c.path,
            query: c.query.as_deref(),
            headers: &pairs,
            peer: c.peer.parse().expect("peer"),
            platform_country: None,
        };
        let env = Env { now: now_nanos(), rates: &rates, countries: &NoCountryLookup, signatures: None };
        let decision = engine.decide(&head, &env);
        let Decision::Allow(allow) = decision else {
            let r = Reply::for_decision(&decision).unwrap();
            return corpus::WireSeen { status: r.status, upstream: None, response: r.headers, body: r.body };
        };
        let fields = || c.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
        let connection = ConnectionTokens::of(fields());
        let rules = UpstreamRequest {
            identity_prefix: engine.identity_header_prefix(),
            connection: &connection,
            relay_upgrade: false,
            host: &c.host,
            peer: &c.peer,
            identity: allow.upstream_headers(),
        };
        let text = |k: &str, v: &[u8]| (k.to_string(), String::from_utf8(v.to_vec()).unwrap());
        let mut upstream = Vec::new();
        rules.headers(fields(), |k, v| upstream.push(text(k, v)));
        let answer = corpus::WIRE_UPSTREAM_RESPONSE.iter().map(|(k, v)| (*k, v.as_bytes()));
        let mut response = Vec::new();
        wire::response_headers(answer, &allow.response_headers, |k, v| response.push(text(k, v)));
        corpus::WireSeen { status: 200, upstream: Some(upstream), response, body: Vec::new() }
    });
}
