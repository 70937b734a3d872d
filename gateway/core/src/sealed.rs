//! Sealed entries for a key-value store shared by short-lived instances (Spin starts a
//! fresh instance for every request, so nothing the engine learns survives in memory):
//! that a bundle's signature was verified, and which identity a token proved.
//!
//! Every entry is sealed with HMAC-SHA256 under a key only the gateway holds (a secret
//! variable, at least [`MIN_KEY_BYTES`] bytes), so whoever can write the store but not
//! read that key cannot forge one:
//!
//! - the bundle entry ([`BUNDLE_KEY`]) is the MAC of the pinned public key and the
//!   bundle's exact bytes; with it, [`Sealer::open_bundle`] skips the Ed25519 check of
//!   those bytes, never anything else (format, key id, expiry and the policy's validation
//!   still run);
//! - a token entry lives in one of a fixed number of slots ([`TOKEN_SLOTS`]: the store
//!   stays bounded whatever tokens arrive) and holds a tag of the token and of the bundle
//!   it was verified under, the identity and the time it stays valid, all under the MAC.
//!   A different token, a different bundle (new keys or revocations), a changed entry or
//!   an expired one is a miss, and the token is verified again.
//!
//! A store writer without the key can delete or garble entries (the gateway then does
//! the full work again) and replay an entry into its own slot (the same token under the
//! same bundle: the identity it proved anyway). Revocations and disabled users are
//! checked on every request, cached or not, as for the in-memory cache.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::bundle::{BundleBody, BundleError};
use crate::identity::{CredentialKind, Identity};

type HmacSha256 = Hmac<Sha256>;

/// Shortest sealing key accepted.
pub const MIN_KEY_BYTES: usize = 32;

/// Store key of the bundle entry.
pub const BUNDLE_KEY: &str = "gatehouse:bundle-verified";

/// Slots for token entries: the store holds at most this many.
pub const TOKEN_SLOTS: u32 = 4096;

/// Largest entry [`Sealer::open_token`] reads; anything longer is a miss.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;

const TAG: usize = 32;

/// The sealing key is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the cache sealing key must be at least 32 bytes")]
pub struct KeyTooShort;

/// Seals and opens store entries under one key.
#[derive(Clone)]
pub struct Sealer {
    mac: HmacSha256,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

/// What a token entry's slot and tag are derived from: the token and the bundle
/// ([`OpenedBundle::tag`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// Store key of the token's slot.
    pub key: String,
    tag: [u8; TAG],
}

/// A bundle opened through the sealed store.
pub struct OpenedBundle {
    /// The verified body.
    pub body: BundleBody,
    /// MAC of the pinned key and the bundle's bytes: binds token entries to this bundle.
    pub tag: [u8; TAG],
    /// The entry to write at [`BUNDLE_KEY`] when the store did not hold it (the
    /// signature was verified now).
    pub store: Option<Vec<u8>>,
}

/// The sealed form of an identity.
#[derive(Serialize, Deserialize)]
struct Sealed {
    kind: String,
    subject: String,
    org: String,
    roles: Vec<String>,
    scopes: Option<Vec<String>>,
    teams: Vec<String>,
    amr: Vec<String>,
    session_id: Option<String>,
    credential_id: Option<String>,
    expires_at: Option<u64>,
    auth_time: Option<u64>,
    acr: Option<String>,
    actor: Option<String>,
    valid_until: u64,
}

impl Sealer {
    /// A sealer keyed with `key` (at least [`MIN_KEY_BYTES`] bytes).
    pub fn new(key: &[u8]) -> Result<Sealer, KeyTooShort> {
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyTooShort);
        }
        let mac = HmacSha256::new_from_slice(key).map_err(|_| KeyTooShort)?;
        Ok(Sealer { mac })
    }

    /// MAC of `parts`, each prefixed with its length (no two part lists collide).
    fn tag(&self, domain: u8, parts: &[&[u8]]) -> [u8; TAG] {
        let mut m = self.mac.clone();
        m.update(&[domain]);
        for p in parts {
            m.update(&(p.len() as u64).to_le_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// Verify and decode `bytes` against `pinned` at `now` as [`crate::bundle::open`]
    /// does, but without the signature check when `stored` (the store's entry at
    /// [`BUNDLE_KEY`]) proves that these exact bytes passed it under this key before.
    pub fn open_bundle(
        &self,
        bytes: &[u8],
        pinned: &[u8; 32],
        now: u64,
        stored: Option<&[u8]>,
    ) -> Result<OpenedBundle, BundleError> {
        let tag = self.tag(b'b', &[pinned, bytes]);
        let known = stored.is_some_and(|s| same(s, &tag));
        let body = if known {
            crate::bundle::open_signature_known(bytes, pinned, now)?
        } else {
            crate::bundle::open(bytes, pinned, now)?
        };
        Ok(OpenedBundle { body, tag, store: (!known).then(|| tag.to_vec()) })
    }

    /// The slot and tag of `token` under the bundle tagged `bundle`.
    pub fn token_entry(&self, bundle: &[u8; TAG], token: &str) -> TokenEntry {
        let tag = self.tag(b't', &[bundle, token.as_bytes()]);
        let slot = u32::from_le_bytes([tag[0], tag[1], tag[2], tag[3]]) % TOKEN_SLOTS;
        TokenEntry { key: format!("gatehouse:token:{slot}"), tag }
    }

    /// The stored form of `id`, proved by the token of `entry` and valid until
    /// `valid_until` (Unix seconds).
    pub fn seal_token(&self, entry: &TokenEntry, id: &Identity, valid_until: u64) -> Vec<u8> {
        let sealed = Sealed {
            kind: id.kind.as_str().into(),
            subject: id.subject.clone(),
            org: id.org.clone(),
            roles: id.roles.clone(),
            scopes: id.scopes.clone(),
            teams: id.teams.clone(),
            amr: id.amr.clone(),
            session_id: id.session_id.clone(),
            credential_id: id.credential_id.clone(),
            expires_at: id.expires_at,
            auth_time: id.auth_time,
            acr: id.acr.clone(),
            actor: id.actor.clone(),
            valid_until,
        };
        let mut out = entry.tag.to_vec();
        // Serialising owned strings and lists cannot fail.
        out.extend_from_slice(&rmp_serde::to_vec(&sealed).unwrap_or_default());
        let mac = self.tag(b'v', &[entry.key.as_bytes(), &out]);
        out.extend_from_slice(&mac);
        out
    }

    /// The identity and its validity end in `stored` (the store's value at
    /// `entry.key`), if it was sealed under this key for exactly this token and bundle
    /// and is still valid at `now`; its upstream headers go under `prefix`.
    pub fn open_token(&self, entry: &TokenEntry, stored: &[u8], now: u64, prefix: &str) -> Option<(Identity, u64)> {
        if stored.len() < 2 * TAG || stored.len() > MAX_ENTRY_BYTES {
            return None;
        }
        let (content, mac) = stored.split_at(stored.len() - TAG);
        if !same(mac, &self.tag(b'v', &[entry.key.as_bytes(), content])) || !same(&content[..TAG], &entry.tag) {
            return None;
        }
        let s: Sealed = rmp_serde::from_slice(&content[TAG..]).ok()?;
        if now > s.valid_until {
            return None;
        }
        let id = Identity::new(
            CredentialKind::parse(&s.kind)?,
            s.subject,
            s.org,
            s.roles,
            s.scopes,
            s.teams,
            s.amr,
            s.session_id,
            s.credential_id,
            s.expires_at,
            prefix,
        )
        .with_authentication(s.auth_time, s.acr)
        .with_actor(s.actor);
        Some((id, s.valid_until))
    }
}

/// Constant-time equality.
fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
#[path = "sealed_tests.rs"]
mod tests;
