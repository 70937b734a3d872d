//! `gatehouse`: the command-line front of Gatehouse.
//!
//! Exit codes: 0 success (for `decide`: allow), 1 `decide` denied or redirected,
//! 2 bad input (message on stderr).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use gatehouse_bundler::keys;
use gatehouse_core::bundle;
use gatehouse_core::engine::{Engine, Env};
use gatehouse_core::request::OwnedRequest;
use gatehouse_core::{apikey, Decision, EdgeSecrets, MemoryRateStore, NoCountryLookup};

mod demo;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "gatehouse", version, about = "Gatehouse: an edge-deployable auth gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Generate keys and secrets.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Check and compile policy files.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Inspect signed bundles.
    #[command(subcommand)]
    Bundle(BundleCmd),
    /// Development helpers for tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Create API keys.
    #[command(subcommand)]
    Apikey(ApikeyCmd),
    /// Decide on one request described in JSON and print the decision as JSON.
    Decide(DecideArgs),
    /// Run Gatehouse on embedded defaults: a regional origin (embedded libSQL) seeded
    /// with an organisation and users, the gateway pulling its bundle from that origin,
    /// and a demo upstream app behind it; prints what to try. Ctrl-C stops everything.
    Demo {
        /// Working directory.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Gateway listener.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Admin listener.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: std::net::SocketAddr,
        /// Demo upstream listener.
        #[arg(long, default_value = "127.0.0.1:3000")]
        upstream: std::net::SocketAddr,
        /// Origin listener.
        #[arg(long, default_value = "127.0.0.1:7400")]
        origin: std::net::SocketAddr,
    },
    /// Serve the demo upstream app alone (a JSON echo of each request).
    Upstream {
        /// Listener.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: std::net::SocketAddr,
    },
    /// Run a regional origin: tenants in libSQL, sign-in, token issuance, bundles, audit.
    Origin {
        /// Origin configuration (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        json_logs: bool,
    },
    /// Audit-log tools.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Run the native gateway (reverse proxy with policy filter components).
    Gateway {
        /// Gateway configuration (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        json_logs: bool,
    },
    /// Run the authorization service for nginx, Traefik, Caddy and Envoy: the gateway's
    /// engine behind the `[authz]` listeners of a gateway configuration (the same runner
    /// as `gateway`; the file needs an `[authz]` listener).
    Authz {
        /// Gateway configuration (TOML) with an `[authz]` section.
        #[arg(long)]
        config: PathBuf,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        json_logs: bool,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Verify a tenant's hash-chained audit log (exit 0 intact, 1 tampered).
    Verify {
        /// Origin configuration (TOML) of the tenant's home region.
        #[arg(long)]
        config: PathBuf,
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Write a bundle-signing key pair, a token-signing key with its JWKS, and an edge
    /// secrets file (API-key hashing secret) into a directory.
    Generate {
        /// Directory to write into (created if missing).
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
        /// Token signing algorithm: EdDSA or ES256.
        #[arg(long, default_value = "EdDSA")]
        token_alg: String,
        /// `kid` of the token signing key.
        #[arg(long, default_value = "k1")]
        kid: String,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Validate a policy file and report every problem.
    Check {
        /// Policy file (TOML).
        #[arg(long)]
        policy: PathBuf,
    },
    /// Compile a policy file into a signed bundle.
    Compile {
        /// Policy file (TOML).
        #[arg(long)]
        policy: PathBuf,
        /// Ed25519 private key (PEM) that signs the bundle.
        #[arg(long)]
        signing_key: PathBuf,
        /// Where to write the bundle.
        #[arg(long)]
        out: PathBuf,
        /// Bundle lifetime (e.g. `24h`, `7d`).
        #[arg(long, default_value = "24h")]
        ttl: humantime::Duration,
        /// Policy revision (default: the issue time).
        #[arg(long)]
        revision: Option<u64>,
        /// Region name recorded in the bundle.
        #[arg(long, default_value = "")]
        region: String,
        /// Issue time (RFC 3339, UTC); default now.
        #[arg(long)]
        now: Option<String>,
    },
}

#[derive(Subcommand)]
enum BundleCmd {
    /// Verify a bundle and summarise it.
    Inspect {
        /// The bundle file.
        bundle: PathBuf,
        /// The pinned Ed25519 public key (PEM).
        #[arg(long)]
        public_key: PathBuf,
        /// Print the whole bundle as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Sign a token with a key file (for development and tests).
    Mint(MintArgs),
}

#[derive(Args)]
struct MintArgs {
    /// Private key file (PEM; for HS256 a base64 secret).
    #[arg(long)]
    key: PathBuf,
    /// Algorithm: EdDSA, ES256, RS256, PS256, HS256.
    #[arg(long, default_value = "EdDSA")]
    alg: String,
    /// Key id.
    #[arg(long)]
    kid: Option<String>,
    /// Issuer (`iss`).
    #[arg(long)]
    iss: String,
    /// Audience (`aud`).
    #[arg(long)]
    aud: Option<String>,
    /// Subject (`sub`).
    #[arg(long)]
    sub: String,
    /// Organisation (`org`).
    #[arg(long)]
    org: String,
    /// Roles, comma-separated.
    #[arg(long, default_value = "")]
    roles: String,
    /// Scope (space-separated).
    #[arg(long)]
    scope: Option<String>,
    /// Teams, comma-separated.
    #[arg(long, default_value = "")]
    teams: String,
    /// Authentication methods (`amr`), comma-separated.
    #[arg(long, default_value = "")]
    amr: String,
    /// Session id (`sid`).
    #[arg(long)]
    sid: Option<String>,
    /// Token id (`jti`); default random.
    #[arg(long)]
    jti: Option<String>,
    /// Time of the sign-in (`auth_time`; RFC 3339, UTC); none: no `auth_time`.
    #[arg(long)]
    auth_time: Option<String>,
    /// Authentication context class (`acr`).
    #[arg(long)]
    acr: Option<String>,
    /// Another claim as `NAME=JSON` (repeatable; replaces a claim set above, for tests
    /// of malformed tokens).
    #[arg(long = "claim", value_name = "NAME=JSON")]
    claims: Vec<String>,
    /// Lifetime.
    #[arg(long, default_value = "10m")]
    ttl: humantime::Duration,
    /// Issue time (RFC 3339); default now.
    #[arg(long)]
    now: Option<String>,
    /// Print this many tokens, one per line (subjects `SUB-1`, `SUB-2`, ...; random ids).
    #[arg(long, default_value_t = 1)]
    count: usize,
}

#[derive(Subcommand)]
enum ApikeyCmd {
    /// Generate an API key and print it with the policy entry (hash only) for it.
    Create {
        /// Edge secrets file holding `api_key_secret`.
        #[arg(long)]
        secrets: PathBuf,
        /// Subject the key acts as.
        #[arg(long)]
        subject: String,
        /// Scopes, comma-separated (`resource:action`).
        #[arg(long, default_value = "")]
        scopes: String,
    },
}

#[derive(Args)]
struct DecideArgs {
    /// Signed bundle.
    #[arg(long)]
    bundle: PathBuf,
    /// Pinned Ed25519 public key (PEM).
    #[arg(long)]
    public_key: PathBuf,
    /// Request description (JSON: method, url, headers, peer, country); `-` for stdin.
    #[arg(long)]
    request: PathBuf,
    /// Decision time (RFC 3339, UTC); default now.
    #[arg(long)]
    now: Option<String>,
    /// Edge secrets file (API-key secret, HS256 keys).
    #[arg(long)]
    secrets: Option<PathBuf>,
}

fn now_or(arg: &Option<String>) -> Result<u64> {
    match arg {
        Some(s) => gatehouse_core::time::parse_rfc3339(s)
            .ok_or_else(|| anyhow!("--now: `{s}` is not a UTC RFC 3339 time like 2027-01-01T00:00:00Z")),
        None => Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs()),
    }
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Keys(KeysCmd::Generate { out_dir, token_alg, kid, force }) => {
            std::fs::create_dir_all(&out_dir).with_context(|| format!("{}", out_dir.display()))?;
            let (sk, pk) = keys::generate_bundle_keys();
            let (tk, jwks) = keys::generate_token_keys(&token_alg, &kid)
                .ok_or_else(|| anyhow!("--token-alg must be EdDSA or ES256"))?;
            let secret: [u8; 32] = gatehouse_bundler::random::random_bytes();
            let secrets = format!(
                "# Edge secrets: keep out of bundles and version control.\napi_key_secret = \"{}\"\n\n[hmac]\n",
                base64_std(&secret)
            );
            let files = [
                ("bundle-signing.pem", sk.as_bytes(), true),
                ("bundle-signing.pub.pem", pk.as_bytes(), false),
                ("token-signing.pem", tk.as_bytes(), true),
                ("token-signing.jwks.json", jwks.as_bytes(), false),
                ("edge-secrets.toml", secrets.as_bytes(), true),
            ];
            for (name, _, _) in &files {
                let p = out_dir.join(name);
                if p.exists() && !force {
                    bail!("{}: already exists (use --force to replace it)", p.display());
                }
            }
            for (name, data, private) in files {
                keys::write_file(&out_dir.join(name), data, private, force)?;
                println!("wrote {}{}", out_dir.join(name).display(), if private { " (private, 0600)" } else { "" });
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCmd::Check { policy }) => {
            let p = gatehouse_bundler::load_policy(&policy)?;
            println!(
                "{}: ok ({} orgs, {} routes, {} issuers)",
                policy.display(),
                p.orgs.len(),
                p.routes.len(),
                p.issuers.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCmd::Compile { policy, signing_key, out, ttl, revision, region, now }) => {
            let p = gatehouse_bundler::load_policy(&policy)?;
            let kp = keys::read_signing_key(&signing_key)?;
            let issued_at = now_or(&now)?;
            let stamp = gatehouse_bundler::BundleStamp {
                revision: revision.unwrap_or(issued_at),
                region,
                issued_at,
                ttl_secs: ttl.as_secs(),
            };
            let bytes = gatehouse_bundler::compile(p, &stamp, &kp)?;
            std::fs::write(&out, &bytes).with_context(|| format!("{}", out.display()))?;
            println!(
                "wrote {} ({} bytes, revision {}, expires {})",
                out.display(),
                bytes.len(),
                stamp.revision,
                humantime::format_rfc3339_seconds(
                    UNIX_EPOCH + std::time::Duration::from_secs(issued_at + stamp.ttl_secs)
                )
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bundle(BundleCmd::Inspect { bundle: path, public_key, json }) => {
            let pk = keys::read_public_key(&public_key)?;
            let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
            let body = bundle::open_unchecked_time(&bytes, &pk).with_context(|| format!("{}", path.display()))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "format": body.format, "revision": body.revision, "region": body.region,
                        "issued_at": body.issued_at, "expires_at": body.expires_at,
                        "key_id": bundle::key_id(&pk), "policy": body.policy,
                    }))?
                );
            } else {
                let t = |s: u64| {
                    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(s)).to_string()
                };
                let now = now_or(&None)?;
                println!(
                    "bundle      {} ({} bytes, signature ok, key {})",
                    path.display(),
                    bytes.len(),
                    bundle::key_id(&pk)
                );
                println!("format      {}", body.format);
                println!("revision    {}", body.revision);
                println!("region      {}", if body.region.is_empty() { "-" } else { &body.region });
                println!("issued at   {}", t(body.issued_at));
                println!(
                    "expires at  {}{}",
                    t(body.expires_at),
                    if now > body.expires_at { "  (EXPIRED)" } else { "" }
                );
                let p = &body.policy;
                println!("issuers     {}", p.issuers.iter().map(|i| i.issuer.as_str()).collect::<Vec<_>>().join(", "));
                println!("tiers       {}", p.tiers.keys().cloned().collect::<Vec<_>>().join(", "));
                println!("orgs        {}", p.orgs.len());
                for (id, o) in &p.orgs {
                    println!(
                        "  {id:<16} tier={} hosts={} api_keys={} ip_rules={} geo_rules={} disabled_users={}{}",
                        o.tier,
                        o.hosts.join(","),
                        o.api_keys.len(),
                        o.ip.allow.len() + o.ip.deny.len(),
                        o.geo.allow.len() + o.geo.deny.len(),
                        o.disabled_users.len(),
                        if o.suspended { "  (SUSPENDED)" } else { "" }
                    );
                }
                println!("routes      {}", p.routes.len());
                for r in &p.routes {
                    println!(
                        "  {:<16} {} auth={:?}{}{}{}{}",
                        r.name,
                        r.path,
                        r.auth,
                        r.permission.as_ref().map(|x| format!(" permission={x}")).unwrap_or_default(),
                        r.role.as_ref().map(|x| format!(" role={x}")).unwrap_or_default(),
                        r.feature.as_ref().map(|x| format!(" feature={x}")).unwrap_or_default(),
                        match r.require_mfa {
                            gatehouse_core::policy::RequireMfa::No => String::new(),
                            gatehouse_core::policy::RequireMfa::Any => " mfa".into(),
                            gatehouse_core::policy::RequireMfa::Within { max_age_secs } => {
                                format!(" mfa_max_age={max_age_secs}s")
                            }
                        }
                    );
                }
                println!("revoked     {} tokens, {} sessions", p.revoked.jti.len(), p.revoked.sessions.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCmd::Mint(a)) => {
            use jwt_simple::prelude::{Claims, Duration};
            let key = keys::read_token_key(&a.key, &a.alg, a.kid.as_deref())?;
            let now = now_or(&a.now)?;
            // JWT time arithmetic (jwt-simple) holds seconds in 32 bits of fixed point:
            // stay well inside it.
            if a.ttl.as_secs() > 50 * 365 * 86_400 || now > 4_000_000_000 {
                bail!("--ttl: at most 50 years, and --now before 2096");
            }
            let mut custom = serde_json::json!({ "org": a.org });
            let roles = list(&a.roles);
            if !roles.is_empty() {
                custom["roles"] = roles.into();
            }
            let teams = list(&a.teams);
            if !teams.is_empty() {
                custom["teams"] = teams.into();
            }
            let amr = list(&a.amr);
            if !amr.is_empty() {
                custom["amr"] = amr.into();
            }
            if let Some(s) = &a.scope {
                custom["scope"] = s.clone().into();
            }
            if let Some(s) = &a.sid {
                custom["sid"] = s.clone().into();
            }
            if let Some(t) = &a.auth_time {
                let t = gatehouse_core::time::parse_rfc3339(t).ok_or_else(|| {
                    anyhow!("--auth-time: `{t}` is not a UTC RFC 3339 time like 2027-01-01T00:00:00Z")
                })?;
                custom["auth_time"] = t.into();
            }
            if let Some(s) = &a.acr {
                custom["acr"] = s.clone().into();
            }
            for c in &a.claims {
                let (name, json) = c.split_once('=').ok_or_else(|| anyhow!("--claim: `{c}` is not NAME=JSON"))?;
                custom[name] = serde_json::from_str(json).with_context(|| format!("--claim {name}: not JSON"))?;
            }
            let mut out = String::new();
            for i in 0..a.count.max(1) {
                let sub = if a.count > 1 { format!("{}-{}", a.sub, i + 1) } else { a.sub.clone() };
                let mut c = Claims::with_custom_claims(custom.clone(), Duration::from_secs(a.ttl.as_secs()))
                    .with_issuer(&a.iss)
                    .with_subject(&sub);
                if let Some(aud) = &a.aud {
                    c = c.with_audience(aud);
                }
                let jti = match (&a.jti, a.count) {
                    (Some(j), 1) => j.clone(),
                    _ => gatehouse_bundler::random::random_bytes::<12>().iter().map(|b| format!("{b:02x}")).collect(),
                };
                c = c.with_jwt_id(jti);
                c.issued_at = Some(Duration::from_secs(now));
                c.invalid_before = Some(Duration::from_secs(now));
                c.expires_at = Some(Duration::from_secs(now + a.ttl.as_secs()));
                out.push_str(&key.sign(c).map_err(|e| anyhow!("signing failed: {e}"))?);
                out.push('\n');
            }
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Apikey(ApikeyCmd::Create { secrets, subject, scopes }) => {
            let s = gatehouse_bundler::load_secrets(&secrets)?;
            let secret = s.api_key_secret.ok_or_else(|| anyhow!("{}: no api_key_secret", secrets.display()))?;
            let (key, prefix) = apikey::generate(&gatehouse_bundler::random::random_bytes::<41>());
            let scopes = list(&scopes);
            for sc in &scopes {
                if !gatehouse_core::policy::valid_permission(sc) {
                    bail!("--scopes: `{sc}` is not `resource:action`");
                }
            }
            println!("API key (shown once): {key}");
            println!();
            println!("# add under [orgs.<org>] in the policy file:");
            println!("[[orgs.<org>.api_keys]]");
            println!("prefix = \"{prefix}\"");
            println!("hash = \"{}\"", apikey::hash_hex(&secret, &key));
            println!("subject = {:?}", subject);
            println!("scopes = {:?}", scopes);
            Ok(ExitCode::SUCCESS)
        }
        Command::Decide(a) => decide(a),
        Command::Demo { dir, listen, admin, upstream, origin } => {
            let dir = match dir {
                Some(d) => d,
                None => std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."))
                    .join(".cache/gatehouse/demo"),
            };
            let opts = demo::DemoOptions { dir, listen, admin, upstream, origin };
            let prepared = demo::prepare(&opts, &std::env::current_exe()?)?;
            let cfg = gatehouse_proxy::config::GatewayConfig::load(&prepared.gateway_config)?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let _telemetry = {
                let _in = rt.enter();
                gatehouse_telemetry::init(&cfg.telemetry, "gatehouse-demo", false)?
            };
            rt.block_on(async {
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                let origin = tokio::spawn(gatehouse_origin::run(prepared.origin.clone(), async move {
                    let _ = stop_rx.await;
                }));
                let l = tokio::net::TcpListener::bind(upstream).await.with_context(|| format!("listen {upstream}"))?;
                tokio::spawn(demo::upstream(l));
                let mut up = false;
                for _ in 0..100 {
                    if tokio::net::TcpStream::connect(opts.origin).await.is_ok() {
                        up = true;
                        break;
                    }
                    if origin.is_finished() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                if !up {
                    origin.await??;
                    anyhow::bail!("the origin did not start on {}", opts.origin);
                }
                let walkthrough = demo::seed(&opts, &prepared).await?;
                let gw = tokio::spawn(gatehouse_proxy::run(cfg));
                // Print the walkthrough once the gateway has a bundle from the origin.
                for _ in 0..600 {
                    if gatehouse_proxy_ready(admin).await || gw.is_finished() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                println!("{walkthrough}");
                let r = gw.await;
                let _ = stop_tx.send(());
                let _ = origin.await;
                r??;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Upstream { listen } => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                let l = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listen {listen}"))?;
                eprintln!("demo upstream on http://{listen}");
                demo::upstream(l).await;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Origin { config, json_logs } => {
            let cfg = gatehouse_origin::OriginConfig::load(&config)?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let _telemetry = {
                let _in = rt.enter();
                gatehouse_telemetry::init(&cfg.telemetry, "gatehouse-origin", json_logs)?
            };
            rt.block_on(gatehouse_origin::run(cfg, async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                }
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCmd::Verify { config, tenant }) => {
            let cfg = gatehouse_origin::OriginConfig::load(&config)?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let app = gatehouse_origin::App::open(cfg).await?;
                let id = app
                    .tenant_id(&tenant)
                    .await?
                    .ok_or_else(|| anyhow!("no tenant `{tenant}` homed in this region"))?;
                match gatehouse_origin::api::verify_tenant_audit(&app, &id).await? {
                    gatehouse_origin::audit::Verdict::Intact(n) => {
                        println!("audit log of {tenant}: intact ({n} records)");
                        Ok(ExitCode::SUCCESS)
                    }
                    gatehouse_origin::audit::Verdict::Broken { seq, problem } => {
                        println!("audit log of {tenant}: TAMPERED at record {seq}: {problem}");
                        Ok(ExitCode::from(1))
                    }
                }
            })
        }
        Command::Gateway { config, json_logs } => run_gateway(&config, json_logs, false),
        Command::Authz { config, json_logs } => run_gateway(&config, json_logs, true),
    }
}

/// `gatehouse gateway` and `gatehouse authz`: one runner for whatever listeners the file
/// declares (`authz` insists on an `[authz]` listener).
fn run_gateway(config: &std::path::Path, json_logs: bool, authz: bool) -> Result<ExitCode> {
    let cfg = gatehouse_proxy::config::GatewayConfig::load(config)?;
    if authz && !cfg.authz.enabled() {
        anyhow::bail!(
            "{}: authz: set `http` or `grpc` under [authz] to run the authorization service",
            config.display()
        );
    }
    let threads = std::env::var("GATEHOUSE_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    // One thread: a current-thread runtime (no cross-thread wake-ups).
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    let service = if authz { "gatehouse-authz" } else { "gatehouse-gateway" };
    let _telemetry = {
        let _in = rt.enter();
        gatehouse_telemetry::init(&cfg.telemetry, service, json_logs)?
    };
    rt.block_on(gatehouse_proxy::run(cfg))?;
    Ok(ExitCode::SUCCESS)
}

/// Whether the gateway's admin listener says it is ready (it holds a valid bundle).
async fn gatehouse_proxy_ready(admin: std::net::SocketAddr) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(admin).await else { return false };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if s.write_all(format!("GET /readyz HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    buf.starts_with(b"HTTP/1.1 200")
}

fn base64_std(b: &[u8]) -> String {
    use jwt_simple::reexports::ct_codecs::{Base64, Encoder};
    Base64::encode_to_string(b).unwrap_or_default()
}

fn decide(a: DecideArgs) -> Result<ExitCode> {
    let pk = keys::read_public_key(&a.public_key)?;
    let now = now_or(&a.now)?;
    let secrets = match &a.secrets {
        Some(p) => gatehouse_bundler::load_secrets(p)?,
        None => EdgeSecrets::default(),
    };
    let bytes = std::fs::read(&a.bundle).with_context(|| format!("{}", a.bundle.display()))?;
    let engine = Engine::from_bundle(&bytes, &pk, now, &secrets).with_context(|| format!("{}", a.bundle.display()))?;
    let text = if a.request.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&a.request).with_context(|| format!("{}", a.request.display()))?
    };
    let req: OwnedRequest =
        serde_json::from_str(&text).with_context(|| format!("{}: not a request description", a.request.display()))?;
    let pairs = req.headers.pairs();
    let head =
        req.view(&pairs).ok_or_else(|| anyhow!("{}: `url` must be an absolute http(s) URL", a.request.display()))?;
    let rates = MemoryRateStore::new(1024, gatehouse_bundler::random::random_bytes());
    let d = engine
        .decide(&head, &Env { now: now * 1_000_000_000, rates: &rates, countries: &NoCountryLookup, signatures: None });
    println!("{}", serde_json::to_string_pretty(&d.report())?);
    Ok(match d {
        Decision::Allow(_) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}
