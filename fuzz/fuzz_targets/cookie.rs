//! Fuzz the session cookie as the engine reads it (`Engine::decide`: the `Cookie`
//! fields of a request without `Authorization` or an API key), under the token policy
//! of the fixtures (session cookie `gh_session`).
//!
//! The input is the request's `Cookie` fields, one per line; `$1` and `$2` in it stand for
//! valid session tokens of users `u1` and `u2` (signed at start-up), so mutations reach
//! both the cookie syntax and the token behind it.
//!
//! Invariants (a panic here is a finding):
//! - no input panics; every refusal carries a stable reason code with its status;
//! - exactly one `gh_session` cookie with a valid token lets the request through as its
//!   user, and nothing else does: two `gh_session` cookies (cookie tossing) are refused
//!   `credential_malformed`, none (or an empty one) is `credential_missing`, and other
//!   cookie names (`xgh_session`, `gh_session2`, `gh_session.x`) never count;
//! - the answer does not depend on how the cookies are spread over fields: all of them in
//!   one field, `; `-separated, answer the same.
#![no_main]

use std::sync::OnceLock;

use gatehouse_core::engine::Env;
use gatehouse_core::{BundleInfo, Decision, Engine, MemoryRateStore, NoCountryLookup, ReasonCode, RequestHead};
use gatehouse_fuzz::checks::stable_decision;
use gatehouse_fuzz::fixtures::{self, NOW};
use libfuzzer_sys::fuzz_target;

const COOKIE: &str = "gh_session";

struct Fixture {
    engine: Engine,
    tokens: [String; 2],
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let info = BundleInfo { revision: 1, region: "fuzz".into(), issued_at: NOW, expires_at: NOW + 86_400 };
        let mut policy = fixtures::token_policy();
        // Every decision verifies afresh (the cache would hide nothing, but costs memory).
        policy.settings.token_cache_entries = 0;
        let engine = Engine::new(&policy, info, &fixtures::secrets()).expect("fixture engine");
        Fixture { engine, tokens: [fixtures::session_token("u1"), fixtures::session_token("u2")] }
    })
}

fn decide(fields: &[&str]) -> Decision {
    let f = fixture();
    let headers: Vec<(&str, &str)> = fields.iter().map(|v| ("cookie", *v)).collect();
    let req = RequestHead {
        method: "GET",
        scheme: "https",
        host: "acme.test",
        path: "/",
        query: None,
        headers: &headers,
        peer: "203.0.113.9".parse().expect("ip"),
        platform_country: None,
    };
    let rates = MemoryRateStore::new(16, [0; 16]);
    let env =
        Env { now: NOW * gatehouse_core::time::NANOS, rates: &rates, countries: &NoCountryLookup, signatures: None };
    if req.validate().is_err() {
        let d = f.engine.decide(&req, &env);
        assert_eq!(d.reason(), Some(ReasonCode::RequestMalformed), "a malformed request was not refused as such");
        return d;
    }
    f.engine.decide(&req, &env)
}

/// RFC 6265 §5.2 (as the engine trims): the values of every cookie named `gh_session`.
fn session_values<'a>(fields: &[&'a str]) -> Vec<&'a str> {
    fields
        .iter()
        .flat_map(|f| f.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| name.trim() == COOKIE)
        .map(|(_, v)| v.trim().trim_matches('"'))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let f = fixture();
    let text = text.replace("$1", &f.tokens[0]).replace("$2", &f.tokens[1]);
    let fields: Vec<&str> = text.split('\n').collect();
    let d = decide(&fields);
    stable_decision(&d);
    if d.reason() == Some(ReasonCode::RequestMalformed) {
        return;
    }
    let values = session_values(&fields);
    match values.as_slice() {
        [] | [""] => assert_eq!(d.reason(), Some(ReasonCode::CredentialMissing), "no session cookie: {d:?}"),
        [one] => match &d {
            Decision::Allow(a) => {
                let id = a.identity.as_ref().expect("an allow by cookie has an identity");
                let user = if *one == f.tokens[0] {
                    "u1"
                } else if *one == f.tokens[1] {
                    "u2"
                } else {
                    panic!("allowed with a session cookie that is not a valid token: {one:?}")
                };
                assert_eq!(id.subject, user);
                assert_eq!(id.kind, gatehouse_core::CredentialKind::Session);
            }
            _ => assert!(*one != f.tokens[0] && *one != f.tokens[1], "the one valid session cookie was refused: {d:?}"),
        },
        _ => assert_eq!(d.reason(), Some(ReasonCode::CredentialMalformed), "two session cookies: {d:?}"),
    }
    if fields.len() > 1 {
        let joined = fields.join("; ");
        let one = decide(&[joined.as_str()]);
        // (One long field may be over the field-size bound where several are not.)
        if one.reason() != Some(ReasonCode::RequestMalformed) {
            assert_eq!(one, d, "one field answers differently from {} fields", fields.len());
        }
    }
});
