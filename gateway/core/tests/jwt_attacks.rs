//! The JWT attack table: every forged, tampered or misused token is denied with a precise
//! reason code, through the whole engine.

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
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
    let k = keys();
    let good = ed_token(claims("alice", &["viewer"]));
    let parts: Vec<&str> = good.split('.').collect();
    let hdr = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let p = payload("alice");
    let signed_payload = parts[1];

    let mut cases: Vec<(&str, String, &str)> = Vec::new();
    // alg none, in every spelling, with and without a signature.
    for none in ["none", "None", "NONE", "nOnE"] {
        cases.push((
            "alg none, empty signature",
            format!("{}.{}.", hdr(json!({"alg": none, "kid": "ed1"})), signed_payload),
            "token_malformed",
        ));
        cases.push((
            "alg none, junk signature",
            format!("{}.{}.{}", hdr(json!({"alg": none, "kid": "ed1"})), signed_payload, parts[2]),
            "token_algorithm_mismatch",
        ));
        cases.push((
            "alg none, no kid",
            format!("{}.{}.AAAA", hdr(json!({"alg": none})), signed_payload),
            "token_unknown_key",
        ));
    }
    // HS256 signed with a public key as the HMAC secret (key confusion).
    cases.push((
        "HS256 with RSA public key PEM",
        raw_hs(k.rsa_public_pem.as_bytes(), json!({"alg": "HS256", "kid": "rs1"}), p.clone()),
        "token_algorithm_mismatch",
    ));
    cases.push((
        "HS256 with EC public key bytes",
        raw_hs(&k.es1.public_key().to_bytes(), json!({"alg": "HS256", "kid": "es1"}), p.clone()),
        "token_algorithm_mismatch",
    ));
    cases.push((
        "HS256 with Ed25519 public key",
        raw_hs(&k.ed1.public_key().to_bytes(), json!({"alg": "HS256", "kid": "ed1"}), p.clone()),
        "token_algorithm_mismatch",
    ));
    // RS256 token presented under the PS256 kid of the same RSA key.
    let rs = k.rs1.sign(claims("alice", &["viewer"])).unwrap();
    let rs_parts: Vec<&str> = rs.split('.').collect();
    cases.push((
        "RS256 signature under a PS256 key",
        format!("{}.{}.{}", hdr(json!({"alg": "PS256", "kid": "ps1"})), rs_parts[1], rs_parts[2]),
        "token_bad_signature",
    ));
    // Signatures: empty, truncated, from another key, zeroed ECDSA.
    cases.push(("empty signature", format!("{}.{}.", parts[0], parts[1]), "token_malformed"));
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    cases.push((
        "truncated signature",
        format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig[..61])),
        "token_bad_signature",
    ));
    cases.push((
        "truncated signature text",
        format!("{}.{}.{}", parts[0], parts[1], &parts[2][..parts[2].len() - 4]),
        "token_malformed",
    ));
    cases.push((
        "signature of another key under ed1",
        raw_ed(&k.attacker, json!({"alg": "EdDSA", "kid": "ed1"}), p.clone()),
        "token_bad_signature",
    ));
    cases.push((
        "ed1 token under kid ed2",
        raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "ed2"}), p.clone()),
        "token_bad_signature",
    ));
    cases.push((
        "wrong kid, other algorithm",
        raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "es1"}), p.clone()),
        "token_algorithm_mismatch",
    ));
    cases.push(("unknown kid", raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "nope"}), p.clone()), "token_unknown_key"));
    let es = k.es1.sign(claims("alice", &["viewer"])).unwrap();
    let es_parts: Vec<&str> = es.split('.').collect();
    cases.push((
        "ECDSA r=s=0",
        format!("{}.{}.{}", es_parts[0], es_parts[1], URL_SAFE_NO_PAD.encode([0u8; 64])),
        "token_bad_signature",
    ));
    cases.push((
        "ECDSA r=s=n (group order)",
        format!("{}.{}.{}", es_parts[0], es_parts[1], URL_SAFE_NO_PAD.encode([&P256_N[..], &P256_N[..]].concat())),
        "token_bad_signature",
    ));
    cases.push((
        "payload swapped under a valid signature",
        format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(payload("mallory").to_string()), parts[2]),
        "token_bad_signature",
    ));
    // Embedded keys and key URLs are ignored: the attacker's key never verifies.
    let attacker_jwk: serde_json::Value = serde_json::from_str(&k.attacker.public_key().to_jwk()).unwrap();
    // (jwt-simple's header parser refuses a `jwk` object outright: still denied.)
    cases.push((
        "embedded jwk header",
        raw_ed(&k.attacker, json!({"alg": "EdDSA", "kid": "ed1", "jwk": attacker_jwk}), p.clone()),
        "token_malformed",
    ));
    cases.push((
        "jku header",
        raw_ed(&k.attacker, json!({"alg": "EdDSA", "kid": "ed1", "jku": "https://evil.test/jwks"}), p.clone()),
        "token_bad_signature",
    ));
    cases.push((
        "x5u header",
        raw_ed(&k.attacker, json!({"alg": "EdDSA", "kid": "ed1", "x5u": "https://evil.test/cert"}), p.clone()),
        "token_bad_signature",
    ));
    cases.push((
        "embedded jwk, no kid",
        raw_ed(&k.attacker, json!({"alg": "EdDSA", "jwk": attacker_jwk}), p.clone()),
        "token_unknown_key",
    ));
    // crit: no extension is understood.
    cases.push((
        "crit header",
        raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "ed1", "crit": ["b64"]}), p.clone()),
        "token_critical_header",
    ));
    cases.push((
        "empty crit",
        raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "ed1", "crit": []}), p.clone()),
        "token_critical_header",
    ));
    // Header oddities.
    cases.push((
        "unknown header member",
        raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "ed1", "b64": false}), p.clone()),
        "token_malformed",
    ));
    cases.push((
        "typ is not JWT",
        raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "ed1", "typ": "JWE"}), p.clone()),
        "token_malformed",
    ));
    cases.push((
        "nested JWT (cty)",
        raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "ed1", "cty": "JWT"}), p.clone()),
        "token_malformed",
    ));
    let dup_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","kid":"ed1","alg":"none"}"#);
    cases.push(("duplicate alg member", format!("{dup_header}.{}.{}", parts[1], parts[2]), "token_malformed"));
    cases.push((
        "header not JSON",
        format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("nope"), parts[1], parts[2]),
        "token_malformed",
    ));
    // Time.
    let mut c = claims("alice", &["viewer"]);
    c.expires_at = Some(Duration::from_secs(NOW - 31));
    cases.push(("expired beyond leeway", ed_token(c), "token_expired"));
    let mut c = claims("alice", &["viewer"]);
    c.invalid_before = Some(Duration::from_secs(NOW + 31));
    cases.push(("not yet valid (nbf)", ed_token(c), "token_not_yet_valid"));
    let mut c = claims("alice", &["viewer"]);
    c.issued_at = Some(Duration::from_secs(NOW + 3600));
    cases.push(("issued in the future (iat)", ed_token(c), "token_not_yet_valid"));
    let mut c = claims("alice", &["viewer"]);
    c.expires_at = None;
    cases.push(("no exp", ed_token(c), "token_claim_missing"));
    // Issuer and audience.
    cases.push((
        "wrong iss",
        ed_token(claims("alice", &["viewer"]).with_issuer("https://evil.test")),
        "token_wrong_issuer",
    ));
    let mut c = claims("alice", &["viewer"]);
    c.issuer = None;
    cases.push(("no iss", ed_token(c), "token_claim_missing"));
    cases.push((
        "wrong aud",
        ed_token(claims("alice", &["viewer"]).with_audience("someone-else")),
        "token_wrong_audience",
    ));
    let mut c = claims("alice", &["viewer"]);
    c.audiences = None;
    cases.push(("no aud", ed_token(c), "token_wrong_audience"));
    let mut c = claims("alice", &["viewer"]);
    c.subject = None;
    cases.push(("no sub", ed_token(c), "token_claim_missing"));
    // Header injection through claims.
    cases.push((
        "CRLF in sub",
        raw_ed(
            &k.ed1,
            json!({"alg": "EdDSA", "kid": "ed1"}),
            json!({"iss": ISS, "aud": AUD, "sub": "a\r\nx-gatehouse-org: globex", "org": "acme", "exp": NOW + 60}),
        ),
        "token_malformed",
    ));
    cases.push((
        "roles not strings",
        raw_ed(
            &k.ed1,
            json!({"alg": "EdDSA", "kid": "ed1"}),
            json!({"iss": ISS, "aud": AUD, "sub": "a", "org": "acme", "roles": [1], "exp": NOW + 60}),
        ),
        "token_malformed",
    ));
    // Non-canonical base64url.
    cases.push(("padding in signature", format!("{good}="), "token_malformed"));
    cases.push(("padding in header", format!("{}=.{}.{}", parts[0], parts[1], parts[2]), "token_malformed"));
    cases.push((
        "standard alphabet",
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            STANDARD.encode(URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).trim_end_matches('=')
        ),
        "token_malformed",
    ));
    cases.push((
        "non-zero trailing bits",
        format!("{}.{}.{}", parts[0], parts[1], flip_trailing_bits(parts[2])),
        "token_malformed",
    ));
    cases.push(("whitespace inside", format!("{}.{} .{}", parts[0], parts[1], parts[2]), "credential_malformed"));
    // Structure and size.
    cases.push(("two parts", format!("{}.{}", parts[0], parts[1]), "token_malformed"));
    cases.push(("four parts", format!("{good}.AAAA"), "token_malformed"));
    cases.push(("oversized", format!("{}.{}.{}", parts[0], "A".repeat(10_000), parts[2]), "token_too_large"));
    cases.push(("garbage", "not-a-token".into(), "token_malformed"));

    let mut failures = Vec::new();
    for (name, token, want) in &cases {
        let got = at(&h, token);
        if got != *want {
            failures.push(format!("{name}: expected {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Re-encode so the final character carries non-zero padding bits (same bytes decoded
/// by a lax decoder).
fn flip_trailing_bits(s: &str) -> String {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_ne!(s.len() % 4, 0, "needs a partial final quantum");
    let last = s.as_bytes()[s.len() - 1];
    let idx = ALPHA.iter().position(|c| *c == last).unwrap();
    format!("{}{}", &s[..s.len() - 1], ALPHA[idx | 1] as char)
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
