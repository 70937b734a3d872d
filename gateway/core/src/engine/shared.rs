//! The engine's side of a verified-token cache kept outside it (the sealed key-value
//! store of [`crate::sealed`], for hosts whose instances live for one request): which
//! token a request presents, seeding the in-memory cache from a sealed entry, and the
//! entry to store after a token was verified.

use std::sync::Arc;

use super::{Credential, Engine, State};
use crate::identity::CredentialKind;
use crate::request::RequestHead;
use crate::sealed::{Sealer, TokenEntry};

impl Engine {
    /// The JWT `req` presents (bearer, else the session cookie), read as
    /// [`Engine::decide`] reads it; `None` for an API key, no credential, a malformed one
    /// or a public route.
    pub fn presented_token<'r>(&self, req: &RequestHead<'r>) -> Option<&'r str> {
        let mut st = State::default();
        match self.credential_of(req, &mut st).ok()? {
            Credential::Bearer(t) | Credential::Session(t) => Some(t),
            _ => None,
        }
    }

    /// Seed the verified-token cache with the identity `stored` (a sealed entry at
    /// `entry.key`) holds for `token`, when `sealer` opens it at `now` (Unix seconds).
    /// Returns whether it did. The token then counts as verified until the entry's end;
    /// revocations and disabled users are still checked by every decision.
    pub fn remember_sealed(&self, sealer: &Sealer, entry: &TokenEntry, token: &str, stored: &[u8], now: u64) -> bool {
        match sealer.open_token(entry, stored, now, self.identity_header_prefix()) {
            Some((id, until)) if matches!(id.kind, CredentialKind::Jwt | CredentialKind::Session) => {
                self.cache.insert(token, Arc::new(id), until, now);
                true
            }
            _ => false,
        }
    }

    /// The sealed entry for `token` when this engine verified it (it is in the
    /// verified-token cache at `now`), to store at `entry.key`.
    pub fn seal_verified(&self, sealer: &Sealer, entry: &TokenEntry, token: &str, now: u64) -> Option<Vec<u8>> {
        let (id, until) = self.cache.get_until(token, now)?;
        Some(sealer.seal_token(entry, &id, until))
    }
}
