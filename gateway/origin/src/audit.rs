//! The audit log: append-only and hash-chained per tenant.
//!
//! Each record carries the hash of the previous one, and its own hash covers every field
//! and that link, so editing or deleting a record breaks the chain at that point. The
//! head (last sequence number and hash) is also kept in the directory database, a
//! different file, so cutting records off the end is detected too. Retention purges the
//! oldest records only, never one under a legal hold, and keeps the hash of the last
//! purged record as the chain's anchor.

use anyhow::Result;
use libsql::Connection;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store;

pub use crate::store::audit::{Filter, Record};

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where a change came from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestMeta {
    /// Client address.
    pub ip: Option<String>,
    /// Client `User-Agent`.
    pub user_agent: Option<String>,
    /// Request id (`x-request-id`, or generated).
    pub request_id: String,
}

/// One audit event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Who: `user:<id>`, `operator`, `apikey:<id>`, `system`, `anonymous`.
    pub actor: String,
    /// What: `signin.success`, `user.create`, `token.refresh_reuse`, …
    pub action: &'static str,
    /// On what: `user:<id>`, `session:<id>`, …
    pub target: String,
    /// State before (no secrets).
    pub before: Option<serde_json::Value>,
    /// State after (no secrets).
    pub after: Option<serde_json::Value>,
    /// Who really acted when `actor` is impersonated (`operator`, `user:<id>`).
    pub act: Option<String>,
}

/// The hash of a record: every field and the link to the previous one (shared with the
/// operator's log, [`crate::store::operator_audit`]).
pub(crate) fn record_hash(r: &Record) -> String {
    // A JSON array: unambiguous field boundaries, stable across versions.
    let canonical = serde_json::json!([
        r.seq,
        r.at,
        r.actor,
        r.action,
        r.target,
        r.before,
        r.after,
        r.ip,
        r.user_agent,
        r.request_id,
        r.prev_hash
    ]);
    // Records with an impersonator or sealed personal data hash those too; records
    // without them hash as they always did, so older chains still verify.
    let canonical = match (&r.act, &r.sealed) {
        (None, None) => canonical,
        (act, sealed) => {
            let mut v = canonical;
            if let serde_json::Value::Array(a) = &mut v {
                a.push(serde_json::json!(act));
                a.push(serde_json::json!(sealed));
            }
            v
        }
    };
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// Append `ev` (inside the caller's transaction), its personal data sealed with
/// `sealer` ([`crate::privacy::seal::seal_record`]) before the hash is taken. Returns the
/// new head (seq, hash).
pub async fn append(
    conn: &Connection,
    sealer: &crate::privacy::seal::Sealer,
    ev: &Event,
    meta: &RequestMeta,
    now: u64,
) -> Result<(i64, String)> {
    let (last_seq, prev_hash) = head(conn).await?;
    let mut r = Record {
        seq: last_seq + 1,
        at: now as i64,
        actor: ev.actor.clone(),
        action: ev.action.to_string(),
        target: ev.target.clone(),
        before: ev.before.as_ref().map(|v| v.to_string()),
        after: ev.after.as_ref().map(|v| v.to_string()),
        ip: meta.ip.clone(),
        user_agent: meta.user_agent.clone(),
        request_id: Some(meta.request_id.clone()),
        act: ev.act.clone(),
        sealed: None,
        prev_hash,
        hash: String::new(),
    };
    crate::privacy::seal::seal_record(conn, sealer, &mut r, now as i64).await?;
    r.hash = record_hash(&r);
    store::audit::insert(conn, &r).await?;
    Ok((r.seq, r.hash))
}

/// The last record's (seq, hash), or the anchor's, or (0, GENESIS).
pub async fn head(conn: &Connection) -> Result<(i64, String)> {
    if let Some(last) = store::audit::last(conn).await? {
        return Ok(last);
    }
    Ok(store::audit::anchor(conn).await?.unwrap_or_else(|| (0, GENESIS.to_string())))
}

/// Records matching `f`, in order, one page.
pub async fn query(conn: &Connection, f: &Filter) -> Result<Vec<Record>> {
    Ok(store::audit::query(conn, f).await?)
}

/// What verification found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every record is intact: how many were checked.
    Intact(u64),
    /// The first broken place.
    Broken {
        /// Sequence number.
        seq: i64,
        /// What is wrong.
        problem: String,
    },
}

/// Check the whole chain of one tenant; `known_head`: the head kept outside the tenant
/// database (detects records cut off the end).
pub async fn verify(conn: &Connection, known_head: Option<(i64, String)>) -> Result<Verdict> {
    let (mut seq, mut prev) = store::audit::anchor(conn).await?.unwrap_or_else(|| (0, GENESIS.to_string()));
    let mut rows = store::audit::all(conn).await?;
    let mut n = 0u64;
    while let Some(r) = rows.next().await? {
        if r.seq != seq + 1 {
            return Ok(Verdict::Broken {
                seq: seq + 1,
                problem: format!("missing records {}..{}", seq + 1, r.seq - 1),
            });
        }
        if r.prev_hash != prev {
            return Ok(Verdict::Broken { seq: r.seq, problem: "link to the previous record does not match".into() });
        }
        if record_hash(&r) != r.hash {
            return Ok(Verdict::Broken { seq: r.seq, problem: "record was modified".into() });
        }
        if let Some((hs, hh)) = &known_head {
            if *hs == r.seq && *hh != r.hash {
                return Ok(Verdict::Broken { seq: r.seq, problem: "does not match the recorded head".into() });
            }
        }
        seq = r.seq;
        prev = r.hash;
        n += 1;
    }
    if let Some((hs, _)) = known_head {
        if hs > seq {
            return Ok(Verdict::Broken {
                seq: seq + 1,
                problem: format!("records after {seq} were removed (head is {hs})"),
            });
        }
    }
    Ok(Verdict::Intact(n))
}

/// Delete up to `limit` records older than `before` (Unix seconds), oldest first,
/// stopping at the first record a live legal hold covers; the chain keeps the last purged
/// record's hash as its anchor, so it still verifies.
pub async fn purge(conn: &Connection, before: i64, limit: u64) -> Result<store::audit::Purged> {
    Ok(store::audit::purge(conn, before, limit).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Backend, Store};

    fn ev(action: &'static str) -> Event {
        Event { actor: "operator".into(), action, target: "org:acme".into(), before: None, after: None, act: None }
    }

    #[tokio::test]
    async fn retention_purges_the_oldest_never_a_held_record_and_the_chain_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), Backend::Local { synchronous: "normal".into() }, 4).await.unwrap();
        let db = s.tenant("t_01", true).await.unwrap();
        let h = db.lock().await;
        let meta = RequestMeta { request_id: "r".into(), ..Default::default() };
        let sealer = crate::privacy::seal::Sealer::new(&[7; 32], "t_01");
        let mut head = (0, String::new());
        for at in [100, 200, 300, 400, 500] {
            head = append(&h, &sealer, &ev("x.change"), &meta, at).await.unwrap();
        }
        let hold = store::holds::NewHold {
            id: "h",
            reason: "case 7",
            from_at: 250,
            until_at: 350,
            users: &[],
            actions: &[],
            created_by: "operator",
            created_at: 1,
        };
        store::holds::insert(&h, &hold).await.unwrap();
        // Older than 450: 100, 200 go; 300 is held, so it and everything after stay.
        let purged = purge(&h, 450, 1000).await.unwrap();
        assert_eq!((purged.removed, purged.held), (2, Some((3, "h".to_string()))));
        assert_eq!(verify(&h, Some(head.clone())).await.unwrap(), Verdict::Intact(3));
        let seqs: Vec<i64> = query(&h, &Filter::default()).await.unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        // New records continue the chain from the anchor.
        let next = append(&h, &sealer, &ev("x.change"), &meta, 600).await.unwrap();
        assert_eq!(next.0, 6);
        assert_eq!(verify(&h, Some(next.clone())).await.unwrap(), Verdict::Intact(4));
        // Deleting a record in the middle, or the last one, is detected.
        h.execute("DELETE FROM audit WHERE seq = 6", ()).await.unwrap();
        assert!(matches!(verify(&h, Some(next)).await.unwrap(), Verdict::Broken { seq: 6, .. }));
        h.execute("DELETE FROM audit WHERE seq = 4", ()).await.unwrap();
        assert!(matches!(verify(&h, None).await.unwrap(), Verdict::Broken { seq: 4, .. }));
    }
}
