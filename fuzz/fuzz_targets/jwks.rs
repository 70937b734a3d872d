//! Fuzz JWKS parsing (`gatehouse_core::jwt::parse_jwks`, with the JWK rules of
//! `gatehouse_core::jwk`) and building a verifier from it.
//!
//! The first byte picks the issuer's `default_alg`; the rest is the JWKS text.
//!
//! Invariants (a panic here is a finding):
//! - no document panics; over `MAX_JWKS_BYTES` or `MAX_JWKS_KEYS` it is `TooLarge`;
//! - a document is read key by key: it is accepted exactly when each of its keys,
//!   alone, is, with the same keys in the same order, and a refusal names the first
//!   refused key;
//! - every key the edge accepts, jwt-simple (the origin's library) accepts for the same
//!   algorithm with the same `kid`; never an HS256 key from a JWKS; and an Ed25519 or
//!   P-256 key jwt-simple accepts (without `alg` or `use`) the edge accepts too;
//! - a verifier builds from an accepted JWKS unless two keys share a `kid`, which is
//!   `DuplicateKid`.
#![no_main]

use gatehouse_core::jwt::{
    parse_jwks, Alg, JwksError, TokenVerifier, VerifierError, VerifyKey, MAX_JWKS_BYTES, MAX_JWKS_KEYS,
};
use gatehouse_core::policy::Issuer;
use gatehouse_core::{EdgeSecrets, Policy};
use jwt_simple::prelude::*;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

const DEFAULT_ALGS: &[Option<&str>] =
    &[None, Some("RS256"), Some("PS256"), Some("ES256"), Some("HS256"), Some("rs256")];

#[derive(serde::Deserialize)]
struct Doc<'a> {
    #[serde(borrow)]
    keys: Vec<&'a RawValue>,
}

/// jwt-simple's reading of `raw` for `alg`: the key's `kid`, or why it refuses.
fn jwt_simple_kid(raw: &str, alg: Alg) -> Result<Option<String>, String> {
    let kid = match alg {
        Alg::EdDSA => Ed25519PublicKey::from_jwk(raw).map(|k| k.key_id().clone()),
        Alg::ES256 => ES256PublicKey::from_jwk(raw).map(|k| k.key_id().clone()),
        Alg::RS256 => RS256PublicKey::from_jwk(raw).map(|k| k.key_id().clone()),
        Alg::PS256 => PS256PublicKey::from_jwk(raw).map(|k| k.key_id().clone()),
        Alg::HS256 => panic!("an HS256 key was read from a JWKS"),
    };
    kid.map_err(|e| e.to_string())
}

fn agrees(raw: &str, k: &VerifyKey) {
    match jwt_simple_kid(raw, k.alg) {
        Ok(kid) => assert_eq!(kid, k.kid, "jwt-simple reads another kid"),
        Err(e) => panic!("jwt-simple refuses a key the edge accepts as {:?}: {e}\n{raw}", k.alg),
    }
}

/// A key whose algorithm follows from its type alone (no `alg`, no `use`).
fn natural_alg(raw: &str) -> Option<Alg> {
    let v: serde_json::Value = serde_json::from_str(raw).ok()?;
    let o = v.as_object()?;
    if o.contains_key("alg") || o.contains_key("use") {
        return None;
    }
    match (o.get("kty")?.as_str()?, o.get("crv")?.as_str()?) {
        ("OKP", "Ed25519") => Some(Alg::EdDSA),
        ("EC", "P-256") => Some(Alg::ES256),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let default_alg = DEFAULT_ALGS[sel as usize % DEFAULT_ALGS.len()];
    let whole = parse_jwks(text, default_alg);
    if text.len() > MAX_JWKS_BYTES {
        assert!(matches!(whole, Err(JwksError::TooLarge)), "over MAX_JWKS_BYTES: {whole:?}");
        return;
    }
    let doc = match serde_json::from_str::<Doc<'_>>(text) {
        Ok(d) => d,
        Err(_) => {
            assert!(matches!(whole, Err(JwksError::Malformed(_))), "not a JWKS, yet {whole:?}");
            return;
        }
    };
    if doc.keys.len() > MAX_JWKS_KEYS {
        assert!(matches!(whole, Err(JwksError::TooLarge)), "over MAX_JWKS_KEYS: {whole:?}");
        return;
    }
    // Key by key.
    let mut accepted: Vec<(Option<String>, Alg)> = Vec::new();
    let mut first_refused = None;
    for (i, raw) in doc.keys.iter().enumerate() {
        let single = format!(r#"{{"keys":[{}]}}"#, raw.get());
        match parse_jwks(&single, default_alg) {
            Ok(keys) => {
                assert!(keys.len() <= 1, "one key read as {}", keys.len());
                for k in &keys {
                    agrees(raw.get(), k);
                    accepted.push((k.kid.clone(), k.alg));
                }
                if keys.is_empty() {
                    // Skipped: only encryption keys are.
                    let v: serde_json::Value = serde_json::from_str(raw.get()).expect("a key that was read is JSON");
                    assert_eq!(v["use"], "enc", "a key was dropped silently: {}", raw.get());
                }
            }
            Err(e) => {
                assert!(matches!(e, JwksError::Key { index: 0, .. }), "a one-key document refused as {e:?}");
                first_refused.get_or_insert(i);
                if let Some(alg) = natural_alg(raw.get()) {
                    assert!(
                        jwt_simple_kid(raw.get(), alg).is_err(),
                        "jwt-simple accepts a {alg:?} key the edge refuses ({e}): {}",
                        raw.get()
                    );
                }
            }
        }
    }
    match (&whole, first_refused) {
        (Ok(keys), None) => {
            let got: Vec<(Option<String>, Alg)> = keys.iter().map(|k| (k.kid.clone(), k.alg)).collect();
            assert_eq!(got, accepted, "the document reads differently from its keys");
        }
        (Err(JwksError::Key { index, .. }), Some(i)) => assert_eq!(*index, i, "the refusal names another key"),
        (r, f) => panic!("document {r:?}, first refused key {f:?}"),
    }
    // A verifier from it.
    if whole.is_ok() {
        let mut kids: Vec<&String> = accepted.iter().filter_map(|(k, _)| k.as_ref()).collect();
        kids.sort();
        let duplicate = kids.windows(2).any(|w| w[0] == w[1]);
        let issuer = Issuer {
            issuer: "https://jwks.fuzz.test".into(),
            jwks: text.to_string(),
            default_alg: default_alg.map(str::to_string),
            ..Issuer::default()
        };
        let policy = Policy { issuers: vec![issuer], ..Policy::default() };
        match TokenVerifier::new(&policy, &EdgeSecrets::default()) {
            Ok(_) => assert!(!duplicate, "two keys share a kid, yet the verifier built"),
            Err(VerifierError::DuplicateKid(_)) => assert!(duplicate, "DuplicateKid without a duplicate"),
            Err(e) => panic!("an accepted JWKS does not build a verifier: {e}"),
        }
    }
});
