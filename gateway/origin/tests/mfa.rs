//! End-to-end tests of multi-factor authentication at the origin: a real origin over
//! HTTP on loopback, TOTP codes computed with `totp-rs` from the secret the enrolment
//! shows, and a software WebAuthn authenticator driven through the real ceremonies.

use base64::Engine as _;
use serde_json::json;

#[path = "mfa_support/authenticator.rs"]
mod authenticator;
use authenticator::Authenticator;
#[path = "mfa_support/harness.rs"]
mod harness;
use harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_recovery_codes_lockout_step_up_and_reset() {
    let root = tempfile::tempdir().unwrap();
    let o = start(root.path()).await;
    create_org(&o, "acme").await;
    let owner = "owner@acme.test";

    // Discovery names the new claims and grants.
    let (_, d) = js("GET", &format!("{}/t/acme/.well-known/openid-configuration", o.url), None, None).await;
    for c in ["acr", "auth_time", "email_verified"] {
        assert!(d["claims_supported"].as_array().unwrap().contains(&json!(c)), "{c}");
    }
    assert_eq!(d["acr_values_supported"], json!(["urn:gatehouse:mfa"]));
    assert!(d["grant_types_supported"].as_array().unwrap().contains(&json!("mfa")));

    // A password-only sign-in: amr pwd, auth_time now, no acr.
    let (s, first) = password(&o, "acme", owner, "owner password 1").await;
    assert_eq!(s, 200, "{first}");
    let pwd_only = first["access_token"].as_str().unwrap().to_string();
    let c = claims(&pwd_only);
    assert_eq!(c["amr"], json!(["pwd"]));
    assert!(c.get("acr").is_none(), "{c}");
    assert_eq!(c["email_verified"], false);
    let first_auth_time = c["auth_time"].as_i64().unwrap();
    assert!((first_auth_time - now() as i64).abs() <= 2, "{c}");

    // Enrolment: secret, otpauth URI and QR code; a wrong first code is refused; the
    // code of the step before (±1) confirms it, and ten recovery codes come back once.
    let t0 = early_in_step().await;
    let (s, e) =
        js("POST", &format!("{}/t/acme/mfa/totp", o.url), Some(&pwd_only), Some(json!({ "name": "phone" }))).await;
    assert_eq!(s, 201, "{e}");
    let secret = e["secret"].as_str().unwrap().to_string();
    assert!(e["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/"), "{e}");
    assert!(e["otpauth_uri"].as_str().unwrap().contains(&format!("secret={secret}")));
    assert!(e["qr_svg"].as_str().unwrap().contains("<svg"), "the QR code is an SVG");
    let id = e["id"].as_str().unwrap().to_string();
    let gen = generator(&secret, owner);
    let code = |at: u64| gen.generate(at).to_string();
    let confirm = format!("{}/t/acme/mfa/totp/{id}/confirm", o.url);
    let wrong = if code(t0) == "000000" { "111111" } else { "000000" };
    let (s, v) = js("POST", &confirm, Some(&pwd_only), Some(json!({ "code": wrong }))).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("mfa_invalid_code")), "{v}");
    let (s, v) = js("POST", &confirm, Some(&pwd_only), Some(json!({ "code": code(t0 - 30) }))).await;
    assert_eq!(s, 200, "{v}");
    let recovery: Vec<String> =
        v["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    assert_eq!(recovery.len(), 10);
    assert_eq!(v["factor"]["confirmed"], true);
    let (s, v) = js("POST", &confirm, Some(&pwd_only), Some(json!({ "code": code(t0) }))).await;
    assert_eq!(s, 401, "once confirmed, changes need a session that passed MFA: {v}");
    assert_eq!(v["error"], "step_up_required");

    let (s, l) = js("GET", &format!("{}/t/acme/mfa/factors", o.url), Some(&pwd_only), None).await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(l["factors"].as_array().unwrap().len(), 1);
    assert_eq!((l["factors"][0]["type"].as_str(), l["factors"][0]["name"].as_str()), (Some("totp"), Some("phone")));
    assert_eq!(l["recovery_codes_left"], 10);

    // Sign-in now needs the second step.
    let (s, v) = password(&o, "acme", owner, "owner password 1").await;
    assert_eq!((s, v["error"].as_str()), (403, Some("mfa_required")), "{v}");
    assert_eq!(v["methods"], json!(["totp", "recovery_code"]));
    assert!(v.get("access_token").is_none());
    let mfa_token = v["mfa_token"].as_str().unwrap().to_string();
    // The current step's code; then the same code again (with a fresh mfa_token) is a reuse.
    let (s, tok) = mfa_grant(&o, "acme", &mfa_token, "otp", json!(code(t0))).await;
    assert_eq!(s, 200, "{tok}");
    let c = claims(tok["access_token"].as_str().unwrap());
    assert_eq!(c["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(c["acr"], "urn:gatehouse:mfa");
    let (s, v) = mfa_grant(&o, "acme", &mfa_token, "otp", json!(code(t0 + 30))).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("mfa_token_invalid")), "the mfa_token is single use: {v}");
    let (_, v) = password(&o, "acme", owner, "owner password 1").await;
    let mfa_token = v["mfa_token"].as_str().unwrap().to_string();
    let (s, v) = mfa_grant(&o, "acme", &mfa_token, "otp", json!(code(t0))).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("mfa_invalid_code")), "a reused code: {v}");
    let t2 = early_in_step().await; // (the step the origin is in when it checks)
    let (s, v) = mfa_grant(&o, "acme", &mfa_token, "otp", json!(code(t2 + 60))).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("mfa_invalid_code")), "two steps ahead: {v}");
    let (s, v) = mfa_grant(&o, "acme", &mfa_token, "otp", json!(code(t0 + 30))).await;
    assert_eq!(s, 200, "one step ahead: {v}");
    let refresh = v["refresh_token"].as_str().unwrap().to_string();
    // Refresh re-issues amr and auth_time unchanged.
    let before = claims(v["access_token"].as_str().unwrap());
    let (s, r) = js(
        "POST",
        &format!("{}/t/acme/token", o.url),
        None,
        Some(json!({ "grant_type": "refresh_token", "refresh_token": refresh })),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let after = claims(r["access_token"].as_str().unwrap());
    assert_eq!(
        (&after["amr"], &after["auth_time"], &after["acr"]),
        (&before["amr"], &before["auth_time"], &before["acr"])
    );

    // Recovery codes: single use, audited, amr without otp.
    let (_, v) = password(&o, "acme", owner, "owner password 1").await;
    let mfa_token = v["mfa_token"].as_str().unwrap().to_string();
    let (s, v) = mfa_grant(&o, "acme", &mfa_token, "recovery_code", json!(recovery[0].to_uppercase())).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(claims(v["access_token"].as_str().unwrap())["amr"], json!(["pwd", "mfa"]));
    let mfa_session = v["access_token"].as_str().unwrap().to_string();
    let (_, v) = password(&o, "acme", owner, "owner password 1").await;
    let mfa_token = v["mfa_token"].as_str().unwrap().to_string();
    let (s, v) = mfa_grant(&o, "acme", &mfa_token, "recovery_code", json!(recovery[0])).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("mfa_invalid_code")), "used once: {v}");

    // Regenerating needs a session that passed MFA; it voids the old set.
    let (s, v) = js("POST", &format!("{}/t/acme/mfa/recovery-codes", o.url), Some(&pwd_only), None).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("step_up_required")), "{v}");
    let (s, h, _) = call("POST", &format!("{}/t/acme/mfa/recovery-codes", o.url), Some(&mfa_session), None, &[]).await;
    assert_eq!((s, h["cache-control"].to_str().unwrap()), (200, "no-store"), "answers with secrets are not cached");
    let (s, v) = js("POST", &format!("{}/t/acme/mfa/recovery-codes", o.url), Some(&mfa_session), None).await;
    assert_eq!(s, 200, "{v}");
    let fresh: Vec<String> =
        v["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    assert_eq!(fresh.len(), 10);
    assert!(fresh.iter().all(|c| !recovery.contains(c)));
    let (s, v) = mfa_grant(&o, "acme", &mfa_token, "recovery_code", json!(recovery[1])).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("mfa_invalid_code")), "the old set is void: {v}");
    let (s, v) = mfa_grant(&o, "acme", &mfa_token, "recovery_code", json!(fresh[0])).await;
    assert_eq!(s, 200, "{v}");

    // API step-up of the password-only session: same session, fresh auth_time, mfa.
    // (The next step's code: the steps up to t0's next one are spent.)
    while now() / 30 <= t0 / 30 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let t1 = early_in_step().await;
    let step = t1 / 30 + 1;
    let (s, v) = js(
        "POST",
        &format!("{}/t/acme/mfa/step-up", o.url),
        Some(&pwd_only),
        Some(json!({ "otp": gen.generate(step * 30).to_string() })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let c = claims(v["access_token"].as_str().unwrap());
    assert_eq!(c["sid"], claims(&pwd_only)["sid"], "the same session");
    assert_eq!(c["amr"], json!(["pwd", "otp", "mfa"]));
    assert!(c["auth_time"].as_i64().unwrap() > first_auth_time, "a fresh auth_time: {c}");
    let stepped = v["access_token"].as_str().unwrap().to_string();
    // Without a code: an mfa_token to finish with grant_type=mfa.
    let (s, v) = js("POST", &format!("{}/t/acme/mfa/step-up", o.url), Some(&pwd_only), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["methods"], json!(["totp", "recovery_code"]));
    let (s, v) = mfa_grant(&o, "acme", v["mfa_token"].as_str().unwrap(), "recovery_code", json!(fresh[1])).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(claims(v["access_token"].as_str().unwrap())["sid"], claims(&pwd_only)["sid"]);

    // Rename, then remove the factor (recovery codes go with the last one).
    let (s, v) = js(
        "PATCH",
        &format!("{}/t/acme/mfa/factors/{id}", o.url),
        Some(&stepped),
        Some(json!({ "name": "old phone" })),
    )
    .await;
    assert_eq!((s, v["name"].as_str()), (200, Some("old phone")), "{v}");
    let (s, _) = js("DELETE", &format!("{}/t/acme/mfa/factors/{id}", o.url), Some(&stepped), None).await;
    assert_eq!(s, 204);
    let (_, l) = js("GET", &format!("{}/t/acme/mfa/factors", o.url), Some(&stepped), None).await;
    assert_eq!((l["factors"].as_array().unwrap().len(), l["recovery_codes_left"].as_i64()), (0, Some(0)), "{l}");
    let (s, _) = password(&o, "acme", owner, "owner password 1").await;
    assert_eq!(s, 200, "no factor: a password suffices again");

    // Failed codes count toward the lockout, and a correct password in between does not
    // reset the count.
    let admin = stepped.clone();
    add_user(&o, "acme", &admin, "bob@acme.test").await;
    let (_, b) = password(&o, "acme", "bob@acme.test", "member password 1").await;
    let bob_pwd = b["access_token"].as_str().unwrap().to_string();
    let tb = early_in_step().await;
    let (_, bob_secret, _) = enrol_totp(&o, "acme", &bob_pwd, "bob@acme.test", tb).await;
    let bob_gen = generator(&bob_secret, "bob@acme.test");
    let bad = |g: &totp_rs::Totp| {
        let mut c = 0u32;
        loop {
            let cand = format!("{c:06}");
            if (0..4u64).all(|k| g.generate(tb - 30 + k * 30).to_string() != cand) {
                return cand;
            }
            c += 1;
        }
    };
    let wrong = bad(&bob_gen);
    let (_, v) = password(&o, "acme", "bob@acme.test", "member password 1").await;
    let bt = v["mfa_token"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let (s, _) = mfa_grant(&o, "acme", &bt, "otp", json!(wrong)).await;
        assert_eq!(s, 401);
    }
    let (_, v) = password(&o, "acme", "bob@acme.test", "member password 1").await;
    assert_eq!(v["error"], "mfa_required", "{v}");
    let bt = v["mfa_token"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let (s, _) = mfa_grant(&o, "acme", &bt, "otp", json!(wrong)).await;
        assert_eq!(s, 401);
    }
    let (s, v) = mfa_grant(&o, "acme", &bt, "otp", json!(bob_gen.generate(tb + 30).to_string())).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("mfa_invalid_code")), "locked: the right code too: {v}");
    let (s, v) = password(&o, "acme", "bob@acme.test", "member password 1").await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_credentials")), "locked: {v}");
    let (_, audit) = js("GET", &format!("{}/v1/orgs/acme/audit?limit=500", o.url), Some(OPERATOR), None).await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for a in [
        "mfa.lockout",
        "mfa.failure",
        "mfa.recovery_code.used",
        "mfa.totp.enroll",
        "session.step_up",
        "signin.mfa_challenge",
    ] {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }

    // Admin reset: Bob's factors go and his sessions end.
    let (_, users) =
        js("GET", &format!("{}/v1/orgs/acme/users?email=bob%40acme.test", o.url), Some(&admin), None).await;
    let bob = users["items"][0]["id"].as_str().unwrap().to_string();
    let (s, v) = js("POST", &format!("{}/v1/orgs/acme/users/{bob}/mfa/reset", o.url), Some(&admin), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["factors_removed"].as_i64(), v["sessions_ended"].as_i64()), (Some(1), Some(1)), "{v}");
    let (s, v) = js("GET", &format!("{}/t/acme/mfa/factors", o.url), Some(&bob_pwd), None).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("session_revoked")), "{v}");
    let (s, v) = js("POST", &format!("{}/v1/orgs/acme/users/u_nobody/mfa/reset", o.url), Some(&admin), None).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("user_not_found")));
    let (s, v) = js("POST", &format!("{}/v1/orgs/acme/users/{bob}/mfa/reset", o.url), Some(&bob_pwd), None).await;
    assert!(s == 401 || s == 403, "a member cannot reset: {s} {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_forces_enrolment_and_limits_methods() {
    let root = tempfile::tempdir().unwrap();
    let o = start(root.path()).await;
    create_org(&o, "acme").await;
    let (_, v) = password(&o, "acme", "owner@acme.test", "owner password 1").await;
    let owner = v["access_token"].as_str().unwrap().to_string();
    add_user(&o, "acme", &owner, "cat@acme.test").await;
    let (s, v) = js(
        "PUT",
        &format!("{}/v1/orgs/acme/auth-policy", o.url),
        Some(&owner),
        Some(json!({ "mfa_required": true, "mfa_methods": ["totp"] })),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // A member without a factor: an enrolment token that only enrols.
    let (s, v) = password(&o, "acme", "cat@acme.test", "member password 1").await;
    assert_eq!((s, v["error"].as_str()), (403, Some("mfa_enrollment_required")), "{v}");
    assert_eq!(v["methods"], json!(["totp"]));
    let enrol = v["mfa_token"].as_str().unwrap().to_string();
    let (s, _) = js("GET", &format!("{}/v1/orgs/acme/users", o.url), Some(&enrol), None).await;
    assert!(s == 401 || s == 403, "the enrolment token is no access token");
    let (s, v) = mfa_grant(&o, "acme", &enrol, "otp", json!("123456")).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("mfa_token_invalid")), "it does not sign in: {v}");
    // Passkeys are not allowed here.
    let (s, v) = js("POST", &format!("{}/t/acme/mfa/passkeys/register", o.url), Some(&enrol), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("mfa_method_not_allowed")), "{v}");
    let (s, v) = js("POST", &format!("{}/t/acme/passkeys/challenge", o.url), None, None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("mfa_method_not_allowed")), "{v}");
    // Enrolling TOTP with it finishes the sign-in: tokens with the new factor's methods.
    let t0 = early_in_step().await;
    let (id, secret, c) = enrol_totp(&o, "acme", &enrol, "cat@acme.test", t0).await;
    assert_eq!(c["recovery_codes"].as_array().unwrap().len(), 10);
    let tok = c["tokens"]["access_token"].as_str().unwrap();
    assert_eq!(claims(tok)["amr"], json!(["pwd", "otp", "mfa"]));
    let (s, _) = js("POST", &format!("{}/t/acme/mfa/totp", o.url), Some(&enrol), None).await;
    assert_eq!(s, 401, "the enrolment token is spent");
    // The last factor cannot go while MFA is required.
    let (s, v) = js("DELETE", &format!("{}/t/acme/mfa/factors/{id}", o.url), Some(tok), None).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("mfa_last_factor")), "{v}");
    // Next sign-in: the second step with the enrolled factor.
    let (s, v) = password(&o, "acme", "cat@acme.test", "member password 1").await;
    assert_eq!((s, v["error"].as_str()), (403, Some("mfa_required")), "{v}");
    let code = generator(&secret, "cat@acme.test").generate(t0 + 30).to_string();
    let (s, v) = mfa_grant(&o, "acme", v["mfa_token"].as_str().unwrap(), "otp", json!(code)).await;
    assert_eq!(s, 200, "{v}");

    // Only passkeys allowed now: a TOTP code is refused as a method, not as a code.
    let (s, _) = js(
        "PUT",
        &format!("{}/v1/orgs/acme/auth-policy", o.url),
        Some(&owner),
        Some(json!({ "mfa_required": true, "mfa_methods": ["webauthn"] })),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = password(&o, "acme", "cat@acme.test", "member password 1").await;
    assert_eq!((s, v["error"].as_str()), (403, Some("mfa_enrollment_required")), "no usable factor: {v}");
    assert_eq!(v["methods"], json!(["webauthn"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_register_second_factor_passwordless_and_step_up() {
    let root = tempfile::tempdir().unwrap();
    let o = start(root.path()).await;
    create_org(&o, "acme").await;
    let owner = "owner@acme.test";
    let mut auth = Authenticator::new(&o.url);
    let mut phone = Authenticator::new(&o.url);
    phone.synced = true; // a synchronised passkey: swk
    let (_, v) = password(&o, "acme", owner, "owner password 1").await;
    let pwd_only = v["access_token"].as_str().unwrap().to_string();

    // Register a passkey through the real ceremony.
    let (s, opts) = js("POST", &format!("{}/t/acme/mfa/passkeys/register", o.url), Some(&pwd_only), None).await;
    assert_eq!(s, 200, "{opts}");
    assert_eq!(opts["publicKey"]["rp"]["id"], "localhost");
    let cred = auth.create(&opts);
    let finish = json!({ "challenge_id": opts["challenge_id"], "credential": cred, "name": "laptop" });
    let (s, v) = js("POST", &format!("{}/t/acme/mfa/passkeys", o.url), Some(&pwd_only), Some(finish.clone())).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!((v["factor"]["type"].as_str(), v["factor"]["amr"].as_str()), (Some("webauthn"), Some("hwk")));
    assert_eq!(v["recovery_codes"].as_array().unwrap().len(), 10);
    let (s, v) = js("POST", &format!("{}/t/acme/mfa/passkeys", o.url), Some(&pwd_only), Some(finish)).await;
    assert_eq!(s, 401, "a second finish of the same ceremony: {v}");

    // A second passkey needs a session that passed MFA: step up by passkey first.
    let (s, v) = js("POST", &format!("{}/t/acme/mfa/passkeys/register", o.url), Some(&pwd_only), None).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("step_up_required")), "{v}");
    let first_auth_time = claims(&pwd_only)["auth_time"].as_i64().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, su) = js("POST", &format!("{}/t/acme/mfa/step-up", o.url), Some(&pwd_only), None).await;
    assert_eq!(s, 200, "{su}");
    assert_eq!(su["methods"], json!(["webauthn", "recovery_code"]));
    let assertion = auth.get(&su["webauthn"]);
    let (s, v) = mfa_grant(&o, "acme", su["mfa_token"].as_str().unwrap(), "credential", assertion).await;
    assert_eq!(s, 200, "{v}");
    let c = claims(v["access_token"].as_str().unwrap());
    assert_eq!(c["amr"], json!(["pwd", "hwk", "mfa"]));
    assert!(c["auth_time"].as_i64().unwrap() > first_auth_time);
    let stepped = v["access_token"].as_str().unwrap().to_string();
    let (_, opts) = js("POST", &format!("{}/t/acme/mfa/passkeys/register", o.url), Some(&stepped), None).await;
    assert_eq!(opts["publicKey"]["excludeCredentials"].as_array().map(Vec::len), Some(1), "{opts}");
    let cred = phone.create(&opts);
    let (s, v) = js(
        "POST",
        &format!("{}/t/acme/mfa/passkeys", o.url),
        Some(&stepped),
        Some(json!({ "challenge_id": opts["challenge_id"], "credential": cred, "name": "phone" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert!(v.get("recovery_codes").is_none(), "codes exist already");
    let second = v["factor"]["id"].as_str().unwrap().to_string();
    let (_, l) = js("GET", &format!("{}/t/acme/mfa/factors", o.url), Some(&stepped), None).await;
    let names: Vec<&str> = l["factors"].as_array().unwrap().iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names, ["laptop", "phone"]);

    // Second factor at sign-in.
    let (s, v) = password(&o, "acme", owner, "owner password 1").await;
    assert_eq!((s, v["error"].as_str()), (403, Some("mfa_required")));
    assert_eq!(v["methods"], json!(["webauthn", "recovery_code"]));
    let mt = v["mfa_token"].as_str().unwrap().to_string();
    let (s, opts) =
        js("POST", &format!("{}/t/acme/mfa/challenge", o.url), None, Some(json!({ "mfa_token": mt }))).await;
    assert_eq!(s, 200, "{opts}");
    assert_eq!(opts["publicKey"]["allowCredentials"].as_array().map(Vec::len), Some(2));
    let assertion = auth.get(&opts);
    let assertion_replay = assertion.clone();
    let (s, v) = mfa_grant(&o, "acme", &mt, "credential", json!(assertion.to_string())).await;
    assert_eq!(s, 200, "a credential as a JSON string works too: {v}");
    assert_eq!(claims(v["access_token"].as_str().unwrap())["amr"], json!(["pwd", "hwk", "mfa"]));

    // An assertion made for another web origin (a phishing page) is refused.
    let (_, v) = password(&o, "acme", owner, "owner password 1").await;
    let mt = v["mfa_token"].as_str().unwrap().to_string();
    let (_, opts) =
        js("POST", &format!("{}/t/acme/mfa/challenge", o.url), None, Some(json!({ "mfa_token": mt }))).await;
    let mut phished = auth.get(&opts);
    let evil_cdj = json!({ "type": "webauthn.get", "challenge": opts["publicKey"]["challenge"], "origin": "http://evil.test", "crossOrigin": false });
    phished["response"]["clientDataJSON"] =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(evil_cdj.to_string()).into();
    let (s, v) = mfa_grant(&o, "acme", &mt, "credential", phished).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("mfa_invalid_code")), "{v}");
    // So is one without user verification (presence only).
    let (_, opts) =
        js("POST", &format!("{}/t/acme/mfa/challenge", o.url), None, Some(json!({ "mfa_token": mt }))).await;
    auth.uv = false;
    let presence_only = auth.get(&opts);
    auth.uv = true;
    let (s, v) = mfa_grant(&o, "acme", &mt, "credential", presence_only).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("mfa_invalid_code")), "{v}");
    // A replayed assertion (an old challenge) is refused too.
    let (s, v) = mfa_grant(&o, "acme", &mt, "credential", assertion_replay.clone()).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("mfa_invalid_code")), "{v}");

    // Passwordless with a discoverable credential.
    let (s, opts) = js("POST", &format!("{}/t/acme/passkeys/challenge", o.url), None, None).await;
    assert_eq!(s, 200, "{opts}");
    assert!(opts["publicKey"]["allowCredentials"].as_array().is_none_or(Vec::is_empty));
    let assertion = auth.get(&opts);
    let grant = json!({ "grant_type": "passkey", "challenge_id": opts["challenge_id"], "credential": assertion });
    let (s, v) = js("POST", &format!("{}/t/acme/token", o.url), None, Some(grant.clone())).await;
    assert_eq!(s, 200, "{v}");
    let c = claims(v["access_token"].as_str().unwrap());
    assert_eq!(c["amr"], json!(["hwk", "mfa"]));
    assert_eq!(c["acr"], "urn:gatehouse:mfa");
    let (s, v) = js("POST", &format!("{}/t/acme/token", o.url), None, Some(grant)).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("mfa_token_invalid")), "the challenge is single use: {v}");

    // Rename, then remove the first passkey: it no longer signs in.
    let laptop = l["factors"][0]["id"].as_str().unwrap().to_string();
    let (s, _) = js("DELETE", &format!("{}/t/acme/mfa/factors/{laptop}", o.url), Some(&stepped), None).await;
    assert_eq!(s, 204);
    let (s, v) = js(
        "PATCH",
        &format!("{}/t/acme/mfa/factors/{second}", o.url),
        Some(&stepped),
        Some(json!({ "name": "pixel" })),
    )
    .await;
    assert_eq!((s, v["name"].as_str()), (200, Some("pixel")));
    let (_, opts) = js("POST", &format!("{}/t/acme/passkeys/challenge", o.url), None, None).await;
    let grant = json!({ "grant_type": "passkey", "challenge_id": opts["challenge_id"], "credential": auth.get(&opts) });
    let (s, v) = js("POST", &format!("{}/t/acme/token", o.url), None, Some(grant)).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("passkey_invalid")), "a removed passkey: {v}");
    let (_, opts) = js("POST", &format!("{}/t/acme/passkeys/challenge", o.url), None, None).await;
    let grant =
        json!({ "grant_type": "passkey", "challenge_id": opts["challenge_id"], "credential": phone.get(&opts) });
    let (s, v) = js("POST", &format!("{}/t/acme/token", o.url), None, Some(grant)).await;
    assert_eq!(s, 200, "the remaining passkey: {v}");
    assert_eq!(claims(v["access_token"].as_str().unwrap())["amr"], json!(["swk", "mfa"]), "a synchronised passkey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_second_factor_enrolment_and_step_up_pages() {
    let root = tempfile::tempdir().unwrap();
    let o = start(root.path()).await;
    create_org(&o, "acme").await;
    let owner = "owner@acme.test";
    let (_, v) = password(&o, "acme", owner, "owner password 1").await;
    let admin = v["access_token"].as_str().unwrap().to_string();
    let (s, _) = js(
        "PUT",
        &format!("{}/v1/orgs/acme/policy", o.url),
        Some(&admin),
        Some(json!({ "policy": { "hosts": ["app.acme.test"] } })),
    )
    .await;
    assert_eq!(s, 200);
    let back = "https://app.acme.test/inbox";
    let t0 = early_in_step().await;
    let (_, secret, _) = enrol_totp(&o, "acme", &admin, owner, t0).await;
    let gen = generator(&secret, owner);
    let mut laptop = Authenticator::new(&o.url);
    // (A passkey too, registered with a session that passed MFA.)
    let (_, su) = js(
        "POST",
        &format!("{}/t/acme/mfa/step-up", o.url),
        Some(&admin),
        Some(json!({ "otp": gen.generate(t0 + 30).to_string() })),
    )
    .await;
    let stepped = su["access_token"].as_str().unwrap().to_string();
    let (_, opts) = js("POST", &format!("{}/t/acme/mfa/passkeys/register", o.url), Some(&stepped), None).await;
    let cred = laptop.create(&opts);
    let (s, _) = js(
        "POST",
        &format!("{}/t/acme/mfa/passkeys", o.url),
        Some(&stepped),
        Some(json!({ "challenge_id": opts["challenge_id"], "credential": cred })),
    )
    .await;
    assert_eq!(s, 201);

    // The script is served from the origin itself.
    let (s, h, b) = call("GET", &format!("{}/t/acme/mfa/webauthn.js", o.url), None, None, &[]).await;
    assert_eq!(s, 200);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(String::from_utf8(b).unwrap().contains("navigator.credentials.get"));

    // Sign-in form → the second-factor page (CSP: same-origin script only).
    let (_, h, page) = call("GET", &format!("{}/t/acme/login", o.url), None, None, &[]).await;
    let page = String::from_utf8(page).unwrap();
    let csrf_cookie = set_cookie(&h, "gh_csrf").unwrap();
    let csrf = field(&page, "csrf");
    let login = format!("{}/t/acme/login", o.url);
    let creds = [("email", owner), ("password", "owner password 1"), ("csrf", csrf.as_str()), ("return_to", back)];
    let (s, h, page) = post_form(&login, &creds, &csrf_cookie).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("Two-step verification") && page.contains("data-passkey=\"get\""), "{page}");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline'; script") && !csp.contains("'unsafe-eval'")
    );
    assert!(set_cookie(&h, "gh_session").is_none(), "no session before the second factor");
    let csrf_cookie = set_cookie(&h, "gh_csrf").unwrap();
    let (csrf, mfa_token) = (field(&page, "csrf"), field(&page, "mfa_token"));
    let mfa_url = format!("{}/t/acme/login/mfa", o.url);
    let wrong = if gen.generate(now()).to_string() == "000000" { "111111" } else { "000000" };
    let f = [("csrf", csrf.as_str()), ("mfa_token", mfa_token.as_str()), ("return_to", back), ("code", wrong)];
    let (s, _, page) = post_form(&mfa_url, &f, "").await;
    assert_eq!(s, 403, "no CSRF cookie: {page}");
    let (s, h, page) = post_form(&mfa_url, &f, &csrf_cookie).await;
    assert!(s == 401 && page.contains("not accepted"), "{s} {page}");
    let csrf_cookie = set_cookie(&h, "gh_csrf").unwrap();
    let csrf = field(&page, "csrf");
    // The passkey button's path: the options of the page's mfa_token, an assertion.
    let (s, opts) =
        js("POST", &format!("{}/t/acme/mfa/challenge", o.url), None, Some(json!({ "mfa_token": mfa_token }))).await;
    assert_eq!(s, 200, "{opts}");
    let assertion = laptop.get(&opts).to_string();
    let f = [
        ("csrf", csrf.as_str()),
        ("mfa_token", mfa_token.as_str()),
        ("return_to", back),
        ("credential", assertion.as_str()),
    ];
    let (s, h, page) = post_form(&mfa_url, &f, &csrf_cookie).await;
    assert_eq!((s, h.get("location").and_then(|l| l.to_str().ok())), (303, Some(back)), "{page}");
    let session = set_cookie(&h, "gh_session").unwrap();
    let jwt = session.trim_start_matches("gh_session=").to_string();
    assert_eq!(claims(&jwt)["amr"], json!(["pwd", "hwk", "mfa"]));

    // Step-up page: without a session, to the sign-in page; with one, the form; a code
    // renews auth_time and sets a fresh cookie before returning.
    let stepup = format!("{}/t/acme/stepup?return_to={}&max_age=900", o.url, "https%3A%2F%2Fapp.acme.test%2Fadmin");
    let (s, h, _) = call("GET", &stepup, None, None, &[]).await;
    assert_eq!(s, 303);
    assert_eq!(h["location"].to_str().unwrap(), "/t/acme/login?return_to=https%3A%2F%2Fapp%2Eacme%2Etest%2Fadmin");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, h, page) = call("GET", &stepup, None, None, &[("cookie", session.as_str())]).await;
    let page = String::from_utf8(page).unwrap();
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("Confirm it is you"));
    let csrf_cookie = set_cookie(&h, "gh_csrf").unwrap();
    let (csrf, tok) = (field(&page, "csrf"), field(&page, "mfa_token"));
    while now() / 30 <= (t0 + 30) / 30 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let code = gen.generate(now()).to_string();
    let f = [
        ("csrf", csrf.as_str()),
        ("mfa_token", tok.as_str()),
        ("return_to", "https://app.acme.test/admin"),
        ("code", code.as_str()),
    ];
    let (s, h, page) = post_form(&format!("{}/t/acme/stepup", o.url), &f, &csrf_cookie).await;
    assert_eq!(
        (s, h.get("location").and_then(|l| l.to_str().ok())),
        (303, Some("https://app.acme.test/admin")),
        "{page}"
    );
    let fresh = set_cookie(&h, "gh_session").unwrap();
    let fresh = claims(fresh.trim_start_matches("gh_session="));
    assert_eq!(fresh["sid"], claims(&jwt)["sid"], "the same session");
    assert!(fresh["auth_time"].as_i64().unwrap() > claims(&jwt)["auth_time"].as_i64().unwrap(), "{fresh}");
    assert_eq!(fresh["amr"], json!(["pwd", "hwk", "mfa", "otp"]));

    // A member who must enrol: the enrolment page (QR code, secret), then the recovery
    // codes with the session cookie.
    add_user(&o, "acme", &stepped, "dan@acme.test").await;
    let (s, _) = js(
        "PUT",
        &format!("{}/v1/orgs/acme/auth-policy", o.url),
        Some(&stepped),
        Some(json!({ "mfa_required": true })),
    )
    .await;
    assert_eq!(s, 200);
    let (_, h, page) = call("GET", &format!("{}/t/acme/login", o.url), None, None, &[]).await;
    let page = String::from_utf8(page).unwrap();
    let csrf_cookie = set_cookie(&h, "gh_csrf").unwrap();
    let csrf = field(&page, "csrf");
    let creds =
        [("email", "dan@acme.test"), ("password", "member password 1"), ("csrf", csrf.as_str()), ("return_to", back)];
    let (s, h, page) = post_form(&login, &creds, &csrf_cookie).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("Set up a second factor") && page.contains("data:image/svg+xml;base64,"), "{page}");
    assert!(page.contains("data-passkey=\"create\""), "passkeys are allowed too");
    let secret = page.split("<p class=\"secret\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    let csrf_cookie = set_cookie(&h, "gh_csrf").unwrap();
    let (csrf, tok, factor) = (field(&page, "csrf"), field(&page, "mfa_token"), field(&page, "factor_id"));
    let code = generator(&secret, "dan@acme.test").generate(now()).to_string();
    let f = [
        ("csrf", csrf.as_str()),
        ("mfa_token", tok.as_str()),
        ("return_to", back),
        ("factor_id", factor.as_str()),
        ("code", code.as_str()),
    ];
    let (s, h, page) = post_form(&format!("{}/t/acme/login/enroll", o.url), &f, &csrf_cookie).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page.matches("<li>").count(), 10, "ten recovery codes: {page}");
    assert!(page.contains(&format!("href=\"{back}\"")), "{page}");
    let dan = set_cookie(&h, "gh_session").unwrap();
    assert_eq!(claims(dan.trim_start_matches("gh_session="))["amr"], json!(["pwd", "otp", "mfa"]));

    // Enrolling a passkey on the same page instead (what its button does).
    add_user(&o, "acme", &stepped, "eve@acme.test").await;
    let (_, h, page) = call("GET", &format!("{}/t/acme/login", o.url), None, None, &[]).await;
    let page = String::from_utf8(page).unwrap();
    let csrf_cookie = set_cookie(&h, "gh_csrf").unwrap();
    let csrf = field(&page, "csrf");
    let creds =
        [("email", "eve@acme.test"), ("password", "member password 1"), ("csrf", csrf.as_str()), ("return_to", back)];
    let (_, h, page) = post_form(&login, &creds, &csrf_cookie).await;
    let csrf_cookie = set_cookie(&h, "gh_csrf").unwrap();
    let (csrf, tok) = (field(&page, "csrf"), field(&page, "mfa_token"));
    let (s, opts) = js("POST", &format!("{}/t/acme/mfa/passkeys/register", o.url), Some(&tok), None).await;
    assert_eq!(s, 200, "the enrolment token starts a registration: {opts}");
    let mut eves = Authenticator::new(&o.url);
    let cred = eves.create(&opts).to_string();
    let challenge = opts["challenge_id"].as_str().unwrap();
    let f = [
        ("csrf", csrf.as_str()),
        ("mfa_token", tok.as_str()),
        ("return_to", back),
        ("challenge_id", challenge),
        ("credential", cred.as_str()),
    ];
    let (s, h, page) = post_form(&format!("{}/t/acme/login/enroll", o.url), &f, &csrf_cookie).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page.matches("<li>").count(), 10, "{page}");
    let eve = set_cookie(&h, "gh_session").unwrap();
    assert_eq!(claims(eve.trim_start_matches("gh_session="))["amr"], json!(["pwd", "hwk", "mfa"]));
    let (s, _, page) = post_form(&format!("{}/t/acme/login/enroll", o.url), &f, &csrf_cookie).await;
    assert!(s == 401 || s == 403, "the enrolment token is spent: {s} {page}");
}
