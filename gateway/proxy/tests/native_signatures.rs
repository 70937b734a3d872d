//! The engine with the gateway's native signature primitive (AWS-LC) decides exactly as
//! without it: the whole JWT attack table, and valid tokens of every algorithm.

#[path = "../../core/tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use gatehouse_core::jwt::{Alg, SignatureVerifier};
use gatehouse_proxy::signatures::NativeSignatures;
use jwt_simple::prelude::*;

/// Counts calls so the test proves the native path was taken.
struct Counting(Arc<AtomicUsize>);

impl SignatureVerifier for Counting {
    fn verify(&self, alg: Alg, key: &[u8], msg: &[u8], sig: &[u8]) -> Option<bool> {
        self.0.fetch_add(1, Ordering::Relaxed);
        NativeSignatures.verify(alg, key, msg, sig)
    }
}

fn native_harness() -> (Harness, Arc<AtomicUsize>) {
    let mut p = policy();
    p.settings.token_cache_entries = 0;
    let mut h = Harness::new(engine_with(&p));
    let calls = Arc::new(AtomicUsize::new(0));
    h.signatures = Some(Box::new(Counting(calls.clone())));
    (h, calls)
}

#[test]
fn attack_table_with_native_signatures() {
    let (h, calls) = native_harness();
    let failures = run_attack_table(&h);
    assert!(failures.is_empty(), "{} cases wrong:\n{}", failures.len(), failures.join("\n"));
    assert!(calls.load(Ordering::Relaxed) > 10, "the native primitive was not used");
}

#[test]
fn every_algorithm_verifies_natively() {
    let (h, calls) = native_harness();
    let k = keys();
    for (alg, t) in [
        ("EdDSA", k.ed1.sign(claims("u-ed", &["viewer"])).unwrap()),
        ("ES256", k.es1.sign(claims("u-es", &["viewer"])).unwrap()),
        ("RS256", k.rs1.sign(claims("u-rs", &["viewer"])).unwrap()),
        ("PS256", k.ps1.sign(claims("u-ps", &["viewer"])).unwrap()),
    ] {
        let before = calls.load(Ordering::Relaxed);
        assert_eq!(h.reason(&get("https://acme.app.test/docs").bearer(&t)), "allow", "{alg}");
        assert_eq!(calls.load(Ordering::Relaxed), before + 1, "{alg} not verified natively");
        // One flipped signature byte is refused by the native path too.
        let mut sig =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, t.rsplit('.').next().unwrap())
                .unwrap();
        sig[5] ^= 1;
        let bad = format!(
            "{}.{}",
            t.rsplit_once('.').unwrap().0,
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig)
        );
        assert_eq!(h.reason(&get("https://acme.app.test/docs").bearer(&bad)), "token_bad_signature", "{alg}");
    }
}

#[test]
fn wycheproof_vectors_with_native_signatures() {
    common::wycheproof::check_wycheproof(Some(&NativeSignatures));
}
