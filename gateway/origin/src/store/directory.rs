//! The tenant directory (`tenants` in the directory database): every tenant's id, slug
//! and home region, this region's and those its peers replicate.

use libsql::Connection;

use super::{all_rows, first_row};

/// One tenant of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantEntry {
    /// Id (`t_…`).
    pub id: String,
    /// Slug.
    pub slug: String,
    /// The region that holds its data.
    pub home_region: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Where tenant `slug` lives.
#[derive(Debug, Clone)]
pub struct Home {
    /// Id (`t_…`).
    pub id: String,
    /// Its home region.
    pub home_region: String,
}

/// The id and home region of tenant `slug`.
pub async fn home_of(conn: &Connection, slug: &str) -> libsql::Result<Option<Home>> {
    first_row(conn, "SELECT id, home_region FROM tenants WHERE slug = ?1", [slug], |r| {
        Ok(Home { id: r.get(0)?, home_region: r.get(1)? })
    })
    .await
}

/// The id of tenant `slug`, wherever it lives.
pub async fn id_by_slug(conn: &Connection, slug: &str) -> libsql::Result<Option<String>> {
    first_row(conn, "SELECT id FROM tenants WHERE slug = ?1", [slug], |r| r.get(0)).await
}

/// The id of tenant `slug` if it is homed in `region`.
pub async fn id_homed_in(conn: &Connection, slug: &str, region: &str) -> libsql::Result<Option<String>> {
    first_row(conn, "SELECT id FROM tenants WHERE slug = ?1 AND home_region = ?2", libsql::params![slug, region], |r| {
        r.get(0)
    })
    .await
}

/// Note that tenant `id`'s part of its region's bundle changed: every origin sharing this
/// directory reads its fragment again at its next build (`bundles::Fragments`). Call it
/// after the change is written.
pub async fn touch_policy(conn: &Connection, id: &str) -> libsql::Result<()> {
    conn.execute("UPDATE tenants SET policy_gen = policy_gen + 1 WHERE id = ?1", [id]).await?;
    Ok(())
}

/// Insert a tenant created in this region.
pub async fn insert(conn: &Connection, e: &TenantEntry) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO tenants (id, slug, home_region, created_at) VALUES (?1, ?2, ?3, ?4)",
        libsql::params![e.id.as_str(), e.slug.as_str(), e.home_region.as_str(), e.created_at],
    )
    .await?;
    Ok(())
}

/// Store an entry a peer region sent: new tenants are inserted; a known one changes its
/// slug only if it is homed in the entry's region. How many rows changed.
/// A tenant with a tombstone is never inserted again.
pub async fn upsert_from_peer(conn: &Connection, e: &TenantEntry) -> libsql::Result<u64> {
    conn.execute(
        "INSERT INTO tenants (id, slug, home_region, created_at)
                 SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS (SELECT 1 FROM tenant_tombstones WHERE id = ?1)
                 ON CONFLICT(id) DO UPDATE SET slug = ?2 WHERE tenants.home_region = ?3",
        libsql::params![e.id.as_str(), e.slug.as_str(), e.home_region.as_str(), e.created_at],
    )
    .await
}

fn entry(r: &libsql::Row) -> libsql::Result<TenantEntry> {
    Ok(TenantEntry { id: r.get(0)?, slug: r.get(1)?, home_region: r.get(2)?, created_at: r.get(3)? })
}

/// One page of every tenant by slug after `after`.
pub async fn page(conn: &Connection, after: &str, limit: i64) -> libsql::Result<Vec<TenantEntry>> {
    all_rows(
        conn,
        "SELECT id, slug, home_region, created_at FROM tenants WHERE slug > ?1 ORDER BY slug LIMIT ?2",
        libsql::params![after, limit],
        entry,
    )
    .await
}

/// The tenants homed in `region`, by slug.
pub async fn homed_in(conn: &Connection, region: &str) -> libsql::Result<Vec<TenantEntry>> {
    all_rows(
        conn,
        "SELECT id, slug, home_region, created_at FROM tenants WHERE home_region = ?1 ORDER BY slug",
        [region],
        entry,
    )
    .await
}

/// A tenant's id and slug.
#[derive(Debug, Clone)]
pub struct TenantRef {
    /// Id (`t_…`).
    pub id: String,
    /// Slug.
    pub slug: String,
}

/// The id and slug of every tenant homed in `region` (in no particular order).
pub async fn refs_homed_in(conn: &Connection, region: &str) -> libsql::Result<Vec<TenantRef>> {
    all_rows(conn, "SELECT id, slug FROM tenants WHERE home_region = ?1", [region], |r| {
        Ok(TenantRef { id: r.get(0)?, slug: r.get(1)? })
    })
    .await
}

/// Replace tenant `id`'s entry by a tombstone (deleted at `now`): it leaves every
/// lookup, its slug stays taken. The entry, if there was one.
pub async fn tombstone(conn: &Connection, id: &str, now: i64) -> libsql::Result<Option<TenantEntry>> {
    let e = first_row(conn, "SELECT id, slug, home_region, created_at FROM tenants WHERE id = ?1", [id], entry).await?;
    if e.is_some() {
        conn.execute(
            "INSERT OR IGNORE INTO tenant_tombstones (id, slug, home_region, created_at, deleted_at)
                 SELECT id, slug, home_region, created_at, ?2 FROM tenants WHERE id = ?1",
            libsql::params![id, now],
        )
        .await?;
        conn.execute("DELETE FROM tenants WHERE id = ?1", [id]).await?;
    }
    Ok(e)
}

/// Store a tombstone a peer region sent for one of its own tenants (`e.home_region` is
/// the sender): the entry, if known here, leaves the directory. How many entries left.
pub async fn tombstone_from_peer(conn: &Connection, e: &TenantEntry, deleted_at: i64) -> libsql::Result<u64> {
    conn.execute(
        "INSERT OR IGNORE INTO tenant_tombstones (id, slug, home_region, created_at, deleted_at)
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM tenants WHERE id = ?1 AND home_region != ?3)",
        libsql::params![e.id.as_str(), e.slug.as_str(), e.home_region.as_str(), e.created_at, deleted_at],
    )
    .await?;
    conn.execute(
        "DELETE FROM tenants WHERE id = ?1 AND home_region = ?2",
        libsql::params![e.id.as_str(), e.home_region.as_str()],
    )
    .await
}

/// Whether `slug` belonged to a deleted tenant (such slugs stay taken).
pub async fn slug_tombstoned(conn: &Connection, slug: &str) -> libsql::Result<bool> {
    super::exists(conn, "SELECT 1 FROM tenant_tombstones WHERE slug = ?1", [slug]).await
}

/// The tombstones of tenants homed in `region`, with when each was deleted.
pub async fn tombstones_homed_in(conn: &Connection, region: &str) -> libsql::Result<Vec<(TenantEntry, i64)>> {
    all_rows(
        conn,
        "SELECT id, slug, home_region, created_at, deleted_at FROM tenant_tombstones WHERE home_region = ?1 ORDER BY slug",
        [region],
        |r| Ok((entry(r)?, r.get(4)?)),
    )
    .await
}

/// Store a deletion confirmation (SHA-256 of the token) for tenant `tenant_id`.
pub async fn insert_deletion(conn: &Connection, hash: &str, tenant_id: &str, expires_at: i64) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO org_deletions (hash, tenant_id, expires_at) VALUES (?1, ?2, ?3)",
        libsql::params![hash, tenant_id, expires_at],
    )
    .await?;
    Ok(())
}

/// What presenting a deletion confirmation led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// Valid, and now spent.
    Taken,
    /// Unknown, already used, or another tenant's.
    Invalid,
    /// Past its expiry.
    Expired,
}

/// Spend the confirmation `hash` for tenant `tenant_id` at `now` (once).
pub async fn take_deletion(conn: &Connection, hash: &str, tenant_id: &str, now: i64) -> libsql::Result<Confirmation> {
    let row =
        first_row(conn, "SELECT tenant_id, expires_at, used_at FROM org_deletions WHERE hash = ?1", [hash], |r| {
            Ok((r.get::<String>(0)?, r.get::<i64>(1)?, r.get::<Option<i64>>(2)?))
        })
        .await?;
    let Some((tenant, expires_at, used_at)) = row else { return Ok(Confirmation::Invalid) };
    if tenant != tenant_id || used_at.is_some() {
        return Ok(Confirmation::Invalid);
    }
    if expires_at <= now {
        return Ok(Confirmation::Expired);
    }
    let n = conn
        .execute(
            "UPDATE org_deletions SET used_at = ?2 WHERE hash = ?1 AND used_at IS NULL",
            libsql::params![hash, now],
        )
        .await?;
    Ok(if n == 1 { Confirmation::Taken } else { Confirmation::Invalid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_tenant;

    /// A directory entry created at 1.
    fn e(id: &str, slug: &str, home: &str) -> TenantEntry {
        TenantEntry { id: id.into(), slug: slug.into(), home_region: home.into(), created_at: 1 }
    }

    #[tokio::test]
    async fn a_peer_renames_only_its_own_tenants() {
        let (_dir, s, _db) = test_tenant().await;
        let d = s.directory.lock().await;
        insert(&d, &e("t_01", "acme", "eu")).await.unwrap();
        assert_eq!(upsert_from_peer(&d, &e("t_01", "evil", "us")).await.unwrap(), 0, "not homed in us");
        assert_eq!(upsert_from_peer(&d, &e("t_02", "beta", "us")).await.unwrap(), 1);
        assert_eq!(upsert_from_peer(&d, &e("t_02", "beta2", "us")).await.unwrap(), 1);
        assert_eq!(id_homed_in(&d, "acme", "eu").await.unwrap().as_deref(), Some("t_01"));
        assert_eq!(id_homed_in(&d, "acme", "us").await.unwrap(), None);
        assert_eq!(home_of(&d, "beta2").await.unwrap().unwrap().home_region, "us");
        assert_eq!(homed_in(&d, "us").await.unwrap(), [e("t_02", "beta2", "us")]);
        assert_eq!(page(&d, "acme", 10).await.unwrap().len(), 1, "the cursor is exclusive");
    }

    #[tokio::test]
    async fn a_tombstoned_tenant_leaves_every_lookup_keeps_its_slug_and_never_comes_back() {
        let (_dir, s, _db) = test_tenant().await;
        let d = s.directory.lock().await;
        insert(&d, &e("t_01", "acme", "eu")).await.unwrap();
        assert_eq!(tombstone(&d, "t_01", 50).await.unwrap(), Some(e("t_01", "acme", "eu")));
        assert_eq!(tombstone(&d, "t_01", 60).await.unwrap(), None, "once");
        assert!(home_of(&d, "acme").await.unwrap().is_none() && homed_in(&d, "eu").await.unwrap().is_empty());
        assert!(slug_tombstoned(&d, "acme").await.unwrap());
        assert_eq!(tombstones_homed_in(&d, "eu").await.unwrap(), [(e("t_01", "acme", "eu"), 50)]);
        // A peer that still has the entry cannot bring it back.
        assert_eq!(upsert_from_peer(&d, &e("t_01", "acme", "eu")).await.unwrap(), 0);
        assert!(home_of(&d, "acme").await.unwrap().is_none());
        // A peer's tombstone removes its tenant here, and only its own.
        upsert_from_peer(&d, &e("t_02", "beta", "us")).await.unwrap();
        assert_eq!(tombstone_from_peer(&d, &e("t_02", "beta", "eu"), 70).await.unwrap(), 0, "not homed in eu");
        assert!(!slug_tombstoned(&d, "beta").await.unwrap());
        assert_eq!(tombstone_from_peer(&d, &e("t_02", "beta", "us"), 70).await.unwrap(), 1);
        assert!(home_of(&d, "beta").await.unwrap().is_none());
        assert_eq!(upsert_from_peer(&d, &e("t_02", "beta", "us")).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_deletion_confirmation_is_single_use_expiring_and_bound_to_its_tenant() {
        let (_dir, s, _db) = test_tenant().await;
        let d = s.directory.lock().await;
        insert_deletion(&d, "h1", "t_01", 100).await.unwrap();
        insert_deletion(&d, "h2", "t_01", 100).await.unwrap();
        assert_eq!(take_deletion(&d, "h1", "t_02", 50).await.unwrap(), Confirmation::Invalid, "another tenant's");
        assert_eq!(take_deletion(&d, "nope", "t_01", 50).await.unwrap(), Confirmation::Invalid);
        assert_eq!(take_deletion(&d, "h2", "t_01", 100).await.unwrap(), Confirmation::Expired);
        assert_eq!(take_deletion(&d, "h1", "t_01", 50).await.unwrap(), Confirmation::Taken);
        assert_eq!(take_deletion(&d, "h1", "t_01", 51).await.unwrap(), Confirmation::Invalid, "once");
    }
}
