//! The fixed keys, tokens and policies of the fuzz targets. Everything here is test
//! material made from constant seeds, so the committed seed corpus (written by
//! `fuzz/seedgen`, which includes this file) carries signatures the targets accept.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gatehouse_core::bundle::{self, Envelope, FORMAT_VERSION, MAGIC};
use gatehouse_core::{EdgeSecrets, Policy};
use hmac::Mac as _;

/// "Now" for every target (2030-03-17), so tokens and bundles in the seeds stay valid.
pub const NOW: u64 = 1_900_000_000;

/// Seed of the bundle-signing Ed25519 key (the origin's key in production).
const BUNDLE_SEED: [u8; 32] = [0x42; 32];
/// What a bundle signature covers before the body (`gatehouse_core::bundle`'s context).
const BUNDLE_SIG_CONTEXT: &[u8] = b"gatehouse-bundle-v1\0";

/// The bundle-signing key pair (seed || public key).
pub fn bundle_keypair() -> [u8; 64] {
    let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(BUNDLE_SEED));
    let mut out = [0u8; 64];
    out.copy_from_slice(&kp[..]);
    out
}

/// The public key an edge pins.
pub fn bundle_public_key() -> [u8; 32] {
    bundle_keypair()[32..].try_into().expect("32 bytes")
}

/// An envelope around `body` (any bytes), signed with the bundle key: what the origin
/// would publish if its body encoder wrote exactly these bytes.
pub fn signed_envelope(body: &[u8]) -> Vec<u8> {
    let kp = ed25519_compact::KeyPair::from_slice(&bundle_keypair()).expect("key pair");
    let mut msg = Vec::with_capacity(BUNDLE_SIG_CONTEXT.len() + body.len());
    msg.extend_from_slice(BUNDLE_SIG_CONTEXT);
    msg.extend_from_slice(body);
    let env = Envelope {
        magic: MAGIC.into(),
        format: FORMAT_VERSION,
        key_id: bundle::key_id(&kp.pk),
        body: body.to_vec(),
        signature: kp.sk.sign(&msg, None).to_vec(),
    };
    rmp_serde::to_vec_named(&env).expect("envelope encodes")
}

/// Issuer A: tokens for organisation `acme` (audience `api`), Ed25519, ES256, RS256 and
/// HS256 keys.
pub const ISSUER_A: &str = "https://a.fuzz.test";
/// Issuer B: publishes the same JWKS (a region's shared key), tokens for `beta` only.
pub const ISSUER_B: &str = "https://b.fuzz.test";
/// `kid` of the Ed25519 key.
pub const KID_ED: &str = "fuzz-ed";
/// `kid` of the ES256 key.
pub const KID_ES: &str = "fuzz-es";
/// `kid` of the RS256 key.
pub const KID_RS: &str = "fuzz-rs";
/// `kid` of issuer A's HS256 key.
pub const KID_HS: &str = "fuzz-hs";
/// The HS256 secret (edge-local, named `fuzz`).
pub const HS_SECRET: &[u8] = b"fuzz-hmac-secret-0123456789abcdef";
const ED_SEED: [u8; 32] = [0x17; 32];
/// ES256 private scalar.
pub const ES_SCALAR: [u8; 32] = [0x23; 32];
/// The RSA test key of the core's tests (2048 bits).
pub const RSA_PEM: &str = include_str!("../../gateway/core/tests/keys/rsa2048.pem");

/// The Ed25519 token-signing key.
pub fn ed_key() -> ed25519_compact::KeyPair {
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(ED_SEED))
}

/// The issuers' JWKS: the Ed25519, ES256 and RS256 public keys, each with `kid` and `alg`.
pub fn jwks() -> String {
    use jwt_simple::prelude::*;
    let jwk = |text: String, kid: &str, alg: &str| {
        let mut v: serde_json::Value = serde_json::from_str(&text).expect("jwk");
        v["kid"] = kid.into();
        v["alg"] = alg.into();
        v["use"] = "sig".into();
        v
    };
    let ed = Ed25519KeyPair::from_bytes(&ed_key()[..]).expect("ed25519");
    let es = ES256KeyPair::from_bytes(&ES_SCALAR).expect("es256");
    let rs = RS256KeyPair::from_pem(RSA_PEM).expect("rsa");
    serde_json::json!({"keys": [
        jwk(ed.public_key().to_jwk(), KID_ED, "EdDSA"),
        jwk(es.public_key().to_jwk(), KID_ES, "ES256"),
        jwk(rs.public_key().to_jwk(), KID_RS, "RS256"),
    ]})
    .to_string()
}

/// The policy the token and cookie targets verify against: issuers A and B (one shared
/// JWKS), organisations `acme` (`acme.test`) and `beta` (`beta.test`), every route
/// needing a credential.
pub fn token_policy() -> Policy {
    let text = format!(
        r#"
[settings]
leeway_secs = 30

[tiers.free]
features = []

[[issuers]]
issuer = "{ISSUER_A}"
audiences = ["api"]
jwks = '''{jwks}'''
hmac_secret = "fuzz"
hmac_kid = "{KID_HS}"
orgs = ["acme"]

[[issuers]]
issuer = "{ISSUER_B}"
jwks = '''{jwks}'''
orgs = ["beta"]

[orgs.acme]
tier = "free"
hosts = ["acme.test"]

[orgs.beta]
tier = "free"
hosts = ["beta.test"]
"#,
        jwks = jwks()
    );
    toml::from_str(&text).expect("token policy parses")
}

/// The edge secrets of [`token_policy`] (the HS256 key).
pub fn secrets() -> EdgeSecrets {
    EdgeSecrets { api_key_secret: Some(vec![7; 32]), hmac: [("fuzz".to_string(), HS_SECRET.to_vec())].into() }
}

/// How [`sign_token`] signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// Ed25519 with [`ed_key`].
    Ed,
    /// HMAC-SHA256 with [`HS_SECRET`].
    Hs,
}

/// `b64(header).b64(payload).b64(signature)` over the given JSON texts (any bytes).
pub fn sign_token(signer: Signer, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let sig = match signer {
        Signer::Ed => ed_key().sk.sign(input.as_bytes(), None).to_vec(),
        Signer::Hs => {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HS_SECRET).expect("any key length");
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// A valid session token of `sub` in `acme` (issuer A, Ed25519), expiring an hour after
/// [`NOW`].
pub fn session_token(sub: &str) -> String {
    let header = format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{KID_ED}"}}"#);
    let payload = format!(
        r#"{{"iss":"{ISSUER_A}","sub":"{sub}","aud":"api","org":"acme","iat":{NOW},"exp":{},"sid":"s-{sub}"}}"#,
        NOW + 3600
    );
    sign_token(Signer::Ed, header.as_bytes(), payload.as_bytes())
}
