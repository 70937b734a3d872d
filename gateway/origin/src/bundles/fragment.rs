//! One tenant's compiled part of its region's bundle: its organisation (tier, hosts, IP
//! and geo rules narrowed by its ancestors', custom roles, features, limits, live API-key
//! hashes, suspension, disabled users' ids) and its live revocations. Built by reading
//! that tenant's database once; what is the same for every tenant (issuer URL, JWKS,
//! audience, page URLs) is added when the bundle is assembled.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context as _, Result};
use gatehouse_core::policy::{ApiKeyRecord, Org, RoleDef};

use super::TenantPolicy;

/// A tenant's compiled fragment.
#[derive(Debug, Clone)]
pub(crate) struct Fragment {
    /// The organisation, without its page URLs.
    pub org: Org,
    /// Revoked token ids that have not expired yet.
    pub jti: Vec<String>,
    /// Revoked session ids that have not expired yet.
    pub sessions: Vec<String>,
    /// The earliest expiry (Unix seconds) among the API keys and revocations it holds:
    /// from then on it holds something dead and is rebuilt.
    pub valid_until: Option<i64>,
}

impl Fragment {
    /// Whether it still holds exactly what a fresh read at `now` would.
    pub fn live_at(&self, now: i64) -> bool {
        self.valid_until.is_none_or(|t| t > now)
    }
}

fn earliest(a: Option<i64>, b: i64) -> Option<i64> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Read tenant `slug`'s fragment from its database; `None` when it has no organisation
/// yet (being created).
pub(crate) async fn read(h: &libsql::Connection, slug: &str, now: i64) -> Result<Option<Fragment>> {
    let mut rows = h.query("SELECT tier, policy FROM org WHERE id = 1", ()).await?;
    let Some(row) = rows.next().await? else { return Ok(None) };
    let (tier, tp): (String, String) = (row.get(0)?, row.get(1)?);
    drop(rows);
    let mut tp: TenantPolicy = serde_json::from_str(&tp).with_context(|| format!("tenant {slug}: policy"))?;
    // A child's IP and geo rules as narrowed by its ancestors' (`hierarchy`).
    let inherited = crate::hierarchy::inherited(h).await.map_err(|e| anyhow!("tenant {slug}: inherited: {e:?}"))?;
    (tp.ip, tp.geo) = crate::hierarchy::narrow_ip_geo(inherited.as_ref(), &tp.ip, &tp.geo);
    let mut roles = BTreeMap::new();
    let mut rows = h.query("SELECT name, permissions FROM roles ORDER BY name", ()).await?;
    while let Some(row) = rows.next().await? {
        let perms: Vec<String> = serde_json::from_str(&row.get::<String>(1)?)?;
        roles.insert(row.get::<String>(0)?, RoleDef { permissions: perms });
    }
    drop(rows);
    let mut valid_until = None;
    let mut api_keys = Vec::new();
    let mut rows = h
        .query(
            "SELECT prefix, hash, subject, scopes, roles, expires_at FROM api_keys
             WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1) ORDER BY prefix",
            [now],
        )
        .await?;
    while let Some(row) = rows.next().await? {
        let expires_at = row.get::<Option<i64>>(5)?;
        if let Some(t) = expires_at {
            valid_until = earliest(valid_until, t);
        }
        api_keys.push(ApiKeyRecord {
            prefix: row.get(0)?,
            hash: row.get(1)?,
            subject: row.get(2)?,
            scopes: serde_json::from_str(&row.get::<String>(3)?)?,
            roles: serde_json::from_str(&row.get::<String>(4)?)?,
            expires_at: expires_at.map(|t| t as u64),
        });
    }
    drop(rows);
    let mut jti = Vec::new();
    let mut rows =
        h.query("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > ?1 ORDER BY jti", [now]).await?;
    while let Some(row) = rows.next().await? {
        jti.push(row.get(0)?);
        valid_until = earliest(valid_until, row.get(1)?);
    }
    drop(rows);
    let mut sessions = Vec::new();
    let mut rows = h
        .query(
            "SELECT id, expires_at FROM sessions WHERE revoked_at IS NOT NULL AND expires_at > ?1 ORDER BY id",
            [now],
        )
        .await?;
    while let Some(row) = rows.next().await? {
        sessions.push(row.get(0)?);
        valid_until = earliest(valid_until, row.get(1)?);
    }
    drop(rows);
    let suspended = crate::store::orgs::suspended_at(h).await?.is_some();
    let disabled_users = crate::store::users::disabled_ids(h).await?;
    let org = Org { suspended, disabled_users, ..tp.into_org(tier, roles, api_keys, None) };
    Ok(Some(Fragment { org, jti, sessions, valid_until }))
}
