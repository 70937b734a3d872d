//! Fuzz JWT verification (`gatehouse_core::jwt::TokenVerifier`) against a policy with
//! two issuers sharing one JWKS (Ed25519, ES256, RS256 keys) and an HS256 key.
//!
//! The first byte picks how the rest is used:
//! - `0 mod 4`: the rest is a token as sent (the seeds are tokens signed with the
//!   fixed keys, and attack shapes);
//! - `1`, `2 mod 4`: the rest is `header JSON \0 payload JSON`, which the target encodes
//!   and signs (Ed25519, HS256), so every mutation gets past the signature;
//! - `3 mod 4`: the rest is a payload under a fixed HS256 header, signed.
//!
//! Invariants (a panic here is a finding):
//! - no token panics; every refusal is one of the token reasons;
//! - `token_too_large` exactly when the token is longer than `max_token_bytes`;
//! - a verified identity holds what the issuer may vouch for: its `iss` is A or B, the
//!   organisation is the issuer's (`acme` for A, `beta` for B), A's audience is named,
//!   the token is unexpired (with the leeway), every string is header-safe and every
//!   list bounded, and the upstream headers carry no control characters;
//! - `peek_tenant` names the organisation of every verified token;
//! - changing one character of a verified token's signature refuses it with
//!   `token_bad_signature`;
//! - a host's native primitive only decides the signature: with one that accepts every
//!   signature, a token refused for another reason is refused for the same reason, and a
//!   verified one verifies the same; with one that refuses every signature, no token of
//!   an asymmetric key verifies.
#![no_main]

use std::sync::OnceLock;

use gatehouse_core::identity::{header_safe, limits};
use gatehouse_core::jwt::{Alg, SignatureVerifier, TokenVerifier};
use gatehouse_core::policy::valid_name;
use gatehouse_core::{CredentialKind, Identity, ReasonCode};
use gatehouse_fuzz::fixtures::{self, Signer, ISSUER_A, ISSUER_B, KID_HS, NOW};
use libfuzzer_sys::fuzz_target;

const TOKEN_REASONS: &[ReasonCode] = &[
    ReasonCode::TokenMalformed,
    ReasonCode::TokenActInvalid,
    ReasonCode::TokenTooLarge,
    ReasonCode::TokenAlgorithmMismatch,
    ReasonCode::TokenUnknownKey,
    ReasonCode::TokenCriticalHeader,
    ReasonCode::TokenBadSignature,
    ReasonCode::TokenExpired,
    ReasonCode::TokenNotYetValid,
    ReasonCode::TokenClaimMissing,
    ReasonCode::TokenWrongIssuer,
    ReasonCode::TokenWrongAudience,
    ReasonCode::TenantMismatch,
];

struct Fixed(bool);

impl SignatureVerifier for Fixed {
    fn verify(&self, _: Alg, _: &[u8], _: &[u8], _: &[u8]) -> Option<bool> {
        Some(self.0)
    }
}

fn verifier() -> &'static TokenVerifier {
    static V: OnceLock<TokenVerifier> = OnceLock::new();
    V.get_or_init(|| TokenVerifier::new(&fixtures::token_policy(), &fixtures::secrets()).expect("fixture verifier"))
}

fn check_identity(token: &str, id: &Identity) {
    let payload: serde_json::Value = token
        .split('.')
        .nth(1)
        .and_then(|p| base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .expect("a verified token has a JSON payload");
    let iss = payload["iss"].as_str().expect("a verified token names its issuer");
    match iss {
        ISSUER_A => {
            assert_eq!(id.org, "acme", "issuer A vouched for {}", id.org);
            let aud = &payload["aud"];
            assert!(
                aud.as_str() == Some("api") || aud.as_array().is_some_and(|a| a.iter().any(|x| x == "api")),
                "issuer A's token without its audience: {aud}"
            );
        }
        ISSUER_B => assert_eq!(id.org, "beta", "issuer B vouched for {}", id.org),
        other => panic!("a token of issuer {other:?} verified"),
    }
    assert!(valid_name(&id.org), "organisation {:?}", id.org);
    assert!(header_safe(&id.subject), "subject {:?}", id.subject);
    let exp = id.expires_at.expect("a verified token has exp");
    assert!(NOW <= exp.saturating_add(verifier().leeway()), "expired token verified (exp {exp})");
    let lists = [Some(&id.roles), id.scopes.as_ref(), Some(&id.teams), Some(&id.amr)];
    for list in lists.into_iter().flatten() {
        assert!(list.len() <= limits::MAX_LIST, "list of {} items", list.len());
        assert!(list.iter().all(|s| header_safe(s)), "unsafe item in {list:?}");
    }
    for s in [&id.session_id, &id.acr, &id.actor].into_iter().flatten() {
        assert!(header_safe(s), "unsafe value {s:?}");
    }
    for (name, value) in id.upstream_headers() {
        assert!(name.starts_with("x-gatehouse-"), "upstream header {name:?}");
        assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)), "upstream header {name}: {value:?}");
    }
    assert_eq!(verifier().peek_tenant(token).as_deref(), Some(id.org.as_str()), "peek_tenant disagrees");
}

/// The token with the second character of its signature changed (to another base64url
/// character, so the decoded signature changes).
fn tampered(token: &str) -> Option<String> {
    let sig_at = token.rfind('.')? + 1;
    let pos = sig_at + 1;
    let c = *token.as_bytes().get(pos)?;
    let swap = if c == b'A' { b'B' } else { b'A' };
    let mut t = token.as_bytes().to_vec();
    t[pos] = swap;
    String::from_utf8(t).ok()
}

fn check(token: &str) {
    let v = verifier();
    let r = v.verify(token, NOW, CredentialKind::Jwt);
    if token.len() > v.max_bytes() {
        assert_eq!(r.as_ref().err(), Some(&ReasonCode::TokenTooLarge));
        return;
    }
    let yes = v.verify_with(token, NOW, CredentialKind::Jwt, Some(&Fixed(true)));
    match &r {
        Err(code) => {
            assert!(TOKEN_REASONS.contains(code), "refused with {code:?}");
            assert_ne!(*code, ReasonCode::TokenTooLarge, "token_too_large under the limit");
            if *code != ReasonCode::TokenBadSignature {
                assert_eq!(yes.as_ref().err(), Some(code), "the native primitive changed a non-signature refusal");
            } else if let Ok(y) = &yes {
                // The native primitive vouched for the signature: the claims still hold.
                check_identity(token, &y.identity);
            }
        }
        Ok(verified) => {
            check_identity(token, &verified.identity);
            let y = yes.as_ref().expect("a verified token is refused with a native primitive");
            assert_eq!(y.identity, verified.identity);
            let is_hs = token.split('.').next().is_some_and(|h| {
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, h)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .is_some_and(|h| h["kid"] == KID_HS)
            });
            let no = v.verify_with(token, NOW, CredentialKind::Jwt, Some(&Fixed(false)));
            if is_hs {
                assert!(no.is_ok(), "an HS256 token depends on the native primitive");
            } else {
                assert_eq!(no.err(), Some(ReasonCode::TokenBadSignature), "verified though the primitive refused");
            }
            if let Some(t) = tampered(token) {
                assert_eq!(
                    v.verify(&t, NOW, CredentialKind::Jwt).err(),
                    Some(ReasonCode::TokenBadSignature),
                    "a changed signature was not refused as such: {t}"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                check(token);
            }
        }
        m @ (1 | 2) => {
            let (header, payload) = match rest.iter().position(|&b| b == 0) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b"{}"[..]),
            };
            let signer = if m == 1 { Signer::Ed } else { Signer::Hs };
            check(&fixtures::sign_token(signer, header, payload));
        }
        _ => {
            let header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{KID_HS}"}}"#);
            check(&fixtures::sign_token(Signer::Hs, header.as_bytes(), rest));
        }
    }
});
