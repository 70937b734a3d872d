//! The verified-token cache: a token → the identity it proved, until the token expires.
//! Bounded in entries and in bytes; one cache belongs to one loaded policy, so a new
//! bundle (new keys, new revocations) starts with an empty cache.
//!
//! Entries hold the whole token and a hit needs the whole token to match (compared in
//! constant time), so a cache hit proves the request carries exactly a token that was
//! verified before. The table is indexed by a cheap hash of the token's tail (the
//! signature, random for every signed token): only verified tokens are ever inserted,
//! so nobody can crowd one slot, and no cryptographic digest runs per request (in a
//! WebAssembly filter, SHA-256 of the token was the largest cost of a cached request).
//!
//! Revocation lists are checked on every request, cached or not.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use crate::identity::Identity;

/// Bytes at the end of a token that index the table.
const TAIL: usize = 24;

/// Index of a token in the table: its length and the last bytes (of the signature).
fn slot(token: &[u8]) -> u64 {
    let tail = &token[token.len().saturating_sub(TAIL)..];
    // FNV-1a over the tail and the length: the input is already random for every token
    // the table holds; this only folds it into 64 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ token.len() as u64;
    for b in tail {
        h = (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[derive(Default)]
struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ *b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Entry {
    token: Box<[u8]>,
    valid_until: u64,
    identity: Arc<Identity>,
}

type Map = HashMap<u64, Vec<Entry>, BuildHasherDefault<SlotHasher>>;

struct Shard {
    map: Map,
    entries: usize,
    bytes: usize,
}

const SHARDS: usize = 16;

/// Average token bytes budgeted per entry: a cache of `n` entries holds at most
/// `n * BYTES_PER_ENTRY` bytes of tokens.
pub const BYTES_PER_ENTRY: usize = 1024;

/// Sharded, bounded cache of verified tokens.
pub struct TokenCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    bytes_per_shard: usize,
}

impl TokenCache {
    /// A cache of at most `capacity` entries and `capacity * BYTES_PER_ENTRY` bytes of
    /// tokens (0 disables caching).
    pub fn new(capacity: usize) -> TokenCache {
        let per_shard = capacity.div_ceil(SHARDS);
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard { map: Map::default(), entries: 0, bytes: 0 })).collect(),
            per_shard,
            bytes_per_shard: per_shard * BYTES_PER_ENTRY,
        }
    }

    fn shard(&self, slot: u64) -> &Mutex<Shard> {
        &self.shards[(slot >> 59) as usize % SHARDS]
    }

    /// The identity proved by `token`, if it was verified before and is still valid at
    /// `now` (Unix seconds).
    pub fn get(&self, token: &str, now: u64) -> Option<Arc<Identity>> {
        self.get_until(token, now).map(|(id, _)| id)
    }

    /// [`TokenCache::get`] with the end of the entry's validity (Unix seconds).
    pub fn get_until(&self, token: &str, now: u64) -> Option<(Arc<Identity>, u64)> {
        if self.per_shard == 0 {
            return None;
        }
        let token = token.as_bytes();
        let k = slot(token);
        let mut s = self.shard(k).lock().unwrap_or_else(|p| p.into_inner());
        let list = s.map.get_mut(&k)?;
        let i = list.iter().position(|e| same_bytes(&e.token, token))?;
        if now <= list[i].valid_until {
            return Some((Arc::clone(&list[i].identity), list[i].valid_until));
        }
        let gone = list.swap_remove(i);
        if list.is_empty() {
            s.map.remove(&k);
        }
        s.entries -= 1;
        s.bytes -= gone.token.len();
        None
    }

    /// Remember that `token` proved `id`, until `valid_until` (Unix seconds).
    pub fn insert(&self, token: &str, id: Arc<Identity>, valid_until: u64, now: u64) {
        if self.per_shard == 0 || token.len() > self.bytes_per_shard {
            return;
        }
        let token = token.as_bytes();
        let k = slot(token);
        let mut s = self.shard(k).lock().unwrap_or_else(|p| p.into_inner());
        let s = &mut *s;
        if s.entries >= self.per_shard || s.bytes + token.len() > self.bytes_per_shard {
            s.map.retain(|_, list| {
                list.retain(|e| e.valid_until >= now);
                !list.is_empty()
            });
            let mut keys: Vec<u64> = Vec::new();
            recount(s);
            if s.entries >= self.per_shard || s.bytes + token.len() > self.bytes_per_shard {
                // Still full of live tokens: drop an arbitrary quarter.
                keys.extend(s.map.keys().take((s.map.len() / 4).max(1)).copied());
                for k in keys {
                    s.map.remove(&k);
                }
                recount(s);
            }
        }
        let list = s.map.entry(k).or_default();
        if list.iter().any(|e| e.token.as_ref() == token) {
            return;
        }
        list.push(Entry { token: token.into(), valid_until, identity: id });
        s.entries += 1;
        s.bytes += token.len();
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|s| s.entries).unwrap_or(0)).sum()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `a == b`, in time that depends only on the length: the difference of every
/// byte pair is accumulated and inspected once (a per-byte optimisation barrier, as in
/// `subtle`, made the comparison the costliest step of a cached request in WebAssembly).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // Eight bytes at a time (WebAssembly has no vector compare here); every byte is read
    // whatever the data, so the time does not depend on where the tokens differ.
    let (a8, a1) = a.split_at(a.len() / 8 * 8);
    let (b8, b1) = b.split_at(a8.len());
    let mut diff = a8.chunks_exact(8).zip(b8.chunks_exact(8)).fold(0u64, |acc, (x, y)| {
        acc | (u64::from_le_bytes(x.try_into().expect("8 bytes")) ^ u64::from_le_bytes(y.try_into().expect("8 bytes")))
    });
    diff |= a1.iter().zip(b1).fold(0u64, |acc, (x, y)| acc | u64::from(x ^ y));
    std::hint::black_box(diff) == 0
}

fn recount(s: &mut Shard) {
    s.entries = s.map.values().map(Vec::len).sum();
    s.bytes = s.map.values().flatten().map(|e| e.token.len()).sum();
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
        c.insert("a.b.sig", id(), 10, 0);
        assert!(c.get("a.b.sig", 10).is_some());
        assert!(c.get("a.b.sig", 11).is_none());
        assert!(c.is_empty(), "an expired entry is dropped when seen");
        for i in 0..10_000 {
            c.insert(&format!("h.p.{i:08}"), id(), 100, 0);
        }
        assert!(c.len() <= 64, "{}", c.len());
        let off = TokenCache::new(0);
        off.insert("a.b.sig", id(), 10, 0);
        assert!(off.get("a.b.sig", 0).is_none());
    }

    #[test]
    fn a_hit_needs_the_whole_token() {
        let c = TokenCache::new(64);
        c.insert("header.payload.signature-0123456789abcdef", id(), 10, 0);
        // Same tail (same slot), other claims: not a hit.
        assert!(c.get("header.forged!.signature-0123456789abcdef", 0).is_none());
        assert!(c.get("header.payload.signature-0123456789abcdeF", 0).is_none());
        assert!(c.get("eader.payload.signature-0123456789abcdef", 0).is_none());
        assert!(c.get("header.payload.signature-0123456789abcdef", 0).is_some());
        // Two tokens in one slot are both found.
        c.insert("other.payload.signature-0123456789abcdef", id(), 10, 0);
        assert!(c.get("header.payload.signature-0123456789abcdef", 0).is_some());
        assert!(c.get("other.payload.signature-0123456789abcdef", 0).is_some());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn bounded_in_bytes() {
        // 16 entries → 16 KiB of tokens at most: 4 KiB tokens cannot all stay.
        let c = TokenCache::new(16);
        for i in 0..64 {
            c.insert(&format!("{}{i:04}", "x".repeat(4096)), id(), 100, 0);
        }
        let held: usize = c.shards.iter().map(|s| s.lock().unwrap().bytes).sum();
        assert!(held <= 16 * BYTES_PER_ENTRY, "{held}");
        // A token larger than a shard's budget is never cached.
        c.insert(&"y".repeat(1 << 20), id(), 100, 0);
        assert!(c.get(&"y".repeat(1 << 20), 0).is_none());
    }
}
