//! Versioned schemas of the directory and tenant databases, and the runner that applies
//! them (`schema_version`) when a database is opened.

use anyhow::{bail, Result};
use libsql::Connection;

/// Versioned schema of the directory database.
pub(crate) const DIRECTORY: &[&str] = &[
    // 1
    "CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        home_region TEXT NOT NULL,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        private_pem TEXT NOT NULL,
        public_jwk TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        retired_at INTEGER
     );
     CREATE TABLE audit_heads (
        tenant_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
     );
     CREATE TABLE edge_batches (
        id TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL
     );",
    // 2: region settings (the policy template set through the API)
    "CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
     );",
    // 3: tenant lifecycle (issue 14). Deleted tenants leave `tenants` for a tombstone
    // (their slug stays taken; replication never brings them back), the operator's
    // hash-chained audit log of region-level actions, and single-use confirmations of
    // a deletion (hashed).
    "CREATE TABLE tenant_tombstones (
        id TEXT PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        home_region TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        deleted_at INTEGER NOT NULL
     );
     CREATE TABLE operator_audit (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        before TEXT,
        after TEXT,
        ip TEXT,
        user_agent TEXT,
        request_id TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
     );
     CREATE TABLE org_deletions (
        hash TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER
     );",
    // 4: the audit record's second shape (issue 15), as in the tenant databases: the
    // impersonator of an action and sealed personal data.
    "ALTER TABLE operator_audit ADD COLUMN act TEXT;
     ALTER TABLE operator_audit ADD COLUMN sealed TEXT;",
    // 5: audit streaming (issue 15, part F): each sink's delivery cursor per tenant (the
    // last sequence number the receiver accepted) and the records it gave up on (dead
    // letters: the record id only, no record content).
    "CREATE TABLE sink_cursors (
        sink TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (sink, tenant_id)
     );
     CREATE TABLE sink_dead_letters (
        sink TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        error TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (sink, tenant_id, seq)
     );",
    // 6: organisation hierarchy and role templates (issue 15, part E). A tenant's parent
    // (same region only: the link never crosses regions, so it is not replicated), and
    // the region's role templates that organisations instantiate.
    "ALTER TABLE tenants ADD COLUMN parent_id TEXT;
     CREATE INDEX tenants_parent ON tenants(parent_id);
     CREATE TABLE role_templates (
        name TEXT PRIMARY KEY,
        permissions TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        updated_at INTEGER NOT NULL
     );",
    // 7: per-tenant bundle fragments (issue 17): a tenant's generation, bumped by every
    // change to what its fragment holds.
    "ALTER TABLE tenants ADD COLUMN policy_gen INTEGER NOT NULL DEFAULT 0;",
];

/// Versioned schema of a tenant database.
pub(crate) const TENANT: &[&str] = &[
    // 1
    "CREATE TABLE org (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        tenant_id TEXT NOT NULL,
        slug TEXT NOT NULL,
        name TEXT NOT NULL,
        tier TEXT NOT NULL,
        policy TEXT NOT NULL DEFAULT '{}',
        retention_days INTEGER,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL DEFAULT '',
        password_hash TEXT,
        failed_count INTEGER NOT NULL DEFAULT 0,
        locked_until INTEGER NOT NULL DEFAULT 0,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE roles (
        name TEXT PRIMARY KEY,
        permissions TEXT NOT NULL
     );
     CREATE TABLE memberships (
        user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        expires_at INTEGER
     );
     CREATE TABLE teams (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        parent_id TEXT REFERENCES teams(id)
     );
     CREATE TABLE team_members (
        team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        PRIMARY KEY (team_id, user_id)
     );
     CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        amr TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked_at INTEGER
     );
     CREATE TABLE refresh_tokens (
        hash TEXT PRIMARY KEY,
        family TEXT NOT NULL,
        session_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER
     );
     CREATE INDEX refresh_family ON refresh_tokens(family);
     CREATE TABLE revoked_tokens (
        jti TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
     );
     CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        prefix TEXT NOT NULL UNIQUE,
        hash TEXT NOT NULL,
        name TEXT NOT NULL,
        subject TEXT NOT NULL,
        roles TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER
     );
     CREATE TABLE reset_tokens (
        hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER
     );
     CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        before TEXT,
        after TEXT,
        ip TEXT,
        user_agent TEXT,
        request_id TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
     );
     CREATE TABLE audit_anchor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
     );
     CREATE TABLE legal_holds (
        id TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        from_at INTEGER NOT NULL,
        until_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE edge_events (
        id TEXT PRIMARY KEY,
        at INTEGER NOT NULL,
        decision TEXT NOT NULL,
        reason TEXT NOT NULL,
        route TEXT,
        ip TEXT,
        request_id TEXT
     );",
    // 2: single sign-on. Connections (client secrets and SP keys sealed with
    // AES-256-GCM), sign-in transactions (single use, short-lived), the IdP subjects linked
    // to users, the SAML assertion replay cache, and the organisation's enforcement
    // setting.
    "CREATE TABLE sso_connections (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        protocol TEXT NOT NULL,
        config TEXT NOT NULL,
        secret BLOB,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
     );
     CREATE TABLE sso_transactions (
        id TEXT PRIMARY KEY,
        connection_id TEXT NOT NULL,
        nonce TEXT NOT NULL,
        verifier TEXT NOT NULL,
        return_to TEXT NOT NULL,
        expires_at INTEGER NOT NULL
     );
     CREATE TABLE sso_identities (
        connection_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (connection_id, subject)
     );
     CREATE TABLE saml_assertions (
        id TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
     );
     ALTER TABLE org ADD COLUMN enforce_sso INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE org ADD COLUMN break_glass TEXT;
     ALTER TABLE sessions ADD COLUMN idp TEXT;",
    // 3: the identity plane's shared columns (issue 14). The organisation's sign-in
    // policy (MFA, email verification, session lifetimes; JSON, `AuthPolicy`) and its
    // suspension; a session's authentication time (renewed by step-up), device and last
    // use; whether a user's email is verified.
    "ALTER TABLE org ADD COLUMN auth_policy TEXT NOT NULL DEFAULT '{}';
     ALTER TABLE org ADD COLUMN suspended_at INTEGER;
     ALTER TABLE sessions ADD COLUMN auth_time INTEGER;
     ALTER TABLE sessions ADD COLUMN ip TEXT;
     ALTER TABLE sessions ADD COLUMN user_agent TEXT;
     ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER;
     ALTER TABLE users ADD COLUMN email_verified_at INTEGER;",
    // 4: multi-factor authentication. Factors (TOTP with its secret sealed and the last
    // accepted step; passkeys with their credential), recovery codes (hashed, single use),
    // and challenges: the short-lived, hashed tokens of a sign-in's second step, an
    // enrolment or a step-up, and WebAuthn ceremony state between start and finish.
    "CREATE TABLE mfa_factors (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('totp', 'webauthn')),
        name TEXT NOT NULL,
        secret BLOB,
        last_step INTEGER NOT NULL DEFAULT 0,
        credential TEXT,
        credential_id TEXT UNIQUE,
        amr TEXT,
        confirmed_at INTEGER,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
     );
     CREATE INDEX mfa_factors_user ON mfa_factors(user_id);
     CREATE TABLE recovery_codes (
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        hash TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        used_at INTEGER,
        PRIMARY KEY (user_id, hash)
     );
     CREATE TABLE mfa_challenges (
        hash TEXT PRIMARY KEY,
        purpose TEXT NOT NULL,
        user_id TEXT,
        context TEXT NOT NULL DEFAULT '{}',
        ceremony TEXT,
        expires_at INTEGER NOT NULL,
        used_at INTEGER
     );",
    // 5: mail: email verification tokens (hashed, single use, expiring), invitations (a
    // hashed token replaced on every resend; accepted, revoked or pending), and the
    // organisation's own mail templates (the built-in ones apply otherwise).
    "CREATE TABLE email_verifications (
        hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        email TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER
     );
     CREATE INDEX email_verifications_by_user ON email_verifications (user_id, created_at);
     CREATE TABLE invitations (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        role TEXT NOT NULL,
        team_id TEXT,
        inviter TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        sent_at INTEGER NOT NULL,
        sends INTEGER NOT NULL DEFAULT 1,
        accepted_at INTEGER,
        accepted_user TEXT,
        revoked_at INTEGER
     );
     CREATE INDEX invitations_by_email ON invitations (email);
     CREATE TABLE mail_templates (
        kind TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        text TEXT NOT NULL,
        html TEXT NOT NULL,
        updated_at INTEGER NOT NULL
     );",
    // 6: account and tenant lifecycle: the indexes that a user's sessions, usage per
    // period (audit records and edge events by time) and the sessions list read by.
    "CREATE INDEX sessions_user ON sessions(user_id);
     CREATE INDEX audit_at ON audit(at);
     CREATE INDEX edge_events_at ON edge_events(at);",
    // 7: the audit record's second shape (issue 15): who really acted under an
    // impersonation (`act`) and the record's personal data sealed under the key of the
    // person it is about (`sealed`, crypto-shredding); both covered by the record hash.
    "ALTER TABLE audit ADD COLUMN act TEXT;
     ALTER TABLE audit ADD COLUMN sealed TEXT;",
    // 8: impersonation (issue 15, part B): each impersonation (its session, who acts, why,
    // until when, how it ended, its single-use hosted hand-off, hashed), the
    // organisation's policy (whether its admins may impersonate, for how long), and the
    // real actor of an edge decision made under one.
    "CREATE TABLE impersonations (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ends_at INTEGER NOT NULL,
        ended_at INTEGER,
        ended_by TEXT,
        handoff_hash TEXT UNIQUE,
        handoff_expires_at INTEGER
     );
     CREATE INDEX impersonations_user ON impersonations(user_id);
     CREATE TABLE impersonation_policy (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        allow_admins INTEGER NOT NULL,
        max_minutes INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
     );
     ALTER TABLE edge_events ADD COLUMN actor TEXT;",
    // 9: retention per data type and legal holds with scope (issue 15, part C). A rule
    // per data type (a row present: the organisation's own choice, `days` NULL keeps
    // everything; absent: the region default), the audit retention set before moved in;
    // holds scoped to users and actions (JSON arrays, empty: all) and released rather
    // than deleted; indexes the scheduler's batched purges read by.
    "CREATE TABLE retention_rules (
        kind TEXT PRIMARY KEY CHECK (kind IN ('audit', 'edge_events', 'sessions', 'tokens', 'invitations')),
        days INTEGER
     );
     INSERT INTO retention_rules (kind, days) SELECT 'audit', retention_days FROM org WHERE retention_days IS NOT NULL;
     ALTER TABLE legal_holds ADD COLUMN users TEXT NOT NULL DEFAULT '[]';
     ALTER TABLE legal_holds ADD COLUMN actions TEXT NOT NULL DEFAULT '[]';
     ALTER TABLE legal_holds ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
     ALTER TABLE legal_holds ADD COLUMN released_at INTEGER;
     ALTER TABLE legal_holds ADD COLUMN released_by TEXT;
     CREATE INDEX sessions_expires ON sessions(expires_at);
     CREATE INDEX refresh_tokens_expires ON refresh_tokens(expires_at);
     CREATE INDEX revoked_tokens_expires ON revoked_tokens(expires_at);",
    // 10: organisation hierarchy (issue 15, part E): roles granted to every member of a
    // team (and of its descendant teams), the role template a custom role follows
    // (`template`, synced) or was forked from (`forked_from`), and the policy the
    // organisation inherits from its ancestors (JSON, written when an ancestor changes).
    "CREATE TABLE team_roles (
        team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        PRIMARY KEY (team_id, role)
     );
     ALTER TABLE roles ADD COLUMN template TEXT;
     ALTER TABLE roles ADD COLUMN forked_from TEXT;
     ALTER TABLE org ADD COLUMN inherited TEXT;",
    // 11: crypto-shredding (issue 15, part A): one key per person (`user:<id>`,
    // `email:<pseudonym>`, `ip:<pseudonym>`), itself sealed with the region's key, that
    // the personal data of audit records is sealed under; erasure deletes the row.
    "CREATE TABLE subject_keys (
        subject TEXT PRIMARY KEY,
        key BLOB NOT NULL,
        created_at INTEGER NOT NULL
     );",
];

/// Bring a held database up to the newest of `migrations`, one transaction per step.
pub(crate) async fn run(h: &Connection, migrations: &[&str]) -> Result<()> {
    h.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", ()).await?;
    let mut rows = h.query("SELECT COALESCE(MAX(version), 0) FROM schema_version", ()).await?;
    let current: i64 = match rows.next().await? {
        Some(r) => r.get(0)?,
        None => 0,
    };
    drop(rows);
    if current as usize > migrations.len() {
        bail!("schema version {current} is newer than this build knows ({})", migrations.len());
    }
    for (i, m) in migrations.iter().enumerate().skip(current as usize) {
        h.execute("BEGIN IMMEDIATE", ()).await?;
        let step = async {
            h.execute_batch(m).await?;
            h.execute("INSERT INTO schema_version (version) VALUES (?1)", [i as i64 + 1]).await?;
            anyhow::Ok(())
        };
        match step.await {
            Ok(()) => {
                h.execute("COMMIT", ()).await?;
            }
            Err(e) => {
                let _ = h.execute("ROLLBACK", ()).await;
                return Err(e.context(format!("migration {}", i + 1)));
            }
        }
    }
    Ok(())
}
