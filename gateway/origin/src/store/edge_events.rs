//! Decisions edges report: the events (`edge_events` in the tenant database) and the
//! batch ids already taken (`edge_batches` in the directory database).

use libsql::Connection;

use super::{all_rows, exists};

/// Whether batch `id` (`edge:batch`) was already stored.
pub async fn batch_seen(directory: &Connection, id: &str) -> libsql::Result<bool> {
    exists(directory, "SELECT id FROM edge_batches WHERE id = ?1", [id]).await
}

/// Note batch `id` as stored.
pub async fn record_batch(directory: &Connection, id: &str, received_at: i64) -> libsql::Result<()> {
    directory
        .execute(
            "INSERT OR IGNORE INTO edge_batches (id, received_at) VALUES (?1, ?2)",
            libsql::params![id, received_at],
        )
        .await?;
    Ok(())
}

/// An edge event, as stored and listed.
#[derive(Debug, Clone)]
pub struct EdgeEventRow {
    /// Deterministic id (`edge:batch:index`).
    pub id: String,
    /// Unix seconds.
    pub at: i64,
    /// `allow`, `deny`, …
    pub decision: String,
    /// Reason code.
    pub reason: String,
    /// Route name.
    pub route: Option<String>,
    /// Client address.
    pub ip: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Who really acted, for a request made under an impersonation (`act.sub`).
    pub actor: Option<String>,
}

/// Insert an event unless its id is stored already; 1 if inserted, else 0.
pub async fn insert(conn: &Connection, e: &EdgeEventRow) -> libsql::Result<u64> {
    conn.execute(
        "INSERT OR IGNORE INTO edge_events (id, at, decision, reason, route, ip, request_id, actor)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        libsql::params![
            e.id.as_str(),
            e.at,
            e.decision.as_str(),
            e.reason.as_str(),
            e.route.as_deref(),
            e.ip.as_deref(),
            e.request_id.as_deref(),
            e.actor.as_deref()
        ],
    )
    .await
}

/// One page of events by id after `after`.
pub async fn page(conn: &Connection, after: &str, limit: i64) -> libsql::Result<Vec<EdgeEventRow>> {
    all_rows(
        conn,
        "SELECT id, at, decision, reason, route, ip, request_id, actor FROM edge_events WHERE id > ?1 ORDER BY id LIMIT ?2",
        libsql::params![after, limit],
        |r| {
            Ok(EdgeEventRow {
                id: r.get(0)?,
                at: r.get(1)?,
                decision: r.get(2)?,
                reason: r.get(3)?,
                route: r.get(4)?,
                ip: r.get(5)?,
                request_id: r.get(6)?,
                actor: r.get(7)?,
            })
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_tenant;

    #[tokio::test]
    async fn an_event_is_stored_once() {
        let (_dir, s, db) = test_tenant().await;
        let h = db.lock().await;
        let e = EdgeEventRow {
            id: "edge:b:0".into(),
            at: 5,
            decision: "deny".into(),
            reason: "rate_limited".into(),
            route: None,
            ip: Some("10.0.0.1".into()),
            request_id: None,
            actor: Some("operator".into()),
        };
        assert_eq!(insert(&h, &e).await.unwrap(), 1);
        assert_eq!(insert(&h, &e).await.unwrap(), 0);
        let got = page(&h, "", 10).await.unwrap();
        assert_eq!((got.len(), got[0].ip.as_deref(), got[0].actor.as_deref()), (1, Some("10.0.0.1"), Some("operator")));
        let d = s.directory.lock().await;
        assert!(!batch_seen(&d, "edge:b").await.unwrap());
        record_batch(&d, "edge:b", 1).await.unwrap();
        record_batch(&d, "edge:b", 2).await.unwrap();
        assert!(batch_seen(&d, "edge:b").await.unwrap());
    }
}
