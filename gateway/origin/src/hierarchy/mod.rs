//! Hierarchical organisations (issue 15, part E): parent links between tenants of one
//! region, the policy children inherit (narrowing only), and the admission of an
//! ancestor's owners and admins to a child's admin API.
//!
//! - [`policy`]: the inheritable rules, a child's effective rules, `wider_than_parent`;
//! - [`ip`]: the exact intersection of IP rule sets;
//! - [`links`]: attaching a child (no cycles, bounded depth, same region) and writing
//!   what each descendant inherits when an ancestor changes;
//! - [`access`]: an ancestor's owner or admin on a child.
//!
//! What a child inherits is stored in the child (`org.inherited`, its ancestors'
//! effective rules), rewritten whenever a link or an ancestor's rules change: every
//! reader of a tenant's policy (sign-in, MFA enrolment, the bundle) then needs only the
//! tenant's own database. Children are homed in their parent's region, so no link and no
//! inherited rule crosses regions.

use gatehouse_core::policy::{GeoRules, IpRules};
use serde::Deserialize;

use crate::auth_policy::AuthPolicy;
use crate::error::ApiResult;
use crate::store::{hierarchy as links_store, orgs};

pub mod access;
pub mod ip;
pub mod links;
pub mod policy;

use policy::{Effective, Rules};

/// Most organisations in one chain from a root down (the root included).
pub const MAX_DEPTH: usize = 4;

/// The IP and geo parts of a stored tenant policy (the rest is not inherited).
#[derive(Debug, Default, Deserialize)]
struct IpGeo {
    #[serde(default)]
    ip: IpRules,
    #[serde(default)]
    geo: GeoRules,
}

/// The organisation's own inheritable rules, as stored (never the effective ones).
pub async fn own_rules(h: &libsql::Connection) -> ApiResult<Rules> {
    let org = orgs::get(h).await?.ok_or_else(|| anyhow::anyhow!("tenant database has no org row"))?;
    let IpGeo { ip, geo } = serde_json::from_str(&org.policy)?;
    let auth = AuthPolicy::from_stored(&orgs::auth_policy(h).await?.unwrap_or_else(|| "{}".into()))?;
    let enforce_sso = orgs::enforcement(h).await?.is_some_and(|e| e.enforce);
    Ok(Rules { ip, geo, mfa_required: auth.mfa_required, mfa_methods: auth.mfa_methods, enforce_sso })
}

/// What the organisation inherits from its ancestors (`None`: a root).
pub async fn inherited(h: &libsql::Connection) -> ApiResult<Option<Effective>> {
    match links_store::inherited(h).await? {
        Some(json) => Ok(Some(serde_json::from_str(&json)?)),
        None => Ok(None),
    }
}

/// The organisation's effective rules (its own narrowed by what it inherits), with the
/// ancestors they came through.
pub async fn effective(h: &libsql::Connection, slug: &str) -> ApiResult<Effective> {
    let up = inherited(h).await?;
    let mut e = policy::merge(&own_rules(h).await?, slug, up.as_ref());
    e.from = up.map(|u| u.from).unwrap_or_default();
    Ok(e)
}

/// A stored sign-in policy narrowed by what the organisation inherits: MFA required if
/// an ancestor requires it, only the methods every ancestor allows.
pub async fn narrow_auth(h: &libsql::Connection, mut p: AuthPolicy) -> ApiResult<AuthPolicy> {
    if let Some(up) = inherited(h).await? {
        p.mfa_required |= up.rules.mfa_required;
        p.mfa_methods = policy::mfa_methods(&up.rules.mfa_methods, &p.mfa_methods);
    }
    Ok(p)
}

/// Whether password sign-in is refused: the organisation's own setting or an ancestor's.
pub async fn narrow_enforce(h: &libsql::Connection, enforce: bool) -> ApiResult<bool> {
    Ok(enforce || inherited(h).await?.is_some_and(|up| up.rules.enforce_sso))
}

/// IP and geo rules of an organisation narrowed by what it `inherited` (the bundle's).
pub fn narrow_ip_geo(inherited: Option<&Effective>, ip_rules: &IpRules, geo: &GeoRules) -> (IpRules, GeoRules) {
    let Some(up) = inherited else { return (ip_rules.clone(), geo.clone()) };
    let own = Rules { ip: ip_rules.clone(), geo: geo.clone(), ..up.rules.clone() };
    let e = policy::merge(&own, "", Some(up));
    (e.rules.ip, e.rules.geo)
}

/// Refuse IP or geo rules wider than the inherited ones (409 `wider_than_parent`).
pub async fn refuse_wider_ip_geo(h: &libsql::Connection, ip_rules: &IpRules, geo: &GeoRules) -> ApiResult<()> {
    match inherited(h).await? {
        Some(up) => Ok(policy::check_ip_geo(&up, ip_rules, geo)?),
        None => Ok(()),
    }
}

/// Refuse a sign-in policy wider than the inherited one (409 `wider_than_parent`).
pub async fn refuse_wider_auth(h: &libsql::Connection, p: &AuthPolicy) -> ApiResult<()> {
    match inherited(h).await? {
        Some(up) => Ok(policy::check_mfa(&up, p.mfa_required, &p.mfa_methods)?),
        None => Ok(()),
    }
}

/// Refuse turning SSO enforcement off while an ancestor enforces it.
pub async fn refuse_wider_sso(h: &libsql::Connection, enforce: bool) -> ApiResult<()> {
    match inherited(h).await? {
        Some(up) => Ok(policy::check_sso(&up, enforce)?),
        None => Ok(()),
    }
}
