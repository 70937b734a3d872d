//! `gatehouse token mint`: sign development and test tokens with a key file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use gatehouse_bundler::keys;

use crate::{list, now_or};

/// What `token mint` signs.
#[derive(Args)]
pub struct MintArgs {
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

/// Sign the token(s) `a` describes and print them, one per line.
pub fn mint(a: MintArgs) -> Result<ExitCode> {
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
        let t = gatehouse_core::time::parse_rfc3339(t)
            .ok_or_else(|| anyhow!("--auth-time: `{t}` is not a UTC RFC 3339 time like 2027-01-01T00:00:00Z"))?;
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
