//! Public signature keys from JWKs (RFC 7517), and the signature check with them.
//!
//! A key is read with the rules jwt-simple applies in its own `from_jwk` (the origin
//! issues with jwt-simple; edges must accept exactly the keys it would): the key type and
//! curve must be the algorithm's; no private, symmetric or foreign key material; every
//! public member present; `alg`, `use` and `key_ops`, when present, must fit a public
//! verification key; no member twice; fixed-size values in canonical base64url; RSA
//! moduli of 2048–4096 bits, odd, with exponent 65537.
//!
//! Verification uses the RustCrypto primitives jwt-simple's pure-Rust build is made of
//! (`ed25519-compact`, `p256`, `rsa`, `hmac`), directly: the JOSE rules around them (key
//! choice, algorithm pinning, claims) are the engine's own, in [`crate::jwt`], for every
//! host. Reading keys here rather than through jwt-simple keeps its error machinery
//! (anyhow with backtraces) out of the WebAssembly builds.

use std::collections::HashSet;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use sha2::{Digest, Sha256};

/// Longest JWK accepted (jwt-simple's bound).
pub const MAX_JWK_BYTES: usize = 8192;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits.
pub const MAX_RSA_BITS: usize = 4096;

/// Signature algorithms Gatehouse verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// Ed25519 (`EdDSA`, also written `Ed25519`).
    EdDSA,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// HMAC-SHA256, only with an edge-local secret.
    HS256,
}

impl Alg {
    /// Parse a JOSE algorithm name (case-sensitive, as RFC 7518 requires).
    pub fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "EdDSA" => Alg::EdDSA,
            "ES256" => Alg::ES256,
            "RS256" => Alg::RS256,
            "PS256" => Alg::PS256,
            "HS256" => Alg::HS256,
            _ => return None,
        })
    }

    /// Whether a token header `alg` value names this algorithm.
    pub(crate) fn accepts(self, header_alg: &str) -> bool {
        match self {
            Alg::EdDSA => header_alg == "EdDSA" || header_alg == "Ed25519",
            _ => Alg::parse(header_alg) == Some(self),
        }
    }

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
            Alg::RS256 => "RS256",
            Alg::PS256 => "PS256",
            Alg::HS256 => "HS256",
        }
    }
}

/// A key ready to verify with, parsed once when the policy is loaded.
pub(crate) enum Material {
    Ed(ed25519_compact::PublicKey),
    Es(p256::ecdsa::VerifyingKey),
    Rs(rsa::pkcs1v15::VerifyingKey<Sha256>),
    Ps(rsa::pss::VerifyingKey<Sha256>),
    /// The HMAC secret (edge-local, never from a bundle).
    Hs(Vec<u8>),
}

impl Material {
    /// Whether `signature` is valid for `message` (the JWS signing input).
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        use rsa::signature::Verifier as _;
        match self {
            Material::Ed(k) => {
                ed25519_compact::Signature::from_slice(signature).is_ok_and(|s| k.verify(message, &s).is_ok())
            }
            Material::Es(k) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify_prehash(&Sha256::digest(message), &s).is_ok()),
            Material::Rs(k) => {
                rsa::pkcs1v15::Signature::try_from(signature).is_ok_and(|s| k.verify(message, &s).is_ok())
            }
            Material::Ps(k) => rsa::pss::Signature::try_from(signature).is_ok_and(|s| k.verify(message, &s).is_ok()),
            Material::Hs(secret) => {
                use hmac::Mac as _;
                // Any key length is valid for HMAC; `verify_slice` compares in constant time.
                let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(secret) else { return false };
                mac.update(message);
                mac.verify_slice(signature).is_ok()
            }
        }
    }
}

/// Why a JWK is not a usable public verification key for its algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwkError(&'static str);

impl fmt::Display for JwkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The members of a JWK that the rules look at. Material values are borrowed (a value
/// with JSON escapes is refused, as jwt-simple refuses it).
#[derive(Default)]
struct Members<'a> {
    names: HashSet<String>,
    kty: Option<String>,
    crv: Option<String>,
    alg: Option<String>,
    key_use: Option<String>,
    key_ops: Option<Vec<String>>,
    x: Option<&'a str>,
    y: Option<&'a str>,
    n: Option<&'a str>,
    e: Option<&'a str>,
}

/// Members that carry key material, of any key type.
const MATERIAL_MEMBERS: [&str; 15] =
    ["crv", "x", "y", "d", "n", "e", "p", "q", "dp", "dq", "qi", "oth", "k", "pub", "priv"];

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JWK object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut m = Members::default();
                while let Some(name) = map.next_key::<String>()? {
                    match name.as_str() {
                        "kty" => m.kty = Some(map.next_value()?),
                        "crv" => m.crv = Some(map.next_value()?),
                        "alg" => m.alg = Some(map.next_value()?),
                        "use" => m.key_use = Some(map.next_value()?),
                        "key_ops" => m.key_ops = Some(map.next_value()?),
                        "x" => m.x = Some(map.next_value()?),
                        "y" => m.y = Some(map.next_value()?),
                        "n" => m.n = Some(map.next_value()?),
                        "e" => m.e = Some(map.next_value()?),
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                    if !m.names.insert(name) {
                        return Err(de::Error::custom("duplicate JWK member"));
                    }
                }
                Ok(m)
            }
        }
        d.deserialize_map(V)
    }
}

/// Decode `b64`, which must be the canonical unpadded base64url of exactly `len` bytes.
fn decode_fixed(b64: &str, len: usize) -> Option<Vec<u8>> {
    if b64.len() != (len * 4).div_ceil(3) {
        return None;
    }
    URL_SAFE_NO_PAD.decode(b64).ok().filter(|v| v.len() == len)
}

/// An RSA modulus: big-endian without leading zeros, except the one sign byte Java's
/// `BigInteger` adds before a set top bit (as jwt-simple accepts).
fn rsa_modulus(b64: &str) -> Result<Vec<u8>, JwkError> {
    const MAX_BYTES: usize = MAX_RSA_BITS / 8 + 1;
    if b64.len() > (MAX_BYTES * 4).div_ceil(3) {
        return Err(JwkError("RSA modulus longer than 4096 bits"));
    }
    let mut n = URL_SAFE_NO_PAD.decode(b64).map_err(|_| JwkError("RSA modulus is not canonical base64url"))?;
    if let [0, top, ..] = n.as_slice() {
        if top & 0x80 != 0 {
            n.remove(0);
        }
    }
    match n.first() {
        Some(&top) if top != 0 => {}
        _ => return Err(JwkError("RSA modulus has leading zeros")),
    }
    let bits = (n.len() - 1) * 8 + (8 - n[0].leading_zeros() as usize);
    if bits < MIN_RSA_BITS {
        return Err(JwkError("weak key: RSA modulus shorter than 2048 bits"));
    }
    if bits > MAX_RSA_BITS {
        return Err(JwkError("RSA modulus longer than 4096 bits"));
    }
    if n[n.len() - 1] & 1 == 0 {
        return Err(JwkError("RSA modulus is even"));
    }
    Ok(n)
}

/// The key type, curve, public members and accepted `alg` values of an algorithm.
struct Descriptor {
    kty: &'static str,
    crv: Option<&'static str>,
    public: &'static [&'static str],
    algs: &'static [&'static str],
}

fn descriptor(alg: Alg) -> Option<Descriptor> {
    Some(match alg {
        Alg::EdDSA => {
            Descriptor { kty: "OKP", crv: Some("Ed25519"), public: &["crv", "x"], algs: &["EdDSA", "Ed25519"] }
        }
        Alg::ES256 => Descriptor { kty: "EC", crv: Some("P-256"), public: &["crv", "x", "y"], algs: &["ES256"] },
        Alg::RS256 => Descriptor { kty: "RSA", crv: None, public: &["n", "e"], algs: &["RS256"] },
        Alg::PS256 => Descriptor { kty: "RSA", crv: None, public: &["n", "e"], algs: &["PS256"] },
        Alg::HS256 => return None,
    })
}

/// Read the JWK `json` as a public key for `alg`: the primitive's key and the raw
/// encoding a [`crate::jwt::SignatureVerifier`] takes (EdDSA the 32 bytes, ES256 the
/// uncompressed point, RSA `len(n)` as 4 big-endian bytes, `n`, `e`).
pub(crate) fn public_key(json: &str, alg: Alg) -> Result<(Material, Vec<u8>), JwkError> {
    let invalid = JwkError("not a valid public key for its algorithm");
    let d = descriptor(alg).ok_or(JwkError("HS256 keys come from the edge secrets, never from a JWKS"))?;
    if json.len() > MAX_JWK_BYTES {
        return Err(JwkError("JWK longer than 8192 bytes"));
    }
    let m: Members<'_> = serde_json::from_slice(json.as_bytes()).map_err(|_| invalid.clone())?;
    if m.kty.as_deref() != Some(d.kty) || m.crv.as_deref() != d.crv {
        return Err(invalid);
    }
    for name in &m.names {
        if MATERIAL_MEMBERS.contains(&name.as_str()) && !d.public.contains(&name.as_str()) {
            return Err(JwkError("JWK carries private or foreign key material"));
        }
    }
    if !d.public.iter().all(|p| m.names.contains(*p)) {
        return Err(invalid);
    }
    if m.alg.as_deref().is_some_and(|a| !d.algs.contains(&a)) {
        return Err(JwkError("JWK `alg` does not fit the key"));
    }
    if m.key_use.as_deref().is_some_and(|u| u != "sig") {
        return Err(JwkError("JWK `use` is not `sig`"));
    }
    if let Some(ops) = &m.key_ops {
        let mut seen = HashSet::new();
        if !ops.iter().all(|op| op == "verify" && seen.insert(op.as_str())) {
            return Err(JwkError("JWK `key_ops` allows more than `verify`"));
        }
    }
    match alg {
        Alg::EdDSA => {
            let raw = m.x.and_then(|x| decode_fixed(x, 32)).ok_or(invalid.clone())?;
            let k = ed25519_compact::PublicKey::from_slice(&raw).map_err(|_| invalid.clone())?;
            k.validate().map_err(|_| invalid)?;
            Ok((Material::Ed(k), raw))
        }
        Alg::ES256 => {
            let (Some(x), Some(y)) = (m.x.and_then(|x| decode_fixed(x, 32)), m.y.and_then(|y| decode_fixed(y, 32)))
            else {
                return Err(invalid);
            };
            let raw = [&[0x04][..], &x, &y].concat();
            let k = p256::ecdsa::VerifyingKey::from_sec1_bytes(&raw).map_err(|_| invalid)?;
            Ok((Material::Es(k), raw))
        }
        Alg::RS256 | Alg::PS256 => {
            let n = rsa_modulus(m.n.unwrap_or_default())?;
            if m.e != Some("AQAB") {
                return Err(JwkError("RSA exponent is not 65537"));
            }
            let e = [1u8, 0, 1];
            let key = rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(&n), rsa::BigUint::from_bytes_be(&e))
                .map_err(|_| invalid)?;
            let mut raw = Vec::with_capacity(4 + n.len() + e.len());
            raw.extend_from_slice(&(n.len() as u32).to_be_bytes());
            raw.extend_from_slice(&n);
            raw.extend_from_slice(&e);
            let material = if alg == Alg::RS256 {
                Material::Rs(rsa::pkcs1v15::VerifyingKey::new(key))
            } else {
                // RFC 7518 §3.5: the salt is as long as the hash.
                Material::Ps(rsa::pss::VerifyingKey::new_with_salt_len(key, 32))
            };
            Ok((material, raw))
        }
        Alg::HS256 => unreachable!("no descriptor"),
    }
}

#[cfg(test)]
mod tests {
    use jwt_simple::prelude::*;

    use super::*;

    fn set(jwk: &str, member: &str, value: serde_json::Value) -> String {
        let mut v: serde_json::Value = serde_json::from_str(jwk).unwrap();
        v[member] = value;
        v.to_string()
    }

    /// The test RSA key (generating one takes seconds in a debug build).
    const RSA_PEM: &str = include_str!("../tests/keys/rsa2048.pem");

    fn rsa() -> RS256KeyPair {
        RS256KeyPair::from_pem(RSA_PEM).unwrap()
    }

    fn remove(jwk: &str, member: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(jwk).unwrap();
        v.as_object_mut().unwrap().remove(member);
        v.to_string()
    }

    /// Keys jwt-simple exports are read, and give the same raw key jwt-simple holds.
    #[test]
    fn reads_what_jwt_simple_writes() {
        let ed = Ed25519KeyPair::generate();
        let (_, raw) = public_key(&ed.public_key().to_jwk(), Alg::EdDSA).unwrap();
        assert_eq!(raw, ed.public_key().to_bytes());
        let es = ES256KeyPair::generate();
        let (_, raw) = public_key(&es.public_key().to_jwk(), Alg::ES256).unwrap();
        assert_eq!(raw, es.public_key().public_key().to_bytes_uncompressed());
        let rs = rsa();
        let jwk = rs.public_key().to_jwk();
        let (_, raw) = public_key(&jwk, Alg::RS256).unwrap();
        assert_eq!(&raw[4..], [rs.public_key().to_components().n, vec![1, 0, 1]].concat());
        let ps = set(&jwk, "alg", "PS256".into());
        assert!(public_key(&ps, Alg::PS256).is_ok());
    }

    /// Signatures made by jwt-simple verify; altered ones do not.
    #[test]
    fn verifies_jwt_simple_signatures() {
        fn check(material: Material, token: &str) {
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            assert!(material.verify(input.as_bytes(), &sig));
            let mut bad = sig.clone();
            bad[5] ^= 1;
            assert!(!material.verify(input.as_bytes(), &bad));
            assert!(!material.verify(format!("{input}x").as_bytes(), &sig));
            assert!(!material.verify(input.as_bytes(), &sig[..sig.len() - 1]));
            assert!(!material.verify(input.as_bytes(), &[]));
        }
        let claims = || Claims::create(Duration::from_mins(5));
        let ed = Ed25519KeyPair::generate();
        check(public_key(&ed.public_key().to_jwk(), Alg::EdDSA).unwrap().0, &ed.sign(claims()).unwrap());
        let es = ES256KeyPair::generate();
        check(public_key(&es.public_key().to_jwk(), Alg::ES256).unwrap().0, &es.sign(claims()).unwrap());
        let rs = rsa();
        check(public_key(&rs.public_key().to_jwk(), Alg::RS256).unwrap().0, &rs.sign(claims()).unwrap());
        let ps = PS256KeyPair::from_pem(RSA_PEM).unwrap();
        check(public_key(&ps.public_key().to_jwk(), Alg::PS256).unwrap().0, &ps.sign(claims()).unwrap());
        // A PKCS#1 v1.5 signature is not a PSS one under the same key, and back.
        let rs_as_ps = set(&rs.public_key().to_jwk(), "alg", "PS256".into());
        let t = rs.sign(claims()).unwrap();
        let (input, sig) = t.rsplit_once('.').unwrap();
        let m = public_key(&rs_as_ps, Alg::PS256).unwrap().0;
        assert!(!m.verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap()));
        let hs = HS256Key::generate();
        check(Material::Hs(hs.to_bytes()), &hs.authenticate(claims()).unwrap());
    }

    /// The attack table of key parsing: each is refused, as jwt-simple refuses it.
    #[test]
    fn refuses_bad_keys() {
        let ed = Ed25519KeyPair::generate().public_key().to_jwk();
        let es = ES256KeyPair::generate().public_key().to_jwk();
        let rs = rsa().public_key().to_jwk();
        let x = serde_json::from_str::<serde_json::Value>(&es).unwrap()["x"].as_str().unwrap().to_string();
        let cases: Vec<(&str, String, Alg)> = vec![
            ("wrong kty", set(&ed, "kty", "EC".into()), Alg::EdDSA),
            ("wrong curve", set(&es, "crv", "P-384".into()), Alg::ES256),
            ("curve on RSA", set(&rs, "crv", "P-256".into()), Alg::RS256),
            ("EC key as EdDSA", es.clone(), Alg::EdDSA),
            ("private member", set(&es, "d", x.clone().into()), Alg::ES256),
            ("foreign member", set(&ed, "y", x.clone().into()), Alg::EdDSA),
            ("symmetric member", set(&rs, "k", "AAAA".into()), Alg::RS256),
            ("missing y", remove(&es, "y"), Alg::ES256),
            ("missing e", remove(&rs, "e"), Alg::RS256),
            ("other alg", set(&es, "alg", "ES384".into()), Alg::ES256),
            ("enc use", set(&ed, "use", "enc".into()), Alg::EdDSA),
            ("sign op", set(&ed, "key_ops", serde_json::json!(["verify", "sign"])), Alg::EdDSA),
            ("repeated op", set(&ed, "key_ops", serde_json::json!(["verify", "verify"])), Alg::EdDSA),
            ("padded x", set(&ed, "x", format!("{x}=").into()), Alg::EdDSA),
            ("short x", set(&es, "x", x[..42].into()), Alg::ES256),
            ("std alphabet", set(&es, "x", format!("+{}", &x[1..]).into()), Alg::ES256),
            ("x not a string", set(&es, "x", 5.into()), Alg::ES256),
            (
                "escaped x",
                es.replacen(&format!("\"x\":\"{}", &x[..1]), &format!("\"x\":\"\\u{:04x}", x.as_bytes()[0]), 1),
                Alg::ES256,
            ),
            ("point off the curve", set(&es, "y", x.clone().into()), Alg::ES256),
            ("exponent 3", set(&rs, "e", "Aw".into()), Alg::RS256),
            ("1024-bit modulus", set(&rs, "n", URL_SAFE_NO_PAD.encode([0xc5u8; 128]).into()), Alg::RS256),
            ("8192-bit modulus", set(&rs, "n", URL_SAFE_NO_PAD.encode([0xc5u8; 1024]).into()), Alg::RS256),
            ("even modulus", set(&rs, "n", URL_SAFE_NO_PAD.encode([0xc4u8; 256]).into()), Alg::RS256),
            (
                "zero-padded modulus",
                set(&rs, "n", URL_SAFE_NO_PAD.encode([&[0u8, 0x45][..], &[0xc5; 255]].concat()).into()),
                Alg::RS256,
            ),
            ("duplicate member", ed.replacen('{', &format!("{{\"x\":\"{x}\","), 1), Alg::EdDSA),
            ("duplicate unknown member", ed.replacen('{', "{\"z\":1,\"z\":2,", 1), Alg::EdDSA),
            ("not an object", "[1]".into(), Alg::EdDSA),
            ("too long", set(&ed, "pad", "a".repeat(9000).into()), Alg::EdDSA),
        ];
        for (name, jwk, alg) in cases {
            assert!(public_key(&jwk, alg).is_err(), "{name} was accepted: {jwk}");
            // jwt-simple agrees on every case.
            let js = match alg {
                Alg::EdDSA => Ed25519PublicKey::from_jwk(&jwk).is_ok(),
                Alg::ES256 => ES256PublicKey::from_jwk(&jwk).is_ok(),
                _ => RS256PublicKey::from_jwk(&jwk).is_ok(),
            };
            assert!(!js, "{name}: jwt-simple accepts it");
        }
        // The sign byte before a set top bit is accepted.
        let n = serde_json::from_str::<serde_json::Value>(&rs).unwrap()["n"].as_str().unwrap().to_string();
        let signed = [&[0u8][..], &URL_SAFE_NO_PAD.decode(&n).unwrap()].concat();
        assert!(public_key(&set(&rs, "n", URL_SAFE_NO_PAD.encode(signed).into()), Alg::RS256).is_ok());
        // Unknown non-material members are ignored; `use: sig` and `key_ops: [verify]` fit.
        let extra =
            set(&set(&set(&ed, "use", "sig".into()), "key_ops", serde_json::json!(["verify"])), "x5t", "t".into());
        assert!(public_key(&extra, Alg::EdDSA).is_ok());
        assert!(public_key(&set(&ed, "alg", "Ed25519".into()), Alg::EdDSA).is_ok());
    }
}
