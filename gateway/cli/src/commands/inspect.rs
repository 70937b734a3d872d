//! `gatehouse bundle inspect`: verify a signed bundle and summarise it.

use std::path::Path;
use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use gatehouse_bundler::keys;
use gatehouse_core::bundle;

use crate::now_or;

/// Verify `path` against `public_key` and print a summary (or the whole bundle as JSON).
pub fn bundle(path: &Path, public_key: &Path, json: bool) -> Result<ExitCode> {
    let pk = keys::read_public_key(public_key)?;
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
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
        let t = |s: u64| humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(s)).to_string();
        let now = now_or(&None)?;
        println!("bundle      {} ({} bytes, signature ok, key {})", path.display(), bytes.len(), bundle::key_id(&pk));
        println!("format      {}", body.format);
        println!("revision    {}", body.revision);
        println!("region      {}", if body.region.is_empty() { "-" } else { &body.region });
        println!("issued at   {}", t(body.issued_at));
        println!("expires at  {}{}", t(body.expires_at), if now > body.expires_at { "  (EXPIRED)" } else { "" });
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
