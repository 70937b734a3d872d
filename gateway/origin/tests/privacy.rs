//! GDPR end to end (issue 15, part A): personal data in audit records sealed per person,
//! the export of one person (admin and self-service, home region only), and erasure that
//! keeps the audit chain provable. A real origin (and a second region) on loopback, real
//! libSQL files; the person's requests come from their own loopback address
//! (`127.0.0.77`) with their own user agent, and the proof scans every file of the
//! region's data directory (WAL included) for their email, name, address and user agent,
//! before (found) and after (gone) the erasure.

use std::path::Path;

use serde_json::{json, Value};

mod support;
use support::origin::{free_port, js, Origin, EDGE, OPERATOR};

mod privacy_support;
use privacy_support::{invitation_token, js_from, scan};

const ZELDA_IP: &str = "127.0.0.77";
const ZELDA_EMAIL: &str = "zelda.quux.7731@example.test";
const ZELDA_NAME: &str = "Zelda Quuxington";
const ZELDA_NEW_NAME: &str = "Zelda Q. Quuxington";
const ZELDA_UA: &str = "ZeldaAgent/9.1 (privacy-proof)";
const ZELDA_PASSWORD: &str = "zelda password 12";

async fn start(root: &Path, region: &str, port: u16, regions: &[(&str, u16)]) -> Origin {
    let mut toml = support::origin::config(region, port, "127.0.0.1", regions);
    toml.push_str("mail_dir = \"mail\"\n");
    support::origin::launch(&root.join(region), port, format!("http://127.0.0.1:{port}"), &toml).await
}

/// A request of Zelda's: from her address, with her user agent.
async fn as_zelda(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    js_from(ZELDA_IP, ZELDA_UA, method, url, token, body).await
}

/// The owner's access token.
async fn owner_token(o: &Origin) -> String {
    let (s, v) = support::origin::sign_in(o, "acme", "owner@acme.test", support::origin::OWNER_PASSWORD, &[]).await;
    assert_eq!(s, 200, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

/// Every audit record of acme (opened, as the query shows them).
async fn audit(o: &Origin, token: &str) -> Vec<Value> {
    let (s, v) = js("GET", &format!("{}/v1/orgs/acme/audit?limit=1000", o.url), Some(token), None).await;
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().unwrap().clone()
}

/// Scan every file of the region's data directory for `needles`, after checkpointing
/// acme's write-ahead log into its file when `checkpoint` (erasure checkpoints itself).
async fn scan_data(o: &Origin, checkpoint: bool, needles: &[&str]) -> Vec<(String, Vec<std::path::PathBuf>)> {
    if checkpoint {
        let id = o.app.tenant_id("acme").await.unwrap().unwrap();
        let db = o.app.store.tenant(&id, false).await.unwrap();
        db.lock().await.query("PRAGMA wal_checkpoint(TRUNCATE)", ()).await.unwrap();
    }
    scan(&o.dir.join("data"), needles)
}

async fn subject_key_exists(o: &Origin, subject: &str) -> bool {
    let id = o.app.tenant_id("acme").await.unwrap().unwrap();
    let db = o.app.store.tenant(&id, false).await.unwrap();
    let h = db.lock().await;
    gatehouse_origin::store::subject_keys::exists(&h, subject).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_erasure_keep_the_chain_and_leave_no_byte_of_the_person() {
    let root = tempfile::tempdir().unwrap();
    let (pe, pu) = (free_port(), free_port());
    let regions = [("eu-west", pe), ("us-east", pu)];
    let o = start(root.path(), "eu-west", pe, &regions).await;
    let us = start(root.path(), "us-east", pu, &regions).await;
    support::origin::create_org(&o, "acme", "Acme", "team").await;
    let owner = owner_token(&o).await;
    let org = format!("{}/v1/orgs/acme", o.url);

    // --- Zelda: invited to team eng, accepts (from her address), signs in, renames herself.
    let (s, v) = js("POST", &format!("{org}/teams"), Some(&owner), Some(json!({ "name": "eng" }))).await;
    assert_eq!(s, 201, "{v}");
    let body = json!({ "email": ZELDA_EMAIL, "role": "editor", "team": "eng" });
    let (s, v) = js("POST", &format!("{org}/invitations"), Some(&owner), Some(body)).await;
    assert_eq!(s, 201, "{v}");
    let token = invitation_token(&o.dir.join("mail"), ZELDA_EMAIL);
    let body = json!({ "token": token, "password": ZELDA_PASSWORD, "name": ZELDA_NAME });
    let (s, v) = as_zelda("POST", &format!("{}/t/acme/invite/accept", o.url), None, Some(body)).await;
    assert_eq!(s, 201, "{v}");
    let body = json!({ "grant_type": "password", "email": ZELDA_EMAIL, "password": "not hers" });
    let (s, _) = as_zelda("POST", &format!("{}/t/acme/token", o.url), None, Some(body)).await;
    assert_eq!(s, 401);
    let body = json!({ "grant_type": "password", "email": ZELDA_EMAIL, "password": ZELDA_PASSWORD });
    let (s, v) = as_zelda("POST", &format!("{}/t/acme/token", o.url), None, Some(body)).await;
    assert_eq!(s, 200, "{v}");
    let zelda_tok = v["access_token"].as_str().unwrap().to_string();
    let me = format!("{}/t/acme/me", o.url);
    let (s, v) = as_zelda("PATCH", &me, Some(&zelda_tok), Some(json!({ "name": ZELDA_NEW_NAME }))).await;
    assert_eq!(s, 200, "{v}");
    let zelda = v["id"].as_str().unwrap().to_string();
    // An edge saw her address, and someone else's.
    let ev = |i: u32, ip: &str| {
        json!({ "org": "acme", "at": gatehouse_origin::now(), "decision": "deny",
        "reason": "ip_denied", "ip": ip, "request_id": format!("r{i}") })
    };
    let batch = json!({ "batch_id": "privacy-1", "events": [ev(1, ZELDA_IP), ev(2, "192.0.2.44")] });
    let (s, v) = js("POST", &format!("{}/v1/audit/edge", o.url), Some(EDGE), Some(batch)).await;
    assert_eq!(s, 200, "{v}");
    // Bob, another member, whose data must stay.
    let body = json!({ "email": "bob.keeper@example.test", "password": "bob password 123", "role": "viewer" });
    let (s, v) = js("POST", &format!("{org}/users"), Some(&owner), Some(body)).await;
    assert_eq!(s, 201, "{v}");
    let bob = v["id"].as_str().unwrap().to_string();
    // His role reads members only (viewers hold `*:read`, so `privacy:read` too).
    let body = json!({ "permissions": ["members:read"] });
    let (s, v) = js("PUT", &format!("{org}/roles/helpdesk"), Some(&owner), Some(body)).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = js("PUT", &format!("{org}/users/{bob}/role"), Some(&owner), Some(json!({ "role": "helpdesk" }))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = support::origin::sign_in(&o, "acme", "bob.keeper@example.test", "bob password 123", &[]).await;
    assert_eq!(s, 200, "{v}");
    let bob_tok = v["access_token"].as_str().unwrap().to_string();

    // --- Sealed at rest: the stored records hold no address, name or agent in plain.
    {
        let id = o.app.tenant_id("acme").await.unwrap().unwrap();
        let db = o.app.store.tenant(&id, false).await.unwrap();
        let h = db.lock().await;
        let stored = gatehouse_origin::audit::query(&h, &Default::default()).await.unwrap();
        let text = serde_json::to_string(&stored).unwrap();
        for secret in [ZELDA_EMAIL, "Quuxington", ZELDA_IP, ZELDA_UA] {
            assert!(!text.contains(secret), "{secret} in a stored record");
        }
        assert!(stored.iter().any(|r| r.sealed.is_some()));
    }
    // The query shows them opened.
    let records = audit(&o, &owner).await;
    let about =
        |r: &Value| r["target"] == json!(format!("user:{zelda}")) || r["actor"] == json!(format!("user:{zelda}"));
    let profile = records.iter().find(|r| r["action"] == "user.profile").unwrap();
    assert_eq!((profile["ip"].as_str(), profile["user_agent"].as_str()), (Some(ZELDA_IP), Some(ZELDA_UA)));
    assert!(profile["after"].as_str().unwrap().contains(ZELDA_NEW_NAME), "{profile}");
    let failure = records.iter().find(|r| r["action"] == "signin.failure" && about(r)).unwrap();
    assert_eq!(failure["ip"], ZELDA_IP);

    // --- Export: admin and self-service, the same document; home region only.
    let (s, exp) = js("GET", &format!("{org}/users/{zelda}/export"), Some(&owner), None).await;
    assert_eq!(s, 200, "{exp}");
    assert_eq!(exp["schema"], "gatehouse.subject-export/1");
    assert_eq!(
        (exp["profile"]["email"].as_str(), exp["profile"]["name"].as_str()),
        (Some(ZELDA_EMAIL), Some(ZELDA_NEW_NAME))
    );
    assert_eq!(exp["membership"]["role"], "editor");
    assert_eq!(exp["teams"][0]["name"], "eng");
    let sessions = exp["sessions"].as_array().unwrap();
    assert!(sessions.len() >= 2, "the invitation's and the sign-in's: {sessions:?}");
    assert!(sessions.iter().all(|s| s["ip"] == ZELDA_IP && s["user_agent"] == ZELDA_UA), "{sessions:?}");
    assert!(sessions[0]["device"].is_string());
    assert_eq!(exp["consents"]["invitations"][0]["accepted_user"], json!(zelda));
    assert_eq!(exp["factors"], json!([]));
    assert!(!exp.to_string().contains("password_hash") && !exp.to_string().contains("$argon2"));
    let audit_part = exp["audit"]["records"].as_array().unwrap();
    assert_eq!(exp["audit"]["complete"], true);
    for action in ["invitation.accept", "user.create", "signin.failure", "signin.success", "user.profile"] {
        assert!(audit_part.iter().any(|r| r["action"] == action), "{action} in the export");
    }
    assert!(audit_part.iter().any(|r| r["after"].as_str().is_some_and(|a| a.contains(ZELDA_EMAIL))), "opened");
    assert!(audit_part.iter().all(|r| !r["target"].as_str().unwrap().contains("bob")));
    let (s, mine) = as_zelda("GET", &format!("{me}/export"), Some(&zelda_tok), None).await;
    assert_eq!(s, 200, "{mine}");
    assert_eq!((mine["profile"].clone(), mine["schema"].clone()), (exp["profile"].clone(), exp["schema"].clone()));
    let (s, v) = js("GET", &format!("{}/t/acme/me/export", o.url), None, None).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("credential_missing")));
    // Somebody acting as her does not get her export.
    let body = json!({ "user_id": zelda, "reason": "ticket 77", "minutes": 5 });
    let (s, imp) = js("POST", &format!("{org}/impersonations"), Some(OPERATOR), Some(body)).await;
    assert_eq!(s, 201, "{imp}");
    let (s, v) = js("GET", &format!("{me}/export"), imp["access_token"].as_str(), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("impersonation_forbidden")));
    let (s, v) = js("GET", &format!("{org}/users/{zelda}/export"), Some(&bob_tok), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("permission_denied")), "a role without privacy:read");
    let (s, v) = js("GET", &format!("{org}/users/u_nobody/export"), Some(&owner), None).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("user_not_found")));
    let (s, v) = js("GET", &format!("{org}/users/..%2F..%2Fx/export"), Some(&owner), None).await;
    assert_eq!(s, 404, "{v}");
    let (s, _) = js("GET", &format!("{}/v1/orgs/acme/users/{zelda}/export", us.url), Some(OPERATOR), None).await;
    assert_eq!(s, 421, "another region never serves it");
    let (s, _) =
        js_from(ZELDA_IP, ZELDA_UA, "GET", &format!("{}/t/acme/me/export", us.url), Some(&zelda_tok), None).await;
    assert_eq!(s, 421);
    let records = audit(&o, &owner).await;
    let exports: Vec<&Value> = records.iter().filter(|r| r["action"] == "privacy.export").collect();
    assert_eq!(exports.len(), 2, "both exports audited");
    assert_eq!(exports[1]["ip"], ZELDA_IP, "the self-service one from her address");

    // --- Before erasure the scan finds her (so the scan is real).
    let needles = [ZELDA_EMAIL, "zelda.quux.7731", "Quuxington", ZELDA_IP, ZELDA_UA];
    for (needle, hits) in scan_data(&o, false, &needles).await {
        assert!(!hits.is_empty(), "{needle} is somewhere before the erasure");
    }

    // --- Refusals: bad input, permissions, the last owner, oneself, a legal hold.
    let erase = format!("{org}/users/{zelda}/erase");
    let (s, v) = js("POST", &erase, Some(&owner), Some(json!({ "reason": "" }))).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_reason")));
    let (s, v) = js("POST", &erase, Some(&owner), Some(json!({ "reason": "x".repeat(501) }))).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_reason")));
    let (s, _) = js("POST", &erase, Some(&owner), Some(json!({ "reason": "ok", "extra": 1 }))).await;
    assert_eq!(s, 400, "unknown fields are refused");
    let (s, v) = js("POST", &erase, Some(&bob_tok), Some(json!({ "reason": "request 1" }))).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("permission_denied")));
    let (s, v) = js("POST", &format!("{org}/users/u_nobody/erase"), Some(&owner), Some(json!({ "reason": "r" }))).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("user_not_found")));
    let owner_id = support::origin::claims(&owner)["sub"].as_str().unwrap().to_string();
    let (s, v) =
        js("POST", &format!("{org}/users/{owner_id}/erase"), Some(&owner), Some(json!({ "reason": "r" }))).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("cannot_erase_self")));
    let (s, v) =
        js("POST", &format!("{org}/users/{owner_id}/erase"), Some(OPERATOR), Some(json!({ "reason": "r" }))).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("last_owner")));
    let now = gatehouse_origin::now();
    let hold = json!({ "reason": "case 12", "from": now - 3600, "until": now + 3600, "users": [zelda] });
    let (s, h) = js("POST", &format!("{org}/audit/holds"), Some(&owner), Some(hold)).await;
    assert_eq!(s, 201, "{h}");
    let (s, v) = js("POST", &erase, Some(&owner), Some(json!({ "reason": "request 1" }))).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("legal_hold")), "{v}");
    let (s, v) = js("GET", &format!("{org}/users/{zelda}/export"), Some(&owner), None).await;
    assert_eq!((s, v["profile"]["email"].as_str()), (200, Some(ZELDA_EMAIL)), "nothing deleted");
    let refused = audit(&o, &owner).await.into_iter().filter(|r| r["action"] == "privacy.erase_refused").count();
    assert_eq!(refused, 1);
    // A hold on somebody else does not cover her.
    let (s, v) =
        js("POST", &format!("{org}/audit/holds/{}/release", h["id"].as_str().unwrap()), Some(&owner), None).await;
    assert_eq!(s, 200, "{v}");
    let hold = json!({ "reason": "case 13", "from": now - 3600, "until": now + 3600, "users": [bob] });
    let (s, v) = js("POST", &format!("{org}/audit/holds"), Some(&owner), Some(hold)).await;
    assert_eq!(s, 201, "{v}");

    // --- Erasure. Right after it, as it left the files: no byte of her email, name,
    // address or user agent in any of them (the WAL included).
    let (s, out) = js("POST", &erase, Some(&owner), Some(json!({ "reason": "GDPR request 2026-118" }))).await;
    assert_eq!(s, 200, "{out}");
    for (needle, hits) in scan_data(&o, false, &needles).await {
        assert!(hits.is_empty(), "{needle} still in {hits:?}");
    }
    let removed = &out["removed"];
    assert_eq!(removed["rows"]["users"], 1, "{out}");
    assert_eq!(removed["rows"]["invitations"], 1, "{out}");
    assert_eq!(removed["rows"]["impersonations"], 1, "{out}");
    assert_eq!(removed["edge_events"], 1, "{out}");
    assert!(removed["keys_destroyed"].as_u64().unwrap() >= 2, "{out}");
    assert!(!subject_key_exists(&o, &format!("user:{zelda}")).await);
    assert!(subject_key_exists(&o, &format!("user:{bob}")).await, "bob's key stays");

    // And after a checkpoint of whatever came since.
    for (needle, hits) in scan_data(&o, true, &needles).await {
        assert!(hits.is_empty(), "{needle} still in {hits:?}");
    }
    // The chain verifies; her records are still there, showing the mark.
    let (s, v) = js("GET", &format!("{org}/audit/verify"), Some(&owner), None).await;
    assert_eq!((s, v["intact"].clone()), (200, json!(true)), "{v}");
    let records = audit(&o, &owner).await;
    let hers: Vec<&Value> = records.iter().filter(|r| about(r)).collect();
    assert!(hers.len() >= 5, "{hers:?}");
    let profile = hers.iter().find(|r| r["action"] == "user.profile").unwrap();
    assert_eq!(
        (profile["ip"].as_str(), profile["user_agent"].as_str()),
        (Some("erased subject"), Some("erased subject"))
    );
    assert!(profile["after"].as_str().unwrap().contains("erased subject"), "{profile}");
    let accept = records.iter().find(|r| r["action"] == "invitation.accept").unwrap();
    assert!(accept["after"].as_str().unwrap().contains("erased subject"), "{accept}");
    let erased = records.iter().find(|r| r["action"] == "privacy.erase").unwrap();
    assert_eq!(erased["target"], json!(format!("user:{zelda}")));
    // Her export is gone, her token no longer works.
    let (s, v) = js("GET", &format!("{org}/users/{zelda}/export"), Some(&owner), None).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("user_not_found")));
    let (s, _) = as_zelda("GET", &format!("{me}/export"), Some(&zelda_tok), None).await;
    assert_eq!(s, 401);
    // Bob is untouched: his rows, his records open, the other edge event stays.
    let (s, v) = js("GET", &format!("{org}/users/{bob}/export"), Some(&owner), None).await;
    assert_eq!((s, v["profile"]["email"].as_str()), (200, Some("bob.keeper@example.test")));
    assert!(v["audit"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["after"].as_str().is_some_and(|a| a.contains("bob.keeper"))));
    assert!(!scan_data(&o, true, &["192.0.2.44"]).await[0].1.is_empty());
    // A hold covering Bob refuses his erasure (and writes the refusal).
    let (s, v) = js("POST", &format!("{org}/users/{bob}/erase"), Some(&owner), Some(json!({ "reason": "r" }))).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("legal_hold")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_address_in_a_failed_sign_in_is_a_pseudonym_at_rest() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let o = start(root.path(), "eu-west", port, &[]).await;
    support::origin::create_org(&o, "acme", "Acme", "team").await;
    let owner = owner_token(&o).await;
    let ghost = "ghost.nobody.5512@example.test";
    let (s, _) = support::origin::sign_in(&o, "acme", ghost, "whatever pass", &[]).await;
    assert_eq!(s, 401);
    let records = audit(&o, &owner).await;
    let failure = records.iter().find(|r| r["action"] == "signin.failure").unwrap();
    assert_eq!(failure["target"], json!(format!("email:{ghost}")), "opened for the admin");
    let hits = scan_data(&o, true, &[ghost]).await;
    assert!(hits[0].1.is_empty(), "the address is only sealed: {:?}", hits[0].1);
    // The admin filters by the address; the filter is pseudonymised the same way.
    let url = format!("{}/v1/orgs/acme/audit?actor=email:{ghost}", o.url);
    let (s, v) = js("GET", &url, Some(&owner), None).await;
    assert_eq!((s, v["items"].as_array().map(Vec::len)), (200, Some(0)), "the address is the target, not the actor");
}
