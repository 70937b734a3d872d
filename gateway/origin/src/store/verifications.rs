//! Email-verification tokens (`email_verifications`: hashed, single use, expiring) and the
//! verified mark on users (`users.email_verified_at`).

use libsql::Connection;

use super::first_row;

/// Store a verification token's `hash` for `user`'s `email`, valid until `expires_at`.
pub async fn insert(
    conn: &Connection,
    hash: &str,
    user: &str,
    email: &str,
    now: i64,
    expires_at: i64,
) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO email_verifications (hash, user_id, email, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        libsql::params![hash, user, email, now, expires_at],
    )
    .await?;
    Ok(())
}

/// A stored token as found by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The user it verifies.
    pub user_id: String,
    /// The address it was sent to.
    pub email: String,
    /// Until when it works.
    pub expires_at: i64,
    /// When it was used (or voided by a newer token / a verification).
    pub used_at: Option<i64>,
}

/// The token with `hash`, whatever its state.
pub async fn find(conn: &Connection, hash: &str) -> libsql::Result<Option<Token>> {
    first_row(
        conn,
        "SELECT user_id, email, expires_at, used_at FROM email_verifications WHERE hash = ?1",
        [hash],
        |r| Ok(Token { user_id: r.get(0)?, email: r.get(1)?, expires_at: r.get(2)?, used_at: r.get(3)? }),
    )
    .await
}

/// Mark every open token of `user` used at `now` (after a verification, and before a new
/// token is sent: only the newest link works).
pub async fn void_all(conn: &Connection, user: &str, now: i64) -> libsql::Result<()> {
    conn.execute(
        "UPDATE email_verifications SET used_at = ?2 WHERE user_id = ?1 AND used_at IS NULL",
        libsql::params![user, now],
    )
    .await?;
    Ok(())
}

/// Tokens issued to `user` since `since` (the resend limit), and the oldest one's time.
pub async fn issued_since(conn: &Connection, user: &str, since: i64) -> libsql::Result<(i64, Option<i64>)> {
    let row = first_row(
        conn,
        "SELECT COUNT(*), MIN(created_at) FROM email_verifications WHERE user_id = ?1 AND created_at > ?2",
        libsql::params![user, since],
        |r| Ok((r.get::<i64>(0)?, r.get::<Option<i64>>(1)?)),
    )
    .await?;
    Ok(row.unwrap_or((0, None)))
}

/// Mark `user`'s email verified at `now` (kept when already set).
pub async fn mark_verified(conn: &Connection, user: &str, now: i64) -> libsql::Result<()> {
    conn.execute(
        "UPDATE users SET email_verified_at = COALESCE(email_verified_at, ?2) WHERE id = ?1",
        libsql::params![user, now],
    )
    .await?;
    Ok(())
}

/// When `user`'s email was verified (`None` inside: not verified; outer `None`: no user).
pub async fn verified_at(conn: &Connection, user: &str) -> libsql::Result<Option<Option<i64>>> {
    first_row(conn, "SELECT email_verified_at FROM users WHERE id = ?1", [user], |r| r.get::<Option<i64>>(0)).await
}

/// Whether `user` signs in with a password and has no link to an identity provider (a
/// local account: the ones email verification applies to).
pub async fn is_local(conn: &Connection, user: &str) -> libsql::Result<bool> {
    Ok(first_row(
        conn,
        "SELECT 1 FROM users u WHERE u.id = ?1 AND u.password_hash IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM sso_identities s WHERE s.user_id = u.id)",
        [user],
        |_| Ok(()),
    )
    .await?
    .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{test_tenant, users};

    #[tokio::test]
    async fn tokens_are_found_voided_counted_and_verify_once() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        let u = users::NewUser { id: "u_1", email: "a@x.test", name: "", password_hash: Some("h"), created_at: 1 };
        users::insert(&h, &u).await.unwrap();
        insert(&h, "h1", "u_1", "a@x.test", 10, 100).await.unwrap();
        insert(&h, "h2", "u_1", "a@x.test", 20, 200).await.unwrap();
        assert_eq!(issued_since(&h, "u_1", 5).await.unwrap(), (2, Some(10)));
        assert_eq!(issued_since(&h, "u_1", 15).await.unwrap(), (1, Some(20)));
        assert_eq!(issued_since(&h, "u_2", 0).await.unwrap(), (0, None));
        let t = find(&h, "h1").await.unwrap().unwrap();
        assert_eq!((t.user_id.as_str(), t.expires_at, t.used_at), ("u_1", 100, None));
        void_all(&h, "u_1", 30).await.unwrap();
        assert_eq!(find(&h, "h2").await.unwrap().unwrap().used_at, Some(30));
        assert_eq!(find(&h, "nope").await.unwrap(), None);
        assert!(is_local(&h, "u_1").await.unwrap());
        assert_eq!(verified_at(&h, "u_1").await.unwrap(), Some(None));
        mark_verified(&h, "u_1", 40).await.unwrap();
        mark_verified(&h, "u_1", 50).await.unwrap();
        assert_eq!(verified_at(&h, "u_1").await.unwrap(), Some(Some(40)), "the first verification stays");
        assert_eq!(verified_at(&h, "u_9").await.unwrap(), None);
        // A user linked to an identity provider, or without a password, is not local.
        let sso = users::NewUser { id: "u_2", email: "b@x.test", name: "", password_hash: Some("h"), created_at: 1 };
        users::insert(&h, &sso).await.unwrap();
        crate::store::sso::link(&h, "c_1", "sub-1", "u_2", 1).await.unwrap();
        assert!(!is_local(&h, "u_2").await.unwrap());
        let nopw = users::NewUser { id: "u_3", email: "c@x.test", name: "", password_hash: None, created_at: 1 };
        users::insert(&h, &nopw).await.unwrap();
        assert!(!is_local(&h, "u_3").await.unwrap());
    }
}
