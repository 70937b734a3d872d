//! The decision engine: a compiled policy that answers, for one request head, allow, deny
//! or redirect. Checks run in the order of the architecture, cheap before expensive:
//! request shape → bundle freshness → route → tenant → client IP → IP rules → geo → method
//! → credential → access → rate limits.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::access::{CompiledRoute, HostPattern, OrgAccess};
use crate::apikey::{self, ApiKeyTable};
use crate::bundle::{self, BundleBody, BundleError};
use crate::cache::TokenCache;
use crate::decision::{Allow, Decision, Deny};
use crate::geo::{CountryCode, CountryLookup, GeoMatcher};
use crate::identity::{CredentialKind, Identity};
use crate::jwt::TokenVerifier;
use crate::net::{ClientIpResolver, IpAction, IpMatcher};
use crate::policy::{AuthMode, Limits, Policy, PolicyIssue, Settings};
use crate::ratelimit::{Gcra, RateDecision, RateStore};
use crate::reason::ReasonCode;
use crate::request::RequestHead;
use crate::secrets::EdgeSecrets;
use crate::time::{UnixNanos, NANOS};

mod builtins;
mod rates;
mod refusals;
mod shared;

use rates::rate_headers;
pub use rates::{Begun, PendingRates};
pub use refusals::STEP_UP_ACR;

/// What the host supplies for each decision: the time and its stateful services.
pub struct Env<'a> {
    /// Now, in nanoseconds since the Unix epoch.
    pub now: UnixNanos,
    /// Where rate-limit state lives.
    pub rates: &'a dyn RateStore,
    /// Country lookup by IP (used when neither the platform nor a trusted header says).
    pub countries: &'a dyn CountryLookup,
    /// A native signature primitive, if the host offers one (the engine verifies with its
    /// own code otherwise).
    pub signatures: Option<&'a dyn crate::jwt::SignatureVerifier>,
}

/// Facts about the loaded bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleInfo {
    /// Policy revision.
    pub revision: u64,
    /// Region.
    pub region: String,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
}

struct CompiledLimits {
    org: Option<Gcra>,
    user: Option<Gcra>,
    api_key: Option<Gcra>,
}

impl CompiledLimits {
    fn new(tier: &Limits, over: &Limits) -> CompiledLimits {
        let pick = |o: &Option<crate::policy::RateLimit>, t: &Option<crate::policy::RateLimit>| {
            o.or(*t).as_ref().map(Gcra::new)
        };
        CompiledLimits {
            org: pick(&over.org, &tier.org),
            user: pick(&over.user, &tier.user),
            api_key: pick(&over.api_key, &tier.api_key),
        }
    }
}

struct CompiledOrg {
    id: String,
    ip: IpMatcher,
    geo: GeoMatcher,
    access: OrgAccess,
    limits: CompiledLimits,
    login_url: Option<String>,
    stepup_url: Option<String>,
    suspended: bool,
    disabled_users: HashSet<String>,
}

/// Why an engine could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The policy is invalid.
    #[error("invalid policy: {}", .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
    Policy(Vec<PolicyIssue>),
    /// The bundle was refused.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Keys are unusable.
    #[error("{0}")]
    Keys(String),
}

/// A credential as found in the request, not yet verified.
#[derive(Clone, Copy)]
enum Credential<'r> {
    None,
    Bearer(&'r str),
    Session(&'r str),
    ApiKey(&'r str),
}

/// One check of the engine. [`Check::ALL`] is the order `decide` runs them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Which organisation the request belongs to.
    Tenant,
    /// The client address (through trusted proxies only).
    ClientIp,
    /// IP allow/deny rules of the org and route.
    Ip,
    /// Country rules of the org and route.
    Geo,
    /// The route's method and the credential (JWT, session, API key).
    Credential,
    /// Permissions, roles, teams, MFA and features.
    Access,
    /// Rate limits.
    RateLimit,
}

impl Check {
    /// Every check, in decision order.
    pub const ALL: &'static [Check] =
        &[Check::Tenant, Check::ClientIp, Check::Ip, Check::Geo, Check::Credential, Check::Access, Check::RateLimit];
}

/// Every check but the rate limit, in decision order: what [`Engine::begin`] runs before
/// handing the rate steps to an asynchronous store.
const BEFORE_RATES: &[Check] = match Check::ALL.split_last() {
    Some((Check::RateLimit, rest)) => rest,
    _ => panic!("Check::ALL must end with the rate limit"),
};

/// One rate-limit step for an asynchronous store: the rendered key and its GCRA limit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RateStep {
    /// The key (`RateKey::render`).
    pub key: String,
    /// The limit.
    pub gcra: Gcra,
}

/// What earlier checks established, passed between filters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// The organisation id.
    pub org: Option<String>,
    /// The matched route's name.
    pub route: Option<String>,
    /// The client address.
    pub client_ip: Option<IpAddr>,
    /// The verified identity.
    pub identity: Option<Arc<Identity>>,
    /// Response headers gathered so far (`RateLimit-*`).
    pub response_headers: Vec<(String, String)>,
}

const FALLBACK: usize = usize::MAX;

#[derive(Default)]
struct State<'r> {
    route: Option<usize>,
    credential: Option<Credential<'r>>,
    org: Option<usize>,
    client_ip: Option<IpAddr>,
    identity: Option<Arc<Identity>>,
    identity_checked: bool,
    rate: Option<RateDecision>,
}

/// A compiled policy. Cheap to share (`Arc<Engine>`); `decide` takes `&self`.
pub struct Engine {
    info: BundleInfo,
    settings: Settings,
    client_ip: ClientIpResolver,
    country_header: Option<String>,
    trust_country_any: bool,
    orgs: Vec<CompiledOrg>,
    org_by_id: HashMap<String, usize>,
    exact_hosts: HashMap<String, usize>,
    suffix_hosts: Vec<(HostPattern, usize)>,
    path_prefixes: HashMap<String, usize>,
    max_prefix_segments: usize,
    api_key_orgs: HashMap<String, usize>,
    routes: Vec<CompiledRoute>,
    route_by_name: HashMap<String, usize>,
    fallback: CompiledRoute,
    verifier: TokenVerifier,
    api_keys: ApiKeyTable,
    revoked_jti: HashSet<String>,
    revoked_sid: HashSet<String>,
    cache: TokenCache,
}

impl Engine {
    /// Open a signed bundle with the pinned origin key and compile it.
    pub fn from_bundle(
        bytes: &[u8],
        pinned: &[u8; 32],
        now_secs: u64,
        secrets: &EdgeSecrets,
    ) -> Result<Engine, EngineError> {
        let body = bundle::open(bytes, pinned, now_secs)?;
        Engine::from_body(body, secrets)
    }

    /// Compile an already verified bundle body.
    pub fn from_body(body: BundleBody, secrets: &EdgeSecrets) -> Result<Engine, EngineError> {
        let info = BundleInfo {
            revision: body.revision,
            region: body.region.clone(),
            issued_at: body.issued_at,
            expires_at: body.expires_at,
        };
        Engine::new(&body.policy, info, secrets)
    }

    /// Compile a policy directly (for tests and file-only gateways); `info.expires_at` still
    /// bounds how long it is enforced.
    pub fn new(policy: &Policy, info: BundleInfo, secrets: &EdgeSecrets) -> Result<Engine, EngineError> {
        policy.validate().map_err(EngineError::Policy)?;
        let verifier = TokenVerifier::new(policy, secrets).map_err(|e| EngineError::Keys(e.to_string()))?;
        let mut orgs = Vec::new();
        let mut org_by_id = HashMap::new();
        let mut exact_hosts = HashMap::new();
        let mut suffix_hosts = Vec::new();
        let mut path_prefixes = HashMap::new();
        let mut api_key_orgs = HashMap::new();
        let mut max_prefix_segments = 0;
        for (id, o) in &policy.orgs {
            let idx = orgs.len();
            let tier = policy.tiers.get(&o.tier).cloned().unwrap_or_default();
            orgs.push(CompiledOrg {
                id: id.clone(),
                ip: IpMatcher::new(&o.ip.allow, &o.ip.deny),
                geo: GeoMatcher::new(&o.geo),
                access: OrgAccess::new(policy, o),
                limits: CompiledLimits::new(&tier.limits, &o.limits),
                login_url: o.login_url.clone().or_else(|| policy.settings.login_url.clone()),
                stepup_url: o.stepup_url.clone().or_else(|| policy.settings.stepup_url.clone()),
                suspended: o.suspended,
                disabled_users: o.disabled_users.iter().cloned().collect(),
            });
            org_by_id.insert(id.clone(), idx);
            for h in &o.hosts {
                match HostPattern::parse(h) {
                    HostPattern::Exact(e) => {
                        exact_hosts.insert(e, idx);
                    }
                    p => suffix_hosts.push((p, idx)),
                }
            }
            if let Some(pp) = &o.path_prefix {
                let norm = pp.trim_end_matches('/').to_string();
                max_prefix_segments = max_prefix_segments.max(norm.matches('/').count());
                path_prefixes.insert(norm, idx);
            }
            for k in &o.api_keys {
                api_key_orgs.insert(k.prefix.clone(), idx);
            }
        }
        // Longest suffix first, so `*.eu.acme.test` beats `*.acme.test`.
        suffix_hosts.sort_by_key(|(p, _)| match p {
            HostPattern::Suffix(s) => std::cmp::Reverse(s.len()),
            HostPattern::Exact(_) => std::cmp::Reverse(usize::MAX),
        });
        Ok(Engine {
            info,
            settings: policy.settings.clone(),
            client_ip: ClientIpResolver::new(&policy.client_ip),
            country_header: policy.geo.country_header.clone(),
            trust_country_any: policy.geo.trust_header_from_any_peer,
            orgs,
            org_by_id,
            exact_hosts,
            suffix_hosts,
            path_prefixes,
            max_prefix_segments,
            api_key_orgs,
            routes: policy.routes.iter().map(CompiledRoute::new).collect(),
            route_by_name: policy.routes.iter().enumerate().map(|(i, r)| (r.name.clone(), i)).collect(),
            fallback: CompiledRoute::fallback(),
            api_keys: ApiKeyTable::new(policy, secrets.api_key_secret.as_deref()),
            verifier,
            revoked_jti: policy.revoked.jti.iter().cloned().collect(),
            revoked_sid: policy.revoked.sessions.iter().cloned().collect(),
            cache: TokenCache::new(policy.settings.token_cache_entries),
        })
    }

    /// Every request header (lower-case) a decision may read under this policy. Hosts that
    /// copy headers across a boundary (filter components) need to pass only these.
    pub fn headers_read(&self) -> Vec<String> {
        let mut h: Vec<String> = ["authorization", "cookie", "accept"].map(String::from).to_vec();
        h.push(self.settings.api_key_header.to_ascii_lowercase());
        match self.client_ip.source() {
            crate::net::ClientIpSource::Peer => {}
            crate::net::ClientIpSource::XForwardedFor => h.push("x-forwarded-for".into()),
            crate::net::ClientIpSource::Forwarded => h.push("forwarded".into()),
            crate::net::ClientIpSource::Header(name) => h.push(name.to_ascii_lowercase()),
        }
        if let Some(c) = &self.country_header {
            h.push(c.to_ascii_lowercase());
        }
        h.sort();
        h.dedup();
        h
    }

    /// Prefix of the identity headers sent upstream.
    pub fn identity_header_prefix(&self) -> &str {
        &self.settings.identity_header_prefix
    }

    /// Facts about the loaded bundle.
    pub fn info(&self) -> &BundleInfo {
        &self.info
    }

    /// Entries in the verified-token cache.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// Whether a request header must be removed before the request goes upstream (the
    /// identity headers this engine sets; a client must never be able to send them).
    pub fn is_identity_header(&self, name: &str) -> bool {
        crate::wire::has_prefix(name, &self.settings.identity_header_prefix)
    }

    /// Whether the bundle is still enforceable at `now_secs`.
    pub fn is_fresh(&self, now_secs: u64) -> bool {
        now_secs <= self.info.expires_at.saturating_add(self.settings.expiry_grace_secs)
    }

    /// Decide on one request: every check, in order.
    pub fn decide(&self, req: &RequestHead<'_>, env: &Env<'_>) -> Decision {
        let mut st = State::default();
        match self.run(Check::ALL, req, &mut st, env) {
            Ok(()) => self.allow(&st),
            Err(halt) => halt,
        }
    }

    /// Run some checks with the context earlier filters established, and extend it.
    /// Filter components use this: each runs its own checks, and the host passes the
    /// context along the chain. On success the context holds what the checks found; on
    /// failure the deny or redirect is returned.
    pub fn check(
        &self,
        checks: &[Check],
        req: &RequestHead<'_>,
        ctx: &mut Context,
        env: &Env<'_>,
    ) -> Result<(), Decision> {
        let mut st = self.state_of(ctx)?;
        let r = self.run(checks, req, &mut st, env);
        ctx.org = st.org.map(|i| self.orgs[i].id.clone());
        ctx.route = st.route.map(|r| self.route(r).name.clone());
        ctx.client_ip = st.client_ip;
        ctx.identity = st.identity.clone();
        if let Some(d) = st.rate {
            ctx.response_headers = rate_headers(&d);
        }
        r
    }

    /// The checks' state from the context earlier filters established.
    fn state_of<'r>(&self, ctx: &Context) -> Result<State<'r>, Decision> {
        Ok(State {
            org: match &ctx.org {
                Some(o) => {
                    let i =
                        *self.org_by_id.get(o).ok_or_else(|| Decision::Deny(self.deny(ReasonCode::TenantUnknown)))?;
                    if self.orgs[i].suspended {
                        return Err(self.deny(ReasonCode::TenantSuspended).into());
                    }
                    Some(i)
                }
                None => None,
            },
            route: ctx.route.as_ref().map(|r| self.route_by_name.get(r).copied().unwrap_or(FALLBACK)),
            client_ip: ctx.client_ip,
            identity: ctx.identity.clone(),
            identity_checked: ctx.identity.is_some(),
            credential: None,
            rate: None,
        })
    }

    /// Who really acts for `identity` (RFC 8693 `act`), as the credential of `req` says:
    /// for a host whose filters hand it the identity through a record without the actor
    /// (the WIT `identity`). The credential is the one the engine reads (bearer, then the
    /// session cookie), verified as [`Engine::decide`] verifies it (the verified-token
    /// cache makes a repeat a lookup); its subject, organisation and token id must be
    /// `identity`'s. `None` otherwise, and for API keys. `now_secs` and `native` as
    /// [`Env`] gives them to [`Engine::decide`].
    pub fn actor_of(
        &self,
        req: &RequestHead<'_>,
        identity: &Identity,
        now_secs: u64,
        native: Option<&dyn crate::jwt::SignatureVerifier>,
    ) -> Option<String> {
        if !matches!(identity.kind, CredentialKind::Jwt | CredentialKind::Session) {
            return None;
        }
        let mut st = State::default();
        let org_idx = self.org_of(req, &mut st).ok()?;
        let token = match self.credential_of(req, &mut st).ok()? {
            Credential::Bearer(t) | Credential::Session(t) => t,
            _ => return None,
        };
        let id = self.verify_jwt(token, now_secs, identity.kind, native, org_idx).ok()?;
        let same =
            id.subject == identity.subject && id.org == identity.org && id.credential_id == identity.credential_id;
        if same {
            id.actor.clone()
        } else {
            None
        }
    }

    /// The allow for a context that passed every filter.
    pub fn allow_context(&self, ctx: &Context) -> Decision {
        Decision::Allow(Allow {
            org: ctx.org.clone().unwrap_or_default(),
            route: ctx.route.clone().unwrap_or_default(),
            identity: ctx.identity.clone(),
            response_headers: ctx.response_headers.clone(),
        })
    }

    fn allow(&self, st: &State<'_>) -> Decision {
        Decision::Allow(Allow {
            org: st.org.map(|i| self.orgs[i].id.clone()).unwrap_or_default(),
            route: st.route.map(|r| self.route(r).name.clone()).unwrap_or_default(),
            identity: st.identity.clone(),
            response_headers: st.rate.map(|d| rate_headers(&d)).unwrap_or_default(),
        })
    }

    fn route(&self, idx: usize) -> &CompiledRoute {
        self.routes.get(idx).unwrap_or(&self.fallback)
    }

    fn run<'r>(
        &self,
        checks: &[Check],
        req: &RequestHead<'r>,
        st: &mut State<'r>,
        env: &Env<'_>,
    ) -> Result<(), Decision> {
        let now_secs = env.now / NANOS;
        if req.validate().is_err() {
            return Err(self.deny(ReasonCode::RequestMalformed).into());
        }
        if !self.is_fresh(now_secs) {
            return Err(self.deny(ReasonCode::BundleExpired).into());
        }
        for check in checks {
            match check {
                Check::Tenant => {
                    self.org_of(req, st)?;
                }
                Check::ClientIp => {
                    self.client_ip_of(req, st)?;
                }
                Check::Ip => {
                    let org = &self.orgs[self.org_of(req, st)?];
                    let ip = self.client_ip_of(req, st)?;
                    let route = self.route(self.route_of(req, st));
                    check_ip(&org.ip, ip).map_err(|r| self.deny(r))?;
                    check_ip(&route.ip, ip).map_err(|r| self.deny(r))?;
                }
                Check::Geo => {
                    let org = &self.orgs[self.org_of(req, st)?];
                    let route = self.route(self.route_of(req, st));
                    if !org.geo.is_empty() || !route.geo.is_empty() {
                        let ip = self.client_ip_of(req, st)?;
                        let country = self.country(req, ip, env);
                        org.geo.check(country).map_err(|r| self.deny(r))?;
                        route.geo.check(country).map_err(|r| self.deny(r))?;
                    }
                }
                Check::Credential => self.check_credential(req, st, now_secs, env.signatures)?,
                Check::Access => {
                    let org = &self.orgs[self.org_of(req, st)?];
                    let route = self.route(self.route_of(req, st));
                    org.access.check(route, st.identity.as_deref(), now_secs).map_err(|r| match r {
                        ReasonCode::StepUpRequired => self.step_up(req, org, route),
                        r => self.deny(r).into(),
                    })?;
                }
                Check::RateLimit => self.check_rates(req, st, env)?,
            }
        }
        Ok(())
    }

    fn route_of(&self, req: &RequestHead<'_>, st: &mut State<'_>) -> usize {
        if let Some(r) = st.route {
            return r;
        }
        let host = lower(req.host_without_port());
        let r = self.routes.iter().position(|r| r.matches(&host, req.path)).unwrap_or(FALLBACK);
        st.route = Some(r);
        r
    }

    fn credential_of<'r>(&self, req: &RequestHead<'r>, st: &mut State<'r>) -> Result<Credential<'r>, Deny> {
        if let Some(c) = st.credential {
            return Ok(c);
        }
        let route = self.route(self.route_of(req, st));
        let c = if route.auth == AuthMode::Public {
            Credential::None
        } else {
            self.extract_credential(req).map_err(|r| self.deny(r))?
        };
        st.credential = Some(c);
        Ok(c)
    }

    fn org_of<'r>(&self, req: &RequestHead<'r>, st: &mut State<'r>) -> Result<usize, Deny> {
        if let Some(o) = st.org {
            return Ok(o);
        }
        let cred = self.credential_of(req, st)?;
        let host = lower(req.host_without_port());
        let o = self.resolve_tenant(&host, req.path, &cred).ok_or_else(|| self.deny(ReasonCode::TenantUnknown))?;
        // Right after the tenant is known: nothing of a suspended org is served, not even
        // a sign-in redirect.
        if self.orgs[o].suspended {
            return Err(self.deny(ReasonCode::TenantSuspended));
        }
        st.org = Some(o);
        Ok(o)
    }

    fn client_ip_of(&self, req: &RequestHead<'_>, st: &mut State<'_>) -> Result<IpAddr, Deny> {
        if let Some(ip) = st.client_ip {
            return Ok(ip);
        }
        let ip = self.client_ip.resolve(req).map_err(|r| self.deny(r))?;
        st.client_ip = Some(ip);
        Ok(ip)
    }

    fn check_credential<'r>(
        &self,
        req: &RequestHead<'r>,
        st: &mut State<'r>,
        now_secs: u64,
        native: Option<&dyn crate::jwt::SignatureVerifier>,
    ) -> Result<(), Decision> {
        let org_idx = self.org_of(req, st)?;
        let route = self.route(self.route_of(req, st));
        if !route.allows_method(req.method) {
            return Err(self.deny(ReasonCode::MethodNotAllowed).into());
        }
        if st.identity_checked {
            return Ok(());
        }
        let identity: Option<Arc<Identity>> = match self.credential_of(req, st)? {
            Credential::None => {
                if route.auth == AuthMode::Required {
                    return Err(self.missing_credential(req, &self.orgs[org_idx]));
                }
                None
            }
            Credential::Bearer(t) => Some(self.verify_jwt(t, now_secs, CredentialKind::Jwt, native, org_idx)?),
            Credential::Session(t) => Some(self.verify_jwt(t, now_secs, CredentialKind::Session, native, org_idx)?),
            Credential::ApiKey(k) => {
                let id = self.api_keys.verify(k, now_secs).map_err(|r| self.deny(r))?;
                self.check_enabled(org_idx, &id)?;
                Some(Arc::new(id))
            }
        };
        if let Some(id) = &identity {
            if id.org != self.orgs[org_idx].id {
                return Err(self.deny(ReasonCode::TenantMismatch).into());
            }
        }
        st.identity = identity;
        st.identity_checked = true;
        Ok(())
    }

    fn extract_credential<'r>(&self, req: &RequestHead<'r>) -> Result<Credential<'r>, ReasonCode> {
        let mut auth = req.header_values("authorization");
        let bearer = match (auth.next(), auth.next()) {
            (None, _) => None,
            (Some(_), Some(_)) => return Err(ReasonCode::CredentialMalformed),
            (Some(v), None) => {
                let v = v.trim();
                let (scheme, rest) = v.split_once(' ').ok_or(ReasonCode::CredentialMalformed)?;
                let rest = rest.trim();
                if !scheme.eq_ignore_ascii_case("bearer") || rest.is_empty() || rest.contains(' ') {
                    return Err(ReasonCode::CredentialMalformed);
                }
                Some(rest)
            }
        };
        let mut keys = req.header_values(&self.settings.api_key_header);
        let header_key = match (keys.next(), keys.next()) {
            (None, _) => None,
            (Some(_), Some(_)) => return Err(ReasonCode::CredentialMalformed),
            (Some(k), None) => Some(k.trim()),
        };
        match (bearer, header_key) {
            (Some(_), Some(_)) => Err(ReasonCode::CredentialMalformed),
            (Some(b), None) if apikey::looks_like_api_key(b) => Ok(Credential::ApiKey(b)),
            (Some(b), None) => Ok(Credential::Bearer(b)),
            (None, Some(k)) => Ok(Credential::ApiKey(k)),
            (None, None) => match self.session_cookie(req)? {
                Some(s) => Ok(Credential::Session(s)),
                None => Ok(Credential::None),
            },
        }
    }

    fn session_cookie<'r>(&self, req: &RequestHead<'r>) -> Result<Option<&'r str>, ReasonCode> {
        let name = self.settings.session_cookie.as_str();
        let mut found = None;
        for header in req.header_values("cookie") {
            for pair in header.split(';') {
                let pair = pair.trim();
                if let Some((k, v)) = pair.split_once('=') {
                    if k.trim() == name {
                        if found.is_some() {
                            // Two cookies of the same name: possible cookie tossing.
                            return Err(ReasonCode::CredentialMalformed);
                        }
                        found = Some(v.trim().trim_matches('"'));
                    }
                }
            }
        }
        Ok(found.filter(|v| !v.is_empty()))
    }

    fn resolve_tenant(&self, host: &str, path: &str, cred: &Credential<'_>) -> Option<usize> {
        if let Some(&i) = self.exact_hosts.get(host) {
            return Some(i);
        }
        if let Some((_, i)) = self.suffix_hosts.iter().find(|(p, _)| p.matches(host)) {
            return Some(*i);
        }
        if self.max_prefix_segments > 0 {
            // Try `/a`, `/a/b`, ... up to the deepest configured prefix.
            let mut end = 0;
            for _ in 0..self.max_prefix_segments {
                let next = path[end + 1..].find('/').map(|i| end + 1 + i).unwrap_or(path.len());
                if let Some(&i) = self.path_prefixes.get(&path[..next]) {
                    return Some(i);
                }
                if next == path.len() {
                    break;
                }
                end = next;
            }
        }
        match cred {
            Credential::ApiKey(k) => apikey::parse(k).ok().and_then(|p| self.api_key_orgs.get(p).copied()),
            Credential::Bearer(t) | Credential::Session(t) if self.settings.tenant_from_token => {
                self.verifier.peek_tenant(t).and_then(|o| self.org_by_id.get(&o).copied())
            }
            _ => None,
        }
    }

    fn country(&self, req: &RequestHead<'_>, client_ip: IpAddr, env: &Env<'_>) -> Option<CountryCode> {
        if let Some(c) = req.platform_country.and_then(CountryCode::parse) {
            return Some(c);
        }
        if let Some(h) = &self.country_header {
            if self.trust_country_any || self.client_ip.is_trusted(req.peer) {
                if let Some(c) = req.header(h).and_then(CountryCode::parse) {
                    return Some(c);
                }
            }
        }
        env.countries.country(client_ip)
    }

    /// `user_disabled` when the subject is one of the addressed org's disabled users.
    fn check_enabled(&self, org_idx: usize, id: &Identity) -> Result<(), Deny> {
        let disabled = &self.orgs[org_idx].disabled_users;
        if !disabled.is_empty() && disabled.contains(&id.subject) {
            return Err(self.deny(ReasonCode::UserDisabled));
        }
        Ok(())
    }

    fn verify_jwt(
        &self,
        token: &str,
        now: u64,
        kind: CredentialKind,
        native: Option<&dyn crate::jwt::SignatureVerifier>,
        org_idx: usize,
    ) -> Result<Arc<Identity>, Deny> {
        if token.len() > self.verifier.max_bytes() {
            return Err(self.deny(ReasonCode::TokenTooLarge));
        }
        let id = match self.cache.get(token, now) {
            Some(id) if id.kind == kind => id,
            _ => {
                let v = self.verifier.verify_with(token, now, kind, native).map_err(|r| self.deny(r))?;
                let id = Arc::new(v.identity);
                let until = id.expires_at.unwrap_or(now).saturating_add(self.verifier.leeway());
                self.cache.insert(token, Arc::clone(&id), until, now);
                id
            }
        };
        // Before the revocations: deactivating a user also ends their sessions, and the
        // edge should say why.
        self.check_enabled(org_idx, &id)?;
        if !self.revoked_jti.is_empty() {
            if let Some(j) = &id.credential_id {
                if self.revoked_jti.contains(j) {
                    return Err(self.deny(ReasonCode::TokenRevoked));
                }
            }
        }
        if !self.revoked_sid.is_empty() {
            if let Some(s) = &id.session_id {
                if self.revoked_sid.contains(s) {
                    return Err(self.deny(ReasonCode::SessionRevoked));
                }
            }
        }
        Ok(id)
    }
}

fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

fn check_ip(m: &IpMatcher, ip: IpAddr) -> Result<(), ReasonCode> {
    if m.is_empty() {
        return Ok(());
    }
    match m.lookup(ip) {
        Some(IpAction::Deny) => Err(ReasonCode::IpDenied),
        Some(IpAction::Allow) => Ok(()),
        None if m.has_allow() => Err(ReasonCode::IpNotAllowed),
        None => Ok(()),
    }
}
