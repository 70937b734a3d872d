//! Usage of a tenant over time, counted from what it already stores: sign-in records of
//! the audit log (`audit`) and the decisions edges reported (`edge_events`), grouped in
//! buckets of `bucket` seconds from the Unix epoch.

use libsql::Connection;

use super::all_rows;

/// `(bucket start, action, count)` of the audit records in `[from, to)` whose action is a
/// sign-in's (`signin.…`, `sso.…`, `mfa.…`).
pub async fn signin_actions(
    conn: &Connection,
    from: i64,
    to: i64,
    bucket: i64,
) -> libsql::Result<Vec<(i64, String, i64)>> {
    all_rows(
        conn,
        "SELECT (at / ?3) * ?3 AS b, action, COUNT(*) FROM audit
          WHERE at >= ?1 AND at < ?2 AND (action LIKE 'signin.%' OR action LIKE 'sso.%' OR action LIKE 'mfa.%')
          GROUP BY b, action ORDER BY b",
        libsql::params![from, to, bucket],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .await
}

/// `(bucket start, count)` of the denies edges reported in `[from, to)`.
pub async fn edge_denies(conn: &Connection, from: i64, to: i64, bucket: i64) -> libsql::Result<Vec<(i64, i64)>> {
    all_rows(
        conn,
        "SELECT (at / ?3) * ?3 AS b, COUNT(*) FROM edge_events
          WHERE at >= ?1 AND at < ?2 AND decision = 'deny' GROUP BY b ORDER BY b",
        libsql::params![from, to, bucket],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .await
}
