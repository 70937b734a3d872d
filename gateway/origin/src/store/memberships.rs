//! A user's role in the organisation (`memberships`, one per user, optionally expiring).

use libsql::Connection;

use super::first_row;

/// Give `user` `role` (until `expires_at`, if set).
pub async fn insert(conn: &Connection, user: &str, role: &str, expires_at: Option<i64>) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO memberships (user_id, role, expires_at) VALUES (?1, ?2, ?3)",
        libsql::params![user, role, expires_at],
    )
    .await?;
    Ok(())
}

/// Set `user`'s role, replacing the one it had.
pub async fn upsert(conn: &Connection, user: &str, role: &str, expires_at: Option<i64>) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO memberships (user_id, role, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT(user_id) DO UPDATE SET role = ?2, expires_at = ?3",
        libsql::params![user, role, expires_at],
    )
    .await?;
    Ok(())
}

/// `user`'s role if it has not expired by `now`.
pub async fn live_role(conn: &Connection, user: &str, now: i64) -> libsql::Result<Option<String>> {
    first_row(
        conn,
        "SELECT role FROM memberships WHERE user_id = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        libsql::params![user, now],
        |r| r.get(0),
    )
    .await
}

/// `user`'s role, expired or not.
pub async fn role_of(conn: &Connection, user: &str) -> libsql::Result<Option<String>> {
    first_row(conn, "SELECT role FROM memberships WHERE user_id = ?1", [user], |r| r.get(0)).await
}

/// The role of the user with `email`, expired or not.
pub async fn role_by_email(conn: &Connection, email: &str) -> libsql::Result<Option<String>> {
    first_row(
        conn,
        "SELECT m.role FROM users u JOIN memberships m ON m.user_id = u.id WHERE u.email = ?1",
        [email],
        |r| r.get(0),
    )
    .await
}
