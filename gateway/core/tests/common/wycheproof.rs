//! Wycheproof JSON Web Signature vectors (C2SP/wycheproof, Apache-2.0; copied to
//! `tests/testdata/wycheproof/`), shared by the tests that run them.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gatehouse_core::jwt::TokenVerifier;
use gatehouse_core::policy::{Issuer, Policy};
use gatehouse_core::{CredentialKind, EdgeSecrets, ReasonCode};
use serde_json::Value;

/// Run every Wycheproof JWS vector through a verifier (optionally with a native signature
/// primitive) and assert that no invalid vector verifies and no valid signature is
/// refused as a bad signature.
pub fn check_wycheproof(native: Option<&dyn gatehouse_core::jwt::SignatureVerifier>) {
    let text = include_str!("../testdata/wycheproof/json_web_signature_test.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    let mut invalid_total = 0;
    let mut valid_sig_ok = 0;
    let mut valid_total = 0;
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for group in doc["testGroups"].as_array().unwrap() {
        let public = group.get("public");
        let private = group.get("private");
        let mut policy = Policy::default();
        let mut secrets = EdgeSecrets::default();
        let mut issuer = Issuer { issuer: "wycheproof".into(), ..Default::default() };
        let supported = match (public, private) {
            (Some(pk), _) => {
                let alg = pk.get("alg").and_then(Value::as_str).unwrap_or("");
                issuer.jwks = serde_json::json!({ "keys": [pk] }).to_string();
                ["ES256", "RS256", "PS256"].contains(&alg)
            }
            (None, Some(sk)) if sk["kty"] == "oct" => {
                let k = URL_SAFE_NO_PAD.decode(sk["k"].as_str().unwrap()).unwrap();
                secrets.hmac.insert("wp".into(), k);
                issuer.hmac_secret = Some("wp".into());
                issuer.hmac_kid = sk.get("kid").and_then(Value::as_str).map(str::to_string);
                true
            }
            _ => false,
        };
        policy.issuers.push(issuer);
        // Unsupported algorithms (RS384, ES521, encryption keys) must fail to load or to verify.
        let verifier = match TokenVerifier::new(&policy, &secrets) {
            Ok(v) => Some(v),
            Err(_) => {
                assert!(
                    !supported || public.is_some_and(|p| p.get("use") == Some(&Value::from("enc"))),
                    "supported group failed to load: {}",
                    group["comment"]
                );
                None
            }
        };
        for t in group["tests"].as_array().unwrap() {
            let jws = t["jws"].as_str().unwrap_or("");
            let result = t["result"].as_str().unwrap();
            let outcome = match &verifier {
                Some(v) => v.verify_with(jws, 1_700_000_000, CredentialKind::Jwt, native).map(|_| ()),
                None => Err(ReasonCode::TokenUnknownKey),
            };
            *outcomes.entry(format!("{result}: {}", outcome.err().map(|r| r.as_str()).unwrap_or("ok"))).or_default() +=
                1;
            match result {
                "invalid" => {
                    invalid_total += 1;
                    assert!(outcome.is_err(), "invalid vector {} accepted: {}", t["tcId"], t["comment"]);
                }
                "valid" if supported => {
                    valid_total += 1;
                    if outcome != Err(ReasonCode::TokenBadSignature) {
                        valid_sig_ok += 1;
                    }
                }
                _ => {}
            }
        }
    }
    eprintln!("wycheproof JWS outcomes: {outcomes:#?}");
    assert!(invalid_total > 100, "expected the full vector set, saw {invalid_total} invalid cases");
    assert_eq!(valid_sig_ok, valid_total, "a valid signature was refused as a bad signature");
}
