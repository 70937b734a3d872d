//! SSO end to end against a real OpenID Provider: the npm package `oidc-provider` (OpenID
//! Certified) started on loopback by `tests/idp/oidc-provider.mjs`, in front of the
//! `gatehouse demo` stack (origin with embedded libSQL, gateway, upstream).
//!
//! A browser is played by a cookie-keeping HTTP client that follows redirects by hand,
//! signs in at the provider's login and consent pages, and stops at the origin's callback
//! so the tests can replay or alter it. Needs node and `oidc-provider` in
//! `$GATEHOUSE_CACHE/idp` (scripts/test installs it).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::saml_attacks::{attacks_on, signature_attacks};
use support::sso::*;
use support::*;

/// Reasons of the `sso.failure` records in acme's audit log.
async fn failure_reasons(demo: &Demo) -> Vec<String> {
    let (s, v) = api(demo, "GET", "/v1/orgs/acme/audit?action=sso.failure&limit=1000", None).await;
    assert_eq!(s, 200, "{v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(r["after"].as_str().unwrap()).unwrap()["reason"].as_str().unwrap().to_string()
        })
        .collect()
}

/// The newest `sso.failure` record (for assertion messages).
async fn last_failure(demo: &Demo) -> String {
    let (_, v) = api(demo, "GET", "/v1/orgs/acme/audit?action=sso.failure&limit=1000", None).await;
    v["items"].as_array().and_then(|a| a.last()).map(|r| r.to_string()).unwrap_or_else(|| v.to_string())
}

async fn through_gateway(demo: &Demo, token: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    let (s, _, b) =
        send(demo.gateway, get("acme.example.test", "/api/invoices", &[("authorization", &auth)]), None).await;
    (s, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_and_oauth2_sign_in_through_a_real_provider() {
    let demo = start_demo();
    let port = idp_port();
    let issuer = format!("http://127.0.0.1:{port}");
    // Two connections to the same provider: as OIDC, and as plain OAuth2 + userinfo.
    let (s, oidc) = api(
        &demo,
        "POST",
        "/v1/orgs/acme/sso/connections",
        Some(json!({
            "name": "Test IdP", "protocol": "oidc", "issuer": issuer,
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scopes": ["email", "profile"],
            "use_userinfo": true, "allowed_domains": ["example.com"], "default_role": "viewer"
        })),
    )
    .await;
    assert_eq!(s, 201, "{oidc}");
    assert_eq!(oidc["has_client_secret"], true);
    assert!(oidc.get("client_secret").is_none() && !oidc.to_string().contains(CLIENT_SECRET), "{oidc}");
    let (s, oauth) = api(
        &demo,
        "POST",
        "/v1/orgs/acme/sso/connections",
        Some(json!({
            "name": "Test OAuth2", "protocol": "oauth2",
            "authorize_url": format!("{issuer}/auth"), "token_url": format!("{issuer}/token"),
            "userinfo_url": format!("{issuer}/me"), "scopes": ["openid", "email", "profile"],
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "allowed_domains": ["example.com"], "default_role": "viewer"
        })),
    )
    .await;
    assert_eq!(s, 201, "{oauth}");
    // Refused at write time: http to a non-loopback host, an owner default role.
    let (s, v) = api(
        &demo,
        "POST",
        "/v1/orgs/acme/sso/connections",
        Some(json!({"name": "X", "protocol": "oidc", "issuer": "http://idp.example.com", "client_id": "x",
            "allowed_domains": ["example.com"], "default_role": "owner"})),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_connection")), "{v}");

    let keys = demo.dir.path().join("idp-keys.json");
    let redirects =
        [oidc["redirect_uri"].as_str().unwrap().to_string(), oauth["redirect_uri"].as_str().unwrap().to_string()];
    let mut idp = start_idp(port, &keys, &redirects, false);
    let (oidc_id, oauth_id) = (oidc["id"].as_str().unwrap(), oauth["id"].as_str().unwrap());
    let start = |id: &str| format!("{}/t/acme/sso/{id}/start", demo.origin);

    // The sign-in page offers both; home-realm discovery finds one by domain.
    let b = Browser::new(&demo.origin);
    let (s, _, page) = b.get(&format!("{}/t/acme/login", demo.origin)).await;
    assert_eq!(s, 200);
    assert!(page.contains("Continue with Test IdP") && page.contains("Continue with Test OAuth2"), "{page}");
    let (s, _, page) = b.get(&format!("{}/t/acme/sso/discover?email=zoe@example.com", demo.origin)).await;
    assert_eq!(s, 200);
    assert!(page.contains("/sso/c_") && page.contains("/start?return_to="), "{page}");
    let (s, h, _) = b.get(&format!("{}/t/acme/sso/discover?email=zoe@elsewhere.test", demo.origin)).await;
    assert_eq!((s, reason(&h)), (404, "sso_no_connection"));

    // 1. Full OIDC code + PKCE flow: JIT-provisioned viewer, a session, a token the
    //    gateway accepts.
    let cb = b.to_callback(&start(oidc_id), "alice", |u| u).await;
    assert!(cb.contains("code=") && cb.contains("state="), "{cb}");
    let (s, h, page) = b.get(&cb).await;
    assert_eq!(s, 200, "{page}");
    let token = session_token(&h).expect("session cookie");
    let (s, body) = through_gateway(&demo, &token).await;
    assert_eq!(s, 200, "{body}");
    let identity: Value = serde_json::from_str(&body).unwrap();
    let alice = identity["identity"]["x-gatehouse-subject"].as_str().unwrap().to_string();
    assert_eq!(identity["identity"]["x-gatehouse-roles"], "viewer");
    let (s, users) = api(&demo, "GET", "/v1/orgs/acme/users?email=alice@example.com", None).await;
    assert_eq!(s, 200);
    assert_eq!(users["items"][0]["id"], alice.as_str(), "{users}");
    // Replayed callback (same code, same state): the transaction is gone.
    let replay = reqwest::Client::new()
        .get(&cb)
        .header("cookie", format!("gh_sso={}", cb.split("state=").nth(1).unwrap().split('&').next().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!((replay.status().as_u16(), reason(replay.headers())), (400, "sso_state_invalid"));

    // 2. Signing in again finds the same user by the provider's subject.
    let b2 = Browser::new(&demo.origin);
    let cb = b2.to_callback(&start(oidc_id), "alice", |u| u).await;
    let (s, h, _) = b2.get(&cb).await;
    assert_eq!(s, 200);
    let (_, body) = through_gateway(&demo, &session_token(&h).unwrap()).await;
    assert!(body.contains(&alice), "{body}");

    // 3. Wrong state: another browser's state (no matching cookie) is refused, and the
    //    code still cannot be used later by that other browser.
    let b3 = Browser::new(&demo.origin);
    let cb = b3.to_callback(&start(oidc_id), "bob", |u| u).await;
    let forged = cb.replace("state=", "state=x");
    let (s, h, _) = b3.get(&forged).await;
    assert_eq!((s, reason(&h)), (400, "sso_state_mismatch"));
    let (s, h, _) = Browser::new(&demo.origin).get(&cb).await;
    assert_eq!((s, reason(&h)), (400, "sso_state_mismatch"), "a callback without the starting browser's cookie");

    // 4. Replayed code under a fresh transaction: the provider refuses the used code.
    let (s, _, _) = b3.get(&cb).await;
    assert_eq!(s, 200, "bob's own callback works once");
    let code = cb.split("code=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let b4 = Browser::new(&demo.origin);
    let fresh = b4.to_callback(&start(oidc_id), "bob", |u| u).await;
    let fresh_code = fresh.split("code=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let (s, h, _) = b4.get(&fresh.replace(&fresh_code, &code)).await;
    assert_eq!((s, reason(&h)), (401, "sso_code_exchange_failed"));

    // 5. Nonce mismatch: the authorization request is altered on its way to the provider.
    let b5 = Browser::new(&demo.origin);
    let cb = b5
        .to_callback(&start(oidc_id), "alice", |u| {
            let nonce = u.split("nonce=").nth(1).unwrap().split('&').next().unwrap().to_string();
            u.replace(&format!("nonce={nonce}"), "nonce=attacker-chosen-nonce")
        })
        .await;
    let (s, h, _) = b5.get(&cb).await;
    assert_eq!((s, reason(&h)), (401, "sso_nonce_mismatch"));

    // 6–8. ID tokens from another issuer, for another client, expired (re-signed by the
    //      provider's own key, so only the claim checks catch them).
    let tamper = |v: Value| {
        let issuer = issuer.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{issuer}/__test/tamper"))
                .header("content-type", "application/json")
                .body(v.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    for (t, want) in [
        (json!({"claims": {"iss": "http://127.0.0.1:1/evil"}}), "sso_id_token_wrong_issuer"),
        (json!({"claims": {"aud": "another-client", "azp": "another-client"}}), "sso_id_token_wrong_audience"),
        (json!({"exp_offset": -600}), "sso_id_token_expired"),
    ] {
        let b = Browser::new(&demo.origin);
        let cb = b.to_callback(&start(oidc_id), "alice", |u| u).await;
        tamper(t).await;
        let (s, h, page) = b.get(&cb).await;
        assert_eq!((s, reason(&h)), (401, want), "{page}");
    }

    // 9. Email checks: a domain the connection does not allow; an unverified address.
    for (login, want) in
        [("bob@elsewhere.test", "sso_domain_not_allowed"), ("unverified-carol", "sso_email_unverified")]
    {
        let b = Browser::new(&demo.origin);
        let cb = b.to_callback(&start(oidc_id), login, |u| u).await;
        let (s, h, _) = b.get(&cb).await;
        assert_eq!((s, reason(&h)), (403, want));
    }

    // 10. Generic OAuth2 (code + PKCE, userinfo): provisioned and accepted by the gateway.
    let b = Browser::new(&demo.origin);
    let cb = b.to_callback(&start(oauth_id), "dave", |u| u).await;
    let (s, h, _) = b.get(&cb).await;
    assert_eq!(s, 200, "{}", last_failure(&demo).await);
    let (s, body) = through_gateway(&demo, &session_token(&h).unwrap()).await;
    assert_eq!(s, 200, "{body}");

    // 10b. Only owners configure SSO: an editor (who holds `*:write`) is refused.
    let user = |email: &str, role: &str| json!({"email": email, "name": "X", "password": "a long enough password 42", "role": role});
    for (email, role) in
        [("ed@acme.example.test", "editor"), ("carol@example.com", "viewer"), ("boss@example.com", "admin")]
    {
        let (s, v) = api(&demo, "POST", "/v1/orgs/acme/users", Some(user(email, role))).await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, ed) = password_sign_in(&demo, "ed@acme.example.test", "a long enough password 42").await;
    assert_eq!(s, 200, "{ed}");
    let r = reqwest::Client::new()
        .post(format!("{}/v1/orgs/acme/sso/connections", demo.origin))
        .header("authorization", format!("Bearer {}", ed["access_token"].as_str().unwrap()))
        .header("content-type", "application/json")
        .body(
            json!({"name": "Mine", "protocol": "oidc", "issuer": issuer, "client_id": "x",
            "allowed_domains": ["example.com"], "default_role": "viewer"})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("owner_required"));
    // Provisioned users are never owners or admins.
    let mut body = json!({"name": "Test IdP", "protocol": "oidc", "issuer": issuer, "client_id": CLIENT_ID,
        "scopes": ["email", "profile"], "use_userinfo": true, "allowed_domains": ["example.com"], "default_role": "admin"});
    let (s, v) = api(&demo, "PUT", &format!("/v1/orgs/acme/sso/connections/{oidc_id}"), Some(body.clone())).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_connection")), "{v}");

    // 10c. An existing account is not taken over by a first SSO sign-in with its email:
    //      refused unless the connection links existing users, and never for an admin.
    let b = Browser::new(&demo.origin);
    let cb = b.to_callback(&start(oidc_id), "carol", |u| u).await;
    let (s, h, _) = b.get(&cb).await;
    assert_eq!((s, reason(&h)), (403, "sso_account_exists"));
    body["default_role"] = json!("viewer");
    body["link_existing_users"] = json!(true);
    let (s, v) = api(&demo, "PUT", &format!("/v1/orgs/acme/sso/connections/{oidc_id}"), Some(body.clone())).await;
    assert_eq!(s, 200, "{v}");
    let b = Browser::new(&demo.origin);
    let cb = b.to_callback(&start(oidc_id), "carol", |u| u).await;
    let (s, h, _) = b.get(&cb).await;
    assert_eq!(s, 200, "verified email, viewer, linking on: {}", last_failure(&demo).await);
    let (_, body_gw) = through_gateway(&demo, &session_token(&h).unwrap()).await;
    let (_, carol) = api(&demo, "GET", "/v1/orgs/acme/users?email=carol@example.com", None).await;
    assert!(body_gw.contains(carol["items"][0]["id"].as_str().unwrap()), "linked to carol's own account");
    let b = Browser::new(&demo.origin);
    let cb = b.to_callback(&start(oidc_id), "boss", |u| u).await;
    let (s, h, _) = b.get(&cb).await;
    assert_eq!((s, reason(&h)), (403, "sso_privileged_link_refused"));

    // 10d. Pointing the connection elsewhere needs its secret again (the stored one never
    //      goes to another endpoint).
    let mut moved = body.clone();
    moved["issuer"] = json!(format!("http://127.0.0.1:{}", port + 50));
    let (s, v) = api(&demo, "PUT", &format!("/v1/orgs/acme/sso/connections/{oidc_id}"), Some(moved)).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("client_secret_required")), "{v}");

    // 11. Provider key rotation (restart with a new signing key): the unknown `kid`
    //     makes the origin refetch the keys, and the sign-in succeeds.
    drop(idp);
    tokio::time::sleep(Duration::from_secs(1)).await;
    idp = start_idp(port, &keys, &redirects, true);
    let rotated: Value = serde_json::from_str(&std::fs::read_to_string(&keys).unwrap()).unwrap();
    assert_eq!(rotated["keys"].as_array().unwrap().len(), 2);
    tokio::time::sleep(Duration::from_secs(5)).await; // past the refetch floor
    let b = Browser::new(&demo.origin);
    let cb = b.to_callback(&start(oidc_id), "alice", |u| u).await;
    let (s, h, page) = b.get(&cb).await;
    assert_eq!(s, 200, "after rotation: {page}");
    assert!(session_token(&h).is_some());

    // 12. Enforce SSO: password sign-in is refused for members, except the break-glass
    //     owner.
    let pw = |n: &str| std::fs::read_to_string(demo.dir.path().join(format!("keys/{n}.password"))).unwrap();
    let (s, v) = api(
        &demo,
        "PUT",
        "/v1/orgs/acme/sso/enforcement",
        Some(json!({"enforce": true, "break_glass": "alice@acme.example.test"})),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("break_glass_not_owner")), "{v}");
    let (s, v) = api(
        &demo,
        "PUT",
        "/v1/orgs/acme/sso/enforcement",
        Some(json!({"enforce": true, "break_glass": "admin@acme.example.test"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["password_sessions_ended"].as_u64().unwrap() >= 1, "the demo's password sessions end: {v}");
    let r = reqwest::Client::new()
        .get(format!("{}/v1/orgs/acme/sso/connections", demo.origin))
        .header("authorization", format!("Bearer {}", ed["access_token"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the editor's password session ended");
    assert!(r.text().await.unwrap().contains("session_revoked"));
    let (s, v) = password_sign_in(&demo, "alice@acme.example.test", pw("alice").trim()).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("sso_required")), "{v}");
    let (s, v) = password_sign_in(&demo, "admin@acme.example.test", pw("admin").trim()).await;
    assert_eq!(s, 200, "break-glass owner: {v}");
    // While enforced, connections may go but not the last enabled one.
    let (s, _) = api(&demo, "DELETE", &format!("/v1/orgs/acme/sso/connections/{oauth_id}"), None).await;
    assert_eq!(s, 204);
    let (s, v) = api(&demo, "DELETE", &format!("/v1/orgs/acme/sso/connections/{oidc_id}"), None).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("sso_enforced")), "{v}");
    let (s, v) = api(&demo, "PUT", "/v1/orgs/acme/sso/enforcement", Some(json!({"enforce": false}))).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = password_sign_in(&demo, "alice@acme.example.test", pw("alice").trim()).await;
    assert_eq!(s, 200);

    // 13. A pending invitation is honoured by the SSO sign-in of its (provider-verified)
    //     email: the invited role (editor, not the connection's viewer) applies.
    let invite = json!({"email": "ivan@example.com", "role": "editor"});
    let (s, v) = api(&demo, "POST", "/v1/orgs/acme/invitations", Some(invite)).await;
    assert_eq!(s, 201, "{v}");
    let b = Browser::new(&demo.origin);
    let cb = b.to_callback(&start(oidc_id), "ivan", |u| u).await;
    let (s, h, page) = b.get(&cb).await;
    assert_eq!(s, 200, "{page}");
    let (s, body) = through_gateway(&demo, &session_token(&h).expect("session cookie")).await;
    assert_eq!(s, 200, "{body}");
    let identity: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(identity["identity"]["x-gatehouse-roles"], "editor", "{body}");
    let (_, v) = api(&demo, "GET", "/v1/orgs/acme/invitations?status=accepted", None).await;
    assert_eq!(v["items"][0]["email"], "ivan@example.com", "{v}");

    // Every refusal is in the audit log with its reason; successes and provisioning too.
    let reasons = failure_reasons(&demo).await;
    for want in [
        "sso_state_invalid",
        "sso_state_mismatch",
        "sso_code_exchange_failed",
        "sso_nonce_mismatch",
        "sso_id_token_wrong_issuer",
        "sso_id_token_wrong_audience",
        "sso_id_token_expired",
        "sso_domain_not_allowed",
        "sso_email_unverified",
        "sso_account_exists",
        "sso_privileged_link_refused",
    ] {
        assert!(reasons.iter().any(|r| r == want), "no audit record for {want}: {reasons:?}");
    }
    let (_, v) = api(&demo, "GET", "/v1/orgs/acme/audit?action=user.provision", None).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 3, "alice, bob and dave provisioned: {v}");
    let (_, v) = api(&demo, "GET", "/v1/orgs/acme/audit?action=signin.sso_required", None).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = api(&demo, "GET", "/v1/orgs/acme/audit/verify", None).await;
    assert_eq!(v["intact"], true, "{v}");

    // The client secret is not in the tenant's database files in clear.
    let tenants = demo.dir.path().join("origin-data/tenants");
    for f in std::fs::read_dir(&tenants).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!bytes.windows(CLIENT_SECRET.len()).any(|w| w == CLIENT_SECRET.as_bytes()), "secret stored in clear");
    }
    drop(idp);
}

// ---------------------------------------------------------------------------------------
// SAML 2.0 against pysaml2 acting as the IdP (tests/idp/saml-idp.py).

/// The signature-construct attacks and the oversized posts on `posted` (its transaction
/// stays open): each refused with its own reason on the error page, one audit record
/// each, no session. `listener` is what the XSLT stylesheet would fetch.
async fn refuse_signature_attacks(
    demo: &Demo,
    b: &Browser,
    posted: &Posted,
    shape: &str,
    listener: &std::net::TcpListener,
) -> Vec<(String, String)> {
    let port = listener.local_addr().unwrap().port();
    let mut seen = Vec::new();
    let count = |reasons: Vec<String>, want: &str| reasons.iter().filter(|r| *r == want).count();
    for (what, attack, want) in signature_attacks(&posted.xml(), port) {
        let before = count(failure_reasons(demo).await, want);
        let (s, h, page) = b.post_acs(&posted.with_xml(&attack)).await;
        assert_eq!((s, reason(&h)), (400, want), "{what} ({shape}): {page}");
        assert!(session_token(&h).is_none(), "{what} ({shape}): a session was issued");
        assert!(page.contains("<html") && page.contains(want), "{what} ({shape}): the error page: {page}");
        assert_eq!(count(failure_reasons(demo).await, want), before + 1, "{what} ({shape}): one audit record");
        seen.push((format!("{what} ({shape})"), want.to_string()));
    }
    // The ACS's own size bounds: the form one byte over, the response field over its
    // limit inside a form that fits, and a form exactly at the limit (read, then refused
    // for what it is, not for its size).
    let limit = gatehouse_origin::sso::saml::MAX_ACS_BODY;
    let field = |n: usize| format!("SAMLResponse={}", "A".repeat(n - "SAMLResponse=".len()));
    let over_field = format!("SAMLResponse={}", "A".repeat(gatehouse_origin::sso::saml::MAX_RESPONSE_B64 + 4));
    let padded = |n: usize| {
        let head = "SAMLResponse=%25%25&pad=";
        format!("{head}{}", "A".repeat(n - head.len()))
    };
    for (what, body, want) in [
        ("form one byte over the limit", field(limit + 1), "sso_saml_too_large"),
        ("padded form one byte over the limit", padded(limit + 1), "sso_saml_too_large"),
        ("SAMLResponse over its limit", over_field, "sso_saml_too_large"),
        ("form at the limit", padded(limit), "sso_saml_malformed"),
    ] {
        let before = count(failure_reasons(demo).await, want);
        let r = b.c.post(&posted.acs).header("content-type", "application/x-www-form-urlencoded").body(body);
        let r = r.send().await.unwrap();
        let (s, h) = (r.status().as_u16(), r.headers().clone());
        let page = r.text().await.unwrap();
        let status = if want == "sso_saml_too_large" { 413 } else { 400 };
        assert_eq!((s, reason(&h)), (status, want), "{what} ({shape}): {page}");
        assert!(page.contains("<html") && page.contains(want), "{what}: {page}");
        assert_eq!(count(failure_reasons(demo).await, want), before + 1, "{what} ({shape}): one audit record");
        seen.push((format!("{what} ({shape})"), want.to_string()));
    }
    // Nothing of the stylesheet ran: it fetched nothing, and neither libxslt nor the
    // libxmlsec1 transform that hosts it said a word on the origin's stderr.
    listener.set_nonblocking(true).unwrap();
    assert_eq!(listener.accept().map(|_| ()).unwrap_err().kind(), std::io::ErrorKind::WouldBlock, "fetched");
    let stderr = std::fs::read_to_string(demo.dir.path().join(DEMO_STDERR)).unwrap().to_ascii_lowercase();
    for trace in ["xslt", "xsl:", "copy-of", "runtime error", "xpath", "xinclude", "xpointer", &format!(":{port}")] {
        assert!(!stderr.contains(trace), "`{trace}` in the origin's stderr: {stderr}");
    }
    seen
}

fn conn_str(demo: &Demo, id: &str, what: &str) -> String {
    format!("{}/t/acme/sso/{id}/saml/{what}", demo.origin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saml_sign_in_through_a_real_idp() {
    let demo = start_demo();
    let port = idp_port();
    let idp_dir = demo.dir.path().join("saml-idp");
    // The IdP's signing key pair, made first so the connection can name the certificate.
    let cert = saml_idp_keys(&idp_dir);
    let idp = format!("http://127.0.0.1:{port}");

    // Connection A: explicit IdP settings, signed AuthnRequests, assertion signature required.
    let (s, a) = api(
        &demo,
        "POST",
        "/v1/orgs/acme/sso/connections",
        Some(json!({
            "name": "Corp SAML", "protocol": "saml",
            "idp_entity_id": format!("{idp}/idp/metadata"), "idp_sso_url": format!("{idp}/sso/redirect"),
            "idp_certificates": [cert], "sign_requests": true,
            "allowed_domains": ["example.com"], "default_role": "viewer"
        })),
    )
    .await;
    assert_eq!(s, 201, "{a}");
    let a_id = a["id"].as_str().unwrap().to_string();
    let metadata = |id: &str| format!("{}/t/acme/sso/{id}/saml/metadata", demo.origin);
    let sp_file = |name: &str, xml: &str| {
        let f = idp_dir.join(name);
        std::fs::write(&f, xml).unwrap();
        f
    };
    let (s, _, md_a) = Browser::new(&demo.origin).get(&metadata(&a_id)).await;
    assert_eq!(s, 200);
    assert!(md_a.contains("AuthnRequestsSigned=\"true\"") && md_a.contains("X509Certificate"), "{md_a}");
    let mut idp_proc = start_saml_idp(port, &idp_dir, &[sp_file("sp-a.xml", &md_a)]);

    // Connection B: from the IdP's metadata URL, unsigned requests.
    let (s, b_conn) = api(
        &demo,
        "POST",
        "/v1/orgs/acme/sso/connections",
        Some(json!({
            "name": "Corp SAML (metadata)", "protocol": "saml", "idp_metadata_url": format!("{idp}/idp/metadata"),
            "allowed_domains": ["example.com"], "default_role": "viewer"
        })),
    )
    .await;
    assert_eq!(s, 201, "{b_conn}");
    assert_eq!(b_conn["saml"]["entity_id"], format!("{idp}/idp/metadata"));
    let b_id = b_conn["id"].as_str().unwrap().to_string();
    let (_, _, md_b) = Browser::new(&demo.origin).get(&metadata(&b_id)).await;
    drop(idp_proc);
    idp_proc = start_saml_idp(port, &idp_dir, &[sp_file("sp-a.xml", &md_a), sp_file("sp-b.xml", &md_b)]);
    let start = |id: &str| format!("{}/t/acme/sso/{id}/start", demo.origin);

    // 1. Full sign-in (signed request, signed response and assertion): a session and a
    //    token the gateway accepts; then the same response replayed.
    let b = Browser::new(&demo.origin);
    let ok = b.saml_response(&start(&a_id), "erin", &[]).await;
    assert!(ok.acs.ends_with(&format!("/t/acme/sso/{a_id}/saml/acs")), "{}", ok.acs);
    let (s, h, page) = b.post_acs(&ok).await;
    assert_eq!(s, 200, "{page} {}", last_failure(&demo).await);
    let (s, body) = through_gateway(&demo, &session_token(&h).unwrap()).await;
    assert_eq!(s, 200, "{body}");
    let (_, users) = api(&demo, "GET", "/v1/orgs/acme/users?email=erin@example.com", None).await;
    assert_eq!(users["items"].as_array().unwrap().len(), 1, "erin provisioned: {users}");
    let (s, h, _) = b.post_acs(&ok).await;
    assert_eq!((s, reason(&h)), (400, "sso_saml_replayed"));

    // 2. The IdP verifies our request signature: a tampered one is refused there.
    let r = b.c.get(start(&a_id)).send().await.unwrap();
    let to_idp = location(&start(&a_id), &r).unwrap();
    assert!(to_idp.contains("Signature=") && to_idp.contains("SigAlg="), "{to_idp}");
    let tampered = to_idp.replace("Signature=", "Signature=AAAA");
    assert_eq!(b.get(&tampered).await.0, 400, "a tampered AuthnRequest signature must not verify at the IdP");

    // 3. Validly signed responses that are wrong for us.
    for (knobs, want) in [
        (vec![("audience", "http://evil.example/sp")], "sso_saml_wrong_audience"),
        (vec![("recipient", "http://evil.example/acs")], "sso_saml_wrong_recipient"),
        (vec![("destination", "http://evil.example/acs")], "sso_saml_wrong_destination"),
        (vec![("time_offset", "-7200")], "sso_saml_expired"),
        (vec![("sign_assertion", "0")], "sso_saml_assertion_unsigned"),
        (vec![("sign_assertion", "0"), ("sign_response", "0")], "sso_saml_signature_invalid"),
    ] {
        let b = Browser::new(&demo.origin);
        let p = b.saml_response(&start(&a_id), "erin", &knobs).await;
        let (s, h, page) = b.post_acs(&p).await;
        assert_eq!((s, reason(&h)), (401, want), "{knobs:?}: {page}");
    }

    // 4. A response to another request (InResponseTo of flow X, RelayState of flow Y).
    let bx = Browser::new(&demo.origin);
    let x = bx.saml_response(&start(&a_id), "erin", &[]).await;
    let y = bx.saml_response(&start(&a_id), "erin", &[]).await;
    let swapped = Posted { acs: x.acs.clone(), response: x.response.clone(), relay: y.relay.clone() };
    let (s, h, _) = bx.post_acs(&swapped).await;
    assert_eq!((s, reason(&h)), (400, "sso_saml_in_response_to"));

    // 5. Unsolicited (IdP-initiated) responses are refused.
    let sp_a = format!("{}/t/acme/sso/{a_id}/saml/metadata", demo.origin);
    let (s, _, page) =
        b.get(&format!("{idp}/unsolicited?sp={}&user=erin", form_body(&[("", &sp_a)]).trim_start_matches('='))).await;
    assert_eq!(s, 200, "{page}");
    let unsolicited = Posted {
        acs: unescape(attr(&page, "<form method=\"post\" action=\"")),
        response: input(&page, "SAMLResponse"),
        relay: String::new(),
    };
    let (s, h, _) = b.post_acs(&unsolicited).await;
    assert_eq!((s, reason(&h)), (400, "sso_saml_unsolicited"));

    // 6. Attacks built from a valid response (its transaction stays open while they are
    //    refused; the genuine response is accepted at the end, as erin).
    let b = Browser::new(&demo.origin);
    let genuine = b.saml_response(&start(&a_id), "erin", &[]).await;
    let xml = genuine.xml();
    assert!(xml.contains("<ns1:Assertion") && xml.contains("<ns2:Signature"), "{xml}");
    let attacks = attacks_on(&xml);
    assert_eq!(attacks.len(), 11, "every attack changed the document");
    let mut seen = Vec::new();
    for (what, attack) in &attacks {
        let (s, h, page) = b.post_acs(&genuine.with_xml(attack)).await;
        assert!((400..500).contains(&s), "{what}: accepted ({s}): {page}");
        assert!(session_token(&h).is_none(), "{what}: a session was issued");
        let r = reason(&h).to_string();
        assert!(r.starts_with("sso_saml_"), "{what}: reason {r}");
        seen.push((what.to_string(), r));
    }
    // The second layer on its own: samael's verification (every signature checked, only
    // signed content kept) without the one-Assertion rule in front of it. No wrapping
    // variant may come out as anyone but erin.
    let (_, conn) = api(&demo, "GET", &format!("/v1/orgs/acme/sso/connections/{a_id}"), None).await;
    let conn: gatehouse_origin::sso::Connection = serde_json::from_value(conn).unwrap();
    let request_id = attr(&xml, "InResponseTo=\"").to_string();
    let (entity, acs) = (conn_str(&demo, &a_id, "metadata"), conn_str(&demo, &a_id, "acs"));
    for (what, attack) in attacks.iter().filter(|(w, _)| !w.contains("entity") && !w.contains("comment")) {
        match gatehouse_origin::sso::saml::finish(&conn, &entity, &acs, attack, Some(&request_id)) {
            Err(e) => eprintln!("samael alone refuses `{what}`: {}", e.reason()),
            Ok(signin) => {
                assert_eq!(
                    signin.profile.email.as_deref(),
                    Some("erin@example.com"),
                    "{what}: samael alone let it through"
                );
                eprintln!("samael alone consumes only the signed assertion of `{what}` (erin)");
            }
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    seen.extend(refuse_signature_attacks(&demo, &b, &genuine, "response and assertion signed", &listener).await);
    let (s, h, _) = b.post_acs(&genuine).await;
    assert_eq!(s, 200, "the genuine response after the attacks: {}", last_failure(&demo).await);
    // The classic wrapping target: only the assertion signed (no response signature).
    let b2 = Browser::new(&demo.origin);
    let only_assertion = b2.saml_response(&start(&a_id), "erin", &[("sign_response", "0")]).await;
    let xml2 = only_assertion.xml();
    let request_id2 = attr(&xml2, "InResponseTo=\"").to_string();
    for (what, attack) in attacks_on(&xml2) {
        let (s, h, page) = b2.post_acs(&only_assertion.with_xml(&attack)).await;
        assert!((400..500).contains(&s) && session_token(&h).is_none(), "{what} (assertion-only): {s} {page}");
        seen.push((format!("{what} (assertion signed only)"), reason(&h).to_string()));
        if what.contains("entity") || what.contains("comment") {
            continue;
        }
        match gatehouse_origin::sso::saml::finish(&conn, &entity, &acs, &attack, Some(&request_id2)) {
            Err(e) => eprintln!("samael alone refuses `{what}` (assertion signed only): {}", e.reason()),
            Ok(signin) => {
                assert_eq!(
                    signin.profile.email.as_deref(),
                    Some("erin@example.com"),
                    "{what}: samael alone let it through"
                );
                eprintln!("samael alone consumes only the signed assertion of `{what}` (assertion signed only): erin");
            }
        }
    }
    seen.extend(refuse_signature_attacks(&demo, &b2, &only_assertion, "assertion signed only", &listener).await);
    let (s, _, _) = b2.post_acs(&only_assertion).await;
    assert_eq!(s, 200, "a response whose assertion alone is signed is fine: {}", last_failure(&demo).await);
    let (_, body) = through_gateway(&demo, &session_token(&h).unwrap()).await;
    let (_, erin) = api(&demo, "GET", "/v1/orgs/acme/users?email=erin@example.com", None).await;
    assert!(body.contains(erin["items"][0]["id"].as_str().unwrap()), "signed in as erin: {body}");
    let (_, admin) = api(&demo, "GET", "/v1/orgs/acme/users?email=admin@example.com", None).await;
    assert_eq!(admin["items"].as_array().unwrap().len(), 0, "no admin@example.com was ever provisioned");
    eprintln!("SAML attack cases and their reasons: {seen:#?}");
    assert!(seen.iter().all(|(_, r)| r.starts_with("sso_saml_")), "{seen:?}");

    // 7. Connection B (metadata URL, unsigned requests) signs in too.
    let b = Browser::new(&demo.origin);
    let p = b.saml_response(&start(&b_id), "frank", &[]).await;
    let (s, _, _) = b.post_acs(&p).await;
    assert_eq!(s, 200, "{}", last_failure(&demo).await);

    // Every refusal is audited with its reason.
    let reasons = failure_reasons(&demo).await;
    for want in [
        "sso_saml_replayed",
        "sso_saml_wrong_audience",
        "sso_saml_wrong_recipient",
        "sso_saml_wrong_destination",
        "sso_saml_expired",
        "sso_saml_assertion_unsigned",
        "sso_saml_signature_invalid",
        "sso_saml_in_response_to",
        "sso_saml_unsolicited",
        "sso_saml_wrapping_refused",
        "sso_saml_comment_refused",
        "sso_saml_dtd_refused",
        "sso_saml_transform_refused",
        "sso_saml_reference_refused",
        "sso_saml_algorithm_refused",
        "sso_saml_keyinfo_refused",
        "sso_saml_too_large",
    ] {
        assert!(reasons.iter().any(|r| r == want), "no audit record for {want}: {reasons:?}");
    }
    drop(idp_proc);
}
