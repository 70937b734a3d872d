//! The verified-token cache kept outside the engine (`gatehouse_core::sealed`, for hosts
//! whose instances live for one request): an entry sealed by one engine lets a fresh
//! engine skip the signature check, and nothing else.

mod common;

use common::*;
use gatehouse_core::sealed::Sealer;
use gatehouse_core::Decision;

const BUNDLE: [u8; 32] = [4; 32];

fn sealer() -> Sealer {
    Sealer::new(b"a sealing key of thirty-two bytes!").unwrap()
}

/// A token verified by one engine (one instance), sealed for the store.
fn sealed(token: &str) -> Vec<u8> {
    let h = Harness::new(engine());
    assert!(matches!(h.decide(&get("https://acme.app.test/docs").bearer(token)), Decision::Allow(_)));
    let s = sealer();
    let entry = s.token_entry(&BUNDLE, token);
    h.engine.seal_verified(&s, &entry, token, NOW).expect("the verified token is sealed")
}

#[test]
fn the_presented_token_is_the_one_the_engine_reads() {
    let e = engine();
    let t = ed_token(claims("alice", &["viewer"]));
    let r = get("https://acme.app.test/docs").bearer(&t);
    let pairs = r.pairs();
    assert_eq!(e.presented_token(&r.head(&pairs)), Some(t.as_str()));
    let cookie = get("https://acme.app.test/docs").header("cookie", &format!("gh_session={t}"));
    let pairs = cookie.pairs();
    assert_eq!(e.presented_token(&cookie.head(&pairs)), Some(t.as_str()));
    // Two bearer headers (malformed), none, or a public route: no token.
    let two = get("https://acme.app.test/docs").bearer(&t).bearer(&t);
    let none = get("https://acme.app.test/docs");
    let public = get("https://acme.app.test/healthz").bearer(&t);
    for r in [two, none, public] {
        let pairs = r.pairs();
        assert_eq!(e.presented_token(&r.head(&pairs)), None, "{:?}", r.headers);
    }
}

#[test]
fn a_fresh_engine_takes_a_sealed_identity_without_verifying_again() {
    let t = ed_token(claims("alice", &["viewer"]));
    let stored = sealed(&t);
    let s = sealer();
    let entry = s.token_entry(&BUNDLE, &t);
    let fresh = Harness::new(engine());
    assert!(fresh.engine.remember_sealed(&s, &entry, &t, &stored, NOW));
    assert_eq!(fresh.engine.cached_tokens(), 1);
    match fresh.decide(&get("https://acme.app.test/docs").bearer(&t)) {
        Decision::Allow(a) => assert_eq!(a.identity.as_ref().map(|i| i.subject.as_str()), Some("alice")),
        other => panic!("{other:?}"),
    }
    // The entry is the whole proof: a token whose signature the engine refuses is
    // admitted on an entry sealed under the key (so the key must stay secret), and is
    // refused under an entry sealed with any other key.
    let forged = raw_ed(&keys().attacker, serde_json::json!({"alg": "EdDSA", "kid": "ed1"}), payload("mallory"));
    let h = Harness::new(engine());
    assert_eq!(h.reason(&get("https://acme.app.test/docs").bearer(&forged)), "token_bad_signature");
    let id = match Harness::new(engine()).decide(&get("https://acme.app.test/docs").bearer(&t)) {
        Decision::Allow(a) => a.identity.unwrap(),
        other => panic!("{other:?}"),
    };
    let entry = s.token_entry(&BUNDLE, &forged);
    let wrong_key = Sealer::new(&[0x41; 32]).unwrap();
    let h = Harness::new(engine());
    assert!(!h.engine.remember_sealed(&s, &entry, &forged, &wrong_key.seal_token(&entry, &id, NOW + 600), NOW));
    assert_eq!(h.reason(&get("https://acme.app.test/docs").bearer(&forged)), "token_bad_signature");
    assert!(h.engine.remember_sealed(&s, &entry, &forged, &s.seal_token(&entry, &id, NOW + 600), NOW));
    assert!(matches!(h.decide(&get("https://acme.app.test/docs").bearer(&forged)), Decision::Allow(_)));
}

#[test]
fn a_sealed_identity_is_still_subject_to_revocations_and_disabled_users() {
    let t = ed_token(claims("alice", &["viewer"]));
    let stored = sealed(&t);
    let s = sealer();
    let entry = s.token_entry(&BUNDLE, &t);
    let mut revoked = policy();
    revoked.revoked.jti.push("jti-alice".into());
    let h = Harness::new(engine_with(&revoked));
    assert!(h.engine.remember_sealed(&s, &entry, &t, &stored, NOW));
    assert_eq!(h.reason(&get("https://acme.app.test/docs").bearer(&t)), "token_revoked");
    let mut sessions = policy();
    sessions.revoked.sessions.push("sess-1".into());
    let h = Harness::new(engine_with(&sessions));
    assert!(h.engine.remember_sealed(&s, &entry, &t, &stored, NOW));
    assert_eq!(h.reason(&get("https://acme.app.test/docs").bearer(&t)), "session_revoked");
}

#[test]
fn a_sealed_entry_for_another_token_or_past_its_end_is_not_taken() {
    let alice = ed_token(claims("alice", &["viewer"]));
    let bob = ed_token(claims("bob", &["viewer"]));
    let stored = sealed(&alice);
    let s = sealer();
    let h = Harness::new(engine());
    assert!(!h.engine.remember_sealed(&s, &s.token_entry(&BUNDLE, &bob), &bob, &stored, NOW));
    assert!(!h.engine.remember_sealed(&s, &s.token_entry(&BUNDLE, &alice), &alice, &stored, NOW + 10_000));
    assert!(!h.engine.remember_sealed(&s, &s.token_entry(&[5; 32], &alice), &alice, &stored, NOW));
    assert_eq!(h.engine.cached_tokens(), 0);
    // Nothing to seal for a token this engine did not verify.
    assert!(h.engine.seal_verified(&s, &s.token_entry(&BUNDLE, &bob), &bob, NOW).is_none());
}
