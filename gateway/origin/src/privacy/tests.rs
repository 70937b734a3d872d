//! Tests of sealing and opening: through [`crate::audit::append`] into a real tenant
//! database and back (a module of their own: the audit log calls the sealing, so the
//! sealing's own module does not call the audit log).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use libsql::Connection;
use serde_json::Value;

use super::personal_field;
use super::seal::{parts, KeyRing, Sealer};
use super::{ERASED, UNREADABLE};
use crate::audit::{self, Event, RequestMeta};
use crate::store::audit::Record;
use crate::store::{subject_keys, test_tenant};

fn sealer() -> Sealer {
    Sealer::new(&[7; 32], "t_01")
}

fn meta() -> RequestMeta {
    RequestMeta { ip: Some("203.0.113.9".into()), user_agent: Some("Zeldabrowser/1".into()), request_id: "r".into() }
}

fn event(actor: &str, action: &'static str, target: &str, after: Value) -> Event {
    Event { actor: actor.into(), action, target: target.into(), before: None, after: Some(after), act: None }
}

async fn last(h: &Connection) -> Record {
    audit::query(h, &audit::Filter::default()).await.unwrap().pop().unwrap()
}

#[tokio::test]
async fn sealed_records_keep_no_personal_data_in_plain_and_open_again() {
    let (_dir, _s, db) = test_tenant().await;
    let h = db.lock().await;
    let s = sealer();
    let e = event("user:u_1", "user.profile", "user:u_1", serde_json::json!({"name": "Zelda Q", "role": "viewer"}));
    let head = audit::append(&h, &s, &e, &meta(), 100).await.unwrap();
    let stored = last(&h).await;
    let text = serde_json::to_string(&stored).unwrap();
    for secret in ["Zelda Q", "203.0.113.9", "Zeldabrowser"] {
        assert!(!text.contains(secret), "{secret} in the stored form: {text}");
    }
    assert_eq!(stored.ip, None);
    assert_eq!(stored.after.as_deref(), Some(r#"{"role":"viewer"}"#));
    let opened = KeyRing::new(&h, &s).open_record(&stored).await.unwrap();
    assert_eq!(opened.ip.as_deref(), Some("203.0.113.9"));
    assert_eq!(opened.user_agent.as_deref(), Some("Zeldabrowser/1"));
    let after: Value = serde_json::from_str(opened.after.as_deref().unwrap()).unwrap();
    assert_eq!(after, serde_json::json!({"name": "Zelda Q", "role": "viewer"}));
    // The hash covers the stored form: the chain verifies.
    assert_eq!(audit::verify(&h, Some(head)).await.unwrap(), audit::Verdict::Intact(1));
}

#[tokio::test]
async fn an_address_in_the_target_becomes_a_pseudonym_and_erasure_leaves_the_mark() {
    let (_dir, _s, db) = test_tenant().await;
    let h = db.lock().await;
    let s = sealer();
    let e = Event {
        actor: "anonymous".into(),
        action: "signin.failure",
        target: "email:Zelda@Example.com".into(),
        before: None,
        after: None,
        act: None,
    };
    let head = audit::append(&h, &s, &e, &meta(), 100).await.unwrap();
    let stored = last(&h).await;
    assert_eq!(stored.target, s.email_subject("zelda@example.com"));
    assert!(!stored.target.contains('@'));
    let opened = KeyRing::new(&h, &s).open_record(&stored).await.unwrap();
    assert_eq!(opened.target, "email:Zelda@Example.com");
    assert_eq!(opened.ip.as_deref(), Some("203.0.113.9"));
    // Destroying the key: every place shows the mark, the chain still verifies.
    assert!(subject_keys::destroy(&h, &stored.target).await.unwrap());
    let opened = KeyRing::new(&h, &s).open_record(&stored).await.unwrap();
    assert_eq!(opened.target, ERASED);
    assert_eq!(opened.ip.as_deref(), Some(ERASED));
    assert_eq!(opened.user_agent.as_deref(), Some(ERASED));
    assert_eq!(audit::verify(&h, Some(head)).await.unwrap(), audit::Verdict::Intact(1));
}

#[tokio::test]
async fn the_wrong_region_key_a_tampered_or_moved_part_fail_closed() {
    let (_dir, _s, db) = test_tenant().await;
    let h = db.lock().await;
    let s = sealer();
    let e = event("user:u_2", "user.create", "user:u_3", serde_json::json!({"email": "x@y.test"}));
    audit::append(&h, &s, &e, &meta(), 100).await.unwrap();
    let stored = last(&h).await;
    assert_eq!(parts(stored.sealed.as_deref()).len(), 2, "the actor's address and the target's email apart");
    // Another region key opens nothing (the subject keys do not unwrap): unreadable, not
    // erased.
    let other = Sealer::new(&[8; 32], "t_01");
    let opened = KeyRing::new(&h, &other).open_record(&stored).await.unwrap();
    assert_eq!(opened.ip.as_deref(), Some(UNREADABLE));
    // Nor does it seal under a key it cannot open: the append fails, nothing is written.
    assert!(audit::append(&h, &other, &e, &meta(), 101).await.is_err());
    assert_eq!(last(&h).await.seq, stored.seq);
    // Another tenant's sealer neither.
    let moved = Sealer::new(&[7; 32], "t_02");
    assert_eq!(KeyRing::new(&h, &moved).open_record(&stored).await.unwrap().ip.as_deref(), Some(UNREADABLE));
    // A flipped ciphertext byte, or the part moved to another record, is unreadable.
    let mut p = parts(stored.sealed.as_deref());
    let mut ct = B64.decode(&p[0].ct).unwrap();
    ct[0] ^= 1;
    p[0].ct = B64.encode(ct);
    let mut tampered = stored.clone();
    tampered.sealed = Some(serde_json::to_string(&p).unwrap());
    let opened = KeyRing::new(&h, &s).open_record(&tampered).await.unwrap();
    assert_eq!(opened.ip.as_deref(), Some(UNREADABLE), "part 0 is the actor's (user:u_2 sorts first)");
    let mut moved_rec = stored.clone();
    moved_rec.seq += 1;
    let opened = KeyRing::new(&h, &s).open_record(&moved_rec).await.unwrap();
    assert_eq!(opened.ip.as_deref(), Some(UNREADABLE));
    // The untouched record still opens.
    let opened = KeyRing::new(&h, &s).open_record(&stored).await.unwrap();
    assert!(opened.after.unwrap().contains("x@y.test"));
}

#[tokio::test]
async fn the_platform_keeps_its_address_plain_and_records_without_personal_data_stay_unsealed() {
    let (_dir, _s, db) = test_tenant().await;
    let h = db.lock().await;
    let s = sealer();
    let e = event("operator", "org.tier", "org:acme", serde_json::json!({"tier": "pro", "name": "Acme"}));
    audit::append(&h, &s, &e, &meta(), 100).await.unwrap();
    let stored = last(&h).await;
    assert_eq!(stored.sealed, None);
    assert_eq!(stored.ip.as_deref(), Some("203.0.113.9"));
    assert!(stored.after.unwrap().contains("Acme"), "an organisation's name is not personal");
    // An anonymous caller's address is sealed under the address's own subject.
    let e = event("anonymous", "sso.failure", "sso:c_1", serde_json::json!({"reason": "x"}));
    audit::append(&h, &s, &e, &meta(), 101).await.unwrap();
    let stored = last(&h).await;
    assert_eq!(stored.ip, None);
    assert_eq!(parts(stored.sealed.as_deref())[0].subject, s.ip_subject("203.0.113.9"));
}

#[test]
fn names_are_personal_unless_the_target_is_an_organisation_level_thing() {
    assert!(personal_field("email", "team:t_1"));
    assert!(personal_field("name", "user:u_1"));
    assert!(personal_field("name", "factor:f_1"));
    assert!(personal_field("name", "something:new"), "unknown target kinds fail closed");
    assert!(!personal_field("name", "team:t_1"));
    assert!(!personal_field("name", "org:acme"));
    assert!(!personal_field("role", "user:u_1"));
}
