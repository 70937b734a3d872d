//! Invitations (`invitations`): an email invited with a role (and team) by an admin; a
//! hashed single-use token that a resend replaces; pending until accepted, revoked or
//! expired.

use libsql::{Connection, Row};
use serde::Serialize;

use super::{all_rows, first_row};

/// An invitation as the API shows it (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invitation {
    /// Id (`inv_…`).
    pub id: String,
    /// Invited address, lower-case.
    pub email: String,
    /// Role granted on acceptance.
    pub role: String,
    /// Team joined on acceptance.
    pub team_id: Option<String>,
    /// Who invited (`user:…` or `operator`).
    pub inviter: String,
    /// Created at (Unix seconds).
    pub created_at: i64,
    /// The current link works until then.
    pub expires_at: i64,
    /// When the current link was sent.
    pub sent_at: i64,
    /// Links sent so far.
    pub sends: i64,
    /// When it was accepted.
    pub accepted_at: Option<i64>,
    /// The user the acceptance created.
    pub accepted_user: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// `pending`, `accepted`, `revoked` or `expired` (at read time).
    pub status: &'static str,
}

const COLUMNS: &str = "id, email, role, team_id, inviter, created_at, expires_at, sent_at, sends, accepted_at, \
                       accepted_user, revoked_at";

/// The status of a row at `now`.
const STATUS_SQL: &str = "CASE WHEN accepted_at IS NOT NULL THEN 'accepted' WHEN revoked_at IS NOT NULL THEN \
                          'revoked' WHEN expires_at <= ?9 THEN 'expired' ELSE 'pending' END";

fn from_row(r: &Row, now: i64) -> libsql::Result<Invitation> {
    let accepted_at: Option<i64> = r.get(9)?;
    let revoked_at: Option<i64> = r.get(11)?;
    let expires_at: i64 = r.get(6)?;
    let status = match (accepted_at, revoked_at) {
        (Some(_), _) => "accepted",
        (None, Some(_)) => "revoked",
        _ if expires_at <= now => "expired",
        _ => "pending",
    };
    Ok(Invitation {
        id: r.get(0)?,
        email: r.get(1)?,
        role: r.get(2)?,
        team_id: r.get(3)?,
        inviter: r.get(4)?,
        created_at: r.get(5)?,
        expires_at,
        sent_at: r.get(7)?,
        sends: r.get(8)?,
        accepted_at,
        accepted_user: r.get(10)?,
        revoked_at,
        status,
    })
}

/// An invitation to insert.
#[derive(Debug, Clone)]
pub struct NewInvitation<'a> {
    /// Id.
    pub id: &'a str,
    /// Normalised email.
    pub email: &'a str,
    /// Role.
    pub role: &'a str,
    /// Team id.
    pub team_id: Option<&'a str>,
    /// Actor who invited.
    pub inviter: &'a str,
    /// SHA-256 of the token.
    pub token_hash: &'a str,
    /// Unix seconds.
    pub now: i64,
    /// Until when the link works.
    pub expires_at: i64,
}

/// Insert an invitation.
pub async fn insert(conn: &Connection, i: &NewInvitation<'_>) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO invitations (id, email, role, team_id, inviter, token_hash, created_at, expires_at, sent_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7)",
        libsql::params![i.id, i.email, i.role, i.team_id, i.inviter, i.token_hash, i.now, i.expires_at],
    )
    .await?;
    Ok(())
}

/// The invitation `id`.
pub async fn by_id(conn: &Connection, id: &str, now: i64) -> libsql::Result<Option<Invitation>> {
    first_row(conn, &format!("SELECT {COLUMNS} FROM invitations WHERE id = ?1"), [id], |r| from_row(r, now)).await
}

/// The invitation whose current token hashes to `hash`.
pub async fn by_token(conn: &Connection, hash: &str, now: i64) -> libsql::Result<Option<Invitation>> {
    first_row(conn, &format!("SELECT {COLUMNS} FROM invitations WHERE token_hash = ?1"), [hash], |r| from_row(r, now))
        .await
}

/// The invitations of `email` that are neither accepted nor revoked (expired ones too).
pub async fn open_for_email(conn: &Connection, email: &str, now: i64) -> libsql::Result<Vec<Invitation>> {
    all_rows(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM invitations WHERE email = ?1 AND accepted_at IS NULL AND revoked_at IS NULL ORDER BY created_at DESC"
        ),
        [email],
        |r| from_row(r, now),
    )
    .await
}

/// One page of invitations by id after `after`, optionally only those with `status` at
/// `now`.
pub async fn page(
    conn: &Connection,
    after: &str,
    status: Option<&str>,
    limit: i64,
    now: i64,
) -> libsql::Result<Vec<Invitation>> {
    all_rows(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM invitations WHERE id > ?1 AND (?2 IS NULL OR {STATUS_SQL} = ?2) ORDER BY id LIMIT ?3"
        )
        .replace("?9", "?4"),
        libsql::params![after, status, limit, now],
        |r| from_row(r, now),
    )
    .await
}

/// Give invitation `id` a new token (the old one stops working) valid until `expires_at`.
pub async fn replace_token(conn: &Connection, id: &str, hash: &str, now: i64, expires_at: i64) -> libsql::Result<()> {
    conn.execute(
        "UPDATE invitations SET token_hash = ?2, sent_at = ?3, expires_at = ?4, sends = sends + 1 WHERE id = ?1",
        libsql::params![id, hash, now, expires_at],
    )
    .await?;
    Ok(())
}

/// Revoke invitation `id` at `now` if it is still open; whether it was.
pub async fn revoke(conn: &Connection, id: &str, now: i64) -> libsql::Result<bool> {
    Ok(conn
        .execute(
            "UPDATE invitations SET revoked_at = ?2 WHERE id = ?1 AND accepted_at IS NULL AND revoked_at IS NULL",
            libsql::params![id, now],
        )
        .await?
        > 0)
}

/// Mark invitation `id` accepted by `user` at `now` if it is still pending; whether it was
/// (a second acceptance finds nothing to mark).
pub async fn accept(conn: &Connection, id: &str, user: &str, now: i64) -> libsql::Result<bool> {
    Ok(conn
        .execute(
            "UPDATE invitations SET accepted_at = ?3, accepted_user = ?2
             WHERE id = ?1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?3",
            libsql::params![id, user, now],
        )
        .await?
        > 0)
}

/// The id of the team named or identified by `team`.
pub async fn team_id(conn: &Connection, team: &str) -> libsql::Result<Option<String>> {
    first_row(conn, "SELECT id FROM teams WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC LIMIT 1", [team], |r| {
        r.get(0)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_tenant;

    fn new<'a>(id: &'a str, email: &'a str, hash: &'a str) -> NewInvitation<'a> {
        NewInvitation {
            id,
            email,
            role: "viewer",
            team_id: None,
            inviter: "user:u_1",
            token_hash: hash,
            now: 10,
            expires_at: 100,
        }
    }

    #[tokio::test]
    async fn an_invitation_moves_from_pending_to_accepted_once() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        insert(&h, &new("inv_1", "a@x.test", "h1")).await.unwrap();
        insert(&h, &new("inv_2", "b@x.test", "h2")).await.unwrap();
        assert_eq!(by_token(&h, "h1", 50).await.unwrap().unwrap().status, "pending");
        assert_eq!(by_token(&h, "h1", 100).await.unwrap().unwrap().status, "expired");
        replace_token(&h, "inv_1", "h1b", 60, 200).await.unwrap();
        assert_eq!(by_token(&h, "h1", 60).await.unwrap(), None, "the old token is void");
        let i = by_token(&h, "h1b", 150).await.unwrap().unwrap();
        assert_eq!((i.status, i.sends, i.sent_at), ("pending", 2, 60));
        assert!(accept(&h, "inv_1", "u_9", 160).await.unwrap());
        assert!(!accept(&h, "inv_1", "u_9", 161).await.unwrap(), "accepted once");
        assert!(!revoke(&h, "inv_1", 162).await.unwrap(), "an accepted invitation is not revoked");
        let i = by_id(&h, "inv_1", 170).await.unwrap().unwrap();
        assert_eq!((i.status, i.accepted_user.as_deref()), ("accepted", Some("u_9")));
        assert!(revoke(&h, "inv_2", 50).await.unwrap());
        assert!(!accept(&h, "inv_2", "u_8", 51).await.unwrap(), "a revoked invitation is not accepted");
        assert_eq!(open_for_email(&h, "b@x.test", 50).await.unwrap(), vec![]);
        let all = page(&h, "", None, 10, 50).await.unwrap();
        assert_eq!(all.len(), 2);
        let revoked = page(&h, "", Some("revoked"), 10, 50).await.unwrap();
        assert_eq!(revoked.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["inv_2"]);
        assert_eq!(page(&h, "inv_1", None, 10, 50).await.unwrap().len(), 1, "after the cursor");
        insert(&h, &new("inv_3", "c@x.test", "h3")).await.unwrap();
        assert_eq!(page(&h, "", Some("expired"), 10, 500).await.unwrap().len(), 1);
        assert!(!accept(&h, "inv_3", "u_7", 100).await.unwrap(), "an expired invitation is not accepted");
    }
}
