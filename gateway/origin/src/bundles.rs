//! Bundles for edges: the region-wide template policy plus, for every tenant homed in
//! this region, its organisation (tier, hosts, IP and geo rules, custom roles, feature
//! overrides, limits, API-key hashes, its sign-in and step-up pages, whether it is
//! suspended and the ids of its disabled users), its issuer (the region's JWKS, restricted
//! to that organisation) and its revocations. Signed with the origin's Ed25519 key in the format
//! of `gatehouse-core::bundle`.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context as _, Result};
use gatehouse_core::policy::{ApiKeyRecord, Issuer, Org, Policy, RoleDef};

use crate::store::Store;

/// The template used when the configuration names none.
pub use gatehouse_admin_bodies::tenant_policy::default_template;
/// The parts of an organisation's edge policy that tenant admins set (its type lives with
/// the admin bodies).
pub use gatehouse_admin_bodies::tenant_policy::TenantPolicy;

/// Inputs that are the same for every tenant.
pub struct Region<'a> {
    /// Template policy.
    pub template: &'a Policy,
    /// Public URL (issuers are `{public_url}/t/{slug}`).
    pub public_url: &'a str,
    /// Access-token audience.
    pub audience: &'a str,
    /// The region's JWKS.
    pub jwks: &'a str,
    /// This region.
    pub region: &'a str,
}

/// Assemble the region's policy from storage.
pub async fn region_policy(store: &Store, r: &Region<'_>, now: i64) -> Result<Policy> {
    let mut policy = r.template.clone();
    let mut rows = store
        .directory
        .lock()
        .await
        .query("SELECT id, slug FROM tenants WHERE home_region = ?1 ORDER BY slug", [r.region])
        .await?;
    let mut tenants = Vec::new();
    while let Some(row) = rows.next().await? {
        tenants.push((row.get::<String>(0)?, row.get::<String>(1)?));
    }
    drop(rows);
    for (id, slug) in tenants {
        let db = store.tenant(&id, false).await.with_context(|| format!("tenant {slug}"))?;
        let h = db.lock().await;
        let mut rows = h.query("SELECT tier, policy FROM org WHERE id = 1", ()).await?;
        let Some(row) = rows.next().await? else { continue };
        let (tier, tp): (String, String) = (row.get(0)?, row.get(1)?);
        drop(rows);
        let mut tp: TenantPolicy = serde_json::from_str(&tp).with_context(|| format!("tenant {slug}: policy"))?;
        // A child's IP and geo rules as narrowed by its ancestors' (`hierarchy`).
        let inherited =
            crate::hierarchy::inherited(&h).await.map_err(|e| anyhow!("tenant {slug}: inherited: {e:?}"))?;
        (tp.ip, tp.geo) = crate::hierarchy::narrow_ip_geo(inherited.as_ref(), &tp.ip, &tp.geo);
        let mut roles = BTreeMap::new();
        let mut rows = h.query("SELECT name, permissions FROM roles ORDER BY name", ()).await?;
        while let Some(row) = rows.next().await? {
            let perms: Vec<String> = serde_json::from_str(&row.get::<String>(1)?)?;
            roles.insert(row.get::<String>(0)?, RoleDef { permissions: perms });
        }
        drop(rows);
        let mut api_keys = Vec::new();
        let mut rows = h
            .query(
                "SELECT prefix, hash, subject, scopes, roles, expires_at FROM api_keys
                 WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1) ORDER BY prefix",
                [now],
            )
            .await?;
        while let Some(row) = rows.next().await? {
            api_keys.push(ApiKeyRecord {
                prefix: row.get(0)?,
                hash: row.get(1)?,
                subject: row.get(2)?,
                scopes: serde_json::from_str(&row.get::<String>(3)?)?,
                roles: serde_json::from_str(&row.get::<String>(4)?)?,
                expires_at: row.get::<Option<i64>>(5)?.map(|t| t as u64),
            });
        }
        drop(rows);
        let mut rows = h.query("SELECT jti FROM revoked_tokens WHERE expires_at > ?1 ORDER BY jti", [now]).await?;
        while let Some(row) = rows.next().await? {
            policy.revoked.jti.push(row.get(0)?);
        }
        drop(rows);
        let mut rows = h
            .query("SELECT id FROM sessions WHERE revoked_at IS NOT NULL AND expires_at > ?1 ORDER BY id", [now])
            .await?;
        while let Some(row) = rows.next().await? {
            policy.revoked.sessions.push(row.get(0)?);
        }
        drop(rows);
        let suspended = crate::store::orgs::suspended_at(&h).await?.is_some();
        let disabled_users = crate::store::users::disabled_ids(&h).await?;
        drop(h);
        let issuer = format!("{}/t/{slug}", r.public_url);
        policy.issuers.push(Issuer {
            issuer: issuer.clone(),
            audiences: vec![r.audience.to_string()],
            jwks: r.jwks.to_string(),
            orgs: vec![slug.clone()],
            ..Default::default()
        });
        let org = Org {
            // The origin's hosted pages: `/t/{slug}/login` and `/t/{slug}/stepup`.
            stepup_url: Some(format!("{issuer}/stepup")),
            suspended,
            disabled_users,
            ..tp.into_org(tier, roles, api_keys, Some(format!("{issuer}/login")))
        };
        policy.orgs.insert(slug.clone(), org);
    }
    policy.validate().map_err(|issues| {
        anyhow!(
            "region policy is invalid: {}",
            issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect::<Vec<_>>().join("; ")
        )
    })?;
    Ok(policy)
}

/// Sign `policy` as a bundle.
pub fn sign(policy: Policy, region: &str, revision: u64, now: u64, ttl: u64, key: &[u8; 64]) -> Result<Vec<u8>> {
    let stamp = gatehouse_bundler::BundleStamp { revision, region: region.to_string(), issued_at: now, ttl_secs: ttl };
    gatehouse_bundler::compile(policy, &stamp, key).map_err(|e| anyhow!("sign bundle: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{directory, orgs, test_tenant, users};

    const JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1","alg":"EdDSA"}]}"#;

    /// The org in the region's policy carries its pages, its suspension and its disabled
    /// users' ids (never their emails or names), and follows changes to them.
    #[tokio::test]
    async fn orgs_carry_their_step_up_page_suspension_and_disabled_users() {
        let (_dir, store, db) = test_tenant().await;
        let entry =
            directory::TenantEntry { id: "t_01".into(), slug: "acme".into(), home_region: "eu".into(), created_at: 1 };
        directory::insert(&*store.directory.lock().await, &entry).await.unwrap();
        {
            let h = db.lock().await;
            let o = orgs::NewOrg {
                tenant_id: "t_01",
                slug: "acme",
                name: "Acme",
                tier: "free",
                policy: "{}",
                created_at: 1,
            };
            orgs::insert(&h, &o).await.unwrap();
            for (id, email) in [("u_a", "ada@example.com"), ("u_b", "bob@example.com"), ("u_c", "cy@example.com")] {
                let u = users::NewUser { id, email, name: "Secret Name", password_hash: None, created_at: 1 };
                users::insert(&h, &u).await.unwrap();
            }
        }
        let template = default_template();
        let region = Region {
            template: &template,
            public_url: "https://eu.test",
            audience: "gatehouse",
            jwks: JWKS,
            region: "eu",
        };
        let p = region_policy(&store, &region, 10).await.unwrap();
        let acme = &p.orgs["acme"];
        assert_eq!(acme.login_url.as_deref(), Some("https://eu.test/t/acme/login"));
        assert_eq!(acme.stepup_url.as_deref(), Some("https://eu.test/t/acme/stepup"));
        assert!(!acme.suspended);
        assert!(acme.disabled_users.is_empty());

        {
            let h = db.lock().await;
            h.execute("UPDATE users SET disabled = 1 WHERE id IN ('u_a', 'u_c')", ()).await.unwrap();
            h.execute("UPDATE org SET suspended_at = 5 WHERE id = 1", ()).await.unwrap();
        }
        let p = region_policy(&store, &region, 10).await.unwrap();
        let acme = &p.orgs["acme"];
        assert!(acme.suspended);
        assert_eq!(acme.disabled_users, ["u_a", "u_c"]);
        let text = serde_json::to_string(&p).unwrap();
        assert!(!text.contains("example.com") && !text.contains("Secret Name"), "no personal data in a bundle");
        // Signed and opened as an edge does: the engine refuses the org's requests.
        let (private, public) = gatehouse_bundler::keys::generate_bundle_keys();
        let (sk, pk) = (_dir.path().join("bundle.pem"), _dir.path().join("bundle.pub.pem"));
        std::fs::write(&sk, private).unwrap();
        std::fs::write(&pk, public).unwrap();
        let sk = gatehouse_bundler::keys::read_signing_key(&sk).unwrap();
        let pk = gatehouse_bundler::keys::read_public_key(&pk).unwrap();
        let bytes = sign(p, "eu", 1, 10, 3600, &sk).unwrap();
        let body = gatehouse_core::bundle::open(&bytes, &pk, 10).unwrap();
        assert!(body.policy.orgs["acme"].suspended);
        assert_eq!(body.policy.orgs["acme"].disabled_users, ["u_a", "u_c"]);

        {
            let h = db.lock().await;
            h.execute("UPDATE users SET disabled = 0 WHERE id = 'u_a'", ()).await.unwrap();
            h.execute("UPDATE org SET suspended_at = NULL WHERE id = 1", ()).await.unwrap();
        }
        let p = region_policy(&store, &region, 10).await.unwrap();
        assert!(!p.orgs["acme"].suspended);
        assert_eq!(p.orgs["acme"].disabled_users, ["u_c"]);
    }
}
