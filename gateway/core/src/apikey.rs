//! API keys.
//!
//! Format: `gh_<prefix>_<secret>` where `prefix` is 12 lower-case letters or digits (public,
//! used for lookup and shown in listings) and `secret` is 43 base64url characters (32
//! random bytes). Example: `gh_k3x9p2m7q4ab_6Vd0...`.
//!
//! Edges never hold keys: a bundle carries `HMAC-SHA256(api_key_secret, whole key)` per
//! prefix, and the edge compares that hash in constant time.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::identity::{CredentialKind, Identity};
use crate::policy::Policy;
use crate::reason::ReasonCode;

/// The literal start of every key.
pub const KEY_TAG: &str = "gh_";
/// Length of the public prefix.
pub const PREFIX_LEN: usize = 12;
/// Length of the secret part (32 bytes, base64url without padding).
pub const SECRET_LEN: usize = 43;
/// Total key length.
pub const KEY_LEN: usize = KEY_TAG.len() + PREFIX_LEN + 1 + SECRET_LEN;

/// Whether `s` is a key's public prefix: [`PREFIX_LEN`] lower-case ASCII letters or digits.
pub fn valid_prefix(s: &str) -> bool {
    s.len() == PREFIX_LEN && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Whether a credential string looks like an API key (rather than a JWT).
pub fn looks_like_api_key(s: &str) -> bool {
    s.starts_with(KEY_TAG)
}

/// Split a key into its public prefix, checking the format strictly.
pub fn parse(key: &str) -> Result<&str, ReasonCode> {
    if key.len() != KEY_LEN || !key.starts_with(KEY_TAG) {
        return Err(ReasonCode::ApiKeyMalformed);
    }
    let rest = &key[KEY_TAG.len()..];
    let (prefix, secret) = rest.split_at(PREFIX_LEN);
    let secret = secret.strip_prefix('_').ok_or(ReasonCode::ApiKeyMalformed)?;
    if !valid_prefix(prefix) || URL_SAFE_NO_PAD.decode(secret).map(|b| b.len()) != Ok(32) {
        return Err(ReasonCode::ApiKeyMalformed);
    }
    Ok(prefix)
}

/// `HMAC-SHA256(secret, key)`: what bundles store for a key.
pub fn hash(secret: &[u8], key: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(key.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Hex form of [`hash`].
pub fn hash_hex(secret: &[u8], key: &str) -> String {
    hash(secret, key).iter().map(|b| format!("{b:02x}")).collect()
}

/// Make a key from 41 random bytes supplied by the caller (9 for the prefix, 32 for the
/// secret). Returns the key and its prefix.
pub fn generate(random: &[u8; 41]) -> (String, String) {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut prefix = String::with_capacity(PREFIX_LEN);
    let mut acc: u128 = 0;
    for b in &random[..9] {
        acc = (acc << 8) | *b as u128;
    }
    for _ in 0..PREFIX_LEN {
        prefix.push(ALPHABET[(acc % 36) as usize] as char);
        acc /= 36;
    }
    let secret = URL_SAFE_NO_PAD.encode(&random[9..]);
    (format!("{KEY_TAG}{prefix}_{secret}"), prefix)
}

struct Entry {
    org: String,
    hash: [u8; 32],
    subject: String,
    scopes: Vec<String>,
    roles: Vec<String>,
    expires_at: Option<u64>,
}

/// Every API key of a policy, by prefix.
pub struct ApiKeyTable {
    by_prefix: HashMap<String, Entry>,
    secret: Option<Vec<u8>>,
    header_prefix: String,
}

fn unhex(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0);
    }
    out
}

impl ApiKeyTable {
    /// Build from a validated policy and the edge's API-key secret.
    pub fn new(policy: &Policy, secret: Option<&[u8]>) -> ApiKeyTable {
        let mut by_prefix = HashMap::new();
        for (org, o) in &policy.orgs {
            for k in &o.api_keys {
                by_prefix.insert(
                    k.prefix.clone(),
                    Entry {
                        org: org.clone(),
                        hash: unhex(&k.hash),
                        subject: k.subject.clone(),
                        scopes: k.scopes.clone(),
                        roles: k.roles.clone(),
                        expires_at: k.expires_at,
                    },
                );
            }
        }
        ApiKeyTable {
            by_prefix,
            secret: secret.map(<[u8]>::to_vec),
            header_prefix: policy.settings.identity_header_prefix.clone(),
        }
    }

    /// Check `key` at `now` (Unix seconds).
    pub fn verify(&self, key: &str, now: u64) -> Result<Identity, ReasonCode> {
        let prefix = parse(key)?;
        let secret = self.secret.as_deref().ok_or(ReasonCode::ApiKeyUnverifiable)?;
        let presented = hash(secret, key);
        // Compare against a dummy when the prefix is unknown, so timing does not reveal it.
        let (entry, stored) = match self.by_prefix.get(prefix) {
            Some(e) => (Some(e), e.hash),
            None => (None, [0u8; 32]),
        };
        let equal: bool = presented.ct_eq(&stored).into();
        let entry = match (entry, equal) {
            (Some(e), true) => e,
            _ => return Err(ReasonCode::ApiKeyInvalid),
        };
        if entry.expires_at.is_some_and(|t| now >= t) {
            return Err(ReasonCode::ApiKeyExpired);
        }
        Ok(Identity::new(
            CredentialKind::ApiKey,
            entry.subject.clone(),
            entry.org.clone(),
            entry.roles.clone(),
            Some(entry.scopes.clone()),
            Vec::new(),
            Vec::new(),
            None,
            Some(prefix.to_string()),
            entry.expires_at,
            &self.header_prefix,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_parse_hash() {
        let (key, prefix) = generate(&[7u8; 41]);
        assert_eq!(key.len(), KEY_LEN);
        assert_eq!(parse(&key), Ok(prefix.as_str()));
        let h1 = hash_hex(b"0123456789abcdef0123456789abcdef", &key);
        let h2 = hash_hex(b"0123456789abcdef0123456789abcdeX", &key);
        assert_ne!(h1, h2);
        assert_eq!(h1.len(), 64);
        let (other, _) = generate(&[8u8; 41]);
        assert_ne!(key, other);
    }

    #[test]
    fn malformed_keys() {
        let (key, _) = generate(&[1u8; 41]);
        let cases = [
            String::new(),
            "gh_".into(),
            key[..key.len() - 1].to_string(),
            format!("{key}A"),
            key.replacen("gh_", "GH_", 1),
            key.replacen('_', "-", 2),
            format!("{}{}", &key[..KEY_LEN - 1], "="),
            key.to_uppercase(),
            format!("gh_ABCDEFGHIJKL_{}", &key[16..]),
        ];
        for c in cases {
            assert_eq!(parse(&c), Err(ReasonCode::ApiKeyMalformed), "{c}");
        }
    }
}
