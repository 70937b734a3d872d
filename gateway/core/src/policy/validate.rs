//! Checks of a [`Policy`] that types alone cannot express: names, references between
//! sections, ranges, uniqueness, keys that parse. Every problem names its field.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{
    valid_country, valid_name, valid_permission, AuthMode, GeoRules, Policy, RateLimit, RequireMfa, RoleDef,
    BUILTIN_ROLES,
};

/// Longest `require_mfa.max_age` accepted (a hundred years: a policy may in effect ask for
/// "MFA at sign-in, whenever that was", with the age still bounded).
const MAX_MFA_AGE_SECS: u64 = 36_600 * 86_400;
use crate::access::PathPattern;
use crate::apikey;
use crate::jwk::Alg;
use crate::jwt;

/// One problem found in a policy, with the path of the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyIssue {
    /// Dotted path of the field, e.g. `orgs.acme.ip.allow[1]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn valid_host_pattern(h: &str) -> bool {
    let h = h.strip_prefix("*.").unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
        && !h.starts_with('.')
        && !h.ends_with('.')
}

struct Checker {
    issues: Vec<PolicyIssue>,
}

impl Checker {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(PolicyIssue { path: path.into(), message: message.into() });
    }
    fn check(&mut self, ok: bool, path: impl FnOnce() -> String, message: impl FnOnce() -> String) {
        if !ok {
            self.err(path(), message());
        }
    }
    fn name(&mut self, path: &str, s: &str) {
        self.check(
            valid_name(s),
            || path.to_string(),
            || format!("`{s}` is not a valid name (1-64 letters, digits, `_`, `-`, `.`)"),
        );
    }
    fn countries(&mut self, path: &str, g: &GeoRules) {
        for (list, v) in [("allow", &g.allow), ("deny", &g.deny)] {
            for (i, c) in v.iter().enumerate() {
                self.check(
                    valid_country(c),
                    || format!("{path}.{list}[{i}]"),
                    || format!("`{c}` is not an upper-case ISO 3166-1 alpha-2 country code"),
                );
            }
        }
    }
    fn limit(&mut self, path: &str, l: &Option<RateLimit>) {
        if let Some(l) = l {
            self.check(
                l.requests >= 1 && l.requests <= 1_000_000_000,
                || format!("{path}.requests"),
                || "must be between 1 and 1e9".into(),
            );
            self.check(
                l.per_secs >= 1 && l.per_secs <= 86_400 * 366,
                || format!("{path}.per_secs"),
                || "must be between 1 second and 1 year".into(),
            );
            if let Some(b) = l.burst {
                self.check(
                    (1..=1_000_000_000).contains(&b),
                    || format!("{path}.burst"),
                    || "must be between 1 and 1e9".into(),
                );
            }
        }
    }
    fn roles(&mut self, path: &str, roles: &BTreeMap<String, RoleDef>) {
        for (name, r) in roles {
            self.name(&format!("{path}.{name}"), name);
            self.check(
                !BUILTIN_ROLES.iter().any(|(b, _)| b == name),
                || format!("{path}.{name}"),
                || "redefines a built-in role".into(),
            );
            for (i, p) in r.permissions.iter().enumerate() {
                self.check(
                    valid_permission(p),
                    || format!("{path}.{name}.permissions[{i}]"),
                    || format!("`{p}` is not `resource:action`"),
                );
            }
        }
    }
}

impl Policy {
    /// Check everything types cannot: names, references between sections, ranges,
    /// uniqueness. Returns every problem found, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<PolicyIssue>> {
        let mut c = Checker { issues: Vec::new() };
        let s = &self.settings;
        c.check(s.leeway_secs <= 300, || "settings.leeway_secs".into(), || "must be at most 300 seconds".into());
        c.check(
            (256..=64 * 1024).contains(&s.max_token_bytes),
            || "settings.max_token_bytes".into(),
            || "must be between 256 and 65536".into(),
        );
        c.check(
            s.token_cache_entries <= 10_000_000,
            || "settings.token_cache_entries".into(),
            || "must be at most 10,000,000".into(),
        );
        c.check(
            valid_name(&s.session_cookie),
            || "settings.session_cookie".into(),
            || "is not a valid cookie name".into(),
        );
        c.check(
            valid_name(&s.api_key_header),
            || "settings.api_key_header".into(),
            || "is not a valid header name".into(),
        );
        c.check(valid_name(&s.tenant_claim), || "settings.tenant_claim".into(), || "is not a valid claim name".into());
        c.check(
            s.identity_header_prefix.len() >= 3
                && s.identity_header_prefix.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
            || "settings.identity_header_prefix".into(),
            || "must be lower-case letters and `-`, like `x-gatehouse-`".into(),
        );
        c.check(
            s.expiry_grace_secs <= 7 * 86_400,
            || "settings.expiry_grace_secs".into(),
            || "must be at most 7 days".into(),
        );
        for (field, u) in [("login_url", &s.login_url), ("stepup_url", &s.stepup_url)] {
            if let Some(u) = u {
                c.check(
                    u.starts_with("https://") || u.starts_with("http://"),
                    || format!("settings.{field}"),
                    || "must be an absolute http(s) URL".into(),
                );
            }
        }
        if let Some(h) = &self.geo.country_header {
            c.name("geo.country_header", h);
        }
        c.check(
            self.client_ip.max_hops >= 1 && self.client_ip.max_hops <= 64,
            || "client_ip.max_hops".into(),
            || "must be between 1 and 64".into(),
        );

        for (name, t) in &self.tiers {
            c.name(&format!("tiers.{name}"), name);
            for (i, f) in t.features.iter().enumerate() {
                c.name(&format!("tiers.{name}.features[{i}]"), f);
            }
            c.limit(&format!("tiers.{name}.limits.org"), &t.limits.org);
            c.limit(&format!("tiers.{name}.limits.user"), &t.limits.user);
            c.limit(&format!("tiers.{name}.limits.api_key"), &t.limits.api_key);
        }
        c.roles("roles", &self.roles);

        let mut issuer_names = HashSet::new();
        for (i, iss) in self.issuers.iter().enumerate() {
            let p = format!("issuers[{i}]");
            c.check(!iss.issuer.is_empty(), || format!("{p}.issuer"), || "must not be empty".into());
            c.check(
                issuer_names.insert(iss.issuer.clone()),
                || format!("{p}.issuer"),
                || format!("`{}` is listed twice", iss.issuer),
            );
            c.check(
                iss.jwks_file.is_none(),
                || format!("{p}.jwks_file"),
                || "was not resolved into `jwks` (compile the policy file with `gatehouse policy compile`)".into(),
            );
            c.check(
                !iss.jwks.is_empty() || iss.hmac_secret.is_some(),
                || p.clone(),
                || "has neither `jwks` nor `hmac_secret`".into(),
            );
            if let Some(a) = &iss.default_alg {
                c.check(
                    Alg::parse(a).is_some_and(|a| a != Alg::HS256),
                    || format!("{p}.default_alg"),
                    || format!("`{a}` is not one of EdDSA, ES256, RS256, PS256"),
                );
            }
            if let Some(sname) = &iss.hmac_secret {
                c.name(&format!("{p}.hmac_secret"), sname);
            }
            for (j, o) in iss.orgs.iter().enumerate() {
                c.check(
                    self.orgs.contains_key(o),
                    || format!("{p}.orgs[{j}]"),
                    || format!("names unknown organisation `{o}`"),
                );
            }
            if !iss.jwks.is_empty() {
                if let Err(e) = jwt::parse_jwks(&iss.jwks, iss.default_alg.as_deref()) {
                    c.err(format!("{p}.jwks"), e.to_string());
                }
            }
        }

        let mut hosts: HashMap<String, String> = HashMap::new();
        let mut prefixes: HashMap<String, String> = HashMap::new();
        let mut key_prefixes: HashMap<String, String> = HashMap::new();
        for (id, o) in &self.orgs {
            let p = format!("orgs.{id}");
            c.name(&p, id);
            c.check(
                self.tiers.contains_key(&o.tier),
                || format!("{p}.tier"),
                || format!("names unknown tier `{}`", o.tier),
            );
            for (i, h) in o.hosts.iter().enumerate() {
                c.check(
                    valid_host_pattern(h),
                    || format!("{p}.hosts[{i}]"),
                    || format!("`{h}` is not a lower-case host or `*.suffix`"),
                );
                if let Some(other) = hosts.insert(h.clone(), id.clone()) {
                    c.err(format!("{p}.hosts[{i}]"), format!("`{h}` already belongs to org `{other}`"));
                }
            }
            if let Some(pp) = &o.path_prefix {
                c.check(
                    pp.starts_with('/') && pp.len() > 1 && !pp.contains('*'),
                    || format!("{p}.path_prefix"),
                    || "must start with `/` and name at least one segment".into(),
                );
                let norm = pp.trim_end_matches('/').to_string();
                if let Some(other) = prefixes.insert(norm, id.clone()) {
                    c.err(format!("{p}.path_prefix"), format!("already belongs to org `{other}`"));
                }
            }
            c.countries(&format!("{p}.geo"), &o.geo);
            c.roles(&format!("{p}.roles"), &o.roles);
            for (i, f) in o.features.iter().enumerate() {
                c.name(&format!("{p}.features[{i}].feature"), &f.feature);
            }
            c.limit(&format!("{p}.limits.org"), &o.limits.org);
            c.limit(&format!("{p}.limits.user"), &o.limits.user);
            c.limit(&format!("{p}.limits.api_key"), &o.limits.api_key);
            for (i, k) in o.api_keys.iter().enumerate() {
                let kp = format!("{p}.api_keys[{i}]");
                c.check(
                    apikey::valid_prefix(&k.prefix),
                    || format!("{kp}.prefix"),
                    || "must be 12 lower-case letters or digits".into(),
                );
                c.check(
                    k.hash.len() == 64 && k.hash.bytes().all(|b| b.is_ascii_hexdigit()),
                    || format!("{kp}.hash"),
                    || "must be 64 hex digits (HMAC-SHA256)".into(),
                );
                c.check(
                    !k.subject.is_empty() && k.subject.len() <= 256,
                    || format!("{kp}.subject"),
                    || "must be 1-256 characters".into(),
                );
                for (j, s) in k.scopes.iter().enumerate() {
                    c.check(
                        valid_permission(s),
                        || format!("{kp}.scopes[{j}]"),
                        || format!("`{s}` is not `resource:action`"),
                    );
                }
                if let Some(other) = key_prefixes.insert(k.prefix.clone(), id.clone()) {
                    c.err(format!("{kp}.prefix"), format!("already used by a key of org `{other}`"));
                }
            }
            for (field, u) in [("login_url", &o.login_url), ("stepup_url", &o.stepup_url)] {
                if let Some(u) = u {
                    c.check(
                        u.starts_with("https://") || u.starts_with("http://"),
                        || format!("{p}.{field}"),
                        || "must be an absolute http(s) URL".into(),
                    );
                }
            }
            for (j, u) in o.disabled_users.iter().enumerate() {
                c.check(
                    crate::identity::header_safe(u),
                    || format!("{p}.disabled_users[{j}]"),
                    || "must be a subject id (1-256 printable characters, no spaces or commas)".into(),
                );
            }
        }

        let mut route_names = HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let p = format!("routes[{i}]");
            c.name(&format!("{p}.name"), &r.name);
            c.check(
                route_names.insert(r.name.clone()),
                || format!("{p}.name"),
                || format!("`{}` is used twice", r.name),
            );
            if let Some(h) = &r.host {
                c.check(
                    valid_host_pattern(h),
                    || format!("{p}.host"),
                    || format!("`{h}` is not a lower-case host or `*.suffix`"),
                );
            }
            if let Err(e) = PathPattern::parse(&r.path) {
                c.err(format!("{p}.path"), e);
            }
            for (j, m) in r.methods.iter().enumerate() {
                c.check(
                    !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()),
                    || format!("{p}.methods[{j}]"),
                    || format!("`{m}` is not an upper-case method"),
                );
            }
            if let Some(perm) = &r.permission {
                c.check(
                    valid_permission(perm) && !perm.contains('*'),
                    || format!("{p}.permission"),
                    || format!("`{perm}` is not a concrete `resource:action`"),
                );
            }
            if let Some(role) = &r.role {
                let known = BUILTIN_ROLES.iter().any(|(b, _)| b == role)
                    || self.roles.contains_key(role)
                    || self.orgs.values().any(|o| o.roles.contains_key(role));
                c.check(known, || format!("{p}.role"), || format!("names unknown role `{role}`"));
            }
            if let Some(t) = &r.team {
                c.name(&format!("{p}.team"), t);
            }
            if let Some(f) = &r.feature {
                c.name(&format!("{p}.feature"), f);
            }
            if let RequireMfa::Within { max_age_secs } = r.require_mfa {
                c.check(
                    (1..=MAX_MFA_AGE_SECS).contains(&max_age_secs),
                    || format!("{p}.require_mfa.max_age"),
                    || "must be between 1s and 36600d".into(),
                );
            }
            let needs_identity =
                r.permission.is_some() || r.role.is_some() || r.team.is_some() || r.require_mfa.is_required();
            c.check(
                !(needs_identity && r.auth != AuthMode::Required),
                || format!("{p}.auth"),
                || "must be `required` when the route requires a permission, role, team or MFA".into(),
            );
            c.countries(&format!("{p}.geo"), &r.geo);
            c.limit(&format!("{p}.limit"), &r.limit);
        }
        if c.issues.is_empty() {
            Ok(())
        } else {
            Err(c.issues)
        }
    }
}
