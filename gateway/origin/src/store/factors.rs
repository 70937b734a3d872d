//! Multi-factor authentication storage: factors (`mfa_factors`: TOTP secrets sealed,
//! passkey credentials), recovery codes (`recovery_codes`, hashed, single use) and
//! challenges (`mfa_challenges`: hashed short-lived tokens and WebAuthn ceremony state).

use libsql::Connection;

use super::{all_rows, first_row};

/// A stored factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factor {
    /// Id (`mf_…`).
    pub id: String,
    /// Its user.
    pub user_id: String,
    /// `totp` or `webauthn`.
    pub kind: String,
    /// The name the user gave it.
    pub name: String,
    /// TOTP: the sealed secret.
    pub secret: Option<Vec<u8>>,
    /// TOTP: the last accepted step (a code is accepted once).
    pub last_step: i64,
    /// Passkey: the credential (JSON of `webauthn_rs::prelude::Passkey`).
    pub credential: Option<String>,
    /// Passkey: its credential id (base64url).
    pub credential_id: Option<String>,
    /// Passkey: `hwk` or `swk` (RFC 8176).
    pub amr: Option<String>,
    /// When enrolment was confirmed (`None`: pending, not usable).
    pub confirmed_at: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// When it last signed someone in.
    pub last_used_at: Option<i64>,
}

const COLUMNS: &str =
    "id, user_id, kind, name, secret, last_step, credential, credential_id, amr, confirmed_at, created_at, last_used_at";

fn factor_from(r: &libsql::Row) -> libsql::Result<Factor> {
    Ok(Factor {
        id: r.get(0)?,
        user_id: r.get(1)?,
        kind: r.get(2)?,
        name: r.get(3)?,
        secret: r.get(4)?,
        last_step: r.get(5)?,
        credential: r.get(6)?,
        credential_id: r.get(7)?,
        amr: r.get(8)?,
        confirmed_at: r.get(9)?,
        created_at: r.get(10)?,
        last_used_at: r.get(11)?,
    })
}

/// Insert `f`.
pub async fn insert(conn: &Connection, f: &Factor) -> libsql::Result<()> {
    conn.execute(
        &format!("INSERT INTO mfa_factors ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
        libsql::params![
            f.id.as_str(),
            f.user_id.as_str(),
            f.kind.as_str(),
            f.name.as_str(),
            f.secret.clone(),
            f.last_step,
            f.credential.clone(),
            f.credential_id.clone(),
            f.amr.clone(),
            f.confirmed_at,
            f.created_at,
            f.last_used_at
        ],
    )
    .await?;
    Ok(())
}

/// Every factor of `user` (pending ones too), oldest first.
pub async fn of_user(conn: &Connection, user: &str) -> libsql::Result<Vec<Factor>> {
    all_rows(
        conn,
        &format!("SELECT {COLUMNS} FROM mfa_factors WHERE user_id = ?1 ORDER BY created_at, id"),
        [user],
        factor_from,
    )
    .await
}

/// Factor `id` of `user`.
pub async fn get(conn: &Connection, user: &str, id: &str) -> libsql::Result<Option<Factor>> {
    first_row(
        conn,
        &format!("SELECT {COLUMNS} FROM mfa_factors WHERE id = ?1 AND user_id = ?2"),
        libsql::params![id, user],
        factor_from,
    )
    .await
}

/// The confirmed passkey with credential id `cred_id` (any user).
pub async fn by_credential_id(conn: &Connection, cred_id: &str) -> libsql::Result<Option<Factor>> {
    first_row(
        conn,
        &format!("SELECT {COLUMNS} FROM mfa_factors WHERE credential_id = ?1 AND confirmed_at IS NOT NULL"),
        [cred_id],
        factor_from,
    )
    .await
}

/// Confirm a pending factor at `now`; whether it was pending.
pub async fn confirm(conn: &Connection, id: &str, now: i64, step: i64) -> libsql::Result<bool> {
    let n = conn
        .execute(
            "UPDATE mfa_factors SET confirmed_at = ?2, last_step = ?3, last_used_at = ?2
             WHERE id = ?1 AND confirmed_at IS NULL",
            libsql::params![id, now, step],
        )
        .await?;
    Ok(n == 1)
}

/// Record a use of TOTP factor `id` at `step`, only if it is later than the last one
/// (the guard against two requests racing with one code); whether it was.
pub async fn use_step(conn: &Connection, id: &str, step: i64, now: i64) -> libsql::Result<bool> {
    let n = conn
        .execute(
            "UPDATE mfa_factors SET last_step = ?2, last_used_at = ?3 WHERE id = ?1 AND last_step < ?2",
            libsql::params![id, step, now],
        )
        .await?;
    Ok(n == 1)
}

/// Record a use of passkey `id` (its credential updated: counter, backup state).
pub async fn use_credential(conn: &Connection, id: &str, credential: &str, now: i64) -> libsql::Result<()> {
    conn.execute(
        "UPDATE mfa_factors SET credential = ?2, last_used_at = ?3 WHERE id = ?1",
        libsql::params![id, credential, now],
    )
    .await?;
    Ok(())
}

/// Rename factor `id` of `user`; whether it exists.
pub async fn rename(conn: &Connection, user: &str, id: &str, name: &str) -> libsql::Result<bool> {
    let n = conn
        .execute("UPDATE mfa_factors SET name = ?3 WHERE id = ?1 AND user_id = ?2", libsql::params![id, user, name])
        .await?;
    Ok(n == 1)
}

/// Remove factor `id` of `user`; whether it existed.
pub async fn remove(conn: &Connection, user: &str, id: &str) -> libsql::Result<bool> {
    let n = conn.execute("DELETE FROM mfa_factors WHERE id = ?1 AND user_id = ?2", libsql::params![id, user]).await?;
    Ok(n == 1)
}

/// Remove every factor and recovery code of `user` (an admin reset); how many factors.
pub async fn reset_user(conn: &Connection, user: &str) -> libsql::Result<u64> {
    let n = conn.execute("DELETE FROM mfa_factors WHERE user_id = ?1", [user]).await?;
    conn.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user]).await?;
    conn.execute("UPDATE mfa_challenges SET used_at = 0 WHERE user_id = ?1 AND used_at IS NULL", [user]).await?;
    Ok(n)
}

/// Replace `user`'s recovery codes with `hashes` (the old set is void).
pub async fn replace_recovery(conn: &Connection, user: &str, hashes: &[String], now: i64) -> libsql::Result<()> {
    conn.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user]).await?;
    for h in hashes {
        conn.execute(
            "INSERT INTO recovery_codes (user_id, hash, created_at) VALUES (?1, ?2, ?3)",
            libsql::params![user, h.as_str(), now],
        )
        .await?;
    }
    Ok(())
}

/// Spend recovery code `hash` of `user`; whether it was unused.
pub async fn use_recovery(conn: &Connection, user: &str, hash: &str, now: i64) -> libsql::Result<bool> {
    let n = conn
        .execute(
            "UPDATE recovery_codes SET used_at = ?3 WHERE user_id = ?1 AND hash = ?2 AND used_at IS NULL",
            libsql::params![user, hash, now],
        )
        .await?;
    Ok(n == 1)
}

/// How many unused recovery codes `user` has.
pub async fn recovery_left(conn: &Connection, user: &str) -> libsql::Result<i64> {
    Ok(first_row(conn, "SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL", [user], |r| {
        r.get(0)
    })
    .await?
    .unwrap_or(0))
}

/// A challenge: what a short-lived MFA token (or ceremony handle) stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// SHA-256 of the token.
    pub hash: String,
    /// `signin`, `enroll`, `stepup`, `passkey_register` or `passkey_signin`.
    pub purpose: String,
    /// The user it is bound to (`None`: a passwordless ceremony, user unknown yet).
    pub user_id: Option<String>,
    /// What the sign-in had so far (JSON: its methods, the session to step up, …).
    pub context: String,
    /// WebAuthn ceremony state (JSON), once a ceremony started.
    pub ceremony: Option<String>,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Store a challenge (expired ones are swept on the way).
pub async fn put_challenge(conn: &Connection, c: &Challenge, now: i64) -> libsql::Result<()> {
    conn.execute("DELETE FROM mfa_challenges WHERE expires_at <= ?1", [now]).await?;
    conn.execute(
        "INSERT INTO mfa_challenges (hash, purpose, user_id, context, ceremony, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        libsql::params![c.hash.as_str(), c.purpose.as_str(), c.user_id.clone(), c.context.as_str(), c.ceremony.clone(), c.expires_at],
    )
    .await?;
    Ok(())
}

/// The live (unused, unexpired) challenge `hash` for `purpose`.
pub async fn live_challenge(
    conn: &Connection,
    hash: &str,
    purpose: &str,
    now: i64,
) -> libsql::Result<Option<Challenge>> {
    first_row(
        conn,
        "SELECT hash, purpose, user_id, context, ceremony, expires_at FROM mfa_challenges
         WHERE hash = ?1 AND purpose = ?2 AND used_at IS NULL AND expires_at > ?3",
        libsql::params![hash, purpose, now],
        |r| {
            Ok(Challenge {
                hash: r.get(0)?,
                purpose: r.get(1)?,
                user_id: r.get(2)?,
                context: r.get(3)?,
                ceremony: r.get(4)?,
                expires_at: r.get(5)?,
            })
        },
    )
    .await
}

/// Attach WebAuthn ceremony state to challenge `hash`.
pub async fn set_ceremony(conn: &Connection, hash: &str, ceremony: &str) -> libsql::Result<()> {
    conn.execute("UPDATE mfa_challenges SET ceremony = ?2 WHERE hash = ?1", libsql::params![hash, ceremony]).await?;
    Ok(())
}

/// Spend challenge `hash`; whether it was live (single use, even under a race).
pub async fn spend_challenge(conn: &Connection, hash: &str, now: i64) -> libsql::Result<bool> {
    let n = conn
        .execute(
            "UPDATE mfa_challenges SET used_at = ?2 WHERE hash = ?1 AND used_at IS NULL AND expires_at > ?2",
            libsql::params![hash, now],
        )
        .await?;
    Ok(n == 1)
}

/// The sign-in failure count and lockout end of user `id` (the counter passwords and
/// second factors share).
pub async fn lock_state(conn: &Connection, id: &str) -> libsql::Result<Option<(i64, i64)>> {
    first_row(conn, "SELECT failed_count, locked_until FROM users WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
        .await
}

/// The failure count of the user with `email`, if any.
pub async fn failed_count_by_email(conn: &Connection, email: &str) -> libsql::Result<Option<i64>> {
    first_row(conn, "SELECT failed_count FROM users WHERE email = ?1", [email], |r| r.get(0)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{test_tenant, users};

    fn totp(id: &str, user: &str) -> Factor {
        Factor {
            id: id.into(),
            user_id: user.into(),
            kind: "totp".into(),
            name: "phone".into(),
            secret: Some(vec![1, 2, 3]),
            last_step: 0,
            credential: None,
            credential_id: None,
            amr: None,
            confirmed_at: None,
            created_at: 1,
            last_used_at: None,
        }
    }

    #[tokio::test]
    async fn steps_only_move_forward_and_codes_and_challenges_are_single_use() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        let u = users::NewUser { id: "u_1", email: "a@b.co", name: "", password_hash: None, created_at: 1 };
        users::insert(&h, &u).await.unwrap();
        insert(&h, &totp("mf_1", "u_1")).await.unwrap();
        assert!(confirm(&h, "mf_1", 5, 100).await.unwrap());
        assert!(!confirm(&h, "mf_1", 6, 101).await.unwrap(), "confirmed once");
        assert!(!use_step(&h, "mf_1", 100, 7).await.unwrap(), "the confirming step is spent");
        assert!(use_step(&h, "mf_1", 101, 7).await.unwrap());
        assert!(!use_step(&h, "mf_1", 99, 8).await.unwrap(), "an older step");
        let f = get(&h, "u_1", "mf_1").await.unwrap().unwrap();
        assert_eq!((f.last_step, f.confirmed_at, f.last_used_at), (101, Some(5), Some(7)));
        assert!(get(&h, "u_2", "mf_1").await.unwrap().is_none(), "another user's factor");
        assert!(rename(&h, "u_1", "mf_1", "work phone").await.unwrap());
        assert!(!rename(&h, "u_2", "mf_1", "x").await.unwrap());

        replace_recovery(&h, "u_1", &["h1".into(), "h2".into()], 1).await.unwrap();
        assert!(use_recovery(&h, "u_1", "h1", 2).await.unwrap());
        assert!(!use_recovery(&h, "u_1", "h1", 3).await.unwrap(), "single use");
        assert_eq!(recovery_left(&h, "u_1").await.unwrap(), 1);
        replace_recovery(&h, "u_1", &["h3".into()], 4).await.unwrap();
        assert!(!use_recovery(&h, "u_1", "h2", 5).await.unwrap(), "the old set is void");

        let c = Challenge {
            hash: "c1".into(),
            purpose: "signin".into(),
            user_id: Some("u_1".into()),
            context: "{}".into(),
            ceremony: None,
            expires_at: 100,
        };
        put_challenge(&h, &c, 10).await.unwrap();
        assert!(live_challenge(&h, "c1", "enroll", 10).await.unwrap().is_none(), "another purpose");
        assert_eq!(live_challenge(&h, "c1", "signin", 10).await.unwrap().unwrap(), c);
        assert!(live_challenge(&h, "c1", "signin", 100).await.unwrap().is_none(), "expired");
        assert!(spend_challenge(&h, "c1", 11).await.unwrap());
        assert!(!spend_challenge(&h, "c1", 12).await.unwrap());
        assert!(live_challenge(&h, "c1", "signin", 13).await.unwrap().is_none());

        assert_eq!(reset_user(&h, "u_1").await.unwrap(), 1);
        assert!(of_user(&h, "u_1").await.unwrap().is_empty());
        assert_eq!(recovery_left(&h, "u_1").await.unwrap(), 0);
    }
}
