//! Criterion benchmarks of the native gateway's filter chain: one request head through
//! the wasmtime-hosted components, as `Gateway::handle` runs it (pooled instance, policy
//! already loaded, the request and context records crossing into the component and the
//! verdict coming back), on the policy of the load harness (bench/load/run.sh).
//!
//! Needs the built components: `scripts/build-components` (they are looked for in
//! `$GATEHOUSE_FILTER_DIR`, else `$CARGO_TARGET_DIR/wasm32-wasip2/release`).
//! Run: `cargo bench -p gatehouse-bench --bench filters` (figures in bench/RESULTS.md).

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse_core::bundle::{BundleBody, FORMAT_VERSION};
use gatehouse_core::MemoryRateStore;
use gatehouse_proxy::config::FilterSettings;
use gatehouse_proxy::filters::{with_context, FilterHost, PolicyInput, Shared, Verdict, WitContext, WitRequest};
use jwt_simple::prelude::*;

const POLICY: &str = r#"
[tiers.bench]
limits.org = { requests = 1000000000, per_secs = 1 }

[[issuers]]
issuer = "https://login.bench.test"
audiences = ["gatehouse"]
jwks = '''JWKS'''

[orgs.bench]
tier = "bench"
hosts = ["bench.test"]
ip = { allow = ["127.0.0.0/8"] }

[[routes]]
name = "api"
path = "/api"
"#;

fn component_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GATEHOUSE_FILTER_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| "target".into());
    target.join("wasm32-wasip2/release")
}

struct Fixture {
    bundle: Vec<u8>,
    public_key: [u8; 32],
    key: ES256KeyPair,
}

fn fixture(cache_entries: usize) -> Fixture {
    let key = ES256KeyPair::generate().with_key_id("k1");
    let mut jwk: serde_json::Value = serde_json::from_str(&key.public_key().to_jwk()).unwrap();
    jwk["kid"] = "k1".into();
    let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
    let mut policy: gatehouse_core::Policy = toml::from_str(&POLICY.replace("JWKS", &jwks)).unwrap();
    policy.settings.token_cache_entries = cache_entries;
    let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([5; 32]));
    let now = gatehouse_proxy::filters::now_nanos() / 1_000_000_000;
    let body = BundleBody {
        format: FORMAT_VERSION,
        revision: 1,
        region: String::new(),
        issued_at: now,
        expires_at: now + 7200,
        policy,
    };
    let bundle = gatehouse_core::bundle::sign(&body, &<[u8; 64]>::try_from(&kp[..]).unwrap()).unwrap();
    Fixture { bundle, public_key: <[u8; 32]>::try_from(&kp.pk[..]).unwrap(), key }
}

fn token(key: &ES256KeyPair, sub: &str) -> String {
    let claims = Claims::with_custom_claims(
        serde_json::json!({ "org": "bench", "roles": ["viewer"] }),
        jwt_simple::prelude::Duration::from_hours(2),
    )
    .with_issuer("https://login.bench.test")
    .with_audience("gatehouse")
    .with_subject(sub);
    key.sign(claims).unwrap()
}

/// The request's header fields (the gateway passes the ones the filters read).
fn fields(token: &str) -> Vec<(String, String)> {
    vec![
        ("host".into(), "bench.test".into()),
        ("authorization".into(), format!("Bearer {token}")),
        ("x-demo-key".into(), "1".into()),
    ]
}

fn request<'a>(headers: &'a [(&'a str, &'a str)]) -> WitRequest<'a> {
    WitRequest {
        method: "GET",
        scheme: "http",
        authority: "bench.test",
        path: "/api/items",
        query: None,
        headers,
        peer: "127.0.0.1",
        platform_country: None,
    }
}

fn pairs(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn empty() -> WitContext {
    WitContext { org: None, route: None, client_ip: None, identity: None, response_headers: Vec::new() }
}

fn host(names: &[&str]) -> FilterHost {
    let dir = component_dir();
    let sources: Vec<(String, PathBuf)> = names
        .iter()
        .map(|n| {
            let file = if *n == "require-header" {
                "gatehouse_example_require_header.wasm".to_string()
            } else {
                format!("gatehouse_filter_{n}.wasm")
            };
            (n.to_string(), dir.join(file))
        })
        .collect();
    let shared = Arc::new(Shared::new(MemoryRateStore::new(100_000, [7; 16]), None));
    FilterHost::new(&FilterSettings { pool_size: 2, ..Default::default() }, &sources, shared).unwrap()
}

/// Run `chain` like the gateway does; the verdict of the last filter.
fn run(host: &FilterHost, chain: &[&str], policy: &PolicyInput<'_>, req: &WitRequest<'_>) -> Verdict {
    let mut ctx = empty();
    for name in chain {
        match with_context(&ctx, |c| host.check(name, policy, req, c)).unwrap() {
            Verdict::Allow(next) => ctx = next,
            other => return other,
        }
    }
    Verdict::Allow(ctx)
}

fn allowed(v: &Verdict) -> bool {
    matches!(v, Verdict::Allow(c) if c.identity.is_some() || c.org.is_none())
}

fn chains(c: &mut Criterion) {
    let mut g = c.benchmark_group("filter_chain");
    let f = fixture(10_000);
    let policy = PolicyInput { revision: 1, bundle: &f.bundle, public_key: &f.public_key, secrets_json: &[] };
    let fields = fields(&token(&f.key, "user"));
    let headers = pairs(&fields);
    let req = request(&headers);

    // The smallest possible component call: the WIT-only example filter.
    let h = host(&["require-header"]);
    assert!(allowed(&run(&h, &["require-header"], &policy, &req)));
    g.bench_function("require_header", |b| {
        b.iter(|| black_box(run(&h, &["require-header"], &policy, black_box(&req))))
    });

    // The default chain, token already verified (the steady state).
    let h = host(&["gatehouse", "ip", "geo", "token", "rate"]);
    assert!(allowed(&run(&h, &["gatehouse"], &policy, &req)));
    g.bench_function("gatehouse_cached_token", |b| {
        b.iter(|| black_box(run(&h, &["gatehouse"], &policy, black_box(&req))))
    });
    let split = ["ip", "geo", "token", "rate"];
    assert!(allowed(&run(&h, &split, &policy, &req)));
    g.bench_function("split_chain_cached_token", |b| b.iter(|| black_box(run(&h, &split, &policy, black_box(&req)))));

    // Every token new, cache on: 20,000 distinct tokens in turn through a 1,000-entry
    // cache (so nearly every call verifies, reads the claims and inserts, evicting).
    let f = fixture(1_000);
    let policy = PolicyInput { revision: 3, bundle: &f.bundle, public_key: &f.public_key, secrets_json: &[] };
    let tokens: Vec<Vec<(String, String)>> =
        (0..20_000).map(|i| crate::fields(&token(&f.key, &format!("u{i}")))).collect();
    let tokens: Vec<Vec<(&str, &str)>> = tokens.iter().map(|t| pairs(t)).collect();
    let mut i = 0;
    g.bench_function("gatehouse_new_tokens", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            black_box(run(&h, &["gatehouse"], &policy, &request(&tokens[i])))
        })
    });
    assert!(allowed(&run(&h, &["gatehouse"], &policy, &request(&tokens[0]))));

    // Every token new: the cache is off, so each call verifies ES256 (natively, through
    // the host's `verify-signature`) and reads the claims.
    let f = fixture(0);
    let policy = PolicyInput { revision: 2, bundle: &f.bundle, public_key: &f.public_key, secrets_json: &[] };
    let fields = crate::fields(&token(&f.key, "user"));
    let headers = pairs(&fields);
    let req = request(&headers);
    assert!(allowed(&run(&h, &["gatehouse"], &policy, &req)));
    g.bench_function("gatehouse_uncached_es256", |b| {
        b.iter(|| black_box(run(&h, &["gatehouse"], &policy, black_box(&req))))
    });
    g.finish();
}

criterion_group!(benches, chains);
criterion_main!(benches);
