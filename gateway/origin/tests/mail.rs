//! Mail end to end: the origin against a real SMTP server on loopback (Python `aiosmtpd`,
//! `tests/smtp/server.py`, from `$GATEHOUSE_CACHE/smtp-venv`, which `scripts/test`
//! installs; `GATEHOUSE_SMTP_PYTHON` names another interpreter). The server parses each
//! message it receives and writes it as JSON; the tests read those and follow their links
//! over HTTP: email verification, invitations (password, form with CSRF, resend, revoke,
//! expiry, bulk CSV and JSON lines), templates with escaping, the resend limit, and
//! `email_unverified` under `required`. STARTTLS with AUTH, implicit TLS and plain
//! loopback are each used; a self-signed certificate is made by the test.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::origin::{claims, free_port, request as call, Origin};

#[path = "mail_support/smtp.rs"]
mod smtp;
use smtp::*;

// ---------------------------------------------------------------------------------------
// The origin

/// Start an origin in `dir` whose `[mail]` section is `mail`.
async fn start_origin(dir: &Path, mail: &str) -> Origin {
    let port = free_port();
    let toml = format!("{}\n{mail}\n", support::origin::config("eu-west", port, "localhost", &[]));
    support::origin::launch(dir, port, format!("http://127.0.0.1:{port}"), &toml).await
}

/// A JSON request with an optional bearer token (always with a JSON content type).
async fn api(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let body = ("application/json", body.map(|v| v.to_string()).unwrap_or_default());
    let (s, _, b) = support::origin::call(method, url, token, Some(body), &[]).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// Invite `email` as `role` to the organisation at `base` with `token`.
async fn invite(base: &str, token: &str, email: &str, role: &str) -> (u16, Value) {
    api("POST", &format!("{base}/invitations"), Some(token), Some(json!({ "email": email, "role": role }))).await
}

async fn sign_in(o: &Origin, email: &str, password: &str) -> (u16, Value) {
    support::origin::sign_in(o, "acme", email, password, &[]).await
}

/// Create organisation `acme` named `name`; the owner's access token.
async fn acme(o: &Origin, name: &str) -> String {
    support::origin::create_org(o, "acme", name, "team").await;
    let (s, v) = sign_in(o, "owner@acme.test", "owner password 1").await;
    assert_eq!(s, 200, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

/// Run a statement on acme's database (to move a link's expiry into the past).
async fn sql(o: &Origin, statement: &str) {
    let id = o.app.tenant_id("acme").await.unwrap().unwrap();
    let db = o.app.store.tenant(&id, false).await.unwrap();
    db.lock().await.execute(statement, ()).await.unwrap();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `name="…" value="…"` of a hidden input in a page.
fn hidden(page: &str, name: &str) -> String {
    let pat = format!("name=\"{name}\" value=\"");
    let i = page.find(&pat).unwrap_or_else(|| panic!("no {name} in {page}")) + pat.len();
    page[i..i + page[i..].find('"').unwrap()].to_string()
}

macro_rules! need_python {
    ($name:expr) => {
        match smtp_python() {
            Some(p) => p,
            None => {
                support::skip($name, "no Python with aiosmtpd, and the venv could not be made (python3 -m venv, pip)");
                return;
            }
        }
    };
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_over_starttls_with_auth() {
    let py = need_python!("verification_over_starttls_with_auth");
    let dir = tempfile::tempdir().unwrap();
    let smtp = start_smtp(&py, dir.path(), Mode::StartTls, true);
    let o =
        start_origin(&dir.path().join("origin"), &smtp_config(&smtp, "starttls", dir.path(), "verify_per_hour = 3"))
            .await;
    let owner = acme(&o, "Acme").await;
    let (s, v) = api(
        "PUT",
        &format!("{}/v1/orgs/acme/auth-policy", o.url),
        Some(&owner),
        Some(json!({ "email_verification": "required" })),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // An admin-created user is mailed a link: over STARTTLS, authenticated, multipart.
    let body = json!({ "email": "ada@acme.test", "password": "ada password 12", "role": "viewer" });
    let (s, v) = api("POST", &format!("{}/v1/orgs/acme/users", o.url), Some(&owner), Some(body)).await;
    assert_eq!(s, 201, "{v}");
    let first = smtp.last_to(1, "ada@acme.test").await;
    assert_eq!((first["tls"].as_bool(), first["authenticated"].as_bool()), (Some(true), Some(true)), "{first}");
    assert_eq!(first["content_type"], "multipart/alternative");
    assert_eq!(first["from"], "Acme Sign-in <no-reply@acme.test>");
    assert_eq!(first["subject"], "Verify your email address for Acme");
    assert!(first["html"].as_str().unwrap().contains("<a href=\"http://localhost:"), "{first}");
    let first_link = link(&first, "/t/acme/email/verify?token=ghv_");

    // Under `required`, the right password is refused with email_unverified (the wrong
    // one stays invalid_credentials), and a fresh link is mailed; the first one is void.
    let (s, v) = sign_in(&o, "ada@acme.test", "wrong password 1").await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_credentials")));
    let (s, v) = sign_in(&o, "ada@acme.test", "ada password 12").await;
    assert_eq!((s, v["error"].as_str()), (403, Some("email_unverified")), "{v}");
    // The hosted sign-in page says so too (and mails another link).
    let (_, h, page) = call("GET", &format!("{}/t/acme/login", o.url), &[], None).await;
    let csrf_cookie = h["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let form =
        format!("email=ada%40acme.test&password=ada+password+12&csrf={}&return_to=", hidden(&text(&page), "csrf"));
    let headers = [("content-type", "application/x-www-form-urlencoded"), ("cookie", csrf_cookie.as_str())];
    let (s, _, page) = call("POST", &format!("{}/t/acme/login", o.url), &headers, Some(form.into_bytes())).await;
    assert_eq!(s, 403, "{}", text(&page));
    assert!(text(&page).contains("Verify your email address first"), "{}", text(&page));
    let second = smtp.last_to(3, "ada@acme.test").await;
    let second_link = link(&second, "/t/acme/email/verify?token=ghv_");
    assert_ne!(first_link, second_link);
    let (s, _, page) = call("GET", &first_link, &[], None).await;
    assert_eq!(s, 409, "a replaced link is used up");
    assert!(text(&page).contains("data-reason=\"verification_used\""), "{}", text(&page));

    // Opening the link does not consume it: the page confirms with a POST.
    let (s, h, page) = call("GET", &second_link, &[], None).await;
    let page = text(&page);
    assert_eq!(s, 200, "{page}");
    assert_eq!(h["cache-control"], "no-store");
    assert!(page.contains("<form method=\"post\" action=\"/t/acme/email/verify\">"), "{page}");
    let (s, _, _) = call("GET", &second_link, &[], None).await;
    assert_eq!(s, 200, "still valid after being opened twice");
    let form = format!("token={}", hidden(&page, "token"));
    let url = format!("{}/t/acme/email/verify", o.url);
    let urlenc = [("content-type", "application/x-www-form-urlencoded")];
    let (s, _, done) = call("POST", &url, &urlenc, Some(form.clone().into_bytes())).await;
    assert_eq!(s, 200, "{}", text(&done));
    assert!(text(&done).contains("is verified"));
    let (s, _, again) = call("POST", &url, &urlenc, Some(form.into_bytes())).await;
    assert_eq!(s, 409, "single use");
    assert!(text(&again).contains("verification_used"));
    let (s, v) = api("POST", &url, None, Some(json!({ "token": "ghv_nonsense" }))).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("verification_invalid")));

    // Verified: sign-in works and the token says so.
    let (s, v) = sign_in(&o, "ada@acme.test", "ada password 12").await;
    assert_eq!(s, 200, "{v}");
    let ada = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims(&ada)["email_verified"], json!(true));
    let req_url = format!("{}/t/acme/email/verify-request", o.url);
    let (s, v) = api("POST", &req_url, Some(&ada), None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("already_verified")));
    let (s, v) = api("POST", &req_url, None, None).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("credential_missing")));

    // The resend limit: three links per user and hour (the admin's one included).
    let body = json!({ "email": "bob@acme.test", "password": "bob password 12", "role": "viewer" });
    let (s, _) = api("POST", &format!("{}/v1/orgs/acme/users", o.url), Some(&owner), Some(body)).await;
    assert_eq!(s, 201);
    smtp.last_to(4, "bob@acme.test").await;
    let (s, v) = api(
        "PUT",
        &format!("{}/v1/orgs/acme/auth-policy", o.url),
        Some(&owner),
        Some(json!({ "email_verification": "optional" })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = sign_in(&o, "bob@acme.test", "bob password 12").await;
    assert_eq!(s, 200, "optional: an unverified user signs in: {v}");
    let bob = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims(&bob)["email_verified"], json!(false));
    for n in [5, 6] {
        let (s, v) = api("POST", &req_url, Some(&bob), None).await;
        assert_eq!((s, v["status"].as_str()), (202, Some("sent")), "{v}");
        smtp.last_to(n, "bob@acme.test").await;
    }
    let auth = format!("Bearer {bob}");
    let (s, h, b) = call("POST", &req_url, &[("authorization", &auth)], None).await;
    assert_eq!(s, 429, "{}", text(&b));
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["error"], "rate_limited");
    let retry: i64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(smtp.messages().len(), 6, "nothing sent past the limit");

    // An expired link is refused (the newest one, moved into the past).
    let newest = link(&smtp.last_to(6, "bob@acme.test").await, "/t/acme/email/verify?token=");
    sql(&o, "UPDATE email_verifications SET expires_at = 1 WHERE used_at IS NULL").await;
    let (s, v) = api("POST", &url, None, Some(json!({ "token": token_of(&newest) }))).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("verification_expired")), "{v}");

    // Audited.
    let (s, v) = api("GET", &format!("{}/v1/orgs/acme/audit?action=email.verify", o.url), Some(&owner), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_and_templates_over_smtp() {
    let py = need_python!("invitations_and_templates_over_smtp");
    let dir = tempfile::tempdir().unwrap();
    let smtp = start_smtp(&py, dir.path(), Mode::StartTls, true);
    let cfg = smtp_config(&smtp, "starttls", dir.path(), "bulk_max_rows = 5");
    let o = start_origin(&dir.path().join("origin"), &cfg).await;
    // The organisation's name is attacker-chosen text: it must arrive escaped in HTML.
    let owner = acme(&o, "Acme <script>alert(1)</script>").await;
    let base = format!("{}/v1/orgs/acme", o.url);
    let (s, v) = api("POST", &format!("{base}/teams"), Some(&owner), Some(json!({ "name": "eng" }))).await;
    assert_eq!(s, 201, "{v}");
    let eng = v["id"].as_str().unwrap().to_string();

    // A template of the organisation's own, validated and audited.
    let tpl = json!({
        "subject": "Join {{org}} as {{role}}",
        "text": "{{inviter}} invites {{email}}: {{link}} (until {{expires}})",
        "html": "<p>{{inviter}} invites you to <b>{{org}}</b>: <a href=\"{{link}}\">accept</a></p>"
    });
    let (s, v) = api("PUT", &format!("{base}/mail/templates/invitation"), Some(&owner), Some(tpl.clone())).await;
    assert_eq!((s, v["custom"].as_bool()), (200, Some(true)), "{v}");
    let bad = json!({ "subject": "x", "text": "{{link}} {{password}}", "html": "{{link}}" });
    let (s, v) = api("PUT", &format!("{base}/mail/templates/invitation"), Some(&owner), Some(bad)).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_template")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("{{password}}"), "{v}");
    let (s, v) = api("GET", &format!("{base}/mail/templates/invitation"), Some(&owner), None).await;
    assert_eq!((s, v["subject"].as_str()), (200, Some("Join {{org}} as {{role}}")));
    let (s, v) = api("GET", &format!("{base}/mail/templates/welcome"), Some(&owner), None).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("template_kind_unknown")));

    // Invite carol as an editor of team eng; the mail uses the template, escaped in HTML.
    let body = json!({ "email": "Carol@Acme.test", "role": "editor", "team": "eng" });
    let (s, v) = api("POST", &format!("{base}/invitations"), Some(&owner), Some(body)).await;
    assert_eq!((s, v["mail"].as_str(), v["status"].as_str()), (201, Some("sent"), Some("pending")), "{v}");
    assert!(v.get("token").is_none() && !v.to_string().contains("ghi_"), "the link is only mailed: {v}");
    assert_eq!(v["team_id"], json!(eng), "the team by name: {v}");
    let mail = smtp.last_to(1, "carol@acme.test").await;
    assert_eq!(mail["subject"], "Join Acme <script>alert(1)</script> as editor");
    let html = mail["html"].as_str().unwrap();
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("<b>Acme &lt;script&gt;alert(1)&lt;/script&gt;</b>"), "{html}");
    assert!(mail["text"].as_str().unwrap().starts_with("owner@acme.test invites carol@acme.test: "), "{mail}");
    let carol_link = link(&mail, "/t/acme/invite?token=ghi_");

    // The page names the invitation; accepting with a password creates the member.
    let (s, _, page) = call("GET", &carol_link, &[], None).await;
    let page = text(&page);
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("as <b>editor</b> with <b>carol@acme.test</b>"), "{page}");
    assert!(!page.contains("<script>alert"), "escaped on the page too");
    let accept = format!("{}/t/acme/invite/accept", o.url);
    let token = token_of(&carol_link);
    let (s, v) = api("POST", &accept, None, Some(json!({ "token": token, "password": "short" }))).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("weak_password")));
    let body = json!({ "token": token, "password": "carol password 1", "name": "Carol" });
    let (s, v) = api("POST", &accept, None, Some(body.clone())).await;
    assert_eq!(s, 201, "{v}");
    let c = claims(v["access_token"].as_str().unwrap());
    assert_eq!((c["roles"].clone(), c["teams"].clone()), (json!(["editor"]), json!(["eng"])), "{c}");
    let (s, v) = api("POST", &accept, None, Some(body)).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("invitation_used")), "accepting twice fails");
    let (s, _, page) = call("GET", &carol_link, &[], None).await;
    assert_eq!(s, 409);
    assert!(text(&page).contains("invitation_used"));
    // Signed in later with the invited role and team, the address verified.
    let (s, v) = sign_in(&o, "carol@acme.test", "carol password 1").await;
    assert_eq!(s, 200, "{v}");
    let c = claims(v["access_token"].as_str().unwrap());
    assert_eq!((c["roles"].clone(), c["teams"].clone()), (json!(["editor"]), json!(["eng"])));
    assert_eq!(c["email_verified"], json!(true), "an accepted invitation verifies the address");
    let (s, v) = invite(&base, &owner, "carol@acme.test", "viewer").await;
    assert_eq!((s, v["error"].as_str()), (409, Some("already_member")));

    // Resend: a new link, the old one void. The new one accepted through the HTML form.
    let (s, v) = invite(&base, &owner, "dave@acme.test", "viewer").await;
    assert_eq!(s, 201, "{v}");
    let dave_id = v["id"].as_str().unwrap().to_string();
    let (s, v) = invite(&base, &owner, "dave@acme.test", "viewer").await;
    assert_eq!((s, v["error"].as_str()), (409, Some("invitation_pending")));
    let old = link(&smtp.last_to(2, "dave@acme.test").await, "/t/acme/invite?token=");
    let resend = format!("{base}/invitations/{dave_id}/resend");
    let auth = format!("Bearer {owner}");
    let (s, h, b) = call("POST", &resend, &[("authorization", &auth)], None).await;
    assert_eq!(s, 429, "just sent: {}", text(&b));
    assert!(text(&b).contains("rate_limited"));
    let retry: i64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(smtp.messages().len(), 2, "no mail for a refused resend");
    sql(&o, &format!("UPDATE invitations SET sent_at = sent_at - 60 WHERE id = '{dave_id}'")).await;
    let (s, v) = api("POST", &resend, Some(&owner), None).await;
    assert_eq!((s, v["sends"].as_i64(), v["mail"].as_str()), (200, Some(2), Some("sent")), "{v}");
    let new = link(&smtp.last_to(3, "dave@acme.test").await, "/t/acme/invite?token=");
    assert_ne!(old, new);
    let (s, v) =
        api("POST", &accept, None, Some(json!({ "token": token_of(&old), "password": "dave password 1" }))).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invitation_invalid")), "the old link is void");
    let (s, h, page) = call("GET", &new, &[], None).await;
    assert_eq!(s, 200);
    let page = text(&page);
    let set_cookie = h["set-cookie"].to_str().unwrap();
    let csrf_cookie = set_cookie.split(';').next().unwrap().to_string();
    let form = format!(
        "token={}&csrf={}&mode=password&name=Dave&password=dave+password+1",
        hidden(&page, "token"),
        hidden(&page, "csrf")
    );
    let urlenc = ("content-type", "application/x-www-form-urlencoded");
    let (s, _, b) = call("POST", &accept, &[urlenc], Some(form.clone().into_bytes())).await;
    assert_eq!(s, 403, "no CSRF cookie: {}", text(&b));
    assert!(text(&b).contains("csrf_failed"));
    let (s, h, b) = call("POST", &accept, &[urlenc, ("cookie", &csrf_cookie)], Some(form.into_bytes())).await;
    assert_eq!(s, 200, "{}", text(&b));
    let cookies: Vec<&str> = h.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(
        cookies.iter().any(|c| c.contains("HttpOnly") && c.split('=').nth(1).is_some_and(|v| v.starts_with("ey"))),
        "{cookies:?}"
    );
    let (s, _) = sign_in(&o, "dave@acme.test", "dave password 1").await;
    assert_eq!(s, 200);

    // Passwordless: the account is created without a password, signed in, and sent on to
    // passkey registration (the MFA API answers it with WebAuthn options).
    let (s, v) = invite(&base, &owner, "pat@acme.test", "viewer").await;
    assert_eq!(s, 201, "{v}");
    let pat = link(&smtp.last_to(4, "pat@acme.test").await, "/t/acme/invite?token=");
    let (s, v) = api("POST", &accept, None, Some(json!({ "token": token_of(&pat), "mode": "passkey" }))).await;
    assert_eq!((s, v["next"].as_str()), (201, Some("/t/acme/mfa/passkeys/register")), "{v}");
    let pat_token = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims(&pat_token)["amr"], json!([]), "no method yet");
    let (s, v) = api("POST", &format!("{}{}", o.url, v["next"].as_str().unwrap()), Some(&pat_token), None).await;
    assert_eq!(s, 200, "passkey registration starts: {v}");
    let (s, v) = sign_in(&o, "pat@acme.test", "").await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_credentials")), "no password to sign in with");

    // Under mfa_required, the new member is taken to enrolment (the account exists).
    let policy = format!("{base}/auth-policy");
    let (s, v) = api("PUT", &policy, Some(&owner), Some(json!({ "mfa_required": true }))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = invite(&base, &owner, "quinn@acme.test", "viewer").await;
    assert_eq!(s, 201, "{v}");
    let quinn = link(&smtp.last_to(5, "quinn@acme.test").await, "/t/acme/invite?token=");
    let body = json!({ "token": token_of(&quinn), "password": "quinn password 1" });
    let (s, v) = api("POST", &accept, None, Some(body.clone())).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("mfa_enrollment_required")), "{v}");
    assert!(v["mfa_token"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    assert!(v.get("access_token").is_none(), "no tokens before enrolment: {v}");
    let (s, v) = api("POST", &accept, None, Some(body)).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("invitation_used")), "the account was created: {v}");
    let (s, v) = api("PUT", &policy, Some(&owner), Some(json!({ "mfa_required": false }))).await;
    assert_eq!(s, 200, "{v}");

    // Revoke; an expired link; listing by status.
    let (s, v) = invite(&base, &owner, "erin@acme.test", "viewer").await;
    assert_eq!(s, 201, "{v}");
    let erin_id = v["id"].as_str().unwrap().to_string();
    let erin = link(&smtp.last_to(6, "erin@acme.test").await, "/t/acme/invite?token=");
    let (s, _) = api("DELETE", &format!("{base}/invitations/{erin_id}"), Some(&owner), None).await;
    assert_eq!(s, 204);
    let (s, v) =
        api("POST", &accept, None, Some(json!({ "token": token_of(&erin), "password": "erin password 1" }))).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invitation_revoked")));
    let (s, v) = api("POST", &format!("{base}/invitations/{erin_id}/resend"), Some(&owner), None).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("invitation_revoked")));
    let (s, v) = invite(&base, &owner, "frank@acme.test", "viewer").await;
    assert_eq!(s, 201, "{v}");
    let frank = link(&smtp.last_to(7, "frank@acme.test").await, "/t/acme/invite?token=");
    sql(&o, "UPDATE invitations SET expires_at = 1 WHERE email = 'frank@acme.test'").await;
    let (s, v) =
        api("POST", &accept, None, Some(json!({ "token": token_of(&frank), "password": "frank password 1" }))).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invitation_expired")));
    for (status, want) in [("accepted", 4), ("revoked", 1), ("expired", 1), ("pending", 0)] {
        let (s, v) = api("GET", &format!("{base}/invitations?status={status}"), Some(&owner), None).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["items"].as_array().unwrap().len(), want, "{status}: {v}");
    }
    let (s, v) = api("GET", &format!("{base}/invitations?status=lost"), Some(&owner), None).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_query")));

    // Bulk, CSV then JSON lines: a result per row; only the good rows are mailed.
    let csv = "email,role,team\ngina@acme.test,viewer,eng\ncarol@acme.test,viewer,\nnot-an-email,viewer\nhal@acme.test,no-such-role\n";
    let auth = format!("Bearer {owner}");
    let (s, _, b) = call(
        "POST",
        &format!("{base}/invitations/bulk"),
        &[("authorization", &auth), ("content-type", "text/csv")],
        Some(csv.into()),
    )
    .await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((s, v["invited"].as_i64(), v["failed"].as_i64()), (200, Some(1), Some(3)), "{v}");
    let codes: Vec<&str> =
        v["results"].as_array().unwrap().iter().map(|r| r["error"].as_str().unwrap_or("ok")).collect();
    assert_eq!(codes, ["ok", "already_member", "invalid_email", "unknown_role"]);
    assert_eq!(v["results"][0]["row"], 2);
    assert_eq!(v["results"][0]["mail"], "sent");
    let jl = "{\"email\":\"ivy@acme.test\",\"role\":\"viewer\"}\n{\"email\":\"jo@acme.test\",\"role\":\"editor\",\"team\":\"eng\"}\n{\"email\":3}\n";
    let (s, _, b) = call(
        "POST",
        &format!("{base}/invitations/bulk"),
        &[("authorization", &auth), ("content-type", "application/x-ndjson")],
        Some(jl.into()),
    )
    .await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((s, v["invited"].as_i64(), v["failed"].as_i64()), (200, Some(2), Some(1)), "{v}");
    assert_eq!(v["results"][2]["error"], "invalid_row");
    let all = smtp.wait_for(10).await;
    let to: Vec<&str> = all[7..].iter().map(|m| m["rcpt_tos"][0].as_str().unwrap()).collect();
    assert_eq!(to, ["gina@acme.test", "ivy@acme.test", "jo@acme.test"]);
    let six = "a@acme.test,viewer\n".repeat(6);
    let (s, _, b) = call(
        "POST",
        &format!("{base}/invitations/bulk"),
        &[("authorization", &auth), ("content-type", "text/csv")],
        Some(six.into()),
    )
    .await;
    assert_eq!(s, 400, "{}", text(&b));
    assert!(text(&b).contains("too_many_rows"));

    // Nobody invites above their own role; a viewer cannot invite at all.
    let (s, v) = api(
        "POST",
        &format!("{base}/users"),
        Some(&owner),
        Some(json!({ "email": "adm@acme.test", "password": "admin password 1", "role": "admin" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = sign_in(&o, "adm@acme.test", "admin password 1").await;
    let admin = v["access_token"].as_str().unwrap().to_string();
    let (s, v) = invite(&base, &admin, "o2@acme.test", "owner").await;
    assert_eq!((s, v["error"].as_str()), (403, Some("role_too_high")));
    let (s, v) = invite(&base, &admin, "k@acme.test", "admin").await;
    assert_eq!(s, 201, "admins hold users:invite: {v}");
    let (_, v) = sign_in(&o, "carol@acme.test", "carol password 1").await;
    let editor = v["access_token"].as_str().unwrap().to_string();
    let (s, v) = api("GET", &format!("{base}/invitations"), Some(&editor), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("permission_denied")), "an editor lacks users:invite");

    // Back to the built-in template; audited both ways.
    let (s, _) = api("DELETE", &format!("{base}/mail/templates/invitation"), Some(&owner), None).await;
    assert_eq!(s, 204);
    let (_, v) = api("GET", &format!("{base}/mail/templates/invitation"), Some(&owner), None).await;
    assert_eq!(
        (v["custom"].as_bool(), v["subject"].as_str()),
        (Some(false), Some("{{inviter}} invited you to {{org}}"))
    );
    for action in [
        "mail_template.put",
        "mail_template.delete",
        "invitation.create",
        "invitation.resend",
        "invitation.revoke",
        "invitation.accept",
    ] {
        let (s, v) = api("GET", &format!("{base}/audit?action={action}"), Some(&owner), None).await;
        assert_eq!(s, 200, "{v}");
        assert!(!v["items"].as_array().unwrap().is_empty(), "{action}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_and_plain_loopback_deliver_the_reset_mail() {
    let py = need_python!("implicit_tls_and_plain_loopback_deliver_the_reset_mail");
    for (mode, tls) in [(Mode::Tls, "tls"), (Mode::Plain, "none")] {
        let dir = tempfile::tempdir().unwrap();
        let smtp = start_smtp(&py, dir.path(), mode, tls != "none");
        let o = start_origin(&dir.path().join("origin"), &smtp_config(&smtp, tls, dir.path(), "")).await;
        acme(&o, "Acme").await;
        let (s, _) = api(
            "POST",
            &format!("{}/t/acme/password/reset-request", o.url),
            None,
            Some(json!({ "email": "owner@acme.test" })),
        )
        .await;
        assert_eq!(s, 202);
        let m = smtp.last_to(1, "owner@acme.test").await;
        assert_eq!(m["subject"], "Reset your password");
        assert_eq!(
            (m["tls"].as_bool(), m["authenticated"].as_bool()),
            (Some(tls == "tls"), Some(tls == "tls")),
            "{tls}: {m}"
        );
        let token = m["text"].as_str().unwrap().split_whitespace().find(|w| w.starts_with("ghp_")).unwrap().to_string();
        assert!(m["html"].as_str().unwrap().contains(&format!("<pre>{token}</pre>")));
        let body = json!({ "token": token, "new_password": "a new password 1" });
        let (s, v) = api("POST", &format!("{}/t/acme/password/reset", o.url), None, Some(body)).await;
        assert_eq!(s, 204, "{tls}: {v}");
        let (s, _) = sign_in(&o, "owner@acme.test", "a new password 1").await;
        assert_eq!(s, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_failures_are_bounded_and_reported() {
    let py = need_python!("smtp_failures_are_bounded_and_reported");
    // A wrong AUTH password: the invitation stands, the mail "failed", nothing delivered.
    let dir = tempfile::tempdir().unwrap();
    let smtp = start_smtp(&py, dir.path(), Mode::StartTls, true);
    let cfg = smtp_config(&smtp, "starttls", dir.path(), "");
    std::fs::write(dir.path().join("smtp.password"), "not the password\n").unwrap();
    let o = start_origin(&dir.path().join("origin"), &cfg).await;
    let owner = acme(&o, "Acme").await;
    let inv = format!("{}/v1/orgs/acme/invitations", o.url);
    let (s, v) = api("POST", &inv, Some(&owner), Some(json!({ "email": "a@acme.test", "role": "viewer" }))).await;
    assert_eq!((s, v["mail"].as_str(), v["status"].as_str()), (201, Some("failed"), Some("pending")), "{v}");
    assert!(smtp.messages().is_empty());

    // STARTTLS required but the server offers none: nothing goes out in clear.
    let dir = tempfile::tempdir().unwrap();
    let plain = start_smtp(&py, dir.path(), Mode::Plain, false);
    make_cert(dir.path());
    let o = start_origin(&dir.path().join("origin"), &smtp_config(&plain, "starttls", dir.path(), "")).await;
    let owner = acme(&o, "Acme").await;
    let (s, v) = api(
        "POST",
        &format!("{}/v1/orgs/acme/invitations", o.url),
        Some(&owner),
        Some(json!({ "email": "b@acme.test", "role": "viewer" })),
    )
    .await;
    assert_eq!((s, v["mail"].as_str()), (201, Some("failed")), "{v}");
    assert!(plain.messages().is_empty(), "no downgrade to plain text");

    // A server that accepts and never speaks: the request ends within the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mail = format!(
        "[mail]\nkind = \"smtp\"\ntimeout_secs = 2\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n"
    );
    let o = start_origin(&dir.path().join("origin"), &mail).await;
    let owner = acme(&o, "Acme").await;
    let started = Instant::now();
    let (s, v) = api(
        "POST",
        &format!("{}/v1/orgs/acme/invitations", o.url),
        Some(&owner),
        Some(json!({ "email": "c@acme.test", "role": "viewer" })),
    )
    .await;
    let took = started.elapsed();
    assert_eq!((s, v["mail"].as_str()), (201, Some("failed")), "{v}");
    assert!(took < Duration::from_secs(5), "bounded by mail.timeout_secs: {took:?}");
    eprintln!("a silent SMTP server held the request {took:?} (mail.timeout_secs = 2)");
    // A bulk invitation does not wait a timeout per row: after the first, the relay is
    // not tried again in that request.
    let rows = "d@acme.test,viewer\ne@acme.test,viewer\nf@acme.test,viewer\n";
    let auth = format!("Bearer {owner}");
    let headers = [("authorization", auth.as_str()), ("content-type", "text/csv")];
    let started = Instant::now();
    let (s, _, b) =
        call("POST", &format!("{}/v1/orgs/acme/invitations/bulk", o.url), &headers, Some(rows.into())).await;
    let took = started.elapsed();
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((s, v["invited"].as_i64()), (200, Some(3)), "{v}");
    assert!(v["results"].as_array().unwrap().iter().all(|r| r["mail"] == "failed"), "{v}");
    assert!(took < Duration::from_secs(5), "one timeout, not three: {took:?}");
    eprintln!("a bulk of three against the silent server took {took:?}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_through_the_file_mailer_respect_the_tier_cap() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let cfg = format!("[mail]\nkind = \"file\"\ndir = \"{}\"\n[tiers.team]\nmax_users = 2\n", outbox.display());
    let o = start_origin(&dir.path().join("origin"), &cfg).await;
    let owner = acme(&o, "Acme").await;
    let base = format!("{}/v1/orgs/acme", o.url);
    for email in ["a@acme.test", "b@acme.test"] {
        let (s, v) = invite(&base, &owner, email, "viewer").await;
        assert_eq!((s, v["mail"].as_str()), (201, Some("sent")), "{v}");
    }
    // One readable .eml per message: the link is whole in the text part.
    let link_to = |to: &str| {
        let files: Vec<String> = std::fs::read_dir(&outbox)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .filter(|m| m.starts_with(&format!("To: {to}\r\n")))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].contains("Content-Type: multipart/alternative;"), "{}", files[0]);
        let l = files[0].split_whitespace().find(|w| w.starts_with("http") && w.contains("/t/acme/invite?token=ghi_"));
        l.unwrap_or_else(|| panic!("no link in {}", files[0])).to_string()
    };
    let (a, b) = (link_to("a@acme.test"), link_to("b@acme.test"));
    let accept = format!("{}/t/acme/invite/accept", o.url);
    let (s, v) = api("POST", &accept, None, Some(json!({ "token": token_of(&a), "password": "a password 123" }))).await;
    assert_eq!(s, 201, "{v}");
    // The owner and a: the tier's two users. b cannot join, and can later.
    let (s, v) = api("POST", &accept, None, Some(json!({ "token": token_of(&b), "password": "b password 123" }))).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("limit_reached")), "{v}");
    let (s, v) = api("GET", &format!("{base}/invitations?status=pending"), Some(&owner), None).await;
    assert_eq!((s, v["items"][0]["email"].as_str()), (200, Some("b@acme.test")), "b's invitation is kept: {v}");
    let (s, v) = invite(&base, &owner, "c@acme.test", "viewer").await;
    assert_eq!((s, v["error"].as_str()), (409, Some("limit_reached")), "refused when inviting too: {v}");
    let (s, v) = sign_in(&o, "b@acme.test", "b password 123").await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_credentials")), "no account was made for b");
}

/// The `.eml` files the file mailer wrote into `dir` whose subject is `subject`.
fn outbox(dir: &Path, subject: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                .filter(|m| m.contains(&format!("\r\nSubject: {subject}\r\n")))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sign_ins_mail_links_within_the_hourly_limit_and_invitations_page() {
    let dir = tempfile::tempdir().unwrap();
    let box_dir = dir.path().join("outbox");
    let o = start_origin(&dir.path().join("origin"), &format!("[mail]\ndir = \"{}\"\n", box_dir.display())).await;
    let owner = acme(&o, "Acme").await;
    let base = format!("{}/v1/orgs/acme", o.url);
    let (s, _) =
        api("PUT", &format!("{base}/auth-policy"), Some(&owner), Some(json!({ "email_verification": "required" })))
            .await;
    assert_eq!(s, 200);
    let body = json!({ "email": "ada@acme.test", "password": "ada password 12", "role": "viewer" });
    let (s, _) = api("POST", &format!("{base}/users"), Some(&owner), Some(body)).await;
    assert_eq!(s, 201);
    let subject = "Verify your email address for Acme";
    assert_eq!(outbox(&box_dir, subject).len(), 1, "the admin-created user's link");
    // Every refusal is the same 403; links go out until the hourly limit (3 with the first).
    for want in [2, 3, 3, 3] {
        let (s, v) = sign_in(&o, "ada@acme.test", "ada password 12").await;
        assert_eq!((s, v["error"].as_str()), (403, Some("email_unverified")), "{v}");
        assert_eq!(outbox(&box_dir, subject).len(), want);
    }
    // The newest link verifies; sign-in works.
    let mut links: Vec<String> = outbox(&box_dir, subject)
        .iter()
        .filter_map(|m| {
            m.split_whitespace().find(|w| w.starts_with("http") && w.contains("token=ghv_")).map(String::from)
        })
        .collect();
    links.sort();
    links.dedup();
    assert_eq!(links.len(), 3);
    let verify = format!("{}/t/acme/email/verify", o.url);
    let mut verified = 0;
    for l in &links {
        let (s, v) = api("POST", &verify, None, Some(json!({ "token": token_of(l) }))).await;
        match s {
            200 => verified += 1,
            _ => assert_eq!((s, v["error"].as_str()), (409, Some("verification_used")), "older links are void: {v}"),
        }
    }
    assert_eq!(verified, 1, "only the newest link works");
    let (s, v) = sign_in(&o, "ada@acme.test", "ada password 12").await;
    assert_eq!(s, 200, "{v}");

    // Invitations are listed a page at a time.
    for e in ["p1@acme.test", "p2@acme.test", "p3@acme.test"] {
        let (s, _) = invite(&base, &owner, e, "viewer").await;
        assert_eq!(s, 201);
    }
    let mut seen = Vec::new();
    let mut url = format!("{base}/invitations?limit=2");
    loop {
        let (s, v) = api("GET", &url, Some(&owner), None).await;
        assert_eq!(s, 200, "{v}");
        seen.extend(v["items"].as_array().unwrap().iter().map(|i| i["email"].as_str().unwrap().to_string()));
        match v["next"].as_str() {
            Some(n) => url = format!("{base}/invitations?limit=2&after={n}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["p1@acme.test", "p2@acme.test", "p3@acme.test"]);
}
