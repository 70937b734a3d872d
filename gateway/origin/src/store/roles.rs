//! The organisation's custom roles (`roles`: a name and its permissions as JSON).

use libsql::Connection;

use super::{all_rows, exists, first_row};

/// A custom role.
#[derive(Debug, Clone)]
pub struct RoleRow {
    /// Name.
    pub name: String,
    /// Permissions, a JSON array of `resource:action`.
    pub permissions: String,
}

/// The permissions (JSON) of custom role `name`.
pub async fn permissions(conn: &Connection, name: &str) -> libsql::Result<Option<String>> {
    first_row(conn, "SELECT permissions FROM roles WHERE name = ?1", [name], |r| r.get(0)).await
}

/// Whether custom role `name` exists.
pub async fn exists_named(conn: &Connection, name: &str) -> libsql::Result<bool> {
    exists(conn, "SELECT name FROM roles WHERE name = ?1", [name]).await
}

/// One page of custom roles by name after `after`.
pub async fn page(conn: &Connection, after: &str, limit: i64) -> libsql::Result<Vec<RoleRow>> {
    all_rows(
        conn,
        "SELECT name, permissions FROM roles WHERE name > ?1 ORDER BY name LIMIT ?2",
        libsql::params![after, limit],
        |r| Ok(RoleRow { name: r.get(0)?, permissions: r.get(1)? }),
    )
    .await
}

/// Create or replace custom role `name`.
pub async fn upsert(conn: &Connection, name: &str, permissions: &str) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO roles (name, permissions) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET permissions = ?2",
        libsql::params![name, permissions],
    )
    .await?;
    Ok(())
}

/// How many custom roles the organisation has.
pub async fn count(conn: &Connection) -> libsql::Result<i64> {
    let mut rows = conn.query("SELECT COUNT(*) FROM roles", ()).await?;
    match rows.next().await? {
        Some(r) => r.get(0),
        None => Ok(0),
    }
}
