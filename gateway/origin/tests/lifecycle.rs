//! End-to-end tests of the account and tenant lifecycle (issue 14, part L): a real
//! origin (two regions for the deletion's tombstone) on loopback, real libSQL files,
//! every lifecycle route over HTTP for what it does and what it refuses.

use std::path::Path;

use serde_json::{json, Value};

mod support;
use support::origin::{free_port, js as call, Origin, EDGE, OPERATOR, PEER};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// Start an origin for `region` with `regions` (name → port) on loopback. Tier `free` is
/// capped at 3 users, 1 custom role and 1 API key.
async fn start(root: &Path, region: &str, port: u16, regions: &[(&str, u16)]) -> Origin {
    let mut toml = support::origin::config(region, port, "127.0.0.1", regions);
    toml.push_str("max_failures = 3\nlockout_secs = 600\nmail_dir = \"mail\"\n");
    toml.push_str("[tiers.free]\nmax_users = 3\nmax_custom_roles = 1\nmax_api_keys = 1\n");
    support::origin::launch(&root.join(region), port, format!("http://127.0.0.1:{port}"), &toml).await
}

/// One HTTP request with a raw body; returns (status, headers, body as text).
async fn raw(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, String)>,
    extra: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, String) {
    let (s, h, b) = support::origin::call(method, url, token, body, extra).await;
    (s, h, String::from_utf8_lossy(&b).into_owned())
}

async fn create_org(o: &Origin, slug: &str, tier: &str) -> Value {
    support::origin::create_org(o, slug, slug, tier).await
}

/// A password sign-in from Firefox on Linux.
async fn sign_in(o: &Origin, slug: &str, email: &str, password: &str) -> (u16, Value) {
    support::origin::sign_in(o, slug, email, password, &[("user-agent", FIREFOX)]).await
}

async fn refresh(o: &Origin, slug: &str, rt: &Value) -> (u16, Value) {
    let body = json!({ "grant_type": "refresh_token", "refresh_token": rt });
    call("POST", &format!("{}/t/{slug}/token", o.url), None, Some(body)).await
}

async fn create_user(o: &Origin, slug: &str, token: &str, email: &str, role: &str) -> (u16, Value) {
    let body = json!({ "email": email, "password": "user password 12", "role": role });
    call("POST", &format!("{}/v1/orgs/{slug}/users", o.url), Some(token), Some(body)).await
}

/// Actions of the tenant's audit log with prefix `prefix`.
async fn actions(o: &Origin, slug: &str, prefix: &str) -> Vec<String> {
    let (s, v) =
        call("GET", &format!("{}/v1/orgs/{slug}/audit?action={prefix}&limit=1000", o.url), Some(OPERATOR), None).await;
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap().to_string()).collect()
}

/// Run SQL on tenant `slug`'s database (to age a session without waiting).
async fn tenant_sql(o: &Origin, slug: &str, sql: &str) {
    let id = o.app.tenant_id(slug).await.unwrap().unwrap();
    let db = o.app.store.tenant(&id, false).await.unwrap();
    db.lock().await.execute(sql, ()).await.unwrap();
}

async fn bundle_org(o: &Origin, slug: &str) -> Option<gatehouse_core::policy::Org> {
    // The body is binary (MessagePack): read as bytes.
    let (_, _, body) =
        support::origin::call("GET", &format!("{}/v1/bundles/eu-west", o.url), Some(EDGE), None, &[]).await;
    let pinned = jwt_simple::prelude::Ed25519PublicKey::from_pem(&o.bundle_public_pem).unwrap().to_bytes();
    let pinned: [u8; 32] = pinned.try_into().unwrap();
    let b = gatehouse_core::bundle::open(&body, &pinned, gatehouse_origin::now() as u64).unwrap();
    b.policy.orgs.get(slug).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_lifecycle() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let eu = start(root.path(), "eu-west", port, &[("eu-west", port)]).await;
    let o = &eu;
    create_org(o, "acme", "team").await;
    let (s, owner) = sign_in(o, "acme", "owner@acme.test", "owner password 1").await;
    assert_eq!(s, 200, "{owner}");
    let owner_tok = owner["access_token"].as_str().unwrap().to_string();
    let (_, ada) = create_user(o, "acme", &owner_tok, "ada@acme.test", "admin").await;
    let (_, vic) = create_user(o, "acme", &owner_tok, "vic@acme.test", "viewer").await;
    let (ada_id, vic_id) = (ada["id"].as_str().unwrap().to_string(), vic["id"].as_str().unwrap().to_string());
    let users = format!("{}/v1/orgs/acme/users", o.url);

    // --- a user's sessions: device, IP, user agent, created, last seen, how
    let (_, vs) = sign_in(o, "acme", "vic@acme.test", "user password 12").await;
    let vic_tok = vs["access_token"].as_str().unwrap().to_string();
    let (s, v) = call("GET", &format!("{users}/{vic_id}/sessions"), Some(&owner_tok), None).await;
    assert_eq!(s, 200, "{v}");
    let item = &v["items"][0];
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!((item["ip"].as_str(), item["user_agent"].as_str()), (Some("127.0.0.1"), Some(FIREFOX)));
    assert_eq!((item["device"].as_str(), item["amr"].clone()), (Some("Firefox on Linux"), json!(["pwd"])));
    assert!(item["idp"].is_null() && item["created_at"].as_i64().unwrap() > 0);
    assert_eq!(item["last_seen_at"], item["created_at"], "the sign-in is its first use");
    // A refresh is a use: last seen moves, the device stays the sign-in's.
    let sid = item["id"].as_str().unwrap().to_string();
    tenant_sql(o, "acme", &format!("UPDATE sessions SET last_seen_at = created_at - 500 WHERE id = '{sid}'")).await;
    let (s, vs2) = refresh(o, "acme", &vs["refresh_token"]).await;
    assert_eq!(s, 200, "{vs2}");
    let (_, v) = call("GET", &format!("{users}/{vic_id}/sessions"), Some(&owner_tok), None).await;
    let seen = v["items"][0]["last_seen_at"].as_i64().unwrap();
    assert!(seen >= v["items"][0]["created_at"].as_i64().unwrap(), "{v}");
    assert_eq!(v["items"][0]["user_agent"].as_str(), Some(FIREFOX));
    let (s, v) = call("GET", &format!("{users}/u_nobody/sessions"), Some(&owner_tok), None).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("user_not_found")));
    let (s, v) = call("GET", &format!("{users}/{ada_id}/sessions"), Some(&vic_tok), None).await;
    assert_eq!(s, 200, "members:read is enough to list: {v}");

    // --- deactivate: sign-in refused (user_disabled only with the right password), the
    // refresh token dead, the session ended, the bundle names the user; reactivate
    let (s, v) = call("POST", &format!("{users}/{vic_id}/deactivate"), Some(&vic_tok), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("permission_denied")), "a viewer cannot");
    let (s, v) = call("POST", &format!("{users}/{vic_id}/deactivate"), Some(&owner_tok), None).await;
    assert_eq!((s, v["disabled"].as_bool()), (200, Some(true)), "{v}");
    let (s, v) = sign_in(o, "acme", "vic@acme.test", "user password 12").await;
    assert_eq!((s, v["error"].as_str()), (403, Some("user_disabled")));
    let (s, v) = sign_in(o, "acme", "vic@acme.test", "not the password").await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_credentials")), "a wrong password learns nothing");
    let (s, v) = refresh(o, "acme", &vs2["refresh_token"]).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "its refresh token is dead");
    let (s, v) = call("GET", &users, Some(&vic_tok), None).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("session_revoked")));
    let (s, v) = call("GET", &format!("{users}/{vic_id}/sessions"), Some(&owner_tok), None).await;
    assert_eq!((s, v["items"].as_array().map(Vec::len)), (200, Some(0)), "its sessions ended");
    let org = bundle_org(o, "acme").await.unwrap();
    assert!(org.disabled_users.contains(&vic_id), "edges refuse the user after their next poll");
    let (s, v) = call("POST", &format!("{users}/{vic_id}/deactivate"), Some(&owner_tok), None).await;
    assert_eq!((s, v["disabled"].as_bool()), (200, Some(true)), "again: nothing changes");
    let (s, v) = call("POST", &format!("{users}/{vic_id}/reactivate"), Some(&owner_tok), None).await;
    assert_eq!((s, v["disabled"].as_bool()), (200, Some(false)), "{v}");
    let (s, _) = sign_in(o, "acme", "vic@acme.test", "user password 12").await;
    assert_eq!(s, 200, "reactivated: signs in again");
    assert!(!bundle_org(o, "acme").await.unwrap().disabled_users.contains(&vic_id));
    // Who may deactivate whom.
    let (_, a) = sign_in(o, "acme", "ada@acme.test", "user password 12").await;
    let ada_tok = a["access_token"].as_str().unwrap().to_string();
    let owner_id = org_owner(o, "acme").await;
    let (s, v) = call("POST", &format!("{users}/{owner_id}/deactivate"), Some(&ada_tok), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("role_too_high")), "an admin cannot deactivate an owner");
    let (s, v) = call("POST", &format!("{users}/{owner_id}/deactivate"), Some(&owner_tok), None).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("cannot_deactivate_self")));
    let (s, v) = call("POST", &format!("{users}/{owner_id}/deactivate"), Some(OPERATOR), None).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("last_owner")), "the last owner stays");
    let (s, v) = call("DELETE", &format!("{users}/{owner_id}"), Some(OPERATOR), None).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("last_owner")), "and is not deleted either");
    let demote = json!({ "role": "admin" });
    let (s, v) = call("PUT", &format!("{users}/{owner_id}/role"), Some(OPERATOR), Some(demote)).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("last_owner")), "nor demoted");
    let expiring = json!({ "role": "owner", "expires_at": gatehouse_origin::now() + 60 });
    let (s, v) = call("PUT", &format!("{users}/{owner_id}/role"), Some(OPERATOR), Some(expiring)).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("last_owner")), "nor given an expiring ownership");
    let (s, v) = call("POST", &format!("{users}/u_nobody/deactivate"), Some(&owner_tok), None).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("user_not_found")));
    let acts = actions(o, "acme", "user.").await;
    assert!(acts.contains(&"user.deactivate".into()) && acts.contains(&"user.reactivate".into()), "{acts:?}");
    assert!(actions(o, "acme", "signin.").await.contains(&"signin.disabled".into()));

    // --- unlock after a lockout
    for _ in 0..3 {
        let (s, _) = sign_in(o, "acme", "ada@acme.test", "wrong password!").await;
        assert_eq!(s, 401);
    }
    let (s, _) = sign_in(o, "acme", "ada@acme.test", "user password 12").await;
    assert_eq!(s, 401, "locked");
    let (s, v) = call("POST", &format!("{users}/{ada_id}/unlock"), Some(&vic_tok_fresh(o).await), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("permission_denied")));
    let (s, v) = call("POST", &format!("{users}/{ada_id}/unlock"), Some(&owner_tok), None).await;
    assert_eq!((s, v["locked_until"].as_i64()), (200, Some(0)), "{v}");
    let (s, _) = sign_in(o, "acme", "ada@acme.test", "user password 12").await;
    assert_eq!(s, 200, "unlocked");
    assert!(actions(o, "acme", "user.unlock").await.len() == 1);

    // --- self-service: profile, name, sessions (only one's own), the hosted page
    let (_, a1) = sign_in(o, "acme", "ada@acme.test", "user password 12").await;
    let (_, a2) = sign_in(o, "acme", "ada@acme.test", "user password 12").await;
    let a1_tok = a1["access_token"].as_str().unwrap().to_string();
    let me = format!("{}/t/acme/me", o.url);
    let (s, v) = call("GET", &me, Some(&a1_tok), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["id"].as_str(), v["email"].as_str(), v["role"].as_str()),
        (Some(&*ada_id), Some("ada@acme.test"), Some("admin"))
    );
    assert_eq!((v["email_verified"].as_bool(), v["factors"]["password"].as_bool()), (Some(false), Some(true)));
    assert!(v["teams"].as_array().unwrap().is_empty() && v["factors"]["mfa"].as_array().unwrap().is_empty());
    let (s, v) = call("PATCH", &me, Some(&a1_tok), Some(json!({ "name": "Ada <Lovelace>" }))).await;
    assert_eq!((s, v["name"].as_str()), (200, Some("Ada <Lovelace>")), "{v}");
    let (s, v) = call("PATCH", &me, Some(&a1_tok), Some(json!({ "name": "x".repeat(201) }))).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_name")));
    let (s, v) = call("PATCH", &me, Some(&a1_tok), Some(json!({ "name": "A", "role": "owner" }))).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_body")), "nothing but the name");
    let (s, v) = call("GET", &me, None, None).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("credential_missing")));
    let (s, v) = call("GET", &me, Some(&owner_tok_of(o, "acme").await), None).await;
    assert_eq!((s, v["email"].as_str()), (200, Some("owner@acme.test")), "each sees their own");
    assert_eq!(actions(o, "acme", "user.profile").await.len(), 1);
    let (s, v) = call("GET", &format!("{me}/sessions"), Some(&a1_tok), None).await;
    assert_eq!(s, 200, "{v}");
    let mine: Vec<&Value> = v["items"].as_array().unwrap().iter().collect();
    assert!(mine.len() >= 2 && mine.iter().filter(|s| s["current"] == json!(true)).count() == 1, "{v}");
    let a2_sid = sid_of(&a2);
    let (_, vsess) = call("GET", &format!("{users}/{vic_id}/sessions"), Some(&owner_tok), None).await;
    let vic_sid = vsess["items"][0]["id"].as_str().unwrap().to_string();
    let vic_sessions = vsess["items"].as_array().unwrap().len();
    let (s, v) = call("DELETE", &format!("{me}/sessions/{vic_sid}"), Some(&a1_tok), None).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("session_not_found")), "not another user's session");
    let (s, _) = call("DELETE", &format!("{me}/sessions/{a2_sid}"), Some(&a1_tok), None).await;
    assert_eq!(s, 204);
    let (s, _) = refresh(o, "acme", &a2["refresh_token"]).await;
    assert_eq!(s, 400, "the ended session's refresh token is dead");
    let (_, vsess) = call("GET", &format!("{users}/{vic_id}/sessions"), Some(&owner_tok), None).await;
    assert_eq!(vsess["items"].as_array().unwrap().len(), vic_sessions, "vic's sessions stay");
    // The page: the session cookie, escaped values, CSP, a CSRF-protected revoke form.
    let (_, a3) = sign_in(o, "acme", "ada@acme.test", "user password 12").await;
    let a3_sid = sid_of(&a3);
    let page_url = format!("{}/t/acme/account", o.url);
    let session_cookie = format!("gh_session={a1_tok}");
    let (s, h, page) = raw("GET", &page_url, None, None, &[("cookie", &session_cookie)]).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("Ada &lt;Lovelace&gt;") && !page.contains("Ada <Lovelace>"), "{page}");
    assert!(page.contains("Firefox on Linux") && page.contains("(this session)"), "{page}");
    assert!(page.contains("Recovery codes left: 0") && page.contains("<li>Password</li>"), "{page}");
    assert!(h["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    assert_eq!((h["x-frame-options"].to_str().unwrap(), h["cache-control"].to_str().unwrap()), ("DENY", "no-store"));
    let csrf_cookie = h["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let revoke = format!("{}/t/acme/account/sessions/{a3_sid}/revoke", o.url);
    let form = || Some(("application/x-www-form-urlencoded", format!("csrf={csrf}")));
    let (s, _, _) = raw("POST", &revoke, None, form(), &[("cookie", &session_cookie)]).await;
    assert_eq!(s, 403, "no CSRF cookie");
    let both = format!("{session_cookie}; {csrf_cookie}");
    let (s, h, _) = raw("POST", &revoke, None, form(), &[("cookie", &both)]).await;
    assert_eq!((s, h["location"].to_str().unwrap()), (303, "/t/acme/account"));
    let (s, _) = refresh(o, "acme", &a3["refresh_token"]).await;
    assert_eq!(s, 400, "revoked from the page");
    let profile = format!("{}/t/acme/account/profile", o.url);
    let named =
        |name: &str, csrf: &str| Some(("application/x-www-form-urlencoded", format!("csrf={csrf}&name={name}")));
    let (s, _, _) = raw("POST", &profile, None, named("Ada+Byron", "0000"), &[("cookie", &both)]).await;
    assert_eq!(s, 403, "a token that is not the cookie's");
    let (s, h, _) = raw("POST", &profile, None, named("Ada+Byron", &csrf), &[("cookie", &both)]).await;
    assert_eq!((s, h["location"].to_str().unwrap()), (303, "/t/acme/account"));
    let (_, v) = call("GET", &me, Some(&a1_tok), None).await;
    assert_eq!(v["name"].as_str(), Some("Ada Byron"), "renamed from the page");
    let (s, _, b) = raw("POST", &profile, None, named(&"x".repeat(201), &csrf), &[("cookie", &both)]).await;
    assert!(s == 400 && b.contains("at most 200 bytes"), "{s} {b}");
    let (s, _, page) = raw("GET", &page_url, None, None, &[]).await;
    assert!(s == 401 && page.contains("/t/acme/login"), "not signed in: {s} {page}");
    assert!(actions(o, "acme", "session.revoke").await.len() >= 2);

    // --- session policy: the lifetime caps a new session; idle and old sessions end at refresh
    let policy = json!({ "session_idle_timeout_secs": 60, "session_max_lifetime_secs": 120 });
    let (s, v) = call("PUT", &format!("{}/v1/orgs/acme/auth-policy", o.url), Some(&owner_tok), Some(policy)).await;
    assert_eq!(s, 200, "{v}");
    let (_, p1) = sign_in(o, "acme", "ada@acme.test", "user password 12").await;
    let p1_sid = sid_of(&p1);
    let (_, list) = call("GET", &format!("{users}/{ada_id}/sessions"), Some(&owner_tok), None).await;
    let row = list["items"].as_array().unwrap().iter().find(|s| s["id"] == json!(p1_sid)).unwrap().clone();
    assert_eq!(row["expires_at"].as_i64().unwrap() - row["created_at"].as_i64().unwrap(), 120, "{row}");
    tenant_sql(o, "acme", &format!("UPDATE sessions SET last_seen_at = last_seen_at - 61 WHERE id = '{p1_sid}'")).await;
    let (s, v) = refresh(o, "acme", &p1["refresh_token"]).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "idle for 61 s of 60");
    let (_, p2) = sign_in(o, "acme", "ada@acme.test", "user password 12").await;
    let p2_sid = sid_of(&p2);
    let (s, p2b) = refresh(o, "acme", &p2["refresh_token"]).await;
    assert_eq!(s, 200, "used within the idle timeout: {p2b}");
    // Older than the lifetime (the row's own expiry not yet reached): ended at refresh.
    tenant_sql(o, "acme", &format!("UPDATE sessions SET created_at = created_at - 121 WHERE id = '{p2_sid}'")).await;
    let (s, v) = refresh(o, "acme", &p2b["refresh_token"]).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "older than 120 s");
    let acts = actions(o, "acme", "session.").await;
    assert!(
        acts.contains(&"session.idle_timeout".into()) && acts.contains(&"session.lifetime_ended".into()),
        "{acts:?}"
    );
    let (_, list) = call("GET", &format!("{users}/{ada_id}/sessions"), Some(&owner_tok), None).await;
    assert!(!list.to_string().contains(&p1_sid) && !list.to_string().contains(&p2_sid), "both ended");

    // --- sign out everywhere: one's other sessions (self-service), all of a user's (admin)
    let (_, q1) = sign_in(o, "acme", "ada@acme.test", "user password 12").await;
    let (_, q2) = sign_in(o, "acme", "ada@acme.test", "user password 12").await;
    let q1_tok = q1["access_token"].as_str().unwrap().to_string();
    let (s, v) = call("DELETE", &format!("{me}/sessions"), Some(&q1_tok), None).await;
    assert!(s == 200 && v["sessions_ended"].as_u64().unwrap() >= 1, "{v}");
    let (s, _) = refresh(o, "acme", &q2["refresh_token"]).await;
    assert_eq!(s, 400, "the other session ended");
    let (s, q1b) = refresh(o, "acme", &q1["refresh_token"]).await;
    assert_eq!(s, 200, "this one goes on: {q1b}");
    let (_, v1) = sign_in(o, "acme", "vic@acme.test", "user password 12").await;
    let (s, v) = call("DELETE", &format!("{users}/{owner_id}/sessions"), Some(&q1_tok), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("role_too_high")), "an admin cannot sign out an owner");
    let (s, v) = call("DELETE", &format!("{users}/{vic_id}/sessions"), Some(&q1_tok), None).await;
    assert!(s == 200 && v["sessions_ended"].as_u64().unwrap() >= 1, "{v}");
    let (s, _) = refresh(o, "acme", &v1["refresh_token"]).await;
    assert_eq!(s, 400, "signed out everywhere");
    let (_, list) = call("GET", &format!("{users}/{vic_id}/sessions"), Some(&owner_tok), None).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
    assert_eq!(actions(o, "acme", "user.sessions_end").await.len(), 2);
}

/// The id of the owner of `slug`.
async fn org_owner(o: &Origin, slug: &str) -> String {
    let (_, v) =
        call("GET", &format!("{}/v1/orgs/{slug}/users?email=owner@{slug}.test", o.url), Some(OPERATOR), None).await;
    v["items"][0]["id"].as_str().unwrap().to_string()
}

async fn owner_tok_of(o: &Origin, slug: &str) -> String {
    let (s, v) = sign_in(o, slug, &format!("owner@{slug}.test"), "owner password 1").await;
    assert_eq!(s, 200, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

async fn vic_tok_fresh(o: &Origin) -> String {
    let (s, v) = sign_in(o, "acme", "vic@acme.test", "user password 12").await;
    assert_eq!(s, 200, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

/// The session id (`sid`) inside a token answer's access token.
fn sid_of(tokens: &Value) -> String {
    use base64::Engine as _;
    let jwt = tokens["access_token"].as_str().unwrap();
    let payload = jwt.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["sid"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_lifecycle() {
    let root = tempfile::tempdir().unwrap();
    let (pe, pu) = (free_port(), free_port());
    let regions = [("eu-west", pe), ("us-east", pu)];
    let eu = start(root.path(), "eu-west", pe, &regions).await;
    let us = start(root.path(), "us-east", pu, &regions).await;
    let o = &eu;
    create_org(o, "acme", "team").await;
    let owner_tok = owner_tok_of(o, "acme").await;
    let (_, ow) = sign_in(o, "acme", "owner@acme.test", "owner password 1").await;
    let org_url = format!("{}/v1/orgs/acme", o.url);

    // --- suspend: sign-ins and refreshes refused, edges told; resume restores it all
    let (s, v) = call("POST", &format!("{org_url}/suspend"), Some(&owner_tok), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("operator_only")), "not even the owner");
    let (s, v) = call("POST", &format!("{org_url}/suspend"), Some(OPERATOR), None).await;
    assert!(s == 200 && v["suspended_at"].as_i64().is_some(), "{v}");
    let (s, v) = sign_in(o, "acme", "owner@acme.test", "owner password 1").await;
    assert_eq!((s, v["error"].as_str()), (403, Some("tenant_suspended")));
    let (s, v) = refresh(o, "acme", &ow["refresh_token"]).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("tenant_suspended")));
    let (s, v) = call("GET", &format!("{}/t/acme/me", o.url), Some(&owner_tok), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("tenant_suspended")));
    // The hosted sign-in page says so.
    let (_, h, page) = raw("GET", &format!("{}/t/acme/login", o.url), None, None, &[]).await;
    let csrf_cookie = h["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let form = format!("email=owner%40acme.test&password=owner+password+1&csrf={csrf}&return_to=");
    let (s, _, page) = raw(
        "POST",
        &format!("{}/t/acme/login", o.url),
        None,
        Some(("application/x-www-form-urlencoded", form)),
        &[("cookie", &csrf_cookie)],
    )
    .await;
    assert!(s == 403 && page.contains("This organisation is suspended."), "{s} {page}");
    let (s, v) = call("GET", &org_url, Some(OPERATOR), None).await;
    assert!(s == 200 && v["suspended_at"].as_i64().is_some(), "{v}");
    let (s, v) = call("GET", &org_url, Some(&owner_tok), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("tenant_suspended")), "its members' admin API too");
    assert!(bundle_org(o, "acme").await.unwrap().suspended, "edges refuse after their next poll");
    let (s, v) = call("POST", &format!("{org_url}/resume"), Some(OPERATOR), None).await;
    assert_eq!((s, v["suspended_at"].clone()), (200, Value::Null), "{v}");
    let (s, _) = refresh(o, "acme", &ow["refresh_token"]).await;
    assert_eq!(s, 200, "the refresh token refused while suspended was not spent");
    let (s, _) = sign_in(o, "acme", "owner@acme.test", "owner password 1").await;
    assert_eq!(s, 200);
    assert!(!bundle_org(o, "acme").await.unwrap().suspended);
    let acts = actions(o, "acme", "org.").await;
    assert!(acts.contains(&"org.suspend".into()) && acts.contains(&"org.resume".into()), "{acts:?}");

    // --- rename (settings:write) and tier (operator only)
    let (s, v) = call("PATCH", &org_url, Some(&owner_tok), Some(json!({ "name": "Acme Corp" }))).await;
    assert_eq!((s, v["name"].as_str(), v["tier"].as_str()), (200, Some("Acme Corp"), Some("team")), "{v}");
    let (s, v) = call("PATCH", &org_url, Some(&owner_tok), Some(json!({ "tier": "enterprise" }))).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("operator_only")));
    let (s, v) = call("PATCH", &org_url, Some(OPERATOR), Some(json!({ "tier": "no-such-tier" }))).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_policy")), "{v}");
    let (s, v) = call("PATCH", &org_url, Some(&owner_tok), Some(json!({ "name": " " }))).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_name")));
    let (s, v) = call("PATCH", &org_url, Some(OPERATOR), Some(json!({ "tier": "enterprise" }))).await;
    assert_eq!((s, v["tier"].as_str()), (200, Some("enterprise")), "{v}");
    let (_, v) = call("GET", &org_url, Some(&owner_tok), None).await;
    assert_eq!((v["name"].as_str(), v["tier"].as_str()), (Some("Acme Corp"), Some("enterprise")));
    assert_eq!(bundle_org(o, "acme").await.unwrap().tier, "enterprise");

    // --- usage: what the test did, counted back
    create_org(o, "usage-co", "team").await;
    let since = gatehouse_origin::now();
    let t1 = owner_tok_of(o, "usage-co").await;
    owner_tok_of(o, "usage-co").await;
    let (s, _) = sign_in(o, "usage-co", "owner@usage-co.test", "not the password").await;
    assert_eq!(s, 401);
    let ev = |i: u32, decision: &str| json!({ "org": "usage-co", "at": since, "decision": decision, "reason": "ip_denied", "request_id": format!("r{i}") });
    let batch = json!({ "batch_id": "usage-1", "events": [ev(1, "deny"), ev(2, "deny"), ev(3, "allow")] });
    let (s, v) = call("POST", &format!("{}/v1/audit/edge", o.url), Some(EDGE), Some(batch)).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) =
        call("POST", &format!("{}/v1/orgs/usage-co/api-keys", o.url), Some(&t1), Some(json!({ "name": "ci" }))).await;
    assert_eq!(s, 201, "{v}");
    let hour = since - since % 3600;
    let q = format!("from={hour}&to={}&bucket=hour", hour + 7200);
    let (s, u) = call("GET", &format!("{}/v1/orgs/usage-co/usage?{q}", o.url), Some(&t1), None).await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["totals"], json!({ "signins": 2, "signin_failures": 1, "edge_denies": 2 }), "{u}");
    assert_eq!(u["now"], json!({ "users": 1, "users_disabled": 0, "active_sessions": 2, "api_keys": 1 }), "{u}");
    assert_eq!(u["series"].as_array().unwrap().len(), 2, "two hours, the empty one too: {u}");
    let (s, u) = call("GET", &format!("{}/v1/orgs/usage-co/usage", o.url), Some(&t1), None).await;
    assert!(s == 200 && u["bucket"] == json!("day") && u["series"].as_array().unwrap().len() >= 30, "{u}");
    let (s, v) = call("GET", &format!("{}/v1/orgs/usage-co/usage?bucket=week", o.url), Some(&t1), None).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_query")));

    // --- tier caps at their limit: limit_reached naming the cap and the limit
    create_org(o, "capped", "free").await;
    let ct = owner_tok_of(o, "capped").await;
    let (_, u2) = create_user(o, "capped", &ct, "u2@capped.test", "viewer").await;
    create_user(o, "capped", &ct, "u3@capped.test", "viewer").await;
    let (s, v) = create_user(o, "capped", &ct, "u4@capped.test", "viewer").await;
    assert_eq!((s, v["error"].as_str()), (409, Some("limit_reached")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("max_users") && v["message"].as_str().unwrap().contains('3'));
    let cu = format!("{}/v1/orgs/capped/users", o.url);
    let u2_id = u2["id"].as_str().unwrap();
    let (s, _) = call("POST", &format!("{cu}/{u2_id}/deactivate"), Some(&ct), None).await;
    assert_eq!(s, 200);
    let (s, _) = create_user(o, "capped", &ct, "u4@capped.test", "viewer").await;
    assert_eq!(s, 201, "a deactivated user frees the seat");
    let (s, v) = call("POST", &format!("{cu}/{u2_id}/reactivate"), Some(&ct), None).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("limit_reached")), "and takes it back only if free");
    let role = |n: &str| format!("{}/v1/orgs/capped/roles/{n}", o.url);
    let perms = json!({ "permissions": ["reports:read"] });
    let (s, _) = call("PUT", &role("auditor"), Some(&ct), Some(perms.clone())).await;
    assert_eq!(s, 200);
    let (s, _) = call("PUT", &role("auditor"), Some(&ct), Some(json!({ "permissions": ["audit:read"] }))).await;
    assert_eq!(s, 200, "replacing a role adds none");
    let (s, v) = call("PUT", &role("second"), Some(&ct), Some(perms)).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("limit_reached")), "{v}");
    assert!(v["message"].as_str().unwrap().starts_with("max_custom_roles"));
    let keys = format!("{}/v1/orgs/capped/api-keys", o.url);
    let (s, k1) = call("POST", &keys, Some(&ct), Some(json!({ "name": "one" }))).await;
    assert_eq!(s, 201);
    let (s, v) = call("POST", &keys, Some(&ct), Some(json!({ "name": "two" }))).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("limit_reached")));
    assert!(v["message"].as_str().unwrap().starts_with("max_api_keys"));
    let (s, _) = call("DELETE", &format!("{keys}/{}", k1["id"].as_str().unwrap()), Some(&ct), None).await;
    assert_eq!(s, 204);
    let (s, _) = call("POST", &keys, Some(&ct), Some(json!({ "name": "two" }))).await;
    assert_eq!(s, 201, "a revoked key frees its place");
    let (_, u) = call("GET", &format!("{}/v1/orgs/capped/usage", o.url), Some(&ct), None).await;
    assert_eq!(u["limits"], json!({ "max_users": 3, "max_custom_roles": 1, "max_api_keys": 1 }), "{u}");
    // Onto an uncapped tier and back: the downgrade is allowed and says what is over.
    let capped = format!("{}/v1/orgs/capped", o.url);
    let (s, v) = call("PATCH", &capped, Some(OPERATOR), Some(json!({ "tier": "team" }))).await;
    assert_eq!((s, v["over_limits"].clone()), (200, json!([])), "{v}");
    let (s, _) = create_user(o, "capped", &ct, "u5@capped.test", "viewer").await;
    assert_eq!(s, 201, "team is not capped");
    let (s, v) = call("PATCH", &capped, Some(OPERATOR), Some(json!({ "tier": "free" }))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["over_limits"], json!([{ "cap": "max_users", "limit": 3, "in_use": 4 }]), "{v}");
    let (s, v) = create_user(o, "capped", &ct, "u6@capped.test", "viewer").await;
    assert_eq!((s, v["error"].as_str()), (409, Some("limit_reached")));

    // --- deletion: a confirmation step, files gone, routes 404, tombstone, operator log
    let doomed = create_org(o, "doomed", "team").await;
    let doomed_id = doomed["id"].as_str().unwrap().to_string();
    let dt = owner_tok_of(o, "doomed").await;
    let db_file = o.dir.join("data/tenants").join(format!("{doomed_id}.db"));
    assert!(db_file.exists());
    let disco = |base: &str| format!("{base}/t/doomed/.well-known/openid-configuration");
    let (s, _) = call("GET", &disco(&us.url), None, None).await;
    assert_eq!(s, 421, "the other region knows where it lives");
    let d_url = format!("{}/v1/orgs/doomed", o.url);
    let (s, v) = call("POST", &format!("{d_url}/deletion"), Some(&dt), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("operator_only")));
    let (s, c1) = call("POST", &format!("{d_url}/deletion"), Some(OPERATOR), None).await;
    assert_eq!(s, 201, "{c1}");
    let (s, c2) = call("POST", &format!("{d_url}/deletion"), Some(OPERATOR), None).await;
    assert_eq!(s, 201);
    let (s, v) = call("DELETE", &d_url, Some(OPERATOR), Some(json!({ "confirm": "ghdel_not-a-token" }))).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("confirmation_invalid")));
    let (s, v) = call("DELETE", &d_url, Some(&dt), Some(json!({ "confirm": c1["confirm"] }))).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("operator_only")));
    let (s, v) =
        call("DELETE", &format!("{}/v1/orgs/acme", o.url), Some(OPERATOR), Some(json!({ "confirm": c1["confirm"] })))
            .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("confirmation_invalid")), "bound to its organisation");
    {
        let d = o.app.store.directory.lock().await;
        d.execute(
            "UPDATE org_deletions SET expires_at = 1 WHERE hash = ?1",
            [gatehouse_origin::tokens::secret_hash(c2["confirm"].as_str().unwrap())],
        )
        .await
        .unwrap();
    }
    let (s, v) = call("DELETE", &d_url, Some(OPERATOR), Some(json!({ "confirm": c2["confirm"] }))).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("confirmation_expired")));
    let (s, v) = call("DELETE", &d_url, Some(OPERATOR), Some(json!({ "confirm": c1["confirm"] }))).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["files_removed"].as_u64().unwrap() >= 1, "{v}");
    let left: Vec<String> = std::fs::read_dir(o.dir.join("data/tenants"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(&doomed_id))
        .collect();
    assert!(left.is_empty(), "the tenant's files are gone from its region: {left:?}");
    let (s, v) = call("DELETE", &d_url, Some(OPERATOR), Some(json!({ "confirm": c1["confirm"] }))).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("tenant_not_found")), "once");
    for (m, url) in [
        ("GET", d_url.clone()),
        ("GET", format!("{d_url}/users")),
        ("GET", disco(&o.url)),
        ("POST", format!("{}/t/doomed/token", o.url)),
    ] {
        let (s, v) = call(m, &url, Some(OPERATOR), Some(json!({}))).await;
        assert_eq!((s, v["error"].as_str()), (404, Some("tenant_not_found")), "{m} {url}");
    }
    let (s, v) = call("GET", &d_url, Some(&dt), None).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("tenant_not_found")), "its tokens meet nothing: {v}");
    assert!(bundle_org(o, "doomed").await.is_none(), "not in the bundle");
    assert!(!db_file.exists(), "not reopened");
    let body = json!({ "slug": "doomed", "name": "x", "tier": "team", "owner_email": "o@x.test", "owner_password": "owner password 1" });
    let (s, v) = call("POST", &format!("{}/v1/orgs", o.url), Some(OPERATOR), Some(body)).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("slug_taken")), "the slug stays taken");
    // The other region drops the entry (pushed now; pulled otherwise) and replication
    // cannot bring it back.
    let (s, _) = call("GET", &disco(&us.url), None, None).await;
    assert_eq!(s, 404, "the tombstone reached the other region");
    let (s, v) = call("GET", &format!("{}/v1/directory", o.url), Some(PEER), None).await;
    assert_eq!(s, 200);
    let entry = v["tenants"].as_array().unwrap().iter().find(|e| e["slug"] == json!("doomed")).unwrap().clone();
    assert!(entry["deleted_at"].as_i64().is_some(), "peers pull the tombstone: {entry}");
    let stale = json!({ "region": "eu-west", "tenants": [{ "id": doomed_id, "slug": "doomed", "home_region": "eu-west", "created_at": 1 }] });
    let (s, _) = call("POST", &format!("{}/v1/directory", us.url), Some(PEER), Some(stale)).await;
    assert_eq!(s, 200);
    let (s, _) = call("GET", &disco(&us.url), None, None).await;
    assert_eq!(s, 404, "a stale entry does not resurrect it");
    // The operator's log keeps the record; the tenant's own log went with its files.
    let (s, log) = call("GET", &format!("{}/v1/operator/audit", o.url), Some(OPERATOR), None).await;
    assert_eq!(s, 200, "{log}");
    assert_eq!(log["verify"]["intact"], json!(true), "{log}");
    let recs = log["items"].as_array().unwrap();
    let of = |a: &str| recs.iter().filter(|r| r["action"] == json!(a)).cloned().collect::<Vec<_>>();
    assert_eq!(of("org.delete").len(), 1);
    let del = &of("org.delete")[0];
    assert_eq!((del["target"].as_str(), del["before"]["id"].as_str()), (Some("org:doomed"), Some(&*doomed_id)));
    assert!(del["before"]["audit_head"]["seq"].as_i64().unwrap() >= 3, "the deleted log's last head: {del}");
    assert_eq!(del["before"]["audit_head"]["hash"].as_str().map(str::len), Some(64));
    assert_eq!(of("org.deletion_requested").len(), 2);
    assert_eq!(of("org.create").len(), 4, "acme, usage-co, capped, doomed (not the refused one)");
    let (s, p1) = call("GET", &format!("{}/v1/operator/audit?limit=2", o.url), Some(OPERATOR), None).await;
    assert_eq!((s, p1["items"].as_array().unwrap().len(), p1["next_after"].as_i64()), (200, 2, Some(2)));
    let (_, p2) = call("GET", &format!("{}/v1/operator/audit?after=2&limit=1000", o.url), Some(OPERATOR), None).await;
    assert_eq!(p2["items"][0]["seq"].as_i64(), Some(3));
    assert_eq!(p2["items"].as_array().unwrap().len() + 2, recs.len());
    assert!(!of("org.suspend").is_empty() && !of("org.resume").is_empty() && !of("org.tier").is_empty());
    let (s, _) = call("GET", &format!("{}/v1/operator/audit", o.url), Some(&owner_tok), None).await;
    assert_eq!(s, 403, "operator only");
}
