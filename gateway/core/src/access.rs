//! Route rules and access checks: permissions (`resource:action`), roles, teams, features,
//! MFA.

use std::collections::{HashMap, HashSet};

use crate::geo::GeoMatcher;
use crate::identity::Identity;
use crate::net::IpMatcher;
use crate::policy::{AuthMode, Org, Policy, RateLimit, RequireMfa, Route, BUILTIN_ROLES};
use crate::reason::ReasonCode;

/// A host rule: exact, or `*.suffix` (any subdomain of suffix, not the suffix itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exact host.
    Exact(String),
    /// `.suffix` including the dot.
    Suffix(String),
}

impl HostPattern {
    /// Parse a validated pattern.
    pub fn parse(s: &str) -> HostPattern {
        match s.strip_prefix('*') {
            Some(suffix) => HostPattern::Suffix(suffix.to_string()),
            None => HostPattern::Exact(s.to_string()),
        }
    }

    /// Whether `host` (lower-case, no port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
            HostPattern::Suffix(sfx) => {
                host.len() > sfx.len() && host[host.len() - sfx.len()..].eq_ignore_ascii_case(sfx)
            }
        }
    }
}

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A literal segment.
    Lit(String),
    /// `*`: exactly one non-empty segment.
    Any,
    /// `**` (last only): anything, including nothing.
    Rest,
}

/// A route path: a prefix on segment boundaries (`/api` matches `/api` and `/api/x`, not
/// `/apix`), or a pattern where `*` is one segment and a final `**` is any rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// Segment-boundary prefix, without trailing `/` (empty for the root).
    Prefix(String),
    /// Segment pattern.
    Pattern(Vec<Seg>),
}

impl PathPattern {
    /// Parse `/api/` or `/orgs/*/billing/**`.
    pub fn parse(s: &str) -> Result<PathPattern, String> {
        if !s.starts_with('/') {
            return Err(format!("`{s}` must start with `/`"));
        }
        if !s.contains('*') {
            return Ok(PathPattern::Prefix(s.trim_end_matches('/').to_string()));
        }
        let parts: Vec<&str> = s[1..].split('/').collect();
        let mut segs = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            segs.push(match *p {
                "*" => Seg::Any,
                "**" if i == parts.len() - 1 => Seg::Rest,
                "**" => return Err(format!("`{s}`: `**` may only be the last segment")),
                p if p.contains('*') => return Err(format!("`{s}`: `*` must be a whole segment")),
                p => Seg::Lit(p.to_string()),
            });
        }
        Ok(PathPattern::Pattern(segs))
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Prefix(p) => {
                p.is_empty()
                    || (path.starts_with(p.as_str()) && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/'))
            }
            PathPattern::Pattern(segs) => {
                let mut it = path[1..].split('/');
                for seg in segs {
                    match seg {
                        Seg::Rest => return true,
                        Seg::Any => match it.next() {
                            Some(s) if !s.is_empty() => {}
                            _ => return false,
                        },
                        Seg::Lit(l) => {
                            if it.next() != Some(l.as_str()) {
                                return false;
                            }
                        }
                    }
                }
                it.next().is_none()
            }
        }
    }
}

/// A `resource:action` pair, either side possibly `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Permission {
    resource: String,
    action: String,
}

impl Permission {
    /// Parse `resource:action` (validated elsewhere); `None` if there is no colon.
    pub fn parse(s: &str) -> Option<Permission> {
        let (r, a) = s.split_once(':')?;
        Some(Permission { resource: r.to_string(), action: a.to_string() })
    }

    /// Whether this grant covers the concrete permission `need`.
    pub fn covers(&self, need: &Permission) -> bool {
        (self.resource == "*" || self.resource == need.resource) && (self.action == "*" || self.action == need.action)
    }
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    /// Route name.
    pub name: String,
    host: Option<HostPattern>,
    path: PathPattern,
    methods: Vec<String>,
    /// Credential requirement.
    pub auth: AuthMode,
    permission: Option<Permission>,
    role: Option<String>,
    team: Option<String>,
    /// Required feature.
    pub feature: Option<String>,
    /// Multi-factor requirement (step-up when it has a maximum age).
    pub require_mfa: RequireMfa,
    /// Route IP rules.
    pub ip: IpMatcher,
    /// Route country rules.
    pub geo: GeoMatcher,
    /// Per-route, per-org limit.
    pub limit: Option<RateLimit>,
    /// The limit compiled.
    pub gcra: Option<crate::ratelimit::Gcra>,
}

impl CompiledRoute {
    /// Compile a validated route.
    pub fn new(r: &Route) -> CompiledRoute {
        CompiledRoute {
            name: r.name.clone(),
            host: r.host.as_deref().map(HostPattern::parse),
            path: PathPattern::parse(&r.path).unwrap_or(PathPattern::Pattern(vec![])),
            methods: r.methods.clone(),
            auth: r.auth,
            permission: r.permission.as_deref().and_then(Permission::parse),
            role: r.role.clone(),
            team: r.team.clone(),
            feature: r.feature.clone(),
            require_mfa: r.require_mfa,
            ip: IpMatcher::new(&r.ip.allow, &r.ip.deny),
            geo: GeoMatcher::new(&r.geo),
            limit: r.limit,
            gcra: r.limit.as_ref().map(crate::ratelimit::Gcra::new),
        }
    }

    /// The default when no route matches: a credential is required, nothing else.
    pub fn fallback() -> CompiledRoute {
        CompiledRoute::new(&Route { name: "default".into(), path: "/".into(), ..Default::default() })
    }

    /// Whether host and path match (methods are checked separately, to answer 405).
    pub fn matches(&self, host: &str, path: &str) -> bool {
        self.host.as_ref().is_none_or(|h| h.matches(host)) && self.path.matches(path)
    }

    /// Whether the method is allowed.
    pub fn allows_method(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }
}

fn role_rank(role: &str) -> Option<usize> {
    BUILTIN_ROLES.iter().position(|(r, _)| *r == role)
}

/// Per-organisation access data: role table and enabled features.
#[derive(Debug, Clone)]
pub struct OrgAccess {
    roles: HashMap<String, Vec<Permission>>,
    features: HashSet<String>,
    overrides: Vec<(String, bool, Option<u64>)>,
}

impl OrgAccess {
    /// Compile for one org.
    pub fn new(policy: &Policy, org: &Org) -> OrgAccess {
        let mut roles: HashMap<String, Vec<Permission>> = HashMap::new();
        for (name, perms) in BUILTIN_ROLES {
            roles.insert(name.to_string(), perms.iter().filter_map(|p| Permission::parse(p)).collect());
        }
        for (name, def) in policy.roles.iter().chain(org.roles.iter()) {
            roles.insert(name.clone(), def.permissions.iter().filter_map(|p| Permission::parse(p)).collect());
        }
        OrgAccess {
            roles,
            features: policy.tiers.get(&org.tier).map(|t| t.features.iter().cloned().collect()).unwrap_or_default(),
            overrides: org.features.iter().map(|f| (f.feature.clone(), f.enabled, f.expires_at)).collect(),
        }
    }

    /// Whether `feature` is on at `now` (Unix seconds): an unexpired override decides,
    /// else the tier.
    pub fn feature_enabled(&self, feature: &str, now: u64) -> bool {
        for (f, on, exp) in &self.overrides {
            if f == feature && exp.is_none_or(|e| now < e) {
                return *on;
            }
        }
        self.features.contains(feature)
    }

    /// Whether `identity`'s roles grant `need`.
    fn roles_grant(&self, identity: &Identity, need: &Permission) -> bool {
        identity.roles.iter().filter_map(|r| self.roles.get(r)).any(|perms| perms.iter().any(|p| p.covers(need)))
    }

    /// Check a route's identity requirements.
    pub fn check(&self, route: &CompiledRoute, identity: Option<&Identity>, now: u64) -> Result<(), ReasonCode> {
        if let Some(f) = &route.feature {
            if !self.feature_enabled(f, now) {
                return Err(ReasonCode::FeatureDisabled);
            }
        }
        let needs = route.permission.is_some()
            || route.role.is_some()
            || route.team.is_some()
            || route.require_mfa.is_required();
        if !needs {
            return Ok(());
        }
        let id = identity.ok_or(ReasonCode::CredentialMissing)?;
        if let Some(role) = &route.role {
            let ok = match role_rank(role) {
                Some(need) => id.roles.iter().any(|r| role_rank(r).is_some_and(|have| have <= need)),
                None => id.roles.iter().any(|r| r == role),
            };
            if !ok {
                return Err(ReasonCode::RoleRequired);
            }
        }
        if let Some(team) = &route.team {
            if !id.teams.iter().any(|t| t == team) {
                return Err(ReasonCode::TeamRequired);
            }
        }
        if route.require_mfa == RequireMfa::Any
            && !id.amr.iter().any(|m| matches!(m.as_str(), "mfa" | "otp" | "hwk" | "swk"))
        {
            return Err(ReasonCode::MfaRequired);
        }
        if let Some(need) = &route.permission {
            let by_scope =
                |scopes: &Vec<String>| scopes.iter().filter_map(|s| Permission::parse(s)).any(|p| p.covers(need));
            match (&id.kind, &id.scopes) {
                // API keys: their scopes are their grants (plus any roles they carry).
                (crate::identity::CredentialKind::ApiKey, Some(scopes)) => {
                    if !(by_scope(scopes) || self.roles_grant(id, need)) {
                        return Err(ReasonCode::PermissionDenied);
                    }
                }
                // Users: roles grant; scopes, if the token has any, narrow.
                (_, scopes) => {
                    if !self.roles_grant(id, need) {
                        return Err(ReasonCode::PermissionDenied);
                    }
                    if let Some(scopes) = scopes {
                        if !by_scope(scopes) {
                            return Err(ReasonCode::ScopeInsufficient);
                        }
                    }
                }
            }
        }
        // Step-up last: a fresh sign-in cannot grant what the checks above refused.
        if let RequireMfa::Within { max_age_secs } = route.require_mfa {
            check_step_up(id, max_age_secs, now)?;
        }
        Ok(())
    }
}

/// RFC 9470 step-up: `amr` names `mfa` and `auth_time` is at most `max_age` seconds
/// before `now` (an `auth_time` after `now` beyond the leeway never gets here: the token
/// is refused when verified). A token without `auth_time` fails. An API key has no human
/// to step up: it is refused with `mfa_required` (403), which no retry can change.
pub fn check_step_up(id: &Identity, max_age: u64, now: u64) -> Result<(), ReasonCode> {
    if id.kind == crate::identity::CredentialKind::ApiKey {
        return Err(ReasonCode::MfaRequired);
    }
    let fresh = id.auth_time.is_some_and(|t| now.saturating_sub(t) <= max_age);
    if !fresh || !id.amr.iter().any(|m| m == "mfa") {
        return Err(ReasonCode::StepUpRequired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::CredentialKind;

    #[test]
    fn paths() {
        let p = PathPattern::parse("/api/").unwrap();
        assert!(p.matches("/api"));
        assert!(p.matches("/api/x/y"));
        assert!(!p.matches("/apix"));
        assert!(PathPattern::parse("/").unwrap().matches("/anything"));
        let q = PathPattern::parse("/orgs/*/billing/**").unwrap();
        assert!(q.matches("/orgs/acme/billing/invoices/1"));
        assert!(q.matches("/orgs/acme/billing"));
        assert!(!q.matches("/orgs//billing"));
        assert!(!q.matches("/orgs/acme/users"));
        let r = PathPattern::parse("/orgs/*/users").unwrap();
        assert!(r.matches("/orgs/a/users"));
        assert!(!r.matches("/orgs/a/users/1"));
        assert!(PathPattern::parse("/a/**/b").is_err());
        assert!(PathPattern::parse("/a/x*").is_err());
        assert!(PathPattern::parse("a").is_err());
    }

    #[test]
    fn hosts() {
        let h = HostPattern::parse("*.acme.test");
        assert!(h.matches("eu.acme.test"));
        assert!(h.matches("a.b.acme.test"));
        assert!(!h.matches("acme.test"));
        assert!(!h.matches("evilacme.test"));
        assert!(HostPattern::parse("acme.test").matches("ACME.test"));
    }

    fn ident(roles: &[&str], scopes: Option<&[&str]>, kind: CredentialKind) -> Identity {
        Identity::new(
            kind,
            "u1".into(),
            "acme".into(),
            roles.iter().map(|s| s.to_string()).collect(),
            scopes.map(|s| s.iter().map(|x| x.to_string()).collect()),
            vec!["core".into()],
            vec![],
            None,
            None,
            None,
            "x-gatehouse-",
        )
    }

    #[test]
    fn permissions_roles_scopes() {
        let mut policy = Policy::default();
        policy.roles.insert("billing".into(), crate::policy::RoleDef { permissions: vec!["invoices:*".into()] });
        let org = Org { tier: "free".into(), ..Default::default() };
        let acc = OrgAccess::new(&policy, &org);
        let route = |perm: Option<&str>, role: Option<&str>| {
            CompiledRoute::new(&Route {
                name: "r".into(),
                path: "/".into(),
                permission: perm.map(Into::into),
                role: role.map(Into::into),
                ..Default::default()
            })
        };
        let read = route(Some("invoices:read"), None);
        let pay = route(Some("invoices:pay"), None);
        assert_eq!(acc.check(&read, Some(&ident(&["viewer"], None, CredentialKind::Jwt)), 0), Ok(()));
        assert_eq!(
            acc.check(&pay, Some(&ident(&["viewer"], None, CredentialKind::Jwt)), 0),
            Err(ReasonCode::PermissionDenied)
        );
        assert_eq!(acc.check(&pay, Some(&ident(&["billing"], None, CredentialKind::Jwt)), 0), Ok(()));
        assert_eq!(acc.check(&pay, Some(&ident(&["owner"], None, CredentialKind::Jwt)), 0), Ok(()));
        assert_eq!(
            acc.check(&pay, Some(&ident(&["owner"], Some(&["invoices:read"]), CredentialKind::Jwt)), 0),
            Err(ReasonCode::ScopeInsufficient)
        );
        assert_eq!(
            acc.check(&read, Some(&ident(&["owner"], Some(&["openid", "invoices:read"]), CredentialKind::Jwt)), 0),
            Ok(())
        );
        assert_eq!(acc.check(&read, Some(&ident(&[], Some(&["invoices:read"]), CredentialKind::ApiKey)), 0), Ok(()));
        assert_eq!(
            acc.check(&pay, Some(&ident(&[], Some(&["invoices:read"]), CredentialKind::ApiKey)), 0),
            Err(ReasonCode::PermissionDenied)
        );
        assert_eq!(acc.check(&read, None, 0), Err(ReasonCode::CredentialMissing));
        let admin_only = route(None, Some("admin"));
        assert_eq!(acc.check(&admin_only, Some(&ident(&["owner"], None, CredentialKind::Jwt)), 0), Ok(()));
        assert_eq!(
            acc.check(&admin_only, Some(&ident(&["editor"], None, CredentialKind::Jwt)), 0),
            Err(ReasonCode::RoleRequired)
        );
        assert_eq!(
            acc.check(&route(None, Some("billing")), Some(&ident(&["owner"], None, CredentialKind::Jwt)), 0),
            Err(ReasonCode::RoleRequired)
        );
    }

    #[test]
    fn step_up_needs_mfa_in_amr_and_a_recent_auth_time() {
        let signed_in = |amr: &[&str], auth_time: Option<u64>| {
            let mut id = ident(&["viewer"], None, CredentialKind::Jwt).with_authentication(auth_time, None);
            id.amr = amr.iter().map(|s| s.to_string()).collect();
            id
        };
        assert_eq!(check_step_up(&signed_in(&["pwd", "mfa"], Some(100)), 60, 160), Ok(()));
        assert_eq!(check_step_up(&signed_in(&["pwd", "mfa"], Some(100)), 60, 161), Err(ReasonCode::StepUpRequired));
        // Within the leeway in the future: age 0.
        assert_eq!(check_step_up(&signed_in(&["mfa"], Some(200)), 60, 170), Ok(()));
        assert_eq!(check_step_up(&signed_in(&["mfa"], None), 60, 100), Err(ReasonCode::StepUpRequired));
        for amr in [&["pwd"][..], &["otp"], &["hwk"], &[]] {
            assert_eq!(check_step_up(&signed_in(amr, Some(100)), 60, 100), Err(ReasonCode::StepUpRequired), "{amr:?}");
        }
        // An API key never steps up, whatever it claims.
        let mut key = ident(&[], Some(&["x:read"]), CredentialKind::ApiKey).with_authentication(Some(100), None);
        key.amr = vec!["mfa".into()];
        assert_eq!(check_step_up(&key, 60, 100), Err(ReasonCode::MfaRequired));
    }

    #[test]
    fn features_and_overrides() {
        let mut policy = Policy::default();
        policy.tiers.insert("team".into(), crate::policy::Tier { features: vec!["sso".into()], ..Default::default() });
        let org = Org {
            tier: "team".into(),
            features: vec![
                crate::policy::FeatureOverride { feature: "audit".into(), enabled: true, expires_at: Some(100) },
                crate::policy::FeatureOverride { feature: "sso".into(), enabled: false, expires_at: None },
            ],
            ..Default::default()
        };
        let acc = OrgAccess::new(&policy, &org);
        assert!(acc.feature_enabled("audit", 99));
        assert!(!acc.feature_enabled("audit", 100));
        assert!(!acc.feature_enabled("sso", 0));
        assert!(!acc.feature_enabled("scim", 0));
    }
}
