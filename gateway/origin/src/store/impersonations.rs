//! Impersonations (`impersonations`): a session of a user opened by someone else (the
//! operator or an org admin) with a reason, until a fixed end; how it ended; its
//! single-use hosted hand-off (hashed). The organisation's policy
//! (`impersonation_policy`), and the audit records a user sees about themselves.

use libsql::{Connection, Row};
use serde::Serialize;

use super::audit::{row_record, Record, COLUMNS};
use super::{all_rows, first_row};

/// An impersonation to insert.
#[derive(Debug, Clone)]
pub struct NewImpersonation<'a> {
    /// Id (`im_…`).
    pub id: &'a str,
    /// The session it opened.
    pub session_id: &'a str,
    /// The impersonated user.
    pub user_id: &'a str,
    /// Who acts: `operator` or `user:<id>`.
    pub actor: &'a str,
    /// Why (1–500 bytes).
    pub reason: &'a str,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds: the session ends then.
    pub ends_at: i64,
    /// SHA-256 (hex) of the hosted hand-off token.
    pub handoff_hash: &'a str,
    /// Unix seconds: the hand-off is refused from then.
    pub handoff_expires_at: i64,
}

/// An impersonation as stored and listed (never the hand-off token).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Impersonation {
    /// Id.
    pub id: String,
    /// Its session.
    pub session_id: String,
    /// The impersonated user.
    pub user_id: String,
    /// Who acts.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds.
    pub ends_at: i64,
    /// When it ended early or was noted expired (`None`: running or not yet noted).
    pub ended_at: Option<i64>,
    /// Who ended it (`operator`, `user:<id>`; `system` when its time ran out).
    pub ended_by: Option<String>,
}

impl Impersonation {
    /// Whether it is running at `now`.
    pub fn active(&self, now: i64) -> bool {
        self.ended_at.is_none() && self.ends_at > now
    }
}

const FIELDS: &str = "id, session_id, user_id, actor, reason, started_at, ends_at, ended_at, ended_by";

fn row(r: &Row) -> libsql::Result<Impersonation> {
    Ok(Impersonation {
        id: r.get(0)?,
        session_id: r.get(1)?,
        user_id: r.get(2)?,
        actor: r.get(3)?,
        reason: r.get(4)?,
        started_at: r.get(5)?,
        ends_at: r.get(6)?,
        ended_at: r.get(7)?,
        ended_by: r.get(8)?,
    })
}

/// Insert an impersonation.
pub async fn insert(conn: &Connection, i: &NewImpersonation<'_>) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO impersonations (id, session_id, user_id, actor, reason, started_at, ends_at, handoff_hash,
                                     handoff_expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        libsql::params![
            i.id,
            i.session_id,
            i.user_id,
            i.actor,
            i.reason,
            i.started_at,
            i.ends_at,
            i.handoff_hash,
            i.handoff_expires_at
        ],
    )
    .await?;
    Ok(())
}

/// Impersonation `id`.
pub async fn by_id(conn: &Connection, id: &str) -> libsql::Result<Option<Impersonation>> {
    first_row(conn, &format!("SELECT {FIELDS} FROM impersonations WHERE id = ?1"), [id], row).await
}

/// The impersonation that opened session `sid`, if it is one.
pub async fn of_session(conn: &Connection, sid: &str) -> libsql::Result<Option<Impersonation>> {
    first_row(conn, &format!("SELECT {FIELDS} FROM impersonations WHERE session_id = ?1"), [sid], row).await
}

/// One page of impersonations by id after `after` (active and past).
pub async fn page(conn: &Connection, after: &str, limit: i64) -> libsql::Result<Vec<Impersonation>> {
    all_rows(
        conn,
        &format!("SELECT {FIELDS} FROM impersonations WHERE id > ?1 ORDER BY id LIMIT ?2"),
        libsql::params![after, limit],
        row,
    )
    .await
}

/// Note impersonation `id` ended at `at` by `by`; false if it had ended already.
pub async fn end(conn: &Connection, id: &str, at: i64, by: &str) -> libsql::Result<bool> {
    let n = conn
        .execute(
            "UPDATE impersonations SET ended_at = ?2, ended_by = ?3, handoff_hash = NULL
              WHERE id = ?1 AND ended_at IS NULL",
            libsql::params![id, at, by],
        )
        .await?;
    Ok(n == 1)
}

/// Impersonations whose time ran out by `now` and that nobody noted ended yet (at most
/// `limit`).
pub async fn expired_unnoted(conn: &Connection, now: i64, limit: i64) -> libsql::Result<Vec<Impersonation>> {
    all_rows(
        conn,
        &format!(
            "SELECT {FIELDS} FROM impersonations WHERE ended_at IS NULL AND ends_at <= ?1 ORDER BY ends_at LIMIT ?2"
        ),
        libsql::params![now, limit],
        row,
    )
    .await
}

/// Impersonations not noted ended whose session was revoked some other way (by its user,
/// a deactivation, a sign-out everywhere), at most `limit`.
pub async fn revoked_unnoted(conn: &Connection, limit: i64) -> libsql::Result<Vec<Impersonation>> {
    let fields = FIELDS.split(", ").map(|f| format!("i.{f}")).collect::<Vec<_>>().join(", ");
    all_rows(
        conn,
        &format!(
            "SELECT {fields} FROM impersonations i JOIN sessions s ON s.id = i.session_id
              WHERE i.ended_at IS NULL AND s.revoked_at IS NOT NULL ORDER BY i.id LIMIT ?1"
        ),
        [limit],
        row,
    )
    .await
}

/// Spend the hand-off whose token hashes to `hash`: the running impersonation it belongs
/// to, once (a second use, an expired or ended one: `None`).
pub async fn take_handoff(conn: &Connection, hash: &str, now: i64) -> libsql::Result<Option<Impersonation>> {
    let sql = format!(
        "SELECT {FIELDS} FROM impersonations
          WHERE handoff_hash = ?1 AND handoff_expires_at > ?2 AND ended_at IS NULL AND ends_at > ?2"
    );
    let found = first_row(conn, &sql, libsql::params![hash, now], row).await?;
    if let Some(i) = &found {
        conn.execute("UPDATE impersonations SET handoff_hash = NULL WHERE id = ?1", [i.id.as_str()]).await?;
    }
    Ok(found)
}

/// The organisation's impersonation policy: (whether admins holding `users:impersonate`
/// may impersonate, their longest impersonation in minutes); `None`: never set.
pub async fn policy(conn: &Connection) -> libsql::Result<Option<(bool, i64)>> {
    first_row(conn, "SELECT allow_admins, max_minutes FROM impersonation_policy WHERE id = 1", (), |r| {
        Ok((r.get::<i64>(0)? != 0, r.get(1)?))
    })
    .await
}

/// Set the organisation's impersonation policy.
pub async fn set_policy(conn: &Connection, allow_admins: bool, max_minutes: i64, now: i64) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO impersonation_policy (id, allow_admins, max_minutes, updated_at) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT(id) DO UPDATE SET allow_admins = ?1, max_minutes = ?2, updated_at = ?3",
        libsql::params![allow_admins as i64, max_minutes, now],
    )
    .await?;
    Ok(())
}

/// One page of the audit records about `user` (as actor, as target, or as the real actor
/// of an impersonation), by sequence number after `after`.
pub async fn audit_about(conn: &Connection, user: &str, after: i64, limit: i64) -> libsql::Result<Vec<Record>> {
    let who = format!("user:{user}");
    all_rows(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM audit WHERE seq > ?1 AND (actor = ?2 OR target = ?2 OR act = ?2)
              ORDER BY seq LIMIT ?3"
        ),
        libsql::params![after, who, limit],
        row_record,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_tenant;

    fn new<'a>(id: &'a str, sid: &'a str, hash: &'a str) -> NewImpersonation<'a> {
        NewImpersonation {
            id,
            session_id: sid,
            user_id: "u_1",
            actor: "operator",
            reason: "ticket 42",
            started_at: 100,
            ends_at: 200,
            handoff_hash: hash,
            handoff_expires_at: 160,
        }
    }

    #[tokio::test]
    async fn an_impersonation_ends_once_and_its_hand_off_is_spent_once() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        insert(&h, &new("im_1", "s_1", "h1")).await.unwrap();
        insert(&h, &new("im_2", "s_2", "h2")).await.unwrap();
        assert!(insert(&h, &new("im_3", "s_1", "h3")).await.is_err(), "one impersonation per session");
        let one = of_session(&h, "s_1").await.unwrap().unwrap();
        assert_eq!((one.id.as_str(), one.active(150), one.active(200)), ("im_1", true, false));
        assert_eq!(take_handoff(&h, "h1", 170).await.unwrap(), None, "the hand-off expired");
        assert_eq!(take_handoff(&h, "h2", 150).await.unwrap().map(|i| i.id), Some("im_2".into()));
        assert_eq!(take_handoff(&h, "h2", 151).await.unwrap(), None, "single use");
        assert!(end(&h, "im_1", 120, "operator").await.unwrap());
        assert!(!end(&h, "im_1", 130, "user:u_2").await.unwrap(), "ended once");
        let ended = by_id(&h, "im_1").await.unwrap().unwrap();
        assert_eq!((ended.ended_at, ended.ended_by.as_deref()), (Some(120), Some("operator")));
        assert_eq!(expired_unnoted(&h, 199, 10).await.unwrap(), Vec::new());
        assert_eq!(expired_unnoted(&h, 200, 10).await.unwrap().into_iter().map(|i| i.id).collect::<Vec<_>>(), ["im_2"]);
        assert_eq!(page(&h, "im_1", 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_policy_is_set_and_replaced() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        assert_eq!(policy(&h).await.unwrap(), None);
        set_policy(&h, true, 15, 1).await.unwrap();
        set_policy(&h, false, 10, 2).await.unwrap();
        assert_eq!(policy(&h).await.unwrap(), Some((false, 10)));
    }
}
