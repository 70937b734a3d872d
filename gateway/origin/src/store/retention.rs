//! Retention rules per data type (`retention_rules`) and the batched purges of the data
//! types other than the audit log (whose purge keeps the chain anchor:
//! [`crate::store::audit::purge`]). Every purge removes at most `limit` rows, the oldest
//! by their end, and keeps what a live legal hold covers ([`crate::store::holds`]).

use std::collections::BTreeMap;

use libsql::Connection;

use super::all_rows;
use super::directory::TenantRef;

/// A data type retention applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Audit records (purged oldest first, never past a held one; the chain keeps its anchor).
    Audit,
    /// Decision events edges sent.
    EdgeEvents,
    /// Sessions ended (revoked) or expired for longer than the period.
    Sessions,
    /// Tokens expired for longer than the period: refresh tokens, revoked-token entries,
    /// reset and email verification tokens, MFA challenges, SSO transactions, the SAML
    /// assertion replay cache.
    Tokens,
    /// Invitations accepted, revoked or expired for longer than the period.
    Invitations,
}

/// Longest retention period accepted (ten years).
pub const MAX_DAYS: i64 = 3650;

impl Kind {
    /// Every data type, in the order answers list them.
    pub const ALL: [Kind; 5] = [Kind::Audit, Kind::EdgeEvents, Kind::Sessions, Kind::Tokens, Kind::Invitations];

    /// The name in `retention_rules`, metrics (`kind`) and `retention.run` records.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Audit => "audit",
            Kind::EdgeEvents => "edge_events",
            Kind::Sessions => "sessions",
            Kind::Tokens => "tokens",
            Kind::Invitations => "invitations",
        }
    }

    /// The field in the API and the configuration (`audit_days`, …).
    pub fn field(self) -> &'static str {
        match self {
            Kind::Audit => "audit_days",
            Kind::EdgeEvents => "edge_events_days",
            Kind::Sessions => "sessions_days",
            Kind::Tokens => "tokens_days",
            Kind::Invitations => "invitations_days",
        }
    }

    fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Shortest period: a day for records that are evidence (audit, edge events); none
    /// for what is already over (removed as soon as it ended).
    pub fn min_days(self) -> i64 {
        match self {
            Kind::Audit | Kind::EdgeEvents => 1,
            Kind::Sessions | Kind::Tokens | Kind::Invitations => 0,
        }
    }

    /// Check a period for this kind; the error names the field (`prefix` + field).
    pub fn check(self, prefix: &str, days: i64) -> Result<(), String> {
        if (self.min_days()..=MAX_DAYS).contains(&days) {
            Ok(())
        } else {
            Err(format!("{prefix}{}: {}–{MAX_DAYS} days, or null to keep everything", self.field(), self.min_days()))
        }
    }
}

/// The organisation's own rules: a kind present was chosen (`None`: keep everything); a
/// kind absent follows the region default.
pub async fn rules(conn: &Connection) -> libsql::Result<BTreeMap<Kind, Option<i64>>> {
    let rows: Vec<(String, Option<i64>)> =
        all_rows(conn, "SELECT kind, days FROM retention_rules", (), |r| Ok((r.get(0)?, r.get(1)?))).await?;
    Ok(rows.into_iter().filter_map(|(k, d)| Kind::from_name(&k).map(|k| (k, d))).collect())
}

/// Set the organisation's rule for `kind` (`None`: keep everything).
pub async fn set_rule(conn: &Connection, kind: Kind, days: Option<i64>) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO retention_rules (kind, days) VALUES (?1, ?2) ON CONFLICT(kind) DO UPDATE SET days = ?2",
        libsql::params![kind.name(), days],
    )
    .await?;
    Ok(())
}

/// Drop the organisation's rule for `kind`: the region default applies again.
pub async fn clear_rule(conn: &Connection, kind: Kind) -> libsql::Result<()> {
    conn.execute("DELETE FROM retention_rules WHERE kind = ?1", [kind.name()]).await?;
    Ok(())
}

/// A live hold naming no actions whose range holds time `{at}` and whose users are empty
/// or hold `{user}` (SQL, for the `NOT EXISTS` of the purges below).
fn held_sql(at: &str, user: Option<&str>) -> String {
    let users = match user {
        Some(u) => {
            format!("(json_array_length(h.users) = 0 OR EXISTS (SELECT 1 FROM json_each(h.users) WHERE value = {u}))")
        }
        None => "json_array_length(h.users) = 0".to_string(),
    };
    format!(
        "EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND json_array_length(h.actions) = 0
           AND {at} >= h.from_at AND {at} < h.until_at AND {users})"
    )
}

/// Delete edge decision events older than `before`, at most `limit`, except those in the
/// range of a live hold on everybody and every action.
pub async fn purge_edge_events(conn: &Connection, before: i64, limit: i64) -> libsql::Result<u64> {
    let held = held_sql("e.at", None);
    conn.execute(
        &format!(
            "DELETE FROM edge_events WHERE id IN (SELECT e.id FROM edge_events e WHERE e.at < ?1 AND NOT {held}
               ORDER BY e.at LIMIT ?2)"
        ),
        libsql::params![before, limit],
    )
    .await
}

/// Delete sessions that ended (revoked) or expired before `before`, at most `limit`,
/// except those a live hold without actions keeps (created in its range, of its users).
pub async fn purge_sessions(conn: &Connection, before: i64, limit: i64) -> libsql::Result<u64> {
    let held = held_sql("s.created_at", Some("s.user_id"));
    conn.execute(
        &format!(
            "DELETE FROM sessions WHERE id IN (SELECT s.id FROM sessions s
               WHERE (s.expires_at < ?1 OR s.revoked_at < ?1) AND NOT {held}
               ORDER BY s.expires_at LIMIT ?2)"
        ),
        libsql::params![before, limit],
    )
    .await
}

/// The tables of expired tokens, with their key column.
const TOKEN_TABLES: [(&str, &str); 7] = [
    ("refresh_tokens", "hash"),
    ("revoked_tokens", "jti"),
    ("reset_tokens", "hash"),
    ("email_verifications", "hash"),
    ("mfa_challenges", "hash"),
    ("sso_transactions", "id"),
    ("saml_assertions", "id"),
];

/// Delete tokens that expired before `before`, at most `limit` in all (the tables in a
/// fixed order; what is left waits for the next run).
pub async fn purge_tokens(conn: &Connection, before: i64, limit: i64) -> libsql::Result<u64> {
    let mut removed = 0u64;
    for (table, key) in TOKEN_TABLES {
        let left = limit - removed as i64;
        if left <= 0 {
            break;
        }
        removed += conn
            .execute(
                &format!(
                    "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE expires_at < ?1
                       ORDER BY expires_at LIMIT ?2)"
                ),
                libsql::params![before, left],
            )
            .await?;
    }
    Ok(removed)
}

/// Delete invitations accepted, revoked or expired before `before`, at most `limit`
/// (pending ones stay until they expire).
pub async fn purge_invitations(conn: &Connection, before: i64, limit: i64) -> libsql::Result<u64> {
    conn.execute(
        "DELETE FROM invitations WHERE id IN (SELECT id FROM invitations
           WHERE COALESCE(accepted_at, revoked_at, expires_at) < ?1
           ORDER BY COALESCE(accepted_at, revoked_at, expires_at) LIMIT ?2)",
        libsql::params![before, limit],
    )
    .await
}

/// Up to `limit` tenants homed in `region` with an id after `after`, by id (the
/// scheduler's cursor).
pub async fn tenants_after(
    directory: &Connection,
    region: &str,
    after: &str,
    limit: i64,
) -> libsql::Result<Vec<TenantRef>> {
    all_rows(
        directory,
        "SELECT id, slug FROM tenants WHERE home_region = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        libsql::params![region, after, limit],
        |r| Ok(TenantRef { id: r.get(0)?, slug: r.get(1)? }),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_tenant;

    #[test]
    fn periods_are_checked_with_the_field_named() {
        assert!(Kind::Audit.check("", 0).unwrap_err().starts_with("audit_days: 1–3650"));
        assert!(Kind::Tokens.check("retention.defaults.", 0).is_ok());
        assert!(Kind::Sessions
            .check("retention.defaults.", 3651)
            .unwrap_err()
            .starts_with("retention.defaults.sessions_days"));
        assert_eq!(Kind::ALL.map(|k| Kind::from_name(k.name())), Kind::ALL.map(Some));
    }

    #[tokio::test]
    async fn rules_are_set_cleared_and_purges_keep_what_is_live_held_or_recent() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        set_rule(&h, Kind::Sessions, Some(3)).await.unwrap();
        set_rule(&h, Kind::Audit, None).await.unwrap();
        set_rule(&h, Kind::Sessions, Some(4)).await.unwrap();
        let r = rules(&h).await.unwrap();
        assert_eq!(
            (r.get(&Kind::Sessions), r.get(&Kind::Audit), r.get(&Kind::Tokens)),
            (Some(&Some(4)), Some(&None), None)
        );
        clear_rule(&h, Kind::Sessions).await.unwrap();
        assert!(!rules(&h).await.unwrap().contains_key(&Kind::Sessions));

        // Sessions: s1 expired at 50, s2 revoked at 60 (expiring later), s3 live, s4 of a held user.
        for (id, user, created, expires, revoked) in [
            ("s1", "u_1", 10, 50, None),
            ("s2", "u_1", 10, 900, Some(60)),
            ("s3", "u_1", 10, 900, None),
            ("s4", "u_2", 20, 50, None),
        ] {
            h.execute(
                "INSERT INTO sessions (id, user_id, amr, created_at, expires_at, revoked_at) VALUES (?1, ?2, 'pwd', ?3, ?4, ?5)",
                libsql::params![id, user, created, expires, revoked],
            )
            .await
            .unwrap();
        }
        let users = vec!["u_2".to_string()];
        let hold = crate::store::holds::NewHold {
            id: "h_1",
            reason: "r",
            from_at: 15,
            until_at: 30,
            users: &users,
            actions: &[],
            created_by: "operator",
            created_at: 1,
        };
        crate::store::holds::insert(&h, &hold).await.unwrap();
        assert_eq!(purge_sessions(&h, 100, 1).await.unwrap(), 1, "the batch bounds the work");
        assert_eq!(purge_sessions(&h, 100, 10).await.unwrap(), 1);
        let left: Vec<String> = all_rows(&h, "SELECT id FROM sessions ORDER BY id", (), |r| r.get(0)).await.unwrap();
        assert_eq!(left, ["s3", "s4"]);

        // Edge events: a hold on everybody keeps its range.
        for (id, at) in [("e1", 10), ("e2", 20), ("e3", 500)] {
            h.execute(
                "INSERT INTO edge_events (id, at, decision, reason) VALUES (?1, ?2, 'deny', 'x')",
                libsql::params![id, at],
            )
            .await
            .unwrap();
        }
        assert_eq!(purge_edge_events(&h, 100, 10).await.unwrap(), 2, "a hold on one user keeps no edge event");
        h.execute("INSERT INTO edge_events (id, at, decision, reason) VALUES ('e4', 20, 'deny', 'x')", ())
            .await
            .unwrap();
        let all = crate::store::holds::NewHold { id: "h_2", users: &[], ..hold };
        crate::store::holds::insert(&h, &all).await.unwrap();
        assert_eq!(purge_edge_events(&h, 100, 10).await.unwrap(), 0, "e4 is held, e3 is recent");

        // Tokens across tables, bounded in all.
        h.execute("INSERT INTO revoked_tokens (jti, expires_at) VALUES ('j1', 10), ('j2', 10), ('j3', 900)", ())
            .await
            .unwrap();
        h.execute("INSERT INTO saml_assertions (id, expires_at) VALUES ('a1', 10)", ()).await.unwrap();
        assert_eq!(purge_tokens(&h, 100, 2).await.unwrap(), 2);
        assert_eq!(purge_tokens(&h, 100, 10).await.unwrap(), 1);
        assert_eq!(purge_tokens(&h, 100, 10).await.unwrap(), 0);

        // Invitations: accepted, revoked and expired ones go once past the period; pending stay.
        for (id, expires, accepted, revoked) in
            [("i1", 900, Some(20), None), ("i2", 900, None, Some(30)), ("i3", 40, None, None), ("i4", 900, None, None)]
        {
            h.execute(
                "INSERT INTO invitations (id, email, role, inviter, token_hash, created_at, expires_at, sent_at, accepted_at, revoked_at)
                 VALUES (?1, 'x@y.z', 'member', 'user:u', ?1, 1, ?2, 1, ?3, ?4)",
                libsql::params![id, expires, accepted, revoked],
            )
            .await
            .unwrap();
        }
        assert_eq!(purge_invitations(&h, 35, 10).await.unwrap(), 2, "i3 expired at 40, after the cutoff");
        assert_eq!(purge_invitations(&h, 100, 10).await.unwrap(), 1);
    }
}
