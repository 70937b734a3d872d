//! The gateway's configuration file (TOML), validated at load with messages that name the
//! file and the field. Every setting can also come from the environment:
//! `GATEHOUSE_GATEWAY__<SECTION>__<FIELD>` (environment over file over defaults; see
//! `gatehouse_settings::env`). On SIGHUP the routes and `[filters]` are reread
//! ([`GatewayConfig::fixed_changes`] names what only a restart can change).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gatehouse_settings::{at_most, within, Overlay, PathField};
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Listeners.
    pub listen: Listen,
    /// Where the policy bundle comes from.
    pub bundle: BundleSource,
    /// Filter components: where the built-ins are, where compiled code is cached, bounds.
    #[serde(default)]
    pub filters: FilterSettings,
    /// Request and upstream limits.
    #[serde(default)]
    pub limits: Limits,
    /// Country lookup.
    #[serde(default)]
    pub geo: GeoSource,
    /// Routes: host/path prefix → upstream, with a filter chain. First match wins.
    pub routes: Vec<RouteConfig>,
    /// Where decision events go (the origin's `/v1/audit/edge`), if anywhere.
    #[serde(default)]
    pub audit: Option<AuditSink>,
    /// The authorization-service listeners (nginx `auth_request`, Traefik `forwardAuth`,
    /// Caddy `forward_auth`, Envoy `ext_authz` over HTTP and gRPC), if any.
    #[serde(default)]
    pub authz: crate::authz::config::AuthzSettings,
    /// Traces (OpenTelemetry) and error reports (Sentry).
    #[serde(default)]
    pub telemetry: gatehouse_telemetry::TelemetryConfig,
    /// Where the native engine counts rate limits: this process, or Redis shared by
    /// every gateway node.
    #[serde(default)]
    pub rate_store: crate::rate_store::RateStoreConfig,
    /// The file this was loaded from (reread on SIGHUP), if any.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// The origin's edge-audit endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSink {
    /// `http://origin/v1/audit/edge`.
    pub url: String,
    /// The edge's bearer token at the origin.
    pub token: String,
    /// Events per batch (at most 1000, the origin's limit).
    #[serde(default = "default_batch")]
    pub batch_max: usize,
    /// Milliseconds between sends.
    #[serde(default = "default_flush")]
    pub flush_ms: u64,
    /// Events kept while the origin is unreachable (the oldest are dropped beyond).
    #[serde(default = "default_queue")]
    pub queue_max: usize,
}

fn default_batch() -> usize {
    500
}

fn default_flush() -> u64 {
    1000
}

fn default_queue() -> usize {
    100_000
}

/// Listener addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Public listener of the reverse proxy (HTTP/1.1 and h2c); absent when the process
    /// only answers authorization checks (`[authz]`).
    #[serde(default)]
    pub addr: Option<SocketAddr>,
    /// Admin listener: `/healthz`, `/readyz`, `/metrics`.
    pub admin: SocketAddr,
}

/// Bundle source: a file (watched, and reread on SIGHUP).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSource {
    /// A bundle file.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// An origin URL serving the bundle (`GET`, ETag polling).
    #[serde(default)]
    pub origin_url: Option<String>,
    /// Bearer credential for the origin.
    #[serde(default)]
    pub origin_token: Option<String>,
    /// The pinned origin public key (Ed25519, PEM).
    pub public_key: PathBuf,
    /// Edge secrets file (API-key secret, HS256 keys), if any.
    #[serde(default)]
    pub secrets: Option<PathBuf>,
    /// Seconds between checks for a new bundle.
    #[serde(default = "default_poll")]
    pub poll_secs: u64,
}

fn default_poll() -> u64 {
    2
}

/// Where the built-in filters run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterEngine {
    /// On the natively linked `gatehouse-core` (the default): the same code the
    /// components run, without a WebAssembly call per request.
    #[default]
    Native,
    /// As filter components under wasmtime, like custom filters (`builtin_dir`).
    Wasm,
}

/// Filter component settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterSettings {
    /// Where the built-in filters run: `native` (default) or `wasm`. Custom components
    /// always run under wasmtime.
    pub engine: FilterEngine,
    /// Directory holding the built-in filters (`gatehouse_filter_<name>.wasm`).
    pub builtin_dir: Option<PathBuf>,
    /// Directory for precompiled code (`.cwasm`), reused across restarts.
    pub cache_dir: Option<PathBuf>,
    /// CPU bound per filter call, in milliseconds (epoch interruption).
    pub max_call_ms: u64,
    /// Memory bound per instance, in MiB.
    pub max_memory_mib: u64,
    /// Instances kept per filter.
    pub pool_size: usize,
}

impl Default for FilterSettings {
    fn default() -> Self {
        FilterSettings {
            engine: FilterEngine::Native,
            builtin_dir: None,
            cache_dir: None,
            max_call_ms: 100,
            max_memory_mib: 64,
            pool_size: 64,
        }
    }
}

/// Request and upstream limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body, in bytes (streamed; never buffered whole).
    pub max_body_bytes: u64,
    /// Seconds to receive a request head.
    pub header_timeout_secs: u64,
    /// Seconds for the upstream to answer with a response head, counted from when the
    /// request (head and body) has been passed on.
    pub upstream_timeout_secs: u64,
    /// Seconds each read of a request body (and each write of it to the upstream) may
    /// take; beyond this first allowance the body must also keep an average of
    /// [`crate::body::MIN_BODY_RATE`] bytes per second. A client too slow gets `408
    /// request_timeout`, an upstream that stops taking the body `504 upstream_timeout`.
    pub body_timeout_secs: u64,
    /// Seconds in-flight requests get to finish on shutdown.
    pub drain_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 100 * 1024 * 1024,
            header_timeout_secs: 10,
            upstream_timeout_secs: 30,
            body_timeout_secs: 60,
            drain_secs: 20,
        }
    }
}

/// Country lookup for the geo filter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoSource {
    /// A MaxMind-format (`.mmdb`) country database.
    #[serde(default)]
    pub maxmind_db: Option<PathBuf>,
}

/// One route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Host to match (exact, or `*` / absent for any).
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix (segment boundary).
    #[serde(default = "root")]
    pub path_prefix: String,
    /// Upstream base URL, `http://host:port`: required when the reverse proxy listens
    /// (`listen.addr`); an authorization service alone has none.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Filters in order: built-in names (`gatehouse` = every check in one call, or the
    /// single checks `ip`, `geo`, `token`, `rate`) or paths to components
    /// (`./custom.wasm`). Default: `["gatehouse"]`.
    #[serde(default = "default_chain")]
    pub filters: Vec<String>,
}

fn root() -> String {
    "/".into()
}

fn default_chain() -> Vec<String> {
    vec!["gatehouse".to_string()]
}

/// A configuration problem, naming file and field.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// Whether `name` is a built-in filter (`gatehouse_core::Check::BUILTINS`).
pub fn is_builtin(name: &str) -> bool {
    gatehouse_core::Check::builtin(name).is_some()
}

/// The fields holding paths: relative ones from the environment resolve against the
/// current directory (the file's own against its folder).
const PATH_FIELDS: &[PathField] = &[
    PathField::any("bundle.file"),
    PathField::any("bundle.secrets"),
    PathField::any("bundle.public_key"),
    PathField::any("filters.builtin_dir"),
    PathField::any("filters.cache_dir"),
    PathField::any("geo.maxmind_db"),
    PathField { pattern: "routes.*.filters.*", suffix: ".wasm" },
];

/// The sections a reload cannot change (listeners, limits that size them, the bundle
/// source, the audit sink, telemetry): only `routes` and `[filters]` reload.
pub const FIXED_SECTIONS: &[&str] = &["listen", "bundle", "limits", "geo", "audit", "authz", "telemetry", "rate_store"];

impl GatewayConfig {
    /// Read and validate, with the `GATEHOUSE_GATEWAY__…` variables of this process
    /// applied over the file; relative paths are resolved against the file's directory
    /// (those from variables against the current directory).
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let err = |message: String| ConfigError { file: path.to_path_buf(), message };
        let overlay = Overlay::from_env(gatehouse_settings::GATEWAY_PREFIX).map_err(|e| err(e.to_string()))?;
        Ok(GatewayConfig::load_with(path, overlay)?.0)
    }

    /// [`GatewayConfig::load`] with the variables given; also the effective document
    /// (the file with the variables applied), for `gatehouse config check --print`.
    pub fn load_with(path: &Path, overlay: Overlay) -> Result<(GatewayConfig, toml::Table), ConfigError> {
        let err = |message: String| ConfigError { file: path.to_path_buf(), message };
        let loaded = gatehouse_settings::load_toml_with::<GatewayConfig>(path, overlay, PATH_FIELDS)
            .map_err(|e| err(e.to_string()))?;
        let mut c = loaded.config;
        let dir = path.parent().unwrap_or(Path::new("."));
        let optional =
            [&mut c.bundle.file, &mut c.bundle.secrets, &mut c.filters.builtin_dir, &mut c.filters.cache_dir];
        let optional = optional.into_iter().chain([&mut c.geo.maxmind_db]).filter_map(Option::as_mut);
        gatehouse_settings::relative_to(dir, std::iter::once(&mut c.bundle.public_key).chain(optional));
        c.validate(dir).map_err(|m| err(loaded.overlay.annotate(&m)))?;
        c.source = Some(path.to_path_buf());
        Ok((c, loaded.document))
    }

    /// The sections of [`FIXED_SECTIONS`] that differ in `new`: a reload to `new` is
    /// refused unless this is empty.
    pub fn fixed_changes(&self, new: &GatewayConfig) -> Vec<&'static str> {
        // Compared as they were read (after validation), through their Debug forms: the
        // sections' types are several owners', and none needs equality otherwise.
        let sections = |c: &GatewayConfig| {
            [
                format!("{:?}", c.listen),
                format!("{:?}", c.bundle),
                format!("{:?}", c.limits),
                format!("{:?}", c.geo),
                format!("{:?}", c.audit),
                format!("{:?}", c.authz),
                format!("{:?}", c.telemetry),
                format!("{:?}", c.rate_store),
            ]
        };
        let (old, new) = (sections(self), sections(new));
        FIXED_SECTIONS.iter().zip(old.iter().zip(&new)).filter(|(_, (a, b))| a != b).map(|(name, _)| *name).collect()
    }

    fn validate(&mut self, dir: &Path) -> Result<(), String> {
        match (&self.bundle.file, &self.bundle.origin_url) {
            (None, None) => return Err("bundle: set `file` or `origin_url`".into()),
            (Some(_), Some(_)) => return Err("bundle: set only one of `file` and `origin_url`".into()),
            (None, Some(u)) if !u.starts_with("http://") && !u.starts_with("https://") => {
                return Err(format!("bundle.origin_url: `{u}` is not an http(s) URL"))
            }
            _ => {}
        }
        if let Some(a) = &self.audit {
            if !a.url.starts_with("http://") {
                return Err(format!(
                    "audit.url: `{}` must be an http:// URL (TLS to the origin is not supported yet)",
                    a.url
                ));
            }
            if a.token.len() < 16 {
                return Err("audit.token: must be the edge token (at least 16 characters)".into());
            }
            within("audit.batch_max", a.batch_max, 1..=1000)?;
            within("audit.flush_ms", a.flush_ms, 10..=60_000)?;
            within("audit.queue_max", a.queue_max, 1..=10_000_000)?;
        }
        within("bundle.poll_secs", self.bundle.poll_secs, 1..=3600)?;
        within("filters.max_call_ms", self.filters.max_call_ms, 1..=10_000)?;
        within("filters.max_memory_mib", self.filters.max_memory_mib, 1..=4096)?;
        within("filters.pool_size", self.filters.pool_size, 1..=1024)?;
        let l = &self.limits;
        for (name, v) in [
            ("limits.header_timeout_secs", l.header_timeout_secs),
            ("limits.upstream_timeout_secs", l.upstream_timeout_secs),
            ("limits.body_timeout_secs", l.body_timeout_secs),
        ] {
            within(name, v, 1..=3600)?;
        }
        at_most("limits.drain_secs", l.drain_secs, 3600)?;
        if self.listen.addr == Some(self.listen.admin) {
            return Err("listen.admin: must differ from listen.addr".into());
        }
        self.authz.validate(self.listen.addr, self.listen.admin)?;
        self.telemetry.validate()?;
        self.rate_store.validate()?;
        if self.rate_store.kind == crate::rate_store::StoreKind::Redis && self.filters.engine == FilterEngine::Wasm {
            // Components ask the host's rate store synchronously: the shared store is the
            // native engine's.
            return Err("rate_store.kind: `redis` needs filters.engine = \"native\"".into());
        }
        if self.listen.addr.is_none() && !self.authz.enabled() {
            return Err("listen.addr: set it (the reverse proxy), or an [authz] listener, or both".into());
        }
        if self.routes.is_empty() {
            return Err("routes: at least one route is needed".into());
        }
        for (i, r) in self.routes.iter_mut().enumerate() {
            if !r.path_prefix.starts_with('/') {
                return Err(format!("routes[{i}].path_prefix: must start with `/`"));
            }
            match r.upstream.as_mut() {
                None if self.listen.addr.is_some() => {
                    return Err(format!("routes[{i}].upstream: required when the reverse proxy listens (listen.addr)"))
                }
                None => {}
                Some(up) => {
                    let u = up.trim_end_matches('/');
                    let rest = u.strip_prefix("http://").ok_or_else(|| {
                        format!(
                            "routes[{i}].upstream: `{up}` must be http://host:port (TLS to upstreams is not supported yet)"
                        )
                    })?;
                    if rest.is_empty() || rest.contains('/') {
                        return Err(format!("routes[{i}].upstream: `{up}` must be a base URL without a path"));
                    }
                    if rest.parse::<hyper::http::uri::Authority>().is_err() || rest.contains('@') {
                        return Err(format!("routes[{i}].upstream: `{rest}` is not a valid host[:port]"));
                    }
                    *up = u.to_string();
                }
            }
            if r.filters.is_empty() {
                return Err(format!(
                    "routes[{i}].filters: an empty chain would admit everything; list at least one filter"
                ));
            }
            for (j, f) in r.filters.iter_mut().enumerate() {
                if !is_builtin(f) {
                    if !f.ends_with(".wasm") {
                        return Err(format!(
                            "routes[{i}].filters[{j}]: `{f}` is neither a built-in ({}) nor a .wasm path",
                            gatehouse_core::Check::BUILTINS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                        ));
                    }
                    let p = dir.join(&*f);
                    if !p.exists() {
                        return Err(format!("routes[{i}].filters[{j}]: `{}` does not exist", p.display()));
                    }
                    *f = p.to_string_lossy().into_owned();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<GatewayConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gw.toml");
        std::fs::write(&p, text).unwrap();
        GatewayConfig::load(&p).map_err(|e| e.to_string())
    }

    #[test]
    fn the_example_loads() {
        let p = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
            .join("../../examples/gateway.toml");
        let c = GatewayConfig::load(&p).unwrap();
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[1].filters, ["gatehouse"]);
        assert!(c.bundle.public_key.is_absolute());
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let base =
            "[listen]\naddr = \"127.0.0.1:1\"\nadmin = \"127.0.0.1:2\"\n[bundle]\nfile = \"b\"\npublic_key = \"k\"\n";
        let cases = [
            (format!("{base}[[routes]]\nupstream = \"https://x:1\"\n"), "routes[0].upstream"),
            (format!("{base}[[routes]]\nupstream = \"http://x:1/path\"\n"), "routes[0].upstream"),
            (format!("{base}[[routes]]\nupstream = \"http://user@x:1\"\n"), "not a valid host"),
            (format!("{base}[[routes]]\nupstream = \"http://x y:1\"\n"), "not a valid host"),
            (format!("{base}[[routes]]\nupstream = \"http://x:1\"\nfilters = []\n"), "routes[0].filters"),
            (format!("{base}[[routes]]\nupstream = \"http://x:1\"\nfilters = [\"nope\"]\n"), "routes[0].filters[0]"),
            (format!("{base}[[routes]]\nupstream = \"http://x:1\"\nfilters = [\"missing.wasm\"]\n"), "does not exist"),
            (format!("{base}[filters]\nmax_call_ms = 0\n[[routes]]\nupstream = \"http://x:1\"\n"), "filters.max_call_ms"),
            (format!("{base}[limits]\nheader_timeout_secs = 0\n[[routes]]\nupstream = \"http://x:1\"\n"), "limits.header_timeout_secs"),
            (format!("{base}[limits]\nbody_timeout_secs = 0\n[[routes]]\nupstream = \"http://x:1\"\n"), "limits.body_timeout_secs"),
            (format!("{base}[limits]\ndrain_secs = 7200\n[[routes]]\nupstream = \"http://x:1\"\n"), "limits.drain_secs"),
            (format!("{base}[audit]\nurl = \"https://o/v1/audit/edge\"\ntoken = \"0123456789abcdef\"\n[[routes]]\nupstream = \"http://x:1\"\n"), "audit.url"),
            (format!("{base}[audit]\nurl = \"http://o/v1/audit/edge\"\ntoken = \"short\"\n[[routes]]\nupstream = \"http://x:1\"\n"), "audit.token"),
            (format!("{base}[audit]\nurl = \"http://o/v1/audit/edge\"\ntoken = \"0123456789abcdef\"\nbatch_max = 5000\n[[routes]]\nupstream = \"http://x:1\"\n"), "audit.batch_max"),
            (base.to_string(), "routes"),
            (format!("{base}colour = 1\n"), "unknown field"),
            ("[listen]\naddr = \"127.0.0.1:1\"\nadmin = \"127.0.0.1:1\"\n[bundle]\nfile = \"b\"\npublic_key = \"k\"\n[[routes]]\nupstream = \"http://x:1\"\n".to_string(), "listen.admin"),
        ];
        for (text, want) in cases {
            let e = load(&text).unwrap_err();
            assert!(e.contains("gw.toml: "), "{e}");
            assert!(e.contains(want), "expected `{want}` in: {e}");
        }
    }

    fn load_env(text: &str, vars: &[(&str, &str)]) -> Result<GatewayConfig, String> {
        load_env_in(tempfile::tempdir().unwrap().path(), text, vars)
    }

    fn load_env_in(dir: &Path, text: &str, vars: &[(&str, &str)]) -> Result<GatewayConfig, String> {
        let p = dir.join("gw.toml");
        std::fs::write(&p, text).unwrap();
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let overlay = Overlay::from_vars(gatehouse_settings::GATEWAY_PREFIX, vars).unwrap();
        GatewayConfig::load_with(&p, overlay).map(|(c, _)| c).map_err(|e| e.to_string())
    }

    const BASE: &str = "[listen]\naddr = \"127.0.0.1:1\"\nadmin = \"127.0.0.1:2\"\n[bundle]\nfile = \"b\"\npublic_key = \"k\"\n[[routes]]\nupstream = \"http://x:1\"\n";

    #[test]
    fn the_environment_sets_any_field_and_its_errors_name_the_variable() {
        let c = load_env(
            BASE,
            &[
                ("GATEHOUSE_GATEWAY__LISTEN__ADMIN", "127.0.0.1:9"),
                ("GATEHOUSE_GATEWAY__LIMITS__MAX_BODY_BYTES", "1000"),
                ("GATEHOUSE_GATEWAY__ROUTES__0__FILTERS", r#"["ip","token"]"#),
                ("GATEHOUSE_GATEWAY__ROUTES__1__UPSTREAM", "http://y:2/"),
                ("GATEHOUSE_GATEWAY__ROUTES__1__PATH_PREFIX", "/b"),
                ("GATEHOUSE_LOG", "debug"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen.admin.port(), 9);
        assert_eq!(c.limits.max_body_bytes, 1000);
        assert_eq!(c.routes[0].filters, ["ip", "token"]);
        assert_eq!(c.routes[1].upstream.as_deref(), Some("http://y:2"));
        assert!(c.source.is_some());
        for (var, value, want) in [
            ("GATEHOUSE_GATEWAY__LIMITS__MAX_BODDY", "1", "GATEHOUSE_GATEWAY__LIMITS__MAX_BODDY: unknown field `max_boddy`"),
            ("GATEHOUSE_GATEWAY__LIMITS__HEADER_TIMEOUT_SECS", "0", "limits.header_timeout_secs (from GATEHOUSE_GATEWAY__LIMITS__HEADER_TIMEOUT_SECS): must be between 1 and 3600"),
            ("GATEHOUSE_GATEWAY__ROUTES__0__UPSTREAM", "https://x:1", "routes[0].upstream (from GATEHOUSE_GATEWAY__ROUTES__0__UPSTREAM)"),
            ("GATEHOUSE_GATEWAY__ROUTES__0__FILTERS", "[\"nope\"]", "routes[0].filters[0] (from GATEHOUSE_GATEWAY__ROUTES__0__FILTERS)"),
            ("GATEHOUSE_GATEWAY__LISTEN__ADMIN", "nowhere", "GATEHOUSE_GATEWAY__LISTEN__ADMIN: "),
        ] {
            let e = load_env(BASE, &[(var, value)]).unwrap_err();
            assert!(e.contains("gw.toml: ") && e.contains(want), "expected `{want}` in: {e}");
        }
    }

    #[test]
    fn a_reload_may_change_routes_and_filters_only() {
        let dir = tempfile::tempdir().unwrap();
        let load_env = |text: &str, vars: &[(&str, &str)]| load_env_in(dir.path(), text, vars);
        let old = load_env(BASE, &[]).unwrap();
        let routes = load_env(
            BASE,
            &[("GATEHOUSE_GATEWAY__ROUTES__0__FILTERS", r#"["ip"]"#), ("GATEHOUSE_GATEWAY__FILTERS__POOL_SIZE", "8")],
        )
        .unwrap();
        assert!(old.fixed_changes(&routes).is_empty());
        let other = load_env(
            BASE,
            &[("GATEHOUSE_GATEWAY__LISTEN__ADMIN", "127.0.0.1:9"), ("GATEHOUSE_GATEWAY__LIMITS__DRAIN_SECS", "1")],
        )
        .unwrap();
        assert_eq!(old.fixed_changes(&other), ["listen", "limits"]);
    }
}
