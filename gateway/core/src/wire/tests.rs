use super::*;
use crate::decision::{Deny, Redirect};

fn collect(f: impl FnOnce(&mut dyn FnMut(&str, &[u8]))) -> Vec<(String, String)> {
    let mut out = Vec::new();
    f(&mut |k: &str, v: &[u8]| out.push((k.to_string(), String::from_utf8(v.to_vec()).unwrap())));
    out
}

fn names(h: &[(String, String)]) -> Vec<&str> {
    h.iter().map(|(k, _)| k.as_str()).collect()
}

fn value<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

const CLIENT: &[(&str, &[u8])] = &[
    ("Host", b"api.acme.test"),
    ("accept", b"*/*"),
    ("Connection", b"keep-alive, X-Secret-Hop"),
    ("x-secret-hop", b"1"),
    ("keep-alive", b"timeout=5"),
    ("transfer-encoding", b"chunked"),
    ("proxy-authorization", b"Basic x"),
    ("http2-settings", b"AAA"),
    ("expect", b"100-continue"),
    ("x-gatehouse-subject", b"admin"),
    ("X-Gatehouse-Org", b"other"),
    ("x-forwarded-for", b" 198.51.100.7 "),
    ("X-Forwarded-For", b""),
    ("x-forwarded-for", b"10.0.0.1, 10.0.0.2"),
    ("x-forwarded-host", b"evil.test"),
    ("x-forwarded-proto", b"https"),
    ("upgrade", b"websocket"),
    ("authorization", b"Bearer t"),
];

#[test]
fn upstream_request_headers_follow_the_contract() {
    let connection = ConnectionTokens::of(CLIENT.iter().copied());
    let identity = vec![("x-gatehouse-subject".to_string(), "u1".to_string())];
    let up = UpstreamRequest {
        identity_prefix: "x-gatehouse-",
        connection: &connection,
        relay_upgrade: false,
        host: "api.acme.test",
        peer: "203.0.113.9",
        identity: &identity,
    };
    let out = collect(|emit| up.headers(CLIENT.iter().copied(), emit));
    assert_eq!(
        names(&out),
        [
            "host",
            "accept",
            "x-forwarded-proto",
            "authorization",
            "x-gatehouse-subject",
            "x-forwarded-for",
            "x-forwarded-host"
        ]
    );
    assert_eq!(value(&out, "x-gatehouse-subject"), Some("u1"));
    assert_eq!(value(&out, "x-forwarded-for"), Some("198.51.100.7, 10.0.0.1, 10.0.0.2, 203.0.113.9"));
    assert_eq!(value(&out, "x-forwarded-host"), Some("api.acme.test"));

    assert_eq!(value(&out, "host"), Some("api.acme.test"), "the decided host, not the client's");

    // A host that splices upgrades keeps `Upgrade` and writes its own `Connection`;
    // nothing else changes.
    let up = UpstreamRequest { relay_upgrade: true, host: "", ..up };
    let out = collect(|emit| up.headers(CLIENT.iter().copied(), emit));
    assert_eq!(value(&out, "upgrade"), Some("websocket"));
    assert_eq!(out.iter().filter(|(k, _)| k.eq_ignore_ascii_case("connection")).count(), 1);
    assert_eq!(value(&out, "connection"), Some("upgrade"));
    assert!(!names(&out).contains(&"x-secret-hop") && !names(&out).contains(&"keep-alive"));
    assert_eq!(value(&out, "x-forwarded-host"), None, "no host, no X-Forwarded-Host");
    assert_eq!(value(&out, "host"), None);
    assert!(is_relayable_upgrade(b" WebSocket ") && !is_relayable_upgrade(b"h2c"));
    assert!(!is_relayable_upgrade(b"websocket, h2c"));
}

#[test]
fn names_the_gateway_owns_are_stripped_in_every_spelling() {
    let connection = ConnectionTokens::default();
    let up = UpstreamRequest {
        identity_prefix: "x-gatehouse-",
        connection: &connection,
        relay_upgrade: false,
        host: "acme.test",
        peer: "203.0.113.9",
        identity: &[],
    };
    for name in
        ["X_Gatehouse_Subject", "x_gatehouse-org", "X-GATEHOUSE_ROLES", "x_forwarded_for", "X_Forwarded_Host", "HOST"]
    {
        assert!(!up.passes(name), "{name}");
    }
    assert!(up.passes("x_request_id") && up.passes("x-gatehouse") && up.passes("x-gatehousex"));
    // An underscore spelling of X-Forwarded-For joins the chain instead of passing as is.
    let out = collect(|emit| up.headers([("X_Forwarded_For", &b"198.51.100.1"[..])], emit));
    assert_eq!(value(&out, "x-forwarded-for"), Some("198.51.100.1, 203.0.113.9"));
    assert!(!names(&out).contains(&"X_Forwarded_For"));
}

#[test]
fn what_the_gateway_adds_must_be_valid_fields() {
    let connection = ConnectionTokens::default();
    let identity = vec![
        ("x-gatehouse-subject".to_string(), "a\r\nx-gatehouse-org: root".to_string()),
        ("x-gatehouse-org".to_string(), "acme".to_string()),
        ("bad name".to_string(), "v".to_string()),
    ];
    let up = UpstreamRequest {
        identity_prefix: "x-gatehouse-",
        connection: &connection,
        relay_upgrade: false,
        host: "acme.test",
        peer: "::1",
        identity: &identity,
    };
    let out = collect(|emit| up.headers([], emit));
    assert_eq!(names(&out), ["host", "x-gatehouse-org", "x-forwarded-for", "x-forwarded-host"]);
    let ours = vec![
        ("ratelimit-limit".to_string(), "1\r\n".to_string()),
        ("ratelimit-remaining".to_string(), "0".to_string()),
    ];
    let out = collect(|emit| response_headers([], &ours, emit));
    assert_eq!(names(&out), ["ratelimit-remaining"]);
}

#[test]
fn connection_tokens_are_bounded() {
    let value = (0..40).map(|i| format!("x-{i}")).collect::<Vec<_>>().join(",");
    let t = ConnectionTokens::of([("connection", value.as_bytes())]);
    assert_eq!(t.count(), 40);
    assert!(t.names("x-0") && t.names("x-31") && !t.names("x-32"));
}

#[test]
fn another_identity_prefix_is_stripped_and_the_default_one_passes() {
    let connection = ConnectionTokens::default();
    let up = UpstreamRequest {
        identity_prefix: "x-auth-",
        connection: &connection,
        relay_upgrade: false,
        host: "h",
        peer: "::1",
        identity: &[],
    };
    assert!(!up.passes("X-Auth-User"));
    assert!(up.passes("x-gatehouse-subject"));
    let out = collect(|emit| up.headers([("x-forwarded-for", &b""[..])], emit));
    assert_eq!(value(&out, "x-forwarded-for"), Some("::1"));
}

#[test]
fn response_headers_drop_hops_and_yield_to_ours() {
    let upstream: &[(&str, &[u8])] = &[
        ("content-type", b"text/plain"),
        ("Connection", b"close, X-Internal"),
        ("x-internal", b"1"),
        ("transfer-encoding", b"chunked"),
        ("keep-alive", b"timeout=5"),
        ("RateLimit-Limit", b"999"),
        ("set-cookie", b"a=1"),
        ("set-cookie", b"b=2"),
    ];
    let ours = vec![("ratelimit-limit".to_string(), "10".to_string())];
    let out = collect(|emit| response_headers(upstream.iter().copied(), &ours, emit));
    assert_eq!(names(&out), ["content-type", "set-cookie", "set-cookie", "ratelimit-limit"]);
    assert_eq!(value(&out, "ratelimit-limit"), Some("10"));
}

#[test]
fn a_refusal_is_json_with_its_reason_and_never_a_success() {
    let r = Reply::deny(429, "rate_limited", &[("Retry-After".into(), "2".into())]);
    assert_eq!(r.status, 429);
    assert_eq!(names(&r.headers), ["content-type", "x-gatehouse-reason", "retry-after"]);
    assert_eq!(r.body, b"{\"error\":\"rate_limited\"}\n");
    // Statuses that are not refusals, header fields a filter cannot smuggle in, and reason
    // text that is not a code.
    let r = Reply::deny(
        200,
        "a\r\nx-gatehouse-subject: root",
        &[("a\r\nb".into(), "v".into()), ("k".into(), "v\r\nx: y".into())],
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.headers.len(), 2);
    assert_eq!(value(&r.headers, REASON_HEADER), Some(FILTER_DENIED));
    assert_eq!(r.body, b"{\"error\":\"filter_denied\"}\n");
    // A filter cannot set the fields the gateway writes itself (two lengths would
    // desynchronise the client connection).
    let owned: Vec<(String, String)> = [
        ("Content-Length", "0"),
        ("transfer-encoding", "chunked"),
        ("connection", "close"),
        ("content-type", "text/html"),
        ("x-gatehouse-reason", "ok"),
        ("date", "x"),
        ("location", "https://evil.test/"),
        ("retry-after", "3"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let r = Reply::deny(429, "rate_limited", &owned);
    assert_eq!(names(&r.headers), ["content-type", "x-gatehouse-reason", "retry-after"]);
    assert_eq!(value(&r.headers, "content-type"), Some("application/json"));
    for bad in ["", "Evil", &"a".repeat(65), "spaces here", "\u{fc}n\u{ef}code", "a\"b"] {
        assert_eq!(reason_text(bad), FILTER_DENIED, "{bad:?}");
    }
    assert_eq!(reason_text("demo_key_missing"), "demo_key_missing");
    assert_eq!(Reply::deny(100, "x", &[]).status, 403);
    assert_eq!(Reply::deny(600, "x", &[]).status, 403);
    assert_eq!(Reply::deny(503, "bundle_missing", &[]).status, 503);
    assert_eq!(Reply::refusal(ReasonCode::NoRoute), Reply::deny(ReasonCode::NoRoute.status(), "no_route", &[]));
}

#[test]
fn redirects_and_decisions() {
    let r = Reply::redirect("https://login.acme.test/t/acme/login?return_to=%2F");
    assert_eq!(
        (r.status, value(&r.headers, "location")),
        (302, Some("https://login.acme.test/t/acme/login?return_to=%2F"))
    );
    assert!(r.body.is_empty());
    assert!(Reply::redirect("https://x/\r\nset-cookie: a=1").headers.is_empty());
    let d = Decision::Deny(Deny {
        status: 401,
        reason: ReasonCode::CredentialMissing,
        headers: vec![("www-authenticate".into(), "Bearer realm=\"x\"".into())],
    });
    let r = Reply::for_decision(&d).unwrap();
    assert_eq!((r.status, value(&r.headers, "www-authenticate")), (401, Some("Bearer realm=\"x\"")));
    let d = Decision::Redirect(Redirect { location: "/login".into(), reason: ReasonCode::CredentialMissing });
    assert_eq!(Reply::for_decision(&d).unwrap().status, 302);
}

#[test]
fn header_text_names_and_tokens() {
    assert_eq!(header_text(b"Bearer abc.def"), Some("Bearer abc.def"));
    assert_eq!(header_text(b"a\tb"), Some("a\tb"));
    assert_eq!(header_text(b""), Some(""));
    assert_eq!(header_text("caf\u{e9}".as_bytes()), None);
    assert_eq!(header_text(b"a\nb"), None);
    assert_eq!(header_text(b"a\x7f"), None);
    assert!(is_field_name("x-gatehouse-reason") && is_field_name("RateLimit-Policy"));
    for bad in ["", "a b", "a:b", "a\r\n", "\u{e9}"] {
        assert!(!is_field_name(bad), "{bad:?}");
    }
    let t = ConnectionTokens::of([("connection", &b" Upgrade ,, close,\xff"[..]), ("CONNECTION", b"x-a")]);
    assert!(t.contains("upgrade") && t.contains("CLOSE") && t.names("X-A"));
    assert!(!t.names("keep-alive"));
    assert!(is_hop("Keep-Alive", &t) && is_hop("x-a", &t) && !is_hop("accept", &t));
}
