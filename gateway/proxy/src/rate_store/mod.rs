//! Where the native engine's rate limits are counted (`[rate_store]`): in this process
//! (`kind = "memory"`, the default), or in Redis (or Valkey) shared by every gateway
//! node (`kind = "redis"`), so that an organisation has one budget across them.
//!
//! On Redis each request's rate steps (the org's, the route's, the user's or API key's
//! limit, in the engine's order) run as one Lua script (GCRA on the server's clock,
//! [`redis::RedisRates`]); connections are multiplexed (concurrent requests pipeline on
//! one connection) over a small pool, every call is bounded by `timeout_ms`, and a store
//! that does not answer in time is `on_error`'s: `deny` (the default) refuses with `503
//! rate_store_unavailable`, `allow` admits without counting.

pub mod redis;

use serde::Deserialize;

pub use self::redis::{RateStoreError, RedisRates};

/// Which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In this process (each gateway node counts on its own).
    #[default]
    Memory,
    /// Redis or Valkey, shared by every gateway that names it.
    Redis,
}

/// What a request gets when the shared store does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Refuse: `503 rate_store_unavailable` (fail closed).
    #[default]
    Deny,
    /// Admit without counting (the limit is not enforced while the store is away).
    Allow,
}

/// `[rate_store]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateStoreConfig {
    /// `memory` (default) or `redis`.
    pub kind: StoreKind,
    /// `redis://[user:password@]host:port[/db]` (kind `redis`).
    pub url: Option<String>,
    /// `deny` (default) or `allow`.
    pub on_error: OnError,
    /// Connections to Redis, each multiplexed (1–64; default 4).
    pub pool_size: usize,
    /// Bound on one rate check, connecting included, in milliseconds (1–10,000; default 50).
    pub timeout_ms: u64,
    /// Prefix of every key the gateway writes (default `gatehouse:rl:`).
    pub key_prefix: String,
}

impl Default for RateStoreConfig {
    fn default() -> Self {
        RateStoreConfig {
            kind: StoreKind::Memory,
            url: None,
            on_error: OnError::Deny,
            pool_size: 4,
            timeout_ms: 50,
            key_prefix: "gatehouse:rl:".into(),
        }
    }
}

impl RateStoreConfig {
    /// Check the section; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=64).contains(&self.pool_size) {
            return Err(format!("rate_store.pool_size: {} is outside 1–64", self.pool_size));
        }
        if !(1..=10_000).contains(&self.timeout_ms) {
            return Err(format!("rate_store.timeout_ms: {} is outside 1–10000", self.timeout_ms));
        }
        if self.key_prefix.len() > 64 || self.key_prefix.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err("rate_store.key_prefix: at most 64 visible ASCII characters".into());
        }
        match (self.kind, &self.url) {
            (StoreKind::Memory, Some(_)) => Err("rate_store.url: only for kind = \"redis\"".into()),
            (StoreKind::Memory, None) => Ok(()),
            (StoreKind::Redis, None) => Err("rate_store.url: kind = \"redis\" needs the server's URL".into()),
            (StoreKind::Redis, Some(u)) => match ::redis::Client::open(u.as_str()) {
                Ok(_) if u.starts_with("redis://") => Ok(()),
                Ok(_) => Err("rate_store.url: must be redis://host:port[/db]".into()),
                // The parser's message may quote the URL, password included: not repeated.
                Err(_) => Err("rate_store.url: not a Redis URL (redis://[user:password@]host:port[/db])".into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> RateStoreConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn every_field_is_checked_by_name() {
        assert_eq!(parse(""), RateStoreConfig::default());
        assert!(parse("kind = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\n").validate().is_ok());
        let cases = [
            ("kind = \"redis\"\n", "rate_store.url"),
            ("url = \"redis://x:1\"\n", "rate_store.url"),
            ("kind = \"redis\"\nurl = \"http://x:1\"\n", "rate_store.url"),
            ("kind = \"redis\"\nurl = \"redis://:hunter2@[::1\"\n", "rate_store.url"),
            ("pool_size = 0\n", "rate_store.pool_size"),
            ("timeout_ms = 0\n", "rate_store.timeout_ms"),
            ("key_prefix = \"a b\"\n", "rate_store.key_prefix"),
        ];
        for (text, field) in cases {
            let e = parse(text).validate().unwrap_err();
            assert!(e.starts_with(field), "{text:?}: {e}");
            assert!(!e.contains("hunter2"), "the password is not repeated: {e}");
        }
        assert!(toml::from_str::<RateStoreConfig>("kind = \"etcd\"\n").is_err());
        assert!(toml::from_str::<RateStoreConfig>("on_error = \"maybe\"\n").is_err());
    }
}
