//! One person's rows across a tenant's tables: read for an export (Art. 15/20), deleted
//! for an erasure (Art. 17). The SQL of the per-table aggregates stays theirs; this
//! module holds the statements that go across them by person.

use std::collections::BTreeMap;

use libsql::{Connection, Row};
use serde_json::{Map, Value};

use super::audit::{row_record, Record, COLUMNS};
use super::{all_rows, exists};

/// A row as a JSON object by column name (blobs are never read here).
fn row_json(r: &Row) -> libsql::Result<Value> {
    let mut m = Map::new();
    for i in 0..r.column_count() {
        let name = r.column_name(i).unwrap_or_default().to_string();
        let v = match r.get_value(i)? {
            libsql::Value::Integer(n) => Value::from(n),
            libsql::Value::Real(x) => Value::from(x),
            libsql::Value::Text(s) => Value::from(s),
            libsql::Value::Null | libsql::Value::Blob(_) => Value::Null,
        };
        m.insert(name, v);
    }
    Ok(Value::Object(m))
}

/// The first of `all` that `sql` names (`?1` … `?N`): a statement is bound with exactly
/// the parameters it has.
fn bind(sql: &str, all: &[libsql::Value]) -> Vec<libsql::Value> {
    let n = (1..=all.len()).rev().find(|i| sql.contains(&format!("?{i}"))).unwrap_or(0);
    all[..n].to_vec()
}

/// The rows of `sql` (one person's, by `user` and `email`) as JSON objects.
async fn rows(conn: &Connection, sql: &str, user: &str, email: &str) -> libsql::Result<Vec<Value>> {
    let all = [libsql::Value::from(user.to_string()), libsql::Value::from(email.to_string())];
    all_rows(conn, sql, bind(sql, &all), row_json).await
}

/// What an export lists, table by table: (section, SQL with `?1` = user id, `?2` = email).
/// Metadata only: no password hash, factor secret or credential, token hash.
pub const EXPORT_SECTIONS: &[(&str, &str)] = &[
    (
        "profile",
        "SELECT id, email, name, email_verified_at, disabled, locked_until, failed_count, created_at,
                password_hash IS NOT NULL AS has_password
         FROM users WHERE id = ?1",
    ),
    ("membership", "SELECT role, expires_at FROM memberships WHERE user_id = ?1"),
    (
        "teams",
        "SELECT t.id, t.name, t.parent_id FROM team_members m JOIN teams t ON t.id = m.team_id
         WHERE m.user_id = ?1 ORDER BY t.name",
    ),
    (
        "sessions",
        "SELECT id, amr, idp, ip, user_agent, created_at, auth_time, last_seen_at, expires_at, revoked_at
         FROM sessions WHERE user_id = ?1 ORDER BY created_at",
    ),
    (
        "factors",
        "SELECT id, kind, name, amr, confirmed_at, created_at, last_used_at FROM mfa_factors
         WHERE user_id = ?1 ORDER BY created_at",
    ),
    (
        "recovery_codes",
        "SELECT COUNT(*) AS total, COUNT(used_at) AS used, MAX(created_at) AS created_at
         FROM recovery_codes WHERE user_id = ?1",
    ),
    (
        "api_keys",
        "SELECT id, prefix, name, roles, scopes, created_at, expires_at, revoked_at FROM api_keys
         WHERE subject = 'user:' || ?1 ORDER BY created_at",
    ),
    (
        "sso_links",
        "SELECT i.connection_id, c.name AS connection_name, c.protocol, i.subject, i.created_at
         FROM sso_identities i LEFT JOIN sso_connections c ON c.id = i.connection_id
         WHERE i.user_id = ?1 ORDER BY i.created_at",
    ),
    (
        "invitations",
        "SELECT id, email, role, team_id, inviter, created_at, expires_at, sent_at, sends, accepted_at,
                accepted_user, revoked_at
         FROM invitations WHERE email = ?2 OR accepted_user = ?1 ORDER BY created_at",
    ),
    (
        "email_verifications",
        "SELECT email, created_at, expires_at, used_at FROM email_verifications
         WHERE user_id = ?1 ORDER BY created_at",
    ),
];

/// Every section of [`EXPORT_SECTIONS`] for user `user` with address `email`.
pub async fn export_sections(
    conn: &Connection,
    user: &str,
    email: &str,
) -> libsql::Result<BTreeMap<String, Vec<Value>>> {
    let mut out = BTreeMap::new();
    for (name, sql) in EXPORT_SECTIONS {
        out.insert(name.to_string(), rows(conn, sql, user, email).await?);
    }
    Ok(out)
}

/// The client addresses of user `user`'s own sessions (not those an impersonator opened:
/// their address is the impersonator's).
pub async fn session_addresses(conn: &Connection, user: &str) -> libsql::Result<Vec<String>> {
    all_rows(
        conn,
        "SELECT DISTINCT ip FROM sessions WHERE user_id = ?1 AND ip IS NOT NULL
           AND id NOT IN (SELECT session_id FROM impersonations WHERE user_id = ?1)",
        [user],
        |r| r.get(0),
    )
    .await
}

/// Audit records about any of `subjects` (actor or target, or a part sealed under one),
/// in order, at most `limit`.
pub async fn audit_about(conn: &Connection, subjects: &[String], limit: i64) -> libsql::Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut after = 0i64;
    // One pass per page of the log; the predicate is evaluated here (a subject inside
    // `sealed` is a JSON string match).
    loop {
        let page = all_rows(
            conn,
            &format!("SELECT {COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT 1000"),
            [after],
            row_record,
        )
        .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in page {
            let about = subjects.iter().any(|s| {
                r.actor == *s
                    || r.target == *s
                    || r.sealed.as_deref().is_some_and(|x| x.contains(&format!("\"subject\":\"{s}\"")))
            });
            if about {
                out.push(r);
                if out.len() as i64 >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// Statements that erase user `?1` (address `?2`), by table. Sessions not yet expired
/// stay as revoked stubs without their address, user agent or provider (edges must keep
/// refusing their tokens until they expire); the rest of the person's rows go.
const ERASE: &[(&str, &str)] = &[
    (
        "sessions_revoked",
        "UPDATE sessions SET revoked_at = COALESCE(revoked_at, ?3), ip = NULL, user_agent = NULL, idp = NULL
         WHERE user_id = ?1 AND expires_at > ?3",
    ),
    ("sessions", "DELETE FROM sessions WHERE user_id = ?1 AND expires_at <= ?3"),
    ("refresh_tokens", "DELETE FROM refresh_tokens WHERE user_id = ?1"),
    ("impersonations", "DELETE FROM impersonations WHERE user_id = ?1"),
    ("reset_tokens", "DELETE FROM reset_tokens WHERE user_id = ?1"),
    ("mfa_challenges", "DELETE FROM mfa_challenges WHERE user_id = ?1"),
    ("recovery_codes", "DELETE FROM recovery_codes WHERE user_id = ?1"),
    ("mfa_factors", "DELETE FROM mfa_factors WHERE user_id = ?1"),
    ("email_verifications", "DELETE FROM email_verifications WHERE user_id = ?1 OR email = ?2"),
    ("invitations", "DELETE FROM invitations WHERE email = ?2 OR accepted_user = ?1"),
    ("sso_identities", "DELETE FROM sso_identities WHERE user_id = ?1"),
    ("api_keys", "DELETE FROM api_keys WHERE subject = 'user:' || ?1"),
    ("team_members", "DELETE FROM team_members WHERE user_id = ?1"),
    ("memberships", "DELETE FROM memberships WHERE user_id = ?1"),
    ("users", "DELETE FROM users WHERE id = ?1"),
];

/// Erase user `user` (address `email`) from every table in [`ERASE`]; rows per table.
pub async fn erase_rows(conn: &Connection, user: &str, email: &str, now: i64) -> libsql::Result<BTreeMap<String, u64>> {
    let all = [libsql::Value::from(user.to_string()), libsql::Value::from(email.to_string()), libsql::Value::from(now)];
    let mut out = BTreeMap::new();
    for (name, sql) in ERASE {
        let n = conn.execute(sql, bind(sql, &all)).await?;
        out.insert(name.to_string(), n);
    }
    Ok(out)
}

/// Delete the edge decision events from `addresses`; how many went.
pub async fn erase_edge_events(conn: &Connection, addresses: &[String]) -> libsql::Result<u64> {
    let mut n = 0;
    for ip in addresses {
        n += conn.execute("DELETE FROM edge_events WHERE ip = ?1", [ip.as_str()]).await?;
    }
    Ok(n)
}

/// Whether the user `user` exists.
pub async fn exists_user(conn: &Connection, user: &str) -> libsql::Result<bool> {
    exists(conn, "SELECT 1 FROM users WHERE id = ?1", [user]).await
}
