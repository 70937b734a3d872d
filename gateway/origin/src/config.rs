//! The origin's configuration file (TOML), validated at load with messages that name the
//! field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gatehouse_settings::{one_of, within};
use serde::Deserialize;

pub mod impersonation;
pub mod mail;
pub mod metrics;
pub mod retention;
pub mod secrets;
pub mod sinks;
pub mod tiers;

pub use mail::MailSettings;

/// Everything an origin needs to run one region.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// The region this origin serves, e.g. `eu-west`.
    pub region: String,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// The URL clients and edges use to reach this origin (no trailing slash). Token
    /// issuers are `{public_url}/t/{slug}`.
    pub public_url: String,
    /// Root of this region's data: `directory.db` and `tenants/*.db`.
    pub data_dir: PathBuf,
    /// Every region's public URL, this one included (for residency redirects and
    /// directory replication).
    #[serde(default)]
    pub regions: BTreeMap<String, String>,
    /// Files holding secrets.
    pub secrets: SecretFiles,
    /// Access and refresh tokens.
    #[serde(default)]
    pub tokens: TokenSettings,
    /// Password sign-in.
    #[serde(default)]
    pub signin: SigninSettings,
    /// Bundles for edges.
    #[serde(default)]
    pub bundle: BundleSettings,
    /// Storage.
    #[serde(default)]
    pub storage: StorageSettings,
    /// Single sign-on through tenants' identity providers.
    #[serde(default)]
    pub sso: SsoSettings,
    /// Outgoing mail: the mailer, the sender, verification and invitation links.
    #[serde(default)]
    pub mail: MailSettings,
    /// What each tier may hold at most (`[tiers.<tier>] max_users, max_custom_roles,
    /// max_api_keys`; absent: unlimited).
    #[serde(default)]
    pub tiers: BTreeMap<String, tiers::TierCaps>,
    /// Retention applied by the scheduler, and the region's default periods
    /// (`[retention] enabled, interval_secs, batch, tenants_per_run`, `[retention.defaults]`).
    #[serde(default)]
    pub retention: retention::RetentionSettings,
    /// Where the audit log is streamed (`[[sinks]]`: webhook, syslog, OTLP logs).
    #[serde(default)]
    pub sinks: Vec<sinks::SinkSettings>,
    /// Impersonation limits (`[impersonation] max_minutes`, `handoff_ttl_secs`).
    #[serde(default)]
    pub impersonation: impersonation::ImpersonationSettings,
    /// Traces (OpenTelemetry) and error reports (Sentry).
    #[serde(default)]
    pub telemetry: gatehouse_telemetry::TelemetryConfig,
    /// Prometheus scraping: a metrics listener and/or a scrape token (`[metrics]`).
    #[serde(default)]
    pub metrics: metrics::MetricsSettings,
}

/// Single sign-on (OIDC / OAuth2 connections of each organisation).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SsoSettings {
    /// How long a sign-in may spend at the identity provider (state, nonce and PKCE
    /// verifier expire after this).
    pub transaction_ttl_secs: u64,
    /// Timeout of each call to an identity provider (discovery, keys, token, userinfo).
    pub http_timeout_secs: u64,
    /// How long discovery documents and keys are cached (an unknown `kid` refetches the
    /// keys sooner, at most once per 30 s per connection).
    pub metadata_ttl_secs: u64,
    /// Accept `http://` identity-provider URLs on loopback hosts (127.0.0.1, ::1,
    /// localhost). For local tests and the demo; everything else must be `https://`.
    pub allow_http_loopback: bool,
}

impl Default for SsoSettings {
    fn default() -> Self {
        SsoSettings {
            transaction_ttl_secs: 600,
            http_timeout_secs: 10,
            metadata_ttl_secs: 3600,
            allow_http_loopback: false,
        }
    }
}

/// Secret files (paths relative to the configuration file). Each holds one secret; the
/// origin never logs them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFiles {
    /// Ed25519 key (PEM) that signs bundles; edges pin its public key.
    pub bundle_signing_key: PathBuf,
    /// Edge credentials: one `name token` pair per line. Edges send the token as a bearer
    /// token to pull bundles and push audit events.
    pub edge_tokens: PathBuf,
    /// The platform operator's bearer token (super admin, separate from tenant admins).
    pub operator_token: PathBuf,
    /// Token shared between the regions' origins for directory replication.
    pub peer_token: PathBuf,
    /// The API-key HMAC secret, shared with the edges (`api_key_secret` of their edge
    /// secrets file): keys are stored and shipped only as HMAC-SHA256 under it.
    pub api_key_secret: PathBuf,
    /// Base64 of 32 random bytes: the AES-256-GCM key that seals SSO client secrets at
    /// rest. Optional: without it the key is derived from the bundle-signing key (a
    /// separate file lets you rotate one without the other).
    #[serde(default)]
    pub sso_key: Option<PathBuf>,
}

/// Token lifetimes and signing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// Access-token lifetime, 300–900 seconds.
    pub access_ttl_secs: u64,
    /// Refresh-token lifetime (the session's idle limit).
    pub refresh_ttl_secs: u64,
    /// Absolute session lifetime.
    pub session_ttl_secs: u64,
    /// `EdDSA` (default) or `ES256`.
    pub alg: String,
    /// The `aud` of access tokens.
    pub audience: String,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            access_ttl_secs: 600,
            refresh_ttl_secs: 14 * 86_400,
            session_ttl_secs: 30 * 86_400,
            alg: "EdDSA".into(),
            audience: "gatehouse".into(),
        }
    }
}

/// Password sign-in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigninSettings {
    /// Failures before a lockout.
    pub max_failures: u32,
    /// Lockout length.
    pub lockout_secs: u64,
    /// argon2id memory in KiB.
    pub argon2_memory_kib: u32,
    /// argon2id passes.
    pub argon2_iterations: u32,
    /// Reset-token lifetime.
    pub reset_ttl_secs: u64,
    /// Where the file mailer writes messages: kept for existing configurations, the same
    /// as `[mail] dir` (the file mailer unless `mail.kind` says otherwise). Prefer `[mail]`.
    pub mail_dir: Option<PathBuf>,
    /// `Domain` of the session cookie the hosted sign-in sets, e.g. `.example.com` when
    /// the origin (`login.example.com`) and the apps (`app.example.com`) share a parent
    /// domain; unset: the origin's own host only.
    pub cookie_domain: Option<String>,
}

impl Default for SigninSettings {
    fn default() -> Self {
        // OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
        SigninSettings {
            max_failures: 5,
            lockout_secs: 1800,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            reset_ttl_secs: 3600,
            mail_dir: None,
            cookie_domain: None,
        }
    }
}

/// Bundles.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BundleSettings {
    /// Bundle lifetime; edges deny everything once their bundle expires.
    pub ttl_secs: u64,
    /// Region-wide policy: settings, tiers, roles, routes (a policy TOML without orgs).
    pub template: Option<PathBuf>,
}

impl Default for BundleSettings {
    fn default() -> Self {
        BundleSettings { ttl_secs: 6 * 3600, template: None }
    }
}

/// Storage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Tenant databases kept open at once (least recently used are closed).
    pub max_open_tenants: usize,
    /// `normal` (survives a process crash; default) or `full` (also survives power loss).
    pub synchronous: String,
    /// A libSQL server (sqld / Turso) per region, with embedded replicas on this host
    /// (feature `remote-replica`).
    pub remote: Option<RemoteStorage>,
    /// Where each tenant's audit log lives: `shared` (default: in `tenants/{id}.db`) or
    /// `separate` (its own file, `tenants/{id}.audit.db`, attached to the tenant's
    /// connection; embedded files only).
    pub audit_file: String,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            max_open_tenants: 256,
            synchronous: "normal".into(),
            remote: None,
            audit_file: "shared".into(),
        }
    }
}

/// A libSQL server for the region. Each database is a namespace on it: `directory`, and
/// `t-<hex>` for tenant `t_<hex>` (`store::server::namespace`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteStorage {
    /// The server (`libsql://…`, `https://…`, `http://…`). With the placeholder `{db}` the
    /// host names the database (`libsql://{db}-acme.turso.io`, or sqld's
    /// `http://{db}.db.internal:8080`); without it (sqld `--enable-namespaces`, e.g.
    /// `http://10.0.0.5:8080`) the namespace travels in a header, and `admin_url` is needed.
    pub url: String,
    /// Environment variable holding the auth token.
    pub auth_token_env: Option<String>,
    /// Seconds between background syncs of the replicas.
    #[serde(default = "default_sync")]
    pub sync_secs: u64,
    /// sqld's admin API (`--admin-listen-addr`, e.g. `http://10.0.0.5:8081`): the origin
    /// creates a tenant's namespace there when the tenant is created and deletes it when
    /// the tenant is deleted. Unset: the operator provisions the databases, and tenants
    /// are not deleted from the origin.
    pub admin_url: Option<String>,
    /// Environment variable holding sqld's `--admin-auth-key`, if it has one.
    pub admin_auth_key_env: Option<String>,
    /// Timeout of each admin call, connecting included, 1–60 seconds.
    #[serde(default = "default_admin_timeout")]
    pub admin_timeout_secs: u64,
}

fn default_sync() -> u64 {
    5
}

fn default_admin_timeout() -> u64 {
    10
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not valid TOML for this schema.
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: String,
        /// Parser message (with line and field).
        message: String,
    },
    /// A value out of range.
    #[error("{path}: invalid origin config: {message}")]
    Invalid {
        /// File.
        path: String,
        /// Which field and why.
        message: String,
    },
}

impl OriginConfig {
    /// Load and validate `path`, with the `GATEHOUSE_ORIGIN__…` variables of this process
    /// applied over it (environment over file over defaults; `gatehouse_settings::env`);
    /// relative paths inside are relative to its folder (those from variables to the
    /// current directory).
    pub fn load(path: &Path) -> Result<OriginConfig, ConfigError> {
        let overlay = gatehouse_settings::Overlay::from_env(gatehouse_settings::ORIGIN_PREFIX)
            .map_err(|e| ConfigError::Parse { path: path.display().to_string(), message: e.to_string() })?;
        Ok(OriginConfig::load_with(path, overlay)?.0)
    }

    /// [`OriginConfig::load`] with the variables given; also the effective document (the
    /// file with the variables applied), for `gatehouse config check --print`.
    pub fn load_with(
        path: &Path,
        overlay: gatehouse_settings::Overlay,
    ) -> Result<(OriginConfig, toml::Table), ConfigError> {
        use gatehouse_settings::{LoadError, PathField};
        // The fields holding paths, for relative paths given by variables.
        const PATHS: &[PathField] = &[
            PathField::any("data_dir"),
            PathField::any("secrets.*"),
            PathField::any("bundle.template"),
            PathField::any("signin.mail_dir"),
            PathField::any("mail.dir"),
            PathField::any("mail.smtp.password_file"),
            PathField::any("mail.smtp.ca_file"),
            PathField::any("sinks.*.ca_file"),
            PathField::any("sinks.*.secret_file"),
            PathField::any("metrics.token_file"),
        ];
        let p = path.display().to_string();
        let loaded = gatehouse_settings::load_toml_with::<OriginConfig>(path, overlay, PATHS).map_err(|e| match e {
            LoadError::Read(source) => ConfigError::Io { path: p.clone(), source },
            other => ConfigError::Parse { path: p.clone(), message: other.to_string() },
        })?;
        let mut c = loaded.config;
        let base = path.parent().unwrap_or(Path::new("."));
        c.resolve(base);
        c.validate().map_err(|message| ConfigError::Invalid { path: p, message: loaded.overlay.annotate(&message) })?;
        Ok((c, loaded.document))
    }

    fn resolve(&mut self, base: &Path) {
        let s = &mut self.secrets;
        let required = [&mut s.bundle_signing_key, &mut s.edge_tokens, &mut s.operator_token, &mut s.peer_token];
        let required = required.into_iter().chain([&mut s.api_key_secret, &mut self.data_dir]);
        let optional = [&mut self.bundle.template, &mut s.sso_key, &mut self.signin.mail_dir];
        let all = required.chain(optional.into_iter().filter_map(Option::as_mut)).chain(self.mail.paths());
        let all = all.chain(self.sinks.iter_mut().flat_map(|s| s.paths()));
        let all = all.chain(self.metrics.paths());
        gatehouse_settings::relative_to(base, all);
    }

    /// Check ranges and cross-references.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 32
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        self.telemetry.validate()?;
        if !name_ok(&self.region) {
            return Err(format!("region: `{}` must be 1–32 of a-z, 0-9, -", self.region));
        }
        let url_ok = |u: &str| (u.starts_with("http://") || u.starts_with("https://")) && !u.ends_with('/');
        if !url_ok(&self.public_url) {
            return Err(format!("public_url: `{}` must be an http(s) URL without a trailing slash", self.public_url));
        }
        for (r, u) in &self.regions {
            if !name_ok(r) {
                return Err(format!("regions.{r}: not a valid region name"));
            }
            if !url_ok(u) {
                return Err(format!("regions.{r}: `{u}` must be an http(s) URL without a trailing slash"));
            }
        }
        if let Some(u) = self.regions.get(&self.region) {
            if u != &self.public_url {
                return Err(format!("regions.{}: must equal public_url", self.region));
            }
        }
        // Access tokens live 5 to 15 minutes; refresh tokens at least as long, at most 90 days.
        within("tokens.access_ttl_secs", self.tokens.access_ttl_secs, 300..=900)?;
        within("tokens.refresh_ttl_secs", self.tokens.refresh_ttl_secs, self.tokens.access_ttl_secs..=90 * 86_400)?;
        if self.tokens.session_ttl_secs < self.tokens.refresh_ttl_secs {
            return Err("tokens.session_ttl_secs: must be at least refresh_ttl_secs".into());
        }
        one_of("tokens.alg", &self.tokens.alg, &["EdDSA", "ES256"])?;
        if self.tokens.audience.is_empty() {
            return Err("tokens.audience: must not be empty".into());
        }
        within("signin.max_failures", self.signin.max_failures, 1..=100)?;
        within("signin.lockout_secs", self.signin.lockout_secs, 60..=86_400)?;
        // Argon2 memory from 8 KiB to 2 GiB.
        within("signin.argon2_memory_kib", self.signin.argon2_memory_kib, 8..=1 << 21)?;
        within("signin.argon2_iterations", self.signin.argon2_iterations, 1..=10)?;
        if let Some(d) = &self.signin.cookie_domain {
            let ok = d.len() <= 253
                && d.contains('.')
                && d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !ok {
                return Err(format!("signin.cookie_domain: `{d}` is not a domain name"));
            }
        }
        within("bundle.ttl_secs", self.bundle.ttl_secs, 60..=7 * 86_400)?;
        within("storage.max_open_tenants", self.storage.max_open_tenants, 1..=100_000)?;
        one_of("storage.synchronous", &self.storage.synchronous, &["normal", "full"])?;
        one_of("storage.audit_file", &self.storage.audit_file, &["shared", "separate"])?;
        if self.storage.audit_file == "separate" && self.storage.remote.is_some() {
            // A replica of a libSQL server cannot ATTACH another file.
            return Err("storage.audit_file: `separate` needs embedded files (not storage.remote)".into());
        }
        self.retention.validate()?;
        within("sso.transaction_ttl_secs", self.sso.transaction_ttl_secs, 60..=3600)?;
        within("sso.http_timeout_secs", self.sso.http_timeout_secs, 1..=60)?;
        within("sso.metadata_ttl_secs", self.sso.metadata_ttl_secs, 60..=86_400)?;
        self.mail.validate(self.signin.mail_dir.as_ref())?;
        tiers::validate(&self.tiers)?;
        sinks::validate(&self.sinks)?;
        self.impersonation.validate()?;
        self.metrics.validate(self.listen)?;
        if let Some(r) = &self.storage.remote {
            if !cfg!(feature = "remote-replica") {
                // Refused rather than ignored: data must not silently stay local.
                return Err(
                    "storage.remote: this build has no libSQL server support (build with --features remote-replica)"
                        .into(),
                );
            }
            let scheme_ok = ["libsql://", "https://", "http://"].iter().any(|p| r.url.starts_with(p));
            if !scheme_ok || r.url.ends_with('/') {
                return Err(format!(
                    "storage.remote.url: `{}` must be a libsql/http(s) URL without a trailing slash",
                    r.url
                ));
            }
            if !r.url.contains("{db}") && r.admin_url.is_none() {
                return Err(format!(
                    "storage.remote.url: `{}` has no `{{db}}`: the namespaces are then created by the origin, \
                     which needs storage.remote.admin_url",
                    r.url
                ));
            }
            within("storage.remote.sync_secs", r.sync_secs, 1..=3600)?;
            if let Some(a) = &r.admin_url {
                if !url_ok(a) || a.contains("{db}") {
                    return Err(format!(
                        "storage.remote.admin_url: `{a}` must be an http(s) URL without a trailing slash or `{{db}}`"
                    ));
                }
            } else if r.admin_auth_key_env.is_some() {
                return Err("storage.remote.admin_auth_key_env: set without storage.remote.admin_url".into());
            }
            within("storage.remote.admin_timeout_secs", r.admin_timeout_secs, 1..=60)?;
        }
        Ok(())
    }

    /// The issuer URL of tenant `slug`.
    pub fn issuer(&self, slug: &str) -> String {
        format!("{}/t/{slug}", self.public_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_is_valid() {
        let c: OriginConfig = toml::from_str(include_str!("../../../examples/origin.toml")).unwrap();
        c.validate().unwrap();
        assert!(!c.sso.allow_http_loopback, "the example keeps identity providers on https");
        let bad: OriginConfig = toml::from_str(
            &include_str!("../../../examples/origin.toml").replace("http_timeout_secs = 10", "http_timeout_secs = 0"),
        )
        .unwrap();
        assert!(bad.validate().unwrap_err().starts_with("sso.http_timeout_secs"));
    }

    const BASE: &str = r#"
region = "eu-west"
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:7400"
data_dir = "data"
[secrets]
bundle_signing_key = "k"
edge_tokens = "e"
operator_token = "o"
peer_token = "p"
api_key_secret = "a"
"#;

    #[test]
    fn loads_and_refuses_with_the_field_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("origin.toml");
        std::fs::write(&p, BASE).unwrap();
        let c = OriginConfig::load(&p).unwrap();
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert_eq!(c.issuer("acme"), "http://127.0.0.1:7400/t/acme");
        for (extra, field) in [
            ("[tokens]\naccess_ttl_secs = 60\n", "tokens.access_ttl_secs"),
            ("[tokens]\nalg = \"HS256\"\n", "tokens.alg"),
            ("[signin]\nmax_failures = 0\n", "signin.max_failures"),
            ("[storage]\nsynchronous = \"off\"\n", "storage.synchronous"),
            ("[storage]\naudit_file = \"elsewhere\"\n", "storage.audit_file"),
            ("[storage]\naudit_file = \"separate\"\nremote = { url = \"http://{db}.x\" }\n", "storage.audit_file"),
            ("[retention]\nbatch = 0\n", "retention.batch"),
            ("[regions]\neu-west = \"http://elsewhere\"\n", "regions.eu-west"),
            ("[regions]\n\"US_EAST\" = \"http://x\"\n", "regions.US_EAST"),
            ("[bundle]\nttl_secs = 1\n", "bundle.ttl_secs"),
            ("[mail]\nkind = \"smtp\"\n", "mail.smtp"),
            ("[mail.smtp]\nhost = \"mail.example.com\"\ntls = \"none\"\n[mail]\nkind = \"smtp\"\n", "mail.smtp.tls"),
            ("unknown = 1\n", "unknown field"),
            // Without the feature: refused, never silently local; with it: needs `{db}`.
            ("[storage]\nremote = { url = \"http://x\" }\n", "storage.remote"),
        ] {
            std::fs::write(&p, format!("{BASE}{extra}")).unwrap();
            let e = OriginConfig::load(&p).unwrap_err().to_string();
            assert!(e.contains(field), "{extra}: {e}");
            assert!(e.starts_with(&p.display().to_string()), "{e}");
        }
    }
    #[cfg(feature = "remote-replica")]
    #[test]
    fn a_libsql_server_is_checked_with_the_field_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("origin.toml");
        let ok = "[storage.remote]\nurl = \"http://127.0.0.1:8080\"\nadmin_url = \"http://127.0.0.1:8081\"\n";
        std::fs::write(&p, format!("{BASE}{ok}")).unwrap();
        let r = OriginConfig::load(&p).unwrap().storage.remote.unwrap();
        assert_eq!((r.sync_secs, r.admin_timeout_secs), (5, 10));
        for (remote, field) in [
            // No `{db}`: namespaces the origin creates, so it needs the admin API.
            ("url = \"http://127.0.0.1:8080\"", "storage.remote.url"),
            ("url = \"ftp://{db}.x\"", "storage.remote.url"),
            ("url = \"http://{db}.x\"\nadmin_url = \"http://127.0.0.1:8081/\"", "storage.remote.admin_url"),
            ("url = \"http://{db}.x\"\nadmin_url = \"tcp://127.0.0.1:8081\"", "storage.remote.admin_url"),
            ("url = \"http://{db}.x\"\nadmin_auth_key_env = \"K\"", "storage.remote.admin_auth_key_env"),
            (
                "url = \"http://h\"\nadmin_url = \"http://a\"\nadmin_timeout_secs = 0",
                "storage.remote.admin_timeout_secs",
            ),
            (
                "url = \"http://h\"\nadmin_url = \"http://a\"\nadmin_timeout_secs = 61",
                "storage.remote.admin_timeout_secs",
            ),
            ("url = \"http://h\"\nadmin_url = \"http://a\"\nsync_secs = 0", "storage.remote.sync_secs"),
        ] {
            std::fs::write(&p, format!("{BASE}[storage.remote]\n{remote}\n")).unwrap();
            let e = OriginConfig::load(&p).unwrap_err().to_string();
            assert!(e.contains(&format!("{field}:")), "{remote}: {e}");
        }
    }
}
