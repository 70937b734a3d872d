//! Native signature verification offered to filter components (and to the engine when it
//! runs natively): `ring`'s optimised EdDSA, P-256 and RSA. Only the primitive runs here;
//! the engine inside the component picks the key, pins the algorithm and checks claims.

use gatehouse_core::jwt::{Alg, SignatureVerifier};
use ring::signature as sig;

/// `ring`-backed [`SignatureVerifier`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RingSignatures;

impl SignatureVerifier for RingSignatures {
    fn verify(&self, alg: Alg, public_key: &[u8], message: &[u8], signature: &[u8]) -> Option<bool> {
        let ok = match alg {
            Alg::EdDSA => sig::UnparsedPublicKey::new(&sig::ED25519, public_key).verify(message, signature).is_ok(),
            Alg::ES256 => sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, public_key)
                .verify(message, signature)
                .is_ok(),
            Alg::RS256 | Alg::PS256 => {
                let (len, rest) = public_key.split_at_checked(4)?;
                let n_len = u32::from_be_bytes(len.try_into().ok()?) as usize;
                let (n, e) = rest.split_at_checked(n_len)?;
                let params =
                    if alg == Alg::RS256 { &sig::RSA_PKCS1_2048_8192_SHA256 } else { &sig::RSA_PSS_2048_8192_SHA256 };
                sig::RsaPublicKeyComponents { n, e }.verify(params, message, signature).is_ok()
            }
            Alg::HS256 => return None,
        };
        Some(ok)
    }
}
