//! One key, several issuers: the tenants of a region all publish the region's signing key
//! under the same `kid` (each tenant is its own issuer). The engine accepts such a bundle,
//! picks the issuer by the token's verified `iss`, and still binds each issuer to its own
//! organisations. Two different keys under one `kid` stay refused.

mod common;

use common::*;
use gatehouse_core::policy::{Issuer, Policy};
use gatehouse_core::Engine;
use serde_json::{json, Value};

const REGION: &str = "https://eu.origin.test/t";

fn region_jwks(kp: &jwt_simple::prelude::Ed25519KeyPair) -> String {
    let mut jwk: Value = serde_json::from_str(&kp.public_key().to_jwk()).unwrap();
    jwk["kid"] = json!("region-k1");
    jwk["alg"] = json!("EdDSA");
    json!({ "keys": [jwk] }).to_string()
}

/// The fixture policy plus acme and initech as tenants of one region (one shared key).
fn region_policy(initech_key: &jwt_simple::prelude::Ed25519KeyPair) -> Policy {
    let mut p = policy();
    for (org, kp) in [("acme", &keys().ed2), ("initech", initech_key)] {
        p.issuers.push(Issuer {
            issuer: format!("{REGION}/{org}"),
            audiences: vec![AUD.into()],
            jwks: region_jwks(kp),
            orgs: vec![org.into()],
            ..Default::default()
        });
    }
    p
}

fn token(org: &str, iss_org: &str) -> String {
    let mut claims = payload("rita");
    claims["iss"] = json!(format!("{REGION}/{iss_org}"));
    claims["org"] = json!(org);
    raw_ed(&keys().ed2, json!({"alg": "EdDSA", "kid": "region-k1", "typ": "JWT"}), claims)
}

#[test]
fn tenants_of_one_region_share_its_key_and_stay_bound_to_their_issuer() {
    let h = Harness::new(engine_with(&region_policy(&keys().ed2)));
    let acme = |t: &str| h.reason(&get("https://acme.app.test/docs").bearer(t));
    let initech = |t: &str| h.reason(&get("https://initech.test/docs").bearer(t).country("DE"));
    assert_eq!(acme(&token("acme", "acme")), "allow");
    assert_eq!(initech(&token("initech", "initech")), "allow");
    // The shared key does not make one tenant's issuer speak for another's organisation.
    assert_ne!(acme(&token("acme", "initech")), "allow");
    assert_ne!(initech(&token("initech", "acme")), "allow");
    // An issuer that does not publish the key cannot be named with it.
    let mut foreign = payload("rita");
    foreign["iss"] = json!(ISS);
    let t = raw_ed(&keys().ed2, json!({"alg": "EdDSA", "kid": "region-k1"}), foreign);
    assert_eq!(acme(&t), "token_wrong_issuer");
    // Nor can an issuer that does not exist.
    assert_eq!(acme(&token("acme", "nowhere")), "token_wrong_issuer");
}

#[test]
fn two_keys_under_one_kid_are_refused() {
    // initech publishes a different key under the region's kid: which one signed would be
    // the token's choice, so the policy does not load.
    let p = region_policy(&keys().attacker);
    let err = Engine::new(&p, info(), &secrets()).err().expect("refused");
    assert!(err.to_string().contains("region-k1"), "{err}");
}

/// Many issuers publishing the same JWKS text (the JWKS is parsed once for all of them,
/// and a shared key finds its issuer by name among thousands): each still verifies as its
/// own issuer, an unknown one is refused, and the binding to organisations holds.
#[test]
fn many_issuers_with_one_jwks_each_verify_as_themselves() {
    let mut p = region_policy(&keys().ed2);
    for i in 0..40 {
        p.issuers.push(Issuer {
            issuer: format!("{REGION}/t{i}"),
            audiences: vec![AUD.into()],
            jwks: region_jwks(&keys().ed2),
            orgs: vec![if i % 2 == 0 { "acme" } else { "initech" }.into()],
            ..Default::default()
        });
    }
    let h = Harness::new(engine_with(&p));
    let acme = |t: &str| h.reason(&get("https://acme.app.test/docs").bearer(t));
    let initech = |t: &str| h.reason(&get("https://initech.test/docs").bearer(t).country("DE"));
    for i in [0, 2, 18, 38] {
        assert_eq!(acme(&token("acme", &format!("t{i}"))), "allow", "t{i}");
        assert_ne!(initech(&token("initech", &format!("t{i}"))), "allow", "t{i} speaks for acme only");
    }
    for i in [1, 19, 39] {
        assert_eq!(initech(&token("initech", &format!("t{i}"))), "allow", "t{i}");
        assert_ne!(acme(&token("acme", &format!("t{i}"))), "allow", "t{i} speaks for initech only");
    }
    assert_eq!(acme(&token("acme", "t40")), "token_wrong_issuer");
    assert_eq!(acme(&token("acme", "acme")), "allow");
}
