//! The identity plane at the edge: step-up (RFC 9470: `require_mfa = { max_age = .. }`
//! against `amr` and `auth_time`), suspended tenants and deactivated users, through
//! `Engine::decide` (and the filter and asynchronous-rate paths where they differ).

mod common;

use common::*;
use gatehouse_core::engine::{Check, Context, Env};
use gatehouse_core::policy::{ApiKeyRecord, Policy, RequireMfa, Route};
use gatehouse_core::{apikey, Decision, NoCountryLookup};
use serde_json::{json, Value};

const STEPUP: &str = "https://login.test/t/{org}/stepup";

/// The fixture policy with a step-up route (`/stepup`, 15 minutes; `/stepup-pay` also
/// needs `invoices:pay`), a step-up page, and an API key `deploy-bot` for acme.
fn stepup_policy() -> (Policy, String) {
    let mut p = policy();
    p.settings.stepup_url = Some(STEPUP.into());
    let within = RequireMfa::Within { max_age_secs: 900 };
    let routes = [
        Route { name: "stepup".into(), path: "/stepup".into(), require_mfa: within, ..Default::default() },
        Route {
            name: "stepup-pay".into(),
            path: "/stepup-pay".into(),
            require_mfa: within,
            permission: Some("invoices:pay".into()),
            ..Default::default()
        },
    ];
    p.routes.splice(0..0, routes);
    let (key, prefix) = apikey::generate(&[9u8; 41]);
    p.orgs.get_mut("acme").unwrap().api_keys.push(ApiKeyRecord {
        prefix,
        hash: apikey::hash_hex(API_KEY_SECRET, &key),
        subject: "deploy-bot".into(),
        scopes: vec!["invoices:read".into()],
        roles: vec!["owner".into()],
        expires_at: None,
    });
    (p, key)
}

/// A viewer's token with these `amr` and `auth_time` claims (`Value::Null`: left out).
fn signed_in(sub: &str, amr: Value, auth_time: Value) -> String {
    let mut c = claims(sub, &["owner"]);
    if !amr.is_null() {
        c.custom["amr"] = amr;
    }
    if !auth_time.is_null() {
        c.custom["auth_time"] = auth_time;
    }
    if c.custom["amr"].as_array().is_some_and(|a| a.iter().any(|m| m == "mfa")) {
        c.custom["acr"] = json!("urn:gatehouse:mfa");
    }
    ed_token(c)
}

fn mfa_at(t: u64) -> String {
    signed_in("mia", json!(["pwd", "otp", "mfa"]), json!(t))
}

fn header<'a>(d: &'a Decision, name: &str) -> Option<&'a str> {
    match d {
        Decision::Deny(d) => d.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()),
        _ => None,
    }
}

#[test]
fn step_up_is_satisfied_by_a_recent_multi_factor_sign_in() {
    let (p, _) = stepup_policy();
    let h = Harness::new(engine_with(&p));
    let url = "https://acme.app.test/stepup";
    // Exactly at the maximum age, and just inside the clock leeway in the future.
    for t in [NOW - 900, NOW - 1, NOW, NOW + 30] {
        match h.decide(&get(url).bearer(&mfa_at(t))) {
            Decision::Allow(a) => {
                let id = a.identity.unwrap();
                assert_eq!((id.auth_time, id.acr.as_deref()), (Some(t), Some("urn:gatehouse:mfa")));
            }
            other => panic!("auth_time {t}: {other:?}"),
        }
    }
    // The same token a second later than the maximum age (the verified-token cache does
    // not keep a decision: the age is checked at every request's `now`).
    let t = mfa_at(NOW - 900);
    assert!(h.decide_at(&get(url).bearer(&t), NOW).is_allow());
    assert_eq!(h.decide_at(&get(url).bearer(&t), NOW + 1).reason().unwrap().as_str(), "step_up_required");
    // The asynchronous-rate path decides the same.
    assert!(h.decide_with_rate_steps(&get(url).bearer(&mfa_at(NOW - 60))).is_allow());
    // A session cookie works as a bearer token does.
    assert!(h.decide(&get(url).header("cookie", &format!("gh_session={}", mfa_at(NOW)))).is_allow());
}

#[test]
fn step_up_refusals_carry_the_rfc_9470_challenge() {
    let (p, _) = stepup_policy();
    let h = Harness::new(engine_with(&p));
    let url = "https://acme.app.test/stepup";
    let challenge = "Bearer realm=\"gatehouse\", error=\"insufficient_user_authentication\", \
                     error_description=\"A multi-factor sign-in within the last 900 seconds is required\", \
                     max_age=\"900\", acr_values=\"urn:gatehouse:mfa\"";
    let cases = [
        ("stale auth_time", mfa_at(NOW - 901)),
        ("no mfa in amr", signed_in("pat", json!(["pwd"]), json!(NOW))),
        ("otp alone is not mfa", signed_in("pat", json!(["otp"]), json!(NOW))),
        ("no amr", signed_in("pat", Value::Null, json!(NOW))),
        ("no auth_time", signed_in("pat", json!(["pwd", "otp", "mfa"]), Value::Null)),
    ];
    for (what, token) in cases {
        let d = h.decide(&get(url).bearer(&token));
        assert_eq!((d.status(), d.reason().map(|r| r.as_str())), (401, Some("step_up_required")), "{what}");
        assert_eq!(header(&d, "www-authenticate"), Some(challenge), "{what}");
        assert_eq!(h.decide_with_rate_steps(&get(url).bearer(&token)), d, "{what}: asynchronous rates");
    }
    // The route's other requirements come first: a fresh sign-in would not grant them.
    let viewer = {
        let mut c = claims("val", &["viewer"]);
        c.custom["amr"] = json!(["pwd"]);
        c.custom["auth_time"] = json!(NOW - 10_000);
        ed_token(c)
    };
    assert_eq!(h.reason(&get("https://acme.app.test/stepup-pay").bearer(&viewer)), "permission_denied");
    assert_eq!(h.reason(&get("https://acme.app.test/stepup-pay").bearer(&mfa_at(NOW - 10_000))), "step_up_required");
    assert_eq!(h.reason(&get("https://acme.app.test/stepup-pay").bearer(&mfa_at(NOW))), "allow");
    // Without a credential, it is a sign-in first (the sign-in page for a browser).
    assert_eq!(h.reason(&get(url)), "credential_missing");
}

#[test]
fn browsers_are_sent_to_the_step_up_page() {
    let (p, _) = stepup_policy();
    let h = Harness::new(engine_with(&p));
    let stale = mfa_at(NOW - 3600);
    let browser = |url: &str| get(url).header("accept", "text/html,application/xhtml+xml").bearer(&stale);
    match h.decide(&browser("https://acme.app.test/stepup?tab=keys&x=1")) {
        Decision::Redirect(r) => {
            assert_eq!(r.reason.as_str(), "step_up_required");
            assert_eq!(
                r.location,
                "https://login.test/t/acme/stepup?return_to=https%3A%2F%2Facme%2Eapp%2Etest%2Fstepup%3Ftab%3Dkeys%26x%3D1\
                 &max_age=900"
            );
        }
        other => panic!("{other:?}"),
    }
    // A session cookie is the browser's usual credential.
    let cookie = get("https://acme.app.test/stepup")
        .header("accept", "text/html")
        .header("cookie", &format!("gh_session={stale}"));
    assert!(matches!(h.decide(&cookie), Decision::Redirect(_)));
    // A form post is not navigated away from: 401.
    assert_eq!(h.decide(&browser("https://acme.app.test/stepup").method("POST")).status(), 401);
    // An org's own step-up page wins over the settings'; with none at all, a browser gets
    // the API's 401 (never the sign-in page: the user is signed in).
    let (mut p, _) = stepup_policy();
    p.orgs.get_mut("acme").unwrap().stepup_url = Some("https://acme.example/mfa?org={org}".into());
    let h2 = Harness::new(engine_with(&p));
    match h2.decide(&browser("https://acme.app.test/stepup")) {
        Decision::Redirect(r) => assert_eq!(
            r.location,
            "https://acme.example/mfa?org=acme&return_to=https%3A%2F%2Facme%2Eapp%2Etest%2Fstepup&max_age=900"
        ),
        other => panic!("{other:?}"),
    }
    p.orgs.get_mut("acme").unwrap().stepup_url = None;
    p.settings.stepup_url = None;
    let h3 = Harness::new(engine_with(&p));
    let d = h3.decide(&browser("https://acme.app.test/stepup"));
    assert_eq!((d.status(), d.reason().unwrap().as_str()), (401, "step_up_required"));
}

#[test]
fn api_keys_cannot_step_up() {
    let (p, key) = stepup_policy();
    let h = Harness::new(engine_with(&p));
    // The key reads elsewhere, but has no human to take through a second factor: 403
    // `mfa_required` with no challenge or redirect (no retry can satisfy the route).
    assert_eq!(h.reason(&get("https://acme.app.test/invoices").header("x-api-key", &key)), "allow");
    for r in [
        get("https://acme.app.test/stepup").header("x-api-key", &key),
        get("https://acme.app.test/stepup").bearer(&key).header("accept", "text/html"),
    ] {
        let d = h.decide(&r);
        assert_eq!((d.status(), d.reason().unwrap().as_str()), (403, "mfa_required"));
        assert_eq!(header(&d, "www-authenticate"), None);
    }
}

#[test]
fn hostile_authentication_claims_are_refused() {
    let (p, _) = stepup_policy();
    let h = Harness::new(engine_with(&p));
    let at = |t: &str| h.reason(&get("https://acme.app.test/docs").bearer(t));
    let many: Vec<&str> = vec!["mfa"; 65];
    let huge: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
    let cases = [
        (
            "auth_time beyond the leeway in the future",
            signed_in("x", json!(["mfa"]), json!(NOW + 31)),
            "token_not_yet_valid",
        ),
        ("auth_time far in the future", signed_in("x", json!(["mfa"]), json!(u64::MAX)), "token_not_yet_valid"),
        ("auth_time a string", signed_in("x", json!(["mfa"]), json!("1800000000")), "token_malformed"),
        ("auth_time negative", signed_in("x", json!(["mfa"]), json!(-5)), "token_malformed"),
        ("auth_time an array", signed_in("x", json!(["mfa"]), json!([NOW])), "token_malformed"),
        ("amr a string", signed_in("x", json!("pwd mfa"), json!(NOW)), "token_malformed"),
        ("amr an object", signed_in("x", json!({"mfa": true}), json!(NOW)), "token_malformed"),
        ("amr with a number", signed_in("x", json!(["mfa", 1]), json!(NOW)), "token_malformed"),
        ("amr of 65 entries", signed_in("x", json!(many), json!(NOW)), "token_malformed"),
        ("amr entry with a comma", signed_in("x", json!(["pwd,mfa"]), json!(NOW)), "token_malformed"),
        ("amr too large for a token", signed_in("x", json!(huge), json!(NOW)), "token_too_large"),
    ];
    for (what, token, want) in cases {
        assert_eq!(at(&token), want, "{what}");
    }
    let mut c = claims("x", &["viewer"]);
    c.custom["acr"] = json!(["urn:gatehouse:mfa"]);
    assert_eq!(at(&ed_token(c)), "token_malformed", "acr not a string");
    // A fractional auth_time is read as `iat` is (truncated).
    let frac = signed_in("x", json!(["mfa"]), json!(NOW as f64 - 899.5));
    assert_eq!(h.reason(&get("https://acme.app.test/stepup").bearer(&frac)), "allow");
}

#[test]
fn require_mfa_reads_true_or_a_maximum_age_and_names_its_field() {
    let route = |v: &str| toml::from_str::<Route>(&format!("name = \"r\"\npath = \"/\"\nrequire_mfa = {v}"));
    assert_eq!(route("true").unwrap().require_mfa, RequireMfa::Any);
    assert_eq!(route("false").unwrap().require_mfa, RequireMfa::No);
    assert_eq!(route("{ max_age = \"15m\" }").unwrap().require_mfa, RequireMfa::Within { max_age_secs: 900 });
    assert_eq!(route("{ max_age = \"1h30m\" }").unwrap().require_mfa, RequireMfa::Within { max_age_secs: 5400 });
    assert_eq!(route("{ max_age = 60 }").unwrap().require_mfa, RequireMfa::Within { max_age_secs: 60 });
    for bad in ["{ max_age = \"15x\" }", "{ max_age = \"\" }", "{ maxage = \"15m\" }", "{}", "\"yes\"", "1"] {
        let e = route(bad).unwrap_err().to_string();
        assert!(e.contains("require_mfa") || e.contains("max_age"), "{bad}: {e}");
    }
    let e = route("{ max_age = \"15x\" }").unwrap_err().to_string();
    assert!(e.contains("`15x` is not a duration"), "{e}");
    // Ranges are checked with the rest of the policy, the field named.
    let (mut p, _) = stepup_policy();
    p.routes[0].require_mfa = RequireMfa::Within { max_age_secs: 0 };
    let issues = p.validate().unwrap_err();
    assert_eq!(issues[0].path, "routes[0].require_mfa.max_age", "{issues:?}");
    p.routes[0].require_mfa = RequireMfa::Within { max_age_secs: 900 };
    p.routes[0].auth = gatehouse_core::policy::AuthMode::Optional;
    assert_eq!(p.validate().unwrap_err()[0].path, "routes[0].auth");
    // The bundle's encoding (named MessagePack) keeps each form.
    let (p, _) = stepup_policy();
    let mut p2 = p.clone();
    p2.routes[1].require_mfa = RequireMfa::Any;
    let bytes = rmp_serde::to_vec_named(&p2).unwrap();
    let back: Policy = gatehouse_core::msgpack::from_slice(&bytes).unwrap();
    assert_eq!(back, p2);
    assert_eq!(back.routes[0].require_mfa, RequireMfa::Within { max_age_secs: 900 });
}

#[test]
fn suspended_tenants_are_refused_before_anything_else() {
    let (mut p, key) = stepup_policy();
    p.orgs.get_mut("acme").unwrap().suspended = true;
    let h = Harness::new(engine_with(&p));
    let owner = ed_token(claims("olga", &["owner"]));
    let cases = [
        ("a valid token", get("https://acme.app.test/docs").bearer(&owner)),
        ("an API key", get("https://acme.app.test/invoices").header("x-api-key", &key)),
        ("a public route", get("https://acme.app.test/healthz")),
        ("an anonymous browser (no sign-in redirect)", get("https://acme.app.test/docs").header("accept", "text/html")),
        ("a token on a shared host", get("https://api.shared.test/docs").bearer(&owner)),
        ("an API key on a shared host", get("https://api.shared.test/invoices").bearer(&key)),
    ];
    for (what, r) in cases {
        let d = h.decide(&r);
        assert_eq!((d.status(), d.reason().unwrap().as_str()), (403, "tenant_suspended"), "{what}");
        assert_eq!(h.decide_with_rate_steps(&r), d, "{what}: asynchronous rates");
    }
    // Other tenants are served.
    assert_eq!(h.reason(&get("https://initech.test/healthz").country("DE")), "allow");
    // A filter handed the org by an earlier filter refuses it as well.
    let r = get("https://acme.app.test/docs").bearer(&owner);
    let pairs = r.pairs();
    let mut ctx = Context { org: Some("acme".into()), ..Default::default() };
    let env = Env::deferred(NOW * 1_000_000_000, &NoCountryLookup);
    let got = h.engine.check(&[Check::Credential, Check::Access], &r.head(&pairs), &mut ctx, &env);
    assert_eq!(got.unwrap_err().reason().unwrap().as_str(), "tenant_suspended");
}

#[test]
fn deactivated_users_tokens_and_api_keys_are_refused() {
    let (mut p, key) = stepup_policy();
    p.orgs.get_mut("acme").unwrap().disabled_users = vec!["olga".into(), "deploy-bot".into()];
    let h = Harness::new(engine_with(&p));
    let olga = ed_token(claims("olga", &["owner"]));
    for (what, r) in [
        ("bearer token", get("https://acme.app.test/docs").bearer(&olga)),
        ("session cookie", get("https://acme.app.test/docs").header("cookie", &format!("gh_session={olga}"))),
        ("API key", get("https://acme.app.test/invoices").header("x-api-key", &key)),
        ("API key as bearer", get("https://acme.app.test/invoices").bearer(&key)),
    ] {
        let d = h.decide(&r);
        assert_eq!((d.status(), d.reason().unwrap().as_str()), (401, "user_disabled"), "{what}");
        assert!(header(&d, "www-authenticate").is_some_and(|v| v.contains("error=\"invalid_token\"")), "{what}");
    }
    // A deactivation also ends the user's sessions: the edge still says why.
    let mut p2 = p.clone();
    p2.revoked.sessions.push("sess-1".into());
    let h2 = Harness::new(engine_with(&p2));
    assert_eq!(h2.reason(&get("https://acme.app.test/docs").bearer(&olga)), "user_disabled");
    assert_eq!(
        h2.reason(&get("https://acme.app.test/docs").bearer(&ed_token(claims("al", &["viewer"])))),
        "session_revoked"
    );
    // Other members, and the same subject in another tenant, are served.
    assert_eq!(h.reason(&get("https://acme.app.test/docs").bearer(&ed_token(claims("alice", &["viewer"])))), "allow");
    // A public route reads no credential, so it does not know whose it is.
    assert_eq!(h.reason(&get("https://acme.app.test/healthz").bearer(&olga)), "allow");
    // Subjects must be header-safe ids.
    p.orgs.get_mut("acme").unwrap().disabled_users.push("two words".into());
    assert_eq!(p.validate().unwrap_err()[0].path, "orgs.acme.disabled_users[2]");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Any `auth_time` value.
    fn auth_time() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<u64>().prop_map(|t| json!(t)),
            (NOW - 2000..NOW + 100).prop_map(|t| json!(t)),
            any::<i64>().prop_map(|t| json!(t)),
            any::<f64>().prop_map(|t| json!(t)),
            ".{0,12}".prop_map(|s| json!(s)),
            Just(Value::Null),
        ]
    }

    /// Any `amr` value: arrays of methods (some hostile), or not an array.
    fn amr() -> impl Strategy<Value = Value> {
        let method = prop_oneof![Just("mfa".to_string()), Just("pwd".to_string()), "[ -~]{0,8}"];
        prop_oneof![
            proptest::collection::vec(method, 0..70).prop_map(|v| json!(v)),
            ".{0,12}".prop_map(|s| json!(s)),
            any::<i64>().prop_map(|n| json!(n)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever a signed token says about its authentication, the step-up route lets it
        /// through exactly when `amr` is a well-formed array naming `mfa` and `auth_time` a
        /// NumericDate at most 900 seconds old (and not beyond the leeway ahead); every
        /// other token gets a stable refusal, never a panic.
        #[test]
        fn step_up_decides_only_from_well_formed_recent_mfa(amr in amr(), auth_time in auth_time()) {
            let (p, _) = stepup_policy();
            let h = Harness::new(engine_with(&p));
            let mut c = claims("mia", &["owner"]);
            c.custom["amr"] = amr.clone();
            if !auth_time.is_null() {
                c.custom["auth_time"] = auth_time.clone();
            }
            let d = h.decide(&get("https://acme.app.test/stepup").bearer(&ed_token(c)));
            let list_ok = amr.as_array().is_some_and(|a| {
                a.len() <= 64
                    && a.iter().all(|m| m.as_str().is_some_and(gatehouse_core::identity::header_safe))
            });
            let t = match &auth_time {
                Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
                _ => None,
            };
            let has_mfa = amr.as_array().is_some_and(|a| a.iter().any(|m| m == "mfa"));
            let fresh = t.is_some_and(|t| t <= NOW + 30 && NOW.saturating_sub(t) <= 900);
            let want = if !list_ok || (!auth_time.is_null() && t.is_none()) {
                "token_malformed"
            } else if t.is_some_and(|t| t > NOW + 30) {
                "token_not_yet_valid"
            } else if has_mfa && fresh {
                "allow"
            } else {
                "step_up_required"
            };
            let got = match &d {
                Decision::Allow(_) => "allow",
                d => d.reason().unwrap().as_str(),
            };
            prop_assert_eq!(got, want, "amr {} auth_time {}", amr, auth_time);
        }
    }
}
