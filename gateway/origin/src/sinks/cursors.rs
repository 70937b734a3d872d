//! The sinks' storage in the directory database: each (sink, tenant)'s cursor
//! (`sink_cursors`, the last sequence number the receiver accepted; it never moves
//! back) and the dead letters (`sink_dead_letters`: record ids only). The tenants' heads
//! (`audit_heads`) say where each chain ends, so finding work opens no tenant database.

use libsql::Connection;

use super::record::TenantName;

/// A tenant with records a sink has not delivered.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The tenant.
    pub tenant: TenantName,
    /// The last delivered sequence number (0: none yet).
    pub cursor: i64,
    /// The chain's head.
    pub head: i64,
}

const PER_TENANT: &str = "SELECT t.id, t.slug, COALESCE(c.seq, 0) AS cursor, COALESCE(h.seq, 0) AS head
       FROM tenants t
       LEFT JOIN audit_heads h ON h.tenant_id = t.id
       LEFT JOIN sink_cursors c ON c.sink = ?1 AND c.tenant_id = t.id
      WHERE t.home_region = ?2";

/// The rows of `sql` (a [`PER_TENANT`] query) with `(sink, region, limit)`.
async fn per_tenant(d: &Connection, sql: &str, sink: &str, region: &str, limit: i64) -> libsql::Result<Vec<Pending>> {
    let mut rows = d.query(sql, libsql::params![sink, region, limit]).await?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().await? {
        out.push(Pending { tenant: TenantName { id: r.get(0)?, slug: r.get(1)? }, cursor: r.get(2)?, head: r.get(3)? });
    }
    Ok(out)
}

/// Tenants homed in `region` whose head is past `sink`'s cursor (at most `limit`), the
/// ones served longest ago first (so more than `limit` busy tenants all get their turn).
pub async fn pending(d: &Connection, sink: &str, region: &str, limit: i64) -> libsql::Result<Vec<Pending>> {
    let sql = format!(
        "{PER_TENANT} AND COALESCE(h.seq, 0) > COALESCE(c.seq, 0) ORDER BY COALESCE(c.updated_at, 0), t.id LIMIT ?3"
    );
    per_tenant(d, &sql, sink, region, limit).await
}

/// The total lag of `sink` over the tenants homed in `region`.
pub async fn lag(d: &Connection, sink: &str, region: &str) -> libsql::Result<i64> {
    let sql = format!("SELECT COALESCE(SUM(MAX(head - cursor, 0)), 0) FROM ({PER_TENANT})");
    let mut rows = d.query(&sql, libsql::params![sink, region]).await?;
    Ok(match rows.next().await? {
        Some(r) => r.get(0)?,
        None => 0,
    })
}

/// The cursor and head of every tenant homed in `region` (at most `limit`, by id).
pub async fn positions(d: &Connection, sink: &str, region: &str, limit: i64) -> libsql::Result<Vec<Pending>> {
    per_tenant(d, &format!("{PER_TENANT} ORDER BY t.id LIMIT ?3"), sink, region, limit).await
}

/// Move `sink`'s cursor of `tenant` to `seq` (never back).
pub async fn advance(d: &Connection, sink: &str, tenant: &str, seq: i64, now: i64) -> libsql::Result<()> {
    d.execute(
        "INSERT INTO sink_cursors (sink, tenant_id, seq, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(sink, tenant_id) DO UPDATE SET seq = ?3, updated_at = ?4 WHERE excluded.seq > sink_cursors.seq",
        libsql::params![sink, tenant, seq, now],
    )
    .await?;
    Ok(())
}

/// A dead letter.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Tenant id.
    pub tenant: String,
    /// Sequence number.
    pub seq: i64,
    /// Delivery attempts made.
    pub attempts: i64,
    /// The last failure.
    pub error: String,
    /// Unix seconds of the last failure.
    pub at: i64,
}

/// Record `seqs` of `tenant` as dead letters of `sink` (again: attempts added up).
pub async fn add_dead(
    d: &Connection,
    sink: &str,
    tenant: &str,
    seqs: &[i64],
    attempts: i64,
    error: &str,
    now: i64,
) -> libsql::Result<()> {
    for seq in seqs {
        d.execute(
            "INSERT INTO sink_dead_letters (sink, tenant_id, seq, attempts, error, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(sink, tenant_id, seq) DO UPDATE SET attempts = attempts + ?4, error = ?5, at = ?6",
            libsql::params![sink, tenant, *seq, attempts, error, now],
        )
        .await?;
    }
    Ok(())
}

/// The oldest dead letters of `sink` (at most `limit`), by tenant and sequence number.
pub async fn dead(d: &Connection, sink: &str, limit: i64) -> libsql::Result<Vec<DeadLetter>> {
    let mut rows = d
        .query(
            "SELECT tenant_id, seq, attempts, error, at FROM sink_dead_letters WHERE sink = ?1
              ORDER BY tenant_id, seq LIMIT ?2",
            libsql::params![sink, limit],
        )
        .await?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().await? {
        out.push(DeadLetter {
            tenant: r.get(0)?,
            seq: r.get(1)?,
            attempts: r.get(2)?,
            error: r.get(3)?,
            at: r.get(4)?,
        });
    }
    Ok(out)
}

/// How many dead letters `sink` holds.
pub async fn dead_count(d: &Connection, sink: &str) -> libsql::Result<i64> {
    Ok(crate::store::one(d, "SELECT COUNT(*) FROM sink_dead_letters WHERE sink = ?1", [sink])
        .await
        .ok()
        .flatten()
        .unwrap_or(0))
}

/// A dead letter was delivered (or its record is gone): it leaves the table.
pub async fn remove_dead(d: &Connection, sink: &str, tenant: &str, seq: i64) -> libsql::Result<()> {
    d.execute(
        "DELETE FROM sink_dead_letters WHERE sink = ?1 AND tenant_id = ?2 AND seq = ?3",
        libsql::params![sink, tenant, seq],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cursors_only_move_forward_and_pending_follows_the_heads() {
        let (_dir, s, _db) = crate::store::test_tenant().await;
        let d = s.directory.lock().await;
        d.execute("INSERT INTO tenants (id, slug, home_region, created_at) VALUES ('t_01', 'acme', 'eu', 0), ('t_02', 'beta', 'us', 0)", ())
            .await
            .unwrap();
        crate::store::audit::record_head(&d, "t_01", 5, "h5").await.unwrap();
        crate::store::audit::record_head(&d, "t_02", 9, "h9").await.unwrap();
        let p = pending(&d, "siem", "eu", 10).await.unwrap();
        assert_eq!((p.len(), p[0].tenant.slug.as_str(), p[0].cursor, p[0].head), (1, "acme", 0, 5), "only this region");
        // The tenant served longest ago comes first.
        d.execute("INSERT INTO tenants (id, slug, home_region, created_at) VALUES ('t_03', 'gamma', 'eu', 0)", ())
            .await
            .unwrap();
        crate::store::audit::record_head(&d, "t_03", 2, "h2").await.unwrap();
        advance(&d, "siem", "t_01", 1, 10).await.unwrap();
        advance(&d, "siem", "t_03", 1, 5).await.unwrap();
        let order: Vec<String> =
            pending(&d, "siem", "eu", 10).await.unwrap().into_iter().map(|p| p.tenant.slug).collect();
        assert_eq!(order, ["gamma", "acme"]);
        assert_eq!(pending(&d, "siem", "eu", 1).await.unwrap().len(), 1, "bounded");
        advance(&d, "siem", "t_03", 2, 11).await.unwrap();
        advance(&d, "siem", "t_01", 4, 1).await.unwrap();
        advance(&d, "siem", "t_01", 2, 2).await.unwrap();
        assert_eq!(pending(&d, "siem", "eu", 10).await.unwrap()[0].cursor, 4, "never back");
        assert_eq!(lag(&d, "siem", "eu").await.unwrap(), 1);
        assert_eq!(lag(&d, "other", "eu").await.unwrap(), 5 + 2, "cursors are per sink");
        advance(&d, "siem", "t_01", 5, 3).await.unwrap();
        assert!(pending(&d, "siem", "eu", 10).await.unwrap().is_empty());
        add_dead(&d, "siem", "t_01", &[2, 3], 8, "answered 500", 4).await.unwrap();
        add_dead(&d, "siem", "t_01", &[3], 1, "answered 503", 5).await.unwrap();
        let dl = dead(&d, "siem", 10).await.unwrap();
        assert_eq!(dl.iter().map(|x| (x.seq, x.attempts)).collect::<Vec<_>>(), [(2, 8), (3, 9)]);
        assert_eq!(dl[1].error, "answered 503");
        remove_dead(&d, "siem", "t_01", 2).await.unwrap();
        assert_eq!(dead_count(&d, "siem").await.unwrap(), 1);
        assert_eq!(dead_count(&d, "other").await.unwrap(), 0);
    }
}
