//! The origin's shared state: storage, signing keys, the policy template, the bundle
//! being served, and the loaded secrets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context as _, Result};
use gatehouse_core::policy::Policy;

use crate::bundles;
use crate::config::secrets::{storage_backend, Secrets};
use crate::config::OriginConfig;
use crate::identity::Passwords;
use crate::replication::Peers;
use crate::store::{self, Store};
use crate::tokens::SigningKeys;

/// The last bundle built, and what it was built from.
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
    pub(crate) keys: std::sync::RwLock<Arc<SigningKeys>>,
    pub(crate) passwords: Passwords,
    pub(crate) template: std::sync::RwLock<Arc<Policy>>,
    /// Secrets read from the files the configuration names.
    pub(crate) secrets: Secrets,
    /// The other regions' origins (directory replication).
    pub(crate) peers: Peers,
    changes: AtomicU64,
    bundle: tokio::sync::Mutex<Option<Built>>,
    /// Every homed tenant's compiled part of the bundle.
    pub(crate) fragments: bundles::Fragments,
    /// Outgoing mail (`[mail]`).
    pub(crate) mailer: crate::mailer::Mailer,
    /// Seals SSO client secrets.
    pub(crate) sso_box: crate::sso::SecretBox,
    /// The SSO relying party (provider HTTP client, discovery cache).
    pub(crate) rp: crate::sso::oidc::RelyingParty,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: crate::metrics::Metrics,
    /// The audit sinks (`[[sinks]]`), woken by every commit of audit records.
    pub sinks: crate::sinks::Sinks,
}

/// A template holds what is the same for every tenant: no organisations, issuers or
/// revocations (those come from the tenants), and it must validate.
pub(crate) use gatehouse_admin_bodies::tenant_policy::template_acceptable;

impl App {
    /// Load the secrets `cfg` names, then open the origin with them.
    pub async fn open(cfg: OriginConfig) -> Result<App> {
        let secrets = Secrets::load(&cfg)?;
        App::with_secrets(cfg, secrets).await
    }

    /// Open storage and load keys, with configuration and secrets already loaded.
    pub async fn with_secrets(cfg: OriginConfig, secrets: Secrets) -> Result<App> {
        let metrics = crate::metrics::Metrics::for_config(&cfg)?;
        let store = Store::open(&cfg.data_dir, storage_backend(&cfg)?, cfg.storage.max_open_tenants)
            .await?
            .with_audit_file(store::AuditFile::from_setting(&cfg.storage.audit_file))
            .with_times(metrics.storage.clone());
        let now = crate::now();
        let keys = SigningKeys::load(&*store.directory.lock().await, &cfg.tokens.alg, now).await?;
        let passwords = Passwords::new(&cfg.signin)?;
        let template = match &cfg.bundle.template {
            Some(p) => gatehouse_bundler::load_policy(p)?,
            None => bundles::default_template(),
        };
        template_acceptable(&template).map_err(|e| anyhow!("bundle.template: {e}"))?;
        // A template set through the API overrides the file.
        let stored = store::settings::template(&*store.directory.lock().await).await?;
        let template = match stored {
            Some(json) => {
                let p: Policy = serde_json::from_str(&json).context("stored template")?;
                template_acceptable(&p).map_err(|e| anyhow!("stored template: {e}"))?;
                p
            }
            None => template,
        };
        let mailer = crate::mailer::Mailer::from_config(&cfg)?;
        let rp = crate::sso::oidc::RelyingParty::new(
            crate::sso::http::IdpHttp::new(
                std::time::Duration::from_secs(cfg.sso.http_timeout_secs),
                cfg.sso.allow_http_loopback,
            ),
            std::time::Duration::from_secs(cfg.sso.metadata_ttl_secs),
        );
        Ok(App {
            sso_box: crate::sso::SecretBox::new(&secrets.sso_key),
            rp,
            store,
            keys: std::sync::RwLock::new(Arc::new(keys)),
            passwords,
            template: std::sync::RwLock::new(Arc::new(template)),
            peers: Peers::new(&cfg, secrets.peer_token.clone()),
            secrets,
            changes: AtomicU64::new(1),
            bundle: tokio::sync::Mutex::new(None),
            fragments: bundles::Fragments::default(),
            mailer,
            metrics,
            sinks: crate::sinks::Sinks::open(&cfg)?,
            cfg,
        })
    }

    /// The id of tenant `slug` if it is homed in this region.
    pub async fn tenant_id(&self, slug: &str) -> Result<Option<String>> {
        let d = self.store.directory.lock().await;
        Ok(store::directory::id_homed_in(&d, slug, &self.cfg.region).await?)
    }

    /// `; Secure` when the origin is served over TLS.
    pub(crate) fn secure_cookie(&self) -> &'static str {
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

    /// The signing keys in force.
    pub(crate) fn keys(&self) -> Arc<SigningKeys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Note a change to tenant `tenant_id` that edges must see (its policy, roles, API
    /// keys, users' state, revocations), after it is written: its fragment is read again
    /// at the next build, by this origin and every other one sharing the directory.
    pub async fn changed(&self, tenant_id: &str) -> libsql::Result<()> {
        store::directory::touch_policy(&*self.store.directory.lock().await, tenant_id).await?;
        self.changes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Note a region-wide change that edges must see (the template, the signing keys):
    /// the next pull rebuilds the bundle from the fragments as they are.
    pub fn changed_region(&self) {
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
        let build = self.metrics.bundle_build();
        let keys = self.keys();
        let template = self.template();
        let region = bundles::Region {
            template: &template,
            public_url: &self.cfg.public_url,
            audience: &self.cfg.tokens.audience,
            jwks: &keys.jwks,
            region: &self.cfg.region,
        };
        let assembly = self.fragments.assemble(&self.store, &region, now).await?;
        tracing::debug!(tenants = assembly.tenants, rebuilt = assembly.rebuilt, "bundle assembled");
        let policy = assembly.policy;
        // Revisions only grow, also across restarts: milliseconds since the epoch.
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let revision = ms.max(b.as_ref().map(|x| x.revision + 1).unwrap_or(0));
        let bytes = bundles::sign(
            policy,
            &self.cfg.region,
            revision,
            now as u64,
            self.cfg.bundle.ttl_secs,
            &self.secrets.bundle_key,
        )?;
        build.ok();
        let etag = format!("\"{revision}\"");
        let bytes = Arc::new(bytes);
        *b = Some(Built { change, revision, built_at: now, bytes: bytes.clone(), etag: etag.clone() });
        Ok((bytes, etag))
    }
}
