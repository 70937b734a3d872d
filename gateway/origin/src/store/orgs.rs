//! The organisation of a tenant database (`org`, exactly one row): name, tier, policy,
//! audit retention and SSO enforcement.

use libsql::Connection;

use super::first_row;

/// The organisation row to insert when a tenant is created.
#[derive(Debug, Clone)]
pub struct NewOrg<'a> {
    /// Tenant id (`t_…`).
    pub tenant_id: &'a str,
    /// Slug.
    pub slug: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Tier (of the template).
    pub tier: &'a str,
    /// Tenant policy, JSON.
    pub policy: &'a str,
    /// Unix seconds.
    pub created_at: i64,
}

/// Insert the organisation row.
pub async fn insert(conn: &Connection, o: &NewOrg<'_>) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO org (id, tenant_id, slug, name, tier, policy, created_at) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
        libsql::params![o.tenant_id, o.slug, o.name, o.tier, o.policy, o.created_at],
    )
    .await?;
    Ok(())
}

/// The organisation as the admin API reads it.
#[derive(Debug, Clone)]
pub struct OrgRow {
    /// Display name.
    pub name: String,
    /// Tier.
    pub tier: String,
    /// Tenant policy, JSON.
    pub policy: String,
    /// Audit retention (`None`: keep everything).
    pub retention_days: Option<i64>,
}

/// The organisation row (`None` only in a database that was never set up).
pub async fn get(conn: &Connection) -> libsql::Result<Option<OrgRow>> {
    first_row(conn, "SELECT name, tier, policy, retention_days FROM org WHERE id = 1", (), |r| {
        Ok(OrgRow { name: r.get(0)?, tier: r.get(1)?, policy: r.get(2)?, retention_days: r.get(3)? })
    })
    .await
}

/// Replace the tier and the tenant policy (JSON).
pub async fn set_policy(conn: &Connection, tier: &str, policy: &str) -> libsql::Result<()> {
    conn.execute("UPDATE org SET tier = ?1, policy = ?2 WHERE id = 1", libsql::params![tier, policy]).await?;
    Ok(())
}

/// Set the audit retention (`None`: keep everything).
pub async fn set_retention(conn: &Connection, days: Option<i64>) -> libsql::Result<()> {
    conn.execute("UPDATE org SET retention_days = ?1 WHERE id = 1", [days]).await?;
    Ok(())
}

/// Whether the organisation enforces SSO, and who may still use a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforcement {
    /// Password sign-in refused.
    pub enforce: bool,
    /// Email of the owner exempted (break-glass).
    pub break_glass: Option<String>,
}

/// The SSO enforcement setting.
pub async fn enforcement(conn: &Connection) -> libsql::Result<Option<Enforcement>> {
    first_row(conn, "SELECT enforce_sso, break_glass FROM org WHERE id = 1", (), |r| {
        Ok(Enforcement { enforce: r.get::<i64>(0)? != 0, break_glass: r.get(1)? })
    })
    .await
}

/// Replace the SSO enforcement setting.
pub async fn set_enforcement(conn: &Connection, e: &Enforcement) -> libsql::Result<()> {
    conn.execute(
        "UPDATE org SET enforce_sso = ?1, break_glass = ?2 WHERE id = 1",
        libsql::params![e.enforce as i64, e.break_glass.as_deref()],
    )
    .await?;
    Ok(())
}

/// The sign-in policy (JSON, [`crate::auth_policy::AuthPolicy`]).
pub async fn auth_policy(conn: &Connection) -> libsql::Result<Option<String>> {
    first_row(conn, "SELECT auth_policy FROM org WHERE id = 1", (), |r| r.get(0)).await
}

/// Replace the sign-in policy (JSON).
pub async fn set_auth_policy(conn: &Connection, json: &str) -> libsql::Result<()> {
    conn.execute("UPDATE org SET auth_policy = ?1 WHERE id = 1", [json]).await?;
    Ok(())
}

/// When the organisation was suspended (`None`: active).
pub async fn suspended_at(conn: &Connection) -> libsql::Result<Option<i64>> {
    Ok(first_row(conn, "SELECT suspended_at FROM org WHERE id = 1", (), |r| r.get::<Option<i64>>(0)).await?.flatten())
}

/// Replace the display name.
pub async fn set_name(conn: &Connection, name: &str) -> libsql::Result<()> {
    conn.execute("UPDATE org SET name = ?1 WHERE id = 1", [name]).await?;
    Ok(())
}

/// Replace the tier.
pub async fn set_tier(conn: &Connection, tier: &str) -> libsql::Result<()> {
    conn.execute("UPDATE org SET tier = ?1 WHERE id = 1", [tier]).await?;
    Ok(())
}

/// Suspend the organisation at `at`, or resume it (`None`).
pub async fn set_suspended(conn: &Connection, at: Option<i64>) -> libsql::Result<()> {
    conn.execute("UPDATE org SET suspended_at = ?1 WHERE id = 1", [at]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_tenant;

    #[tokio::test]
    async fn the_org_row_reads_back_and_its_settings_change() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        assert!(get(&h).await.unwrap().is_none());
        let o = NewOrg { tenant_id: "t_01", slug: "acme", name: "Acme", tier: "free", policy: "{}", created_at: 1 };
        insert(&h, &o).await.unwrap();
        set_policy(&h, "pro", "{\"hosts\":[]}").await.unwrap();
        set_retention(&h, Some(30)).await.unwrap();
        let r = get(&h).await.unwrap().unwrap();
        assert_eq!((r.name.as_str(), r.tier.as_str(), r.retention_days), ("Acme", "pro", Some(30)));
        assert_eq!(enforcement(&h).await.unwrap(), Some(Enforcement { enforce: false, break_glass: None }));
        let e = Enforcement { enforce: true, break_glass: Some("a@b.co".into()) };
        set_enforcement(&h, &e).await.unwrap();
        assert_eq!(enforcement(&h).await.unwrap(), Some(e));
        assert_eq!(auth_policy(&h).await.unwrap().as_deref(), Some("{}"));
        set_auth_policy(&h, "{\"mfa_required\":true}").await.unwrap();
        assert_eq!(auth_policy(&h).await.unwrap().as_deref(), Some("{\"mfa_required\":true}"));
        assert_eq!(suspended_at(&h).await.unwrap(), None);
    }
}
