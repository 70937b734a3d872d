//! Erasure (GDPR Art. 17) of one person from a tenant, in the caller's transaction.
//!
//! In this order: the addresses the person used are collected (their own sessions, and
//! the audit records of their requests opened while the keys still exist); their rows go
//! everywhere ([`crate::store::person`]: user, membership, teams, sessions — unexpired
//! ones stay as revoked stubs without address or user agent —, impersonations of them
//! (their reasons may name the person), refresh and reset tokens, factors, recovery
//! codes, MFA challenges, email verifications, invitations to their address, SSO links,
//! API keys whose subject they are); edge decision events from those addresses go; then
//! their keys are destroyed: `user:<id>`, `email:<pseudonym of their address>` and
//! `ip:<pseudonym>` of each address (anonymous records from those addresses become
//! `erased subject` too). Their audit records stay, and verify.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use libsql::Connection;
use serde::Serialize;

use super::seal::{KeyRing, Sealer};
use crate::store::{holds, person, subject_keys};

/// Most audit records read about one person (for the addresses and the hold check).
pub const MAX_RECORDS: i64 = 100_000;

/// What an erasure removed (counts only: no personal data).
#[derive(Debug, Clone, Serialize)]
pub struct Erased {
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
    /// Edge decision events from the person's addresses.
    pub edge_events: u64,
    /// Keys destroyed.
    pub keys_destroyed: u64,
    /// Audit records about the person (kept, now showing `erased subject`).
    pub audit_records: usize,
}

/// The subjects of user `user` with address `email`: `user:<id>`, `email:<pseudonym>`.
pub fn subjects_of(sealer: &Sealer, user: &str, email: &str) -> Vec<String> {
    vec![format!("user:{user}"), sealer.email_subject(email)]
}

/// A live legal hold covering any audit record about the person (`subjects`), by its
/// scope ([`holds::Hold::covers`]: time range, users, actions): its id. Such a person is
/// not erased (`legal_hold`): destroying their keys would change what the held records
/// show.
pub async fn covering_hold(conn: &Connection, subjects: &[String]) -> Result<Option<String>> {
    let live = holds::live(conn).await?;
    if live.is_empty() {
        return Ok(None);
    }
    for r in person::audit_about(conn, subjects, MAX_RECORDS).await? {
        if let Some(h) = live.iter().find(|h| h.covers(r.at, &r.actor, &r.target, r.act.as_deref(), &r.action)) {
            return Ok(Some(h.id.clone()));
        }
    }
    Ok(None)
}

/// Erase user `user` (address `email`) in `conn`'s transaction. The caller has checked
/// holds ([`covering_hold`]) and writes `privacy.erase` after this.
pub async fn erase(conn: &Connection, sealer: &Sealer, user: &str, email: &str, now: i64) -> Result<Erased> {
    let subjects = subjects_of(sealer, user, email);
    let mut addresses: BTreeSet<String> = person::session_addresses(conn, user).await?.into_iter().collect();
    let records = person::audit_about(conn, &subjects, MAX_RECORDS).await?;
    let mut ring = KeyRing::new(conn, sealer);
    // Their own requests' addresses (and anonymous ones about them): not those of an
    // admin or the operator acting on them.
    for r in records.iter().filter(|r| subjects.contains(&r.actor) || r.actor == "anonymous") {
        for part in super::seal::parts(r.sealed.as_deref()).iter().filter(|p| subjects.contains(&p.subject)) {
            if let Ok(Some(values)) = ring.open_part(r.seq, part).await {
                for (f, v) in part.fields.iter().zip(values) {
                    if f == "ip" {
                        addresses.extend(v.as_str().map(String::from));
                    }
                }
            }
        }
    }
    let rows = person::erase_rows(conn, user, email, now).await?;
    let addresses: Vec<String> = addresses.into_iter().collect();
    let edge_events = person::erase_edge_events(conn, &addresses).await?;
    let mut keys_destroyed = 0;
    let ip_subjects = addresses.iter().map(|ip| sealer.ip_subject(ip));
    for s in subjects.iter().cloned().chain(ip_subjects) {
        keys_destroyed += subject_keys::destroy(conn, &s).await? as u64;
    }
    Ok(Erased { rows, edge_events, keys_destroyed, audit_records: records.len() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{self, Event, RequestMeta};
    use crate::privacy::ERASED;
    use crate::store::{test_tenant, users};

    #[tokio::test]
    async fn erasure_deletes_the_rows_destroys_the_keys_and_keeps_the_records() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        let s = Sealer::new(&[3; 32], "t_01");
        for (id, email) in [("u_1", "zed@example.test"), ("u_2", "other@example.test")] {
            users::insert(&h, &users::NewUser { id, email, name: "N", password_hash: None, created_at: 1 })
                .await
                .unwrap();
        }
        let m = RequestMeta { ip: Some("198.51.100.7".into()), user_agent: Some("UA".into()), request_id: "r".into() };
        for (actor, target) in
            [("user:u_1", "user:u_1"), ("user:u_2", "user:u_2"), ("anonymous", "email:zed@example.test")]
        {
            let e = Event {
                actor: actor.into(),
                action: "x.y",
                target: target.into(),
                before: None,
                after: None,
                act: None,
            };
            audit::append(&h, &s, &e, &m, 10).await.unwrap();
        }
        let subjects = subjects_of(&s, "u_1", "zed@example.test");
        assert_eq!(covering_hold(&h, &subjects).await.unwrap(), None);
        let out = erase(&h, &s, "u_1", "zed@example.test", 20).await.unwrap();
        assert_eq!(out.rows["users"], 1);
        assert_eq!(out.audit_records, 2);
        assert_eq!(out.keys_destroyed, 2, "user:u_1 and the pseudonym of the address");
        assert!(!person::exists_user(&h, "u_1").await.unwrap());
        assert!(person::exists_user(&h, "u_2").await.unwrap());
        let all = audit::query(&h, &audit::Filter::default()).await.unwrap();
        let opened = crate::privacy::open_in(&h, &s, &all).await.unwrap();
        assert_eq!(opened[0].ip.as_deref(), Some(ERASED));
        assert_eq!(opened[1].ip.as_deref(), Some("198.51.100.7"), "another person's record still opens");
        assert_eq!(opened[2].target, ERASED);
    }
}
