//! Bundles for edges: the region-wide template policy plus, for every tenant homed in
//! this region, its organisation (tier, hosts, IP and geo rules, custom roles, feature
//! overrides, limits, API-key hashes, its sign-in and step-up pages, whether it is
//! suspended and the ids of its disabled users), its issuer (the region's JWKS, restricted
//! to that organisation) and its revocations. Signed with the origin's Ed25519 key in the format
//! of `gatehouse-core::bundle`. Assembled from per-tenant fragments (`fragment`), each
//! read again only when its tenant changed.

mod fragment;

use std::collections::HashMap;

use anyhow::{anyhow, Context as _, Result};
use gatehouse_core::policy::{Issuer, Org, Policy};

use crate::store::Store;
use fragment::Fragment;

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

/// One tenant's cached fragment and the directory generation it was read at.
struct Cached {
    generation: i64,
    slug: String,
    fragment: Fragment,
}

/// Every tenant's compiled fragment, by tenant id. A bundle is assembled from them; a
/// tenant's database is read again only when its generation in the directory
/// (`tenants.policy_gen`, bumped by every change to its policy, keys, roles, users or
/// revocations, by any origin sharing the directory) moved, when it holds an API key or
/// revocation that has expired since, or when it is new.
#[derive(Default)]
pub struct Fragments {
    cache: tokio::sync::Mutex<HashMap<String, Cached>>,
}

/// A region's policy and what assembling it cost.
pub struct Assembly {
    /// The policy.
    pub policy: Policy,
    /// Tenants homed in the region.
    pub tenants: usize,
    /// Fragments read from their tenant's database for this assembly.
    pub rebuilt: usize,
}

impl Fragments {
    /// Assemble the region's policy: the template plus every homed tenant's fragment,
    /// reading only the tenants whose fragment is missing or out of date.
    pub async fn assemble(&self, store: &Store, r: &Region<'_>, now: i64) -> Result<Assembly> {
        let homed = {
            let d = store.directory.lock().await;
            let mut rows = d
                .query("SELECT id, slug, policy_gen FROM tenants WHERE home_region = ?1 ORDER BY slug", [r.region])
                .await?;
            let mut homed = Vec::new();
            while let Some(row) = rows.next().await? {
                homed.push((row.get::<String>(0)?, row.get::<String>(1)?, row.get::<i64>(2)?));
            }
            homed
        };
        let mut cache = self.cache.lock().await;
        let mut rebuilt = 0;
        for (id, slug, generation) in &homed {
            let fresh = cache
                .get(id)
                .is_some_and(|c| c.generation == *generation && c.slug == *slug && c.fragment.live_at(now));
            if fresh {
                continue;
            }
            let db = store.tenant(id, false).await.with_context(|| format!("tenant {slug}"))?;
            let read = fragment::read(&*db.lock().await, slug, now).await?;
            rebuilt += 1;
            match read {
                Some(fragment) => {
                    cache.insert(id.clone(), Cached { generation: *generation, slug: slug.clone(), fragment });
                }
                None => {
                    cache.remove(id);
                }
            }
        }
        if cache.len() > homed.len() {
            let ids: std::collections::HashSet<&str> = homed.iter().map(|(id, _, _)| id.as_str()).collect();
            cache.retain(|id, _| ids.contains(id.as_str()));
        }
        let mut policy = r.template.clone();
        for (id, slug, _) in &homed {
            let Some(c) = cache.get(id) else { continue };
            let issuer = format!("{}/t/{slug}", r.public_url);
            policy.issuers.push(Issuer {
                issuer: issuer.clone(),
                audiences: vec![r.audience.to_string()],
                jwks: r.jwks.to_string(),
                orgs: vec![slug.clone()],
                ..Default::default()
            });
            policy.revoked.jti.extend(c.fragment.jti.iter().cloned());
            policy.revoked.sessions.extend(c.fragment.sessions.iter().cloned());
            // The origin's hosted pages: `/t/{slug}/login` and `/t/{slug}/stepup`.
            let org = Org {
                login_url: Some(format!("{issuer}/login")),
                stepup_url: Some(format!("{issuer}/stepup")),
                ..c.fragment.org.clone()
            };
            policy.orgs.insert(slug.clone(), org);
        }
        drop(cache);
        policy.validate().map_err(|issues| {
            anyhow!(
                "region policy is invalid: {}",
                issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect::<Vec<_>>().join("; ")
            )
        })?;
        Ok(Assembly { policy, tenants: homed.len(), rebuilt })
    }
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
        let frags = Fragments::default();
        let p = frags.assemble(&store, &region, 10).await.unwrap().policy;
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
        directory::touch_policy(&*store.directory.lock().await, "t_01").await.unwrap();
        let p = frags.assemble(&store, &region, 10).await.unwrap().policy;
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
        directory::touch_policy(&*store.directory.lock().await, "t_01").await.unwrap();
        let p = frags.assemble(&store, &region, 10).await.unwrap().policy;
        assert!(!p.orgs["acme"].suspended);
        assert_eq!(p.orgs["acme"].disabled_users, ["u_c"]);
    }

    /// A tenant `id`/`slug` homed in `eu`, with its organisation.
    async fn add_tenant(store: &Store, id: &str, slug: &str) -> std::sync::Arc<crate::store::Db> {
        let entry =
            directory::TenantEntry { id: id.into(), slug: slug.into(), home_region: "eu".into(), created_at: 1 };
        directory::insert(&*store.directory.lock().await, &entry).await.unwrap();
        let db = store.tenant(id, true).await.unwrap();
        let o = orgs::NewOrg { tenant_id: id, slug, name: slug, tier: "free", policy: "{}", created_at: 1 };
        orgs::insert(&*db.lock().await, &o).await.unwrap();
        db
    }

    fn eu(template: &Policy) -> Region<'_> {
        Region { template, public_url: "https://eu.test", audience: "gatehouse", jwks: JWKS, region: "eu" }
    }

    /// Only a changed tenant's database is read again; a generation bumped by another
    /// origin sharing the directory counts as a change; the unchanged tenants' parts stay
    /// as they were.
    #[tokio::test]
    async fn only_changed_tenants_are_read_again() {
        let (_dir, store, _) = test_tenant().await;
        let mut dbs = Vec::new();
        for i in 0..5 {
            dbs.push(add_tenant(&store, &format!("t_1{i}"), &format!("org{i}")).await);
        }
        let template = default_template();
        let frags = Fragments::default();
        let a = frags.assemble(&store, &eu(&template), 10).await.unwrap();
        assert_eq!((a.tenants, a.rebuilt), (5, 5));
        assert_eq!(a.policy.orgs.len(), 5);
        let a = frags.assemble(&store, &eu(&template), 10).await.unwrap();
        assert_eq!(a.rebuilt, 0, "nothing changed");

        // A change written without bumping the generation is not seen (the bump is what
        // announces it)...
        dbs[2].lock().await.execute("UPDATE org SET tier = 'team' WHERE id = 1", ()).await.unwrap();
        let a = frags.assemble(&store, &eu(&template), 10).await.unwrap();
        assert_eq!((a.rebuilt, a.policy.orgs["org2"].tier.as_str()), (0, "free"));
        // ...and after the bump only that tenant is read.
        directory::touch_policy(&*store.directory.lock().await, "t_12").await.unwrap();
        let a = frags.assemble(&store, &eu(&template), 10).await.unwrap();
        assert_eq!(a.rebuilt, 1);
        assert_eq!(a.policy.orgs["org2"].tier, "team");
        assert!(a.policy.orgs.iter().filter(|(s, _)| *s != "org2").all(|(_, o)| o.tier == "free"));
        assert_eq!(a.policy.orgs["org3"].login_url.as_deref(), Some("https://eu.test/t/org3/login"));
        assert_eq!(a.policy.issuers.len(), 5);

        // A tenant that leaves the directory (deleted, or moved to another region) leaves
        // the bundle; a new one joins it.
        store.directory.lock().await.execute("DELETE FROM tenants WHERE id = 't_14'", ()).await.unwrap();
        add_tenant(&store, "t_20", "late").await;
        let a = frags.assemble(&store, &eu(&template), 10).await.unwrap();
        assert_eq!((a.tenants, a.rebuilt), (5, 1));
        assert!(!a.policy.orgs.contains_key("org4") && a.policy.orgs.contains_key("late"));
        assert!(!a.policy.issuers.iter().any(|i| i.issuer.ends_with("/org4")));
    }

    /// A fragment holding an API key or a revocation is read again once that has expired,
    /// without any change being announced: the bundle never carries a dead key.
    #[tokio::test]
    async fn expired_keys_and_revocations_leave_without_a_change() {
        let (_dir, store, _) = test_tenant().await;
        let db = add_tenant(&store, "t_10", "acme").await;
        {
            let h = db.lock().await;
            let k = crate::store::api_keys::NewApiKey {
                id: "ak_1",
                prefix: "abcdef012345",
                hash: &"ab".repeat(32),
                name: "ci",
                subject: "svc",
                roles: "[]",
                scopes: "[]",
                created_at: 1,
                expires_at: Some(50),
            };
            crate::store::api_keys::insert(&h, &k).await.unwrap();
            crate::store::revoked_tokens::insert(&h, "jti-short", 30).await.unwrap();
            crate::store::revoked_tokens::insert(&h, "jti-long", 90).await.unwrap();
        }
        let template = default_template();
        let frags = Fragments::default();
        let a = frags.assemble(&store, &eu(&template), 10).await.unwrap();
        assert_eq!(a.policy.orgs["acme"].api_keys.len(), 1);
        assert_eq!(a.policy.revoked.jti, ["jti-long", "jti-short"]);
        let a = frags.assemble(&store, &eu(&template), 29).await.unwrap();
        assert_eq!(a.rebuilt, 0);
        let a = frags.assemble(&store, &eu(&template), 30).await.unwrap();
        assert_eq!((a.rebuilt, a.policy.revoked.jti.as_slice()), (1, ["jti-long".to_string()].as_slice()));
        assert_eq!(a.policy.orgs["acme"].api_keys.len(), 1);
        let a = frags.assemble(&store, &eu(&template), 50).await.unwrap();
        assert_eq!(a.rebuilt, 1);
        assert!(a.policy.orgs["acme"].api_keys.is_empty());
        let a = frags.assemble(&store, &eu(&template), 95).await.unwrap();
        assert_eq!(a.rebuilt, 1);
        assert!(a.policy.revoked.jti.is_empty());
        let a = frags.assemble(&store, &eu(&template), 200).await.unwrap();
        assert_eq!(a.rebuilt, 0, "nothing left to expire");
    }
}
