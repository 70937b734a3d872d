//! An SSO sign-in whose identity provider reported MFA counts, end to end: the real OpenID
//! Provider (`tests/idp/oidc-provider.mjs`, npm `oidc-provider`) in front of the
//! `gatehouse demo` stack, a browser played by a cookie-keeping HTTP client.
//!
//! The provider reports `amr` `["pwd", "otp"]` for logins starting with `mfa` and
//! `["pwd"]` for the others. The origin maps them (`sso`, the provider's methods, `mfa`
//! when one of them is a second factor) and asks for its own second step only when the
//! provider did not report MFA and the member has a factor, or the organisation requires
//! one. TOTP codes are computed with `totp-rs` from the secret the enrolment answers.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};
use support::sso::*;
use support::Killed;

const MFA_ACR: &str = "urn:gatehouse:mfa";

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The claims of a JWT (its signature is the gateway's business, checked below).
fn claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn amr(c: &Value) -> Vec<String> {
    c["amr"].as_array().unwrap_or(&Vec::new()).iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

/// The access token's claims show a multi-factor SSO sign-in of just now.
fn assert_mfa_sso(c: &Value, why: &str) {
    let a = amr(c);
    assert!(a.contains(&"sso".into()) && a.contains(&"mfa".into()), "{why}: {c}");
    assert_eq!(c["acr"], MFA_ACR, "{why}: {c}");
    let auth_time = c["auth_time"].as_i64().unwrap_or_else(|| panic!("{why}: no auth_time in {c}"));
    assert!((now() - auth_time).abs() <= 10, "{why}: auth_time {auth_time} is not now: {c}");
}

fn totp(secret_b32: &str) -> totp_rs::Totp {
    let secret = totp_rs::Secret::try_from_base32(secret_b32).unwrap();
    totp_rs::Builder::new().with_secret(secret).build().unwrap()
}

/// Wait until at least 8 seconds remain in the current 30-second step, so a code computed
/// now means the same step to the origin when it checks it.
async fn early_in_step() -> u64 {
    while now() % 30 > 21 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    now() as u64
}

/// `POST` a hosted form with the browser's cookies; (status, headers, page).
async fn post_form(b: &Browser, path: &str, fields: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, String) {
    let r = b.c.post(format!("{}{path}", b.origin)).form(fields).send().await.unwrap();
    let (s, h) = (r.status().as_u16(), r.headers().clone());
    (s, h, r.text().await.unwrap())
}

/// Form fields as the borrowed pairs [`post_form`] takes.
fn pairs<'a>(fields: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    fields.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A JSON call to the origin with `bearer` (none when empty); (status, body).
async fn as_user(demo: &Demo, bearer: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut b = reqwest::Client::new().request(method.parse().unwrap(), format!("{}{path}", demo.origin));
    if !bearer.is_empty() {
        b = b.header("authorization", format!("Bearer {bearer}"));
    }
    if let Some(v) = body {
        b = b.header("content-type", "application/json").body(v.to_string());
    }
    let r = b.send().await.unwrap();
    let s = r.status().as_u16();
    (s, serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null))
}

/// Enrol and confirm a TOTP factor through the origin's JSON API with `bearer`; the
/// base32 secret.
async fn enrol_totp(demo: &Demo, bearer: &str) -> String {
    let (s, e) = as_user(demo, bearer, "POST", "/t/acme/mfa/totp", Some(json!({ "name": "phone" }))).await;
    assert_eq!(s, 201, "{e}");
    let secret = e["secret"].as_str().unwrap().to_string();
    let t0 = early_in_step().await;
    let code = totp(&secret).generate(t0).to_string();
    let confirm = format!("/t/acme/mfa/totp/{}/confirm", e["id"].as_str().unwrap());
    let (s, v) = as_user(demo, bearer, "POST", &confirm, Some(json!({ "code": code }))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["factor"]["confirmed"], true, "{v}");
    secret
}

/// Through the provider to the origin's callback, visited: (status, headers, page).
async fn sso_sign_in(b: &Browser, start: &str, login: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let cb = b.to_callback(start, login, |u| u).await;
    b.get(&cb).await
}

/// The user id of `email` in acme.
async fn user_id(demo: &Demo, email: &str) -> String {
    let (s, v) = api(demo, "GET", &format!("/v1/orgs/acme/users?email={email}"), None).await;
    assert_eq!(s, 200, "{v}");
    v["items"][0]["id"].as_str().unwrap_or_else(|| panic!("no user {email}: {v}")).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sso_sign_in_whose_provider_reported_mfa_counts() {
    let demo = start_demo();
    let port = idp_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let (s, conn) = api(
        &demo,
        "POST",
        "/v1/orgs/acme/sso/connections",
        Some(json!({
            "name": "Test IdP", "protocol": "oidc", "issuer": issuer,
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scopes": ["email", "profile"],
            "allowed_domains": ["example.com"], "default_role": "viewer"
        })),
    )
    .await;
    assert_eq!(s, 201, "{conn}");
    let _idp = start_idp(
        port,
        &demo.dir.path().join("idp-keys.json"),
        &[conn["redirect_uri"].as_str().unwrap().into()],
        false,
    );
    let conn_id = conn["id"].as_str().unwrap().to_string();
    let start = format!("{}/t/acme/sso/{conn_id}/start", demo.origin);

    // (a) The provider reports MFA: signed in at once, the tokens say sso + mfa, the acr
    //     and a fresh auth_time; the gateway accepts them.
    let b = Browser::new(&demo.origin);
    let (s, h, page) = sso_sign_in(&b, &start, "mfa-alice").await;
    assert_eq!(s, 200, "{page}");
    assert!(!page.contains("name=\"mfa_token\""), "no second step after the provider's MFA: {page}");
    let alice = session_token(&h).expect("session cookie");
    let c = claims(&alice);
    assert_mfa_sso(&c, "provider-reported MFA");
    assert_eq!(amr(&c), ["sso", "pwd", "otp", "mfa"], "{c}");
    assert_eq!(c["email_verified"], true, "{c}");
    let auth = format!("Bearer {alice}");
    let (s, _, body) = support::send(
        demo.gateway,
        support::get("acme.example.test", "/api/invoices", &[("authorization", &auth)]),
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    // The session remembers how: its amr and the connection.
    let alice_id = user_id(&demo, "mfa-alice@example.com").await;
    let (s, v) = api(&demo, "GET", &format!("/v1/orgs/acme/users/{alice_id}/sessions"), None).await;
    assert_eq!(s, 200, "{v}");
    let sess = &v["items"][0];
    assert_eq!(
        (sess["amr"].clone(), sess["idp"].as_str()),
        (json!(["sso", "pwd", "otp", "mfa"]), Some(conn_id.as_str())),
        "{v}"
    );

    // (b) The provider reports only a password and the member has a TOTP factor (enrolled
    //     through the JSON API with the password-only SSO session): the hosted
    //     second-factor page; a wrong code is refused with the form again, the right one
    //     signs in with mfa.
    let b = Browser::new(&demo.origin);
    let (s, h, page) = sso_sign_in(&b, &start, "bob").await;
    assert_eq!(s, 200, "{page}");
    let bob_pwd = session_token(&h).expect("no factor yet: signed in");
    let c = claims(&bob_pwd);
    assert_eq!(amr(&c), ["sso", "pwd"], "{c}");
    assert!(c.get("acr").is_none(), "{c}");
    let secret = enrol_totp(&demo, &bob_pwd).await;

    let b = Browser::new(&demo.origin);
    let (s, h, page) = sso_sign_in(&b, &start, "bob").await;
    assert_eq!(s, 200, "{page}");
    assert!(session_token(&h).is_none(), "no session before the second factor");
    assert!(page.contains("Two-step verification") && page.contains("action=\"/t/acme/login/mfa\""), "{page}");
    // The next step's code: the enrolment just used this step's (a code is good once).
    let t0 = early_in_step().await;
    let good = totp(&secret).generate(t0 + 30).to_string();
    let wrong = if good == "000000" { "111111" } else { "000000" };
    // The form's fields (each answer carries a fresh CSRF token) with `code`.
    let second = |page: &str, code: &str| {
        [
            ("csrf", input(page, "csrf")),
            ("mfa_token", input(page, "mfa_token")),
            ("return_to", input(page, "return_to")),
            ("credential", String::new()),
            ("code", code.to_string()),
        ]
    };
    let fields = second(&page, wrong);
    let (s, h, again) = post_form(&b, "/t/acme/login/mfa", &pairs(&fields)).await;
    assert_eq!(s, 401, "{again}");
    assert!(session_token(&h).is_none() && again.contains("name=\"mfa_token\""), "{again}");
    let fields = second(&again, &good);
    let (s, h, done) = post_form(&b, "/t/acme/login/mfa", &pairs(&fields)).await;
    assert!(s == 200 || s == 303, "{s}: {done}");
    let bob = session_token(&h).expect("signed in after the second factor");
    let c = claims(&bob);
    assert_mfa_sso(&c, "the origin's second step after a password-only provider sign-in");
    assert!(amr(&c).contains(&"otp".into()), "{c}");
    // The session opened by the second step keeps the connection and the methods.
    let bob_id = user_id(&demo, "bob@example.com").await;
    let (s, v) = api(&demo, "GET", &format!("/v1/orgs/acme/users/{bob_id}/sessions"), None).await;
    assert_eq!(s, 200, "{v}");
    let sess = v["items"].as_array().unwrap().iter().find(|x| x["id"] == c["sid"]).unwrap_or_else(|| panic!("{v}"));
    assert_eq!((sess["amr"].clone(), sess["idp"].as_str()), (c["amr"].clone(), Some(conn_id.as_str())), "{v}");
    // The challenge is audited with the connection it followed.
    let (s, v) = api(&demo, "GET", "/v1/orgs/acme/audit?action=signin.mfa_challenge&limit=100", None).await;
    assert_eq!(s, 200, "{v}");
    let after: Vec<Value> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(r["after"].as_str().unwrap()).unwrap())
        .collect();
    assert!(after.contains(&json!({ "step": "mfa_required", "sso": conn_id })), "{v}");
    // The used mfa_token does not sign in again (the JSON grant, no CSRF in the way).
    let spent = input(&again, "mfa_token");
    let (s, v) = as_user(
        &demo,
        "",
        "POST",
        "/t/acme/token",
        Some(json!({ "grant_type": "mfa", "mfa_token": spent, "otp": good })),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("mfa_token_invalid")), "{v}");
    // The provider reporting MFA skips the origin's second step even for a member with a
    // factor.
    let secret_alice = enrol_totp(&demo, &alice).await;
    assert!(!secret_alice.is_empty());
    let b = Browser::new(&demo.origin);
    let (s, h, page) = sso_sign_in(&b, &start, "mfa-alice").await;
    assert_eq!(s, 200, "{page}");
    assert_mfa_sso(&claims(&session_token(&h).expect("signed in at once")), "provider MFA, member with a factor");

    // (c) Under the organisation's mfa_required, a member without a factor whose provider
    //     reported only a password is sent to enrolment; enrolling signs in with mfa. One
    //     whose provider reported MFA is signed in without a factor of ours.
    let (s, v) =
        api(&demo, "PUT", "/v1/orgs/acme/auth-policy", Some(json!({ "mfa_required": true, "mfa_methods": ["totp"] })))
            .await;
    assert_eq!(s, 200, "{v}");
    let b = Browser::new(&demo.origin);
    let (s, h, page) = sso_sign_in(&b, &start, "carol").await;
    assert_eq!(s, 200, "{page}");
    assert!(session_token(&h).is_none(), "no session before enrolment");
    assert!(page.contains("Set up a second factor") && page.contains("action=\"/t/acme/login/enroll\""), "{page}");
    let secret = unescape(page.split("<p class=\"secret\">").nth(1).unwrap().split('<').next().unwrap());
    let t0 = early_in_step().await;
    let code = totp(&secret).generate(t0).to_string();
    let fields = [
        ("csrf", input(&page, "csrf")),
        ("mfa_token", input(&page, "mfa_token")),
        ("return_to", input(&page, "return_to")),
        ("credential", String::new()),
        ("factor_id", input(&page, "factor_id")),
        ("code", code),
    ];
    let (s, h, done) = post_form(&b, "/t/acme/login/enroll", &pairs(&fields)).await;
    assert_eq!(s, 200, "{done}");
    assert!(done.contains("Save your recovery codes"), "{done}");
    let carol = session_token(&h).expect("signed in after enrolment");
    assert_mfa_sso(&claims(&carol), "enrolment under mfa_required after a password-only provider sign-in");
    let b = Browser::new(&demo.origin);
    let (s, h, page) = sso_sign_in(&b, &start, "mfa-dave").await;
    assert_eq!(s, 200, "{page}");
    assert_mfa_sso(&claims(&session_token(&h).expect("signed in at once")), "provider MFA under mfa_required");
}

/// A SAML connection to pysaml2's IdP (tests/idp/saml-idp.py) on `port`, started trusting
/// its metadata: (connection id, the IdP process).
async fn saml_connection(demo: &Demo, port: u16) -> (String, Killed) {
    let dir = demo.dir.path().join("saml-idp");
    let cert = saml_idp_keys(&dir);
    let idp = format!("http://127.0.0.1:{port}");
    let (s, c) = api(
        demo,
        "POST",
        "/v1/orgs/acme/sso/connections",
        Some(json!({
            "name": "Corp SAML", "protocol": "saml",
            "idp_entity_id": format!("{idp}/idp/metadata"), "idp_sso_url": format!("{idp}/sso/redirect"),
            "idp_certificates": [cert], "allowed_domains": ["example.com"], "default_role": "viewer"
        })),
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    let (s, _, md) = Browser::new(&demo.origin).get(&format!("{}/t/acme/sso/{id}/saml/metadata", demo.origin)).await;
    assert_eq!(s, 200, "{md}");
    let sp = dir.join("sp.xml");
    std::fs::write(&sp, md).unwrap();
    (id, start_saml_idp(port, &dir, &[sp]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saml_assertion_of_multi_factor_authentication_counts() {
    let demo = start_demo();
    let port = idp_port();
    let (id, _idp) = saml_connection(&demo, port).await;
    let start = format!("{}/t/acme/sso/{id}/start", demo.origin);
    let sign_in = |user: &'static str, class: Option<&'static str>| {
        let (demo, start) = (&demo, &start);
        async move {
            let b = Browser::new(&demo.origin);
            let knobs: Vec<(&str, &str)> = class.map(|c| vec![("authn_class", c)]).unwrap_or_default();
            let posted = b.saml_response(start, user, &knobs).await;
            b.post_acs(&posted).await
        }
    };

    // A password (PasswordProtectedTransport): sso + pwd, no acr.
    let (s, h, page) = sign_in("frank", None).await;
    assert_eq!(s, 200, "{page}");
    let frank_pwd = session_token(&h).expect("session cookie");
    let c = claims(&frank_pwd);
    assert_eq!(amr(&c), ["sso", "pwd"], "{c}");
    assert!(c.get("acr").is_none(), "{c}");

    // The multi-factor classes IdPs assert count as mfa: signed in at once.
    for class in [
        "https://refeds.org/profile/mfa",
        "http://schemas.microsoft.com/claims/multipleauthn",
        "urn:oasis:names:tc:SAML:2.0:ac:classes:TimeSyncToken",
    ] {
        let (s, h, page) = sign_in("erin", Some(class)).await;
        assert_eq!(s, 200, "{class}: {page}");
        let c = claims(&session_token(&h).unwrap_or_else(|| panic!("{class}: no session: {page}")));
        assert_mfa_sso(&c, class);
    }

    // A member with a factor whose IdP asserted only a password: the origin's second step;
    // one asserting MFA: none.
    enrol_totp(&demo, &frank_pwd).await;
    let (s, h, page) = sign_in("frank", None).await;
    assert_eq!(s, 200, "{page}");
    assert!(session_token(&h).is_none(), "no session before the second factor");
    assert!(page.contains("Two-step verification") && page.contains("action=\"/t/acme/login/mfa\""), "{page}");
    let (s, h, page) = sign_in("frank", Some("https://refeds.org/profile/mfa")).await;
    assert_eq!(s, 200, "{page}");
    assert_mfa_sso(&claims(&session_token(&h).expect("signed in at once")), "SAML MFA, member with a factor");
}
