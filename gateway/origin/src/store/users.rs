//! Users of a tenant (`users`): the account, its password state, and the view the API
//! shows (with the membership joined in).

use libsql::{Connection, Row};
use serde::Serialize;

use super::{all_rows, exists, first_row};

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Id (`u_…`).
    pub id: String,
    /// Email, lower-case.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role in the organisation (`None`: no membership, or expired).
    pub role: Option<String>,
    /// When the role ends (Unix seconds).
    pub role_expires_at: Option<i64>,
    /// Disabled users cannot sign in.
    pub disabled: bool,
    /// Until when the account is locked (Unix seconds; 0 = not locked).
    pub locked_until: i64,
    /// Created at (Unix seconds).
    pub created_at: i64,
}

/// Columns read by [`user_from_row`].
const USER_COLUMNS: &str = "u.id, u.email, u.name, m.role, m.expires_at, u.disabled, u.locked_until, u.created_at";
/// FROM clause for [`user_from_row`].
const USER_FROM: &str = "users u LEFT JOIN memberships m ON m.user_id = u.id";

/// Read a user from a row of `SELECT USER_COLUMNS FROM USER_FROM` (a role that expired
/// by `now` is none).
fn user_from_row(r: &Row, now: i64) -> libsql::Result<User> {
    let expires: Option<i64> = r.get(4)?;
    let role: Option<String> = r.get(3)?;
    let role = match expires {
        Some(t) if t <= now => None,
        _ => role,
    };
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        name: r.get(2)?,
        role,
        role_expires_at: expires,
        disabled: r.get::<i64>(5)? != 0,
        locked_until: r.get(6)?,
        created_at: r.get(7)?,
    })
}

/// One user by id.
pub async fn by_id(conn: &Connection, id: &str, now: i64) -> libsql::Result<Option<User>> {
    first_row(conn, &format!("SELECT {USER_COLUMNS} FROM {USER_FROM} WHERE u.id = ?1"), [id], |r| user_from_row(r, now))
        .await
}

/// One page of users by id after `after`, optionally only the one with `email`.
pub async fn page(
    conn: &Connection,
    after: &str,
    email: Option<&str>,
    limit: i64,
    now: i64,
) -> libsql::Result<Vec<User>> {
    all_rows(
        conn,
        &format!(
            "SELECT {USER_COLUMNS} FROM {USER_FROM} WHERE u.id > ?1 AND (?2 IS NULL OR u.email = ?2) ORDER BY u.id LIMIT ?3"
        ),
        libsql::params![after, email, limit],
        |r| user_from_row(r, now),
    )
    .await
}

/// A user to insert.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    /// Id (`u_…`).
    pub id: &'a str,
    /// Normalised email.
    pub email: &'a str,
    /// Display name (may be empty).
    pub name: &'a str,
    /// Argon2id PHC string; `None`: no password (SSO only, or not yet set).
    pub password_hash: Option<&'a str>,
    /// Unix seconds.
    pub created_at: i64,
}

/// Insert a user.
pub async fn insert(conn: &Connection, u: &NewUser<'_>) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO users (id, email, name, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        libsql::params![u.id, u.email, u.name, u.password_hash, u.created_at],
    )
    .await?;
    Ok(())
}

/// The id of the user with `email`.
pub async fn id_by_email(conn: &Connection, email: &str) -> libsql::Result<Option<String>> {
    first_row(conn, "SELECT id FROM users WHERE email = ?1", [email], |r| r.get(0)).await
}

/// The id of the user with `email`, if not disabled.
pub async fn enabled_id_by_email(conn: &Connection, email: &str) -> libsql::Result<Option<String>> {
    first_row(conn, "SELECT id FROM users WHERE email = ?1 AND disabled = 0", [email], |r| r.get(0)).await
}

/// Whether user `id` exists.
pub async fn exists_id(conn: &Connection, id: &str) -> libsql::Result<bool> {
    exists(conn, "SELECT id FROM users WHERE id = ?1", [id]).await
}

/// The email of user `id`.
pub async fn email_of(conn: &Connection, id: &str) -> libsql::Result<Option<String>> {
    first_row(conn, "SELECT email FROM users WHERE id = ?1", [id], |r| r.get(0)).await
}

/// Whether user `id` is disabled (`None`: no such user).
pub async fn disabled(conn: &Connection, id: &str) -> libsql::Result<Option<bool>> {
    first_row(conn, "SELECT disabled FROM users WHERE id = ?1", [id], |r| Ok(r.get::<i64>(0)? != 0)).await
}

/// Ids of every disabled user, in order: what edges refuse (`user_disabled`); ids only,
/// never emails or names.
pub async fn disabled_ids(conn: &Connection) -> libsql::Result<Vec<String>> {
    all_rows(conn, "SELECT id FROM users WHERE disabled != 0 ORDER BY id", (), |r| r.get(0)).await
}

/// Delete user `id` (memberships, team memberships and SSO links cascade).
pub async fn delete(conn: &Connection, id: &str) -> libsql::Result<()> {
    conn.execute("DELETE FROM users WHERE id = ?1", [id]).await?;
    Ok(())
}

/// Replace user `id`'s password hash.
pub async fn set_password(conn: &Connection, id: &str, hash: &str) -> libsql::Result<()> {
    conn.execute("UPDATE users SET password_hash = ?2 WHERE id = ?1", libsql::params![id, hash]).await?;
    Ok(())
}

/// Replace user `id`'s password hash after a reset: failures and lockout are cleared too.
pub async fn reset_password(conn: &Connection, id: &str, hash: &str) -> libsql::Result<()> {
    conn.execute(
        "UPDATE users SET password_hash = ?2, failed_count = 0, locked_until = 0 WHERE id = ?1",
        libsql::params![id, hash],
    )
    .await?;
    Ok(())
}

/// What a password sign-in needs to know about an account.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// User id.
    pub id: String,
    /// Argon2id PHC string, if the user has a password.
    pub password_hash: Option<String>,
    /// Consecutive failures so far.
    pub failed_count: i64,
    /// Locked until (Unix seconds; 0 = not locked).
    pub locked_until: i64,
    /// Disabled accounts never sign in.
    pub disabled: bool,
}

/// The credentials of the user with `email`.
pub async fn credentials_by_email(conn: &Connection, email: &str) -> libsql::Result<Option<Credentials>> {
    first_row(
        conn,
        "SELECT id, password_hash, failed_count, locked_until, disabled FROM users WHERE email = ?1",
        [email],
        |r| {
            Ok(Credentials {
                id: r.get(0)?,
                password_hash: r.get(1)?,
                failed_count: r.get(2)?,
                locked_until: r.get(3)?,
                disabled: r.get::<i64>(4)? != 0,
            })
        },
    )
    .await
}

/// A successful sign-in: failures and lockout cleared.
pub async fn clear_failures(conn: &Connection, id: &str) -> libsql::Result<()> {
    conn.execute("UPDATE users SET failed_count = 0, locked_until = 0 WHERE id = ?1", [id]).await?;
    Ok(())
}

/// Lock user `id` until `until` (the failure count starts again).
pub async fn lock_out(conn: &Connection, id: &str, until: i64) -> libsql::Result<()> {
    conn.execute("UPDATE users SET failed_count = 0, locked_until = ?2 WHERE id = ?1", libsql::params![id, until])
        .await?;
    Ok(())
}

/// Record `failed` consecutive failures of user `id`.
pub async fn set_failed_count(conn: &Connection, id: &str, failed: i64) -> libsql::Result<()> {
    conn.execute("UPDATE users SET failed_count = ?2 WHERE id = ?1", libsql::params![id, failed]).await?;
    Ok(())
}

/// Whether user `id`'s email address is verified (`false` for no such user).
pub async fn email_verified(conn: &Connection, id: &str) -> libsql::Result<bool> {
    Ok(first_row(conn, "SELECT email_verified_at IS NOT NULL FROM users WHERE id = ?1", [id], |r| r.get::<i64>(0))
        .await?
        .is_some_and(|v| v != 0))
}

/// Disable (`true`) or enable user `id`; whether there was such a user.
pub async fn set_disabled(conn: &Connection, id: &str, disabled: bool) -> libsql::Result<bool> {
    Ok(conn.execute("UPDATE users SET disabled = ?2 WHERE id = ?1", libsql::params![id, disabled as i64]).await? > 0)
}

/// Replace user `id`'s display name.
pub async fn set_name(conn: &Connection, id: &str, name: &str) -> libsql::Result<()> {
    conn.execute("UPDATE users SET name = ?2 WHERE id = ?1", libsql::params![id, name]).await?;
    Ok(())
}

/// Whether user `id` has a password.
pub async fn has_password(conn: &Connection, id: &str) -> libsql::Result<bool> {
    exists(conn, "SELECT 1 FROM users WHERE id = ?1 AND password_hash IS NOT NULL", [id]).await
}

/// How many users there are, and how many of them are disabled.
pub async fn counts(conn: &Connection) -> libsql::Result<(i64, i64)> {
    Ok(first_row(conn, "SELECT COUNT(*), COALESCE(SUM(disabled != 0), 0) FROM users", (), |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .await?
    .unwrap_or((0, 0)))
}

/// How many enabled users hold the owner role at `now` (membership expiry honoured).
pub async fn enabled_owners(conn: &Connection, now: i64) -> libsql::Result<i64> {
    Ok(first_row(
        conn,
        "SELECT COUNT(*) FROM users u JOIN memberships m ON m.user_id = u.id
          WHERE m.role = 'owner' AND u.disabled = 0 AND (m.expires_at IS NULL OR m.expires_at > ?1)",
        [now],
        |r| r.get(0),
    )
    .await?
    .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{memberships, test_tenant};

    #[tokio::test]
    async fn a_user_reads_back_with_its_role_until_the_role_expires() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        let u = NewUser { id: "u_1", email: "ada@example.com", name: "Ada", password_hash: None, created_at: 5 };
        insert(&h, &u).await.unwrap();
        memberships::insert(&h, "u_1", "admin", Some(100)).await.unwrap();
        let got = by_id(&h, "u_1", 50).await.unwrap().unwrap();
        assert_eq!(
            (got.email.as_str(), got.role.as_deref(), got.role_expires_at),
            ("ada@example.com", Some("admin"), Some(100))
        );
        assert_eq!(by_id(&h, "u_1", 100).await.unwrap().unwrap().role, None, "expired role is none");
        assert_eq!(id_by_email(&h, "ada@example.com").await.unwrap().as_deref(), Some("u_1"));
        assert_eq!(disabled(&h, "u_1").await.unwrap(), Some(false));
        assert_eq!(disabled(&h, "u_2").await.unwrap(), None);
        let listed = page(&h, "", Some("ada@example.com"), 10, 50).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(page(&h, "u_1", None, 10, 50).await.unwrap().is_empty(), "the cursor is exclusive");
        lock_out(&h, "u_1", 900).await.unwrap();
        let c = credentials_by_email(&h, "ada@example.com").await.unwrap().unwrap();
        assert_eq!((c.failed_count, c.locked_until, c.password_hash), (0, 900, None));
        reset_password(&h, "u_1", "$argon2id$x").await.unwrap();
        let c = credentials_by_email(&h, "ada@example.com").await.unwrap().unwrap();
        assert_eq!((c.locked_until, c.password_hash.as_deref()), (0, Some("$argon2id$x")));
        delete(&h, "u_1").await.unwrap();
        assert!(!exists_id(&h, "u_1").await.unwrap());
        assert_eq!(memberships::role_of(&h, "u_1").await.unwrap(), None, "membership cascades");
    }

    #[tokio::test]
    async fn deactivation_counts_seats_and_the_last_owner() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        for (id, email, role) in [("u_1", "a@b.co", "owner"), ("u_2", "c@d.co", "owner"), ("u_3", "e@f.co", "viewer")] {
            let u = NewUser { id, email, name: "", password_hash: None, created_at: 1 };
            insert(&h, &u).await.unwrap();
            memberships::insert(&h, id, role, None).await.unwrap();
        }
        assert_eq!((counts(&h).await.unwrap(), enabled_owners(&h, 5).await.unwrap()), ((3, 0), 2));
        assert!(set_disabled(&h, "u_2", true).await.unwrap());
        assert!(!set_disabled(&h, "u_9", true).await.unwrap(), "no such user");
        assert_eq!((counts(&h).await.unwrap(), enabled_owners(&h, 5).await.unwrap()), ((3, 1), 1));
        memberships::upsert(&h, "u_1", "owner", Some(4)).await.unwrap();
        assert_eq!(enabled_owners(&h, 5).await.unwrap(), 0, "an expired ownership does not count");
        set_name(&h, "u_3", "Eve").await.unwrap();
        assert_eq!(by_id(&h, "u_3", 5).await.unwrap().unwrap().name, "Eve");
        assert!(!has_password(&h, "u_3").await.unwrap());
        set_password(&h, "u_3", "$argon2id$x").await.unwrap();
        assert!(has_password(&h, "u_3").await.unwrap());
    }
}
