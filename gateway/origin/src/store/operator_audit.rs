//! The operator's audit log (`operator_audit` in the directory database): region-level
//! actions of the platform operator (suspensions, tier changes, tenant deletions) that
//! must outlive the tenant's own log. Append-only and hash-chained like a tenant's log
//! (the same record shape and hash, [`crate::audit`]).

use libsql::Connection;

use super::all_rows;
use super::audit::{self, row_record, Record, COLUMNS};

/// Insert a record (its hash already computed).
pub async fn insert(conn: &Connection, r: &Record) -> libsql::Result<()> {
    audit::insert_into(conn, "operator_audit", r).await
}

/// The last record's (seq, hash).
pub async fn last(conn: &Connection) -> libsql::Result<Option<(i64, String)>> {
    audit::last_of(conn, "operator_audit").await
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
