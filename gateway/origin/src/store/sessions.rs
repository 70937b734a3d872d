//! Sign-in sessions (`sessions`): who, how (`amr`, the SSO connection in `idp`), until
//! when, and whether revoked.

use libsql::Connection;

use super::{all_rows, exists, first_row};

/// A session to insert.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    /// Id (`s_…`).
    pub id: &'a str,
    /// User.
    pub user_id: &'a str,
    /// Authentication methods, a JSON array.
    pub amr: &'a str,
    /// The SSO connection it came through (`None`: a password).
    pub idp: Option<&'a str>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Insert a session.
pub async fn insert(conn: &Connection, s: &NewSession<'_>) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO sessions (id, user_id, amr, idp, created_at, expires_at, auth_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?5)",
        libsql::params![s.id, s.user_id, s.amr, s.idp, s.created_at, s.expires_at],
    )
    .await?;
    Ok(())
}

/// Whether session `id` of `user` is neither revoked nor expired at `now`.
pub async fn is_live(conn: &Connection, id: &str, user: &str, now: i64) -> libsql::Result<bool> {
    exists(
        conn,
        "SELECT 1 FROM sessions WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL AND expires_at > ?3",
        libsql::params![id, user, now],
    )
    .await
}

/// Whether session `id` exists (live or not).
pub async fn exists_id(conn: &Connection, id: &str) -> libsql::Result<bool> {
    exists(conn, "SELECT id FROM sessions WHERE id = ?1", [id]).await
}

/// The authentication methods (JSON) of session `id`.
pub async fn amr(conn: &Connection, id: &str) -> libsql::Result<Option<String>> {
    first_row(conn, "SELECT amr FROM sessions WHERE id = ?1", [id], |r| r.get(0)).await
}

/// The authentication methods (JSON) and authentication time of session `id` (a session
/// from before `auth_time` was kept answers its creation time).
pub async fn authentication(conn: &Connection, id: &str) -> libsql::Result<Option<(String, i64)>> {
    first_row(conn, "SELECT amr, COALESCE(auth_time, created_at) FROM sessions WHERE id = ?1", [id], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .await
}

/// Record a fresh authentication of session `id` (step-up): its methods become `amr`
/// (JSON) and its authentication time `now`.
pub async fn reauthenticate(conn: &Connection, id: &str, amr: &str, now: i64) -> libsql::Result<()> {
    conn.execute("UPDATE sessions SET amr = ?2, auth_time = ?3 WHERE id = ?1", libsql::params![id, amr, now]).await?;
    Ok(())
}

/// End session `id` at `now`: revoked (an earlier revocation stands) and its refresh
/// tokens spent.
pub async fn end(conn: &Connection, id: &str, now: i64) -> libsql::Result<()> {
    revoke(conn, id, now).await?;
    super::refresh_tokens::spend_session(conn, id, now).await
}

/// Revoke session `id` at `now` (an earlier revocation stands; its refresh tokens stay,
/// see [`end`]).
pub async fn revoke(conn: &Connection, id: &str, now: i64) -> libsql::Result<()> {
    conn.execute("UPDATE sessions SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1", libsql::params![id, now])
        .await?;
    Ok(())
}

/// The unrevoked sessions of `user`.
pub async fn open_of_user(conn: &Connection, user: &str) -> libsql::Result<Vec<String>> {
    all_rows(conn, "SELECT id FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL", [user], |r| r.get(0)).await
}

/// The unrevoked sessions of `user` other than `keep`.
pub async fn open_of_user_except(conn: &Connection, user: &str, keep: &str) -> libsql::Result<Vec<String>> {
    all_rows(
        conn,
        "SELECT id FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL AND id != ?2",
        libsql::params![user, keep],
        |r| r.get(0),
    )
    .await
}

/// The unrevoked sessions that began with a password (no `idp`), except those of the
/// user with `email`.
pub async fn open_password_sessions_except(conn: &Connection, email: &str) -> libsql::Result<Vec<String>> {
    all_rows(
        conn,
        "SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.revoked_at IS NULL AND s.idp IS NULL AND u.email != ?1",
        [email],
        |r| r.get(0),
    )
    .await
}

/// A session as its user and the admin API see it (never a token).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionView {
    /// Id (`s_…`).
    pub id: String,
    /// User.
    pub user_id: String,
    /// Authentication methods (JSON array text).
    #[serde(skip)]
    pub amr: String,
    /// The SSO connection it came through (`None`: a password).
    pub idp: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// When it authenticated last (sign-in or step-up).
    pub auth_time: Option<i64>,
    /// Client address at sign-in.
    pub ip: Option<String>,
    /// Client `User-Agent` at sign-in.
    pub user_agent: Option<String>,
    /// When a token was last issued for it (sign-in or refresh).
    pub last_seen_at: Option<i64>,
}

/// The live sessions of `user` at `now` (neither revoked nor expired), newest first, at
/// most 200.
pub async fn live_of_user(conn: &Connection, user: &str, now: i64) -> libsql::Result<Vec<SessionView>> {
    all_rows(
        conn,
        "SELECT id, user_id, amr, idp, created_at, expires_at, auth_time, ip, user_agent, last_seen_at FROM sessions
          WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2 ORDER BY created_at DESC, id LIMIT 200",
        libsql::params![user, now],
        |r| {
            Ok(SessionView {
                id: r.get(0)?,
                user_id: r.get(1)?,
                amr: r.get(2)?,
                idp: r.get(3)?,
                created_at: r.get(4)?,
                expires_at: r.get(5)?,
                auth_time: r.get(6)?,
                ip: r.get(7)?,
                user_agent: r.get(8)?,
                last_seen_at: r.get(9)?,
            })
        },
    )
    .await
}

/// Note that a token was issued for session `id` at `now`: its last use, and (the
/// first time) the client's address and user agent.
pub async fn touch(
    conn: &Connection,
    id: &str,
    ip: Option<&str>,
    user_agent: Option<&str>,
    now: i64,
) -> libsql::Result<()> {
    conn.execute(
        "UPDATE sessions SET ip = COALESCE(ip, ?2), user_agent = COALESCE(user_agent, ?3), last_seen_at = ?4 WHERE id = ?1",
        libsql::params![id, ip, user_agent, now],
    )
    .await?;
    Ok(())
}

/// When session `id` began, and when it was last used (its beginning if never since).
pub async fn activity(conn: &Connection, id: &str) -> libsql::Result<Option<(i64, i64)>> {
    first_row(conn, "SELECT created_at, COALESCE(last_seen_at, created_at) FROM sessions WHERE id = ?1", [id], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .await
}

/// The user of session `id`.
pub async fn user_of(conn: &Connection, id: &str) -> libsql::Result<Option<String>> {
    first_row(conn, "SELECT user_id FROM sessions WHERE id = ?1", [id], |r| r.get(0)).await
}

/// How many sessions are live at `now`.
pub async fn count_live(conn: &Connection, now: i64) -> libsql::Result<i64> {
    Ok(first_row(conn, "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > ?1", [now], |r| {
        r.get(0)
    })
    .await?
    .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{test_tenant, users};

    #[tokio::test]
    async fn revocation_keeps_the_first_time_and_password_sessions_are_found() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        for (id, email) in [("u_1", "a@b.co"), ("u_2", "c@d.co")] {
            let u = users::NewUser { id, email, name: "", password_hash: None, created_at: 1 };
            users::insert(&h, &u).await.unwrap();
        }
        let s = |id, user_id, idp| NewSession { id, user_id, amr: "[\"pwd\"]", idp, created_at: 1, expires_at: 100 };
        insert(&h, &s("s_1", "u_1", None)).await.unwrap();
        insert(&h, &s("s_2", "u_1", Some("c_1"))).await.unwrap();
        insert(&h, &s("s_3", "u_2", None)).await.unwrap();
        assert!(is_live(&h, "s_1", "u_1", 50).await.unwrap());
        assert!(!is_live(&h, "s_1", "u_2", 50).await.unwrap(), "another user's session");
        assert!(!is_live(&h, "s_1", "u_1", 100).await.unwrap(), "expired");
        assert_eq!(open_password_sessions_except(&h, "c@d.co").await.unwrap(), ["s_1"]);
        assert_eq!(open_of_user_except(&h, "u_1", "s_1").await.unwrap(), ["s_2"]);
        revoke(&h, "s_1", 10).await.unwrap();
        revoke(&h, "s_1", 20).await.unwrap();
        assert!(!is_live(&h, "s_1", "u_1", 50).await.unwrap());
        assert_eq!(open_of_user(&h, "u_1").await.unwrap(), ["s_2"]);
        let at: Option<i64> =
            crate::store::one(&h, "SELECT revoked_at FROM sessions WHERE id = 's_1'", ()).await.unwrap();
        assert_eq!(at, Some(10));
    }

    #[tokio::test]
    async fn a_session_records_its_device_once_and_its_last_use_each_time() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        let u = users::NewUser { id: "u_1", email: "a@b.co", name: "", password_hash: None, created_at: 1 };
        users::insert(&h, &u).await.unwrap();
        let s = |id| NewSession { id, user_id: "u_1", amr: "[\"pwd\"]", idp: None, created_at: 10, expires_at: 100 };
        insert(&h, &s("s_1")).await.unwrap();
        insert(&h, &s("s_2")).await.unwrap();
        assert_eq!(activity(&h, "s_1").await.unwrap(), Some((10, 10)), "never used: its beginning");
        touch(&h, "s_1", Some("10.0.0.1"), Some("curl/8"), 20).await.unwrap();
        touch(&h, "s_1", Some("10.9.9.9"), Some("other"), 30).await.unwrap();
        assert_eq!(activity(&h, "s_1").await.unwrap(), Some((10, 30)));
        let live = live_of_user(&h, "u_1", 50).await.unwrap();
        let one = live.iter().find(|v| v.id == "s_1").unwrap();
        assert_eq!(
            (one.ip.as_deref(), one.user_agent.as_deref(), one.last_seen_at),
            (Some("10.0.0.1"), Some("curl/8"), Some(30))
        );
        assert_eq!(user_of(&h, "s_2").await.unwrap().as_deref(), Some("u_1"));
        assert_eq!(count_live(&h, 50).await.unwrap(), 2);
        revoke(&h, "s_2", 40).await.unwrap();
        assert_eq!(count_live(&h, 50).await.unwrap(), 1);
        assert_eq!(live_of_user(&h, "u_1", 50).await.unwrap().len(), 1, "revoked ones are not listed");
        assert!(live_of_user(&h, "u_1", 100).await.unwrap().is_empty(), "nor expired ones");
    }
}
