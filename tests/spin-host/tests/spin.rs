//! The Spin gateway component (the exact file spin.toml references,
//! components/spin/dist/gatehouse_spin.wasm, built by scripts/build-spin) under the
//! project's WASI 0.3 host: the conformance corpus, and a real upstream on loopback that
//! receives the allowed requests with identity headers and never the denied ones.

#[path = "../../../gateway/proxy/tests/conformance/support.rs"]
mod corpus;
#[path = "../../../gateway/proxy/tests/conformance/echo.rs"]
mod echo;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use gatehouse_spin_test_host::{spin_request, SpinHost};
use http_body_util::Full;

fn component() -> std::path::PathBuf {
    let p = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
        .join("../../components/spin/dist/gatehouse_spin.wasm");
    assert!(p.exists(), "{} is missing: run scripts/build-spin", p.display());
    p
}

fn host(up: SocketAddr) -> SpinHost {
    let mut h = with_bundle(SpinHost::new(&component()).unwrap());
    h.vars.insert("upstream".into(), format!("http://{up}"));
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_conformance_corpus_and_upstream() {
    let up = echo::echo_upstream(&[]).await;
    corpus_through(&host(up.addr), &up.hits, "spin (WASI 0.3 host)").await;
}

/// The middleware form (`scripts/build-spin --middleware`, the file spin.toml's
/// middleware example names): the same corpus, with allowed requests passed to the next
/// handler of the chain — here the host's `wasi:http/handler` import, forwarding to an app
/// on loopback — and refused ones never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_middleware_conformance_corpus_and_next_handler() {
    let wasm = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
        .join("../../components/spin/dist/gatehouse_spin_middleware.wasm");
    assert!(wasm.exists(), "{} is missing: run scripts/build-spin --middleware", wasm.display());
    let app = echo::echo_upstream(&[]).await;
    let h = with_bundle(SpinHost::new_middleware(&wasm, &app.addr.to_string()).unwrap());
    corpus_through(&h, &app.hits, "spin middleware (WASI 0.3 host)").await;
}

fn with_bundle(mut h: SpinHost) -> SpinHost {
    let b = corpus::bundle();
    let b64 = base64::engine::general_purpose::STANDARD;
    h.vars.insert("bundle".into(), b64.encode(&b.bytes));
    h.vars.insert("origin_public_key".into(), b64.encode(b.public_key));
    h.vars.insert("edge_secrets".into(), String::from_utf8(b.secrets_json).unwrap());
    h
}

/// The wire cases (the HTTP contract: what the upstream receives, what the client gets)
/// through both Spin forms, to a real upstream on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_wire_contract() {
    let up = echo::echo_upstream(corpus::WIRE_UPSTREAM_RESPONSE).await;
    let standalone = host(up.addr);
    let wasm = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
        .join("../../components/spin/dist/gatehouse_spin_middleware.wasm");
    let middleware = with_bundle(SpinHost::new_middleware(&wasm, &up.addr.to_string()).unwrap());
    for (name, h) in [("spin", &standalone), ("spin middleware", &middleware)] {
        let mut seen = Vec::new();
        for c in corpus::wire_cases() {
            let before = up.hits.load(Ordering::SeqCst);
            let r = h.call(spin_request(&c.method, &c.host, &c.target(), &c.peer, &c.headers)).await.unwrap();
            let reached = up.hits.load(Ordering::SeqCst) > before;
            let upstream = reached.then(|| echo::echoed_headers(&r.body));
            seen.push(corpus::WireSeen { status: r.status, upstream, response: r.headers, body: r.body.to_vec() });
        }
        let mut it = seen.into_iter();
        corpus::check_wire(name, true, |_| it.next().unwrap());
    }
}

/// Every corpus case through `h`: the decision as the corpus says, allowed requests at
/// the upstream exactly once, refused ones never.
async fn corpus_through(h: &SpinHost, hits: &Arc<AtomicUsize>, name: &str) {
    let mut outcomes = Vec::new();
    let mut allowed = 0;
    for c in corpus::cases() {
        let pq = match &c.query {
            Some(q) => format!("{}?{q}", c.path),
            None => c.path.clone(),
        };
        let before = hits.load(Ordering::SeqCst);
        let r = h
            .call(spin_request(&c.method, &c.host, &pq, &c.peer, &c.headers))
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", c.name));
        let reached = hits.load(Ordering::SeqCst) - before;
        let outcome = match r.status {
            200 => {
                allowed += 1;
                assert_eq!(reached, 1, "{}: an allowed request reaches the upstream once", c.name);
                corpus::Outcome::allow(
                    r.headers
                        .iter()
                        .filter_map(|(k, v)| Some((format!("x-{}", k.strip_prefix("x-echo-")?), v.clone())))
                        .filter(|(k, _)| k.starts_with("x-gatehouse-"))
                        .collect(),
                )
            }
            302 => corpus::Outcome::redirect(r.header("location").unwrap_or("")),
            s => corpus::Outcome::deny(s, r.header("x-gatehouse-reason").unwrap_or("")),
        };
        if r.status != 200 {
            assert_eq!(reached, 0, "{}: a refused request never reaches the upstream", c.name);
        }
        outcomes.push(outcome);
    }
    assert!(allowed > 40, "{allowed}");
    let mut it = outcomes.into_iter();
    corpus::check_all(name, false, |_| it.next().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_fails_closed_without_a_bundle_and_streams_bodies() {
    let up = echo::echo_upstream(&[]).await;
    let hits = up.hits.clone();
    let mut h = host(up.addr);
    // A body of 3 MB goes through to the upstream.
    let token = corpus::cases().into_iter().find(|c| c.name == "viewer reads").unwrap().headers;
    let mut req = spin_request("POST", "acme.corpus.test", "/items", "198.51.100.7", &token);
    *req.body_mut() = Full::new(Bytes::from(vec![7u8; 3_000_000]));
    let r = h.call(req).await.unwrap();
    assert_eq!((r.status, r.header("x-echo-body-bytes")), (200, Some("3000000")));
    // No spin-client-addr: nothing is decided.
    let mut req = spin_request("GET", "acme.corpus.test", "/items", "198.51.100.7", &token);
    req.headers_mut().remove("spin-client-addr");
    let r = h.call(req).await.unwrap();
    assert_eq!((r.status, r.header("x-gatehouse-reason")), (400, Some("request_malformed")));
    // A bundle signed by another key: every request refused, nothing forwarded.
    let before = hits.load(Ordering::SeqCst);
    h.vars.insert("origin_public_key".into(), base64::engine::general_purpose::STANDARD.encode([1u8; 32]));
    let r = h.call(spin_request("GET", "acme.corpus.test", "/public", "198.51.100.7", &[])).await.unwrap();
    assert_eq!((r.status, r.header("x-gatehouse-reason")), (503, Some("bundle_missing")));
    h.vars.remove("bundle");
    let r = h.call(spin_request("GET", "acme.corpus.test", "/public", "198.51.100.7", &[])).await.unwrap();
    assert_eq!((r.status, r.header("x-gatehouse-reason")), (503, Some("bundle_missing")));
    assert_eq!(hits.load(Ordering::SeqCst), before);
}

/// The sealed cache (`cache_key` set): the corpus decides the same on the first pass
/// (which verifies and stores), the second (which reads the sealed entries: no token
/// verified again), and a third after another writer of the store garbled or swapped
/// every entry (all misses: verified again). The store stays within its slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_sealed_cache_decides_as_without_it() {
    let up = echo::echo_upstream(&[]).await;
    let mut h = host(up.addr);
    h.vars.insert("cache_key".into(), base64::engine::general_purpose::STANDARD.encode([0x5a; 32]));
    // Rate-limit state would carry over between passes: only the sealed entries stay.
    let reset_rates = |h: &SpinHost| h.kv_edit(|kv| kv.retain(|k, _| k.starts_with("gatehouse:")));
    corpus_through(&h, &up.hits, "spin, sealed cache, first pass").await;
    let entries = h.kv_entries();
    let bundle = entries.iter().filter(|(k, _)| k == gatehouse_core::sealed::BUNDLE_KEY).count();
    let tokens: Vec<_> = entries.iter().filter(|(k, _)| k.starts_with("gatehouse:token:")).collect();
    assert_eq!(bundle, 1, "the bundle's signature check is remembered");
    assert!(tokens.len() > 10, "verified tokens are stored: {}", tokens.len());
    assert!(tokens
        .iter()
        .all(|(k, _)| k["gatehouse:token:".len()..].parse::<u32>().unwrap() < gatehouse_core::sealed::TOKEN_SLOTS));
    reset_rates(&h);
    corpus_through(&h, &up.hits, "spin, sealed cache, second pass").await;
    assert_eq!(
        h.kv_entries().iter().filter(|(k, _)| k.starts_with("gatehouse:")).count(),
        bundle + tokens.len(),
        "nothing new to store"
    );
    // Another writer of the store, without the key: every entry garbled, and each token
    // slot given another slot's entry.
    reset_rates(&h);
    h.kv_edit(|kv| {
        let values: Vec<Vec<u8>> = kv.values().cloned().collect();
        for (i, (k, v)) in kv.iter_mut().enumerate() {
            if k.starts_with("gatehouse:token:") && i % 2 == 0 {
                *v = values[(i + 1) % values.len()].clone();
            } else if let Some(b) = v.last_mut() {
                *b ^= 1;
            }
        }
    });
    corpus_through(&h, &up.hits, "spin, sealed cache, garbled store").await;
}

/// The component takes a token's identity from its sealed entry, and only under its own
/// key: a token with a broken signature is refused, still refused with an entry sealed
/// under another key, and admitted with one sealed under `cache_key` (which is why the
/// key must stay secret, and proof that the entries are read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_takes_identities_from_sealed_entries_only_under_its_key() {
    use gatehouse_core::sealed::Sealer;
    let b64 = base64::engine::general_purpose::STANDARD;
    let up = echo::echo_upstream(&[]).await;
    let mut h = host(up.addr);
    h.vars.insert("cache_key".into(), b64.encode([0x5a; 32]));
    let sealer = Sealer::new(&[0x5a; 32]).unwrap();
    let case = corpus::cases().into_iter().find(|c| c.name == "viewer reads").unwrap();
    let token_of = |headers: &[(String, String)]| {
        headers
            .iter()
            .find_map(|(k, v)| v.strip_prefix("Bearer ").filter(|_| k == "authorization"))
            .unwrap()
            .to_string()
    };
    let call = |headers: Vec<(String, String)>| {
        h.call(spin_request(&case.method, &case.host, &case.path, &case.peer, &headers))
    };
    // The valid token, verified and stored.
    assert_eq!(call(case.headers.clone()).await.unwrap().status, 200);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let bundle = b64.decode(&h.vars["bundle"]).unwrap();
    let pinned: [u8; 32] = b64.decode(&h.vars["origin_public_key"]).unwrap().try_into().unwrap();
    let tag = sealer.open_bundle(&bundle, &pinned, now, None).unwrap().tag;
    let valid = token_of(&case.headers);
    let entry = sealer.token_entry(&tag, &valid);
    let stored = h.kv_entries().into_iter().find(|(k, _)| *k == entry.key).expect("the valid token's entry").1;
    let (identity, until) = sealer.open_token(&entry, &stored, now, "x-gatehouse-").expect("sealed under cache_key");
    // The same token with one signature character changed.
    let mut forged = valid.clone().into_bytes();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let headers: Vec<(String, String)> = case
        .headers
        .iter()
        .map(
            |(k, v)| {
                if k == "authorization" {
                    (k.clone(), format!("Bearer {forged}"))
                } else {
                    (k.clone(), v.clone())
                }
            },
        )
        .collect();
    assert_eq!(call(headers.clone()).await.unwrap().status, 401);
    let slot = sealer.token_entry(&tag, &forged);
    let other = Sealer::new(&[0x41; 32]).unwrap();
    h.kv_edit(|kv| {
        kv.insert(slot.key.clone(), other.seal_token(&slot, &identity, until));
    });
    let r = call(headers.clone()).await.unwrap();
    assert_eq!((r.status, r.header("x-gatehouse-reason")), (401, Some("token_bad_signature")));
    h.kv_edit(|kv| {
        kv.insert(slot.key.clone(), sealer.seal_token(&slot, &identity, until));
    });
    assert_eq!(call(headers).await.unwrap().status, 200, "admitted on the entry sealed under cache_key");
}
