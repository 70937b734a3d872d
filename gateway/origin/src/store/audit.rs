//! The audit log's storage: records (`audit`), the anchor left by purges
//! (`audit_anchor`) in the tenant database (or its audit file, see [`crate::store`]; legal
//! holds: [`crate::store::holds`]), and each tenant's
//! head (`audit_heads`) in the directory database. The chain itself (hashing,
//! verification) is [`crate::audit`]'s.

use libsql::{Connection, Row, Rows};
use serde::Serialize;

use super::first_row;
use super::holds::HoldId;

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
    /// Who really acted when `actor` was impersonated (RFC 8693 `act`): `operator` or
    /// `user:<id>`. `None` otherwise.
    pub act: Option<String>,
    /// Personal data of the record (emails, names, addresses, user agents), sealed under
    /// the key of the person it is about (JSON; see [`crate::audit`]); the plain columns
    /// hold none of it. `None` on records without personal data and on records written
    /// before sealing existed.
    pub sealed: Option<String>,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

/// The columns of a record, in [`row_record`]'s order.
pub(super) const COLUMNS: &str =
    "seq, at, actor, action, target, before, after, ip, user_agent, request_id, prev_hash, hash, act, sealed";

/// A record from a row of [`COLUMNS`].
pub(super) fn row_record(r: &Row) -> libsql::Result<Record> {
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
        act: r.get(12)?,
        sealed: r.get(13)?,
    })
}

/// Insert a record (its hash already computed).
pub async fn insert(conn: &Connection, r: &Record) -> libsql::Result<()> {
    insert_into(conn, "audit", r).await
}

/// The last record's (seq, hash).
pub async fn last(conn: &Connection) -> libsql::Result<Option<(i64, String)>> {
    last_of(conn, "audit").await
}

/// Insert a record into `table` (`audit` or `operator_audit`: the same columns).
pub(super) async fn insert_into(conn: &Connection, table: &str, r: &Record) -> libsql::Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO {table} ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ),
        libsql::params![
            r.seq,
            r.at,
            r.actor.as_str(),
            r.action.as_str(),
            r.target.as_str(),
            r.before.as_deref(),
            r.after.as_deref(),
            r.ip.as_deref(),
            r.user_agent.as_deref(),
            r.request_id.as_deref(),
            r.prev_hash.as_str(),
            r.hash.as_str(),
            r.act.as_deref(),
            r.sealed.as_deref()
        ],
    )
    .await?;
    Ok(())
}

/// The last record's (seq, hash) in `table`.
pub(super) async fn last_of(conn: &Connection, table: &str) -> libsql::Result<Option<(i64, String)>> {
    first_row(conn, &format!("SELECT seq, hash FROM {table} ORDER BY seq DESC LIMIT 1"), (), |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .await
}

/// The anchor's (seq, hash): the last purged record.
pub async fn anchor(conn: &Connection) -> libsql::Result<Option<(i64, String)>> {
    first_row(conn, "SELECT seq, hash FROM audit_anchor WHERE id = 1", (), |r| Ok((r.get(0)?, r.get(1)?))).await
}

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
pub async fn query(conn: &Connection, f: &Filter) -> libsql::Result<Vec<Record>> {
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
    super::all_rows(
        conn,
        &sql,
        libsql::params![f.after.unwrap_or(0), action_exact, action_prefix, f.actor.clone(), f.since, f.until, limit],
        row_record,
    )
    .await
}

/// Every record in order, read one at a time (the log may be long).
pub struct AllRecords(Rows);

impl AllRecords {
    /// The next record.
    pub async fn next(&mut self) -> libsql::Result<Option<Record>> {
        match self.0.next().await? {
            Some(r) => row_record(&r).map(Some),
            None => Ok(None),
        }
    }
}

/// Read every record, in order.
pub async fn all(conn: &Connection) -> libsql::Result<AllRecords> {
    Ok(AllRecords(conn.query(&format!("SELECT {COLUMNS} FROM audit ORDER BY seq"), ()).await?))
}

/// What a purge of the audit log did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Records removed.
    pub removed: u64,
    /// The record the purge stopped at because a live legal hold covers it: (seq, hold).
    pub held: Option<(i64, HoldId)>,
    /// Whether the batch ended the purge (more records are past retention).
    pub more: bool,
}

/// Delete up to `limit` records older than `before` (Unix seconds), oldest first, stopping
/// at the first record that is not older or that a live legal hold covers; the last one
/// deleted becomes the anchor.
///
/// Only a prefix of the log is ever removed: verification walks from the anchor (the
/// hash of the last purged record) through consecutive sequence numbers, so a record
/// deleted after a held one would be a gap that reads as tampering. Records behind a held
/// one wait until the hold is released.
pub async fn purge(conn: &Connection, before: i64, limit: u64) -> libsql::Result<Purged> {
    let holds = super::holds::live(conn).await?;
    let mut rows = conn
        .query("SELECT seq, hash, at, actor, target, act, action FROM audit ORDER BY seq LIMIT ?1", [limit as i64 + 1])
        .await?;
    let mut out = Purged::default();
    let mut last: Option<(i64, String)> = None;
    let mut seen = 0u64;
    while let Some(r) = rows.next().await? {
        let (seq, hash, at): (i64, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        if at >= before {
            break;
        }
        let (actor, target, act, action): (String, String, Option<String>, String) =
            (r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?);
        if let Some(h) = holds.iter().find(|h| h.covers(at, &actor, &target, act.as_deref(), &action)) {
            out.held = Some((seq, h.id.clone()));
            break;
        }
        if seen == limit {
            out.more = true;
            break;
        }
        seen += 1;
        last = Some((seq, hash));
    }
    drop(rows);
    let Some((seq, hash)) = last else { return Ok(out) };
    out.removed = conn.execute("DELETE FROM audit WHERE seq <= ?1", [seq]).await?;
    conn.execute(
        "INSERT INTO audit_anchor (id, seq, hash) VALUES (1, ?1, ?2) ON CONFLICT(id) DO UPDATE SET seq = ?1, hash = ?2",
        libsql::params![seq, hash],
    )
    .await?;
    Ok(out)
}

/// Record tenant `tenant_id`'s head in the directory database (never moves it back).
pub async fn record_head(directory: &Connection, tenant_id: &str, seq: i64, hash: &str) -> libsql::Result<()> {
    directory
        .execute(
            "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (?1, ?2, ?3)
         ON CONFLICT(tenant_id) DO UPDATE SET seq = ?2, hash = ?3 WHERE excluded.seq > audit_heads.seq",
            libsql::params![tenant_id, seq, hash],
        )
        .await?;
    Ok(())
}

/// Tenant `tenant_id`'s head as the directory database keeps it.
pub async fn head_of(directory: &Connection, tenant_id: &str) -> libsql::Result<Option<(i64, String)>> {
    first_row(directory, "SELECT seq, hash FROM audit_heads WHERE tenant_id = ?1", [tenant_id], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .await
}

/// Forget tenant `tenant_id`'s head (the tenant was deleted).
pub async fn forget_head(directory: &Connection, tenant_id: &str) -> libsql::Result<()> {
    directory.execute("DELETE FROM audit_heads WHERE tenant_id = ?1", [tenant_id]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_tenant;

    #[tokio::test]
    async fn heads_only_move_forward() {
        let (_dir, s, _db) = test_tenant().await;
        let d = s.directory.lock().await;
        record_head(&d, "t_01", 5, "five").await.unwrap();
        record_head(&d, "t_01", 3, "three").await.unwrap();
        assert_eq!(head_of(&d, "t_01").await.unwrap(), Some((5, "five".into())));
        record_head(&d, "t_01", 6, "six").await.unwrap();
        assert_eq!(head_of(&d, "t_01").await.unwrap(), Some((6, "six".into())));
        assert_eq!(head_of(&d, "t_02").await.unwrap(), None);
    }
}
