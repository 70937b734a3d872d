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
pub async fn upsert_from_peer(conn: &Connection, e: &TenantEntry) -> libsql::Result<u64> {
    conn.execute(
        "INSERT INTO tenants (id, slug, home_region, created_at) VALUES (?1, ?2, ?3, ?4)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_tenant;

    #[tokio::test]
    async fn a_peer_renames_only_its_own_tenants() {
        let (_dir, s, _db) = test_tenant().await;
        let d = s.directory.lock().await;
        let e = |id: &str, slug: &str, home: &str| TenantEntry {
            id: id.into(),
            slug: slug.into(),
            home_region: home.into(),
            created_at: 1,
        };
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
}
