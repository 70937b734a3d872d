//! Refresh tokens (`refresh_tokens`): hashed, in families that rotate; a token is used
//! once.

use libsql::Connection;

use super::first_row;

/// A refresh token to insert.
#[derive(Debug, Clone)]
pub struct NewRefresh<'a> {
    /// SHA-256 of the token (hex).
    pub hash: &'a str,
    /// Rotation family.
    pub family: &'a str,
    /// Session.
    pub session_id: &'a str,
    /// User.
    pub user_id: &'a str,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Insert a refresh token.
pub async fn insert(conn: &Connection, t: &NewRefresh<'_>) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO refresh_tokens (hash, family, session_id, user_id, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        libsql::params![t.hash, t.family, t.session_id, t.user_id, t.created_at, t.expires_at],
    )
    .await?;
    Ok(())
}

/// A stored refresh token with the state of its session.
#[derive(Debug, Clone)]
pub struct Presented {
    /// Rotation family.
    pub family: String,
    /// Session.
    pub session_id: String,
    /// User.
    pub user_id: String,
    /// The token's expiry.
    pub expires_at: i64,
    /// When it was used (or spent).
    pub used_at: Option<i64>,
    /// When its session was revoked.
    pub session_revoked_at: Option<i64>,
    /// Its session's expiry.
    pub session_expires_at: i64,
}

/// The token with `hash`, joined with its session.
pub async fn presented(conn: &Connection, hash: &str) -> libsql::Result<Option<Presented>> {
    first_row(
        conn,
        "SELECT r.family, r.session_id, r.user_id, r.expires_at, r.used_at, s.revoked_at, s.expires_at
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.hash = ?1",
        [hash],
        |r| {
            Ok(Presented {
                family: r.get(0)?,
                session_id: r.get(1)?,
                user_id: r.get(2)?,
                expires_at: r.get(3)?,
                used_at: r.get(4)?,
                session_revoked_at: r.get(5)?,
                session_expires_at: r.get(6)?,
            })
        },
    )
    .await
}

/// The session and user of the token with `hash` (used or not).
#[derive(Debug, Clone)]
pub struct Holder {
    /// Session.
    pub session_id: String,
    /// User.
    pub user_id: String,
}

/// Whose token `hash` is.
pub async fn holder(conn: &Connection, hash: &str) -> libsql::Result<Option<Holder>> {
    first_row(conn, "SELECT session_id, user_id FROM refresh_tokens WHERE hash = ?1", [hash], |r| {
        Ok(Holder { session_id: r.get(0)?, user_id: r.get(1)? })
    })
    .await
}

/// Mark the token with `hash` used at `now`.
pub async fn mark_used(conn: &Connection, hash: &str, now: i64) -> libsql::Result<()> {
    conn.execute("UPDATE refresh_tokens SET used_at = ?2 WHERE hash = ?1", libsql::params![hash, now]).await?;
    Ok(())
}

/// Spend every token of `family` (reuse detected).
pub async fn spend_family(conn: &Connection, family: &str, now: i64) -> libsql::Result<()> {
    conn.execute(
        "UPDATE refresh_tokens SET used_at = COALESCE(used_at, ?2) WHERE family = ?1",
        libsql::params![family, now],
    )
    .await?;
    Ok(())
}

/// Spend every token of session `session` (it ended).
pub async fn spend_session(conn: &Connection, session: &str, now: i64) -> libsql::Result<()> {
    conn.execute(
        "UPDATE refresh_tokens SET used_at = COALESCE(used_at, ?2) WHERE session_id = ?1",
        libsql::params![session, now],
    )
    .await?;
    Ok(())
}
