//! The operator's audit log (`operator_audit` in the directory database): region-level
//! actions of the platform operator (suspensions, tier changes, tenant deletions) that
//! must outlive the tenant's own log. Append-only and hash-chained like a tenant's log
//! (the same record shape and hash, [`crate::audit`]).

use libsql::{Connection, Row};

use super::audit::Record;
use super::{all_rows, first_row};

const COLUMNS: &str = "seq, at, actor, action, target, before, after, ip, user_agent, request_id, prev_hash, hash";

fn row_record(r: &Row) -> libsql::Result<Record> {
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

/// Insert a record (its hash already computed).
pub async fn insert(conn: &Connection, r: &Record) -> libsql::Result<()> {
    conn.execute(
        &format!("INSERT INTO operator_audit ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
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
            r.hash.as_str()
        ],
    )
    .await?;
    Ok(())
}

/// The last record's (seq, hash).
pub async fn last(conn: &Connection) -> libsql::Result<Option<(i64, String)>> {
    first_row(conn, "SELECT seq, hash FROM operator_audit ORDER BY seq DESC LIMIT 1", (), |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .await
}

/// Records after `after`, in order, at most `limit`.
pub async fn page(conn: &Connection, after: i64, limit: i64) -> libsql::Result<Vec<Record>> {
    all_rows(
        conn,
        &format!("SELECT {COLUMNS} FROM operator_audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
        libsql::params![after, limit],
        row_record,
    )
    .await
}
