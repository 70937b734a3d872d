//! The policy model: what the human-writable policy file says and what a bundle carries.
//!
//! The same types are read from TOML (by `gatehouse-bundler`) and from MessagePack (inside a
//! signed bundle). [`Policy::validate`] (in [`validate`]) checks everything that types alone
//! cannot, and names the field of every problem (`orgs.acme.routes[2].permission: ...`).
//!
//! This module is the schema only: it names no check of the engine, so every check may
//! read it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::net::cidr::Cidr;
use crate::net::client_ip::config::ClientIpConfig;

pub mod validate;

pub use validate::PolicyIssue;

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
    /// Step-up URL for browsers whose sign-in is too old or lacks a second factor on a
    /// route with `require_mfa = { max_age = .. }`; `{org}` is replaced by the org id, and
    /// `return_to` and `max_age` are added. None: such browsers get the API's 401.
    pub stepup_url: Option<String>,
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
            stepup_url: None,
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
    /// Per-org step-up URL (overrides `settings.stepup_url`).
    #[serde(default)]
    pub stepup_url: Option<String>,
    /// The organisation is suspended: every request addressed to it is refused with 403
    /// `tenant_suspended`.
    #[serde(default)]
    pub suspended: bool,
    /// Subjects (user ids; never names or addresses) whose tokens and API keys are
    /// refused with 401 `user_disabled`.
    #[serde(default)]
    pub disabled_users: Vec<String>,
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
    /// Require a multi-factor sign-in: `true` (at any time), or `{ max_age = "15m" }`
    /// (within that long: step-up, RFC 9470).
    #[serde(default)]
    pub require_mfa: RequireMfa,
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

/// A route's multi-factor requirement (`require_mfa`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RequireMfa {
    /// No requirement (`false`, or the field left out).
    #[default]
    No,
    /// `true`: the token shows a multi-factor sign-in (`amr` names `mfa`, `otp`, `hwk` or
    /// `swk`) at any time; refused with 403 `mfa_required`.
    Any,
    /// `{ max_age = "15m" }`: `amr` names `mfa` and the token's `auth_time` is at most
    /// `max_age_secs` old; refused with 401 `step_up_required` (RFC 9470), or a browser is
    /// sent to the organisation's step-up page.
    Within {
        /// Longest time since the sign-in, in seconds.
        max_age_secs: u64,
    },
}

impl RequireMfa {
    /// Whether the route asks for any multi-factor sign-in.
    pub fn is_required(self) -> bool {
        self != RequireMfa::No
    }
}

/// The table form of [`RequireMfa`] (`{ max_age = "15m" }`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MfaWithin {
    #[serde(with = "crate::time::duration_secs")]
    max_age: u64,
}

impl Serialize for RequireMfa {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            RequireMfa::No => s.serialize_bool(false),
            RequireMfa::Any => s.serialize_bool(true),
            RequireMfa::Within { max_age_secs } => MfaWithin { max_age: max_age_secs }.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for RequireMfa {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RequireMfa;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`true`, `false` or a table like `{ max_age = \"15m\" }`")
            }
            fn visit_bool<E>(self, v: bool) -> Result<RequireMfa, E> {
                Ok(if v { RequireMfa::Any } else { RequireMfa::No })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RequireMfa, A::Error> {
                let w = MfaWithin::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RequireMfa::Within { max_age_secs: w.max_age })
            }
        }
        d.deserialize_any(V)
    }
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

/// Built-in roles, from most to least powerful, with their permissions.
pub const BUILTIN_ROLES: &[(&str, &[&str])] = &[
    ("owner", &["*:*"]),
    (
        "admin",
        &[
            "*:read",
            "*:write",
            "*:delete",
            "members:*",
            "teams:*",
            "api_keys:*",
            "roles:*",
            "settings:*",
            "users:invite",
        ],
    ),
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
