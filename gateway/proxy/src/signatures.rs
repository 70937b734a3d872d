//! Native signature verification offered to filter components (and to the engine when it
//! runs natively): AWS-LC's optimised EdDSA, P-256 and RSA (`aws-lc-rs`, a ring-compatible
//! API; its P-256 verification is faster than ring's here). Only the primitive runs here;
//! the engine inside the component picks the key, pins the algorithm and checks claims.
//!
//! Keys arrive as raw bytes with every call; each key is parsed (and its point or
//! modulus validated) once, then kept in a small table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::signature::{self as sig, ParsedPublicKey};
use gatehouse_core::jwt::{Alg, SignatureVerifier};

/// Keys kept parsed (one bundle's issuer keys fit many times over).
const MAX_KEYS: usize = 256;

/// `aws-lc-rs`-backed [`SignatureVerifier`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeSignatures;

type Parsed = Mutex<HashMap<Vec<u8>, Vec<(Alg, Arc<ParsedPublicKey>)>>>;

/// The parsed keys, for the whole process.
fn parsed() -> &'static Parsed {
    static KEYS: OnceLock<Parsed> = OnceLock::new();
    KEYS.get_or_init(Parsed::default)
}

fn algorithm(alg: Alg) -> Option<&'static dyn sig::VerificationAlgorithm> {
    Some(match alg {
        Alg::EdDSA => &sig::ED25519,
        Alg::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Alg::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Alg::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Alg::HS256 => return None,
    })
}

impl NativeSignatures {
    fn key(&self, alg: Alg, public_key: &[u8]) -> Option<Arc<ParsedPublicKey>> {
        let mut keys = parsed().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = keys.get(public_key).and_then(|ks| ks.iter().find(|(a, _)| *a == alg)) {
            return Some(k.1.clone());
        }
        let der;
        let bytes = match alg {
            // RSA keys come as `len(n)`, `n`, `e`: AWS-LC takes the DER of RSAPublicKey.
            Alg::RS256 | Alg::PS256 => {
                let (len, rest) = public_key.split_at_checked(4)?;
                let n_len = u32::from_be_bytes(len.try_into().ok()?) as usize;
                let (n, e) = rest.split_at_checked(n_len)?;
                der = rsa_public_key_der(n, e);
                &der[..]
            }
            _ => public_key,
        };
        let parsed = Arc::new(ParsedPublicKey::new(algorithm(alg)?, bytes).ok()?);
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.entry(public_key.to_vec()).or_default().push((alg, parsed.clone()));
        Some(parsed)
    }
}

/// DER of `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn len(out: &mut Vec<u8>, n: usize) {
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let b = n.to_be_bytes();
            let skip = b.iter().take_while(|x| **x == 0).count();
            out.push(0x80 | (b.len() - skip) as u8);
            out.extend_from_slice(&b[skip..]);
        }
    }
    fn int(out: &mut Vec<u8>, v: &[u8]) {
        let v = &v[v.iter().take_while(|x| **x == 0).count().min(v.len().saturating_sub(1))..];
        let pad = v.first().is_some_and(|b| b & 0x80 != 0);
        out.push(0x02);
        len(out, v.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    int(&mut body, n);
    int(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.push(0x30);
    len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

impl SignatureVerifier for NativeSignatures {
    fn verify(&self, alg: Alg, public_key: &[u8], message: &[u8], signature: &[u8]) -> Option<bool> {
        algorithm(alg)?;
        match self.key(alg, public_key) {
            Some(k) => Some(k.verify_sig(message, signature).is_ok()),
            // A key the library refuses verifies nothing.
            None => Some(false),
        }
    }
}
