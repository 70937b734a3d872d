//! Signed policy bundles.
//!
//! A bundle file is MessagePack of an [`Envelope`]: a magic string, the format version,
//! the id of the signing key, the body bytes and an Ed25519 signature over
//! `"gatehouse-bundle-v1\0" || body`. The body is MessagePack of [`BundleBody`]: format,
//! revision, region, `issued_at`, `expires_at` and the [`Policy`].
//!
//! Loading checks, in order: envelope shape, format version (newer formats are refused,
//! never guessed at), key id and signature against the pinned public key, then body
//! format, expiry, and policy validation. Any failure keeps the previous bundle in force
//! (that is the host's job) and reports a [`BundleError`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::policy::{Policy, PolicyIssue};

/// The bundle format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Magic string in every envelope.
pub const MAGIC: &str = "gatehouse-bundle";
const SIG_CONTEXT: &[u8] = b"gatehouse-bundle-v1\0";
/// Largest bundle accepted.
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;

/// The signed outer layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Always [`MAGIC`].
    pub magic: String,
    /// Format version of the body.
    pub format: u16,
    /// Id of the signing key (see [`key_id`]).
    pub key_id: String,
    /// MessagePack of [`BundleBody`].
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Ed25519 signature.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// The signed content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleBody {
    /// Format version (also in the envelope; both must agree).
    pub format: u16,
    /// Monotonic policy revision.
    pub revision: u64,
    /// Region the bundle was built for (empty when built from a file).
    pub region: String,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds; after this (plus the policy's grace) edges deny everything.
    pub expires_at: u64,
    /// The policy.
    pub policy: Policy,
}

/// Why a bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not a bundle at all.
    #[error("not a Gatehouse bundle: {0}")]
    Malformed(String),
    /// Larger than [`MAX_BUNDLE_BYTES`].
    #[error("bundle is larger than {MAX_BUNDLE_BYTES} bytes")]
    TooLarge,
    /// Written in a newer (or unknown) format.
    #[error("bundle format {found} is not supported (this build reads format {FORMAT_VERSION})")]
    UnsupportedFormat {
        /// The format found.
        found: u16,
    },
    /// Signed by a key other than the pinned one.
    #[error("bundle was signed by key {found}, but this edge pins key {pinned}")]
    WrongKey {
        /// Key id in the bundle.
        found: String,
        /// Pinned key id.
        pinned: String,
    },
    /// The signature does not verify: the bundle was altered.
    #[error("bundle signature does not verify (tampered or corrupted)")]
    BadSignature,
    /// Past `expires_at`.
    #[error("bundle expired at {expires_at} (now {now})")]
    Expired {
        /// Expiry, Unix seconds.
        expires_at: u64,
        /// The time of the check.
        now: u64,
    },
    /// Issued in the future: the origin's clock or the bundle is wrong.
    #[error("bundle issued at {issued_at}, after now ({now})")]
    NotYetValid {
        /// Issue time.
        issued_at: u64,
        /// The time of the check.
        now: u64,
    },
    /// The policy inside is invalid.
    #[error("bundle policy is invalid: {}", .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
    Policy(Vec<PolicyIssue>),
    /// Keys in the policy are unusable.
    #[error("bundle keys are unusable: {0}")]
    Keys(String),
}

/// Short id of a public key: hex of the first 8 bytes of its SHA-256.
pub fn key_id(public_key: &[u8; 32]) -> String {
    Sha256::digest(public_key)[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Sign `body` with the Ed25519 key pair `keypair` (64 bytes: seed || public key).
pub fn sign(body: &BundleBody, keypair: &[u8; 64]) -> Result<Vec<u8>, BundleError> {
    let kp =
        ed25519_compact::KeyPair::from_slice(keypair).map_err(|_| BundleError::Malformed("bad signing key".into()))?;
    let body_bytes = rmp_serde::to_vec_named(body).map_err(|e| BundleError::Malformed(e.to_string()))?;
    let mut msg = Vec::with_capacity(SIG_CONTEXT.len() + body_bytes.len());
    msg.extend_from_slice(SIG_CONTEXT);
    msg.extend_from_slice(&body_bytes);
    let sig = kp.sk.sign(&msg, None);
    let env = Envelope {
        magic: MAGIC.into(),
        format: body.format,
        key_id: key_id(&kp.pk),
        body: body_bytes,
        signature: sig.to_vec(),
    };
    rmp_serde::to_vec_named(&env).map_err(|e| BundleError::Malformed(e.to_string()))
}

/// Verify a bundle against the pinned public key at `now` (Unix seconds) and return its
/// body. The policy inside is validated too.
pub fn open(bytes: &[u8], pinned: &[u8; 32], now: u64) -> Result<BundleBody, BundleError> {
    within_time(open_unchecked_time(bytes, pinned)?, now)
}

/// Verify signature, format and policy, but not time (for `bundle inspect`).
pub fn open_unchecked_time(bytes: &[u8], pinned: &[u8; 32]) -> Result<BundleBody, BundleError> {
    read(bytes, pinned, true)
}

/// [`open`] for bytes whose signature under `pinned` was verified before (the sealed
/// store of [`crate::sealed`] remembers that): every check but the signature.
pub(crate) fn open_signature_known(bytes: &[u8], pinned: &[u8; 32], now: u64) -> Result<BundleBody, BundleError> {
    within_time(read(bytes, pinned, false)?, now)
}

fn within_time(body: BundleBody, now: u64) -> Result<BundleBody, BundleError> {
    if now > body.expires_at {
        return Err(BundleError::Expired { expires_at: body.expires_at, now });
    }
    // Five minutes of origin clock skew are tolerated.
    if body.issued_at > now + 300 {
        return Err(BundleError::NotYetValid { issued_at: body.issued_at, now });
    }
    Ok(body)
}

fn read(bytes: &[u8], pinned: &[u8; 32], check_signature: bool) -> Result<BundleBody, BundleError> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(BundleError::TooLarge);
    }
    let env: Envelope = crate::msgpack::from_slice(bytes).map_err(|e| BundleError::Malformed(e.to_string()))?;
    if env.magic != MAGIC {
        return Err(BundleError::Malformed("wrong magic".into()));
    }
    if env.format != FORMAT_VERSION {
        return Err(BundleError::UnsupportedFormat { found: env.format });
    }
    let pinned_id = key_id(pinned);
    if env.key_id != pinned_id {
        return Err(BundleError::WrongKey { found: env.key_id, pinned: pinned_id });
    }
    if check_signature {
        let pk = ed25519_compact::PublicKey::from_slice(pinned).map_err(|_| BundleError::BadSignature)?;
        let sig = ed25519_compact::Signature::from_slice(&env.signature).map_err(|_| BundleError::BadSignature)?;
        let mut msg = Vec::with_capacity(SIG_CONTEXT.len() + env.body.len());
        msg.extend_from_slice(SIG_CONTEXT);
        msg.extend_from_slice(&env.body);
        pk.verify(&msg, &sig).map_err(|_| BundleError::BadSignature)?;
    }
    let body: BundleBody = crate::msgpack::from_slice(&env.body).map_err(|e| BundleError::Malformed(e.to_string()))?;
    if body.format != env.format {
        return Err(BundleError::UnsupportedFormat { found: body.format });
    }
    body.policy.validate().map_err(BundleError::Policy)?;
    Ok(body)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The Ed25519 key pair of `seed` (seed || public key), for bundles in tests.
    pub(crate) fn kp(seed: u8) -> [u8; 64] {
        let k = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]));
        let mut out = [0u8; 64];
        out.copy_from_slice(&k[..]);
        out
    }
    /// The public key of [`kp`]`(seed)`.
    pub(crate) fn pk(seed: u8) -> [u8; 32] {
        kp(seed)[32..].try_into().unwrap()
    }
    fn body() -> BundleBody {
        BundleBody {
            format: FORMAT_VERSION,
            revision: 7,
            region: "eu".into(),
            issued_at: 1_000,
            expires_at: 2_000,
            policy: Policy::default(),
        }
    }

    #[test]
    fn round_trip() {
        let b = sign(&body(), &kp(1)).unwrap();
        assert_eq!(open(&b, &pk(1), 1_500).unwrap(), body());
    }

    #[test]
    fn refuses_wrong_key_expired_future_and_newer_format() {
        let b = sign(&body(), &kp(1)).unwrap();
        assert!(matches!(open(&b, &pk(2), 1_500), Err(BundleError::WrongKey { .. })));
        assert!(matches!(open(&b, &pk(1), 2_001), Err(BundleError::Expired { .. })));
        assert!(matches!(open(&b, &pk(1), 600), Err(BundleError::NotYetValid { .. })));
        let mut newer = body();
        newer.format = FORMAT_VERSION + 1;
        let b = sign(&newer, &kp(1)).unwrap();
        assert_eq!(open(&b, &pk(1), 1_500), Err(BundleError::UnsupportedFormat { found: FORMAT_VERSION + 1 }));
    }

    #[test]
    fn refuses_every_flipped_bit_region() {
        let b = sign(&body(), &kp(1)).unwrap();
        // Flip one bit at many positions: never accepted.
        for i in (0..b.len()).step_by(3) {
            let mut t = b.clone();
            t[i] ^= 0x01;
            assert!(open(&t, &pk(1), 1_500).is_err(), "flip at {i} accepted");
        }
        // Swap in another body under the original signature.
        let mut env: Envelope = rmp_serde::from_slice(&b).unwrap();
        let mut evil = body();
        evil.expires_at = u64::MAX;
        env.body = rmp_serde::to_vec_named(&evil).unwrap();
        let forged = rmp_serde::to_vec_named(&env).unwrap();
        assert_eq!(open(&forged, &pk(1), 1_500), Err(BundleError::BadSignature));
        assert!(matches!(open(b"garbage", &pk(1), 1_500), Err(BundleError::Malformed(_))));
        assert!(matches!(open(&[], &pk(1), 1_500), Err(BundleError::Malformed(_))));
    }
}
