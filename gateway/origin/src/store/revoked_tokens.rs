//! Revoked access tokens (`revoked_tokens`, by `jti`, kept until they would expire).

use libsql::Connection;

/// Revoke access token `jti` (kept until `expires_at`; revoking twice is a no-op).
pub async fn insert(conn: &Connection, jti: &str, expires_at: i64) -> libsql::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2)",
        libsql::params![jti, expires_at],
    )
    .await?;
    Ok(())
}
