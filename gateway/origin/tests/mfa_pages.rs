//! End-to-end tests of the hosted factor page `GET /t/{slug}/mfa` against a real origin
//! on loopback: a browser signed in with the session cookie (cookies by hand) adds an
//! authenticator app (QR code and secret on the page, confirmed with a code computed by
//! `totp-rs`), is sent to step-up once it has a factor, renames (the `<script>` attack
//! case) and removes it, regenerates recovery codes (the old set void), is refused
//! without the CSRF token, and adds a passkey through the page's ceremony endpoints with
//! the software authenticator.

use base64::Engine as _;
use serde_json::{json, Value};

#[path = "mfa_support/authenticator.rs"]
#[allow(dead_code)] // (this binary does not turn user verification off)
mod authenticator;
use authenticator::Authenticator;
#[path = "mfa_support/harness.rs"]
mod harness;
use harness::*;

/// A GET with `cookies`; (status, headers, page).
async fn get(url: &str, cookies: &str) -> (u16, hyper::HeaderMap, String) {
    let extra: Vec<(&str, &str)> = if cookies.is_empty() { vec![] } else { vec![("cookie", cookies)] };
    let (s, h, b) = call("GET", url, None, None, &extra).await;
    (s, h, String::from_utf8(b).unwrap())
}

fn location(h: &hyper::HeaderMap) -> String {
    h.get("location").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

/// The text between `start` and the next `end` in `page`.
fn between<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    page.split(start).nth(1).unwrap_or_else(|| panic!("no {start} in {page}")).split(end).next().unwrap()
}

/// The `<li>` items of the recovery codes list.
fn codes(page: &str) -> Vec<String> {
    between(page, "<ol class=\"codes\">", "</ol>")
        .split("<li>")
        .filter_map(|s| s.split("</li>").next())
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The factor page for `session`: (page, the cookies to post its forms with, csrf token).
async fn open_page(o: &Origin, session: &str) -> (String, String, String) {
    let (s, h, page) = get(&format!("{}/t/acme/mfa", o.url), session).await;
    assert_eq!(s, 200, "{page}");
    let csrf_cookie = set_cookie(&h, "gh_mfa_csrf").expect("the page sets its CSRF cookie");
    let csrf = field(&page, "csrf");
    (page, format!("{session}; {csrf_cookie}"), csrf)
}

async fn factors(o: &Origin, access: &str) -> Value {
    let (s, v) = js("GET", &format!("{}/t/acme/mfa/factors", o.url), Some(access), None).await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn audited(o: &Origin) -> Vec<String> {
    let (_, audit) = js("GET", &format!("{}/v1/orgs/acme/audit?limit=500", o.url), Some(OPERATOR), None).await;
    audit["items"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str().map(String::from)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factor_page_adds_steps_up_renames_regenerates_and_removes() {
    let root = tempfile::tempdir().unwrap();
    let o = start(root.path()).await;
    create_org(&o, "acme").await;
    let owner = "owner@acme.test";
    let (s, t) = password(&o, "acme", owner, "owner password 1").await;
    assert_eq!(s, 200, "{t}");
    let access = t["access_token"].as_str().unwrap().to_string();
    let session = format!("gh_session={access}");

    // Without a session: the sign-in page, back here afterwards.
    let (s, h, _) = get(&format!("{}/t/acme/mfa", o.url), "").await;
    assert_eq!((s, location(&h).as_str()), (303, "/t/acme/login?return_to=%2Ft%2Facme%2Fmfa"));
    // The hosted sign-in comes back here (an own page of the origin is a return target).
    let (s, h, lp) = get(&format!("{}/t/acme/login?return_to=%2Ft%2Facme%2Fmfa", o.url), "").await;
    assert_eq!(s, 200, "{lp}");
    assert_eq!(field(&lp, "return_to"), "/t/acme/mfa");
    let login_cookie = set_cookie(&h, "gh_csrf").unwrap();
    let csrf_login = field(&lp, "csrf");
    let fields = [
        ("csrf", csrf_login.as_str()),
        ("return_to", "/t/acme/mfa"),
        ("email", owner),
        ("password", "owner password 1"),
    ];
    let (s, h, p) = post_form(&format!("{}/t/acme/login", o.url), &fields, &login_cookie).await;
    assert_eq!((s, location(&h).as_str()), (303, "/t/acme/mfa"), "{p}");
    assert!(set_cookie(&h, "gh_session").is_some());
    // Only the origin's own pages: another relative path is not a return target.
    let fields = [
        ("csrf", csrf_login.as_str()),
        ("return_to", "/t/acme/mfa/../../x"),
        ("email", owner),
        ("password", "owner password 1"),
    ];
    let (s, h, _) = post_form(&format!("{}/t/acme/login", o.url), &fields, &login_cookie).await;
    assert_eq!((s, location(&h).as_str()), (200, ""));
    // The account page links to the factor page.
    let (s, _, acct) = get(&format!("{}/t/acme/account", o.url), &session).await;
    assert_eq!(s, 200, "{acct}");
    assert!(acct.contains("href=\"/t/acme/mfa\""), "{acct}");

    // No factor yet: the page needs no step-up; it offers both methods, no recovery codes.
    let (page, cookies, csrf) = open_page(&o, &session).await;
    assert!(page.contains("You have no second factor yet") && !page.contains("recovery-codes"), "{page}");
    assert!(page.contains("action=\"/t/acme/mfa/manage/totp\"") && page.contains("data-passkey=\"create\""));
    assert_eq!(page.matches("<script").count(), 1, "only the same-origin script");
    let (_, h, _) = get(&format!("{}/t/acme/mfa", o.url), &session).await;
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline'; script")
            && csp.contains("default-src 'none'")
    );
    assert_eq!(h["cache-control"], "no-store");

    // CSRF: a wrong token, or the right token without its cookie, changes nothing.
    let totp_url = format!("{}/t/acme/mfa/manage/totp", o.url);
    let (s, _, p) = post_form(&totp_url, &[("csrf", "0000"), ("name", "Phone")], &cookies).await;
    assert_eq!(s, 403, "{p}");
    let (s, _, _) = post_form(&totp_url, &[("csrf", &csrf), ("name", "Phone")], &session).await;
    assert_eq!(s, 403);
    assert_eq!(factors(&o, &access).await["factors"], json!([]));

    // Add an authenticator app: the QR code (an SVG image) and the secret on the page.
    let (s, h, p) = post_form(&totp_url, &[("csrf", &csrf), ("name", "Phone")], &cookies).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(h["cache-control"], "no-store");
    let svg = between(&p, "src=\"data:image/svg+xml;base64,", "\"");
    let svg = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(svg).unwrap()).unwrap();
    assert!(svg.contains("<svg"), "{svg}");
    let secret = between(&p, "<p class=\"secret\">", "</p>").to_string();
    let id = between(&p, "/t/acme/mfa/manage/totp/", "/confirm").to_string();
    let gen = generator(&secret, owner);
    let confirm_url = format!("{}/t/acme/mfa/manage/totp/{id}/confirm", o.url);
    // A wrong code is refused and the factor stays pending.
    let t0 = early_in_step().await;
    let wrong = if gen.generate(t0).to_string() == "000000" { "111111" } else { "000000" };
    let (s, _, p) = post_form(&confirm_url, &[("csrf", &csrf), ("code", wrong)], &cookies).await;
    assert_eq!(s, 401, "{p}");
    assert_eq!(factors(&o, &access).await["factors"][0]["confirmed"], false);
    // The right code: confirmed, and the first factor's recovery codes shown once.
    let (s, h, p) =
        post_form(&confirm_url, &[("csrf", &csrf), ("code", &gen.generate(t0).to_string())], &cookies).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(h["cache-control"], "no-store");
    let first_codes = codes(&p);
    assert_eq!(first_codes.len(), 10, "{p}");
    let list = factors(&o, &access).await;
    assert_eq!(
        (list["factors"][0]["name"].as_str(), list["factors"][0]["confirmed"].as_bool()),
        (Some("Phone"), Some(true))
    );

    // The session did not pass MFA: the page and its forms send the browser to step-up.
    let stepup = "/t/acme/stepup?return_to=%2Ft%2Facme%2Fmfa";
    let (s, h, _) = get(&format!("{}/t/acme/mfa", o.url), &session).await;
    assert_eq!((s, location(&h).as_str()), (303, stepup));
    let rename_url = format!("{}/t/acme/mfa/manage/factors/{id}/rename", o.url);
    let (s, h, _) = post_form(&rename_url, &[("csrf", &csrf), ("name", "Renamed")], &cookies).await;
    assert_eq!((s, location(&h).as_str()), (303, stepup));
    assert_eq!(factors(&o, &access).await["factors"][0]["name"], "Phone");

    // The step-up page, with the next step's code: back to the factor page, a new cookie.
    let (s, h, sp) = get(&format!("{}{stepup}", o.url), &session).await;
    assert_eq!(s, 200, "{sp}");
    assert_eq!(field(&sp, "return_to"), "/t/acme/mfa");
    let step_cookies = format!("{session}; {}", set_cookie(&h, "gh_csrf").unwrap());
    let fields = [
        ("csrf", field(&sp, "csrf")),
        ("mfa_token", field(&sp, "mfa_token")),
        ("return_to", "/t/acme/mfa".to_string()),
        ("code", gen.generate(t0 + 30).to_string()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (s, h, p) = post_form(&format!("{}/t/acme/stepup", o.url), &fields, &step_cookies).await;
    assert_eq!((s, location(&h).as_str()), (303, "/t/acme/mfa"), "{p}");
    let stepped = set_cookie(&h, "gh_session").expect("a fresh session cookie");
    let stepped_access = stepped.trim_start_matches("gh_session=").to_string();
    assert!(claims(&stepped_access)["amr"].as_array().unwrap().contains(&json!("mfa")));

    // Now the page lists the factor, with its forms.
    let (page, cookies, csrf) = open_page(&o, &stepped).await;
    assert!(page.contains(">Phone<") && page.contains("Recovery codes left: 10"), "{page}");
    assert!(page.contains(&format!("action=\"/t/acme/mfa/manage/factors/{id}/remove\"")));

    // Rename, the attack case: stored as given, shown escaped, no script of it.
    let evil = "<script>alert(1)</script>";
    let (s, h, _) = post_form(&rename_url, &[("csrf", &csrf), ("name", evil)], &cookies).await;
    assert_eq!((s, location(&h).as_str()), (303, "/t/acme/mfa"));
    assert_eq!(factors(&o, &stepped_access).await["factors"][0]["name"], evil);
    let (page, cookies, csrf) = open_page(&o, &stepped).await;
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !page.contains(evil), "{page}");
    assert_eq!(page.matches("<script").count(), 1);
    // The account page escapes it too.
    let (_, _, acct) = get(&format!("{}/t/acme/account", o.url), &stepped).await;
    assert!(!acct.contains(evil) && acct.contains("&lt;script&gt;alert(1)"), "{acct}");
    // A name over 64 characters is refused (the API's rule), the old one kept.
    let long = "x".repeat(65);
    let (s, _, _) = post_form(&rename_url, &[("csrf", &csrf), ("name", &long)], &cookies).await;
    assert_eq!(s, 400);
    assert_eq!(factors(&o, &stepped_access).await["factors"][0]["name"], evil);

    // New recovery codes: shown once, not cached; the old set is void.
    let (s, h, p) =
        post_form(&format!("{}/t/acme/mfa/manage/recovery-codes", o.url), &[("csrf", &csrf)], &cookies).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(h["cache-control"], "no-store");
    let new_codes = codes(&p);
    assert_eq!(new_codes.len(), 10);
    assert!(new_codes.iter().all(|c| !first_codes.contains(c)));
    let step_up = format!("{}/t/acme/mfa/step-up", o.url);
    let (s, v) = js("POST", &step_up, Some(&stepped_access), Some(json!({ "recovery_code": first_codes[0] }))).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("mfa_invalid_code")), "{v}");
    let (s, v) = js("POST", &step_up, Some(&stepped_access), Some(json!({ "recovery_code": new_codes[0] }))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(factors(&o, &stepped_access).await["recovery_codes_left"], 9);

    // Remove it: the last factor takes the recovery codes with it.
    let remove_url = format!("{}/t/acme/mfa/manage/factors/{id}/remove", o.url);
    let (s, _, _) = post_form(&remove_url, &[("csrf", "bad")], &cookies).await;
    assert_eq!(s, 403);
    let (s, h, _) = post_form(&remove_url, &[("csrf", &csrf)], &cookies).await;
    assert_eq!((s, location(&h).as_str()), (303, "/t/acme/mfa"));
    let list = factors(&o, &stepped_access).await;
    assert_eq!((list["factors"].clone(), list["recovery_codes_left"].clone()), (json!([]), json!(0)));
    let (page, _, _) = open_page(&o, &stepped).await;
    assert!(page.contains("You have no second factor yet"));

    // Another tenant's page with this session: the sign-in page there, no forms; its
    // form routes refuse too.
    create_org(&o, "beta").await;
    let (s, h, p) = get(&format!("{}/t/beta/mfa", o.url), &stepped).await;
    assert_eq!((s, location(&h).as_str()), (303, "/t/beta/login?return_to=%2Ft%2Fbeta%2Fmfa"), "{p}");
    let (s, h, _) =
        post_form(&format!("{}/t/beta/mfa/manage/recovery-codes", o.url), &[("csrf", &csrf)], &cookies).await;
    assert!(s == 403 || (s == 303 && location(&h).contains("/t/beta/login")), "{s}");

    // A suspended organisation's members cannot use the page.
    let (s, v) = js("POST", &format!("{}/v1/orgs/acme/suspend", o.url), Some(OPERATOR), Some(json!({}))).await;
    assert!(s == 200 || s == 204, "{v}");
    let (s, _, p) = get(&format!("{}/t/acme/mfa", o.url), &stepped).await;
    assert_eq!(s, 403, "{p}");
    assert!(!p.contains("manage/totp"), "{p}");

    let actions = audited(&o).await;
    for a in [
        "mfa.totp.enroll_start",
        "mfa.totp.enroll",
        "mfa.factor.rename",
        "mfa.recovery_codes.generate",
        "mfa.factor.remove",
        "mfa.recovery_codes.void",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} audited: {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factor_page_adds_a_passkey_within_the_policy() {
    let root = tempfile::tempdir().unwrap();
    let o = start(root.path()).await;
    create_org(&o, "acme").await;
    let (_, t) = password(&o, "acme", "owner@acme.test", "owner password 1").await;
    let access = t["access_token"].as_str().unwrap().to_string();
    let session = format!("gh_session={access}");

    // The organisation allows passkeys only: no authenticator app on the page, and the
    // form refused if posted anyway.
    let policy = json!({ "mfa_methods": ["webauthn"] });
    let (s, v) = js("PUT", &format!("{}/v1/orgs/acme/auth-policy", o.url), Some(&access), Some(policy)).await;
    assert_eq!(s, 200, "{v}");
    let (page, cookies, csrf) = open_page(&o, &session).await;
    assert!(!page.contains("/mfa/manage/totp") && page.contains("data-passkey=\"create\""), "{page}");
    assert!(page.contains("data-register=\"/t/acme/mfa/manage/passkeys/register\""));
    let (s, _, p) = post_form(&format!("{}/t/acme/mfa/manage/totp", o.url), &[("csrf", &csrf)], &cookies).await;
    assert_eq!(s, 403, "{p}");
    assert!(p.contains("does not allow totp"), "{p}");

    // The page's script fetches the options with the CSRF token in a header.
    let (s, _, js_src) = get(&format!("{}/t/acme/mfa/webauthn.js", o.url), "").await;
    assert!(s == 200 && js_src.contains("dataset.register") && js_src.contains("x-csrf-token"));
    let register = format!("{}/t/acme/mfa/manage/passkeys/register", o.url);
    let (s, _, b) = call("POST", &register, None, None, &[("cookie", &cookies)]).await;
    assert_eq!(s, 403, "no CSRF header: {}", String::from_utf8_lossy(&b));
    let (s, _, b) = call("POST", &register, None, None, &[("cookie", &session), ("x-csrf-token", &csrf)]).await;
    assert_eq!(s, 403, "no CSRF cookie: {}", String::from_utf8_lossy(&b));
    let (s, h, b) = call("POST", &register, None, None, &[("cookie", &cookies), ("x-csrf-token", &csrf)]).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(h["cache-control"], "no-store");
    let opts: Value = serde_json::from_slice(&b).unwrap();
    let challenge_id = opts["challenge_id"].as_str().unwrap().to_string();

    // The authenticator answers; the form posts it back (what the script does).
    let mut auth = Authenticator::new(&o.url);
    let cred = auth.create(&opts).to_string();
    let finish = format!("{}/t/acme/mfa/manage/passkeys", o.url);
    let fields =
        [("csrf", csrf.as_str()), ("challenge_id", &challenge_id), ("credential", &cred), ("name", "Laptop <key>")];
    let (s, _, p) = post_form(&finish, &fields, &session).await;
    assert_eq!(s, 403, "no CSRF cookie: {p}");
    let (s, h, p) = post_form(&finish, &fields, &cookies).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(codes(&p).len(), 10, "the first factor's recovery codes: {p}");
    let list = factors(&o, &access).await;
    assert_eq!(list["factors"][0]["type"], "webauthn");
    assert_eq!(list["factors"][0]["name"], "Laptop <key>");
    // The same ceremony cannot be finished twice.
    let (s, _, _) = post_form(&finish, &fields, &cookies).await;
    assert!(s == 303 || s >= 400, "replayed registration: {s}");
    assert_eq!(factors(&o, &access).await["factors"].as_array().unwrap().len(), 1);

    // With a passkey and a password-only session: step-up first, for the script's fetch too.
    let (s, h, _) = get(&format!("{}/t/acme/mfa", o.url), &session).await;
    assert_eq!((s, location(&h).as_str()), (303, "/t/acme/stepup?return_to=%2Ft%2Facme%2Fmfa"));
    let (s, _, b) = call("POST", &register, None, None, &[("cookie", &cookies), ("x-csrf-token", &csrf)]).await;
    let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
    assert_eq!((s, v["error"].as_str()), (401, Some("step_up_required")), "{v}");

    // Step up with the passkey (the step-up page's "get" ceremony), then remove it.
    let (s, h, sp) = get(&format!("{}/t/acme/stepup?return_to=%2Ft%2Facme%2Fmfa", o.url), &session).await;
    assert_eq!(s, 200, "{sp}");
    assert!(sp.contains("data-passkey=\"get\""), "{sp}");
    let step_cookies = format!("{session}; {}", set_cookie(&h, "gh_csrf").unwrap());
    let mfa_token = field(&sp, "mfa_token");
    let (s, opts) =
        js("POST", &format!("{}/t/acme/mfa/challenge", o.url), None, Some(json!({ "mfa_token": mfa_token }))).await;
    assert_eq!(s, 200, "{opts}");
    let assertion = auth.get(&opts).to_string();
    let csrf_step = field(&sp, "csrf");
    let fields = [
        ("csrf", csrf_step.as_str()),
        ("mfa_token", &mfa_token),
        ("return_to", "/t/acme/mfa"),
        ("credential", &assertion),
    ];
    let (s, h, p) = post_form(&format!("{}/t/acme/stepup", o.url), &fields, &step_cookies).await;
    assert_eq!((s, location(&h).as_str()), (303, "/t/acme/mfa"), "{p}");
    let stepped = set_cookie(&h, "gh_session").unwrap();
    let (page, cookies, csrf) = open_page(&o, &stepped).await;
    assert!(page.contains("Laptop &lt;key&gt;") && page.contains(">Passkey<"), "{page}");
    let id = list["factors"][0]["id"].as_str().unwrap().to_string();
    let remove = format!("{}/t/acme/mfa/manage/factors/{id}/remove", o.url);
    // While the organisation requires MFA, the last factor stays (the API's rule).
    let stepped_access = stepped.trim_start_matches("gh_session=").to_string();
    let policy_url = format!("{}/v1/orgs/acme/auth-policy", o.url);
    let required = json!({ "mfa_required": true, "mfa_methods": ["webauthn"] });
    let (s, v) = js("PUT", &policy_url, Some(&stepped_access), Some(required)).await;
    assert_eq!(s, 200, "{v}");
    let (s, _, p) = post_form(&remove, &[("csrf", &csrf)], &cookies).await;
    assert_eq!(s, 409, "{p}");
    assert!(p.contains("add another factor first"), "{p}");
    assert_eq!(factors(&o, &access).await["factors"].as_array().unwrap().len(), 1);
    let (s, v) = js("PUT", &policy_url, Some(&stepped_access), Some(json!({ "mfa_required": false }))).await;
    assert_eq!(s, 200, "{v}");
    let (s, h, _) = post_form(&remove, &[("csrf", &csrf)], &cookies).await;
    assert_eq!((s, location(&h).as_str()), (303, "/t/acme/mfa"));
    assert_eq!(factors(&o, &access).await["factors"], json!([]));

    let actions = audited(&o).await;
    for a in ["mfa.passkey.register", "mfa.passkey.verified", "mfa.factor.remove"] {
        assert!(actions.iter().any(|x| x == a), "{a} audited: {actions:?}");
    }
}
