//! The verified-token cache: SHA-256 of the token → the identity it proved, until the
//! token expires. Bounded in entries; one cache belongs to one loaded policy, so a new
//! bundle (new keys, new revocations) starts with an empty cache.
//!
//! Revocation lists are checked on every request, cached or not.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::identity::Identity;

/// Hash of a token, the cache key.
pub type TokenHash = [u8; 32];

/// Hash a token.
pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Default)]
struct FirstWord(u64);

impl Hasher for FirstWord {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Keys are SHA-256 outputs: any 8 bytes are uniformly distributed.
        if bytes.len() >= 8 {
            self.0 = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
        } else {
            for b in bytes {
                self.0 = self.0.rotate_left(8) ^ *b as u64;
            }
        }
    }
}

type Map = HashMap<TokenHash, (u64, Arc<Identity>), BuildHasherDefault<FirstWord>>;

const SHARDS: usize = 16;

/// Sharded, bounded cache of verified tokens.
pub struct TokenCache {
    shards: Vec<Mutex<Map>>,
    per_shard: usize,
}

impl TokenCache {
    /// A cache of at most `capacity` entries (0 disables caching).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Map::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    fn shard(&self, h: &TokenHash) -> &Mutex<Map> {
        &self.shards[h[31] as usize % SHARDS]
    }

    /// The identity for `h`, if cached and still valid at `now` (Unix seconds).
    pub fn get(&self, h: &TokenHash, now: u64) -> Option<Arc<Identity>> {
        if self.per_shard == 0 {
            return None;
        }
        let mut m = self.shard(h).lock().unwrap_or_else(|p| p.into_inner());
        match m.get(h) {
            Some((valid_until, id)) if now <= *valid_until => Some(Arc::clone(id)),
            Some(_) => {
                m.remove(h);
                None
            }
            None => None,
        }
    }

    /// Remember `h` → `id` until `valid_until` (Unix seconds).
    pub fn insert(&self, h: TokenHash, id: Arc<Identity>, valid_until: u64, now: u64) {
        if self.per_shard == 0 {
            return;
        }
        let mut m = self.shard(&h).lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= self.per_shard {
            m.retain(|_, (until, _)| *until >= now);
            if m.len() >= self.per_shard {
                // Still full of live tokens: drop an arbitrary quarter.
                let drop = (m.len() / 4).max(1);
                let victims: Vec<TokenHash> = m.keys().take(drop).copied().collect();
                for v in victims {
                    m.remove(&v);
                }
            }
        }
        m.insert(h, (valid_until, id));
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|m| m.len()).unwrap_or(0)).sum()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::CredentialKind;

    fn id() -> Arc<Identity> {
        Arc::new(Identity::new(
            CredentialKind::Jwt,
            "s".into(),
            "o".into(),
            vec![],
            None,
            vec![],
            vec![],
            None,
            None,
            Some(10),
            "x-",
        ))
    }

    #[test]
    fn expiry_and_bound() {
        let c = TokenCache::new(64);
        let h = token_hash("a");
        c.insert(h, id(), 10, 0);
        assert!(c.get(&h, 10).is_some());
        assert!(c.get(&h, 11).is_none());
        for i in 0..10_000 {
            c.insert(token_hash(&i.to_string()), id(), 100, 0);
        }
        assert!(c.len() <= 64, "{}", c.len());
        let off = TokenCache::new(0);
        off.insert(h, id(), 10, 0);
        assert!(off.get(&h, 0).is_none());
    }
}
