//! The sealed cache in the key-value store `default` (`gatehouse_core::sealed`): Spin
//! starts a fresh instance for every request, so without it every request verifies the
//! bundle's signature and the token's again. Enabled by the secret variable `cache_key`
//! (base64 of at least 32 random bytes); without it nothing is cached outside the
//! instance. What a writer of the store can and cannot do is in components/spin/README.md.

use gatehouse_core::sealed::{Sealer, TokenEntry, BUNDLE_KEY};
use gatehouse_core::Engine;
use spin_sdk::key_value::Store;

/// The sealing key and the store it seals entries in.
pub struct Shared {
    pub sealer: Sealer,
    pub store: Store,
}

/// The cache, when `cache_key` is set and valid and the store opens. A bad key or a
/// missing store is logged (once) and the request is decided without the cache.
pub async fn open(cache_key: Option<&str>) -> Option<Shared> {
    let text = cache_key.filter(|k| !k.trim().is_empty())?;
    let Some(sealer) = crate::forward::decode_b64(text).and_then(|k| Sealer::new(&k).ok()) else {
        crate::log_problem("variable `cache_key` is not base64 of at least 32 bytes: running without the cache".into());
        return None;
    };
    match Store::open_default().await {
        Ok(store) => Some(Shared { sealer, store }),
        Err(_) => {
            crate::log_problem("the key-value store `default` cannot be opened: running without the cache".into());
            None
        }
    }
}

impl Shared {
    /// The store's bundle entry (a miss when it cannot be read).
    pub async fn bundle_entry(&self) -> Option<Vec<u8>> {
        self.store.get(BUNDLE_KEY).await.ok().flatten()
    }

    /// Remember that the bundle's signature was verified.
    pub async fn store_bundle_entry(&self, entry: &[u8]) {
        let _ = self.store.set(BUNDLE_KEY, entry).await;
    }
}

/// A request's token and its entry in the store.
pub struct TokenSlot<'r> {
    token: &'r str,
    entry: TokenEntry,
    remembered: bool,
}

/// Seed `engine`'s verified-token cache with the store's entry for `token` (the token
/// the request presents), under the bundle tagged `bundle`.
pub async fn before<'r>(
    shared: &Shared,
    engine: &Engine,
    bundle: &[u8; 32],
    token: &'r str,
    now_secs: u64,
) -> TokenSlot<'r> {
    let entry = shared.sealer.token_entry(bundle, token);
    let remembered = match shared.store.get(&entry.key).await {
        Ok(Some(v)) => engine.remember_sealed(&shared.sealer, &entry, token, &v, now_secs),
        _ => false,
    };
    TokenSlot { token, entry, remembered }
}

/// After the decision: store the entry of a token this instance verified.
pub async fn after(shared: &Shared, engine: &Engine, slot: &TokenSlot<'_>, now_secs: u64) {
    if slot.remembered {
        return;
    }
    if let Some(v) = engine.seal_verified(&shared.sealer, &slot.entry, slot.token, now_secs) {
        let _ = shared.store.set(&slot.entry.key, v).await;
    }
}
