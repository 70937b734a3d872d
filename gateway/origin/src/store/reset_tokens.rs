//! Password-reset tokens (`reset_tokens`): hashed, single use, short-lived.

use libsql::Connection;

use super::first_row;

/// Store a reset token's `hash` for `user`, valid until `expires_at`.
pub async fn insert(conn: &Connection, hash: &str, user: &str, expires_at: i64) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO reset_tokens (hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
        libsql::params![hash, user, expires_at],
    )
    .await?;
    Ok(())
}

/// The user of the token with `hash` if it is unused and not expired at `now`.
pub async fn live_user(conn: &Connection, hash: &str, now: i64) -> libsql::Result<Option<String>> {
    first_row(
        conn,
        "SELECT user_id FROM reset_tokens WHERE hash = ?1 AND used_at IS NULL AND expires_at > ?2",
        libsql::params![hash, now],
        |r| r.get(0),
    )
    .await
}

/// Mark the token with `hash` used at `now`.
pub async fn mark_used(conn: &Connection, hash: &str, now: i64) -> libsql::Result<()> {
    conn.execute("UPDATE reset_tokens SET used_at = ?2 WHERE hash = ?1", libsql::params![hash, now]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_tenant;

    #[tokio::test]
    async fn a_reset_token_works_once_and_not_after_it_expires() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        insert(&h, "h1", "u_1", 100).await.unwrap();
        assert_eq!(live_user(&h, "h1", 99).await.unwrap().as_deref(), Some("u_1"));
        assert_eq!(live_user(&h, "h1", 100).await.unwrap(), None, "expired");
        mark_used(&h, "h1", 50).await.unwrap();
        assert_eq!(live_user(&h, "h1", 60).await.unwrap(), None, "used");
    }
}
