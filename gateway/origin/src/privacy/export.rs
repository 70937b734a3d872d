//! The export of everything a tenant holds about one person (GDPR Art. 15 and 20): one
//! JSON document, schema `gatehouse.subject-export/1`.
//!
//! Fields (every timestamp is Unix seconds; absent data is `null` or `[]`):
//!
//! - `schema`: `"gatehouse.subject-export/1"`; `generated_at`; `tenant`: `{id, slug,
//!   region}` (the home region that served it).
//! - `subject`: `{user: "user:<id>", email_subject: "email:<pseudonym>"}`: how audit
//!   records name the person.
//! - `profile`: `{id, email, name, email_verified_at, disabled (0/1), locked_until,
//!   failed_count, created_at, has_password (0/1)}` (never the password hash).
//! - `membership`: `{role, expires_at}` or `null`.
//! - `teams`: `[{id, name, parent_id}]`.
//! - `sessions`: `[{id, device, amr (JSON text), idp, ip, user_agent, created_at,
//!   auth_time, last_seen_at, expires_at, revoked_at}]`.
//! - `factors`: `[{id, kind, name, amr, confirmed_at, created_at, last_used_at}]` —
//!   metadata only, never a secret or credential; `recovery_codes`: `{total, used,
//!   created_at}`.
//! - `api_keys`: `[{id, prefix, name, roles, scopes, created_at, expires_at, revoked_at}]`
//!   — keys whose subject is the person (never the secret or its hash).
//! - `sso_links`: `[{connection_id, connection_name, protocol, subject, created_at}]`.
//! - `consents`: what the person agreed to that the tenant keeps: `invitations` (to their
//!   address or accepted by them: `{id, email, role, team_id, inviter, created_at,
//!   expires_at, sent_at, sends, accepted_at, accepted_user, revoked_at}`) and
//!   `email_verifications` (`{email, created_at, expires_at, used_at}`). The tenant keeps
//!   no other consent records.
//! - `audit`: `{records: [...], complete}` — every audit record whose actor or target is
//!   the person, or with data sealed under their key, opened (the fields of the audit
//!   query: seq, at, actor, action, target, before, after, ip, user_agent, request_id,
//!   act, prev_hash, hash); `complete` is false when more than [`MAX_AUDIT`] matched.

use anyhow::Result;
use libsql::Connection;
use serde_json::{json, Value};

use super::erase::subjects_of;
use super::seal::Sealer;
use crate::store::{person, users};

/// The schema name of an export.
pub const SCHEMA: &str = "gatehouse.subject-export/1";

/// Most audit records in one export.
pub const MAX_AUDIT: i64 = 50_000;

/// The tenant an export is made in.
pub struct Tenant<'a> {
    /// Id.
    pub id: &'a str,
    /// Slug.
    pub slug: &'a str,
    /// Home region.
    pub region: &'a str,
}

/// The export of user `user`, or `None` if there is no such user.
pub async fn export(conn: &Connection, sealer: &Sealer, t: &Tenant<'_>, user: &str) -> Result<Option<Value>> {
    let Some(u) = users::by_id(conn, user, crate::now()).await? else { return Ok(None) };
    let email = u.email;
    let mut sections = person::export_sections(conn, user, &email).await?;
    let mut take = |name: &str| Value::Array(sections.remove(name).unwrap_or_default());
    let first = |v: Value| v.as_array().and_then(|a| a.first().cloned()).unwrap_or(Value::Null);
    let subjects = subjects_of(sealer, user, &email);
    let records = person::audit_about(conn, &subjects, MAX_AUDIT + 1).await?;
    let complete = records.len() as i64 <= MAX_AUDIT;
    let records = super::open_in(conn, sealer, &records[..records.len().min(MAX_AUDIT as usize)]).await?;
    Ok(Some(json!({
        "schema": SCHEMA,
        "generated_at": crate::now(),
        "tenant": { "id": t.id, "slug": t.slug, "region": t.region },
        "subject": { "user": subjects[0], "email_subject": subjects[1] },
        "profile": first(take("profile")),
        "membership": first(take("membership")),
        "teams": take("teams"),
        "sessions": take("sessions"),
        "factors": take("factors"),
        "recovery_codes": first(take("recovery_codes")),
        "api_keys": take("api_keys"),
        "sso_links": take("sso_links"),
        "consents": { "invitations": take("invitations"), "email_verifications": take("email_verifications") },
        "audit": { "records": records, "complete": complete },
    })))
}
