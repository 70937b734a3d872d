//! Fuzz the policy file: TOML into `Policy` (the bundler's `toml::from_str`), its
//! validation, and compiling it into an engine.
//!
//! Invariants (a panic here is a finding):
//! - no input panics;
//! - every validation issue names a field under one of the policy's sections and says
//!   what is wrong;
//! - a parsed policy survives the encodings it travels in: JSON (the origin's stored
//!   template) and MessagePack (bundles, read back with the edges' reader) give the same
//!   policy, and TOML when it can be written at all (TOML integers stop at `i64::MAX`);
//! - a policy that validates compiles into an engine: what `gatehouse policy check`
//!   accepts, every edge loads;
//! - the compiled engine decides a fixed request without panicking, with a stable reason.
#![no_main]

use gatehouse_core::engine::Env;
use gatehouse_core::{BundleInfo, Engine, NoCountryLookup, Policy, RequestHead};
use gatehouse_fuzz::checks::stable_decision;
use gatehouse_fuzz::fixtures::{self, NOW};
use libfuzzer_sys::fuzz_target;

const SECTIONS: &[&str] = &["settings", "client_ip", "geo", "tiers", "roles", "issuers", "orgs", "routes", "revoked"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(policy) = toml::from_str::<Policy>(text) else { return };

    let json = serde_json::to_string(&policy).expect("a policy encodes as JSON");
    let from_json: Policy = serde_json::from_str(&json).unwrap_or_else(|e| panic!("JSON round trip refused: {e}"));
    assert_eq!(from_json, policy, "JSON round trip differs");
    let packed = rmp_serde::to_vec_named(&policy).expect("a policy encodes as MessagePack");
    let unpacked: Policy = gatehouse_core::msgpack::from_slice(&packed)
        .unwrap_or_else(|e| panic!("the edges' reader refuses an encoded policy: {e}"));
    assert_eq!(unpacked, policy, "MessagePack round trip differs");
    if let Ok(again) = toml::to_string(&policy) {
        let reparsed: Policy =
            toml::from_str(&again).unwrap_or_else(|e| panic!("TOML round trip refused: {e}\n{again}"));
        assert_eq!(reparsed, policy, "TOML round trip differs");
    }

    match policy.validate() {
        Err(issues) => {
            assert!(!issues.is_empty(), "validation failed without an issue");
            for i in &issues {
                let section = i.path.split(['.', '[']).next().unwrap_or_default();
                assert!(SECTIONS.contains(&section), "issue outside the policy's sections: {i}");
                assert!(!i.message.is_empty(), "issue without a message: {}", i.path);
            }
            assert!(Engine::new(&policy, info(), &fixtures::secrets()).is_err(), "an invalid policy compiled");
        }
        Ok(()) => {
            let engine = Engine::new(&policy, info(), &fixtures::secrets())
                .unwrap_or_else(|e| panic!("a policy that validates does not compile: {e}"));
            let headers = [("authorization", "Bearer a.b.c"), ("x-forwarded-for", "198.51.100.7")];
            let req = RequestHead {
                method: "GET",
                scheme: "https",
                host: "acme.test",
                path: "/api/x",
                query: None,
                headers: &headers,
                peer: "10.0.0.2".parse().expect("ip"),
                platform_country: None,
            };
            let rates = gatehouse_core::MemoryRateStore::new(64, [0; 16]);
            let env = Env {
                now: NOW * gatehouse_core::time::NANOS,
                rates: &rates,
                countries: &NoCountryLookup,
                signatures: None,
            };
            stable_decision(&engine.decide(&req, &env));
        }
    }
});

fn info() -> BundleInfo {
    BundleInfo { revision: 1, region: "fuzz".into(), issued_at: NOW, expires_at: NOW + 3600 }
}
