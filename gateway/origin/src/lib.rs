//! The Gatehouse regional origin: one region's tenants, stored in libSQL in that region,
//! their users and sign-in, token issuance, the signed bundles edges pull, and the audit
//! log.
//!
//! Run it with `gatehouse origin --config origin.toml`. Layout:
//! - [`config`]: the configuration file;
//! - [`store`]: the directory and per-tenant libSQL databases, migrations, bounded handles,
//!   and every SQL statement, one module per aggregate;
//! - [`identity`]: users, argon2id passwords, sign-in with lockout;
//! - [`auth_policy`]: an organisation's sign-in policy (MFA, email verification, sessions);
//! - [`hierarchy`]: child organisations, narrowing-only policy inheritance, ancestors' admins;
//! - [`tokens`]: signing keys with rotation, access JWTs, refresh-token rotation;
//! - [`bundles`]: the region policy and its signed bundle;
//! - [`audit`]: the hash-chained audit log;
//! - [`privacy`]: personal data in audit records sealed per person, GDPR export and erasure;
//! - [`retention`]: retention per data type, applied by a scheduler, and legal holds;
//! - [`reports`]: compliance reports (JSON, CSV, PDF) mapped to the controls they evidence;
//! - [`mailer`]: outgoing mail (file, SMTP or log) and per-tenant templates;
//! - [`sso`]: single sign-on connections (OIDC, OAuth2) and the relying party;
//! - [`api`]: the HTTP API (axum).

use anyhow::Context as _;

pub mod api;
pub mod audit;
pub mod auth_policy;
pub mod bundles;
pub mod config;
pub mod error;
pub mod hierarchy;
pub mod identity;
pub mod mailer;
pub mod metrics;
pub mod mfa;
pub mod privacy;
pub mod replication;
pub mod reports;
pub mod retention;
pub mod sinks;
pub mod sso;
pub mod store;
pub mod tokens;

pub use api::{App, ROUTES};
pub use config::OriginConfig;

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Run the origin until `shutdown` resolves.
pub async fn run(
    config: OriginConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listen = config.listen;
    let app = std::sync::Arc::new(App::open(config).await?);
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listen {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, region = %app.cfg.region, "gatehouse origin listening");
    api::serve(app, listener, shutdown).await
}
