//! Rate limits: GCRA (the generic cell rate algorithm) behind a [`RateStore`].
//!
//! GCRA keeps one number per key, the theoretical arrival time (TAT). A request at `now`
//! conforms if `now >= TAT + T - burst·T`, where `T = period / requests`; then
//! `TAT = max(TAT, now) + T`. A key whose TAT is in the past holds no information (it is
//! the same as a fresh key), so stores may drop it: that is how idle keys are evicted.
//!
//! The arithmetic lives here ([`Gcra::apply`]); stores only keep TATs atomically, so every
//! host (in-process map, Redis, Durable Object, key-value) decides the same way.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Mutex;

use crate::policy::RateLimit;
use crate::time::{UnixNanos, NANOS};

/// A compiled limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gcra {
    /// Emission interval `T` in nanoseconds.
    pub interval: u64,
    /// Burst capacity (requests that may arrive at once).
    pub burst: u64,
}

/// Outcome of one GCRA step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RateDecision {
    /// Whether the request conforms.
    pub allowed: bool,
    /// The limit reported in `RateLimit-Limit` (the burst).
    pub limit: u64,
    /// Requests left right now.
    pub remaining: u64,
    /// Nanoseconds until the budget is full again (`RateLimit-Reset`).
    pub reset_after: u64,
    /// Nanoseconds until a request would conform (0 when allowed).
    pub retry_after: u64,
}

impl Gcra {
    /// Compile a policy limit.
    pub fn new(l: &RateLimit) -> Gcra {
        let requests = l.requests.max(1);
        let interval = (l.per_secs.saturating_mul(NANOS) / requests).max(1);
        Gcra { interval, burst: l.burst.unwrap_or(requests).max(1) }
    }

    /// One request at `now` against stored TAT `tat`; returns the decision and the TAT to
    /// store (unchanged when denied).
    pub fn apply(&self, tat: Option<u64>, now: UnixNanos) -> (RateDecision, Option<u64>) {
        let tat = tat.unwrap_or(now).max(now);
        let new_tat = tat.saturating_add(self.interval);
        let window = self.interval.saturating_mul(self.burst);
        let allow_at = new_tat.saturating_sub(window);
        if now < allow_at {
            let retry_after = allow_at - now;
            let d =
                RateDecision { allowed: false, limit: self.burst, remaining: 0, reset_after: tat - now, retry_after };
            return (d, None);
        }
        let remaining = (window - (new_tat - now)) / self.interval;
        let d =
            RateDecision { allowed: true, limit: self.burst, remaining, reset_after: new_tat - now, retry_after: 0 };
        (d, Some(new_tat))
    }
}

/// What a budget is counted per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateScope {
    /// The whole organisation.
    Org,
    /// One user of the organisation.
    User,
    /// One API key.
    ApiKey,
    /// One route, per organisation.
    Route,
}

impl RateScope {
    /// Stable string form, used in shared-store keys.
    pub fn as_str(self) -> &'static str {
        match self {
            RateScope::Org => "org",
            RateScope::User => "user",
            RateScope::ApiKey => "key",
            RateScope::Route => "route",
        }
    }
}

/// A budget's key. Every key includes the organisation, so tenants never share budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateKey<'a> {
    /// What is counted.
    pub scope: RateScope,
    /// The organisation.
    pub org: &'a str,
    /// The user, key prefix or route name (empty for [`RateScope::Org`]).
    pub id: &'a str,
}

impl RateKey<'_> {
    /// A string key for shared stores: `rl:<scope>:<len(org)>:<org>:<id>` (length-prefixed,
    /// so no two different keys render the same).
    pub fn render(&self) -> String {
        let scope = self.scope.as_str();
        let mut s = String::with_capacity(8 + scope.len() + 20 + self.org.len() + self.id.len());
        s.push_str("rl:");
        s.push_str(scope);
        s.push(':');
        s.push_str(itoa::Buffer::new().format(self.org.len()));
        s.push(':');
        s.push_str(self.org);
        s.push(':');
        s.push_str(self.id);
        s
    }
}

/// Where GCRA state lives. Implementations must make `update` atomic per key.
pub trait RateStore {
    /// Run one GCRA step for `key` at `now`, atomically.
    fn check(&self, key: &RateKey<'_>, gcra: &Gcra, now: UnixNanos) -> RateDecision;
}

/// A hasher for keys that are already hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | *b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashMap<u64, u64, BuildHasherDefault<PassThrough>>;

const SHARDS: usize = 16;

/// In-process store: sharded maps from a 64-bit keyed fingerprint of the key to its TAT,
/// bounded in entries. When a shard is full, idle keys (TAT in the past) are dropped
/// first; if none are idle, the keys closest to idle are.
pub struct MemoryRateStore {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    seed: (u64, u64),
}

impl MemoryRateStore {
    /// A store for at most `capacity` keys. `seed` keys the fingerprint so that clients
    /// cannot aim for collisions; pass random bytes.
    pub fn new(capacity: usize, seed: [u8; 16]) -> MemoryRateStore {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        MemoryRateStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
            seed: (
                u64::from_le_bytes(seed[..8].try_into().unwrap_or_default()),
                u64::from_le_bytes(seed[8..].try_into().unwrap_or_default()),
            ),
        }
    }

    fn fingerprint(&self, key: &impl Hash) -> u64 {
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(self.seed.0, self.seed.1);
        key.hash(&mut h);
        h.finish()
    }

    /// One GCRA step for a key already rendered to a string (see [`RateKey::render`]):
    /// what hosts use when the key arrives from a filter component.
    pub fn check_rendered(&self, key: &str, gcra: &Gcra, now: UnixNanos) -> RateDecision {
        self.check_fingerprint(self.fingerprint(&key), gcra, now)
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|m| m.len()).unwrap_or(0)).sum()
    }

    /// Whether no keys are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of heap the maps hold (approximate: buckets plus control bytes).
    pub fn heap_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|m| m.capacity() * (16 + 1)).unwrap_or(0)).sum()
    }

    fn make_room(map: &mut Shard, cap: usize, now: UnixNanos) {
        map.retain(|_, tat| *tat > now);
        if map.len() >= cap {
            // Drop exactly the eighth of keys closest to idle (ties broken arbitrarily).
            let mut entries: Vec<(u64, u64)> = map.iter().map(|(k, t)| (*t, *k)).collect();
            let k = (entries.len() / 8).max(1);
            entries.select_nth_unstable(k - 1);
            for (_, key) in &entries[..k] {
                map.remove(key);
            }
        }
    }
}

impl RateStore for MemoryRateStore {
    fn check(&self, key: &RateKey<'_>, gcra: &Gcra, now: UnixNanos) -> RateDecision {
        // Hashing the fields avoids rendering a string per request; a store is used either
        // through this trait or through `check_rendered`, never both.
        self.check_fingerprint(self.fingerprint(key), gcra, now)
    }
}

impl MemoryRateStore {
    fn check_fingerprint(&self, fp: u64, gcra: &Gcra, now: UnixNanos) -> RateDecision {
        let shard = &self.shards[(fp as usize) % SHARDS];
        let mut map = match shard.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (decision, new_tat) = gcra.apply(map.get(&fp).copied(), now);
        if let Some(t) = new_tat {
            if !map.contains_key(&fp) && map.len() >= self.per_shard {
                Self::make_room(&mut map, self.per_shard, now);
            }
            map.insert(fp, t);
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(id: &str) -> RateKey<'_> {
        RateKey { scope: RateScope::User, org: "acme", id }
    }

    #[test]
    fn burst_then_steady_rate() {
        let g = Gcra::new(&RateLimit { requests: 10, per_secs: 1, burst: Some(5) });
        let s = MemoryRateStore::new(100, [1; 16]);
        let t0 = 1_000 * NANOS;
        for i in 0..5 {
            let d = s.check(&key("u"), &g, t0);
            assert!(d.allowed, "{i}");
            assert_eq!(d.remaining, 4 - i);
        }
        let d = s.check(&key("u"), &g, t0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, NANOS / 10);
        assert!(s.check(&key("u"), &g, t0 + NANOS / 10).allowed);
        assert!(!s.check(&key("u"), &g, t0 + NANOS / 10).allowed);
        // Another key, another org: separate budgets.
        assert!(s.check(&key("v"), &g, t0).allowed);
        assert!(s.check(&RateKey { scope: RateScope::User, org: "other", id: "u" }, &g, t0).allowed);
    }

    #[test]
    fn bounded_and_evicts_idle_first() {
        let g = Gcra::new(&RateLimit { requests: 1, per_secs: 60, burst: Some(1) });
        let s = MemoryRateStore::new(1_600, [2; 16]);
        let ids: Vec<String> = (0..10_000).map(|i| format!("user{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            s.check(&key(id), &g, i as u64 * NANOS);
        }
        assert!(s.len() <= 1_600, "{}", s.len());
        // The most recent key is still limited (not evicted).
        assert!(!s.check(&key(&ids[9_999]), &g, 9_999 * NANOS).allowed);
    }

    #[test]
    fn eviction_with_equal_tats_keeps_most_keys() {
        let g = Gcra::new(&RateLimit { requests: 10, per_secs: 1, burst: None });
        let s = MemoryRateStore::new(1_600, [4; 16]);
        let ids: Vec<String> = (0..5_000).map(|i| format!("k{i}")).collect();
        for id in &ids {
            s.check(&key(id), &g, NANOS); // every TAT equal
        }
        assert!(s.len() >= 1_600 * 3 / 4, "{}", s.len());
        assert!(s.len() <= 1_600);
    }

    #[test]
    fn rendered_keys_are_unambiguous() {
        let a = RateKey { scope: RateScope::Org, org: "a:b", id: "" }.render();
        let b = RateKey { scope: RateScope::Org, org: "a", id: "b" }.render();
        assert_ne!(a, b);
    }

    /// Reference: GCRA as the continuous-state leaky bucket (ITU-T I.371), a different
    /// formulation that must give the same answers.
    struct Bucket {
        x: u64,
        lct: u64,
    }

    impl Bucket {
        fn offer(&mut self, t: u64, interval: u64, burst: u64) -> bool {
            let tau = interval * (burst - 1);
            let x1 = self.x.saturating_sub(t - self.lct);
            if x1 > tau {
                false
            } else {
                self.x = x1 + interval;
                self.lct = t;
                true
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn gcra_matches_leaky_bucket(
            requests in 1u64..50,
            per_secs in 1u64..5,
            burst in 1u64..20,
            gaps in proptest::collection::vec(0u64..400_000_000, 1..200),
        ) {
            let g = Gcra::new(&RateLimit { requests, per_secs, burst: Some(burst) });
            let mut tat: Option<u64> = None;
            let mut now = 10 * NANOS;
            let mut bucket = Bucket { x: 0, lct: now };
            let mut admitted = 0u64;
            let start = now;
            for gap in gaps {
                now += gap;
                let (d, new_tat) = g.apply(tat, now);
                if let Some(t) = new_tat { tat = Some(t); }
                prop_assert_eq!(d.allowed, bucket.offer(now, g.interval, g.burst));
                if d.allowed { admitted += 1; }
                // Never more than the burst plus what the rate earned.
                prop_assert!(admitted <= g.burst + (now - start) / g.interval);
                prop_assert!(d.remaining < g.burst);
            }
        }
    }
}
