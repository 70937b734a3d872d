//! Writes the seeds of the fuzz corpus that carry signatures (bundles and tokens under
//! the fixed test keys of `fuzz/src/fixtures.rs`) and the binary ones (MessagePack).
//! Deterministic: run it again and the files are the same.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml -p gatehouse-fuzz-seedgen` (from the
//! repository root; writes under `fuzz/corpus/`).

#[path = "../../src/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

use std::fs;
use std::path::{Path, PathBuf};

use gatehouse_core::bundle::{self, BundleBody, FORMAT_VERSION};
use gatehouse_core::Policy;
use jwt_simple::prelude::*;

use fixtures::{Signer, ISSUER_A, ISSUER_B, KID_ED, KID_ES, KID_HS, KID_RS, NOW};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

fn write(target: &str, name: &str, mode: Option<u8>, bytes: &[u8]) {
    let dir = corpus().join(target);
    fs::create_dir_all(&dir).expect("corpus directory");
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.extend(mode);
    out.extend_from_slice(bytes);
    fs::write(dir.join(name), out).expect("seed written");
}

/// `examples/policy.toml` with its JWKS file replaced by the fixtures' JWKS inline.
fn example_policy() -> Policy {
    let text = include_str!("../../../examples/policy.toml");
    let mut p: Policy = toml::from_str(text).expect("the example policy parses");
    for iss in &mut p.issuers {
        iss.jwks_file = None;
        iss.jwks = fixtures::jwks();
    }
    p.validate().expect("the example policy validates");
    p
}

fn body(policy: Policy, issued_at: u64, expires_at: u64) -> BundleBody {
    BundleBody { format: FORMAT_VERSION, revision: 7, region: "eu".into(), issued_at, expires_at, policy }
}

fn bundles() {
    let kp = fixtures::bundle_keypair();
    let example = body(example_policy(), NOW - 60, NOW + 3600);
    let tokens = body(fixtures::token_policy(), NOW - 60, NOW + 3600);
    let empty = body(Policy::default(), NOW - 60, NOW + 3600);
    let expired = body(Policy::default(), NOW - 7200, NOW - 3600);
    let other_key = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([9; 32]));
    let mut other = [0u8; 64];
    other.copy_from_slice(&other_key[..]);
    for (name, b, key) in [
        ("example.bundle", &example, &kp),
        ("issuers.bundle", &tokens, &kp),
        ("empty.bundle", &empty, &kp),
        ("expired.bundle", &expired, &kp),
        ("other_key.bundle", &empty, &other),
    ] {
        write("bundle", name, Some(0), &bundle::sign(b, key).expect("signs"));
    }
    for (name, b) in [("example.body", &example), ("empty.body", &empty)] {
        let bytes = rmp_serde::to_vec_named(b).expect("encodes");
        write("bundle", name, Some(1), &bytes);
        write("msgpack", name, None, &bytes);
    }
    write("msgpack", "issuers.policy", None, &rmp_serde::to_vec_named(&tokens.policy).expect("encodes"));
    write("msgpack", "empty.envelope", None, &bundle::sign(&empty, &kp).expect("signs"));
}

fn claims(iss: &str, org: &str, extra: &str) -> String {
    format!(r#"{{"iss":"{iss}","sub":"u1","aud":"api","org":"{org}","iat":{NOW},"exp":{}{extra}}}"#, NOW + 3600)
}

fn header(alg: &str, kid: &str) -> String {
    format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{kid}"}}"#)
}

fn tokens() {
    let ed = |h: &str, p: &str| fixtures::sign_token(Signer::Ed, h.as_bytes(), p.as_bytes());
    let hs = |h: &str, p: &str| fixtures::sign_token(Signer::Hs, h.as_bytes(), p.as_bytes());
    let a = claims(ISSUER_A, "acme", r#","roles":["admin"],"scope":"docs:read docs:write","teams":["ops"],"sid":"s1""#);
    let raw = [
        ("ed.jwt", ed(&header("EdDSA", KID_ED), &a)),
        ("hs.jwt", hs(&header("HS256", KID_HS), &a)),
        ("issuer_b.jwt", ed(&header("EdDSA", KID_ED), &claims(ISSUER_B, "beta", ""))),
        ("wrong_org.jwt", ed(&header("EdDSA", KID_ED), &claims(ISSUER_B, "acme", ""))),
        (
            "expired.jwt",
            ed(
                &header("EdDSA", KID_ED),
                &format!(r#"{{"iss":"{ISSUER_A}","sub":"u1","aud":"api","org":"acme","exp":{}}}"#, NOW - 3600),
            ),
        ),
        (
            "actor.jwt",
            ed(
                &header("EdDSA", KID_ED),
                &claims(
                    ISSUER_A,
                    "acme",
                    r#","act":{"sub":"operator"},"amr":["pwd","mfa"],"auth_time":1899999000,"acr":"aal2""#,
                ),
            ),
        ),
        ("crit.jwt", ed(r#"{"alg":"EdDSA","kid":"fuzz-ed","crit":["exp"]}"#, &a)),
        ("alg_mismatch.jwt", hs(&header("HS256", KID_ED), &a)),
        ("no_kid.jwt", ed(r#"{"alg":"EdDSA"}"#, &a)),
    ];
    for (name, t) in raw {
        write("jwt", name, Some(0), t.as_bytes());
    }
    // ES256 and RS256, as jwt-simple signs them (the origin's library).
    let custom: serde_json::Value = serde_json::json!({"org": "acme"});
    let c = || {
        let mut c = Claims::with_custom_claims(custom.clone(), Duration::from_hours(1))
            .with_issuer(ISSUER_A)
            .with_audience("api")
            .with_subject("u1");
        // jwt-simple stamps the wall clock; the targets' clock is NOW.
        c.issued_at = Some(UnixTimeStamp::from_secs(NOW));
        c.invalid_before = Some(UnixTimeStamp::from_secs(NOW));
        c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 3600));
        c
    };
    let es = ES256KeyPair::from_bytes(&fixtures::ES_SCALAR).expect("es256").with_key_id(KID_ES);
    let rs = RS256KeyPair::from_pem(fixtures::RSA_PEM).expect("rsa").with_key_id(KID_RS);
    write("jwt", "es256.jwt", Some(0), es.sign(c()).expect("signs").as_bytes());
    write("jwt", "rs256.jwt", Some(0), rs.sign(c()).expect("signs").as_bytes());
    // Header and payload for the target to sign.
    let pair = |h: &str, p: &str| [h.as_bytes(), &[0], p.as_bytes()].concat();
    write("jwt", "sign_ed.pair", Some(1), &pair(&header("EdDSA", KID_ED), &a));
    write("jwt", "sign_hs.pair", Some(2), &pair(&header("HS256", KID_HS), &a));
    write("jwt", "sign_b.pair", Some(1), &pair(&header("EdDSA", KID_ED), &claims(ISSUER_B, "beta", "")));
    write("jwt", "payload.json", Some(3), a.as_bytes());
    write(
        "jwt",
        "payload_amr.json",
        Some(3),
        claims(ISSUER_A, "acme", r#","amr":["mfa"],"auth_time":1899999999,"scp":["a:b"],"jti":"j1""#).as_bytes(),
    );
}

fn jwks() {
    let all = fixtures::jwks();
    write("jwks", "fixtures.jwks", Some(0), all.as_bytes());
    let keys: serde_json::Value = serde_json::from_str(&all).expect("jwks");
    let rsa_no_alg = {
        let mut k = keys["keys"][2].clone();
        k.as_object_mut().expect("object").remove("alg");
        serde_json::json!({"keys": [k]}).to_string()
    };
    write("jwks", "rsa_default_ps256.jwks", Some(2), rsa_no_alg.as_bytes());
    let ed_bare = {
        let mut k = keys["keys"][0].clone();
        for m in ["alg", "use", "kid"] {
            k.as_object_mut().expect("object").remove(m);
        }
        k
    };
    let enc = {
        let mut k = keys["keys"][1].clone();
        k["use"] = "enc".into();
        k
    };
    let dup = serde_json::json!({"keys": [keys["keys"][0], keys["keys"][0]]}).to_string();
    write("jwks", "ed_bare_and_enc.jwks", Some(0), serde_json::json!({"keys": [ed_bare, enc]}).to_string().as_bytes());
    write("jwks", "duplicate_kid.jwks", Some(0), dup.as_bytes());
}

fn main() {
    bundles();
    tokens();
    jwks();
    println!("seeds written under {}", corpus().display());
}
