//! Criterion benchmarks of the decision engine.
//!
//! Run: `cargo bench -p gatehouse-bench` (figures and method in bench/RESULTS.md).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use gatehouse_bench::common::*;
use gatehouse_core::net::{Cidr, IpMatcher};
use gatehouse_core::policy::RateLimit;
use gatehouse_core::ratelimit::{Gcra, RateKey, RateScope};
use gatehouse_core::{apikey, MemoryRateStore, RateStore};
use jwt_simple::prelude::*;

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The test policy, with a per-user limit high enough never to trigger at a fixed clock
/// (so every iteration measures the allow path, rate check included).
fn bench_policy() -> gatehouse_core::Policy {
    let mut p = policy();
    p.tiers.get_mut("team").unwrap().limits.user =
        Some(RateLimit { requests: 1_000_000_000, per_secs: 1, burst: None });
    p
}

fn decide_paths(c: &mut Criterion) {
    let k = keys();
    let mut g = c.benchmark_group("decide");

    // Cached token: the steady state of a gateway.
    let h = Harness::new(engine_with(&bench_policy()));
    let t = ed_token(claims("alice", &["viewer"]));
    let req = get("https://acme.app.test/invoices").bearer(&t);
    assert!(h.decide(&req).is_allow());
    g.bench_function("cached_token", |b| b.iter(|| black_box(h.decide(black_box(&req)))));
    assert!(h.decide(&req).is_allow(), "the benchmark must have measured allows");

    // Uncached: the cache is off, so every call verifies the signature.
    let mut p = bench_policy();
    p.settings.token_cache_entries = 0;
    let h = Harness::new(engine_with(&p));
    for (name, token) in [
        ("uncached_eddsa", k.ed1.sign(claims("alice", &["viewer"])).unwrap()),
        ("uncached_es256", k.es1.sign(claims("alice", &["viewer"])).unwrap()),
        ("uncached_rs256", k.rs1.sign(claims("alice", &["viewer"])).unwrap()),
    ] {
        let req = get("https://acme.app.test/invoices").bearer(&token);
        assert!(h.decide(&req).is_allow(), "{name}");
        g.bench_function(name, |b| b.iter(|| black_box(h.decide(black_box(&req)))));
        assert!(h.decide(&req).is_allow(), "{name}");
    }

    // API key: HMAC-SHA256 and a constant-time compare per request.
    let mut p = bench_policy();
    let (key, prefix) = apikey::generate(&[4u8; 41]);
    p.orgs.get_mut("acme").unwrap().api_keys.push(gatehouse_core::policy::ApiKeyRecord {
        prefix,
        hash: apikey::hash_hex(API_KEY_SECRET, &key),
        subject: "bot".into(),
        scopes: vec!["invoices:read".into()],
        roles: vec![],
        expires_at: None,
    });
    let h = Harness::new(engine_with(&p));
    let req = get("https://acme.app.test/invoices").header("x-api-key", &key);
    assert!(h.decide(&req).is_allow());
    g.bench_function("api_key", |b| b.iter(|| black_box(h.decide(black_box(&req)))));
    assert!(h.decide(&req).is_allow(), "api_key");
    g.finish();
}

fn cidr_lookup(c: &mut Criterion) {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let prefixes: Vec<Cidr> = (0..10_000)
        .map(|_| {
            let len = 8 + (xorshift(&mut s) % 25) as u8;
            let addr = xorshift(&mut s) as u32 & (u32::MAX << (32 - len));
            Cidr::new(IpAddr::V4(Ipv4Addr::from(addr)), len).unwrap()
        })
        .collect();
    let (allow, deny) = prefixes.split_at(8_000);
    let m = IpMatcher::new(allow, deny);
    let probes: Vec<IpAddr> = (0..4096).map(|_| IpAddr::V4(Ipv4Addr::from(xorshift(&mut s) as u32))).collect();
    let mut i = 0;
    c.bench_function("cidr_lookup_10k_prefixes", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(m.lookup(black_box(probes[i])))
        })
    });
}

fn rate_store(c: &mut Criterion) {
    const KEYS: usize = 1_000_000;
    let store = MemoryRateStore::new(KEYS + KEYS / 8, [9; 16]);
    let g = Gcra::new(&RateLimit { requests: 1_000_000, per_secs: 1, burst: None });
    let ids: Vec<String> = (0..KEYS).map(|i| format!("user-{i}")).collect();
    let now = 1_800_000_000u64 * 1_000_000_000;
    for id in &ids {
        store.check(&RateKey { scope: RateScope::User, org: "acme", id }, &g, now);
    }
    assert!(store.len() >= KEYS * 99 / 100);
    let mut s = 1u64;
    let mut t = now;
    c.bench_function("rate_store_check_1m_keys", |b| {
        b.iter_batched(
            || {
                t += 1_000;
                (&ids[(xorshift(&mut s) % KEYS as u64) as usize], t)
            },
            |(id, now)| black_box(store.check(&RateKey { scope: RateScope::User, org: "acme", id }, &g, now)),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, decide_paths, cidr_lookup, rate_store);
criterion_main!(benches);
