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

/// The sealed form of an identity: fields in a fixed order, strings and lists with
/// their lengths (little-endian `u32`), options with a presence byte, numbers as
/// little-endian `u64`. Written only by [`Sealer::seal_token`] and read only under its
/// MAC; a hand-written form because a serde format would add tens of KB to the Spin
/// component (budget 500 KB).
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn str(&mut self, s: &str) {
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn list(&mut self, l: &[String]) {
        self.0.extend_from_slice(&(l.len() as u32).to_le_bytes());
        l.iter().for_each(|s| self.str(s));
    }
    fn opt_str(&mut self, s: &Option<String>) {
        self.0.push(u8::from(s.is_some()));
        if let Some(s) = s {
            self.str(s);
        }
    }
    fn opt_list(&mut self, l: &Option<Vec<String>>) {
        self.0.push(u8::from(l.is_some()));
        if let Some(l) = l {
            self.list(l);
        }
    }
    fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }
    fn opt_u64(&mut self, n: Option<u64>) {
        self.0.push(u8::from(n.is_some()));
        if let Some(n) = n {
            self.u64(n);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn flag(&mut self) -> Option<bool> {
        match self.take(1)? {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn list(&mut self) -> Option<Vec<String>> {
        let n = self.u32()?;
        // Every string takes at least its 4 length bytes: no allocation beyond the input.
        if n > self.0.len() / 4 {
            return None;
        }
        (0..n).map(|_| self.str()).collect()
    }
    fn opt_str(&mut self) -> Option<Option<String>> {
        Some(if self.flag()? { Some(self.str()?) } else { None })
    }
    fn opt_list(&mut self) -> Option<Option<Vec<String>>> {
        Some(if self.flag()? { Some(self.list()?) } else { None })
    }
    fn opt_u64(&mut self) -> Option<Option<u64>> {
        Some(if self.flag()? { Some(self.u64()?) } else { None })
    }
}

fn write_identity(w: &mut Writer, id: &Identity, valid_until: u64) {
    w.str(id.kind.as_str());
    w.str(&id.subject);
    w.str(&id.org);
    w.list(&id.roles);
    w.opt_list(&id.scopes);
    w.list(&id.teams);
    w.list(&id.amr);
    w.opt_str(&id.session_id);
    w.opt_str(&id.credential_id);
    w.opt_u64(id.expires_at);
    w.opt_u64(id.auth_time);
    w.opt_str(&id.acr);
    w.opt_str(&id.actor);
    w.u64(valid_until);
}

fn read_identity(bytes: &[u8], prefix: &str) -> Option<(Identity, u64)> {
    let mut r = Reader(bytes);
    let kind = CredentialKind::parse(&r.str()?)?;
    let (subject, org, roles, scopes, teams, amr) =
        (r.str()?, r.str()?, r.list()?, r.opt_list()?, r.list()?, r.list()?);
    let (session_id, credential_id, expires_at) = (r.opt_str()?, r.opt_str()?, r.opt_u64()?);
    let (auth_time, acr, actor, valid_until) = (r.opt_u64()?, r.opt_str()?, r.opt_str()?, r.u64()?);
    if !r.0.is_empty() {
        return None;
    }
    let id =
        Identity::new(kind, subject, org, roles, scopes, teams, amr, session_id, credential_id, expires_at, prefix)
            .with_authentication(auth_time, acr)
            .with_actor(actor);
    Some((id, valid_until))
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
        let mut w = Writer(entry.tag.to_vec());
        write_identity(&mut w, id, valid_until);
        let mut out = w.0;
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
        let (id, valid_until) = read_identity(&content[TAG..], prefix)?;
        (now <= valid_until).then_some((id, valid_until))
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
