//! The guest side of the `gatehouse:policy/filter` world, shared by the built-in filters.
//!
//! A built-in filter is a type that names the checks of `gatehouse-core` it runs; this
//! crate turns that into a component: it keeps the compiled policy in the instance (loaded
//! once per bundle revision), converts the request and context records, runs the checks
//! and converts the answer. No decision is made here.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::Arc;

use gatehouse_core::engine::{Check, Context, Engine, Env};
use gatehouse_core::geo::{CountryCode, CountryLookup};
use gatehouse_core::ratelimit::{Gcra, RateDecision, RateKey, RateStore};
use gatehouse_core::request::RequestHead;
use gatehouse_core::{Decision, EdgeSecrets, ReasonCode};

/// Bindings generated from `components/wit` (the `gatehouse:policy/filter` world).
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "filter",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_filter",
    });
}

use bindings::gatehouse::policy::host;
use bindings::gatehouse::policy::loading::Loaded;
use bindings::gatehouse::policy::types as wit;
use bindings::Guest;

pub use gatehouse_core::engine::Check as CoreCheck;

/// The allocator of every built-in filter: talc instead of the default dlmalloc (a cached
/// request allocates and frees a few dozen blocks; dlmalloc was a tenth of a filter call).
#[cfg(all(not(target_feature = "atomics"), target_family = "wasm"))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// A built-in filter: the checks it runs, in order.
pub trait Checks {
    /// The checks.
    const CHECKS: &'static [Check];
}

/// The component for filter `T`. Export it with
/// `gatehouse_filter_guest::bindings::export_filter!(MyFilter with_types_in gatehouse_filter_guest::bindings);`
/// where `type MyFilter = gatehouse_filter_guest::Filter<MyChecks>;`.
pub struct Filter<T>(PhantomData<T>);

thread_local! {
    static ENGINE: RefCell<Option<Arc<Engine>>> = const { RefCell::new(None) };
}

struct HostRates;

impl RateStore for HostRates {
    fn check(&self, key: &RateKey<'_>, gcra: &Gcra, _now: u64) -> RateDecision {
        let d = host::rate_check(&key.render(), gcra.interval, gcra.burst);
        RateDecision {
            allowed: d.allowed,
            limit: d.limit,
            remaining: d.remaining,
            reset_after: d.reset_after,
            retry_after: d.retry_after,
        }
    }
}

struct HostSignatures;

impl gatehouse_core::jwt::SignatureVerifier for HostSignatures {
    fn verify(
        &self,
        alg: gatehouse_core::jwt::Alg,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Option<bool> {
        host::verify_signature(alg.as_str(), public_key, message, signature)
    }
}

struct HostCountries;

impl CountryLookup for HostCountries {
    fn country(&self, ip: IpAddr) -> Option<CountryCode> {
        host::country(&ip.to_string()).as_deref().and_then(CountryCode::parse)
    }
}

fn deny(reason: ReasonCode) -> wit::Verdict {
    wit::Verdict::Deny(wit::Deny {
        status: reason.status(),
        reason: reason.as_str().into(),
        headers: Vec::new(),
        org: None,
    })
}

impl<T: Checks> Guest for Filter<T> {
    fn load_policy(bundle: Vec<u8>, public_key: Vec<u8>, secrets: Vec<u8>) -> Result<Loaded, String> {
        // A panic message goes to the host's log, never to a WASI stream.
        std::panic::set_hook(Box::new(|info| host::log(host::Level::Error, &info.to_string())));
        let pk: [u8; 32] = public_key.as_slice().try_into().map_err(|_| "public key must be 32 bytes".to_string())?;
        let secrets: EdgeSecrets = if secrets.is_empty() {
            EdgeSecrets::default()
        } else {
            serde_json::from_slice(&secrets).map_err(|e| format!("edge secrets: {e}"))?
        };
        let now = host::now() / 1_000_000_000;
        let engine = Engine::from_bundle(&bundle, &pk, now, &secrets).map_err(|e| e.to_string())?;
        let loaded = Loaded { revision: engine.info().revision, headers: Some(engine.headers_read()) };
        ENGINE.with(|e| *e.borrow_mut() = Some(Arc::new(engine)));
        Ok(loaded)
    }

    fn check(req: wit::RequestHead, ctx: wit::Context) -> wit::Verdict {
        let Some(engine) = ENGINE.with(|e| e.borrow().clone()) else {
            return deny(ReasonCode::BundleMissing);
        };
        let Ok(peer) = req.peer.parse::<IpAddr>() else {
            return deny(ReasonCode::RequestMalformed);
        };
        let pairs: Vec<(&str, &str)> = req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let head = RequestHead {
            method: &req.method,
            scheme: &req.scheme,
            host: &req.authority,
            path: &req.path,
            query: req.query.as_deref(),
            headers: &pairs,
            peer,
            platform_country: req.platform_country.as_deref(),
        };
        let client_ip = match ctx.client_ip.as_deref().map(str::parse::<IpAddr>) {
            None => None,
            Some(Ok(ip)) => Some(ip),
            Some(Err(_)) => return deny(ReasonCode::InternalError),
        };
        let identity = match ctx.identity {
            None => None,
            Some(i) => match gatehouse_core::identity_from_record!(i, engine.identity_header_prefix()) {
                Some(i) => Some(Arc::new(i)),
                None => return deny(ReasonCode::InternalError),
            },
        };
        let mut core_ctx =
            Context { org: ctx.org, route: ctx.route, client_ip, identity, response_headers: ctx.response_headers };
        let env =
            Env { now: host::now(), rates: &HostRates, countries: &HostCountries, signatures: Some(&HostSignatures) };
        let result = engine.check(T::CHECKS, &head, &mut core_ctx, &env);
        drop(pairs);
        match result {
            Ok(()) => wit::Verdict::Allow(wit::Context {
                org: core_ctx.org,
                route: core_ctx.route,
                // Most often the peer itself: its text is at hand (an IPv4 address parses
                // only from its canonical text).
                client_ip: core_ctx
                    .client_ip
                    .map(|ip| if ip == peer && ip.is_ipv4() { req.peer } else { ip.to_string() }),
                identity: core_ctx.identity.as_deref().map(|i| gatehouse_core::identity_to_record!(wit::Identity, i)),
                response_headers: core_ctx.response_headers,
            }),
            Err(Decision::Deny(d)) => wit::Verdict::Deny(wit::Deny {
                status: d.status,
                reason: d.reason.as_str().into(),
                headers: d.headers,
                org: core_ctx.org,
            }),
            Err(Decision::Redirect(r)) => wit::Verdict::Redirect(r.location),
            Err(Decision::Allow(_)) => deny(ReasonCode::InternalError),
        }
    }
}
