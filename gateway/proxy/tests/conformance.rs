//! The conformance corpus (tests/conformance/cases.jsonl, under tests/conformance/
//! policy.toml) run against two hosts in this process: the core engine natively, and the
//! native gateway's filter chain (wasmtime hosting the `gatehouse` component, and the four
//! single-check components in a chain). Every case must come out as the corpus says, on
//! every host. The Worker runs the same files in gateway/cli/tests/worker.rs.
//!
//! One host: `cargo test -p gatehouse-proxy --test conformance -- core` (or `one_call`,
//! `split_chain`).

#[path = "conformance/support.rs"]
mod corpus;

use std::net::IpAddr;
use std::sync::Arc;

use corpus::{Case, Outcome};
use gatehouse_core::engine::{Engine, Env};
use gatehouse_core::{Decision, MemoryRateStore, NoCountryLookup, RequestHead};
use gatehouse_proxy::config::FilterSettings;
use gatehouse_proxy::filters::{with_context, FilterHost, PolicyInput, Shared, Verdict, WitContext, WitRequest};

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

fn chain_outcome(host: &FilterHost, chain: &[&str], policy: &PolicyInput<'_>, prefix: &str, c: &Case) -> Outcome {
    let names: Vec<String> = c.headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
    let headers: Vec<(&str, &str)> = names.iter().zip(&c.headers).map(|(k, (_, v))| (k.as_str(), v.as_str())).collect();
    let req = WitRequest {
        method: &c.method,
        scheme: "https",
        authority: &c.host,
        path: &c.path,
        query: c.query.as_deref(),
        headers: &headers,
        peer: &c.peer,
        platform_country: None,
    };
    let mut ctx = WitContext { org: None, route: None, client_ip: None, identity: None, response_headers: Vec::new() };
    for name in chain {
        let verdict = with_context(&ctx, |p| host.check(name, policy, &req, p)).expect("filter call");
        match verdict {
            Verdict::Allow(next) => ctx = next,
            Verdict::Deny(d) => return Outcome::deny(d.status, &d.reason),
            Verdict::Redirect(location) => return Outcome::redirect(&location),
        }
    }
    let headers = ctx
        .identity
        .and_then(|i| gatehouse_core::identity_from_record!(i, prefix))
        .map(|i| i.upstream_headers().to_vec())
        .unwrap_or_default();
    Outcome::allow(headers)
}

fn run_chain(label: &str, chain: &[&str]) {
    let b = corpus::bundle();
    let dir = corpus::component_dir();
    let settings = FilterSettings { pool_size: 2, ..Default::default() };
    let sources: Vec<(String, std::path::PathBuf)> =
        chain.iter().map(|n| (n.to_string(), dir.join(format!("gatehouse_filter_{n}.wasm")))).collect();
    let shared = Arc::new(Shared { rates: MemoryRateStore::new(10_000, [7; 16]), geo: None });
    let host = FilterHost::new(&settings, &sources, shared).unwrap();
    let policy =
        PolicyInput { revision: 1, bundle: &b.bytes, public_key: &b.public_key, secrets_json: &b.secrets_json };
    let engine = Engine::from_bundle(&b.bytes, &b.public_key, now_nanos() / 1_000_000_000, &b.secrets).unwrap();
    let prefix = engine.identity_header_prefix().to_string();
    corpus::check_all(label, false, |c| chain_outcome(&host, chain, &policy, &prefix, c));
}

#[test]
fn one_call() {
    run_chain("gateway (gatehouse component)", &["gatehouse"]);
}

#[test]
fn split_chain() {
    run_chain("gateway (ip, geo, token, rate)", &["ip", "geo", "token", "rate"]);
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
