//! One test per check of the decision engine, through `Engine::decide`.

mod common;

use common::*;
use gatehouse_core::{apikey, Decision};
use serde_json::json;

fn viewer() -> String {
    ed_token(claims("alice", &["viewer"]))
}

#[test]
fn tenant_by_host_suffix_path_and_token() {
    let mut p = policy();
    let (key, prefix) = apikey::generate(&[5u8; 41]);
    p.orgs.get_mut("globex").unwrap().api_keys.push(gatehouse_core::policy::ApiKeyRecord {
        prefix,
        hash: apikey::hash_hex(API_KEY_SECRET, &key),
        subject: "ci-bot".into(),
        scopes: vec!["invoices:read".into()],
        roles: vec![],
        expires_at: None,
    });
    let h = Harness::new(engine_with(&p));
    let t = viewer();
    let ok = |d: Decision, org: &str| match d {
        Decision::Allow(a) => assert_eq!(a.org, org),
        other => panic!("{other:?}"),
    };
    ok(h.decide(&get("https://acme.app.test/docs").bearer(&t)), "acme");
    ok(h.decide(&get("https://EU.Acme.test:8443/docs").bearer(&t)), "acme");
    // Shared host: the token's org claim picks the tenant, verification confirms it.
    ok(h.decide(&get("https://api.shared.test/docs").bearer(&t)), "acme");
    // Path prefix on a segment boundary.
    ok(h.decide(&get("https://api.shared.test/t/globex/invoices").header("x-api-key", &key)), "globex");
    assert_eq!(h.reason(&get("https://api.shared.test/t/globexx/docs")), "tenant_unknown");
    // API key alone selects its org.
    ok(h.decide(&get("https://api.shared.test/invoices").bearer(&key)), "globex");
    // Nothing names a tenant.
    assert_eq!(h.reason(&get("https://nobody.test/docs")), "tenant_unknown");
    // The API key of globex at acme's host.
    assert_eq!(h.reason(&get("https://acme.app.test/invoices").header("x-api-key", &key)), "tenant_mismatch");
}

#[test]
fn client_ip_and_ip_rules() {
    let h = Harness::new(engine());
    let t = viewer();
    let r = |peer: &str| get("https://acme.app.test/docs").bearer(&t).peer(peer);
    assert_eq!(h.reason(&r("203.0.113.10")), "allow");
    assert_eq!(h.reason(&r("::ffff:203.0.113.10")), "allow");
    assert_eq!(h.reason(&r("2001:db8::5")), "allow");
    assert_eq!(h.reason(&r("203.0.113.66")), "ip_denied");
    assert_eq!(h.reason(&r("198.51.100.1")), "ip_not_allowed");
    // Spoofing: an untrusted peer's X-Forwarded-For is ignored.
    assert_eq!(h.reason(&r("198.51.100.1").header("x-forwarded-for", "203.0.113.10")), "ip_not_allowed");
    // Through a trusted proxy, the right-most untrusted hop counts.
    assert_eq!(h.reason(&r("10.1.1.1").header("x-forwarded-for", "203.0.113.10")), "allow");
    assert_eq!(h.reason(&r("10.1.1.1").header("x-forwarded-for", "203.0.113.10, 198.51.100.1")), "ip_not_allowed");
    assert_eq!(h.reason(&r("10.1.1.1").header("x-forwarded-for", "203.0.113.66")), "ip_denied");
    assert_eq!(h.reason(&r("10.1.1.1").header("x-forwarded-for", "203.0.113.10, junk")), "client_ip_malformed");
    // Route-level allowlist (a /28 inside the org's /24).
    assert_eq!(h.reason(&get("https://acme.app.test/office").bearer(&t).peer("203.0.113.5")), "allow");
    assert_eq!(h.reason(&get("https://acme.app.test/office").bearer(&t).peer("203.0.113.20")), "ip_not_allowed");
}

#[test]
fn geo_rules_and_country_sources() {
    let h = Harness::new(engine());
    let t = viewer();
    let acme = || get("https://acme.app.test/docs").bearer(&t);
    assert_eq!(h.reason(&acme().country("KP")), "geo_denied");
    assert_eq!(h.reason(&acme().country("DE")), "allow");
    assert_eq!(h.reason(&acme()), "allow", "deny-only rules admit unknown countries");
    // initech allows only DE and FR; anonymous optional route.
    let ini = || get("https://initech.test/docs");
    assert_eq!(h.reason(&ini().country("fr")), "allow");
    assert_eq!(h.reason(&ini().country("US")), "geo_not_allowed");
    assert_eq!(h.reason(&ini()), "geo_unknown");
    // The country header counts only from a trusted proxy.
    assert_eq!(h.reason(&ini().header("cf-ipcountry", "DE")), "geo_unknown");
    assert_eq!(h.reason(&ini().header("cf-ipcountry", "DE").peer("10.2.2.2")), "allow");
}

#[test]
fn access_permissions_roles_features_teams_mfa_methods() {
    let h = Harness::new(engine());
    let at = |path: &str, roles: &[&str]| {
        h.reason(&get(&format!("https://acme.app.test{path}")).bearer(&ed_token(claims("u", roles))))
    };
    assert_eq!(at("/invoices", &["viewer"]), "allow");
    assert_eq!(at("/invoices/42/pay", &["viewer"]), "permission_denied");
    assert_eq!(at("/invoices/42/pay", &["accountant"]), "allow");
    assert_eq!(at("/invoices/42/pay", &["owner"]), "allow");
    assert_eq!(at("/admin/users", &["editor"]), "role_required");
    assert_eq!(at("/admin/users", &["admin"]), "allow");
    assert_eq!(at("/admin", &["owner"]), "allow");
    assert_eq!(at("/ops", &["owner"]), "team_required");
    assert_eq!(at("/secure", &["owner"]), "mfa_required");
    let mut c = claims("u", &["viewer"]);
    c.custom["amr"] = json!(["pwd", "otp"]);
    assert_eq!(h.reason(&get("https://acme.app.test/secure").bearer(&ed_token(c))), "allow");
    // Feature by override until 2027-01-01 (NOW is 2027-01-15): expired, team tier lacks it.
    assert_eq!(at("/billing", &["owner"]), "feature_disabled");
    assert_eq!(h.reason(&get("https://acme.app.test/invoices").method("POST").bearer(&viewer())), "method_not_allowed");
    // Scopes narrow what roles grant.
    let mut c = claims("u", &["owner"]);
    c.custom["scope"] = json!("openid profile");
    assert_eq!(h.reason(&get("https://acme.app.test/invoices").bearer(&ed_token(c))), "scope_insufficient");
}

#[test]
fn feature_override_before_expiry() {
    let h = Harness::new(engine());
    let mut c = claims("u", &["owner"]);
    let early = 1_790_000_000; // 2026-09
    c.issued_at = Some(jwt_simple::prelude::Duration::from_secs(early));
    c.invalid_before = None;
    c.expires_at = Some(jwt_simple::prelude::Duration::from_secs(early + 60));
    let r = get("https://acme.app.test/billing").bearer(&ed_token(c));
    assert!(h.decide_at(&r, early).is_allow());
}

#[test]
fn credentials_missing_redirect_and_401() {
    let h = Harness::new(engine());
    match h.decide(&get("https://acme.app.test/invoices?x=1&y=2").header("accept", "text/html,application/xhtml+xml")) {
        Decision::Redirect(r) => {
            assert_eq!(
                r.location,
                "https://login.test/t/acme/login?return_to=https%3A%2F%2Facme%2Eapp%2Etest%2Finvoices%3Fx%3D1%26y%3D2"
            );
        }
        other => panic!("{other:?}"),
    }
    match h.decide(&get("https://acme.app.test/invoices")) {
        Decision::Deny(d) => {
            assert_eq!(d.status, 401);
            assert_eq!(d.reason.as_str(), "credential_missing");
            assert_eq!(d.headers, vec![("www-authenticate".to_string(), "Bearer realm=\"gatehouse\"".to_string())]);
        }
        other => panic!("{other:?}"),
    }
    // API clients (no text/html) and non-GET browsers get 401, not a redirect.
    assert_eq!(
        h.reason(&get("https://acme.app.test/admin/x").method("POST").header("accept", "text/html")),
        "credential_missing"
    );
    match h.decide(&get("https://acme.app.test/docs").bearer("garbage")) {
        Decision::Deny(d) => assert!(d.headers[0].1.contains("error=\"invalid_token\"")),
        other => panic!("{other:?}"),
    }
    for bad in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Token abc"] {
        assert_eq!(
            h.reason(&get("https://acme.app.test/docs").header("authorization", bad)),
            "credential_malformed",
            "{bad}"
        );
    }
    let t = viewer();
    assert_eq!(h.reason(&get("https://acme.app.test/docs").bearer(&t).bearer(&t)), "credential_malformed");
    assert_eq!(
        h.reason(&get("https://acme.app.test/docs").bearer(&t).header("x-api-key", "gh_x")),
        "credential_malformed"
    );
    // Public routes never read credentials; optional routes admit anonymous requests.
    assert_eq!(h.reason(&get("https://acme.app.test/healthz").bearer("garbage")), "allow");
    assert_eq!(h.reason(&get("https://acme.app.test/docs")), "allow");
}

#[test]
fn identity_headers_for_upstream() {
    let h = Harness::new(engine());
    let mut c = claims("alice", &["viewer", "accountant"]);
    c.custom["scope"] = json!("invoices:read openid");
    match h.decide(&get("https://acme.app.test/invoices").bearer(&ed_token(c))) {
        Decision::Allow(a) => {
            let hs: Vec<(&str, &str)> = a.upstream_headers().iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert!(hs.contains(&("x-gatehouse-subject", "alice")));
            assert!(hs.contains(&("x-gatehouse-org", "acme")));
            assert!(hs.contains(&("x-gatehouse-roles", "viewer,accountant")));
            assert!(hs.contains(&("x-gatehouse-scopes", "invoices:read openid")));
            assert!(hs.contains(&("x-gatehouse-auth", "jwt")));
            assert_eq!(a.route, "invoices");
        }
        other => panic!("{other:?}"),
    }
    assert!(h.engine.is_identity_header("X-Gatehouse-Subject"));
    assert!(!h.engine.is_identity_header("x-request-id"));
}

#[test]
fn api_keys() {
    let mut p = policy();
    let (key, prefix) = apikey::generate(&[9u8; 41]);
    let (expired_key, expired_prefix) = apikey::generate(&[10u8; 41]);
    let rec = |prefix: String, k: &str, exp: Option<u64>| gatehouse_core::policy::ApiKeyRecord {
        prefix,
        hash: apikey::hash_hex(API_KEY_SECRET, k),
        subject: "deploy-bot".into(),
        scopes: vec!["invoices:read".into()],
        roles: vec![],
        expires_at: exp,
    };
    let acme = p.orgs.get_mut("acme").unwrap();
    acme.api_keys.push(rec(prefix.clone(), &key, None));
    acme.api_keys.push(rec(expired_prefix, &expired_key, Some(NOW - 1)));
    let h = Harness::new(engine_with(&p));
    let r = |k: &str| get("https://acme.app.test/invoices").header("x-api-key", k);
    match h.decide(&r(&key)) {
        Decision::Allow(a) => {
            let id = a.identity.unwrap();
            assert_eq!(id.subject, "deploy-bot");
            assert_eq!(id.credential_id.as_deref(), Some(prefix.as_str()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.reason(&get("https://acme.app.test/invoices/1/pay").bearer(&key)), "permission_denied");
    assert_eq!(h.reason(&r(&expired_key)), "api_key_expired");
    // Right prefix, wrong secret.
    let (other, _) = apikey::generate(&[11u8; 41]);
    let forged = format!("gh_{prefix}_{}", &other[16..]);
    assert_eq!(h.reason(&r(&forged)), "api_key_invalid");
    // Unknown prefix.
    assert_eq!(h.reason(&r(&other)), "api_key_invalid");
    assert_eq!(h.reason(&r("gh_short")), "api_key_malformed");
    // Without the edge secret, keys cannot be checked: fail closed.
    let no_secret = gatehouse_core::EdgeSecrets { api_key_secret: None, ..secrets() };
    let h2 = Harness::new(gatehouse_core::Engine::new(&p, info(), &no_secret).unwrap());
    assert_eq!(h2.reason(&r(&key)), "api_key_unverifiable");
}

/// A policy route that happens to be called like the engine's fallback route: a request
/// that matches no route is limited as `decide` limits it, not by that route's limit, when
/// taken in steps too.
#[test]
fn the_session_keeps_the_fallback_route_apart_from_a_route_named_like_it() {
    let mut p = policy();
    p.routes.insert(
        0,
        gatehouse_core::policy::Route {
            name: "default".into(),
            path: "/only-here".into(),
            limit: Some(gatehouse_core::policy::RateLimit { requests: 1, per_secs: 86_400, burst: None }),
            ..Default::default()
        },
    );
    let (one, stepped) = (Harness::new(engine_with(&p)), Harness::new(engine_with(&p)));
    let t = ed_token(claims("a", &["viewer"]));
    let unrouted = get("https://acme.app.test/nowhere/else").bearer(&t);
    for i in 0..3 {
        let (a, b) = (one.decide(&unrouted), stepped.decide_with_rate_steps(&unrouted));
        assert_eq!(a, b, "request {i}");
        match &a {
            Decision::Allow(allow) => assert_eq!(allow.route, "default", "the fallback route"),
            other => panic!("request {i}: {other:?}"),
        }
    }
}

/// Hosts with an asynchronous store (Workers, Spin) take the rate decision in steps;
/// the answers, headers included, are the same as `decide`'s.
#[test]
fn rate_steps_decide_like_decide() {
    let mut p = policy();
    p.routes.insert(
        0,
        gatehouse_core::policy::Route {
            name: "g".into(),
            path: "/t/globex/pub".into(),
            auth: gatehouse_core::policy::AuthMode::Public,
            ..Default::default()
        },
    );
    let (one, stepped) = (Harness::new(engine_with(&p)), Harness::new(engine_with(&p)));
    let t1 = ed_token(claims("a", &["viewer"]));
    let t2 = ed_token(claims("b", &["viewer"]));
    let office = |t: &str| get("https://acme.app.test/office").bearer(t).peer("203.0.113.1");
    let reqs = [
        get("https://x.test/t/globex/pub"),
        office(&t1),
        office(&t2),
        office(&t1),
        get("https://acme.app.test/docs").bearer(&t1),
        get("https://acme.app.test/docs"),
    ];
    let mut denied = 0;
    for (i, r) in reqs.iter().cycle().take(30).enumerate() {
        let (a, b) = (one.decide(r), stepped.decide_with_rate_steps(r));
        assert_eq!(a, b, "request {i}");
        denied += matches!(a, Decision::Deny(ref d) if d.reason.as_str() == "rate_limited") as usize;
    }
    assert!(denied >= 5, "the sequence reaches the limits ({denied})");
    // A store that answered fewer steps than asked (and no refusal) fails closed; the
    // steps are those of the request's organisation.
    let h = Harness::new(engine_with(&p));
    let gatehouse_core::Begun::Pending(pending) = h.begin(&office(&t1)) else { panic!("a limited route is pending") };
    assert_eq!(pending.org(), "acme");
    assert!(!pending.steps().is_empty());
    let short = pending.steps().len() - 1;
    let answers: Vec<_> = pending.steps()[..short].iter().map(|s| h.rates.check_rendered(&s.key, &s.gcra, 0)).collect();
    match pending.finish(&h.engine, &answers) {
        Decision::Deny(d) => assert_eq!(d.reason.as_str(), "internal_error"),
        other => panic!("{other:?}"),
    }
    // A route without limits is decided at once.
    assert!(matches!(h.begin(&get("https://acme.app.test/docs")), gatehouse_core::Begun::Done(_)));
}

#[test]
fn rate_limits_per_org_route_user() {
    let h = Harness::new(engine());
    // globex (free tier): 5 per minute for the whole org, on a public path.
    let mut p = policy();
    p.routes.insert(
        0,
        gatehouse_core::policy::Route {
            name: "g".into(),
            path: "/t/globex/pub".into(),
            auth: gatehouse_core::policy::AuthMode::Public,
            ..Default::default()
        },
    );
    let hg = Harness::new(engine_with(&p));
    for i in 0..5 {
        assert_eq!(hg.reason(&get("https://x.test/t/globex/pub")), "allow", "{i}");
    }
    match hg.decide(&get("https://x.test/t/globex/pub")) {
        Decision::Deny(d) => {
            assert_eq!((d.status, d.reason.as_str()), (429, "rate_limited"));
            let names: Vec<&str> = d.headers.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(names, ["retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"]);
            assert_eq!(d.headers[0].1, "12");
        }
        other => panic!("{other:?}"),
    }
    // Route limit on /office: 2 per minute per org, independent of users.
    let t1 = ed_token(claims("a", &["viewer"]));
    let t2 = ed_token(claims("b", &["viewer"]));
    let office = |t: &str| get("https://acme.app.test/office").bearer(t).peer("203.0.113.1");
    assert_eq!(h.reason(&office(&t1)), "allow");
    assert_eq!(h.reason(&office(&t2)), "allow");
    assert_eq!(h.reason(&office(&t1)), "rate_limited");
    // Other routes are unaffected, and the allow carries RateLimit headers.
    match h.decide(&get("https://acme.app.test/docs").bearer(&t1)) {
        Decision::Allow(a) => assert!(a.response_headers.iter().any(|(k, _)| k == "ratelimit-remaining")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_requests_and_expired_bundles() {
    let h = Harness::new(engine());
    assert_eq!(h.reason(&get("https://acme.app.test/docs/../admin")), "request_malformed");
    assert_eq!(h.reason(&get("https://acme.app.test/docs/%2e%2e/admin")), "request_malformed");
    assert_eq!(h.reason(&get("https://acme.app.test/docs").header("x-big", &"a".repeat(20_000))), "request_malformed");
    let mut r = get("https://acme.app.test/docs");
    for i in 0..200 {
        r = r.header(&format!("x-{i}"), "1");
    }
    assert_eq!(h.reason(&r), "request_malformed");
    match h.decide_at(&get("https://acme.app.test/healthz"), NOW + 86_401) {
        Decision::Deny(d) => assert_eq!((d.status, d.reason.as_str()), (503, "bundle_expired")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn policy_validation_names_fields() {
    let mut p = policy();
    p.orgs.get_mut("acme").unwrap().tier = "platinum".into();
    p.routes[0].permission = Some("nocolon".into());
    p.orgs.get_mut("initech").unwrap().geo.allow.push("Germany".into());
    let issues = p.validate().unwrap_err();
    let text: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
    assert!(text.iter().any(|t| t == "orgs.acme.tier: names unknown tier `platinum`"), "{text:?}");
    assert!(text.iter().any(|t| t.starts_with("routes[0].permission:")), "{text:?}");
    assert!(text.iter().any(|t| t.starts_with("orgs.initech.geo.allow[2]:")), "{text:?}");
}

#[test]
fn filter_chain_of_checks_decides_like_decide() {
    use gatehouse_core::{Check, Context, Env, NoCountryLookup};
    let h = Harness::new(engine());
    let t = viewer();
    let reqs = vec![
        get("https://acme.app.test/invoices").bearer(&t),
        get("https://acme.app.test/invoices/1/pay").bearer(&t),
        get("https://acme.app.test/docs").peer("198.51.100.1"),
        get("https://acme.app.test/docs").country("KP"),
        get("https://initech.test/docs").country("US"),
        get("https://acme.app.test/admin/x").header("accept", "text/html"),
        get("https://nobody.test/"),
    ];
    let chain: [&[Check]; 4] = [
        &[Check::Tenant, Check::ClientIp, Check::Ip],
        &[Check::Tenant, Check::ClientIp, Check::Geo],
        &[Check::Tenant, Check::Credential, Check::Access],
        &[Check::Tenant, Check::RateLimit],
    ];
    for r in &reqs {
        let whole = h.decide(r);
        let pairs = r.pairs();
        let head = r.head(&pairs);
        let rates = gatehouse_core::MemoryRateStore::new(100, [1; 16]);
        let env = Env { now: NOW * 1_000_000_000, rates: &rates, countries: &NoCountryLookup, signatures: None };
        let mut ctx = Context::default();
        let mut staged = None;
        for checks in chain {
            if let Err(d) = h.engine.check(checks, &head, &mut ctx, &env) {
                staged = Some(d);
                break;
            }
        }
        let staged = staged.unwrap_or_else(|| h.engine.allow_context(&ctx));
        assert_eq!(staged.report().decision, whole.report().decision, "{}", r.url);
        assert_eq!(staged.reason(), whole.reason(), "{}", r.url);
        assert_eq!(staged.report().identity, whole.report().identity, "{}", r.url);
    }
    let read = h.engine.headers_read();
    for name in ["authorization", "cookie", "accept", "x-api-key", "x-forwarded-for", "cf-ipcountry"] {
        assert!(read.iter().any(|h| h == name), "{name} in {read:?}");
    }
}
