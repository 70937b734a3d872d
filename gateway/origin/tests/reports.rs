//! End-to-end tests of the compliance reports: a real origin on loopback, activity made
//! through the API (users, a role change by an admin, good and failed sign-ins, a lockout,
//! a TOTP enrolment and a sign-in with it, an API key rotated, a legal hold), then every
//! report in every format: the JSON figures match what was done, the CSV parses section by
//! section, the PDF's text (`pdftotext`) names the organisation, the controls, the chain
//! head and the figures; periods filter; refusals carry their reason codes.

use serde_json::{json, Value};

#[path = "mfa_support/harness.rs"]
mod harness;
use harness::*;

/// The owner password of the organisations the harness creates.
const OWNER_PASSWORD: &str = "owner password 1";
/// The password of the members made here.
const MEMBER_PASSWORD: &str = "member password 1";

async fn create_org(o: &Origin) {
    let body = json!({ "slug": "acme", "name": "Acme Compliance Ltd", "tier": "team",
        "owner_email": "owner@acme.test", "owner_password": OWNER_PASSWORD });
    let (s, v) = js("POST", &format!("{}/v1/orgs", o.url), Some(OPERATOR), Some(body)).await;
    assert_eq!(s, 201, "{v}");
}

/// Create user `email` with `role` as `by`; the user's id.
async fn user(o: &Origin, by: &str, email: &str, role: &str) -> String {
    let body = json!({ "email": email, "password": MEMBER_PASSWORD, "role": role });
    let (s, v) = js("POST", &format!("{}/v1/orgs/acme/users", o.url), Some(by), Some(body)).await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// A password sign-in that succeeds; the access token.
async fn signed_in(o: &Origin, email: &str, pw: &str) -> String {
    let (s, v) = password(o, "acme", email, pw).await;
    assert_eq!(s, 200, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

async fn wrong_password(o: &Origin, email: &str) {
    let (s, v) = password(o, "acme", email, "not the password").await;
    assert!(s == 401 || s == 403, "{s} {v}");
}

fn url(o: &Origin, kind: &str, query: &str) -> String {
    format!("{}/v1/orgs/acme/reports/{kind}?{query}", o.url)
}

/// A report as JSON.
async fn report(o: &Origin, token: &str, kind: &str, query: &str) -> Value {
    let (s, v) = js("GET", &url(o, kind, query), Some(token), None).await;
    assert_eq!(s, 200, "{kind}?{query}: {v}");
    v
}

/// The raw body of a report in `format` (`csv`, `pdf`), after checking its status and
/// media type.
async fn raw(o: &Origin, token: &str, kind: &str, query: &str, format: &str) -> Vec<u8> {
    let media = if format == "csv" { "text/csv" } else { "application/pdf" };
    let (s, h, b) = call("GET", &url(o, kind, &format!("{query}&format={format}")), Some(token), None, &[]).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    assert!(h["content-type"].to_str().unwrap().starts_with(media), "{:?}", h["content-type"]);
    assert!(h["content-disposition"].to_str().unwrap().contains(&format!("acme-{kind}-")), "{h:?}");
    b
}

/// One CSV line's fields (every field quoted, `""` an escaped quote).
fn csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    while chars.peek().is_some() {
        assert_eq!(chars.next(), Some('"'), "every field is quoted: {line}");
        let mut f = String::new();
        loop {
            match chars.next() {
                Some('"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    f.push('"');
                }
                Some('"') => break,
                Some(c) => f.push(c),
                None => panic!("unterminated field: {line}"),
            }
        }
        fields.push(f);
        match chars.next() {
            Some(',') | None => {}
            Some(c) => panic!("unexpected {c:?} after a field: {line}"),
        }
    }
    fields
}

/// A CSV section: its name, header (without `section`) and rows (without it).
type Section = (String, Vec<String>, Vec<Vec<String>>);

/// The CSV's sections by name: header (without `section`) and rows (without it). Each
/// section has a header, and each row as many fields as it, starting with the name.
fn csv_sections(text: &str) -> Vec<Section> {
    let mut out = Vec::new();
    for block in text.trim_end().split("\n\n") {
        let mut lines = block.lines();
        let header = csv_line(lines.next().unwrap());
        assert_eq!(header[0], "section", "{block}");
        let mut name = None;
        let mut rows = Vec::new();
        for l in lines {
            let row = csv_line(l);
            assert_eq!(row.len(), header.len(), "{l}");
            assert!(name.get_or_insert(row[0].clone()) == &row[0], "one section per block: {block}");
            rows.push(row[1..].to_vec());
        }
        out.push((name.unwrap_or_default(), header[1..].to_vec(), rows));
    }
    out
}

fn section<'a>(sections: &'a [Section], name: &str) -> &'a Section {
    sections.iter().find(|s| s.0 == name).unwrap_or_else(|| panic!("no section {name}"))
}

/// The text of a PDF by `pdftotext`, or `None` (after saying SKIPPED) without it.
fn pdf_text(pdf: &[u8], dir: &std::path::Path) -> Option<String> {
    let file = dir.join("report.pdf");
    std::fs::write(&file, pdf).unwrap();
    match std::process::Command::new("pdftotext").arg("-layout").arg(&file).arg("-").output() {
        Ok(out) => {
            assert!(out.status.success(), "pdftotext: {}", String::from_utf8_lossy(&out.stderr));
            Some(String::from_utf8(out.stdout).unwrap())
        }
        Err(_) => {
            println!("SKIPPED: pdftotext not installed (poppler-utils): the PDF's text is not checked");
            None
        }
    }
}

/// Wait until the clock is past the second of the records written so far.
async fn next_second() -> i64 {
    let start = now();
    while now() == start {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    now() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_count_what_was_done_in_every_format_and_refuse_bad_requests() {
    let root = tempfile::tempdir().unwrap();
    let o = start(root.path()).await;
    let t0 = now() as i64;
    create_org(&o).await;

    // Before the split: sign-ins, users, a role change by an admin, failures, a lockout,
    // MFA.
    let owner = signed_in(&o, "owner@acme.test", OWNER_PASSWORD).await;
    let admin_id = user(&o, &owner, "admin@acme.test", "admin").await;
    let alice_id = user(&o, &owner, "alice@acme.test", "viewer").await;
    let bob_id = user(&o, &owner, "bob@acme.test", "viewer").await;
    let mallory_id = user(&o, &owner, "mallory@acme.test", "viewer").await;
    let (s, v) = js(
        "PUT",
        &format!("{}/v1/orgs/acme/roles/support", o.url),
        Some(&owner),
        Some(json!({ "permissions": ["members:read"] })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let carol_id = user(&o, &owner, "carol@acme.test", "support").await;
    let admin = signed_in(&o, "admin@acme.test", MEMBER_PASSWORD).await;
    let (s, v) = js(
        "PUT",
        &format!("{}/v1/orgs/acme/users/{bob_id}/role", o.url),
        Some(&admin),
        Some(json!({ "role": "editor" })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    wrong_password(&o, "alice@acme.test").await;
    wrong_password(&o, "alice@acme.test").await;
    let alice = signed_in(&o, "alice@acme.test", MEMBER_PASSWORD).await;
    for _ in 0..5 {
        wrong_password(&o, "mallory@acme.test").await;
    }
    let (s, v) = password(&o, "acme", "mallory@acme.test", MEMBER_PASSWORD).await;
    assert_ne!(s, 200, "mallory is locked out: {v}");
    wrong_password(&o, "nobody@acme.test").await;
    let step = early_in_step().await;
    let (_, secret, _) = enrol_totp(&o, "acme", &alice, "alice@acme.test", step - 30).await;
    let (s, v) = password(&o, "acme", "alice@acme.test", MEMBER_PASSWORD).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("mfa_required")), "{v}");
    let code = generator(&secret, "alice@acme.test").generate(step).to_string();
    let (s, v) = mfa_grant(&o, "acme", v["mfa_token"].as_str().unwrap(), "otp", json!(code)).await;
    assert_eq!(s, 200, "{v}");
    let split = next_second().await;

    // After the split: one failure and a sign-in of bob; an API key created and rotated.
    wrong_password(&o, "bob@acme.test").await;
    signed_in(&o, "bob@acme.test", MEMBER_PASSWORD).await;
    let (s, k) = js(
        "POST",
        &format!("{}/v1/orgs/acme/api-keys", o.url),
        Some(&admin),
        Some(json!({ "name": "ci", "roles": ["viewer"] })),
    )
    .await;
    assert_eq!(s, 201, "{k}");
    let key_id = k["id"].as_str().unwrap();
    // A team that grants the custom role to its members (alice).
    let (s, team) =
        js("POST", &format!("{}/v1/orgs/acme/teams", o.url), Some(&owner), Some(json!({ "name": "ops" }))).await;
    assert_eq!(s, 201, "{team}");
    let team_url = format!("{}/v1/orgs/acme/teams/{}", o.url, team["id"].as_str().unwrap());
    let (s, v) = js("PUT", &format!("{team_url}/members/{alice_id}"), Some(&owner), None).await;
    assert!(s == 200 || s == 204, "{s} {v}");
    let (s, v) = js("PUT", &format!("{team_url}/roles"), Some(&owner), Some(json!({ "roles": ["support"] }))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = js("POST", &format!("{}/v1/orgs/acme/api-keys/{key_id}/rotate", o.url), Some(&admin), None).await;
    assert_eq!(s, 200, "{v}");
    let (s, hold) = js(
        "POST",
        &format!("{}/v1/orgs/acme/audit/holds", o.url),
        Some(&owner),
        Some(json!({ "reason": "case 7", "from": t0 - 86_400, "until": t0 + 86_400 })),
    )
    .await;
    assert_eq!(s, 201, "{hold}");
    let end = next_second().await + 1;
    let before = format!("from={}&until={split}", t0 - 5);
    let after = format!("from={split}&until={end}");
    let all = format!("from={}&until={end}", t0 - 5);

    // Authentication: before the split, four sign-ins (one with TOTP), nine refusals
    // (seven wrong passwords, the one that locked mallory, the one refused while locked).
    let a = report(&o, &admin, "authentication", &before).await;
    let sum = &a["summary"];
    assert_eq!(sum["signins"], 4, "{a}");
    assert_eq!((sum["signins_password"].as_u64(), sum["signins_sso"].as_u64()), (Some(4), Some(0)));
    assert_eq!(sum["signins_with_second_factor"], 1);
    assert_eq!(sum["users_signed_in"], 3);
    assert_eq!(
        a["details"]["failures_by_action"],
        json!({ "signin.failure": 7, "signin.lockout": 1, "signin.locked": 1 })
    );
    assert_eq!((sum["failures"].as_u64(), sum["lockouts"].as_u64()), (Some(9), Some(1)));
    assert_eq!((sum["users_enabled"].as_u64(), sum["users_with_mfa"].as_u64()), (Some(6), Some(1)));
    assert_eq!(sum["mfa_adoption"], 0.167);
    let ids: Vec<&str> = a["controls"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["CC6.1", "CC7.2", "A.5.17", "A.8.15"]);
    assert_eq!((a["org"]["slug"].as_str(), a["org"]["name"].as_str()), (Some("acme"), Some("Acme Compliance Ltd")));
    assert_eq!(a["period"], json!({ "from": t0 - 5, "until": split }));
    assert_eq!(a["generated_by"], format!("user:{admin_id}"));
    // After it: bob's failure and sign-in only.
    let a2 = report(&o, &admin, "authentication", &after).await;
    assert_eq!((a2["summary"]["signins"].as_u64(), a2["summary"]["failures"].as_u64()), (Some(1), Some(1)), "{a2}");
    assert_eq!(a2["summary"]["lockouts"], 0);

    // The chain head stated is the log's: the last record, and the directory's head.
    let (_, log) = js("GET", &format!("{}/v1/orgs/acme/audit?limit=1000", o.url), Some(&admin), None).await;
    let last = log["items"].as_array().unwrap().last().unwrap().clone();
    let head = &a2["chain_head"];
    assert_eq!(
        (head["tenant"]["seq"].clone(), head["tenant"]["hash"].clone()),
        (last["seq"].clone(), last["hash"].clone())
    );
    assert_eq!(head["directory"], head["tenant"], "{head}");

    // Privileged activity: the role change and the custom role before; the key after.
    let p = report(&o, &admin, "privileged-activity", &before).await;
    assert_eq!(p["summary"]["role_changes"], 2, "{p}");
    assert_eq!(p["summary"]["api_key_rotations"], 0);
    assert_eq!(p["details"]["by_action"]["user.create"], 6, "the owner and five members");
    let change =
        p["details"]["changes"].as_array().unwrap().iter().find(|c| c["action"] == "membership.set").unwrap().clone();
    assert_eq!(
        (change["actor"].clone(), change["target"].clone()),
        (json!(format!("user:{admin_id}")), json!(format!("user:{bob_id}")))
    );
    let p2 = report(&o, &admin, "privileged-activity", &after).await;
    assert_eq!(
        (p2["summary"]["api_key_rotations"].as_u64(), p2["summary"]["api_key_changes"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(p2["summary"]["role_changes"], 1, "the team's role grant");
    assert!(p2["notes"][0].as_str().unwrap().contains("operator"), "signing-key rotations are the operator's");

    // Access review: roles, permissions, grants, MFA, lockout, keys.
    let r = report(&o, &admin, "access-review", &all).await;
    let users = r["details"]["users"].as_array().unwrap();
    let of = |id: &str| users.iter().find(|u| u["id"] == id).unwrap().clone();
    assert_eq!(users.len(), 6, "{r}");
    let bob = of(&bob_id);
    assert_eq!((bob["role"].as_str(), bob["email"].as_str()), (Some("editor"), Some("bob@acme.test")));
    assert_eq!(bob["permissions"], json!(["*:read", "*:write"]));
    assert_eq!(bob["granted"]["by"], format!("user:{admin_id}"));
    assert_eq!(bob["granted"]["via"], "membership.set");
    assert_eq!(bob["signins_in_period"], 1);
    assert_eq!(of(&carol_id)["permissions"], json!(["members:read"]));
    assert_eq!(of(&carol_id)["granted"]["via"], "user.create");
    assert_eq!(of(&alice_id)["mfa_factors"], json!(["totp"]));
    assert_eq!(of(&alice_id)["team_roles"], json!(["support"]));
    assert_eq!(of(&alice_id)["teams"], json!(["ops"]));
    assert_eq!(of(&alice_id)["permissions"], json!(["*:read", "members:read"]));
    assert_eq!(of(&alice_id)["signins_in_period"], 2);
    assert!(of(&alice_id)["last_signin_at"].as_i64().unwrap() >= t0);
    let mallory = of(&mallory_id);
    assert_eq!((mallory["locked"].as_bool(), mallory["last_signin_at"].is_null()), (Some(true), true));
    assert_eq!(r["summary"]["dormant_users"], 0, "accounts made now are not dormant");
    assert_eq!((r["summary"]["users_with_mfa"].as_u64(), r["summary"]["users_locked"].as_u64()), (Some(1), Some(1)));
    let key = &r["details"]["api_keys"][0];
    assert_eq!((key["status"].as_str(), key["roles"].clone()), (Some("active"), json!(["viewer"])));
    assert_eq!(key["created_by"], format!("user:{admin_id}"));
    assert!(key["last_rotated_at"].as_i64().unwrap() >= split);
    let roles = r["details"]["custom_roles"].clone();
    assert_eq!(roles, json!([{ "name": "support", "permissions": ["members:read"] }]));

    // GDPR record: the hold after the split; nothing before it.
    let g = report(&o, &owner, "gdpr", &after).await;
    assert_eq!((g["summary"]["holds_placed"].as_u64(), g["summary"]["exports"].as_u64()), (Some(1), Some(0)), "{g}");
    assert_eq!(g["details"]["activities"][0]["action"], "audit.hold");
    assert_eq!(report(&o, &owner, "gdpr", &before).await["summary"]["holds_placed"], 0);
    let ids: Vec<&str> = g["controls"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["A.8.15", "Art. 30"]);

    // CSV: every section parses, and holds what the JSON holds.
    let csv = String::from_utf8(raw(&o, &admin, "authentication", &before, "csv").await).unwrap();
    let sections = csv_sections(&csv);
    let names: Vec<&str> = sections.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["report", "controls", "summary", "failures", "notes"]);
    let field = |name: &str| section(&sections, "report").2.iter().find(|r| r[0] == name).unwrap()[1].clone();
    assert_eq!(field("org_slug"), "acme");
    assert_eq!(field("chain_tenant_hash"), a["chain_head"]["tenant"]["hash"].as_str().unwrap());
    assert_eq!(field("period_until"), split.to_string());
    let metric = |name: &str| section(&sections, "summary").2.iter().find(|r| r[0] == name).unwrap()[2].clone();
    assert_eq!((metric("signins"), metric("failures"), metric("lockouts")), ("4".into(), "9".into(), "1".into()));
    assert_eq!(section(&sections, "controls").2.len(), 4);
    let users_csv = String::from_utf8(raw(&o, &admin, "access-review", &all, "csv").await).unwrap();
    let sections = csv_sections(&users_csv);
    let (_, header, rows) = section(&sections, "users");
    assert_eq!(&header[..3], ["id", "email", "role"]);
    assert_eq!(rows.len(), 6);
    let bob_row = rows.iter().find(|r| r[0] == bob_id).unwrap();
    assert_eq!((bob_row[2].as_str(), bob_row[3].as_str(), bob_row[4].as_str()), ("editor", "", "*:read *:write"));
    assert_eq!(section(&sections, "api_keys").2.len(), 1);

    // PDF: a PDF whose text names the organisation, the controls, the head, the figures.
    let pdf = raw(&o, &admin, "authentication", &before, "pdf").await;
    assert!(pdf.starts_with(b"%PDF-"), "a PDF document");
    if let Some(text) = pdf_text(&pdf, root.path()) {
        for want in [
            "Acme Compliance Ltd",
            "Authentication report",
            "SOC 2 CC6.1",
            "SOC 2 CC7.2",
            "ISO/IEC 27001:2022 A.5.17",
            "A.8.15",
            a["chain_head"]["tenant"]["hash"].as_str().unwrap(),
            &format!("seq {}", a["chain_head"]["tenant"]["seq"]),
            "Completed sign-ins (sessions opened): 4",
            "Refused sign-ins (every reason): 9",
            "Accounts locked by failures: 1",
        ] {
            assert!(text.contains(want), "the PDF's text lacks {want:?}:\n{text}");
        }
    }
    let pdf = raw(&o, &admin, "access-review", &all, "pdf").await;
    if let Some(text) = pdf_text(&pdf, root.path()) {
        for want in ["Access review", "CC6.3", "A.5.18", "bob@acme.test", "role: editor", "Dormant accounts"] {
            assert!(text.contains(want), "the PDF's text lacks {want:?}:\n{text}");
        }
    }
    for kind in ["privileged-activity", "gdpr"] {
        let pdf = raw(&o, &owner, kind, &all, "pdf").await;
        if let Some(text) = pdf_text(&pdf, root.path()) {
            assert!(text.contains("Acme Compliance Ltd") && text.contains("Audit chain head"), "{text}");
        }
        csv_sections(&String::from_utf8(raw(&o, &owner, kind, &all, "csv").await).unwrap());
    }

    // Then: an impersonation of alice by the operator, started and ended; erin exported,
    // her erasure refused under the hold, the hold released, erin erased.
    let third = end;
    while (now() as i64) < third {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let body = json!({ "user_id": alice_id, "reason": "ticket 42", "minutes": 5 });
    let (s, im) = js("POST", &format!("{}/v1/orgs/acme/impersonations", o.url), Some(OPERATOR), Some(body)).await;
    assert_eq!(s, 201, "{im}");
    let im_id = im["impersonation"]["id"].as_str().unwrap();
    let under = report(&o, im["access_token"].as_str().unwrap(), "gdpr", "").await;
    assert_eq!(under["generated_by"], format!("user:{alice_id} (acting: operator)"), "who really asked");
    let (s, v) = js("DELETE", &format!("{}/v1/orgs/acme/impersonations/{im_id}", o.url), Some(OPERATOR), None).await;
    assert_eq!(s, 204, "{v}");
    let erin_id = user(&o, &admin, "erin@acme.test", "viewer").await;
    let (s, v) = js("GET", &format!("{}/v1/orgs/acme/users/{erin_id}/export", o.url), Some(&admin), None).await;
    assert_eq!(s, 200, "{v}");
    let erase = format!("{}/v1/orgs/acme/users/{erin_id}/erase", o.url);
    let (s, v) = js("POST", &erase, Some(&admin), Some(json!({ "reason": "request of erin@acme.test" }))).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("legal_hold")), "{v}");
    let release = format!("{}/v1/orgs/acme/audit/holds/{}/release", o.url, hold["id"].as_str().unwrap());
    let (s, v) = js("POST", &release, Some(&owner), None).await;
    assert!(s == 200 || s == 204, "{s} {v}");
    let (s, v) = js("POST", &erase, Some(&admin), Some(json!({ "reason": "request of erin@acme.test" }))).await;
    assert_eq!(s, 200, "{v}");
    let end3 = next_second().await + 1;
    let third = format!("from={third}&until={end3}");
    let g = report(&o, &owner, "gdpr", &third).await;
    let sum = &g["summary"];
    assert_eq!(
        [&sum["exports"], &sum["erasures_refused"], &sum["holds_released"], &sum["erasures"], &sum["holds_placed"]],
        [1, 1, 1, 1, 0],
        "{g}"
    );
    let refused =
        g["details"]["activities"].as_array().unwrap().iter().find(|a| a["action"] == "privacy.erase_refused");
    assert_eq!(refused.unwrap()["reason"], "legal_hold");
    assert_eq!(refused.unwrap()["target"], format!("user:{erin_id}"));
    assert!(!g.to_string().contains("erin@acme.test"), "the record names ids, never the person: {g}");
    let p3 = report(&o, &owner, "privileged-activity", &third).await;
    assert_eq!(
        (p3["summary"]["impersonations_started"].as_u64(), p3["summary"]["impersonations_ended"].as_u64()),
        (Some(1), Some(1)),
        "{p3}"
    );
    assert!(p3["summary"]["records_under_impersonation"].as_u64().unwrap() >= 1, "{p3}");
    let a3 = report(&o, &owner, "authentication", &third).await;
    assert_eq!(
        (a3["summary"]["signins"].as_u64(), a3["summary"]["impersonation_sessions"].as_u64()),
        (Some(0), Some(1)),
        "{a3}"
    );
    let r = report(&o, &owner, "access-review", "").await;
    assert!(r["details"]["users"].as_array().unwrap().iter().all(|u| u["id"] != erin_id.as_str()), "erin is gone");
    let pdf = raw(&o, &owner, "gdpr", &third, "pdf").await;
    if let Some(text) = pdf_text(&pdf, root.path()) {
        for want in ["GDPR record of processing (Art. 30)", "GDPR Art. 30", "Erasures refused: 1", "legal_hold"] {
            assert!(text.contains(want), "the PDF's text lacks {want:?}:\n{text}");
        }
        assert!(!text.contains("erin@acme.test"), "{text}");
    }

    // Who may: the operator and a viewer (`*:read`); not a role without `reports:read`.
    let r = report(&o, OPERATOR, "gdpr", "").await;
    assert_eq!(r["generated_by"], "operator");
    report(&o, &alice, "access-review", "").await;
    let carol = signed_in(&o, "carol@acme.test", MEMBER_PASSWORD).await;
    let (s, v) = js("GET", &url(&o, "access-review", ""), Some(&carol), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("permission_denied")), "{v}");
    let (s, v) = js("GET", &url(&o, "access-review", ""), None, None).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("credential_missing")), "{v}");

    // Bad requests: 400 with a reason code, nothing built.
    for (kind, query, code) in [
        ("access_review", "", "invalid_report_kind"),
        ("..%2F..%2Faudit", "", "invalid_report_kind"),
        ("gdpr", "format=xlsx", "invalid_format"),
        ("gdpr", "from=200&until=100", "invalid_period"),
        ("gdpr", "from=100&until=100", "invalid_period"),
        ("gdpr", "from=-1&until=100", "invalid_period"),
        ("gdpr", "from=0&until=40000000", "invalid_period"),
        ("gdpr", "until=-9223372036854775808", "invalid_period"),
        ("gdpr", "until=9223372036854775807", "invalid_period"),
        ("gdpr", "until=9223372036854775808", "invalid_query"),
        ("access-review", "dormant_days=0", "invalid_dormant_days"),
        ("access-review", "dormant_days=99999", "invalid_dormant_days"),
        ("gdpr", "from=yesterday", "invalid_query"),
        ("gdpr", "limit=5", "invalid_query"),
    ] {
        let (s, v) = js("GET", &url(&o, kind, query), Some(&admin), None).await;
        assert_eq!((s, v["error"].as_str()), (400, Some(code)), "{kind}?{query}: {v}");
    }
    // Another organisation's token is refused; an unknown organisation is not found.
    let (s, _) = js("GET", &format!("{}/v1/orgs/nowhere/reports/gdpr", o.url), Some(OPERATOR), None).await;
    assert_eq!(s, 404);
}
