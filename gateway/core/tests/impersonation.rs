//! Impersonation at the edge (issue 15): a token with RFC 8693 `act` (`{"sub": <actor>}`)
//! yields an identity with its actor and the upstream header `x-gatehouse-actor`; a
//! client-sent `x-gatehouse-actor` never passes; a malformed `act` refuses the token with
//! `token_act_invalid` (attack cases: wrong types, header text, oversized, nested
//! delegation chains).

mod common;

use common::*;
use gatehouse_core::wire::{ConnectionTokens, UpstreamRequest};
use gatehouse_core::Decision;
use serde_json::{json, Value};

const URL: &str = "https://acme.app.test/invoices";

/// A viewer's token for `sub` acted for as `act` says (`Value::Null`: no `act`).
fn token(sub: &str, act: Value) -> String {
    let mut c = claims(sub, &["viewer"]);
    if !act.is_null() {
        c.custom["act"] = act;
    }
    ed_token(c)
}

/// The upstream headers the allowed request carries: the identity's, and the client's
/// that pass (as every host writes them through `wire::UpstreamRequest`).
fn upstream(d: &Decision, client: &[(&str, &str)]) -> Vec<(String, String)> {
    let Decision::Allow(a) = d else { panic!("not allowed: {d:?}") };
    let conn = ConnectionTokens::default();
    let identity = a.upstream_headers();
    let up = UpstreamRequest {
        identity_prefix: "x-gatehouse-",
        connection: &conn,
        relay_upgrade: false,
        host: "acme.app.test",
        peer: "203.0.113.10",
        identity,
    };
    let mut out = Vec::new();
    up.headers(client.iter().map(|(k, v)| (*k, v.as_bytes())), |k, v| {
        out.push((k.to_string(), String::from_utf8_lossy(v).into_owned()))
    });
    out
}

#[test]
fn an_impersonation_token_names_its_actor_upstream() {
    let h = Harness::new(engine());
    let t = token("u_alice", json!({ "sub": "operator" }));
    let d = h.decide(&get(URL).bearer(&t));
    let Decision::Allow(a) = &d else { panic!("{d:?}") };
    let id = a.identity.as_ref().unwrap();
    assert_eq!((id.subject.as_str(), id.actor.as_deref()), ("u_alice", Some("operator")));
    let hs = upstream(&d, &[]);
    assert!(hs.contains(&("x-gatehouse-actor".into(), "operator".into())), "{hs:?}");
    assert!(hs.contains(&("x-gatehouse-subject".into(), "u_alice".into())));
    // Informational members besides `sub` are accepted (RFC 8693 allows them).
    let t = token("u_alice", json!({ "sub": "user:u_admin", "iss": "https://id.acme.test" }));
    assert_eq!(h.reason(&get(URL).bearer(&t)), "allow");
}

#[test]
fn without_act_there_is_no_actor_and_a_client_cannot_claim_one() {
    let h = Harness::new(engine());
    let client = [("x-gatehouse-actor", "operator"), ("X-Gatehouse-Actor", "user:evil"), ("x_gatehouse_actor", "x")];
    let mut r = get(URL).bearer(&token("u_bob", Value::Null));
    for (k, v) in client {
        r = r.header(k, v);
    }
    let d = h.decide(&r);
    let Decision::Allow(a) = &d else { panic!("{d:?}") };
    assert_eq!(a.identity.as_ref().unwrap().actor, None);
    let hs = upstream(&d, &client);
    assert!(!hs.iter().any(|(k, _)| k.to_ascii_lowercase().replace('_', "-") == "x-gatehouse-actor"), "{hs:?}");
    // Under an impersonation the client's copy is dropped and only the token's goes on.
    let d = h.decide(&get(URL).bearer(&token("u_bob", json!({ "sub": "operator" }))));
    let hs = upstream(&d, &client);
    let actors: Vec<&str> = hs.iter().filter(|(k, _)| k == "x-gatehouse-actor").map(|(_, v)| v.as_str()).collect();
    assert_eq!(actors, ["operator"]);
    assert!(h.engine.is_identity_header("X-Gatehouse-Actor"));
}

#[test]
fn a_malformed_act_refuses_the_token() {
    let h = Harness::new(engine());
    let many: serde_json::Map<String, Value> = (0..9).map(|i| (format!("m{i}"), json!(i))).collect();
    let mut too_many = many.clone();
    too_many.insert("sub".into(), json!("operator"));
    let cases: Vec<(&str, Value)> = vec![
        ("a string", json!("operator")),
        ("an array", json!(["operator"])),
        ("a number", json!(7)),
        ("null", Value::Null),
        ("true", json!(true)),
        ("an empty object", json!({})),
        ("sub missing", json!({ "iss": "https://id.acme.test" })),
        ("sub a number", json!({ "sub": 1 })),
        ("sub an object", json!({ "sub": { "sub": "operator" } })),
        ("sub empty", json!({ "sub": "" })),
        ("sub with a space", json!({ "sub": "operator x" })),
        ("sub with a comma", json!({ "sub": "operator,user:1" })),
        ("sub with a line break", json!({ "sub": "operator\r\nx-gatehouse-org: root" })),
        ("sub with a control character", json!({ "sub": "op\u{7f}" })),
        ("sub not ASCII", json!({ "sub": "opérateur" })),
        ("sub of 257 bytes", json!({ "sub": "a".repeat(257) })),
        ("a delegation chain", json!({ "sub": "user:u_admin", "act": { "sub": "operator" } })),
        ("too many members", Value::Object(too_many)),
    ];
    for (what, act) in cases {
        // `null` is written as a JSON null member (the helper leaves `Value::Null` out).
        let t = if act.is_null() {
            let mut c = claims("u_alice", &["viewer"]);
            c.custom["act"] = Value::Null;
            ed_token(c)
        } else {
            token("u_alice", act)
        };
        assert_eq!(h.reason(&get(URL).bearer(&t)), "token_act_invalid", "act {what}");
    }
    // At the bound exactly: 256 bytes of `sub` pass.
    let t = token("u_alice", json!({ "sub": "a".repeat(256) }));
    assert_eq!(h.reason(&get(URL).bearer(&t)), "allow");
}

#[test]
fn a_host_without_the_actor_in_its_identity_record_asks_the_engine() {
    let h = Harness::new(engine());
    let imp = token("u_alice", json!({ "sub": "operator" }));
    let plain = token("u_alice", Value::Null);
    let identity_of = |t: &str| match h.decide(&get(URL).bearer(t)) {
        Decision::Allow(a) => a.identity.unwrap(),
        other => panic!("{other:?}"),
    };
    // What a filter record carries: everything but the actor.
    let from_record = |t: &str| (*identity_of(t)).clone().with_actor(None);
    let ask = |r: &Req, id: &gatehouse_core::identity::Identity| {
        let pairs = r.pairs();
        h.engine.actor_of(&r.head(&pairs), id, NOW, None)
    };
    let by_bearer = get(URL).bearer(&imp);
    assert_eq!(ask(&by_bearer, &from_record(&imp)).as_deref(), Some("operator"));
    let by_cookie = get(URL).header("cookie", &format!("gh_session={imp}"));
    let session = match h.decide(&by_cookie) {
        Decision::Allow(a) => (*a.identity.unwrap()).clone().with_actor(None),
        other => panic!("{other:?}"),
    };
    assert_eq!(ask(&by_cookie, &session).as_deref(), Some("operator"));
    // Not an impersonation: nothing. Another credential than the identity's: nothing.
    assert_eq!(ask(&get(URL).bearer(&plain), &from_record(&plain)), None);
    let other = token("u_bob", json!({ "sub": "operator" }));
    assert_eq!(ask(&get(URL).bearer(&other), &from_record(&imp)), None, "a different subject");
    assert_eq!(ask(&get(URL), &from_record(&imp)), None, "no credential");
    let last = if imp.ends_with('A') { "B" } else { "A" };
    let forged = format!("{}{last}", &imp[..imp.len() - 1]);
    assert_eq!(ask(&get(URL).bearer(&forged), &from_record(&imp)), None, "a tampered token");
}
