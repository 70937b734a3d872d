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

use crate::store::one;

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
}

/// A stored record.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Sequence number, from 1, without gaps.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// Actor.
    pub actor: String,
    /// Action.
    pub action: String,
    /// Target.
    pub target: String,
    /// Before (JSON text).
    pub before: Option<String>,
    /// After (JSON text).
    pub after: Option<String>,
    /// Client address.
    pub ip: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

fn record_hash(r: &Record) -> String {
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
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// Append `ev` (inside the caller's transaction). Returns the new head (seq, hash).
pub async fn append(conn: &Connection, ev: &Event, meta: &RequestMeta, now: u64) -> Result<(i64, String)> {
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
        prev_hash,
        hash: String::new(),
    };
    r.hash = record_hash(&r);
    conn.execute(
        "INSERT INTO audit (seq, at, actor, action, target, before, after, ip, user_agent, request_id, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        libsql::params![
            r.seq,
            r.at,
            r.actor.clone(),
            r.action.clone(),
            r.target.clone(),
            r.before.clone(),
            r.after.clone(),
            r.ip.clone(),
            r.user_agent.clone(),
            r.request_id.clone(),
            r.prev_hash.clone(),
            r.hash.clone()
        ],
    )
    .await?;
    Ok((r.seq, r.hash))
}

/// The last record's (seq, hash), or the anchor's, or (0, GENESIS).
pub async fn head(conn: &Connection) -> Result<(i64, String)> {
    let mut rows = conn.query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", ()).await?;
    if let Some(r) = rows.next().await? {
        return Ok((r.get(0)?, r.get(1)?));
    }
    drop(rows);
    let mut rows = conn.query("SELECT seq, hash FROM audit_anchor WHERE id = 1", ()).await?;
    if let Some(r) = rows.next().await? {
        return Ok((r.get(0)?, r.get(1)?));
    }
    Ok((0, GENESIS.to_string()))
}

fn row_record(r: &libsql::Row) -> Result<Record> {
    Ok(Record {
        seq: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        target: r.get(4)?,
        before: r.get(5)?,
        after: r.get(6)?,
        ip: r.get(7)?,
        user_agent: r.get(8)?,
        request_id: r.get(9)?,
        prev_hash: r.get(10)?,
        hash: r.get(11)?,
    })
}

const COLUMNS: &str = "seq, at, actor, action, target, before, after, ip, user_agent, request_id, prev_hash, hash";

/// Filter for [`query`].
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct Filter {
    /// Exact action, or a prefix ending in `.` (`signin.`).
    pub action: Option<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// From (Unix seconds, inclusive).
    pub since: Option<i64>,
    /// Until (Unix seconds, exclusive).
    pub until: Option<i64>,
    /// Records after this sequence number (the cursor of the previous page).
    pub after: Option<i64>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// Records matching `f`, in order, one page.
pub async fn query(conn: &Connection, f: &Filter) -> Result<Vec<Record>> {
    let limit = f.limit.unwrap_or(100).clamp(1, 1000) as i64;
    let (action_exact, action_prefix) = match f.action.as_deref() {
        Some(a) if a.ends_with('.') => (None, Some(format!("{a}%"))),
        Some(a) => (Some(a.to_string()), None),
        None => (None, None),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM audit WHERE seq > ?1
           AND (?2 IS NULL OR action = ?2) AND (?3 IS NULL OR action LIKE ?3)
           AND (?4 IS NULL OR actor = ?4) AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR at < ?6)
         ORDER BY seq LIMIT ?7"
    );
    let mut rows = conn
        .query(
            &sql,
            libsql::params![
                f.after.unwrap_or(0),
                action_exact,
                action_prefix,
                f.actor.clone(),
                f.since,
                f.until,
                limit
            ],
        )
        .await?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().await? {
        out.push(row_record(&r)?);
    }
    Ok(out)
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
    let (mut seq, mut prev) = match one::<i64>(conn, "SELECT seq FROM audit_anchor WHERE id = 1", ()).await? {
        Some(s) => {
            (s, one::<String>(conn, "SELECT hash FROM audit_anchor WHERE id = 1", ()).await?.unwrap_or_default())
        }
        None => (0, GENESIS.to_string()),
    };
    let mut rows = conn.query(&format!("SELECT {COLUMNS} FROM audit ORDER BY seq"), ()).await?;
    let mut n = 0u64;
    while let Some(row) = rows.next().await? {
        let r = row_record(&row)?;
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

/// Delete records older than `before` (Unix seconds), oldest first, stopping at the first
/// record under a legal hold. Returns how many were purged.
pub async fn purge(conn: &Connection, before: i64) -> Result<u64> {
    let mut rows =
        conn.query("SELECT seq, hash, at FROM audit WHERE at < ?1 ORDER BY seq", libsql::params![before]).await?;
    let mut last: Option<(i64, String)> = None;
    while let Some(r) = rows.next().await? {
        let (seq, hash, at): (i64, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let held: Option<i64> =
            one(conn, "SELECT 1 FROM legal_holds WHERE from_at <= ?1 AND until_at > ?1 LIMIT 1", [at]).await?;
        if held.is_some() {
            break;
        }
        last = Some((seq, hash));
    }
    drop(rows);
    let Some((seq, hash)) = last else { return Ok(0) };
    let n = conn.execute("DELETE FROM audit WHERE seq <= ?1", [seq]).await?;
    conn.execute(
        "INSERT INTO audit_anchor (id, seq, hash) VALUES (1, ?1, ?2) ON CONFLICT(id) DO UPDATE SET seq = ?1, hash = ?2",
        libsql::params![seq, hash],
    )
    .await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Backend, Store};

    fn ev(action: &'static str) -> Event {
        Event { actor: "operator".into(), action, target: "org:acme".into(), before: None, after: None }
    }

    #[tokio::test]
    async fn retention_purges_the_oldest_never_a_held_record_and_the_chain_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), Backend::Local { synchronous: "normal".into() }, 4).await.unwrap();
        let db = s.tenant("t_01", true).await.unwrap();
        let h = db.lock().await;
        let meta = RequestMeta { request_id: "r".into(), ..Default::default() };
        let mut head = (0, String::new());
        for at in [100, 200, 300, 400, 500] {
            head = append(&h, &ev("x.change"), &meta, at).await.unwrap();
        }
        h.execute(
            "INSERT INTO legal_holds (id, reason, from_at, until_at, created_at) VALUES ('h', 'case 7', 250, 350, 1)",
            (),
        )
        .await
        .unwrap();
        // Older than 450: 100, 200 go; 300 is held, so it and everything after stay.
        assert_eq!(purge(&h, 450).await.unwrap(), 2);
        assert_eq!(verify(&h, Some(head.clone())).await.unwrap(), Verdict::Intact(3));
        let seqs: Vec<i64> = query(&h, &Filter::default()).await.unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        // New records continue the chain from the anchor.
        let next = append(&h, &ev("x.change"), &meta, 600).await.unwrap();
        assert_eq!(next.0, 6);
        assert_eq!(verify(&h, Some(next.clone())).await.unwrap(), Verdict::Intact(4));
        // Deleting a record in the middle, or the last one, is detected.
        h.execute("DELETE FROM audit WHERE seq = 6", ()).await.unwrap();
        assert!(matches!(verify(&h, Some(next)).await.unwrap(), Verdict::Broken { seq: 6, .. }));
        h.execute("DELETE FROM audit WHERE seq = 4", ()).await.unwrap();
        assert!(matches!(verify(&h, None).await.unwrap(), Verdict::Broken { seq: 4, .. }));
    }
}
