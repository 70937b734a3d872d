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
use gatehouse_core::engine::{Engine, Env};
use gatehouse_core::request::OwnedRequest;
use gatehouse_core::{apikey, Decision, EdgeSecrets, MemoryRateStore, NoCountryLookup};

mod commands;
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
    /// Check configurations as the servers load them (environment applied).
    #[command(subcommand)]
    Config(commands::config::ConfigCmd),
    /// Print a shell completion script (`gatehouse completions bash > /etc/bash_completion.d/gatehouse`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
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
    Mint(commands::token::MintArgs),
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
            commands::inspect::bundle(&path, &public_key, json)
        }
        Command::Token(TokenCmd::Mint(a)) => commands::token::mint(a),
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
        Command::Demo { dir, listen, admin, upstream, origin } => commands::serve::demo(demo::DemoOptions {
            dir: dir.unwrap_or_else(commands::serve::demo_dir),
            listen,
            admin,
            upstream,
            origin,
        }),
        Command::Upstream { listen } => commands::serve::upstream(listen),
        Command::Origin { config, json_logs } => commands::serve::origin(&config, json_logs),
        Command::Audit(AuditCmd::Verify { config, tenant }) => commands::serve::audit_verify(&config, &tenant),
        Command::Gateway { config, json_logs } => commands::serve::gateway(&config, json_logs, false),
        Command::Authz { config, json_logs } => commands::serve::gateway(&config, json_logs, true),
        Command::Config(cmd) => commands::config::run(cmd),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "gatehouse",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
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
