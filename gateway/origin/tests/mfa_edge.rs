//! The tokens the origin's MFA issues, as a gateway sees them: the real bundle of a real
//! origin opened and run by `gatehouse_core::Engine` on a route with
//! `require_mfa = { max_age = "15m" }`. A password-only session gets the RFC 9470
//! challenge (API) or the step-up page (browser); after the origin's step-up the same
//! session passes, and fifteen minutes later it is stale again.

use gatehouse_core::{BundleInfo, Decision, EdgeSecrets, Engine, Env, MemoryRateStore, NoCountryLookup, RequestHead};
use serde_json::json;

#[path = "mfa_support/harness.rs"]
mod harness;
use harness::*;

/// The edge's engine from the origin's signed bundle (pinned key, like an edge).
async fn edge(o: &Origin) -> Engine {
    let (s, _, bytes) = call("GET", &format!("{}/v1/bundles/eu-west", o.url), Some(EDGE), None, &[]).await;
    assert_eq!(s, 200);
    let pinned = jwt_simple::prelude::Ed25519PublicKey::from_pem(&o.bundle_public_pem).unwrap().to_bytes();
    let pinned: [u8; 32] = pinned.try_into().unwrap();
    let body = gatehouse_core::bundle::open(&bytes, &pinned, now()).unwrap();
    let info = BundleInfo {
        revision: body.revision,
        region: body.region.clone(),
        issued_at: body.issued_at,
        expires_at: body.expires_at,
    };
    let secrets = EdgeSecrets {
        api_key_secret: Some(b"secret-secret-secret-secret-secret-12345".to_vec()),
        ..Default::default()
    };
    Engine::new(&body.policy, info, &secrets).unwrap()
}

/// The engine's decision on `GET https://app.acme.test/admin` with `headers`, at `at`.
fn decide(e: &Engine, headers: &[(&str, &str)], at: u64) -> Decision {
    let rates = MemoryRateStore::new(1000, [7; 16]);
    let head = RequestHead {
        method: "GET",
        scheme: "https",
        host: "app.acme.test",
        path: "/admin",
        query: None,
        headers,
        peer: "203.0.113.9".parse().unwrap(),
        platform_country: None,
    };
    e.decide(&head, &Env { now: at * 1_000_000_000, rates: &rates, countries: &NoCountryLookup, signatures: None })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_accepts_the_stepped_up_session_and_challenges_the_others() {
    let root = tempfile::tempdir().unwrap();
    let o = start(root.path()).await;
    create_org(&o, "acme").await;
    let (s, mut tpl) = js("GET", &format!("{}/v1/policy/template", o.url), Some(OPERATOR), None).await;
    assert_eq!(s, 200, "{tpl}");
    let route = json!({ "name": "admin", "path": "/admin", "require_mfa": { "max_age": "15m" } });
    tpl["routes"].as_array_mut().unwrap().insert(0, route);
    let (s, v) = js("PUT", &format!("{}/v1/policy/template", o.url), Some(OPERATOR), Some(tpl)).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = password(&o, "acme", "owner@acme.test", "owner password 1").await;
    let pwd_only = v["access_token"].as_str().unwrap().to_string();
    let (s, _) = js(
        "PUT",
        &format!("{}/v1/orgs/acme/policy", o.url),
        Some(&pwd_only),
        Some(json!({ "policy": { "hosts": ["app.acme.test"] } })),
    )
    .await;
    assert_eq!(s, 200);
    let t0 = early_in_step().await;
    let (_, secret, _) = enrol_totp(&o, "acme", &pwd_only, "owner@acme.test", t0).await;
    let e = edge(&o).await;

    // A password-only session: the RFC 9470 challenge for an API client...
    let bearer = format!("Bearer {pwd_only}");
    match decide(&e, &[("authorization", &bearer)], now()) {
        Decision::Deny(d) => {
            assert_eq!((d.status, d.reason.as_str()), (401, "step_up_required"));
            let www = &d.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("www-authenticate")).unwrap().1;
            assert!(www.contains("error=\"insufficient_user_authentication\""), "{www}");
            assert!(www.contains("max_age=\"900\"") && www.contains("acr_values=\"urn:gatehouse:mfa\""), "{www}");
        }
        other => panic!("{other:?}"),
    }
    // ...and the origin's step-up page for a browser (its session cookie).
    let cookie = format!("gh_session={pwd_only}");
    match decide(&e, &[("cookie", &cookie), ("accept", "text/html")], now()) {
        Decision::Redirect(r) => {
            let want = format!("{}/t/acme/stepup?return_to=", o.url);
            assert!(r.location.starts_with(&want) && r.location.contains("max_age=900"), "{}", r.location);
            assert_eq!(r.reason.as_str(), "step_up_required");
        }
        other => panic!("{other:?}"),
    }

    // The origin's step-up: the same session passes, with the fresh auth_time.
    let code = generator(&secret, "owner@acme.test").generate(t0 + 30).to_string();
    let (s, v) =
        js("POST", &format!("{}/t/acme/mfa/step-up", o.url), Some(&pwd_only), Some(json!({ "otp": code }))).await;
    assert_eq!(s, 200, "{v}");
    let stepped = v["access_token"].as_str().unwrap().to_string();
    let auth_time = claims(&stepped)["auth_time"].as_u64().unwrap();
    let bearer = format!("Bearer {stepped}");
    match decide(&e, &[("authorization", &bearer)], now()) {
        Decision::Allow(a) => {
            let id = a.identity.unwrap();
            assert_eq!((id.auth_time, id.acr.as_deref()), (Some(auth_time), Some("urn:gatehouse:mfa")));
        }
        other => panic!("{other:?}"),
    }
    // Past max_age it is stale again (the token itself has expired by then too, so the
    // check is at the edge of both: 900 s is the route's, the token lives 900 s).
    match decide(&e, &[("authorization", &bearer)], auth_time + 901) {
        Decision::Deny(d) => {
            assert!(matches!(d.reason.as_str(), "step_up_required" | "token_expired"), "{}", d.reason.as_str())
        }
        other => panic!("{other:?}"),
    }
}
