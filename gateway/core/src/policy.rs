//! The policy model: what the human-writable policy file says and what a bundle carries.
//!
//! The same types are read from TOML (by `gatehouse-bundler`) and from MessagePack (inside a
//! signed bundle). [`Policy::validate`] checks everything that types alone cannot, and names
//! the field of every problem (`orgs.acme.routes[2].permission: ...`).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::net::{Cidr, ClientIpConfig};

/// A whole policy: settings, issuers, tiers, roles, organisations and routes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Engine-wide settings.
    #[serde(default)]
    pub settings: Settings,
    /// Where the client address comes from.
    #[serde(default)]
    pub client_ip: ClientIpConfig,
    /// Where the client's country comes from.
    #[serde(default)]
    pub geo: GeoSettings,
    /// Feature tiers by name (`free`, `team`, `enterprise`, ...).
    #[serde(default)]
    pub tiers: BTreeMap<String, Tier>,
    /// Custom roles shared by every organisation (built-ins need no entry).
    #[serde(default)]
    pub roles: BTreeMap<String, RoleDef>,
    /// Trusted token issuers.
    #[serde(default)]
    pub issuers: Vec<Issuer>,
    /// Organisations (tenants) by id.
    #[serde(default)]
    pub orgs: BTreeMap<String, Org>,
    /// Route rules, first match wins.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Revoked token ids and sessions.
    #[serde(default)]
    pub revoked: Revocations,
}

/// Engine-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Clock skew tolerated for `exp`, `nbf` and `iat`, in seconds (0-300).
    pub leeway_secs: u64,
    /// Largest token accepted, in bytes.
    pub max_token_bytes: usize,
    /// Entries in the verified-token cache (0 disables it).
    pub token_cache_entries: usize,
    /// Name of the session cookie holding a session JWT.
    pub session_cookie: String,
    /// Header carrying an API key (besides `Authorization: Bearer`).
    pub api_key_header: String,
    /// Prefix of identity headers sent upstream; client copies are always removed.
    pub identity_header_prefix: String,
    /// Sign-in URL for browsers without a session; `{org}` is replaced by the org id.
    pub login_url: Option<String>,
    /// Token claim naming the organisation.
    pub tenant_claim: String,
    /// Whether a request may be assigned to a tenant by its (unverified, later verified)
    /// token claim when neither host nor path names one.
    pub tenant_from_token: bool,
    /// Realm in `WWW-Authenticate`.
    pub realm: String,
    /// Seconds a bundle is still enforced after `expires_at` (then everything is denied).
    pub expiry_grace_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            leeway_secs: 60,
            max_token_bytes: 8 * 1024,
            token_cache_entries: 10_000,
            session_cookie: "gh_session".into(),
            api_key_header: "x-api-key".into(),
            identity_header_prefix: "x-gatehouse-".into(),
            login_url: None,
            tenant_claim: "org".into(),
            tenant_from_token: true,
            realm: "gatehouse".into(),
            expiry_grace_secs: 0,
        }
    }
}

/// Country source settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoSettings {
    /// A header carrying an ISO country code, believed only from trusted proxies.
    #[serde(default)]
    pub country_header: Option<String>,
    /// Believe `country_header` from any peer (only for platforms that overwrite it).
    #[serde(default)]
    pub trust_header_from_any_peer: bool,
}

/// A feature tier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Features this tier enables.
    #[serde(default)]
    pub features: Vec<String>,
    /// Rate limits for organisations on this tier.
    #[serde(default)]
    pub limits: Limits,
}

/// Rate limits by key kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// One budget for the whole organisation.
    #[serde(default)]
    pub org: Option<RateLimit>,
    /// One budget per user (token subject).
    #[serde(default)]
    pub user: Option<RateLimit>,
    /// One budget per API key.
    #[serde(default)]
    pub api_key: Option<RateLimit>,
}

/// `requests` per `per_secs` seconds, with bursts of up to `burst` (default: `requests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per period.
    pub requests: u64,
    /// Period length in seconds.
    #[serde(default = "one")]
    pub per_secs: u64,
    /// Largest burst; defaults to `requests`.
    #[serde(default)]
    pub burst: Option<u64>,
}

fn one() -> u64 {
    1
}

/// A custom role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDef {
    /// Permissions (`resource:action`, `resource:*`, `*:action`).
    pub permissions: Vec<String>,
}

/// A token issuer and its keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issuer {
    /// The exact `iss` value.
    pub issuer: String,
    /// Accepted `aud` values (a token must name at least one). Empty: `aud` not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The issuer's public keys as a JWKS document (JSON text, RFC 7517).
    #[serde(default)]
    pub jwks: String,
    /// Policy files only: a JWKS file (relative to the policy file) that the compiler
    /// reads into `jwks`. Never present in a bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<String>,
    /// Algorithm for JWKS keys without `alg` (needed for RSA: `RS256` or `PS256`).
    #[serde(default)]
    pub default_alg: Option<String>,
    /// HS256 only: name of an edge-local secret (never stored in the bundle) and its `kid`.
    #[serde(default)]
    pub hmac_secret: Option<String>,
    /// `kid` of the HS256 key.
    #[serde(default)]
    pub hmac_kid: Option<String>,
    /// Organisations whose tokens this issuer may sign; empty means any.
    #[serde(default)]
    pub orgs: Vec<String>,
}

/// An organisation (tenant).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Org {
    /// Tier name (a key of `tiers`).
    pub tier: String,
    /// Hosts that address this org: exact (`app.acme.test`) or `*.acme.test`.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path prefix that addresses this org (`/t/acme/`).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Org-wide IP rules.
    #[serde(default)]
    pub ip: IpRules,
    /// Org-wide country rules.
    #[serde(default)]
    pub geo: GeoRules,
    /// Org-specific custom roles.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleDef>,
    /// Feature overrides on top of the tier.
    #[serde(default)]
    pub features: Vec<FeatureOverride>,
    /// Limits replacing the tier's, field by field.
    #[serde(default)]
    pub limits: Limits,
    /// API keys, as keyed hashes.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyRecord>,
    /// Per-org sign-in URL (overrides `settings.login_url`).
    #[serde(default)]
    pub login_url: Option<String>,
}

/// IP allow/deny prefixes; the most specific match decides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRules {
    /// If non-empty, only these prefixes are admitted.
    #[serde(default)]
    pub allow: Vec<Cidr>,
    /// Prefixes refused.
    #[serde(default)]
    pub deny: Vec<Cidr>,
}

/// Country allow/deny by ISO 3166-1 alpha-2 code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoRules {
    /// If non-empty, only these countries are admitted.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Countries refused.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// Turns a feature on or off for one organisation, optionally until a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureOverride {
    /// Feature name.
    pub feature: String,
    /// On or off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// When the override lapses (Unix seconds or RFC 3339); none: permanent.
    #[serde(default, with = "crate::time::unix_seconds::option")]
    pub expires_at: Option<u64>,
}

fn yes() -> bool {
    true
}

/// An API key as the edge knows it: never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRecord {
    /// The public prefix (the part after `gh_`, 12 lowercase letters or digits).
    pub prefix: String,
    /// Hex HMAC-SHA256 of the whole key under the edge's API-key secret.
    pub hash: String,
    /// Who the key acts as (shown upstream as the subject).
    pub subject: String,
    /// Permissions the key grants.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Roles the key carries (for role-gated routes).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Expiry (Unix seconds or RFC 3339); none: no expiry.
    #[serde(default, with = "crate::time::unix_seconds::option")]
    pub expires_at: Option<u64>,
}

/// Whether a route needs a credential.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A valid credential is required.
    #[default]
    Required,
    /// A credential is checked if present; anonymous requests pass.
    Optional,
    /// No credential is read (IP, geo and org rate limits still apply).
    Public,
}

/// A route rule. Requests that match no route get the default (auth required, nothing else).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Name, used in metrics and rate-limit keys.
    pub name: String,
    /// Host to match (exact or `*.suffix`); none: any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix (`/api/`) or pattern (`/orgs/*/billing/**`).
    pub path: String,
    /// Methods allowed; empty: any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Credential requirement.
    #[serde(default)]
    pub auth: AuthMode,
    /// Required permission (`resource:action`).
    #[serde(default)]
    pub permission: Option<String>,
    /// Required role (built-in roles include the ones below them).
    #[serde(default)]
    pub role: Option<String>,
    /// Required team membership.
    #[serde(default)]
    pub team: Option<String>,
    /// Required feature (tier or override).
    #[serde(default)]
    pub feature: Option<String>,
    /// Require a multi-factor sign-in (`amr` contains `mfa`, `otp` or `hwk`).
    #[serde(default)]
    pub require_mfa: bool,
    /// Route IP rules (checked as well as the org's).
    #[serde(default)]
    pub ip: IpRules,
    /// Route country rules (checked as well as the org's).
    #[serde(default)]
    pub geo: GeoRules,
    /// Per-route limit, one budget per organisation.
    #[serde(default)]
    pub limit: Option<RateLimit>,
}

/// Revocations pushed to edges.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocations {
    /// Revoked token ids (`jti`).
    #[serde(default)]
    pub jti: Vec<String>,
    /// Revoked session ids (`sid`).
    #[serde(default)]
    pub sessions: Vec<String>,
}

/// One problem found in a policy, with the path of the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyIssue {
    /// Dotted path of the field, e.g. `orgs.acme.ip.allow[1]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Built-in roles, from most to least powerful, with their permissions.
pub const BUILTIN_ROLES: &[(&str, &[&str])] = &[
    ("owner", &["*:*"]),
    ("admin", &["*:read", "*:write", "*:delete", "members:*", "teams:*", "api_keys:*", "roles:*", "settings:*"]),
    ("editor", &["*:read", "*:write"]),
    ("viewer", &["*:read"]),
];

/// Whether `s` is a valid permission (`resource:action`, either side may be `*`).
pub fn valid_permission(s: &str) -> bool {
    let ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 64
            && (p == "*" || p.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)))
    };
    match s.split_once(':') {
        Some((r, a)) => ok(r) && ok(a),
        None => false,
    }
}

/// Whether `s` is a valid identifier (org id, tier, role, feature, route name, secret name).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// Whether `s` is an upper-case ISO 3166-1 alpha-2 code (or `XX`, unknown, by convention).
pub fn valid_country(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// Whether `s` is an API-key prefix: 12 lowercase ASCII letters or digits.
pub fn valid_api_key_prefix(s: &str) -> bool {
    s.len() == crate::apikey::PREFIX_LEN && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
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
        if let Some(u) = &s.login_url {
            c.check(
                u.starts_with("https://") || u.starts_with("http://"),
                || "settings.login_url".into(),
                || "must be an absolute http(s) URL".into(),
            );
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
                    crate::jwt::Alg::parse(a).is_some_and(|a| a != crate::jwt::Alg::HS256),
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
                if let Err(e) = crate::jwt::parse_jwks(&iss.jwks, iss.default_alg.as_deref()) {
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
                    valid_api_key_prefix(&k.prefix),
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
            if let Some(u) = &o.login_url {
                c.check(
                    u.starts_with("https://") || u.starts_with("http://"),
                    || format!("{p}.login_url"),
                    || "must be an absolute http(s) URL".into(),
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
            if let Err(e) = crate::access::PathPattern::parse(&r.path) {
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
            let needs_identity = r.permission.is_some() || r.role.is_some() || r.team.is_some() || r.require_mfa;
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
