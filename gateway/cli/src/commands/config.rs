//! `gatehouse config check`: load a gateway, authorization-service or origin configuration
//! exactly as the server would (the environment overlay applied, every field validated)
//! and say `ok` with a short summary, or the same field-naming error the server would
//! stop with (exit 1). `--print` shows the effective configuration (the file with the
//! environment applied), secrets redacted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use gatehouse_origin::OriginConfig;
use gatehouse_proxy::config::GatewayConfig;
use gatehouse_settings::{Overlay, GATEWAY_PREFIX, ORIGIN_PREFIX};

/// `gatehouse config …`.
#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Validate a configuration as the server would load it (environment applied): `ok`
    /// and a summary, or the error naming the field or variable (exit 1).
    Check(CheckArgs),
}

/// What `config check` checks.
#[derive(Args)]
#[command(group = clap::ArgGroup::new("kind").args(["gateway", "origin", "authz", "file"]).required(true))]
pub struct CheckArgs {
    /// A gateway configuration (`gatehouse gateway --config`).
    #[arg(long, value_name = "FILE")]
    pub gateway: Option<PathBuf>,
    /// An origin configuration (`gatehouse origin --config`).
    #[arg(long, value_name = "FILE")]
    pub origin: Option<PathBuf>,
    /// An authorization-service configuration (`gatehouse authz --config`: a gateway
    /// configuration with an `[authz]` listener).
    #[arg(long, value_name = "FILE")]
    pub authz: Option<PathBuf>,
    /// A configuration of either kind, told apart by its content.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Also print the effective configuration (the file with the environment applied),
    /// secrets redacted.
    #[arg(long)]
    pub print: bool,
}

/// Which server a file configures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// `gatehouse gateway`.
    Gateway,
    /// `gatehouse authz` (a gateway file with `[authz]`).
    Authz,
    /// `gatehouse origin`.
    Origin,
}

/// Run `gatehouse config …`.
pub fn run(cmd: ConfigCmd) -> Result<ExitCode> {
    let ConfigCmd::Check(a) = cmd;
    let (kind, file) = match (a.gateway, a.origin, a.authz, a.file) {
        (Some(f), ..) => (Kind::Gateway, f),
        (_, Some(f), ..) => (Kind::Origin, f),
        (_, _, Some(f), _) => (Kind::Authz, f),
        (_, _, _, Some(f)) => (detect(&f)?, f),
        _ => unreachable!("clap requires one of them"),
    };
    match check(kind, &file) {
        Ok((summary, document)) => {
            if a.print {
                println!("# {}: ok ({summary})", file.display());
                print!("{}", toml::to_string(&gatehouse_settings::redacted(&document))?);
            } else {
                println!("{}: ok ({summary})", file.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("gatehouse: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Tell a gateway from an origin configuration by the fields only one of them has.
fn detect(file: &Path) -> Result<Kind> {
    let text = std::fs::read_to_string(file).map_err(|e| anyhow!("{}: cannot read: {e}", file.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow!("{}: {}", file.display(), e.to_string().trim_end()))?;
    let has = |k: &str| doc.contains_key(k);
    if has("routes") || has("authz") || doc.get("listen").is_some_and(|l| l.is_table()) {
        return Ok(if has("routes") || !has("authz") { Kind::Gateway } else { Kind::Authz });
    }
    if has("region") || has("public_url") || has("data_dir") {
        return Ok(Kind::Origin);
    }
    Err(anyhow!(
        "{}: neither a gateway (`[[routes]]`, `[listen]`) nor an origin (`region`, `public_url`) configuration; say which with --gateway, --authz or --origin",
        file.display()
    ))
}

/// Load `file` as `kind` with this process's environment: a one-line summary and the
/// effective document, or the loader's error.
pub fn check(kind: Kind, file: &Path) -> Result<(String, toml::Table)> {
    let from_env = |o: &Overlay| match o.vars().len() {
        0 => String::new(),
        n => format!("; {n} setting(s) from the environment"),
    };
    match kind {
        Kind::Gateway | Kind::Authz => {
            let overlay = Overlay::from_env(GATEWAY_PREFIX).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            let env = from_env(&overlay);
            let (c, doc) = GatewayConfig::load_with(file, overlay)?;
            if kind == Kind::Authz && !c.authz.enabled() {
                return Err(anyhow!(
                    "{}: authz: set `http` or `grpc` under [authz] to run the authorization service",
                    file.display()
                ));
            }
            Ok((gateway_summary(&c) + &env, doc))
        }
        Kind::Origin => {
            let overlay = Overlay::from_env(ORIGIN_PREFIX).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            let env = from_env(&overlay);
            let (c, doc) = OriginConfig::load_with(file, overlay)?;
            let summary = format!(
                "origin: region {}, listen {}, public URL {}, {} region(s), {} sink(s)",
                c.region,
                c.listen,
                c.public_url,
                c.regions.len(),
                c.sinks.len()
            );
            Ok((summary + &env, doc))
        }
    }
}

fn gateway_summary(c: &GatewayConfig) -> String {
    let mut filters: Vec<&str> = c.routes.iter().flat_map(|r| r.filters.iter().map(String::as_str)).collect();
    filters.sort_unstable();
    filters.dedup();
    let mut parts = vec![format!("gateway: admin {}", c.listen.admin)];
    if let Some(a) = c.listen.addr {
        parts.insert(0, format!("gateway: listen {a}"));
        parts[1] = format!("admin {}", c.listen.admin);
    }
    if let Some(a) = c.authz.http {
        parts.push(format!("authz http {a}"));
    }
    if let Some(a) = c.authz.grpc {
        parts.push(format!("authz grpc {a}"));
    }
    parts.push(format!("{} route(s)", c.routes.len()));
    parts.push(format!("filters {}", filters.join(" ")));
    let bundle = match (&c.bundle.file, &c.bundle.origin_url) {
        (Some(f), _) => format!("bundle file {}", f.display()),
        (_, Some(u)) => format!("bundle from {u}"),
        _ => "no bundle".into(),
    };
    parts.push(bundle);
    parts.join(", ")
}
