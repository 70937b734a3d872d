//! The JWT attack table: every forged, tampered or misused token is denied with a precise
//! reason code, through the whole engine.

mod common;

use common::*;
use gatehouse_core::Decision;
use jwt_simple::prelude::*;
use serde_json::json;

fn at(h: &Harness, token: &str) -> String {
    h.reason(&get("https://acme.app.test/docs").bearer(token))
}

#[test]
fn valid_tokens_of_every_algorithm_are_accepted() {
    let h = Harness::new(engine());
    let k = keys();
    assert_eq!(at(&h, &k.ed1.sign(claims("u-ed", &["viewer"])).unwrap()), "allow");
    assert_eq!(at(&h, &k.es1.sign(claims("u-es", &["viewer"])).unwrap()), "allow");
    assert_eq!(at(&h, &k.rs1.sign(claims("u-rs", &["viewer"])).unwrap()), "allow");
    assert_eq!(at(&h, &k.ps1.sign(claims("u-ps", &["viewer"])).unwrap()), "allow");
    // HS256 through the issuer configured with an edge-local secret.
    let hs = raw_hs(
        HMAC_SECRET,
        json!({"alg": "HS256", "kid": "hs1", "typ": "JWT"}),
        json!({"iss": "https://legacy.test", "sub": "u-hs", "org": "acme", "exp": NOW + 60}),
    );
    assert_eq!(at(&h, &hs), "allow");
}

#[test]
fn attack_table() {
    let h = Harness::new(engine());
    let failures = run_attack_table(&h);
    assert!(failures.is_empty(), "{} cases wrong:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn key_url_headers_are_ignored_not_followed() {
    let h = Harness::new(engine());
    let k = keys();
    for extra in [("jku", "https://evil.test/jwks"), ("x5u", "https://evil.test/cert")] {
        let t = raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "ed1", extra.0: extra.1}), payload("dave"));
        assert_eq!(at(&h, &t), "allow", "{}", extra.0);
    }
}

#[test]
fn revocation_and_tenant_binding() {
    let mut p = policy();
    p.revoked.jti.push("jti-revoked".into());
    p.revoked.sessions.push("sess-dead".into());
    let h = Harness::new(engine_with(&p));
    let revoked = ed_token(claims("revoked", &["viewer"]));
    assert_eq!(at(&h, &revoked), "token_revoked");
    let mut c = claims("bob", &["viewer"]);
    c.custom["sid"] = json!("sess-dead");
    assert_eq!(at(&h, &ed_token(c)), "session_revoked");
    // A valid acme token at another tenant's address.
    let t = ed_token(claims("alice", &["viewer"]));
    assert_eq!(h.reason(&get("https://initech.test/docs").bearer(&t).country("DE")), "tenant_mismatch");
    // The legacy issuer may only sign for acme.
    let hs = raw_hs(
        HMAC_SECRET,
        json!({"alg": "HS256", "kid": "hs1"}),
        json!({"iss": "https://legacy.test", "sub": "x", "org": "initech", "exp": NOW + 60}),
    );
    assert_eq!(h.reason(&get("https://initech.test/docs").bearer(&hs).country("DE")), "tenant_mismatch");
}

#[test]
fn hmac_without_edge_secret_fails_closed() {
    let e = gatehouse_core::Engine::new(&policy(), info(), &gatehouse_core::EdgeSecrets::default()).unwrap();
    let h = Harness::new(e);
    let hs = raw_hs(
        HMAC_SECRET,
        json!({"alg": "HS256", "kid": "hs1"}),
        json!({"iss": "https://legacy.test", "sub": "x", "org": "acme", "exp": NOW + 60}),
    );
    assert_eq!(at(&h, &hs), "token_unknown_key");
}

#[test]
fn cache_respects_expiry_and_leeway() {
    let h = Harness::new(engine());
    let t = ed_token(claims("carol", &["viewer"]));
    let r = get("https://acme.app.test/docs").bearer(&t);
    assert!(h.decide_at(&r, NOW).is_allow());
    // A session cookie is not the same credential as a bearer token, even if equal text.
    let cookie = get("https://acme.app.test/docs").header("cookie", &format!("theme=dark; gh_session={t}"));
    let d = h.decide_at(&cookie, NOW);
    assert!(d.is_allow(), "{d:?}");
    if let Decision::Allow(a) = d {
        assert_eq!(a.identity.unwrap().kind, gatehouse_core::CredentialKind::Session);
    }
    let two = get("https://acme.app.test/docs").header("cookie", &format!("gh_session={t}; gh_session=x"));
    assert_eq!(h.reason(&two), "credential_malformed");
    assert_eq!(h.engine.cached_tokens(), 1);
    assert!(h.decide_at(&r, NOW + 600 + 30).is_allow(), "within leeway");
    match h.decide_at(&r, NOW + 600 + 31) {
        Decision::Deny(d) => assert_eq!(d.reason.as_str(), "token_expired"),
        other => panic!("{other:?}"),
    }
}
