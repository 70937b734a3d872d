//! End-to-end tests of the regional origin: real libSQL files, real HTTP on loopback.

use std::path::Path;

use gatehouse_origin::ROUTES;
use serde_json::{json, Value};

mod support;
use support::origin::{call, free_port, js as json_call, Origin, EDGE, OPERATOR};

/// Start an origin for `region` with `regions` (name → port) on loopback.
async fn start(root: &Path, region: &str, port: u16, regions: &[(&str, u16)]) -> Origin {
    let mut toml = support::origin::config(region, port, "127.0.0.1", regions);
    toml.push_str("max_failures = 3\nlockout_secs = 600\nmail_dir = \"mail\"\n");
    support::origin::launch(&root.join(region), port, format!("http://127.0.0.1:{port}"), &toml).await
}

async fn create_org(o: &Origin, slug: &str) -> Value {
    support::origin::create_org(o, slug, slug, "team").await
}

async fn sign_in(o: &Origin, slug: &str, email: &str, password: &str) -> (u16, Value) {
    support::origin::sign_in(o, slug, email, password, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_end_to_end() {
    let root = tempfile::tempdir().unwrap();
    let (pe, pu) = (free_port(), free_port());
    let regions = [("eu-west", pe), ("us-east", pu)];
    let eu = start(root.path(), "eu-west", pe, &regions).await;
    let us = start(root.path(), "us-east", pu, &regions).await;

    // --- tenants and residency
    let acme = create_org(&eu, "acme").await;
    create_org(&eu, "globex").await;
    let initech = create_org(&us, "initech").await;
    // The other region learns of the tenant (push), but holds none of its data.
    let (s, v) = json_call("GET", &format!("{}/t/initech/.well-known/openid-configuration", eu.url), None, None).await;
    assert_eq!(s, 421, "{v}");
    assert_eq!(v["error"], "wrong_region");
    assert_eq!(v["url"], format!("{}/t/initech/.well-known/openid-configuration", us.url));
    let (s, h, _) =
        call("GET", &format!("{}/t/initech/.well-known/jwks.json", eu.url), None, None, &[("accept", "text/html")])
            .await;
    assert_eq!(s, 307);
    assert!(h["location"].to_str().unwrap().starts_with(&us.url));
    let (s, _) = sign_in(&eu, "initech", "owner@initech.test", "owner password 1").await;
    assert_eq!(s, 421, "a sign-in for a tenant homed elsewhere is not served");
    let files = |o: &Origin| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(o.dir.join("data/tenants"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".db"))
            .collect();
        v.sort();
        v
    };
    let initech_db = format!("{}.db", initech["id"].as_str().unwrap());
    let acme_db = format!("{}.db", acme["id"].as_str().unwrap());
    assert!(files(&us).contains(&initech_db) && !files(&eu).contains(&initech_db), "{:?} {:?}", files(&eu), files(&us));
    assert!(files(&eu).contains(&acme_db) && !files(&us).contains(&acme_db));
    let (s, v) = json_call("POST", &format!("{}/v1/orgs", eu.url), Some(OPERATOR), Some(json!({ "slug": "umbrella", "name": "u", "tier": "team", "home_region": "us-east", "owner_email": "o@u.test", "owner_password": "owner password 1" }))).await;
    assert_eq!((s, v["url"].as_str()), (421, Some(format!("{}/v1/orgs", us.url).as_str())));

    // --- sign-in, generic error, lockout
    let (s, tok) = sign_in(&eu, "acme", "owner@acme.test", "owner password 1").await;
    assert_eq!(s, 200, "{tok}");
    let access = tok["access_token"].as_str().unwrap().to_string();
    let refresh = tok["refresh_token"].as_str().unwrap().to_string();
    let (s, unknown) = sign_in(&eu, "acme", "nobody@acme.test", "whatever password").await;
    assert_eq!(s, 401);
    let (s, adm) = json_call(
        "POST",
        &format!("{}/v1/orgs/acme/users", eu.url),
        Some(&access),
        Some(json!({ "email": "ada@acme.test", "password": "ada password 12", "role": "admin" })),
    )
    .await;
    assert_eq!((s, adm["role"].as_str()), (201, Some("admin")), "{adm}");
    for _ in 0..3 {
        let (s, v) = sign_in(&eu, "acme", "ada@acme.test", "wrong password!").await;
        assert_eq!((s, &v), (401, &unknown), "one generic error");
    }
    let (s, v) = sign_in(&eu, "acme", "ada@acme.test", "ada password 12").await;
    assert_eq!((s, &v), (401, &unknown), "locked: the right password gets the same error");

    // --- password reset (file mailer) clears the lockout; the token is single use
    let (s, known) = json_call(
        "POST",
        &format!("{}/t/acme/password/reset-request", eu.url),
        None,
        Some(json!({ "email": "ada@acme.test" })),
    )
    .await;
    let (s2, unknown_reset) = json_call(
        "POST",
        &format!("{}/t/acme/password/reset-request", eu.url),
        None,
        Some(json!({ "email": "nobody@acme.test" })),
    )
    .await;
    assert_eq!((s, &known), (s2, &unknown_reset), "the same answer with or without an account");
    assert_eq!(s, 202);
    // Creating ada mailed her a verification link; the reset requests, one reset mail.
    let mails: Vec<String> = std::fs::read_dir(eu.dir.join("mail"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .filter(|m| m.contains("\r\nSubject: Reset your password\r\n"))
        .collect();
    assert_eq!(mails.len(), 1, "one reset mail, to the known address only");
    let mail = mails[0].clone();
    assert!(mail.starts_with("To: ada@acme.test"), "{mail}");
    let reset_token = mail.split_whitespace().find(|w| w.starts_with("ghp_")).unwrap().to_string();
    let reset = json!({ "token": reset_token, "new_password": "ada new password 1" });
    let (s, _) = json_call("POST", &format!("{}/t/acme/password/reset", eu.url), None, Some(reset.clone())).await;
    assert_eq!(s, 204);
    let (s, v) = json_call("POST", &format!("{}/t/acme/password/reset", eu.url), None, Some(reset)).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "a reset token works once");
    let (s, ada) = sign_in(&eu, "acme", "ada@acme.test", "ada new password 1").await;
    assert_eq!(s, 200, "the reset cleared the lockout: {ada}");
    // Changing the password needs the current one and ends the other sessions.
    let ada_token = ada["access_token"].as_str().unwrap().to_string();
    let (_, other) = sign_in(&eu, "acme", "ada@acme.test", "ada new password 1").await;
    let change = |cur: &str| json!({ "current_password": cur, "new_password": "ada third password" });
    let (s, _) =
        json_call("POST", &format!("{}/t/acme/password/change", eu.url), Some(&ada_token), Some(change("wrong one!!")))
            .await;
    assert_eq!(s, 401);
    let (s, _) = json_call(
        "POST",
        &format!("{}/t/acme/password/change", eu.url),
        Some(&ada_token),
        Some(change("ada new password 1")),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = json_call(
        "POST",
        &format!("{}/t/acme/token", eu.url),
        None,
        Some(json!({ "grant_type": "refresh_token", "refresh_token": other["refresh_token"] })),
    )
    .await;
    assert_eq!(s, 400, "the other session ended");
    let (s, _) = json_call("GET", &format!("{}/v1/orgs/acme/users", eu.url), Some(&ada_token), None).await;
    assert_eq!(s, 200, "the session that changed the password goes on");
    let (s, _) = sign_in(&eu, "acme", "ada@acme.test", "ada third password").await;
    assert_eq!(s, 200);

    // --- refresh rotation and reuse detection
    let (s, r1) = json_call(
        "POST",
        &format!("{}/t/acme/token", eu.url),
        None,
        Some(json!({ "grant_type": "refresh_token", "refresh_token": refresh })),
    )
    .await;
    assert_eq!(s, 200, "{r1}");
    let refresh2 = r1["refresh_token"].as_str().unwrap().to_string();
    let (s, v) = json_call(
        "POST",
        &format!("{}/t/acme/token", eu.url),
        None,
        Some(json!({ "grant_type": "refresh_token", "refresh_token": refresh })),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "reuse refused");
    let (s, _) = json_call(
        "POST",
        &format!("{}/t/acme/token", eu.url),
        None,
        Some(json!({ "grant_type": "refresh_token", "refresh_token": refresh2 })),
    )
    .await;
    assert_eq!(s, 400, "reuse revoked the whole family");
    let (s, v) = json_call("GET", &format!("{}/v1/orgs/acme/users", eu.url), Some(&access), None).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("session_revoked")), "and its session");

    // --- cross-tenant attempts on every tenant admin route
    let (_, tok) = sign_in(&eu, "acme", "owner@acme.test", "owner password 1").await;
    let acme_token = tok["access_token"].as_str().unwrap().to_string();
    // Authorisation runs before any body is read, so every tenant route refuses the same
    // way whatever is sent: 403 with another tenant's token, 401 without one.
    let mut checked = 0;
    for (method, path, need, _) in ROUTES {
        if !path.starts_with("/v1/orgs/{slug}") {
            continue;
        }
        // Operator routes on one organisation (suspend, delete…) refuse the same way.
        assert!(need.contains(':') || *need == "operator", "{path}");
        let p = path
            .replace("{slug}", "globex")
            .replace("{id}", "x")
            .replace("{name}", "custom-role")
            .replace("{user}", "u_x");
        let (s, v) = json_call(method, &format!("{}{p}", eu.url), Some(&acme_token), Some(json!({}))).await;
        assert_eq!((s, v["error"].as_str()), (403, Some("wrong_tenant")), "{method} {p}");
        let (s, v) = json_call(method, &format!("{}{p}", eu.url), None, Some(json!({}))).await;
        assert_eq!((s, v["error"].as_str()), (401, Some("credential_missing")), "{method} {p} without a token");
        checked += 1;
    }
    assert_eq!(checked, ROUTES.iter().filter(|r| r.1.starts_with("/v1/orgs/{slug}")).count());
    assert!(checked >= 20, "{checked}");

    // The permission each route needs comes from ROUTES: a viewer reads, but does not write.
    let (s, v) = json_call(
        "POST",
        &format!("{}/v1/orgs/acme/users", eu.url),
        Some(&acme_token),
        Some(json!({ "email": "vic@acme.test", "password": "vic password 12", "role": "viewer" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (_, vt) = sign_in(&eu, "acme", "vic@acme.test", "vic password 12").await;
    let viewer = vt["access_token"].as_str().unwrap().to_string();
    let (s, _) = json_call("GET", &format!("{}/v1/orgs/acme/users", eu.url), Some(&viewer), None).await;
    assert_eq!(s, 200, "members:read");
    let (s, v) = json_call(
        "POST",
        &format!("{}/v1/orgs/acme/users", eu.url),
        Some(&viewer),
        Some(json!({ "email": "x@acme.test", "role": "viewer" })),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (403, Some("permission_denied")), "members:write");
    let (s, v) = json_call(
        "POST",
        &format!("{}/v1/orgs/acme/users", eu.url),
        Some(&acme_token),
        Some(json!({ "email": "x@acme.test", "role": "owner-ish" })),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("unknown_role")));

    // Bad input is a 4xx with a JSON reason code, never a bare framework error.
    let (s, _, b) = call(
        "POST",
        &format!("{}/v1/orgs/acme/users", eu.url),
        Some(&acme_token),
        Some(("application/json", String::new())),
        &[],
    )
    .await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_body")));
    let (s, v) = json_call(
        "POST",
        &format!("{}/v1/orgs/acme/users", eu.url),
        Some(&acme_token),
        Some(json!({ "email": "y@acme.test", "role": "viewer", "extra": 1 })),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_body")), "unknown fields are refused");
    let (s, v) = json_call(
        "POST",
        &format!("{}/v1/orgs/acme/users", eu.url),
        Some(&acme_token),
        Some(json!({ "email": "y@acme.test", "role": "viewer", "name": "x".repeat(70_000) })),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (413, Some("body_too_large")));
    let (s, v) = json_call("GET", &format!("{}/v1/orgs/acme/users?limit=many", eu.url), Some(&acme_token), None).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_query")));
    let (s, v) = json_call("GET", &format!("{}/v1/nothing-here", eu.url), None, None).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("no_route")));
    let (s, v) = json_call("PATCH", &format!("{}/v1/orgs", eu.url), None, None).await;
    assert_eq!((s, v["error"].as_str()), (405, Some("method_not_allowed")));
    let (s, v) = json_call(
        "POST",
        &format!("{}/t/acme/token", eu.url),
        None,
        Some(json!({ "grant_type": "client_credentials" })),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("unsupported_grant_type")));
    // Operator-only routes refuse a tenant admin.
    let (s, _) = json_call("GET", &format!("{}/v1/orgs", eu.url), Some(&acme_token), None).await;
    assert_eq!(s, 403);

    // --- hosted sign-in: CSRF, generic error, session cookie, no open redirect
    let (s, _) = json_call(
        "PUT",
        &format!("{}/v1/orgs/acme/policy", eu.url),
        Some(&acme_token),
        Some(json!({ "policy": { "hosts": ["acme.example.test", "*.acme.example.test"] } })),
    )
    .await;
    assert_eq!(s, 200);
    let (s, h, page) =
        call("GET", &format!("{}/t/acme/login?return_to=%22%3E%3Cscript%3E", eu.url), None, None, &[]).await;
    let page = String::from_utf8(page).unwrap();
    assert_eq!(s, 200);
    assert!(page.contains("&quot;&gt;&lt;script&gt;") && !page.contains("\"><script>"), "return_to is escaped: {page}");
    assert_eq!(h["x-frame-options"], "DENY");
    let csrf_cookie = h["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(h["set-cookie"].to_str().unwrap().contains("HttpOnly"));
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let form = |password: &str, return_to: &str, csrf: &str| {
        format!(
            "email=owner%40acme.test&password={}&csrf={csrf}&return_to={}",
            password.replace(' ', "+"),
            return_to.replace(':', "%3A").replace('/', "%2F")
        )
    };
    let post_form = |body: String, cookie: Option<String>| {
        let url = format!("{}/t/acme/login", eu.url);
        async move {
            let form = ("application/x-www-form-urlencoded", body);
            let cookie: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
            let (status, headers, page) = call("POST", &url, None, Some(form), &cookie).await;
            (status, headers, String::from_utf8(page).unwrap())
        }
    };
    let back = "https://app.acme.example.test/inbox";
    let (s, _, _) = post_form(form("owner password 1", back, &csrf), None).await;
    assert_eq!(s, 403, "no CSRF cookie");
    let (s, _, _) = post_form(form("owner password 1", back, "0000"), Some(csrf_cookie.clone())).await;
    assert_eq!(s, 403, "a token that is not the cookie's");
    let (s, _, b) = post_form(form("wrong password", back, &csrf), Some(csrf_cookie.clone())).await;
    assert!(s == 401 && b.contains("Invalid email or password."), "{s} {b}");
    let (s, h, _) = post_form(form("owner password 1", back, &csrf), Some(csrf_cookie.clone())).await;
    assert_eq!((s, h["location"].to_str().unwrap()), (303, back));
    let session = h
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("gh_session="))
        .unwrap();
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"), "{session}");
    let jwt = session.trim_start_matches("gh_session=").split(';').next().unwrap();
    let (s, _) = json_call("GET", &format!("{}/v1/orgs/acme", eu.url), Some(jwt), None).await;
    assert_eq!(s, 200, "the session cookie is an access token of the tenant");
    for evil in [
        "https://evil.test/",
        "https://acme.example.test.evil.test/",
        "https://user@acme.example.test/",
        "javascript:alert(1)",
        "//evil.test/",
    ] {
        let (s, h, b) = post_form(form("owner password 1", evil, &csrf), Some(csrf_cookie.clone())).await;
        assert!(s == 200 && h.get("location").is_none() && b.contains("Signed in"), "{evil}: {s} {h:?}");
    }

    // --- bundles: ETag, and a revocation reaches the bundle
    let (s, h, body) = call("GET", &format!("{}/v1/bundles/eu-west", eu.url), Some(EDGE), None, &[]).await;
    assert_eq!(s, 200);
    let etag = h["etag"].to_str().unwrap().to_string();
    let (s, _, _) =
        call("GET", &format!("{}/v1/bundles/eu-west", eu.url), Some(EDGE), None, &[("if-none-match", &etag)]).await;
    assert_eq!(s, 304);
    let (s, _, _) =
        call("GET", &format!("{}/v1/bundles/eu-west", eu.url), Some("wrong-edge-token-000000"), None, &[]).await;
    assert_eq!(s, 401);
    let pk = std::fs::read_to_string(eu.dir.join("bundle.pem")).unwrap();
    let kp = jwt_simple::prelude::Ed25519KeyPair::from_pem(&pk).unwrap();
    let pinned: [u8; 32] = kp.public_key().to_bytes().try_into().unwrap();
    let b = gatehouse_core::bundle::open(&body, &pinned, gatehouse_origin::now() as u64).unwrap();
    assert!(
        b.policy.orgs.contains_key("acme")
            && b.policy.orgs.contains_key("globex")
            && !b.policy.orgs.contains_key("initech")
    );
    let (s, _) = json_call("POST", &format!("{}/t/acme/logout", eu.url), Some(&acme_token), None).await;
    assert_eq!(s, 204);
    let (s, h, body) =
        call("GET", &format!("{}/v1/bundles/eu-west", eu.url), Some(EDGE), None, &[("if-none-match", &etag)]).await;
    assert_eq!(s, 200, "a logout changes the bundle");
    assert_ne!(h["etag"].to_str().unwrap(), etag);
    let b = gatehouse_core::bundle::open(&body, &pinned, gatehouse_origin::now() as u64).unwrap();
    assert!(!b.policy.revoked.sessions.is_empty(), "the ended session is revoked at the edge");

    // --- edge decision events: a retried batch is stored once; other regions' tenants skipped
    let event = |org: &str, i: u32| json!({ "org": org, "at": 1, "decision": "deny", "reason": "ip_denied", "request_id": format!("r{i}") });
    let batch = json!({ "batch_id": "b-1", "events": [event("acme", 1), event("acme", 2), event("initech", 3), event("globex", 4)] });
    let (s, v) = json_call("POST", &format!("{}/v1/audit/edge", eu.url), Some(EDGE), Some(batch.clone())).await;
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(3)), "{v}");
    let (s, v) = json_call("POST", &format!("{}/v1/audit/edge", eu.url), Some(EDGE), Some(batch)).await;
    assert_eq!((s, v["duplicate"].as_bool()), (200, Some(true)), "{v}");
    let (s, v) = json_call("GET", &format!("{}/v1/orgs/acme/audit/edge", eu.url), Some(OPERATOR), None).await;
    assert_eq!((s, v["items"].as_array().map(Vec::len)), (200, Some(2)), "{v}");
    let (s, _) =
        json_call("POST", &format!("{}/v1/audit/edge", eu.url), None, Some(json!({ "batch_id": "b-2", "events": [] })))
            .await;
    assert_eq!(s, 401);

    // --- the region template (tiers, routes) through the API; every tenant must still fit
    let (s, mut template) = json_call("GET", &format!("{}/v1/policy/template", eu.url), Some(OPERATOR), None).await;
    assert_eq!(s, 200);
    let (s, _) = json_call("GET", &format!("{}/v1/policy/template", eu.url), Some(&acme_token), None).await;
    assert_eq!(s, 403);
    template["routes"] = json!([{ "name": "reports", "path": "/reports", "permission": "reports:read" }]);
    let (s, v) =
        json_call("PUT", &format!("{}/v1/policy/template", eu.url), Some(OPERATOR), Some(template.clone())).await;
    assert_eq!(s, 200, "{v}");
    let (_, _, body) = call("GET", &format!("{}/v1/bundles/eu-west", eu.url), Some(EDGE), None, &[]).await;
    let b = gatehouse_core::bundle::open(&body, &pinned, gatehouse_origin::now() as u64).unwrap();
    assert_eq!(b.policy.routes.len(), 1);
    for slug in ["acme", "globex"] {
        let (s, v) =
            json_call("GET", &format!("{}/v1/orgs/{slug}/audit?action=policy.template", eu.url), Some(OPERATOR), None)
                .await;
        assert_eq!(
            (s, v["items"].as_array().map(Vec::len)),
            (200, Some(1)),
            "{slug}: the operator's change is in every tenant's log"
        );
    }
    assert_eq!(b.policy.routes[0].name, "reports");
    let mut no_team = template.clone();
    no_team["tiers"].as_object_mut().unwrap().remove("team");
    let (s, v) = json_call("PUT", &format!("{}/v1/policy/template", eu.url), Some(OPERATOR), Some(no_team)).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_policy")), "tenants on tier `team` would not fit: {v}");
    template["orgs"] = json!({ "x": { "tier": "team" } });
    let (s, _) = json_call("PUT", &format!("{}/v1/policy/template", eu.url), Some(OPERATOR), Some(template)).await;
    assert_eq!(s, 400, "a template holds no organisations");

    // --- audit: intact, then tampered
    let id = acme["id"].as_str().unwrap();
    assert!(
        matches!(gatehouse_origin::api::verify_tenant_audit(&eu.app, id).await.unwrap(), gatehouse_origin::audit::Verdict::Intact(n) if n > 10)
    );
    let (s, v) = json_call("GET", &format!("{}/v1/orgs/acme/audit?action=signin.", eu.url), Some(OPERATOR), None).await;
    assert_eq!(s, 200);
    let actions: Vec<&str> = v["items"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert!(
        actions.contains(&"signin.lockout")
            && actions.contains(&"signin.failure")
            && actions.contains(&"signin.locked"),
        "{actions:?}"
    );
    // Paging with numbers in the query (`limit`, `after`): two pages, in order, no overlap.
    let url = |q: &str| format!("{}/v1/orgs/acme/audit?{q}", eu.url);
    let (s, p1) = json_call("GET", &url("limit=3"), Some(OPERATOR), None).await;
    assert_eq!(s, 200, "{p1}");
    let seqs = |v: &serde_json::Value| {
        v["items"].as_array().unwrap().iter().map(|r| r["seq"].as_i64().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(seqs(&p1), [1, 2, 3]);
    let (s, p2) = json_call("GET", &url(&format!("limit=3&after={}", p1["next_after"])), Some(OPERATOR), None).await;
    assert_eq!((s, seqs(&p2)), (200, vec![4, 5, 6]), "{p2}");
    let (s, v) = json_call("GET", &url("limit=ten"), Some(OPERATOR), None).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_query")));
    let (s, h, csv) =
        call("GET", &format!("{}/v1/orgs/acme/audit?format=csv", eu.url), Some(OPERATOR), None, &[]).await;
    assert_eq!((s, h["content-type"].to_str().unwrap()), (200, "text/csv"));
    assert!(String::from_utf8(csv).unwrap().starts_with("seq,at,actor,action"));
    {
        let db = eu.app.store.tenant(id, false).await.unwrap();
        let h = db.lock().await;
        h.execute("UPDATE audit SET actor = 'someone-else' WHERE seq = 3", ()).await.unwrap();
    }
    let v = gatehouse_origin::api::verify_tenant_audit(&eu.app, id).await.unwrap();
    assert_eq!(v, gatehouse_origin::audit::Verdict::Broken { seq: 3, problem: "record was modified".into() });
}
