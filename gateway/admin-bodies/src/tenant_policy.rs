//! The parts of an organisation's edge policy that tenant admins set, and the checks of a
//! region's policy template.

use std::collections::BTreeMap;

use gatehouse_core::policy::{ApiKeyRecord, FeatureOverride, GeoRules, IpRules, Limits, Org, Policy, RoleDef};
use serde::{Deserialize, Serialize};

use crate::Refusal;

/// The parts of an organisation's edge policy that tenant admins set (stored as JSON in
/// the tenant database).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicy {
    /// Hosts the organisation is served on (`app.example.com`, `*.example.com`).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path prefix (`/acme`) for path-based tenancy.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// IP allow/deny.
    #[serde(default)]
    pub ip: IpRules,
    /// Country allow/deny.
    #[serde(default)]
    pub geo: GeoRules,
    /// Feature overrides.
    #[serde(default)]
    pub features: Vec<FeatureOverride>,
    /// Rate limits overriding the tier's.
    #[serde(default)]
    pub limits: Limits,
}

impl TenantPolicy {
    /// The organisation as the edge policy holds it.
    pub fn into_org(
        self,
        tier: String,
        roles: BTreeMap<String, RoleDef>,
        api_keys: Vec<ApiKeyRecord>,
        login_url: Option<String>,
    ) -> Org {
        Org {
            tier,
            hosts: self.hosts,
            path_prefix: self.path_prefix,
            ip: self.ip,
            geo: self.geo,
            roles,
            features: self.features,
            limits: self.limits,
            api_keys,
            login_url,
            ..Org::default()
        }
    }
}

/// The template used when the configuration names none: three tiers and no routes
/// (every request needs a credential).
pub fn default_template() -> Policy {
    let text = r#"
[tiers.free]
features = []
limits.org = { requests = 100, per_secs = 1 }

[tiers.team]
features = ["sso", "audit_export"]
limits.org = { requests = 1000, per_secs = 1 }

[tiers.enterprise]
features = ["sso", "audit_export", "saml", "ip_rules"]
limits.org = { requests = 10000, per_secs = 1 }
"#;
    toml::from_str(text).unwrap_or_default()
}

/// Check a tenant policy by composing it with the region's `template` (as organisation
/// `slug` on `tier`) and validating the result: `invalid_policy` naming every field.
pub fn check_tenant_policy(template: &Policy, slug: &str, tier: &str, tp: &TenantPolicy) -> Result<(), Refusal> {
    let mut p = template.clone();
    p.orgs.insert(slug.to_string(), tp.clone().into_org(tier.to_string(), Default::default(), Vec::new(), None));
    p.validate().map_err(|issues| {
        Refusal::new(
            "invalid_policy",
            issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect::<Vec<_>>().join("; "),
        )
    })
}

/// Whether `p` may be a region's policy template: no organisations, issuers or
/// revocations (they come from the tenants), and valid.
pub fn template_acceptable(p: &Policy) -> Result<(), String> {
    if !p.orgs.is_empty() || !p.issuers.is_empty() || !p.revoked.jti.is_empty() || !p.revoked.sessions.is_empty() {
        return Err("must not define orgs, issuers or revocations (they come from the tenants)".into());
    }
    p.validate()
        .map_err(|issues| issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect::<Vec<_>>().join("; "))
}
