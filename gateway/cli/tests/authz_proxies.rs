//! The authorization service behind real proxies: nginx (`auth_request`), Caddy
//! (`forward_auth`) and Traefik (`forwardAuth`), each started from the shipped
//! configuration in deploy/integrations in front of an echo upstream, asking a real
//! `gatehouse authz` on loopback. For each: an allowed request reaches the upstream with
//! the identity and without the client's spoofed identity headers; every kind of refusal
//! reaches the client as the gateway would have sent it (status, `WWW-Authenticate`,
//! `Retry-After`, `RateLimit-*`, reason, body); a browser is sent to sign in with the
//! original URL as `return_to`; a rate limit of N lets exactly N requests through (the
//! decision is made and counted once per request). Envoy is not installable here: its
//! HTTP `ext_authz` mode is tested by sending the check requests Envoy sends.
//!
//! A proxy that is not installed prints `SKIPPED:`; `ensure_test_proxies` in
//! scripts/env.sh installs all three.

#[path = "authz_proxies/harness.rs"]
mod harness;
mod support;

use std::net::IpAddr;

use harness::{Authz, Kind, Proxy, Upstream, LIMIT};
use hyper::HeaderMap;
use serde_json::Value;
use support::*;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| panic!("not JSON: {s}"))
}

fn value<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The values of `name` (all of them: a proxy must not duplicate a field).
fn values<'h>(h: &'h HeaderMap, name: &str) -> Vec<&'h str> {
    h.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect()
}

const DENIED: &str = "127.0.0.9";

/// Everything one proxy must do.
async fn exercise(kind: Kind, proxy: &Proxy, authz: &Authz, up: &Upstream) {
    let a = proxy.addr;
    let what = kind.name();
    let auth = format!("Bearer {}", authz.token);
    let ctx = || format!("{what}\n-- proxy log:\n{}\n-- authz log:\n{}", proxy.logs(), authz.logs());
    let client: Option<IpAddr> = Some("127.0.0.2".parse().unwrap());

    // Allowed: the identity arrives, the client's own copies of it do not.
    let spoofed = [("x-gatehouse-subject", "root"), ("x-gatehouse-org", "evil"), ("x-gatehouse-roles", "admin")];
    let mut fields = vec![("authorization", auth.as_str())];
    fields.extend(spoofed);
    let (s, _, b) = send(a, get("acme.test", "/api/things?x=1", &fields), client).await;
    assert_eq!(s, 200, "{b}\n{}", ctx());
    let seen = json(&b);
    assert_eq!(seen["path"], "/api/things?x=1", "{what}");
    let h = &seen["headers"];
    assert_eq!(
        (h["x-gatehouse-subject"].as_str(), h["x-gatehouse-org"].as_str()),
        (Some("alice"), Some("acme")),
        "{what}: {b}"
    );
    assert_eq!(h["x-gatehouse-roles"], "viewer", "{what}: {b}");
    assert_eq!(h["x-gatehouse-auth"], "jwt", "{what}: {b}");
    // An admin's token passes the admin route.
    let admin = format!("Bearer {}", authz.admin_token);
    let (s, _, b) = send(a, get("acme.test", "/admin/panel", &[("authorization", &admin)]), client).await;
    assert_eq!((s, json(&b)["headers"]["x-gatehouse-roles"].as_str()), (200, Some("admin")), "{what}: {b}");
    // A public route: no identity, and the spoofed one still never arrives.
    let (s, _, b) = send(a, get("acme.test", "/public/x", &spoofed), client).await;
    assert_eq!(s, 200, "{what}: {b}");
    let seen = json(&b);
    for (k, _) in spoofed {
        assert!(seen["headers"].get(k).is_none(), "{what}: {k} reached the upstream: {b}");
    }
    if kind != Kind::Nginx {
        // Caddy and Traefik strip the whole prefix (stock nginx can only clear the names
        // Gatehouse sets).
        let (_, _, b) = send(a, get("acme.test", "/public/x", &[("x-gatehouse-anything", "1")]), client).await;
        assert!(json(&b)["headers"].get("x-gatehouse-anything").is_none(), "{what}: {b}");
    }

    // Every kind of refusal, as the gateway sends it.
    type Case<'c> = (&'c str, &'c str, &'c str, Vec<(&'c str, &'c str)>, Option<&'c str>, u16, &'c str);
    let cases: Vec<Case> = vec![
        ("no credential", "acme.test", "/api", vec![], None, 401, "credential_missing"),
        ("bad token", "acme.test", "/api", vec![("authorization", "Bearer x.y.z")], None, 401, "token_malformed"),
        ("role", "acme.test", "/admin", vec![("authorization", &auth)], None, 403, "role_required"),
        ("denied address", "acme.test", "/api", vec![("authorization", &auth)], Some(DENIED), 403, "ip_denied"),
        (
            "X-Forwarded-For spoofed by the client",
            "acme.test",
            "/api",
            vec![("authorization", &auth), ("x-forwarded-for", "127.0.0.2")],
            Some(DENIED),
            403,
            "ip_denied",
        ),
        ("unknown tenant", "nobody.test", "/api", vec![], None, 404, "tenant_unknown"),
    ];
    // The conventions' own fields sent by the client: the proxy's config overwrites or
    // clears them (a client's X-Original-URL or X-Forwarded-Uri must not pick the host or
    // the path the check decides on).
    let mut cases = cases;
    let spoofed_conventions = match kind {
        Kind::Nginx => vec![
            ("x-original-url", "http://acme.test/public/x"),
            ("x-forwarded-uri", "/public/x"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-host", "acme.test"),
        ],
        _ => vec![("x-forwarded-uri", "/public/x"), ("x-forwarded-method", "GET"), ("x-forwarded-host", "acme.test")],
    };
    cases.push((
        "convention fields spoofed",
        "acme.test",
        "/api",
        spoofed_conventions,
        None,
        401,
        "credential_missing",
    ));
    let before = up.hits();
    for (case, host, path, fields, from, status, reason) in cases {
        let from = from.map(|f| f.parse().unwrap()).or(client);
        let (s, h, b) = send(a, get(host, path, &fields), from).await;
        assert_eq!((s, value(&h, "x-gatehouse-reason")), (status, Some(reason)), "{case}: {b}\n{}", ctx());
        assert_eq!(b, format!("{{\"error\":\"{reason}\"}}\n"), "{what}: {case}");
        assert_eq!(value(&h, "content-type"), Some("application/json"), "{what}: {case}");
        let www = values(&h, "www-authenticate");
        if status == 401 {
            assert_eq!(www.len(), 1, "{what}: {case}: {h:?}");
            assert!(www[0].starts_with("Bearer realm=\"gatehouse\""), "{what}: {case}: {www:?}");
        }
        if reason == "role_required" {
            assert!(www.is_empty(), "{what}: {case}: {www:?}");
        }
        for internal in ["x-gatehouse-reply", "x-gatehouse-status", "x-gatehouse-location"] {
            assert!(h.get(internal).is_none(), "{what}: {case}: {internal} reached the client");
        }
    }
    assert_eq!(up.hits(), before, "{what}: a refused request reached the upstream");

    // A path the engine refuses (dot segments), where the proxy passes it on as sent.
    let (s, h, _) = send(a, get("acme.test", "/public/../admin", &[]), client).await;
    match kind {
        Kind::Nginx => assert_eq!((s, value(&h, "x-gatehouse-reason")), (400, Some("request_malformed")), "{what}"),
        // Caddy and Traefik resolve the dots first: the request is decided as /admin.
        _ => assert!(s == 401 || s == 400, "{what}: {s}"),
    }

    // A browser without a session goes to sign in, back to the original URL afterwards.
    // (A client's own X-Forwarded-Proto does not change the scheme: the proxy sets it.)
    let browser = [("accept", "text/html,application/xhtml+xml"), ("x-forwarded-proto", "https")];
    let (s, h, b) = send(a, get("acme.test", "/api/page?x=1", &browser), client).await;
    assert_eq!(s, 302, "{what}: {b}\n{}", ctx());
    assert_eq!(
        values(&h, "location"),
        ["https://login.test/t/acme/login?return_to=http%3A%2F%2Facme%2Etest%2Fapi%2Fpage%3Fx%3D1"],
        "{what}"
    );
    if kind != Kind::Nginx {
        assert_eq!(b, "", "{what}: the redirect's body");
    }

    // A rate limit of LIMIT: exactly LIMIT through, then 429 with its fields.
    let decided = authz.decisions("allow");
    let before = up.hits();
    for i in 0..LIMIT {
        let (s, h, b) = send(a, get("limited.test", "/public/x", &[]), client).await;
        assert_eq!(s, 200, "{what}: request {i}: {b}\n{}", ctx());
        if kind == Kind::Nginx {
            let left = (LIMIT - 1 - i).to_string();
            assert_eq!(values(&h, "ratelimit-remaining"), [left.as_str()], "{what}: {h:?}");
        }
    }
    let (s, h, b) = send(a, get("limited.test", "/public/x", &[]), client).await;
    assert_eq!((s, value(&h, "x-gatehouse-reason")), (429, Some("rate_limited")), "{what}: {b}\n{}", ctx());
    assert_eq!(b, "{\"error\":\"rate_limited\"}\n", "{what}");
    let retry: u64 = value(&h, "retry-after").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(retry > 0 && retry <= 3600, "{what}: {h:?}");
    assert_eq!(values(&h, "ratelimit-remaining"), ["0"], "{what}: {h:?}");
    assert_eq!(values(&h, "ratelimit-limit").len(), 1, "{what}: {h:?}");
    assert_eq!(up.hits() - before, LIMIT, "{what}: the upstream got another number of requests");
    assert_eq!(authz.decisions("allow") - decided, LIMIT as u64, "{what}: decisions counted more than once");
}

async fn behind(kind: Kind) {
    let test = format!("authz_behind_{}", kind.name());
    let Some(binary) = kind.binary() else {
        skip(&test, &format!("{} is not installed (scripts/env.sh ensure_test_proxies)", kind.name()));
        return;
    };
    let up = harness::upstream().await;
    let authz = tokio::task::spawn_blocking(Authz::start).await.unwrap();
    let (http, upstream) = (authz.http, up.addr);
    let proxy = tokio::task::spawn_blocking(move || Proxy::start(kind, &binary, http, upstream)).await.unwrap();
    exercise(kind, &proxy, &authz, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_behind_nginx() {
    behind(Kind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_behind_caddy() {
    behind(Kind::Caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_behind_traefik() {
    behind(Kind::Traefik).await;
}

/// Envoy's HTTP `ext_authz` (Envoy is not installable here): the check request is the
/// original request under `authz.envoy_path_prefix`, as Envoy sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_http_ext_authz_checks() {
    // The shipped Envoy configuration asks under the prefix these checks use.
    let shipped =
        std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
            .join("../../deploy/integrations/envoy-http.yaml");
    assert!(std::fs::read_to_string(shipped).unwrap().contains("path_prefix: /envoy\n"));
    let authz = tokio::task::spawn_blocking(Authz::start).await.unwrap();
    let a = authz.http;
    let auth = format!("Bearer {}", authz.token);
    // Allowed: 200 with the identity, and the client's other identity-prefixed fields
    // named for removal.
    let (s, h, b) = send(
        a,
        get(
            "acme.test",
            "/envoy/api/x?q=1",
            &[("authorization", &auth), ("x-gatehouse-subject", "root"), ("x-gatehouse-extra", "1")],
        ),
        None,
    )
    .await;
    assert_eq!((s, b.as_str()), (200, ""), "{}", authz.logs());
    assert_eq!(value(&h, "x-gatehouse-subject"), Some("alice"));
    assert_eq!(value(&h, "x-envoy-auth-headers-to-remove"), Some("x-gatehouse-extra"));
    // Refusals as the gateway sends them.
    let (s, h, b) = send(a, get("acme.test", "/envoy/api/x", &[]), None).await;
    assert_eq!(
        (s, value(&h, "x-gatehouse-reason"), b.as_str()),
        (401, Some("credential_missing"), "{\"error\":\"credential_missing\"}\n")
    );
    assert!(value(&h, "www-authenticate").is_some_and(|v| v.starts_with("Bearer ")));
    let (s, h, _) = send(a, get("acme.test", "/envoy/admin", &[("authorization", &auth)]), None).await;
    assert_eq!((s, value(&h, "x-gatehouse-reason")), (403, Some("role_required")));
    // The prefix is what names Envoy's convention: without it, or with another
    // convention's fields under it, the check is malformed (fail closed).
    for (path, fields) in [
        ("/api/x", vec![("authorization", auth.as_str())]),
        (
            "/envoy/admin",
            vec![("x-forwarded-uri", "/public/x"), ("x-forwarded-method", "GET"), ("x-forwarded-host", "acme.test")],
        ),
        ("/envoy/admin", vec![("x-original-uri", "/public/x"), ("x-original-method", "GET")]),
    ] {
        let (s, h, _) = send(a, get("acme.test", path, &fields), None).await;
        assert_eq!((s, value(&h, "x-gatehouse-reason")), (400, Some("request_malformed")), "{path} {fields:?}");
    }
    // A browser is redirected, the original URL (without the prefix) in return_to.
    let (s, h, _) = send(a, get("acme.test", "/envoy/page", &[("accept", "text/html")]), None).await;
    assert_eq!(s, 302);
    assert_eq!(
        value(&h, "location"),
        Some("https://login.test/t/acme/login?return_to=http%3A%2F%2Facme%2Etest%2Fpage")
    );
    // The listener's own health check.
    let (s, _, b) = send(a, get("authz", "/healthz", &[]), None).await;
    assert_eq!((s, b.as_str()), (200, "ok\n"));
}
