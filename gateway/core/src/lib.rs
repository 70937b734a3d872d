//! # gatehouse-core
//!
//! The Gatehouse decision engine. Given a request head, a compiled policy and the host's
//! services (time, rate-limit store, country lookup), it answers allow (with identity),
//! deny (with a stable reason code) or redirect (browser sign-in).
//!
//! The crate is pure: no I/O, no clock, no threads, no async runtime. It builds for the
//! native target, `wasm32-wasip2` and `wasm32-unknown-unknown`, and every Gatehouse host
//! (native proxy, filter components, Spin, Workers) runs this same code.
//!
//! Start at [`engine::Engine`]; the policy model is in [`policy`], bundles in [`bundle`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod apikey;
pub mod bundle;
pub mod cache;
pub mod claims;
pub mod decision;
pub mod engine;
pub mod geo;
pub mod identity;
pub mod jwk;
pub mod jwt;
pub mod msgpack;
pub mod net;
pub mod policy;
pub mod ratelimit;
pub mod reason;
pub mod request;
pub mod sealed;
pub mod secrets;
pub mod time;
pub mod wire;

pub use decision::{Allow, Decision, DecisionReport, Deny, Redirect};
pub use engine::{Begun, BundleInfo, Check, Context, Engine, EngineError, Env, PendingRates};
pub use geo::{CountryCode, CountryLookup, NoCountryLookup};
pub use identity::{CredentialKind, Identity};
pub use policy::Policy;
pub use ratelimit::{MemoryRateStore, RateStore};
pub use reason::ReasonCode;
pub use request::{OwnedRequest, RequestHead};
pub use secrets::EdgeSecrets;
