//! The origin's HTTP API.
//!
//! - Tenant endpoints (`/t/{slug}/…`): OpenID discovery, JWKS, the token endpoint
//!   (password and refresh-token grants), logout, revocation.
//! - Admin endpoints (`/v1/orgs/…`): organisations, users, memberships, roles, API keys,
//!   policy, sessions, audit. Authorised by an access token of the same tenant whose
//!   roles grant the permission, or by the platform operator's token (every operator
//!   action lands in the tenant's audit log).
//! - Edge endpoints: `GET /v1/bundles/{region}` (ETag), `POST /v1/audit/edge`.
//! - Peer endpoints: `/v1/directory` (directory replication between regions).
//!
//! A tenant homed in another region is never served here: its requests get 421 (API) or
//! a redirect (browser) to the right region, and nothing of it is written locally.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context as _, Result};
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use gatehouse_core::access::Permission;
use gatehouse_core::policy::{Policy, BUILTIN_ROLES};
use jwt_simple::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::audit::{self, Event, RequestMeta};
use crate::bundles::{self, TenantPolicy};
use crate::config::OriginConfig;
use crate::error::{bad, ApiError, ApiResult};
use crate::identity::{self, new_id, Passwords, SigninOutcome, User, USER_COLUMNS, USER_FROM};
use crate::store::{one, Db, Held, Store};
use crate::tokens::{self, AccessGrant, RefreshOutcome, SigningKeys};

mod sso_routes;

/// Every API route: method, path, the permission it needs (`operator`, `edge`, `peer`,
/// `public`, or a tenant permission), and what it does. The OpenAPI document and the
/// cross-tenant test are generated from this table.
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    ("GET", "/healthz", "public", "Liveness"),
    ("GET", "/openapi.json", "public", "This API's OpenAPI document"),
    ("GET", "/t/{slug}/.well-known/openid-configuration", "public", "OpenID discovery for the tenant's issuer"),
    ("GET", "/t/{slug}/.well-known/jwks.json", "public", "Keys that sign the tenant's tokens"),
    ("POST", "/t/{slug}/token", "public", "Token endpoint: grant_type password or refresh_token"),
    ("POST", "/t/{slug}/logout", "public", "End the session of a refresh token"),
    ("POST", "/t/{slug}/revoke", "public", "Revoke an access token (by its own bearer)"),
    ("GET", "/t/{slug}/login", "public", "Hosted sign-in page (HTML form, CSRF-protected)"),
    (
        "POST",
        "/t/{slug}/login",
        "public",
        "Sign in from the form; sets the session cookie, returns to return_to on the tenant's hosts",
    ),
    (
        "GET",
        "/t/{slug}/sso/discover",
        "public",
        "Home-realm discovery: sign in through the connection of an email's domain",
    ),
    (
        "GET",
        "/t/{slug}/sso/{id}/start",
        "public",
        "Start signing in through an SSO connection (redirect to the provider)",
    ),
    ("GET", "/t/{slug}/sso/{id}/callback", "public", "Where the provider returns the browser (code and state)"),
    ("GET", "/t/{slug}/sso/{id}/saml/metadata", "public", "SAML SP metadata of a connection (its entity id)"),
    ("POST", "/t/{slug}/sso/{id}/saml/acs", "public", "SAML Assertion Consumer Service (HTTP-POST binding)"),
    ("POST", "/t/{slug}/password/change", "public", "Change one's password (bearer access token); ends other sessions"),
    ("POST", "/t/{slug}/password/reset-request", "public", "Mail a single-use reset link (always 202)"),
    ("POST", "/t/{slug}/password/reset", "public", "Set a new password with a reset token; ends every session"),
    ("POST", "/v1/orgs", "operator", "Create an organisation (tenant) homed in this region, with its owner"),
    ("GET", "/v1/orgs", "operator", "List the tenant directory (paginated)"),
    (
        "POST",
        "/v1/keys/rotate",
        "operator",
        "Rotate the region's token-signing key (old key published until its tokens expire)",
    ),
    ("GET", "/v1/orgs/{slug}", "settings:read", "Organisation and its edge policy"),
    ("PUT", "/v1/orgs/{slug}/policy", "settings:write", "Set hosts, IP and geo rules, feature overrides, limits"),
    ("GET", "/v1/orgs/{slug}/users", "members:read", "List users (paginated; filter by email)"),
    ("POST", "/v1/orgs/{slug}/users", "members:write", "Create a user with a role"),
    ("DELETE", "/v1/orgs/{slug}/users/{id}", "members:delete", "Delete a user and end their sessions"),
    ("PUT", "/v1/orgs/{slug}/users/{id}/role", "members:write", "Set a user's role (and its expiry)"),
    ("GET", "/v1/orgs/{slug}/roles", "roles:read", "List custom roles"),
    ("PUT", "/v1/orgs/{slug}/roles/{name}", "roles:write", "Create or replace a custom role"),
    ("GET", "/v1/orgs/{slug}/teams", "teams:read", "List teams"),
    ("POST", "/v1/orgs/{slug}/teams", "teams:write", "Create a team (optionally inside another)"),
    ("PUT", "/v1/orgs/{slug}/teams/{id}/members/{user}", "teams:write", "Add a user to a team"),
    ("GET", "/v1/orgs/{slug}/api-keys", "api_keys:read", "List API keys (never the keys)"),
    ("POST", "/v1/orgs/{slug}/api-keys", "api_keys:write", "Create an API key (shown once)"),
    ("POST", "/v1/orgs/{slug}/api-keys/{id}/rotate", "api_keys:write", "Replace an API key (new key shown once)"),
    ("DELETE", "/v1/orgs/{slug}/api-keys/{id}", "api_keys:delete", "Revoke an API key"),
    (
        "POST",
        "/v1/orgs/{slug}/sessions/{id}/revoke",
        "members:write",
        "End a session (reaches edges with the next bundle)",
    ),
    ("GET", "/v1/orgs/{slug}/sso/connections", "settings:read", "List SSO connections (never their secrets)"),
    (
        "POST",
        "/v1/orgs/{slug}/sso/connections",
        "settings:write",
        "Create an SSO connection: OIDC or OAuth2, presets entra, google, okta, github",
    ),
    ("GET", "/v1/orgs/{slug}/sso/connections/{id}", "settings:read", "One SSO connection"),
    (
        "PUT",
        "/v1/orgs/{slug}/sso/connections/{id}",
        "settings:write",
        "Replace an SSO connection (an absent client_secret keeps the stored one)",
    ),
    ("DELETE", "/v1/orgs/{slug}/sso/connections/{id}", "settings:write", "Delete an SSO connection"),
    ("GET", "/v1/orgs/{slug}/sso/enforcement", "settings:read", "Whether password sign-in is refused (SSO only)"),
    (
        "PUT",
        "/v1/orgs/{slug}/sso/enforcement",
        "settings:write",
        "Enforce SSO: refuse password sign-in except for a break-glass owner",
    ),
    ("GET", "/v1/orgs/{slug}/audit", "audit:read", "Query the audit log (json, jsonl or csv; paginated)"),
    ("GET", "/v1/orgs/{slug}/audit/verify", "audit:read", "Verify the audit hash chain"),
    ("GET", "/v1/orgs/{slug}/audit/edge", "audit:read", "Decision events edges sent (paginated)"),
    ("PUT", "/v1/orgs/{slug}/audit/retention", "settings:write", "Set audit retention in days"),
    ("POST", "/v1/orgs/{slug}/audit/holds", "settings:write", "Place a legal hold on a time range"),
    ("POST", "/v1/orgs/{slug}/audit/purge", "settings:write", "Purge records past retention (never held ones)"),
    ("GET", "/v1/bundles/{region}", "edge", "The signed bundle of the region (ETag / If-None-Match)"),
    ("POST", "/v1/audit/edge", "edge", "Batched decision events from an edge (idempotent by batch id)"),
    ("GET", "/v1/directory", "peer", "The directory entries homed in this region"),
    ("POST", "/v1/directory", "peer", "Upsert directory entries homed in the caller's region"),
];

/// Largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;

struct Built {
    change: u64,
    revision: u64,
    built_at: i64,
    bytes: Arc<Vec<u8>>,
    etag: String,
}

/// Shared state of the origin.
pub struct App {
    /// Configuration.
    pub cfg: OriginConfig,
    /// Databases.
    pub store: Store,
    keys: std::sync::RwLock<Arc<SigningKeys>>,
    passwords: Passwords,
    template: std::sync::RwLock<Arc<Policy>>,
    bundle_key: [u8; 64],
    edge_tokens: Vec<(String, [u8; 32])>,
    operator_hash: [u8; 32],
    peer_hash: [u8; 32],
    peer_token: String,
    api_key_secret: Vec<u8>,
    changes: AtomicU64,
    bundle: tokio::sync::Mutex<Option<Built>>,
    mailer: Box<dyn crate::mailer::Mailer>,
    /// Key of the sign-in form's CSRF tokens (derived from the bundle-signing key, so
    /// forms survive a restart).
    csrf_key: [u8; 32],
    /// Seals SSO client secrets.
    sso_box: crate::sso::SecretBox,
    /// The SSO relying party (provider HTTP client, discovery cache).
    rp: crate::sso::oidc::RelyingParty,
}

/// A template holds what is the same for every tenant: no organisations, issuers or
/// revocations (those come from the tenants), and it must validate.
fn template_acceptable(p: &Policy) -> Result<(), String> {
    if !p.orgs.is_empty() || !p.issuers.is_empty() || !p.revoked.jti.is_empty() || !p.revoked.sessions.is_empty() {
        return Err("must not define orgs, issuers or revocations (they come from the tenants)".into());
    }
    p.validate()
        .map_err(|issues| issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect::<Vec<_>>().join("; "))
}

fn sha(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn read_secret(p: &std::path::Path, what: &str) -> Result<String> {
    let t = std::fs::read_to_string(p).with_context(|| format!("{what}: cannot read {}", p.display()))?;
    let t = t.trim().to_string();
    if t.len() < 16 {
        return Err(anyhow!("{what}: {} must hold a secret of at least 16 characters", p.display()));
    }
    Ok(t)
}

impl App {
    /// Open storage, load keys and secrets.
    pub async fn open(cfg: OriginConfig) -> Result<App> {
        let backend = match &cfg.storage.remote {
            None => crate::store::Backend::Local { synchronous: cfg.storage.synchronous.clone() },
            Some(r) => crate::store::Backend::Remote {
                url: r.url.clone(),
                token: match &r.auth_token_env {
                    Some(var) => {
                        std::env::var(var).map_err(|_| anyhow!("storage.remote.auth_token_env: `{var}` is not set"))?
                    }
                    None => String::new(),
                },
                sync: std::time::Duration::from_secs(r.sync_secs),
            },
        };
        let store = Store::open(&cfg.data_dir, backend, cfg.storage.max_open_tenants).await?;
        let now = crate::now();
        let keys = SigningKeys::load(&*store.directory.lock().await, &cfg.tokens.alg, now).await?;
        let passwords = Passwords::new(&cfg.signin)?;
        let template = match &cfg.bundle.template {
            Some(p) => gatehouse_bundler::load_policy(p).map_err(|e| anyhow!("{e}"))?,
            None => bundles::default_template(),
        };
        template_acceptable(&template).map_err(|e| anyhow!("bundle.template: {e}"))?;
        // A template set through the API overrides the file.
        let stored: Option<String> =
            one(&*store.directory.lock().await, "SELECT value FROM settings WHERE key = 'template'", ()).await?;
        let template = match stored {
            Some(json) => {
                let p: Policy = serde_json::from_str(&json).context("stored template")?;
                template_acceptable(&p).map_err(|e| anyhow!("stored template: {e}"))?;
                p
            }
            None => template,
        };
        let bundle_key = gatehouse_bundler::keys::read_signing_key(&cfg.secrets.bundle_signing_key)
            .map_err(|e| anyhow!("secrets.bundle_signing_key: {e}"))?;
        let edge_text = std::fs::read_to_string(&cfg.secrets.edge_tokens)
            .with_context(|| format!("secrets.edge_tokens: cannot read {}", cfg.secrets.edge_tokens.display()))?;
        let mut edge_tokens = Vec::new();
        for (i, line) in edge_text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, token) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| anyhow!("secrets.edge_tokens line {}: expected `name token`", i + 1))?;
            if token.trim().len() < 16 {
                return Err(anyhow!("secrets.edge_tokens line {}: token shorter than 16 characters", i + 1));
            }
            edge_tokens.push((name.to_string(), sha(token.trim())));
        }
        let operator_hash = sha(&read_secret(&cfg.secrets.operator_token, "secrets.operator_token")?);
        let peer_token = read_secret(&cfg.secrets.peer_token, "secrets.peer_token")?;
        let api_key_secret = gatehouse_core::secrets::decode_secret(&read_secret(
            &cfg.secrets.api_key_secret,
            "secrets.api_key_secret",
        )?)
        .map_err(|_| anyhow!("secrets.api_key_secret: must be base64 of at least 32 bytes"))?;
        let sso_key: [u8; 32] = match &cfg.secrets.sso_key {
            Some(p) => {
                use base64::Engine as _;
                let text = read_secret(p, "secrets.sso_key")?;
                base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .ok()
                    .and_then(|k| <[u8; 32]>::try_from(k).ok())
                    .ok_or_else(|| anyhow!("secrets.sso_key: must be base64 of exactly 32 bytes"))?
            }
            None => {
                let mut h = Sha256::new();
                h.update(b"gatehouse sso secret key\0");
                h.update(bundle_key);
                h.finalize().into()
            }
        };
        let rp = crate::sso::oidc::RelyingParty::new(
            crate::sso::http::IdpHttp::new(
                std::time::Duration::from_secs(cfg.sso.http_timeout_secs),
                cfg.sso.allow_http_loopback,
            ),
            std::time::Duration::from_secs(cfg.sso.metadata_ttl_secs),
        );
        Ok(App {
            sso_box: crate::sso::SecretBox::new(&sso_key),
            rp,
            store,
            keys: std::sync::RwLock::new(Arc::new(keys)),
            passwords,
            template: std::sync::RwLock::new(Arc::new(template)),
            bundle_key,
            edge_tokens,
            operator_hash,
            peer_hash: sha(&peer_token),
            peer_token,
            api_key_secret,
            changes: AtomicU64::new(1),
            bundle: tokio::sync::Mutex::new(None),
            csrf_key: {
                let mut h = Sha256::new();
                h.update(b"gatehouse sign-in form csrf\0");
                h.update(bundle_key);
                h.finalize().into()
            },
            mailer: match &cfg.signin.mail_dir {
                Some(dir) => Box::new(crate::mailer::FileMailer { dir: dir.clone() }),
                None => Box::new(crate::mailer::LogMailer),
            },
            cfg,
        })
    }

    /// The id of tenant `slug` if it is homed in this region.
    pub async fn tenant_id(&self, slug: &str) -> Result<Option<String>> {
        let d = self.store.directory.lock().await;
        one(
            &d,
            "SELECT id FROM tenants WHERE slug = ?1 AND home_region = ?2",
            libsql::params![slug, self.cfg.region.as_str()],
        )
        .await
    }

    /// `; Secure` when the origin is served over TLS.
    fn secure_cookie(&self) -> &'static str {
        if self.cfg.public_url.starts_with("https://") {
            "; Secure"
        } else {
            ""
        }
    }

    /// The region-wide policy template in force.
    pub fn template(&self) -> Arc<Policy> {
        self.template.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn keys(&self) -> Arc<SigningKeys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Note a change that edges must see (policy, keys, revocations).
    pub fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// The current bundle (rebuilt when something changed or a quarter of its life has
    /// passed).
    pub async fn bundle(&self) -> Result<(Arc<Vec<u8>>, String)> {
        let mut b = self.bundle.lock().await;
        let now = crate::now();
        let change = self.changes.load(Ordering::SeqCst);
        if let Some(built) = b.as_ref() {
            if built.change == change && now - built.built_at < (self.cfg.bundle.ttl_secs / 4) as i64 {
                return Ok((built.bytes.clone(), built.etag.clone()));
            }
        }
        let keys = self.keys();
        let template = self.template();
        let region = bundles::Region {
            template: &template,
            public_url: &self.cfg.public_url,
            audience: &self.cfg.tokens.audience,
            jwks: &keys.jwks,
            region: &self.cfg.region,
        };
        let policy = bundles::region_policy(&self.store, &region, now).await?;
        // Revisions only grow, also across restarts: milliseconds since the epoch.
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let revision = ms.max(b.as_ref().map(|x| x.revision + 1).unwrap_or(0));
        let bytes =
            bundles::sign(policy, &self.cfg.region, revision, now as u64, self.cfg.bundle.ttl_secs, &self.bundle_key)?;
        let etag = format!("\"{revision}\"");
        let bytes = Arc::new(bytes);
        *b = Some(Built { change, revision, built_at: now, bytes: bytes.clone(), etag: etag.clone() });
        Ok((bytes, etag))
    }
}

/// Serve the API on `listener` until `shutdown`.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let peers = app.clone();
    tokio::spawn(async move { pull_directory_loop(peers).await });
    axum::serve(listener, router(app).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// The router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/openapi.json", get(openapi))
        .route("/t/{slug}/.well-known/openid-configuration", get(discovery))
        .route("/t/{slug}/.well-known/jwks.json", get(jwks))
        .route("/t/{slug}/token", post(token))
        .route("/t/{slug}/logout", post(logout))
        .route("/t/{slug}/revoke", post(revoke))
        .route("/t/{slug}/login", get(login_form).post(login_submit))
        .route("/t/{slug}/sso/discover", get(sso_routes::discover))
        .route("/t/{slug}/sso/{id}/start", get(sso_routes::start))
        .route("/t/{slug}/sso/{id}/callback", get(sso_routes::callback))
        .route("/t/{slug}/sso/{id}/saml/metadata", get(sso_routes::saml_metadata))
        .route("/t/{slug}/sso/{id}/saml/acs", post(sso_routes::saml_acs))
        .route("/t/{slug}/password/change", post(change_password))
        .route("/t/{slug}/password/reset-request", post(reset_request))
        .route("/t/{slug}/password/reset", post(reset_password))
        .route("/v1/orgs", post(create_org).get(list_orgs))
        .route("/v1/keys/rotate", post(rotate_keys))
        .route("/v1/policy/template", get(get_template).put(put_template))
        .route("/v1/orgs/{slug}", get(get_org))
        .route("/v1/orgs/{slug}/policy", put(put_policy))
        .route("/v1/orgs/{slug}/users", get(list_users).post(create_user))
        .route("/v1/orgs/{slug}/users/{id}", delete(delete_user))
        .route("/v1/orgs/{slug}/users/{id}/role", put(set_role))
        .route("/v1/orgs/{slug}/roles", get(list_roles))
        .route("/v1/orgs/{slug}/roles/{name}", put(put_role))
        .route("/v1/orgs/{slug}/teams", get(list_teams).post(create_team))
        .route("/v1/orgs/{slug}/teams/{id}/members/{user}", put(add_team_member))
        .route("/v1/orgs/{slug}/api-keys", get(list_keys).post(create_key))
        .route("/v1/orgs/{slug}/api-keys/{id}/rotate", post(rotate_key))
        .route("/v1/orgs/{slug}/api-keys/{id}", delete(revoke_key))
        .route("/v1/orgs/{slug}/sessions/{id}/revoke", post(revoke_session))
        .route("/v1/orgs/{slug}/sso/connections", get(sso_routes::list).post(sso_routes::create))
        .route(
            "/v1/orgs/{slug}/sso/connections/{id}",
            get(sso_routes::get_one).put(sso_routes::replace).delete(sso_routes::remove),
        )
        .route("/v1/orgs/{slug}/sso/enforcement", get(sso_routes::get_enforcement).put(sso_routes::put_enforcement))
        .route("/v1/orgs/{slug}/audit", get(query_audit))
        .route("/v1/orgs/{slug}/audit/verify", get(verify_audit))
        .route("/v1/orgs/{slug}/audit/edge", get(list_edge_events))
        .route("/v1/orgs/{slug}/audit/retention", put(set_retention))
        .route("/v1/orgs/{slug}/audit/holds", post(add_hold))
        .route("/v1/orgs/{slug}/audit/purge", post(purge_audit))
        .route("/v1/bundles/{region}", get(get_bundle))
        .route("/v1/audit/edge", post(edge_audit))
        .route("/v1/directory", get(get_directory).post(post_directory))
        .fallback(|| async { ApiError::NoRoute(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::NoRoute(StatusCode::METHOD_NOT_ALLOWED, "this route does not take that method")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

type AppState = State<Arc<App>>;
type Peer = ConnectInfo<SocketAddr>;

fn meta(headers: &HeaderMap, peer: &SocketAddr) -> RequestMeta {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(256).collect::<String>());
    RequestMeta {
        ip: Some(peer.ip().to_string()),
        user_agent: h("user-agent"),
        request_id: h("x-request-id").filter(|s| !s.is_empty()).unwrap_or_else(|| new_id("r_")),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers.get("accept").and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

// ---------------------------------------------------------------------------------------
// Tenants and residency

struct Tenant {
    id: String,
    slug: String,
    db: Arc<Db>,
}

fn valid_slug(s: &str) -> bool {
    (2..=40).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The tenant `slug`, if it is homed here; 421 with the right region's URL otherwise.
async fn tenant(app: &App, slug: &str, path: &str) -> ApiResult<Tenant> {
    if !valid_slug(slug) {
        return Err(ApiError::NotFound("tenant_not_found", "no such organisation".into()));
    }
    let row = {
        let d = app.store.directory.lock().await;
        let mut rows = d.query("SELECT id, home_region FROM tenants WHERE slug = ?1", [slug]).await?;
        match rows.next().await? {
            Some(r) => Some((r.get::<String>(0)?, r.get::<String>(1)?)),
            None => None,
        }
    };
    let Some((id, home)) = row else {
        return Err(ApiError::NotFound("tenant_not_found", "no such organisation".into()));
    };
    if home != app.cfg.region {
        let base = app.cfg.regions.get(&home).cloned().unwrap_or_default();
        return Err(ApiError::WrongRegion { region: home, url: format!("{base}{path}") });
    }
    let db = app.store.tenant(&id, false).await?;
    Ok(Tenant { id, slug: slug.to_string(), db })
}

/// A wrong-region answer for a browser is a redirect.
fn residency(e: ApiError, headers: &HeaderMap) -> Response {
    match e {
        ApiError::WrongRegion { url, .. } if wants_html(headers) && !url.is_empty() => {
            let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
            if let Ok(v) = HeaderValue::from_str(&url) {
                r.headers_mut().insert("location", v);
            }
            r
        }
        e => e.into_response(),
    }
}

// ---------------------------------------------------------------------------------------
// Callers and permissions

#[derive(Debug, Clone)]
enum Caller {
    Operator,
    User { org: String, user: String, roles: Vec<String>, scopes: Option<Vec<String>>, sid: String },
}

impl Caller {
    fn actor(&self) -> String {
        match self {
            Caller::Operator => "operator".into(),
            Caller::User { user, .. } => format!("user:{user}"),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
struct OurClaims {
    org: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    sid: String,
}

fn verify_access(app: &App, token: &str, slug: Option<&str>) -> ApiResult<JWTClaims<OurClaims>> {
    let unauthorized = || ApiError::Unauthorized("token_invalid", "the access token is not valid".into());
    let keys = app.keys();
    let mut opts = VerificationOptions {
        allowed_audiences: Some(HashSet::from([app.cfg.tokens.audience.clone()])),
        ..Default::default()
    };
    if let Some(s) = slug {
        opts.allowed_issuers = Some(HashSet::from([app.cfg.issuer(s)]));
    }
    opts.max_token_length = Some(8192);
    keys.verify::<OurClaims>(token, opts).map_err(|_| unauthorized())
}

async fn caller(app: &App, headers: &HeaderMap, slug: &str) -> ApiResult<Caller> {
    let token = bearer(headers)
        .ok_or_else(|| ApiError::Unauthorized("credential_missing", "a bearer token is required".into()))?;
    if bool::from(sha(token).ct_eq(&app.operator_hash)) {
        return Ok(Caller::Operator);
    }
    // A token of another tenant does not verify here (its issuer differs).
    let c = verify_access(app, token, Some(slug)).map_err(|e| match e {
        ApiError::Unauthorized(..) => {
            ApiError::Forbidden("wrong_tenant", "credential is not valid for this organisation".into())
        }
        e => e,
    })?;
    let user = c.subject.clone().unwrap_or_default();
    Ok(Caller::User {
        org: c.custom.org.clone(),
        user,
        roles: c.custom.roles.clone(),
        scopes: c.custom.scope.as_ref().map(|s| s.split_whitespace().map(String::from).collect()),
        sid: c.custom.sid.clone(),
    })
}

/// Authorise `caller` for `need` in tenant `t` (checks revocation of the session too).
async fn authorise(c: &Caller, t: &Tenant, need: &str) -> ApiResult<()> {
    let Caller::User { org, roles, scopes, sid, user } = c else { return Ok(()) };
    if org != &t.slug {
        return Err(ApiError::Forbidden("wrong_tenant", "credential is not valid for this organisation".into()));
    }
    let h = t.db.lock().await;
    let now = crate::now();
    let live: Option<i64> = one(
        &h,
        "SELECT 1 FROM sessions WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL AND expires_at > ?3",
        libsql::params![sid.as_str(), user.as_str(), now],
    )
    .await?;
    if live.is_none() {
        return Err(ApiError::Unauthorized("session_revoked", "the session has ended".into()));
    }
    let need_p = Permission::parse(need).ok_or_else(|| anyhow!("bad permission {need}"))?;
    let mut granted: Vec<String> = Vec::new();
    for r in roles {
        if let Some((_, perms)) = BUILTIN_ROLES.iter().find(|(b, _)| b == r) {
            granted.extend(perms.iter().map(|p| p.to_string()));
        } else if let Some(p) = one::<String>(&h, "SELECT permissions FROM roles WHERE name = ?1", [r.as_str()]).await?
        {
            granted.extend(serde_json::from_str::<Vec<String>>(&p).unwrap_or_default());
        }
    }
    let covers = |list: &[String]| list.iter().filter_map(|g| Permission::parse(g)).any(|g| g.covers(&need_p));
    let ok = covers(&granted) && scopes.as_ref().is_none_or(|s| covers(s));
    if !ok {
        return Err(ApiError::Forbidden("permission_denied", format!("needs `{need}`")));
    }
    Ok(())
}

/// The permission route `method path` needs, from [`ROUTES`] (the one place it is
/// written).
fn permission_of(method: &str, matched: &str) -> Option<&'static str> {
    ROUTES.iter().find(|(m, p, _, _)| *m == method && *p == matched).map(|(_, _, need, _)| *need)
}

/// A tenant admin request, resolved and authorised before any body is read: the tenant
/// (homed here; 421 or a redirect otherwise) and a caller holding the permission that
/// [`ROUTES`] names for the matched route.
pub struct Authed {
    t: Tenant,
    caller: Caller,
}

impl axum::extract::FromRequestParts<Arc<App>> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, app: &Arc<App>) -> Result<Self, Response> {
        let run = async {
            let matched = parts.extensions.get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_default();
            let need = permission_of(parts.method.as_str(), &matched)
                .filter(|n| n.contains(':'))
                .ok_or_else(|| anyhow!("route {} {matched} has no tenant permission in ROUTES", parts.method))?;
            let slug = parts.uri.path().strip_prefix("/v1/orgs/").and_then(|r| r.split('/').next()).unwrap_or_default();
            let t = tenant(app, slug, parts.uri.path()).await?;
            let caller = caller(app, &parts.headers, slug).await?;
            authorise(&caller, &t, need).await?;
            ApiResult::Ok(Authed { t, caller })
        };
        run.await.map_err(|e| residency(e, &parts.headers))
    }
}

/// A JSON body; a malformed one is a 400 `invalid_body` (413 `body_too_large` over the
/// limit) with a JSON error like every other refusal.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge),
            Err(e) => Err(bad("invalid_body", e.body_text())),
        }
    }
}

/// A raw body, bounded like the others.
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => Ok(RawBody(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge),
            Err(e) => Err(bad("invalid_body", e.body_text())),
        }
    }
}

/// Query parameters; unknown or malformed ones are a 400 `invalid_query`.
pub struct QueryParams<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryParams(v))
            .map_err(|e| bad("invalid_query", e.body_text()))
    }
}

fn require_operator(app: &App, headers: &HeaderMap) -> ApiResult<()> {
    let token = bearer(headers)
        .ok_or_else(|| ApiError::Unauthorized("credential_missing", "a bearer token is required".into()))?;
    if bool::from(sha(token).ct_eq(&app.operator_hash)) {
        Ok(())
    } else {
        Err(ApiError::Forbidden("operator_only", "only the platform operator may do this".into()))
    }
}

fn edge_name(app: &App, headers: &HeaderMap) -> ApiResult<String> {
    let token = bearer(headers)
        .ok_or_else(|| ApiError::Unauthorized("credential_missing", "an edge token is required".into()))?;
    let h = sha(token);
    // Compare against every entry (no early exit).
    let mut found = None;
    for (name, want) in &app.edge_tokens {
        if bool::from(h.ct_eq(want)) {
            found = Some(name.clone());
        }
    }
    found.ok_or_else(|| ApiError::Unauthorized("edge_token_invalid", "unknown edge token".into()))
}

/// Start a write transaction on the tenant's database. An early return drops the
/// transaction uncommitted (the next holder rolls it back).
async fn begin(t: &Tenant) -> ApiResult<Held<'_>> {
    let h = t.db.lock().await;
    h.execute("BEGIN IMMEDIATE", ()).await?;
    Ok(h)
}

/// Append `events` to the audit log, commit, and record the new audit head in the
/// directory database.
async fn commit(app: &App, t: &Tenant, h: Held<'_>, meta: &RequestMeta, events: Vec<Event>) -> ApiResult<()> {
    let now = crate::now() as u64;
    let mut head = None;
    for e in &events {
        head = Some(audit::append(&h, e, meta, now).await?);
    }
    h.execute("COMMIT", ()).await?;
    drop(h);
    if let Some((seq, hash)) = head {
        record_head(app, &t.id, seq, &hash).await?;
    }
    Ok(())
}

async fn record_head(app: &App, tenant_id: &str, seq: i64, hash: &str) -> ApiResult<()> {
    let d = app.store.directory.lock().await;
    d.execute(
        "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (?1, ?2, ?3)
         ON CONFLICT(tenant_id) DO UPDATE SET seq = ?2, hash = ?3 WHERE excluded.seq > audit_heads.seq",
        libsql::params![tenant_id, seq, hash],
    )
    .await?;
    Ok(())
}

fn ev(
    actor: impl Into<String>,
    action: &'static str,
    target: impl Into<String>,
    before: Option<Value>,
    after: Option<Value>,
) -> Event {
    Event { actor: actor.into(), action, target: target.into(), before, after }
}

// ---------------------------------------------------------------------------------------
// Discovery and tokens

async fn openapi() -> Json<Value> {
    let mut paths = serde_json::Map::new();
    for (method, path, need, summary) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let security = match *need {
            "public" => json!([]),
            "edge" => json!([{ "edgeToken": [] }]),
            "peer" => json!([{ "peerToken": [] }]),
            "operator" => json!([{ "operatorToken": [] }]),
            _ => json!([{ "accessToken": [need] }, { "operatorToken": [] }]),
        };
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        entry[method.to_ascii_lowercase()] = json!({
            "summary": summary,
            "x-permission": need,
            "security": security,
            "parameters": params,
            "responses": {
                "200": { "description": "Success" },
                "4XX": { "description": "Refused", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        });
    }
    Json(json!({
        "openapi": "3.1.0",
        "info": { "title": "Gatehouse origin API", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "schemas": { "Error": { "type": "object", "required": ["error", "message"], "properties": {
                "error": { "type": "string", "description": "Stable reason code" },
                "message": { "type": "string" } } } },
            "securitySchemes": {
                "accessToken": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                "operatorToken": { "type": "http", "scheme": "bearer" },
                "edgeToken": { "type": "http", "scheme": "bearer" },
                "peerToken": { "type": "http", "scheme": "bearer" }
            }
        }
    }))
}

async fn discovery(State(app): AppState, Path(slug): Path<String>, headers: HeaderMap) -> Response {
    let path = format!("/t/{slug}/.well-known/openid-configuration");
    match tenant(&app, &slug, &path).await {
        Err(e) => residency(e, &headers),
        Ok(t) => {
            let iss = app.cfg.issuer(&t.slug);
            Json(json!({
                "issuer": iss,
                "jwks_uri": format!("{iss}/.well-known/jwks.json"),
                "token_endpoint": format!("{iss}/token"),
                "revocation_endpoint": format!("{iss}/revoke"),
                "end_session_endpoint": format!("{iss}/logout"),
                "grant_types_supported": ["password", "refresh_token"],
                "id_token_signing_alg_values_supported": [app.cfg.tokens.alg],
                "token_endpoint_auth_methods_supported": ["none"],
                "response_types_supported": ["token"],
                "subject_types_supported": ["public"],
                "claims_supported": ["sub", "org", "roles", "scope", "teams", "sid", "amr", "jti", "iss", "aud", "exp", "iat"]
            }))
            .into_response()
        }
    }
}

async fn jwks(State(app): AppState, Path(slug): Path<String>, headers: HeaderMap) -> Response {
    match tenant(&app, &slug, &format!("/t/{slug}/.well-known/jwks.json")).await {
        Err(e) => residency(e, &headers),
        Ok(_) => {
            let mut r = app.keys().jwks.clone().into_response();
            r.headers_mut().insert("content-type", HeaderValue::from_static("application/jwk-set+json"));
            r.headers_mut().insert("cache-control", HeaderValue::from_static("max-age=300"));
            r
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    grant_type: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// Roles and teams of `user` now (membership expiry honoured).
async fn grants_of(h: &libsql::Connection, user: &str, now: i64) -> Result<(Vec<String>, Vec<String>)> {
    let role: Option<String> = one(
        h,
        "SELECT role FROM memberships WHERE user_id = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        libsql::params![user, now],
    )
    .await?;
    let mut teams = Vec::new();
    let mut rows = h
        .query(
            "SELECT t.name FROM team_members m JOIN teams t ON t.id = m.team_id WHERE m.user_id = ?1 ORDER BY t.name",
            [user],
        )
        .await?;
    while let Some(r) = rows.next().await? {
        teams.push(r.get::<String>(0)?);
    }
    Ok((role.into_iter().collect(), teams))
}

fn parse_scope(s: Option<&str>) -> ApiResult<Option<Vec<String>>> {
    let Some(s) = s else { return Ok(None) };
    let v: Vec<String> = s.split_whitespace().map(String::from).collect();
    if v.len() > 32 || v.iter().any(|p| !gatehouse_core::policy::valid_permission(p)) {
        return Err(bad("invalid_scope", "scope must be up to 32 `resource:action` permissions"));
    }
    Ok(Some(v))
}

async fn token(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    match token_inner(&app, &slug, &peer, &headers, &body).await {
        Ok(v) => {
            let mut r = Json(v).into_response();
            r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => residency(e, &headers),
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> ApiResult<T> {
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if form {
        serde_urlencoded_from(body)
    } else {
        serde_json::from_slice(body).map_err(|e| bad("invalid_body", format!("invalid JSON body: {e}")))
    }
}

fn serde_urlencoded_from<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_urlencoded::from_bytes::<T>(body).map_err(|e| bad("invalid_body", format!("invalid form body: {e}")))
}

async fn token_inner(app: &App, slug: &str, peer: &SocketAddr, headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let t = tenant(app, slug, &format!("/t/{slug}/token")).await?;
    let req: TokenRequest = parse_body(headers, body)?;
    let m = meta(headers, peer);
    let now = crate::now();
    let scopes = parse_scope(req.scope.as_deref())?;
    match req.grant_type.as_str() {
        "password" => {
            let (Some(email), Some(password)) = (req.email.as_deref(), req.password.as_deref()) else {
                return Err(bad("invalid_request", "password grant needs email and password"));
            };
            let s = password_session(app, &t, &m, email, password).await?;
            issue(app, &t, &m, s, scopes).await
        }
        "refresh_token" => {
            let Some(rt) = req.refresh_token.as_deref() else {
                return Err(bad("invalid_request", "refresh_token grant needs refresh_token"));
            };
            if rt.len() > 128 {
                return Err(ApiError::InvalidGrant);
            }
            let h = begin(&t).await?;
            match tokens::use_refresh(&h, rt, now).await? {
                RefreshOutcome::Invalid => Err(ApiError::InvalidGrant),
                RefreshOutcome::Reused { session, user } => {
                    app.changed();
                    commit(
                        app,
                        &t,
                        h,
                        &m,
                        vec![ev(
                            "system",
                            "token.refresh_reuse",
                            format!("session:{session}"),
                            None,
                            Some(json!({ "user": user, "revoked": "session and refresh-token family" })),
                        )],
                    )
                    .await?;
                    Err(ApiError::InvalidGrant)
                }
                RefreshOutcome::Rotate { session, user, family } => {
                    let amr: String = one(&h, "SELECT amr FROM sessions WHERE id = ?1", [session.as_str()])
                        .await?
                        .unwrap_or_default();
                    let amr: Vec<String> = serde_json::from_str(&amr).unwrap_or_default();
                    let events =
                        vec![ev(format!("user:{user}"), "token.refresh", format!("session:{session}"), None, None)];
                    let s = Session { held: h, user, sid: session, family, amr, events };
                    issue(app, &t, &m, s, scopes).await
                }
            }
        }
        _ => Err(bad("unsupported_grant_type", "grant_type must be password or refresh_token")),
    }
}

/// A signed-in session, its transaction still open.
struct Session<'t> {
    held: Held<'t>,
    user: String,
    sid: String,
    family: String,
    amr: Vec<String>,
    events: Vec<Event>,
}

/// Check a password and open a session (the caller issues tokens and commits). Every
/// failure is the same `invalid_credentials`, and is audited.
async fn password_session<'t>(
    app: &App,
    t: &'t Tenant,
    m: &RequestMeta,
    email: &str,
    password: &str,
) -> ApiResult<Session<'t>> {
    if password.len() > identity::MAX_PASSWORD {
        return Err(ApiError::InvalidCredentials);
    }
    let email = identity::normalise_email(email).ok_or(ApiError::InvalidCredentials)?;
    let now = crate::now();
    let h = begin(t).await?;
    let outcome = identity::check_password(&h, &app.passwords, &app.cfg.signin, &email, password, now).await?;
    let user = match outcome {
        SigninOutcome::Success(u) => u,
        other => {
            let (actor, action, target) = match &other {
                SigninOutcome::UnknownUser => ("anonymous".to_string(), "signin.failure", format!("email:{email}")),
                SigninOutcome::Locked(u) => (format!("user:{u}"), "signin.locked", format!("user:{u}")),
                SigninOutcome::WrongPassword { user, locked: true } => {
                    (format!("user:{user}"), "signin.lockout", format!("user:{user}"))
                }
                SigninOutcome::WrongPassword { user, .. } => {
                    (format!("user:{user}"), "signin.failure", format!("user:{user}"))
                }
                SigninOutcome::Success(_) => unreachable!("handled above"),
            };
            commit(app, t, h, m, vec![ev(actor, action, target, None, None)]).await?;
            return Err(ApiError::InvalidCredentials);
        }
    };
    // An organisation that enforces SSO refuses passwords, except its break-glass owner.
    // Checked after the password, so the answer says nothing to someone without it.
    if sso_routes::sso_enforced_for(&h, &email).await? {
        let actor = format!("user:{user}");
        commit(app, t, h, m, vec![ev(actor.clone(), "signin.sso_required", actor, None, None)]).await?;
        return Err(ApiError::Forbidden("sso_required", "this organisation signs in with single sign-on".into()));
    }
    let mut events = vec![ev(format!("user:{user}"), "signin.success", format!("user:{user}"), None, None)];
    let (sid, family) = open_session(app, &h, &user, &["pwd".to_string()], None, now, &mut events).await?;
    Ok(Session { held: h, user, sid, family, amr: vec!["pwd".to_string()], events })
}

/// Insert a session for `user` (with its authentication methods and identity provider)
/// and note it in `events`; its id and a new refresh-token family.
async fn open_session(
    app: &App,
    h: &libsql::Connection,
    user: &str,
    amr: &[String],
    idp: Option<&str>,
    now: i64,
    events: &mut Vec<Event>,
) -> ApiResult<(String, String)> {
    let sid = new_id("s_");
    h.execute(
        "INSERT INTO sessions (id, user_id, amr, idp, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        libsql::params![
            sid.as_str(),
            user,
            serde_json::to_string(amr)?,
            idp,
            now,
            now + app.cfg.tokens.session_ttl_secs as i64
        ],
    )
    .await?;
    events.push(ev(
        format!("user:{user}"),
        "session.create",
        format!("session:{sid}"),
        None,
        idp.map(|i| json!({ "idp": i })),
    ));
    Ok((sid, new_id("f_")))
}

/// Issue an access token and a refresh token for a session, append `events` and commit.
async fn issue(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    s: Session<'_>,
    scopes: Option<Vec<String>>,
) -> ApiResult<Value> {
    let now = crate::now();
    let Session { held: h, user, sid: session, family, amr, mut events } = s;
    let disabled: Option<i64> = one(&h, "SELECT disabled FROM users WHERE id = ?1", [user.as_str()]).await?;
    if disabled != Some(0) {
        return Err(ApiError::InvalidGrant);
    }
    let (roles, teams) = grants_of(&h, &user, now).await?;
    let refresh =
        tokens::new_refresh(&h, &family, &session, &user, now, app.cfg.tokens.refresh_ttl_secs as i64).await?;
    let issuer = app.cfg.issuer(&t.slug);
    let keys = app.keys();
    let (access, jti, exp) = tokens::access_token(
        &keys,
        &AccessGrant {
            issuer: &issuer,
            audience: &app.cfg.tokens.audience,
            subject: &user,
            org: &t.slug,
            roles: roles.clone(),
            scopes: scopes.clone(),
            teams,
            sid: &session,
            amr,
            ttl_secs: app.cfg.tokens.access_ttl_secs,
        },
    )?;
    events.push(ev(
        format!("user:{user}"),
        "token.issue",
        format!("jti:{jti}"),
        None,
        Some(json!({ "roles": roles, "expires_at": exp })),
    ));
    commit(app, t, h, m, events).await?;
    Ok(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": app.cfg.tokens.access_ttl_secs,
        "refresh_token": refresh,
        "scope": scopes.map(|s| s.join(" ")),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogoutRequest {
    #[serde(default)]
    refresh_token: Option<String>,
}

async fn logout(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/logout")).await?;
        let m = meta(&headers, &peer);
        let req: LogoutRequest =
            if body.is_empty() { LogoutRequest { refresh_token: None } } else { parse_body(&headers, &body)? };
        // The session: from the refresh token, or from the bearer access token.
        let h = begin(&t).await?;
        let session: Option<(String, String)> = if let Some(rt) = req.refresh_token.as_deref() {
            let mut rows = h
                .query("SELECT session_id, user_id FROM refresh_tokens WHERE hash = ?1", [tokens::secret_hash(rt)])
                .await?;
            match rows.next().await? {
                Some(r) => Some((r.get(0)?, r.get(1)?)),
                None => None,
            }
        } else if let Some(tok) = bearer(&headers) {
            let c = verify_access(&app, tok, Some(&t.slug))?;
            Some((c.custom.sid.clone(), c.subject.clone().unwrap_or_default()))
        } else {
            return Err(bad("invalid_request", "give a refresh_token or a bearer access token"));
        };
        let Some((sid, user)) = session else { return Err(ApiError::InvalidGrant) };
        end_session(&h, &sid, crate::now()).await?;
        app.changed();
        commit(
            &app,
            &t,
            h,
            &m,
            vec![ev(format!("user:{user}"), "session.logout", format!("session:{sid}"), None, None)],
        )
        .await?;
        ApiResult::Ok(StatusCode::NO_CONTENT)
    };
    match run.await {
        Ok(s) => s.into_response(),
        Err(e) => residency(e, &headers),
    }
}

/// End a session: revoked now, its refresh tokens spent.
async fn end_session(h: &libsql::Connection, sid: &str, now: i64) -> ApiResult<()> {
    h.execute("UPDATE sessions SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1", libsql::params![sid, now])
        .await?;
    h.execute(
        "UPDATE refresh_tokens SET used_at = COALESCE(used_at, ?2) WHERE session_id = ?1",
        libsql::params![sid, now],
    )
    .await?;
    Ok(())
}

async fn revoke(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/revoke")).await?;
        let tok = bearer(&headers).ok_or_else(|| {
            ApiError::Unauthorized("credential_missing", "send the access token to revoke as the bearer".into())
        })?;
        let c = verify_access(&app, tok, Some(&t.slug))?;
        let jti = c.jwt_id.clone().ok_or_else(|| bad("token_invalid", "token has no jti"))?;
        let exp = c.expires_at.map(|e| e.as_secs() as i64).unwrap_or(crate::now() + 900);
        let h = begin(&t).await?;
        h.execute(
            "INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2)",
            libsql::params![jti.as_str(), exp],
        )
        .await?;
        app.changed();
        let user = c.subject.clone().unwrap_or_default();
        commit(
            &app,
            &t,
            h,
            &meta(&headers, &peer),
            vec![ev(format!("user:{user}"), "token.revoke", format!("jti:{jti}"), None, None)],
        )
        .await?;
        ApiResult::Ok(StatusCode::NO_CONTENT)
    };
    match run.await {
        Ok(s) => s.into_response(),
        Err(e) => residency(e, &headers),
    }
}

// ---------------------------------------------------------------------------------------
// Organisations (operator)

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrg {
    slug: String,
    name: String,
    tier: String,
    #[serde(default)]
    home_region: Option<String>,
    owner_email: String,
    owner_password: String,
    #[serde(default)]
    policy: TenantPolicy,
}

/// Check a tenant policy by composing it with the template and validating the result.
fn check_tenant_policy(app: &App, slug: &str, tier: &str, tp: &TenantPolicy) -> ApiResult<()> {
    let mut p = (*app.template()).clone();
    p.orgs.insert(slug.to_string(), tp.clone().into_org(tier.to_string(), Default::default(), Vec::new(), None));
    p.validate().map_err(|issues| {
        bad(
            "invalid_policy",
            issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect::<Vec<_>>().join("; "),
        )
    })
}

async fn create_org(
    State(app): AppState,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CreateOrg>,
) -> ApiResult<Response> {
    require_operator(&app, &headers)?;
    if !valid_slug(&req.slug) {
        return Err(bad("invalid_slug", "slug: 2–40 of a-z, 0-9, - (not at either end)"));
    }
    if req.name.trim().is_empty() || req.name.len() > 200 {
        return Err(bad("invalid_name", "name: 1–200 bytes"));
    }
    let home = req.home_region.clone().unwrap_or_else(|| app.cfg.region.clone());
    if home != app.cfg.region {
        // Created where it lives, never here.
        let base = app.cfg.regions.get(&home).ok_or_else(|| bad("unknown_region", format!("no region `{home}`")))?;
        return Err(ApiError::WrongRegion { region: home, url: format!("{base}/v1/orgs") });
    }
    check_tenant_policy(&app, &req.slug, &req.tier, &req.policy)?;
    let email = identity::normalise_email(&req.owner_email)
        .ok_or_else(|| bad("invalid_email", "owner_email is not an email address"))?;
    identity::password_acceptable(&req.owner_password).map_err(|m| bad("weak_password", m))?;
    let id = new_id("t_");
    let now = crate::now();
    {
        let d = app.store.directory.lock().await;
        let taken: Option<String> = one(&d, "SELECT id FROM tenants WHERE slug = ?1", [req.slug.as_str()]).await?;
        if taken.is_some() {
            return Err(ApiError::Conflict("slug_taken", "an organisation with this slug exists".into()));
        }
        d.execute(
            "INSERT INTO tenants (id, slug, home_region, created_at) VALUES (?1, ?2, ?3, ?4)",
            libsql::params![id.as_str(), req.slug.as_str(), home.as_str(), now],
        )
        .await?;
    }
    let db = app.store.tenant(&id, true).await?;
    let t = Tenant { id: id.clone(), slug: req.slug.clone(), db };
    let hash = app.passwords.hash(&req.owner_password)?;
    let owner = new_id("u_");
    let h = begin(&t).await?;
    h.execute(
        "INSERT INTO org (id, tenant_id, slug, name, tier, policy, created_at) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
        libsql::params![
            id.as_str(),
            req.slug.as_str(),
            req.name.as_str(),
            req.tier.as_str(),
            serde_json::to_string(&req.policy)?,
            now
        ],
    )
    .await?;
    h.execute(
        "INSERT INTO users (id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        libsql::params![owner.as_str(), email.as_str(), hash, now],
    )
    .await?;
    h.execute("INSERT INTO memberships (user_id, role) VALUES (?1, 'owner')", [owner.as_str()]).await?;
    let after = json!({ "slug": req.slug, "name": req.name, "tier": req.tier, "region": home, "policy": req.policy });
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![
            ev("operator", "org.create", format!("org:{}", req.slug), None, Some(after)),
            ev(
                "operator",
                "user.create",
                format!("user:{owner}"),
                None,
                Some(json!({ "email": email, "role": "owner" })),
            ),
        ],
    )
    .await?;
    app.changed();
    push_directory(&app, &[(id.clone(), req.slug.clone(), home.clone(), now)]).await;
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "slug": req.slug, "region": home, "owner_id": owner, "issuer": app.cfg.issuer(&req.slug) }))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    email: Option<String>,
    /// Teams: only the children of this team.
    #[serde(default)]
    parent: Option<String>,
}

fn page_limit(p: &Page) -> i64 {
    p.limit.unwrap_or(50).clamp(1, 500) as i64
}

/// One page of a keyset-paginated list: `sql` takes the cursor as `?1` and the page size
/// as `?2`; each row becomes an item; when the page is full, the next cursor is the last
/// item's `key` field.
async fn page_of(
    h: &libsql::Connection,
    sql: &str,
    p: &Page,
    key: &str,
    mut item: impl FnMut(&libsql::Row) -> ApiResult<Value>,
) -> ApiResult<(Vec<Value>, Option<Value>)> {
    let mut rows = h.query(sql, libsql::params![p.after.clone().unwrap_or_default(), page_limit(p)]).await?;
    let mut items = Vec::new();
    while let Some(r) = rows.next().await? {
        items.push(item(&r)?);
    }
    let next = if items.len() as i64 == page_limit(p) { items.last().map(|i| i[key].clone()) } else { None };
    Ok((items, next))
}

async fn list_orgs(
    State(app): AppState,
    headers: HeaderMap,
    QueryParams(p): QueryParams<Page>,
) -> ApiResult<Json<Value>> {
    require_operator(&app, &headers)?;
    let d = app.store.directory.lock().await;
    let mut rows = d
        .query(
            "SELECT id, slug, home_region, created_at FROM tenants WHERE slug > ?1 ORDER BY slug LIMIT ?2",
            libsql::params![p.after.clone().unwrap_or_default(), page_limit(&p)],
        )
        .await?;
    let mut items = Vec::new();
    while let Some(r) = rows.next().await? {
        items.push(json!({ "id": r.get::<String>(0)?, "slug": r.get::<String>(1)?,
            "region": r.get::<String>(2)?, "created_at": r.get::<i64>(3)? }));
    }
    let next = if items.len() as i64 == page_limit(&p) { items.last().map(|i| i["slug"].clone()) } else { None };
    Ok(Json(json!({ "items": items, "next": next })))
}

async fn rotate_keys(State(app): AppState, headers: HeaderMap) -> ApiResult<Json<Value>> {
    require_operator(&app, &headers)?;
    let now = crate::now();
    let d = app.store.directory.lock().await;
    // Old keys stay published until every token they signed has expired.
    let kid = tokens::rotate(&d, &app.cfg.tokens.alg, now, app.cfg.tokens.access_ttl_secs as i64 + 60).await?;
    let keys = SigningKeys::load(&d, &app.cfg.tokens.alg, now).await?;
    drop(d);
    *app.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    app.changed();
    tracing::info!(kid = %kid, "token signing key rotated");
    Ok(Json(json!({ "kid": kid })))
}

async fn org_row(h: &libsql::Connection) -> ApiResult<(String, String, TenantPolicy, Option<i64>)> {
    let mut rows = h.query("SELECT name, tier, policy, retention_days FROM org WHERE id = 1", ()).await?;
    let r = rows.next().await?.ok_or_else(|| anyhow!("tenant database has no org row"))?;
    let tp: TenantPolicy = serde_json::from_str(&r.get::<String>(2)?)?;
    Ok((r.get(0)?, r.get(1)?, tp, r.get(3)?))
}

async fn get_org(State(app): AppState, Authed { t, .. }: Authed) -> ApiResult<Json<Value>> {
    let (name, tier, policy, retention) = org_row(&*t.db.lock().await).await?;
    Ok(Json(json!({ "id": t.id, "slug": t.slug, "name": name, "tier": tier, "region": app.cfg.region,
        "issuer": app.cfg.issuer(&t.slug), "policy": policy, "audit_retention_days": retention })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutPolicy {
    #[serde(default)]
    tier: Option<String>,
    policy: TenantPolicy,
}

async fn put_policy(
    State(app): AppState,
    authed: Authed,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<PutPolicy>,
) -> ApiResult<Json<Value>> {
    let Authed { t, caller: c } = authed;
    let h = begin(&t).await?;
    let (_, tier, before, _) = org_row(&h).await?;
    if req.tier.as_ref().is_some_and(|x| x != &tier) && !matches!(c, Caller::Operator) {
        return Err(ApiError::Forbidden("operator_only", "only the platform operator changes the tier".into()));
    }
    let tier = req.tier.clone().unwrap_or(tier);
    check_tenant_policy(&app, &t.slug, &tier, &req.policy)?;
    h.execute(
        "UPDATE org SET tier = ?1, policy = ?2 WHERE id = 1",
        libsql::params![tier.as_str(), serde_json::to_string(&req.policy)?],
    )
    .await?;
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(
            c.actor(),
            "org.policy",
            format!("org:{slug}"),
            Some(json!(before)),
            Some(json!({ "tier": tier, "policy": req.policy })),
        )],
    )
    .await?;
    app.changed();
    Ok(Json(json!({ "tier": tier, "policy": req.policy })))
}

// ---------------------------------------------------------------------------------------
// Users, roles, teams

async fn list_users(authed: Authed, QueryParams(p): QueryParams<Page>) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    let h = t.db.lock().await;
    let now = crate::now();
    let mut rows = h
        .query(
            &format!("SELECT {USER_COLUMNS} FROM {USER_FROM} WHERE u.id > ?1 AND (?2 IS NULL OR u.email = ?2) ORDER BY u.id LIMIT ?3"),
            libsql::params![p.after.clone().unwrap_or_default(), p.email.as_deref().and_then(identity::normalise_email), page_limit(&p)],
        )
        .await
        ?;
    let mut items: Vec<User> = Vec::new();
    while let Some(r) = rows.next().await? {
        items.push(identity::user_from_row(&r, now)?);
    }
    let next = if items.len() as i64 == page_limit(&p) { items.last().map(|u| u.id.clone()) } else { None };
    Ok(Json(json!({ "items": items, "next": next })))
}

fn role_rank(r: &str) -> Option<usize> {
    BUILTIN_ROLES.iter().position(|(b, _)| *b == r)
}

/// Whether `c` may hand out `role` (nobody grants more than they hold; only owners and
/// the operator make owners).
fn may_grant(c: &Caller, role: &str) -> bool {
    match c {
        Caller::Operator => true,
        Caller::User { roles, .. } => {
            let mine = roles.iter().filter_map(|r| role_rank(r)).min();
            match (role_rank(role), mine) {
                (Some(want), Some(have)) => have <= want && (role != "owner" || have == 0),
                (None, Some(have)) => have <= 1,
                _ => false,
            }
        }
    }
}

async fn role_exists(app: &App, h: &libsql::Connection, role: &str) -> ApiResult<bool> {
    Ok(role_rank(role).is_some()
        || app.template().roles.contains_key(role)
        || one::<String>(h, "SELECT name FROM roles WHERE name = ?1", [role]).await?.is_some())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: Option<String>,
    role: String,
    #[serde(default)]
    role_expires_at: Option<i64>,
}

async fn create_user(
    State(app): AppState,
    authed: Authed,

    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CreateUser>,
) -> ApiResult<Response> {
    let Authed { t, caller: c } = authed;
    let email = identity::normalise_email(&req.email).ok_or_else(|| bad("invalid_email", "not an email address"))?;
    if req.name.len() > 200 {
        return Err(bad("invalid_name", "name: at most 200 bytes"));
    }
    let hash = match req.password.as_deref() {
        Some(p) => {
            identity::password_acceptable(p).map_err(|m| bad("weak_password", m))?;
            Some(app.passwords.hash(p)?)
        }
        None => None,
    };
    if !may_grant(&c, &req.role) {
        return Err(ApiError::Forbidden("role_too_high", "you cannot grant a role above your own".into()));
    }
    let h = begin(&t).await?;
    if !role_exists(&app, &h, &req.role).await? {
        return Err(bad("unknown_role", format!("no role `{}`", req.role)));
    }
    if one::<String>(&h, "SELECT id FROM users WHERE email = ?1", [email.as_str()]).await?.is_some() {
        return Err(ApiError::Conflict("email_taken", "a user with this email exists".into()));
    }
    let id = new_id("u_");
    let now = crate::now();
    h.execute(
        "INSERT INTO users (id, email, name, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        libsql::params![id.as_str(), email.as_str(), req.name.as_str(), hash, now],
    )
    .await?;
    h.execute(
        "INSERT INTO memberships (user_id, role, expires_at) VALUES (?1, ?2, ?3)",
        libsql::params![id.as_str(), req.role.as_str(), req.role_expires_at],
    )
    .await?;
    let after = json!({ "email": email, "role": req.role, "role_expires_at": req.role_expires_at });
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(c.actor(), "user.create", format!("user:{id}"), None, Some(after))],
    )
    .await?;
    let user = identity::user_by_id(&*t.db.lock().await, &id, now).await?;
    Ok((StatusCode::CREATED, Json(json!(user))).into_response())
}

async fn delete_user(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let Authed { t, caller: c } = authed;
    let h = begin(&t).await?;
    let now = crate::now();
    let before = identity::user_by_id(&h, &id, now)
        .await?
        .ok_or_else(|| ApiError::NotFound("user_not_found", "no such user".into()))?;
    if let Some(r) = &before.role {
        if !may_grant(&c, r) {
            return Err(ApiError::Forbidden("role_too_high", "you cannot remove a user above your own role".into()));
        }
    }
    let mut rows = h.query("SELECT id FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL", [id.as_str()]).await?;
    let mut sessions = Vec::new();
    while let Some(r) = rows.next().await? {
        sessions.push(r.get::<String>(0)?);
    }
    drop(rows);
    for s in &sessions {
        end_session(&h, s, now).await?;
    }
    h.execute("DELETE FROM users WHERE id = ?1", [id.as_str()]).await?;
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(c.actor(), "user.delete", format!("user:{id}"), Some(json!(before)), None)],
    )
    .await?;
    app.changed();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRole {
    role: String,
    #[serde(default)]
    expires_at: Option<i64>,
}

async fn set_role(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<SetRole>,
) -> ApiResult<Json<Value>> {
    let Authed { t, caller: c } = authed;
    if !may_grant(&c, &req.role) {
        return Err(ApiError::Forbidden("role_too_high", "you cannot grant a role above your own".into()));
    }
    let h = begin(&t).await?;
    if !role_exists(&app, &h, &req.role).await? {
        return Err(bad("unknown_role", format!("no role `{}`", req.role)));
    }
    let before = identity::user_by_id(&h, &id, crate::now())
        .await?
        .ok_or_else(|| ApiError::NotFound("user_not_found", "no such user".into()))?;
    if let Some(r) = &before.role {
        if !may_grant(&c, r) {
            return Err(ApiError::Forbidden("role_too_high", "you cannot change a user above your own role".into()));
        }
    }
    h.execute("INSERT INTO memberships (user_id, role, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT(user_id) DO UPDATE SET role = ?2, expires_at = ?3",
        libsql::params![id.as_str(), req.role.as_str(), req.expires_at]).await?;
    let after = json!({ "role": req.role, "expires_at": req.expires_at });
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(
            c.actor(),
            "membership.set",
            format!("user:{id}"),
            Some(json!({ "role": before.role, "expires_at": before.role_expires_at })),
            Some(after.clone()),
        )],
    )
    .await?;
    Ok(Json(after))
}

async fn list_roles(authed: Authed, QueryParams(p): QueryParams<Page>) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    let h = t.db.lock().await;
    let sql = "SELECT name, permissions FROM roles WHERE name > ?1 ORDER BY name LIMIT ?2";
    let (items, next) = page_of(&h, sql, &p, "name", |r| {
        let perms: Value = serde_json::from_str(&r.get::<String>(1)?)?;
        Ok(json!({ "name": r.get::<String>(0)?, "permissions": perms }))
    })
    .await?;
    let builtin: Vec<Value> =
        BUILTIN_ROLES.iter().map(|(n, p)| json!({ "name": n, "permissions": p, "builtin": true })).collect();
    Ok(Json(json!({ "builtin": builtin, "items": items, "next": next })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutRole {
    permissions: Vec<String>,
}

async fn put_role(
    State(app): AppState,
    authed: Authed,
    Path((_, name)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<PutRole>,
) -> ApiResult<Json<Value>> {
    let Authed { t, caller: c } = authed;
    if role_rank(&name).is_some() || !valid_slug(&name) {
        return Err(bad("invalid_role", "custom role names: 2–40 of a-z, 0-9, -, and not a built-in role"));
    }
    if req.permissions.is_empty()
        || req.permissions.len() > 64
        || req.permissions.iter().any(|p| !gatehouse_core::policy::valid_permission(p))
    {
        return Err(bad("invalid_permission", "1–64 permissions of the form resource:action"));
    }
    let perms = serde_json::to_string(&req.permissions)?;
    let h = begin(&t).await?;
    let before: Option<String> = one(&h, "SELECT permissions FROM roles WHERE name = ?1", [name.as_str()]).await?;
    h.execute(
        "INSERT INTO roles (name, permissions) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET permissions = ?2",
        libsql::params![name.as_str(), perms.as_str()],
    )
    .await?;
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(
            c.actor(),
            "role.put",
            format!("role:{name}"),
            before.map(Value::String),
            Some(json!(req.permissions)),
        )],
    )
    .await?;
    app.changed();
    Ok(Json(json!({ "name": name, "permissions": req.permissions })))
}

async fn list_teams(authed: Authed, QueryParams(p): QueryParams<Page>) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    let h = t.db.lock().await;
    let mut rows = h
        .query(
            "SELECT id, name, parent_id, (SELECT COUNT(*) FROM team_members m WHERE m.team_id = teams.id) FROM teams
             WHERE name > ?1 AND (?2 IS NULL OR parent_id = ?2) ORDER BY name LIMIT ?3",
            libsql::params![p.after.clone().unwrap_or_default(), p.parent.clone(), page_limit(&p)],
        )
        .await?;
    let mut items = Vec::new();
    while let Some(r) = rows.next().await? {
        items.push(json!({ "id": r.get::<String>(0)?, "name": r.get::<String>(1)?,
            "parent_id": r.get::<Option<String>>(2)?, "members": r.get::<i64>(3)? }));
    }
    let next = if items.len() as i64 == page_limit(&p) { items.last().map(|i| i["name"].clone()) } else { None };
    Ok(Json(json!({ "items": items, "next": next })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTeam {
    name: String,
    #[serde(default)]
    parent_id: Option<String>,
}

async fn create_team(
    State(app): AppState,
    authed: Authed,

    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CreateTeam>,
) -> ApiResult<Response> {
    let Authed { t, caller: c } = authed;
    if !valid_slug(&req.name) {
        return Err(bad("invalid_name", "team names: 2–40 of a-z, 0-9, -"));
    }
    let h = begin(&t).await?;
    if let Some(p) = &req.parent_id {
        if one::<String>(&h, "SELECT id FROM teams WHERE id = ?1", [p.as_str()]).await?.is_none() {
            return Err(bad("unknown_team", "parent_id names no team"));
        }
    }
    if one::<String>(&h, "SELECT id FROM teams WHERE name = ?1", [req.name.as_str()]).await?.is_some() {
        return Err(ApiError::Conflict("team_exists", "a team with this name exists".into()));
    }
    let id = new_id("tm_");
    h.execute(
        "INSERT INTO teams (id, name, parent_id) VALUES (?1, ?2, ?3)",
        libsql::params![id.as_str(), req.name.as_str(), req.parent_id.clone()],
    )
    .await?;
    let after = json!({ "id": id, "name": req.name, "parent_id": req.parent_id });
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(c.actor(), "team.create", format!("team:{id}"), None, Some(after.clone()))],
    )
    .await?;
    Ok((StatusCode::CREATED, Json(after)).into_response())
}

async fn add_team_member(
    State(app): AppState,
    authed: Authed,
    Path((_, team, user)): Path<(String, String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let Authed { t, caller: c } = authed;
    let h = begin(&t).await?;
    if one::<String>(&h, "SELECT id FROM teams WHERE id = ?1", [team.as_str()]).await?.is_none() {
        return Err(ApiError::NotFound("team_not_found", "no such team".into()));
    }
    if one::<String>(&h, "SELECT id FROM users WHERE id = ?1", [user.as_str()]).await?.is_none() {
        return Err(ApiError::NotFound("user_not_found", "no such user".into()));
    }
    h.execute(
        "INSERT OR IGNORE INTO team_members (team_id, user_id) VALUES (?1, ?2)",
        libsql::params![team.as_str(), user.as_str()],
    )
    .await?;
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(c.actor(), "team.member_add", format!("team:{team}"), None, Some(json!({ "user": user })))],
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// API keys and sessions

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    expires_at: Option<i64>,
}

fn new_api_key(secret: &[u8]) -> (String, String, String) {
    let random: [u8; 41] = gatehouse_bundler::random::random_bytes();
    let (key, prefix) = gatehouse_core::apikey::generate(&random);
    let hash = gatehouse_core::apikey::hash_hex(secret, &key);
    (key, prefix, hash)
}

async fn list_keys(authed: Authed, QueryParams(p): QueryParams<Page>) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    let h = t.db.lock().await;
    let sql = "SELECT id, prefix, name, subject, roles, scopes, created_at, expires_at, revoked_at FROM api_keys
               WHERE id > ?1 ORDER BY id LIMIT ?2";
    let (items, next) = page_of(&h, sql, &p, "id", |r| {
        let g = |i| r.get::<String>(i);
        Ok(json!({ "id": g(0)?, "prefix": g(1)?, "name": g(2)?, "subject": g(3)?,
            "roles": serde_json::from_str::<Value>(&g(4)?)?, "scopes": serde_json::from_str::<Value>(&g(5)?)?,
            "created_at": r.get::<i64>(6)?, "expires_at": r.get::<Option<i64>>(7)?,
            "revoked_at": r.get::<Option<i64>>(8)? }))
    })
    .await?;
    Ok(Json(json!({ "items": items, "next": next })))
}

async fn create_key(
    State(app): AppState,
    authed: Authed,

    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CreateKey>,
) -> ApiResult<Response> {
    let Authed { t, caller: c } = authed;
    if req.name.trim().is_empty() || req.name.len() > 100 {
        return Err(bad("invalid_name", "name: 1–100 bytes"));
    }
    if req.scopes.len() > 32 || req.scopes.iter().any(|p| !gatehouse_core::policy::valid_permission(p)) {
        return Err(bad("invalid_scope", "scopes: up to 32 `resource:action` permissions"));
    }
    if req.expires_at.is_some_and(|e| e <= crate::now()) {
        return Err(bad("invalid_expiry", "expires_at is in the past"));
    }
    for r in &req.roles {
        if !may_grant(&c, r) {
            return Err(ApiError::Forbidden("role_too_high", "a key cannot carry a role above your own".into()));
        }
    }
    let h = begin(&t).await?;
    for r in &req.roles {
        if !role_exists(&app, &h, r).await? {
            return Err(bad("unknown_role", format!("no role `{r}`")));
        }
    }
    let (key, prefix, hash) = new_api_key(&app.api_key_secret);
    let id = new_id("ak_");
    h.execute("INSERT INTO api_keys (id, prefix, hash, name, subject, roles, scopes, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        libsql::params![id.as_str(), prefix.as_str(), hash, req.name.as_str(), format!("apikey:{id}"), serde_json::to_string(&req.roles)?,
            serde_json::to_string(&req.scopes)?, crate::now(), req.expires_at])
        .await
        ?;
    let after = json!({ "id": id, "prefix": prefix, "name": req.name, "roles": req.roles, "scopes": req.scopes, "expires_at": req.expires_at });
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(c.actor(), "api_key.create", format!("api_key:{id}"), None, Some(after.clone()))],
    )
    .await?;
    app.changed();
    let mut out = after;
    out["key"] = key.into();
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn rotate_key(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let Authed { t, caller: c } = authed;
    let h = begin(&t).await?;
    let old: Option<String> =
        one(&h, "SELECT prefix FROM api_keys WHERE id = ?1 AND revoked_at IS NULL", [id.as_str()]).await?;
    let old = old.ok_or_else(|| ApiError::NotFound("api_key_not_found", "no such active key".into()))?;
    let (key, prefix, hash) = new_api_key(&app.api_key_secret);
    h.execute(
        "UPDATE api_keys SET prefix = ?2, hash = ?3 WHERE id = ?1",
        libsql::params![id.as_str(), prefix.as_str(), hash],
    )
    .await?;
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(
            c.actor(),
            "api_key.rotate",
            format!("api_key:{id}"),
            Some(json!({ "prefix": old })),
            Some(json!({ "prefix": prefix })),
        )],
    )
    .await?;
    app.changed();
    Ok(Json(json!({ "id": id, "prefix": prefix, "key": key })))
}

async fn revoke_key(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let Authed { t, caller: c } = authed;
    let h = begin(&t).await?;
    let n = h
        .execute(
            "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            libsql::params![id.as_str(), crate::now()],
        )
        .await?;
    if n == 0 {
        return Err(ApiError::NotFound("api_key_not_found", "no such active key".into()));
    }
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(c.actor(), "api_key.revoke", format!("api_key:{id}"), None, None)],
    )
    .await?;
    app.changed();
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_session(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let Authed { t, caller: c } = authed;
    let h = begin(&t).await?;
    if one::<String>(&h, "SELECT id FROM sessions WHERE id = ?1", [id.as_str()]).await?.is_none() {
        return Err(ApiError::NotFound("session_not_found", "no such session".into()));
    }
    end_session(&h, &id, crate::now()).await?;
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(c.actor(), "session.revoke", format!("session:{id}"), None, None)],
    )
    .await?;
    app.changed();
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Audit

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    // Spelled out rather than `#[serde(flatten)]`: flattening makes every query value a
    // string, so `limit=10` failed to parse as a number.
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    since: Option<i64>,
    #[serde(default)]
    until: Option<i64>,
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    format: Option<String>,
}

fn csv_field(s: &str) -> String {
    // Quote always; a leading formula character is defused for spreadsheets.
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

async fn query_audit(authed: Authed, QueryParams(q): QueryParams<AuditQuery>) -> ApiResult<Response> {
    let Authed { t, .. } = authed;
    let filter = audit::Filter {
        action: q.action.clone(),
        actor: q.actor.clone(),
        since: q.since,
        until: q.until,
        after: q.after,
        limit: q.limit,
    };
    let records = audit::query(&*t.db.lock().await, &filter).await?;
    let next = records.last().map(|r| r.seq);
    Ok(match q.format.as_deref().unwrap_or("json") {
        "json" => Json(json!({ "items": records, "next_after": next })).into_response(),
        "jsonl" => {
            let mut out = String::new();
            for r in &records {
                out.push_str(&serde_json::to_string(r)?);
                out.push('\n');
            }
            ([("content-type", "application/x-ndjson")], out).into_response()
        }
        "csv" => {
            let mut out =
                String::from("seq,at,actor,action,target,before,after,ip,user_agent,request_id,prev_hash,hash\n");
            for r in &records {
                let cols = [
                    r.seq.to_string(),
                    r.at.to_string(),
                    r.actor.clone(),
                    r.action.clone(),
                    r.target.clone(),
                    r.before.clone().unwrap_or_default(),
                    r.after.clone().unwrap_or_default(),
                    r.ip.clone().unwrap_or_default(),
                    r.user_agent.clone().unwrap_or_default(),
                    r.request_id.clone().unwrap_or_default(),
                    r.prev_hash.clone(),
                    r.hash.clone(),
                ];
                out.push_str(&cols.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","));
                out.push('\n');
            }
            ([("content-type", "text/csv")], out).into_response()
        }
        _ => return Err(bad("invalid_format", "format: json, jsonl or csv")),
    })
}

/// Verify tenant `id`'s audit chain against the head kept in the directory.
pub async fn verify_tenant_audit(app: &App, tenant_id: &str) -> Result<audit::Verdict> {
    let head = {
        let d = app.store.directory.lock().await;
        let mut rows = d.query("SELECT seq, hash FROM audit_heads WHERE tenant_id = ?1", [tenant_id]).await?;
        match rows.next().await? {
            Some(r) => Some((r.get::<i64>(0)?, r.get::<String>(1)?)),
            None => None,
        }
    };
    let db = app.store.tenant(tenant_id, false).await?;
    let h = db.lock().await;
    audit::verify(&h, head).await
}

async fn verify_audit(State(app): AppState, authed: Authed) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    Ok(Json(match verify_tenant_audit(&app, &t.id).await? {
        audit::Verdict::Intact(n) => json!({ "intact": true, "records": n }),
        audit::Verdict::Broken { seq, problem } => json!({ "intact": false, "seq": seq, "problem": problem }),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Retention {
    days: Option<u32>,
}

async fn set_retention(
    State(app): AppState,
    authed: Authed,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<Retention>,
) -> ApiResult<Json<Value>> {
    let Authed { t, caller: c } = authed;
    if req.days.is_some_and(|d| !(1..=3650).contains(&d)) {
        return Err(bad("invalid_retention", "days: 1–3650, or null to keep everything"));
    }
    let h = begin(&t).await?;
    h.execute("UPDATE org SET retention_days = ?1 WHERE id = 1", [req.days.map(|d| d as i64)]).await?;
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(c.actor(), "audit.retention", format!("org:{slug}"), None, Some(json!({ "days": req.days })))],
    )
    .await?;
    Ok(Json(json!({ "days": req.days })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Hold {
    reason: String,
    from: i64,
    until: i64,
}

async fn add_hold(
    State(app): AppState,
    authed: Authed,

    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<Hold>,
) -> ApiResult<Response> {
    let Authed { t, caller: c } = authed;
    if req.reason.trim().is_empty() || req.reason.len() > 500 || req.from >= req.until {
        return Err(bad("invalid_hold", "reason (1–500 bytes) and from < until (Unix seconds)"));
    }
    let id = new_id("h_");
    let h = begin(&t).await?;
    h.execute(
        "INSERT INTO legal_holds (id, reason, from_at, until_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        libsql::params![id.as_str(), req.reason.as_str(), req.from, req.until, crate::now()],
    )
    .await?;
    let after = json!({ "id": id, "reason": req.reason, "from": req.from, "until": req.until });
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(c.actor(), "audit.hold", format!("hold:{id}"), None, Some(after.clone()))],
    )
    .await?;
    Ok((StatusCode::CREATED, Json(after)).into_response())
}

async fn purge_audit(
    State(app): AppState,
    authed: Authed,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let Authed { t, caller: c } = authed;
    let h = begin(&t).await?;
    let (_, _, _, days) = org_row(&h).await?;
    let Some(days) = days else { return Err(bad("no_retention", "no retention period is set")) };
    let n = audit::purge(&h, crate::now() - days * 86_400).await?;
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(c.actor(), "audit.purge", format!("org:{slug}"), None, Some(json!({ "purged": n })))],
    )
    .await?;
    Ok(Json(json!({ "purged": n })))
}

// ---------------------------------------------------------------------------------------
// Edges

async fn get_bundle(State(app): AppState, Path(region): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    let edge = edge_name(&app, &headers)?;
    if region != app.cfg.region {
        let base = app
            .cfg
            .regions
            .get(&region)
            .ok_or_else(|| ApiError::NotFound("unknown_region", format!("no region `{region}`")))?;
        return Err(ApiError::WrongRegion { region: region.clone(), url: format!("{base}/v1/bundles/{region}") });
    }
    let (bytes, etag) = app.bundle().await?;
    if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().insert("etag", HeaderValue::from_str(&etag).map_err(|e| ApiError::Internal(e.into()))?);
        return Ok(r);
    }
    tracing::debug!(edge = %edge, etag = %etag, "bundle served");
    let mut r = (*bytes).clone().into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/vnd.gatehouse.bundle"));
    r.headers_mut().insert("etag", HeaderValue::from_str(&etag).map_err(|e| ApiError::Internal(e.into()))?);
    Ok(r)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgeBatch {
    batch_id: String,
    events: Vec<EdgeEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgeEvent {
    org: String,
    at: i64,
    decision: String,
    reason: String,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
}

async fn edge_audit(
    State(app): AppState,
    headers: HeaderMap,
    JsonBody(b): JsonBody<EdgeBatch>,
) -> ApiResult<Json<Value>> {
    let edge = edge_name(&app, &headers)?;
    if b.batch_id.is_empty() || b.batch_id.len() > 100 || b.events.len() > 1000 {
        return Err(bad("invalid_batch", "batch_id 1–100 bytes, at most 1000 events"));
    }
    let batch = format!("{edge}:{}", b.batch_id);
    let seen: Option<String> =
        one(&*app.store.directory.lock().await, "SELECT id FROM edge_batches WHERE id = ?1", [batch.as_str()]).await?;
    if seen.is_some() {
        return Ok(Json(json!({ "accepted": 0, "duplicate": true })));
    }
    // Each event is written with a deterministic id (batch + index), so a retry after a
    // crash half-way through inserts only what is missing.
    let mut by_org: std::collections::BTreeMap<&str, Vec<(usize, &EdgeEvent)>> = Default::default();
    for (i, e) in b.events.iter().enumerate() {
        if e.decision.len() > 16 || e.reason.len() > 64 {
            return Err(bad("invalid_event", format!("events[{i}]: decision ≤ 16 and reason ≤ 64 bytes")));
        }
        by_org.entry(e.org.as_str()).or_default().push((i, e));
    }
    let mut accepted = 0;
    for (org, events) in by_org {
        // Events of tenants homed elsewhere are not stored here.
        let Ok(t) = tenant(&app, org, "/v1/audit/edge").await else { continue };
        let h = begin(&t).await?;
        for (i, e) in events {
            accepted += h
                .execute("INSERT OR IGNORE INTO edge_events (id, at, decision, reason, route, ip, request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    libsql::params![format!("{batch}:{i}"), e.at, e.decision.as_str(), e.reason.as_str(), e.route.clone(), e.ip.clone(), e.request_id.clone()])
                .await
                ?;
        }
        h.execute("COMMIT", ()).await?;
    }
    app.store
        .directory
        .lock()
        .await
        .execute(
            "INSERT OR IGNORE INTO edge_batches (id, received_at) VALUES (?1, ?2)",
            libsql::params![batch, crate::now()],
        )
        .await?;
    Ok(Json(json!({ "accepted": accepted, "duplicate": false })))
}

// ---------------------------------------------------------------------------------------
// Directory replication between regions

fn require_peer(app: &App, headers: &HeaderMap) -> ApiResult<()> {
    let token =
        bearer(headers).ok_or_else(|| ApiError::Unauthorized("credential_missing", "peer token required".into()))?;
    if bool::from(sha(token).ct_eq(&app.peer_hash)) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("peer_token_invalid", "unknown peer token".into()))
    }
}

async fn local_directory(app: &App) -> Result<Vec<Value>> {
    let d = app.store.directory.lock().await;
    let mut rows = d
        .query(
            "SELECT id, slug, home_region, created_at FROM tenants WHERE home_region = ?1 ORDER BY slug",
            [app.cfg.region.as_str()],
        )
        .await?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().await? {
        out.push(json!({ "id": r.get::<String>(0)?, "slug": r.get::<String>(1)?, "home_region": r.get::<String>(2)?, "created_at": r.get::<i64>(3)? }));
    }
    Ok(out)
}

async fn get_directory(State(app): AppState, headers: HeaderMap) -> ApiResult<Json<Value>> {
    require_peer(&app, &headers)?;
    Ok(Json(json!({ "region": app.cfg.region, "tenants": local_directory(&app).await? })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryPush {
    region: String,
    tenants: Vec<DirectoryEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryEntry {
    id: String,
    slug: String,
    home_region: String,
    created_at: i64,
}

async fn upsert_directory(app: &App, from: &str, entries: &[DirectoryEntry]) -> ApiResult<usize> {
    let d = app.store.directory.lock().await;
    let mut n = 0;
    for e in entries {
        // A region speaks only for its own tenants; nobody overrides this region's.
        if e.home_region != from || from == app.cfg.region || !crate::store::valid_id(&e.id) || !valid_slug(&e.slug) {
            continue;
        }
        n += d
            .execute(
                "INSERT INTO tenants (id, slug, home_region, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET slug = ?2 WHERE tenants.home_region = ?3",
                libsql::params![e.id.as_str(), e.slug.as_str(), e.home_region.as_str(), e.created_at],
            )
            .await?;
    }
    Ok(n as usize)
}

async fn post_directory(
    State(app): AppState,
    headers: HeaderMap,
    JsonBody(p): JsonBody<DirectoryPush>,
) -> ApiResult<Json<Value>> {
    require_peer(&app, &headers)?;
    let n = upsert_directory(&app, &p.region, &p.tenants).await?;
    Ok(Json(json!({ "upserted": n })))
}

async fn http_json(method: &str, url: &str, token: &str, body: Option<Value>) -> Result<Value> {
    use http_body_util::BodyExt;
    let uri: axum::http::Uri = url.parse()?;
    let host = uri.host().ok_or_else(|| anyhow!("no host"))?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream =
        tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::TcpStream::connect((host.as_str(), port)))
            .await??;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = axum::http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header("host", format!("{host}:{port}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(axum::body::Bytes::from(body)))?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), send.send_request(req)).await??;
    let status = resp.status();
    let bytes = http_body_util::Limited::new(resp.into_body(), 16 << 20)
        .collect()
        .await
        .map_err(|e| anyhow!("{e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(anyhow!("{url}: HTTP {status}"));
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// Tell the other regions about new tenants of this one (best effort; they also pull).
async fn push_directory(app: &App, entries: &[(String, String, String, i64)]) {
    let tenants: Vec<Value> = entries
        .iter()
        .map(|(id, slug, home, at)| json!({ "id": id, "slug": slug, "home_region": home, "created_at": at }))
        .collect();
    for (region, url) in &app.cfg.regions {
        if region == &app.cfg.region {
            continue;
        }
        let body = json!({ "region": app.cfg.region, "tenants": tenants });
        if let Err(e) = http_json("POST", &format!("{url}/v1/directory"), &app.peer_token, Some(body)).await {
            tracing::warn!(region = %region, error = %e, "directory push failed; the peer will pull it");
        }
    }
}

/// Pull the other regions' directory entries now and every 30 seconds.
async fn pull_directory_loop(app: Arc<App>) {
    loop {
        for (region, url) in &app.cfg.regions {
            if region == &app.cfg.region {
                continue;
            }
            match http_json("GET", &format!("{url}/v1/directory"), &app.peer_token, None).await {
                Ok(v) => {
                    let entries: Vec<DirectoryEntry> = serde_json::from_value(v["tenants"].clone()).unwrap_or_default();
                    if let Err(e) = upsert_directory(&app, region, &entries).await {
                        tracing::warn!(region = %region, error = %e, "directory pull: store failed");
                    }
                }
                Err(e) => tracing::debug!(region = %region, error = %e, "directory pull failed"),
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Passwords

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// End every session of `user` but `keep`.
async fn end_sessions_of(h: &libsql::Connection, user: &str, keep: Option<&str>, now: i64) -> ApiResult<()> {
    let mut rows = h
        .query(
            "SELECT id FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL AND id != ?2",
            libsql::params![user, keep.unwrap_or("")],
        )
        .await?;
    let mut ids = Vec::new();
    while let Some(r) = rows.next().await? {
        ids.push(r.get::<String>(0)?);
    }
    drop(rows);
    for id in ids {
        end_session(h, &id, now).await?;
    }
    Ok(())
}

async fn change_password(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ChangePassword>,
) -> ApiResult<StatusCode> {
    let t = tenant(&app, &slug, &format!("/t/{slug}/password/change")).await?;
    let tok = bearer(&headers)
        .ok_or_else(|| ApiError::Unauthorized("credential_missing", "a bearer access token is required".into()))?;
    let c = verify_access(&app, tok, Some(&t.slug))?;
    let user = c.subject.clone().unwrap_or_default();
    identity::password_acceptable(&req.new_password).map_err(|m| bad("weak_password", m))?;
    if req.current_password.len() > identity::MAX_PASSWORD {
        return Err(ApiError::InvalidCredentials);
    }
    let now = crate::now();
    let h = begin(&t).await?;
    let email: Option<String> = one(&h, "SELECT email FROM users WHERE id = ?1", [user.as_str()]).await?;
    let email = email.ok_or(ApiError::InvalidCredentials)?;
    let m = meta(&headers, &peer);
    match identity::check_password(&h, &app.passwords, &app.cfg.signin, &email, &req.current_password, now).await? {
        SigninOutcome::Success(_) => {}
        _ => {
            commit(
                &app,
                &t,
                h,
                &m,
                vec![ev(format!("user:{user}"), "password.change_failure", format!("user:{user}"), None, None)],
            )
            .await?;
            return Err(ApiError::InvalidCredentials);
        }
    }
    let hash = app.passwords.hash(&req.new_password)?;
    h.execute("UPDATE users SET password_hash = ?2 WHERE id = ?1", libsql::params![user.as_str(), hash]).await?;
    end_sessions_of(&h, &user, Some(&c.custom.sid), now).await?;
    commit(&app, &t, h, &m, vec![ev(format!("user:{user}"), "password.change", format!("user:{user}"), None, None)])
        .await?;
    app.changed();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    email: String,
}

async fn reset_request(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ResetRequest>,
) -> ApiResult<Response> {
    let t = tenant(&app, &slug, &format!("/t/{slug}/password/reset-request")).await?;
    // The same answer whether or not the address has an account.
    let accepted =
        (StatusCode::ACCEPTED, Json(json!({ "status": "if the address has an account, a reset link is on its way" })));
    let Some(email) = identity::normalise_email(&req.email) else { return Ok(accepted.into_response()) };
    let now = crate::now();
    let h = begin(&t).await?;
    let user: Option<String> =
        one(&h, "SELECT id FROM users WHERE email = ?1 AND disabled = 0", [email.as_str()]).await?;
    let m = meta(&headers, &peer);
    let Some(user) = user else {
        commit(
            &app,
            &t,
            h,
            &m,
            vec![ev("anonymous", "password.reset_request_unknown", format!("email:{email}"), None, None)],
        )
        .await?;
        return Ok(accepted.into_response());
    };
    let token = tokens::opaque("ghp_");
    h.execute(
        "INSERT INTO reset_tokens (hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
        libsql::params![tokens::secret_hash(&token), user.as_str(), now + app.cfg.signin.reset_ttl_secs as i64],
    )
    .await?;
    commit(&app, &t, h, &m, vec![ev("anonymous", "password.reset_request", format!("user:{user}"), None, None)])
        .await?;
    let body = format!(
        "Someone asked to reset the password of {email} at {}.\n\nReset token (valid {} minutes, single use):\n{token}\n\nPOST it to {}/password/reset with your new password. If you did not ask, ignore this message.",
        t.slug,
        app.cfg.signin.reset_ttl_secs / 60,
        app.cfg.issuer(&t.slug)
    );
    if let Err(e) = app.mailer.send(&email, "Reset your password", &body) {
        tracing::error!(error = %format!("{e:#}"), "reset mail not sent");
    }
    Ok(accepted.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetPassword {
    token: String,
    new_password: String,
}

async fn reset_password(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ResetPassword>,
) -> ApiResult<StatusCode> {
    let t = tenant(&app, &slug, &format!("/t/{slug}/password/reset")).await?;
    identity::password_acceptable(&req.new_password).map_err(|m| bad("weak_password", m))?;
    if req.token.len() > 128 {
        return Err(ApiError::InvalidGrant);
    }
    let now = crate::now();
    let h = begin(&t).await?;
    let user: Option<String> = one(
        &h,
        "SELECT user_id FROM reset_tokens WHERE hash = ?1 AND used_at IS NULL AND expires_at > ?2",
        libsql::params![tokens::secret_hash(&req.token), now],
    )
    .await?;
    let user = user.ok_or(ApiError::InvalidGrant)?;
    let hash = app.passwords.hash(&req.new_password)?;
    h.execute(
        "UPDATE reset_tokens SET used_at = ?2 WHERE hash = ?1",
        libsql::params![tokens::secret_hash(&req.token), now],
    )
    .await?;
    h.execute(
        "UPDATE users SET password_hash = ?2, failed_count = 0, locked_until = 0 WHERE id = ?1",
        libsql::params![user.as_str(), hash],
    )
    .await?;
    end_sessions_of(&h, &user, None, now).await?;
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(format!("user:{user}"), "password.reset", format!("user:{user}"), None, None)],
    )
    .await?;
    app.changed();
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Hosted sign-in pages

/// HTML-escape text for element content and attribute values.
fn esc(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// `return_to` if it is an absolute http(s) URL on one of the tenant's hosts (no
/// credentials in it); nothing else is ever redirected to.
fn safe_return_to(tp: &TenantPolicy, return_to: &str) -> Option<String> {
    if return_to.len() > 2048 {
        return None;
    }
    let uri: axum::http::Uri = return_to.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    if !matches!(scheme, "http" | "https") || authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    tp.hosts.iter().any(|p| gatehouse_core::access::HostPattern::parse(p).matches(&host)).then(|| return_to.to_string())
}

fn csrf_mac(app: &App, nonce: &str) -> String {
    use hmac::{Mac, SimpleHmac};
    let mut mac = <SimpleHmac<Sha256> as Mac>::new_from_slice(&app.csrf_key).expect("HMAC takes any key length");
    mac.update(nonce.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all("cookie").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// The sign-in page: the password form, then "Continue with …" for each enabled SSO
/// connection (`(id, name)`) and home-realm discovery by email.
fn login_page(slug: &str, csrf: &str, return_to: &str, error: Option<&str>, sso: &[(String, String)]) -> String {
    let error = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e))).unwrap_or_default();
    let rt = percent_encoding::utf8_percent_encode(return_to, percent_encoding::NON_ALPHANUMERIC).to_string();
    let sso = if sso.is_empty() {
        String::new()
    } else {
        let mut b = String::from("<hr>\n");
        for (id, name) in sso {
            b.push_str(&format!(
                "<a class=\"sso\" href=\"/t/{slug}/sso/{id}/start?return_to={rt}\">Continue with {name}</a>\n",
                slug = esc(slug),
                id = esc(id),
                rt = esc(&rt),
                name = esc(name)
            ));
        }
        b.push_str(&format!(
            "<form method=\"get\" action=\"/t/{slug}/sso/discover\"><input type=\"hidden\" name=\"return_to\" value=\"{return_to}\"><label for=\"sso-email\">Work email</label><input id=\"sso-email\" name=\"email\" type=\"email\" required><button type=\"submit\">Continue with single sign-on</button></form>\n",
            slug = esc(slug),
            return_to = esc(return_to)
        ));
        b
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · {slug}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}}label,input,button,a.sso{{display:block;width:100%;margin:.4rem 0}}a.sso{{padding:.6rem;border:1px solid #888;text-align:center;box-sizing:border-box}}input{{padding:.5rem}}button{{padding:.6rem}}.error{{color:#b00020}}</style>
</head><body>
<h1>Sign in to {slug}</h1>
{error}
<form method="post" action="/t/{slug}/login">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="return_to" value="{return_to}">
<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
{sso}</body></html>
"#,
        slug = esc(slug),
        return_to = esc(return_to),
        csrf = esc(csrf),
    )
}

fn html(status: StatusCode, body: String, set_cookies: &[String]) -> Response {
    let mut r = (status, [("content-type", "text/html; charset=utf-8")], body).into_response();
    let h = r.headers_mut();
    // The pages must not be framed or cached.
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append("set-cookie", v);
        }
    }
    r
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    #[serde(default)]
    return_to: Option<String>,
}

/// A fresh CSRF pair: the nonce for the cookie, the page's token.
fn csrf_pair(app: &App, slug: &str) -> (String, String) {
    let nonce = tokens::opaque("");
    let cookie = format!("gh_csrf={nonce}; Path=/t/{slug}/login; HttpOnly; SameSite=Strict{}", app.secure_cookie());
    (cookie, csrf_mac(app, &nonce))
}

async fn login_form(
    State(app): AppState,
    Path(slug): Path<String>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<LoginQuery>,
) -> Response {
    let path = format!("/t/{slug}/login");
    let t = match tenant(&app, &slug, &path).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let (set, token) = csrf_pair(&app, &t.slug);
    let buttons = match sso_routes::buttons(&t).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    html(StatusCode::OK, login_page(&t.slug, &token, q.return_to.as_deref().unwrap_or(""), None, &buttons), &[set])
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginForm {
    email: String,
    password: String,
    csrf: String,
    #[serde(default)]
    return_to: String,
}

async fn login_submit(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let t = match tenant(&app, &slug, &format!("/t/{slug}/login")).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return ApiError::BadRequest("invalid_body", "expected the sign-in form".into()).into_response();
    };
    // Double-submit, bound to this origin: the form's token is an HMAC of the cookie's nonce.
    let csrf_ok = cookie(&headers, "gh_csrf").is_some_and(|nonce| {
        let want = csrf_mac(&app, &nonce);
        want.len() == form.csrf.len() && bool::from(want.as_bytes().ct_eq(form.csrf.as_bytes()))
    });
    if !csrf_ok {
        let (set, token) = csrf_pair(&app, &t.slug);
        let buttons = sso_routes::buttons(&t).await.unwrap_or_default();
        let page =
            login_page(&t.slug, &token, &form.return_to, Some("The form expired. Please sign in again."), &buttons);
        return html(StatusCode::FORBIDDEN, page, &[set]);
    }
    let m = meta(&headers, &peer);
    let issued = match password_session(&app, &t, &m, &form.email, &form.password).await {
        Ok(s) => issue(&app, &t, &m, s, None).await,
        Err(e) => Err(e),
    };
    let tokens = match issued {
        Ok(v) => v,
        Err(e @ (ApiError::InvalidCredentials | ApiError::InvalidGrant | ApiError::Forbidden("sso_required", _))) => {
            let (status, message) = match e {
                ApiError::Forbidden(..) => {
                    (StatusCode::FORBIDDEN, "This organisation signs in with single sign-on: use a button below.")
                }
                _ => (StatusCode::UNAUTHORIZED, "Invalid email or password."),
            };
            let (set, token) = csrf_pair(&app, &t.slug);
            let buttons = sso_routes::buttons(&t).await.unwrap_or_default();
            let page = login_page(&t.slug, &token, &form.return_to, Some(message), &buttons);
            return html(status, page, &[set]);
        }
        Err(e) => return e.into_response(),
    };
    let clear_csrf = format!("gh_csrf=; Path=/t/{}/login; Max-Age=0; HttpOnly; SameSite=Strict", t.slug);
    signed_in(&app, &t, &tokens, &form.return_to, clear_csrf).await
}

/// The answer to a finished sign-in (password or SSO): the session cookie, and a
/// redirect to `return_to` when it is one of the tenant's hosts (a page otherwise).
async fn signed_in(app: &App, t: &Tenant, tokens: &Value, return_to: &str, clear_cookie: String) -> Response {
    let tp = match org_row(&*t.db.lock().await).await {
        Ok((_, _, tp, _)) => tp,
        Err(e) => return e.into_response(),
    };
    let access = tokens["access_token"].as_str().unwrap_or_default();
    let domain = app.cfg.signin.cookie_domain.as_deref().map(|d| format!("; Domain={d}")).unwrap_or_default();
    let session = format!(
        "{}={access}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{domain}{}",
        app.template().settings.session_cookie,
        app.cfg.tokens.access_ttl_secs,
        app.secure_cookie()
    );
    match safe_return_to(&tp, return_to) {
        Some(to) => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers_mut().insert("location", v);
            }
            for c in [session, clear_cookie] {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    r.headers_mut().append("set-cookie", v);
                }
            }
            r
        }
        // No (acceptable) destination: say so here rather than redirect anywhere.
        None => html(
            StatusCode::OK,
            format!("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signed in</title></head><body><h1>Signed in to {}</h1></body></html>\n", esc(&t.slug)),
            &[session, clear_cookie],
        ),
    }
}

async fn list_edge_events(Authed { t, .. }: Authed, QueryParams(p): QueryParams<Page>) -> ApiResult<Json<Value>> {
    let h = t.db.lock().await;
    let sql =
        "SELECT id, at, decision, reason, route, ip, request_id FROM edge_events WHERE id > ?1 ORDER BY id LIMIT ?2";
    let (items, next) = page_of(&h, sql, &p, "id", |r| {
        Ok(json!({ "id": r.get::<String>(0)?, "at": r.get::<i64>(1)?, "decision": r.get::<String>(2)?,
            "reason": r.get::<String>(3)?, "route": r.get::<Option<String>>(4)?, "ip": r.get::<Option<String>>(5)?,
            "request_id": r.get::<Option<String>>(6)? }))
    })
    .await?;
    Ok(Json(json!({ "items": items, "next": next })))
}

async fn get_template(State(app): AppState, headers: HeaderMap) -> ApiResult<Json<Policy>> {
    require_operator(&app, &headers)?;
    Ok(Json((*app.template()).clone()))
}

async fn put_template(
    State(app): AppState,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(p): JsonBody<Policy>,
) -> ApiResult<Json<Value>> {
    require_operator(&app, &headers)?;
    template_acceptable(&p).map_err(|e| bad("invalid_policy", e))?;
    // Every tenant must still fit (its tier must exist, its rules validate).
    let keys = app.keys();
    let region = bundles::Region {
        template: &p,
        public_url: &app.cfg.public_url,
        audience: &app.cfg.tokens.audience,
        jwks: &keys.jwks,
        region: &app.cfg.region,
    };
    bundles::region_policy(&app.store, &region, crate::now())
        .await
        .map_err(|e| bad("invalid_policy", format!("{e:#}")))?;
    app.store
        .directory
        .lock()
        .await
        .execute(
            "INSERT INTO settings (key, value) VALUES ('template', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1",
            [serde_json::to_string(&p)?],
        )
        .await?;
    let before = app.template();
    *app.template.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p.clone());
    app.changed();
    // A region-wide change is a cross-tenant action: every tenant's log records it.
    let tenants: Vec<(String, String)> = {
        let d = app.store.directory.lock().await;
        let mut rows =
            d.query("SELECT id, slug FROM tenants WHERE home_region = ?1", [app.cfg.region.as_str()]).await?;
        let mut v = Vec::new();
        while let Some(r) = rows.next().await? {
            v.push((r.get::<String>(0)?, r.get::<String>(1)?));
        }
        v
    };
    let m = meta(&headers, &peer);
    for (id, slug) in tenants {
        let t = Tenant { db: app.store.tenant(&id, false).await?, id, slug };
        let h = begin(&t).await?;
        let e = ev(
            "operator",
            "policy.template",
            "region",
            Some(serde_json::to_value(&*before)?),
            Some(serde_json::to_value(&p)?),
        );
        commit(&app, &t, h, &m, vec![e]).await?;
    }
    tracing::info!(tiers = p.tiers.len(), routes = p.routes.len(), "policy template replaced by the operator");
    Ok(Json(json!({ "tiers": p.tiers.keys().collect::<Vec<_>>(), "routes": p.routes.len() })))
}
