//! API keys (`api_keys`): the stored hash and prefix of each key, what it carries, and
//! when it ends. The key itself is never stored.

use libsql::Connection;

use super::{all_rows, first_row};

/// A key as listed (no hash).
#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    /// Id (`ak_…`).
    pub id: String,
    /// Public prefix of the key.
    pub prefix: String,
    /// Name.
    pub name: String,
    /// Subject the key acts as (`apikey:<id>`).
    pub subject: String,
    /// Roles, a JSON array.
    pub roles: String,
    /// Scopes, a JSON array.
    pub scopes: String,
    /// Unix seconds.
    pub created_at: i64,
    /// When it stops working.
    pub expires_at: Option<i64>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
}

/// One page of keys by id after `after`.
pub async fn page(conn: &Connection, after: &str, limit: i64) -> libsql::Result<Vec<ApiKeyRow>> {
    all_rows(
        conn,
        "SELECT id, prefix, name, subject, roles, scopes, created_at, expires_at, revoked_at FROM api_keys
               WHERE id > ?1 ORDER BY id LIMIT ?2",
        libsql::params![after, limit],
        |r| {
            Ok(ApiKeyRow {
                id: r.get(0)?,
                prefix: r.get(1)?,
                name: r.get(2)?,
                subject: r.get(3)?,
                roles: r.get(4)?,
                scopes: r.get(5)?,
                created_at: r.get(6)?,
                expires_at: r.get(7)?,
                revoked_at: r.get(8)?,
            })
        },
    )
    .await
}

/// A key to insert.
#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    /// Id (`ak_…`).
    pub id: &'a str,
    /// Public prefix.
    pub prefix: &'a str,
    /// Keyed hash of the whole key (hex).
    pub hash: &'a str,
    /// Name.
    pub name: &'a str,
    /// Subject the key acts as.
    pub subject: &'a str,
    /// Roles, a JSON array.
    pub roles: &'a str,
    /// Scopes, a JSON array.
    pub scopes: &'a str,
    /// Unix seconds.
    pub created_at: i64,
    /// When it stops working.
    pub expires_at: Option<i64>,
}

/// Insert a key.
pub async fn insert(conn: &Connection, k: &NewApiKey<'_>) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO api_keys (id, prefix, hash, name, subject, roles, scopes, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        libsql::params![k.id, k.prefix, k.hash, k.name, k.subject, k.roles, k.scopes, k.created_at, k.expires_at],
    )
    .await?;
    Ok(())
}

/// The prefix of key `id` if it is not revoked.
pub async fn active_prefix(conn: &Connection, id: &str) -> libsql::Result<Option<String>> {
    first_row(conn, "SELECT prefix FROM api_keys WHERE id = ?1 AND revoked_at IS NULL", [id], |r| r.get(0)).await
}

/// Give key `id` a new secret (rotation).
pub async fn set_secret(conn: &Connection, id: &str, prefix: &str, hash: &str) -> libsql::Result<()> {
    conn.execute("UPDATE api_keys SET prefix = ?2, hash = ?3 WHERE id = ?1", libsql::params![id, prefix, hash]).await?;
    Ok(())
}

/// Revoke key `id` at `now`; how many keys that revoked (0: none active by that id).
pub async fn revoke(conn: &Connection, id: &str, now: i64) -> libsql::Result<u64> {
    conn.execute("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL", libsql::params![id, now])
        .await
}

/// How many keys are active at `now` (neither revoked nor expired).
pub async fn count_active(conn: &Connection, now: i64) -> libsql::Result<i64> {
    let mut rows = conn
        .query(
            "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1)",
            [now],
        )
        .await?;
    match rows.next().await? {
        Some(r) => r.get(0),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_tenant;

    #[tokio::test]
    async fn a_key_rotates_and_revokes_once() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        let k = NewApiKey {
            id: "ak_1",
            prefix: "gh_a",
            hash: "h1",
            name: "ci",
            subject: "apikey:ak_1",
            roles: "[]",
            scopes: "[\"a:read\"]",
            created_at: 1,
            expires_at: None,
        };
        insert(&h, &k).await.unwrap();
        set_secret(&h, "ak_1", "gh_b", "h2").await.unwrap();
        assert_eq!(active_prefix(&h, "ak_1").await.unwrap().as_deref(), Some("gh_b"));
        assert_eq!(revoke(&h, "ak_1", 9).await.unwrap(), 1);
        assert_eq!(revoke(&h, "ak_1", 10).await.unwrap(), 0, "a revoked key is not revoked again");
        assert_eq!(active_prefix(&h, "ak_1").await.unwrap(), None);
        let listed = page(&h, "", 10).await.unwrap();
        assert_eq!((listed[0].revoked_at, listed[0].scopes.as_str()), (Some(9), "[\"a:read\"]"));
    }
}
