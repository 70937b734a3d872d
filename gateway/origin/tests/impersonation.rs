//! Impersonation end to end (issue 15 §1, part B): a real origin on loopback with real
//! libSQL files. The operator (and an admin holding `users:impersonate` where the
//! organisation allows it) starts one; its tokens carry `act` and never outlive it; every
//! request under it is attributed to the real actor in the audit log; the hosted
//! hand-off and the banner; the user's own audit view; ending it early, by the user, and
//! when its time is up; and every refusal with its reason code.

use std::path::Path;

use serde_json::{json, Value};

mod support;
use support::origin::{claims, create_org, free_port, js, sign_in, Origin, EDGE, OPERATOR};

const PASSWORD: &str = "a long password 1";

async fn start(root: &Path) -> Origin {
    let port = free_port();
    let mut toml = support::origin::config("eu-west", port, "127.0.0.1", &[]);
    toml.push_str("[impersonation]\nmax_minutes = 60\nhandoff_ttl_secs = 60\n");
    support::origin::launch(root, port, format!("http://127.0.0.1:{port}"), &toml).await
}

/// A user of acme with `role` and [`PASSWORD`]; their id.
async fn user(o: &Origin, email: &str, role: &str) -> String {
    let body = json!({ "email": email, "password": PASSWORD, "role": role });
    let (s, v) = js("POST", &format!("{}/v1/orgs/acme/users", o.url), Some(OPERATOR), Some(body)).await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

async fn access(o: &Origin, email: &str, password: &str) -> String {
    let (s, v) = sign_in(o, "acme", email, password, &[]).await;
    assert_eq!(s, 200, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

/// Start an impersonation as `by`; (status, answer).
async fn impersonate(o: &Origin, by: &str, body: Value) -> (u16, Value) {
    js("POST", &format!("{}/v1/orgs/acme/impersonations", o.url), Some(by), Some(body)).await
}

/// The audit records of acme with `action`.
async fn audit(o: &Origin, action: &str) -> Vec<Value> {
    let (s, v) =
        js("GET", &format!("{}/v1/orgs/acme/audit?action={action}&limit=1000", o.url), Some(OPERATOR), None).await;
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().unwrap().clone()
}

async fn tenant_sql(o: &Origin, sql: &str) {
    let id = o.app.tenant_id("acme").await.unwrap().unwrap();
    let db = o.app.store.tenant(&id, false).await.unwrap();
    db.lock().await.execute(sql, ()).await.unwrap();
}

fn code(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_operator_impersonates_a_user_and_everything_done_is_attributed() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path()).await;
    create_org(&o, "acme", "Acme", "free").await;
    let alice = user(&o, "alice@acme.test", "viewer").await;
    let (s, v) = impersonate(&o, OPERATOR, json!({ "user_id": alice, "reason": "ticket 42", "minutes": 10 })).await;
    assert_eq!(s, 201, "{v}");
    let ends_at = v["ends_at"].as_i64().unwrap();
    let token = v["access_token"].as_str().unwrap().to_string();
    let c = claims(&token);
    assert_eq!((c["sub"].as_str(), &c["act"]), (Some(alice.as_str()), &json!({ "sub": "operator" })));
    assert!(c["exp"].as_i64().unwrap() <= ends_at, "the access token never outlives the impersonation");
    assert!((ends_at - gatehouse_origin::now() - 600).abs() <= 2, "10 minutes");
    let im = v["impersonation"].clone();
    assert_eq!(
        (im["active"].as_bool(), im["reason"].as_str(), im["actor"].as_str()),
        (Some(true), Some("ticket 42"), Some("operator"))
    );

    // Requests under it: the user's own pages and the admin API, attributed to the operator.
    let (s, me) = js("PATCH", &format!("{}/t/acme/me", o.url), Some(&token), Some(json!({ "name": "Alice" }))).await;
    assert_eq!((s, me["email"].as_str()), (200, Some("alice@acme.test")), "{me}");
    let profile = audit(&o, "user.profile").await;
    assert_eq!(
        (profile[0]["actor"].as_str(), profile[0]["act"].as_str()),
        (Some(&*format!("user:{alice}")), Some("operator"))
    );
    let started = audit(&o, "impersonation.start").await;
    assert_eq!(
        (started[0]["actor"].as_str(), started[0]["target"].as_str()),
        (Some("operator"), Some(&*format!("user:{alice}")))
    );
    assert!(audit(&o, "token.issue").await.iter().any(|r| r["act"] == "operator"));

    // The person's credentials are not the impersonator's to change: no password change,
    // no new or removed factor, no step-up, no export of the person's data.
    let refused = [
        ("POST", "password/change", Some(json!({ "current_password": "x", "new_password": "a new password 9" }))),
        ("POST", "mfa/totp", Some(json!({ "name": "phone" }))),
        ("POST", "mfa/passkeys/register", None),
        ("POST", "mfa/step-up", Some(json!({}))),
        ("GET", "me/export", None),
    ];
    for (method, path, body) in refused {
        let (s, e) = js(method, &format!("{}/t/acme/{path}", o.url), Some(&token), body).await;
        assert_eq!((s, code(&e)), (403, "impersonation_forbidden"), "{method} {path}: {e}");
    }

    // Refresh works until the end, with `act`, and never beyond it.
    let body = json!({ "grant_type": "refresh_token", "refresh_token": v["refresh_token"] });
    let (s, r) = js("POST", &format!("{}/t/acme/token", o.url), None, Some(body)).await;
    assert_eq!(s, 200, "{r}");
    let rc = claims(r["access_token"].as_str().unwrap());
    assert_eq!(rc["act"]["sub"], "operator");
    assert!(rc["exp"].as_i64().unwrap() <= ends_at && r["expires_in"].as_i64().unwrap() <= 600);

    // The user sees it in their own audit (signed in themselves), with what was done as them.
    let own = access(&o, "alice@acme.test", PASSWORD).await;
    let (s, mine) = js("GET", &format!("{}/t/acme/me/audit?limit=500", o.url), Some(&own), None).await;
    assert_eq!(s, 200, "{mine}");
    let items = mine["items"].as_array().unwrap();
    assert!(items.iter().any(|r| r["action"] == "impersonation.start" && r["actor"] == "operator"));
    assert!(items.iter().any(|r| r["action"] == "user.profile" && r["act"] == "operator"));
    assert!(items.iter().all(|r| r.get("ip").is_none()), "no addresses in the self-service view");
    let (s, page) = js("GET", &format!("{}/t/acme/me/audit?limit=1", o.url), Some(&own), None).await;
    assert_eq!((s, page["items"].as_array().unwrap().len()), (200, 1));
    let after = page["next"].as_i64().unwrap();
    let (_, page2) = js("GET", &format!("{}/t/acme/me/audit?limit=1&after={after}", o.url), Some(&own), None).await;
    assert!(page2["items"][0]["seq"].as_i64().unwrap() > after);
    let (s, v2) = js("GET", &format!("{}/t/acme/me/audit?evil=1", o.url), Some(&own), None).await;
    assert_eq!((s, code(&v2)), (400, "invalid_query"));

    // The hosted hand-off: once, then the account page with the banner.
    let handoff = v["handoff_url"].as_str().unwrap();
    let (s, h, _) = support::origin::call("GET", handoff, None, None, &[]).await;
    assert_eq!((s, h["location"].to_str().unwrap()), (303, "/t/acme/account"));
    assert_eq!(
        (h["referrer-policy"].to_str().unwrap(), h["cache-control"].to_str().unwrap()),
        ("no-referrer", "no-store")
    );
    let cookie = h["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let hc = claims(cookie.split_once('=').unwrap().1);
    assert_eq!((hc["act"]["sub"].as_str(), hc["sid"].as_str()), (Some("operator"), im["session_id"].as_str()));
    let (s, _, again) = support::origin::call("GET", handoff, None, None, &[]).await;
    assert_eq!(s, 401, "single use: {}", String::from_utf8_lossy(&again));
    let (s, _, forged) =
        support::origin::call("GET", &format!("{}/t/acme/impersonate?token=ghi_x", o.url), None, None, &[]).await;
    assert_eq!(s, 401, "{}", String::from_utf8_lossy(&forged));
    for page in ["account", "mfa"] {
        let (s, _, body) =
            support::origin::call("GET", &format!("{}/t/acme/{page}", o.url), None, None, &[("cookie", &cookie)]).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(s, 200, "{page}: {body}");
        assert!(
            body.contains("Signed in as alice@acme.test by operator until") && body.contains("ticket 42"),
            "{page}: {body}"
        );
    }
    // The user's own session shows no banner.
    let own_cookie = format!("gh_session={own}");
    let (_, _, body) =
        support::origin::call("GET", &format!("{}/t/acme/account", o.url), None, None, &[("cookie", &own_cookie)])
            .await;
    assert!(!String::from_utf8_lossy(&body).contains("Signed in as"));

    // Ending it early: the session is revoked, its tokens and refresh tokens refused, the
    // bundle lists the session as revoked, and it is audited.
    let id = im["id"].as_str().unwrap();
    let url = format!("{}/v1/orgs/acme/impersonations/{id}", o.url);
    assert_eq!(js("DELETE", &url, Some(OPERATOR), None).await.0, 204);
    let (s, e) = js("GET", &format!("{}/t/acme/me", o.url), Some(&token), None).await;
    assert_eq!((s, code(&e)), (401, "session_revoked"));
    let body = json!({ "grant_type": "refresh_token", "refresh_token": r["refresh_token"] });
    assert_eq!(js("POST", &format!("{}/t/acme/token", o.url), None, Some(body)).await.0, 400);
    let (s, e) = js("DELETE", &url, Some(OPERATOR), None).await;
    assert_eq!((s, code(&e)), (409, "impersonation_ended"));
    let (s, e) = js("DELETE", &format!("{}/v1/orgs/acme/impersonations/im_nope", o.url), Some(OPERATOR), None).await;
    assert_eq!((s, code(&e)), (404, "impersonation_not_found"));
    let ended = audit(&o, "impersonation.end").await;
    assert_eq!(
        (ended[0]["actor"].as_str(), ended[0]["target"].as_str()),
        (Some("operator"), Some(&*format!("user:{alice}")))
    );
    let (s, list) = js("GET", &format!("{}/v1/orgs/acme/impersonations", o.url), Some(OPERATOR), None).await;
    assert_eq!(s, 200);
    let row = &list["items"][0];
    assert_eq!((row["active"].as_bool(), row["ended_by"].as_str()), (Some(false), Some("operator")));
    let (_, _, bundle) =
        support::origin::call("GET", &format!("{}/v1/bundles/eu-west", o.url), Some(EDGE), None, &[]).await;
    let sid = im["session_id"].as_str().unwrap();
    assert!(bundle.windows(sid.len()).any(|w| w == sid.as_bytes()), "the bundle revokes the session");
    assert_eq!(js("GET", &format!("{}/v1/orgs/acme/audit/verify", o.url), Some(OPERATOR), None).await.0, 200);
}

#[tokio::test]
async fn admins_impersonate_only_where_allowed_and_never_owners_nested_or_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path()).await;
    create_org(&o, "acme", "Acme", "free").await;
    let role = json!({ "permissions": ["users:impersonate", "users:write", "audit:read", "settings:read"] });
    let (s, v) = js("PUT", &format!("{}/v1/orgs/acme/roles/support", o.url), Some(OPERATOR), Some(role)).await;
    assert_eq!(s, 200, "{v}");
    let sam = user(&o, "sam@acme.test", "support").await;
    let bob = user(&o, "bob@acme.test", "viewer").await;
    let ada = user(&o, "ada@acme.test", "admin").await;
    let (_, owners) =
        js("GET", &format!("{}/v1/orgs/acme/users?email=owner@acme.test", o.url), Some(OPERATOR), None).await;
    let owner = owners["items"][0]["id"].as_str().unwrap().to_string();
    let support = access(&o, "sam@acme.test", PASSWORD).await;
    let admin = access(&o, "ada@acme.test", PASSWORD).await;
    let ok = |u: &str| json!({ "user_id": u, "reason": "support call" });

    // The default: the operator only. A plain admin lacks the permission.
    let (s, e) = impersonate(&o, &support, ok(&bob)).await;
    assert_eq!((s, code(&e)), (403, "impersonation_not_allowed"));
    let (s, e) = impersonate(&o, &admin, ok(&bob)).await;
    assert_eq!((s, code(&e)), (403, "permission_denied"));
    // The policy: set with settings:write, bounded by the region's limit.
    let purl = format!("{}/v1/orgs/acme/impersonation-policy", o.url);
    for (body, want) in [
        (json!({ "allow_admins": true, "max_minutes": 61 }), "invalid_duration"),
        (json!({ "allow_admins": true, "max_minutes": 0 }), "invalid_duration"),
        (json!({ "allow_admins": true }), "invalid_body"),
        (json!({ "allow_admins": true, "max_minutes": 15, "x": 1 }), "invalid_body"),
    ] {
        let (s, e) = js("PUT", &purl, Some(&admin), Some(body.clone())).await;
        assert_eq!((s, code(&e)), (400, want), "{body}");
    }
    let (s, e) = js("PUT", &purl, Some(&support), Some(json!({ "allow_admins": true, "max_minutes": 15 }))).await;
    assert_eq!((s, code(&e)), (403, "permission_denied"), "support lacks settings:write");
    let (s, p) = js("PUT", &purl, Some(&admin), Some(json!({ "allow_admins": true, "max_minutes": 15 }))).await;
    assert_eq!(s, 200, "{p}");
    let (s, p) = js("GET", &purl, Some(&support), None).await;
    assert_eq!((s, &p), (200, &json!({ "allow_admins": true, "max_minutes": 15, "region_max_minutes": 60 })));

    // Now the support admin may: for at most 15 minutes (the default duration then).
    let (s, v) = impersonate(&o, &support, ok(&bob)).await;
    assert_eq!(s, 201, "{v}");
    assert!((v["ends_at"].as_i64().unwrap() - gatehouse_origin::now() - 900).abs() <= 2);
    assert_eq!(claims(v["access_token"].as_str().unwrap())["act"]["sub"], format!("user:{sam}"));
    let nested_token = v["access_token"].as_str().unwrap().to_string();
    let (s, e) = impersonate(&o, &support, json!({ "user_id": bob, "reason": "x", "minutes": 16 })).await;
    assert_eq!((s, code(&e)), (400, "invalid_duration"));
    let (s, e) = impersonate(&o, &support, ok(&owner)).await;
    assert_eq!((s, code(&e)), (403, "impersonation_owner"));
    let (s, e) = impersonate(&o, &support, ok(&sam)).await;
    assert_eq!((s, code(&e)), (403, "impersonation_self"));
    // The operator may impersonate an owner, for up to the region's limit.
    let (s, v) = impersonate(&o, OPERATOR, json!({ "user_id": owner, "reason": "audit", "minutes": 60 })).await;
    assert_eq!(s, 201, "{v}");
    // No nesting: a token that has `act` starts nothing (the owner's has every permission).
    let owner_imp = v["access_token"].as_str().unwrap();
    let (s, e) = impersonate(&o, owner_imp, ok(&bob)).await;
    assert_eq!((s, code(&e)), (403, "impersonation_nested"));
    let (s, e) = impersonate(&o, &nested_token, ok(&ada)).await;
    assert_eq!((s, code(&e)), (403, "permission_denied"), "bob, a viewer, cannot");
    // Under the owner's impersonation an admin action is attributed to the operator.
    let (s, _) = js("PUT", &purl, Some(owner_imp), Some(json!({ "allow_admins": false, "max_minutes": 15 }))).await;
    assert_eq!(s, 200);
    let set = audit(&o, "impersonation.policy").await;
    assert_eq!((set[1]["actor"].as_str(), set[1]["act"].as_str()), (Some(&*format!("user:{owner}")), Some("operator")));
    assert_eq!(set[0]["act"], Value::Null, "the admin's own change has no act");
    let (s, e) = impersonate(&o, &support, ok(&bob)).await;
    assert_eq!((s, code(&e)), (403, "impersonation_not_allowed"), "the policy was withdrawn");

    // Invalid requests, each with its code.
    let long = "r".repeat(501);
    for (body, status, want) in [
        (json!({ "user_id": bob, "reason": "" }), 400, "invalid_reason"),
        (json!({ "user_id": bob, "reason": "   " }), 400, "invalid_reason"),
        (json!({ "user_id": bob, "reason": long }), 400, "invalid_reason"),
        (json!({ "user_id": bob, "reason": "a\u{0}b" }), 400, "invalid_reason"),
        (json!({ "user_id": bob, "reason": "ok", "minutes": 0 }), 400, "invalid_duration"),
        (json!({ "user_id": bob, "reason": "ok", "minutes": 61 }), 400, "invalid_duration"),
        (json!({ "user_id": bob, "reason": "ok", "minutes": -1 }), 400, "invalid_body"),
        (json!({ "user_id": bob, "reason": "ok", "scope": "x" }), 400, "invalid_body"),
        (json!({ "user_id": "u_nobody", "reason": "ok" }), 404, "user_not_found"),
        (json!({ "user_id": "' OR 1=1 --", "reason": "ok" }), 404, "user_not_found"),
    ] {
        let (s, e) = impersonate(&o, OPERATOR, body.clone()).await;
        assert_eq!((s, code(&e)), (status, want), "{body}");
    }
    let (s, _) = js("POST", &format!("{}/v1/orgs/acme/users/{bob}/deactivate", o.url), Some(OPERATOR), None).await;
    assert_eq!(s, 200);
    let (s, e) = impersonate(&o, OPERATOR, ok(&bob)).await;
    assert_eq!((s, code(&e)), (403, "user_disabled"));
    assert_eq!(js("POST", &format!("{}/v1/orgs/acme/suspend", o.url), Some(OPERATOR), None).await.0, 200);
    let (s, e) = impersonate(&o, OPERATOR, ok(&ada)).await;
    assert_eq!((s, code(&e)), (403, "tenant_suspended"));
}

#[tokio::test]
async fn it_ends_when_its_time_is_up_or_when_the_user_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path()).await;
    create_org(&o, "acme", "Acme", "free").await;
    let bob = user(&o, "bob@acme.test", "viewer").await;
    let (s, v) = impersonate(&o, OPERATOR, json!({ "user_id": bob, "reason": "first", "minutes": 5 })).await;
    assert_eq!(s, 201, "{v}");
    let (first, token) = (v["impersonation"].clone(), v["access_token"].as_str().unwrap().to_string());
    // Its time runs out (aged here rather than waited for): its tokens stop working at
    // once; the next list notes it expired, once.
    let past = gatehouse_origin::now() - 1;
    let sid = first["session_id"].as_str().unwrap();
    tenant_sql(&o, &format!("UPDATE impersonations SET ends_at = {past} WHERE session_id = '{sid}'")).await;
    tenant_sql(&o, &format!("UPDATE sessions SET expires_at = {past} WHERE id = '{sid}'")).await;
    let (s, e) = js("GET", &format!("{}/t/acme/me", o.url), Some(&token), None).await;
    assert_eq!((s, code(&e)), (401, "session_revoked"));
    let body = json!({ "grant_type": "refresh_token", "refresh_token": v["refresh_token"] });
    assert_eq!(
        js("POST", &format!("{}/t/acme/token", o.url), None, Some(body)).await.0,
        400,
        "no refresh after the end"
    );
    let list_url = format!("{}/v1/orgs/acme/impersonations", o.url);
    for _ in 0..2 {
        let (s, list) = js("GET", &list_url, Some(OPERATOR), None).await;
        assert_eq!(
            (s, list["items"][0]["active"].as_bool(), list["items"][0]["ended_by"].as_str()),
            (200, Some(false), Some("system"))
        );
    }
    let expired = audit(&o, "impersonation.expired").await;
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0]["actor"].as_str(), expired[0]["target"].as_str()),
        (Some("system"), Some(&*format!("user:{bob}")))
    );
    let (s, e) = js("DELETE", &format!("{list_url}/{}", first["id"].as_str().unwrap()), Some(OPERATOR), None).await;
    assert_eq!((s, code(&e)), (409, "impersonation_ended"));

    // The user ends one by ending its session in their own session list.
    let (_, v) = impersonate(&o, OPERATOR, json!({ "user_id": bob, "reason": "second" })).await;
    let sid = v["impersonation"]["session_id"].as_str().unwrap();
    let own = access(&o, "bob@acme.test", PASSWORD).await;
    let (s, mine) = js("GET", &format!("{}/t/acme/me/sessions", o.url), Some(&own), None).await;
    assert!(s == 200 && mine["items"].as_array().unwrap().iter().any(|x| x["id"] == sid), "{mine}");
    assert_eq!(js("DELETE", &format!("{}/t/acme/me/sessions/{sid}", o.url), Some(&own), None).await.0, 204);
    let (_, list) = js("GET", &list_url, Some(OPERATOR), None).await;
    let row = list["items"].as_array().unwrap().iter().find(|r| r["session_id"] == sid).unwrap().clone();
    assert_eq!((row["active"].as_bool(), row["ended_by"].as_str()), (Some(false), Some("session_revoked")));
    let ends = audit(&o, "impersonation.end").await;
    assert_eq!(ends.last().unwrap()["actor"], "system");
    assert_eq!(js("GET", &format!("{}/v1/orgs/acme/audit/verify", o.url), Some(OPERATOR), None).await.0, 200);
}
