//! # gatehouse-proxy
//!
//! The native Gatehouse gateway: a hyper reverse proxy in front of any HTTP application,
//! running the policy filter chain of each route as WebAssembly components under wasmtime.
//! Decisions are made by the filters (thin shells over `gatehouse-core`); this crate only
//! moves bytes: requests in, context between filters, requests out.

#![warn(missing_docs)]

pub mod admin;
pub mod authz;
pub mod body;
pub mod bundle;
pub mod chain;
pub mod config;
mod date;
pub mod events;
pub mod filters;
pub mod gateway;
pub mod h2;
pub mod http1;
mod listen;
pub mod metrics;
pub mod rate_store;
pub mod reload;
pub mod signatures;
pub mod trace;
pub mod upstream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::bundle::BundleStore;
use crate::config::GatewayConfig;
use crate::filters::Shared;
use crate::gateway::Gateway;
use crate::metrics::Metrics;

/// Where built-in filter components are looked for when the config does not say: the
/// `GATEHOUSE_FILTER_DIR` environment variable, then `filters/` next to the binary.
pub fn default_builtin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("GATEHOUSE_FILTER_DIR") {
        return Some(PathBuf::from(d));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.join("filters");
    dir.exists().then_some(dir)
}

/// Run the gateway until SIGTERM or Ctrl-C, then drain. SIGHUP rereads the bundle, and
/// the routes and filters of the configuration file it was loaded from ([`reload`]).
pub async fn run(config: GatewayConfig) -> Result<()> {
    let metrics = Arc::new(Metrics::new());
    let public_key = gatehouse_bundler::keys::read_public_key(&config.bundle.public_key)?;
    let (secrets, secrets_json) = match &config.bundle.secrets {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            let value: toml::Value = toml::from_str(&text).with_context(|| format!("{}", p.display()))?;
            let json = serde_json::to_vec(&value)?;
            let parsed = serde_json::from_slice(&json).map_err(|e| anyhow!("{}: {e}", p.display()))?;
            (parsed, json)
        }
        None => (gatehouse_core::EdgeSecrets::default(), Vec::new()),
    };
    let bundles = Arc::new(BundleStore::new(public_key, secrets, secrets_json, metrics.clone()));

    // Filter components: every name used by a route. The rate-limit state and country
    // database are shared with the components of later reloads.
    let geo = match &config.geo.maxmind_db {
        Some(p) => Some(maxminddb::Reader::open_readfile(p).with_context(|| format!("{}", p.display()))?),
        None => None,
    };
    let remote_rates = match config.rate_store.kind {
        crate::rate_store::StoreKind::Memory => None,
        crate::rate_store::StoreKind::Redis => {
            let store = crate::rate_store::RedisRates::new(&config.rate_store, metrics.rate_store_errors.clone())?;
            tracing::info!(pool = config.rate_store.pool_size, on_error = ?config.rate_store.on_error, "rate limits counted in Redis");
            Some(Arc::new(store))
        }
    };
    let shared = Arc::new(
        Shared::new(gatehouse_core::MemoryRateStore::new(1_000_000, seed()), geo).with_remote_rates(remote_rates),
    );
    let host = Arc::new(reload::build_filters(&config, shared.clone())?);

    // First bundle, then keep watching.
    if let Some(file) = config.bundle.file.clone() {
        let bytes = std::fs::read(&file).with_context(|| format!("{}", file.display()))?;
        if let Err(e) = bundles.install(bytes.clone()) {
            tracing::error!("{}: {e}; not ready until a valid bundle arrives", file.display());
        }
        let every = Duration::from_secs(config.bundle.poll_secs);
        tokio::spawn(bundle::watch_file(bundles.clone(), file, every, Some(bytes)));
    } else if let Some(url) = config.bundle.origin_url.clone() {
        let every = Duration::from_secs(config.bundle.poll_secs);
        tokio::spawn(bundle::poll_origin(bundles.clone(), url, config.bundle.origin_token.clone(), every));
    }

    let bind = |addr: std::net::SocketAddr| async move {
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listen {addr}"))
    };
    let listener = match config.listen.addr {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let admin = bind(config.listen.admin).await?;
    let authz_http = match config.authz.http {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let authz_grpc = match config.authz.grpc {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    tracing::info!(
        addr = ?config.listen.addr,
        admin = %config.listen.admin,
        authz_http = ?config.authz.http,
        authz_grpc = ?config.authz.grpc,
        "gatehouse gateway listening"
    );
    let drain = Duration::from_secs(config.limits.drain_secs);
    let header_timeout = Duration::from_secs(config.limits.header_timeout_secs);
    let events = config.audit.clone().map(|sink| {
        let events = Arc::new(events::EdgeEvents::new(sink.queue_max, metrics.clone()));
        tokio::spawn(events::send_loop(events.clone(), sink, metrics.clone()));
        events
    });
    let source = config.source.clone();
    let gw = Arc::new(Gateway::new(config, bundles, host, metrics, events)?);
    let (tx, rx) = tokio::sync::watch::channel(false);
    // SIGHUP rereads the routes and filters (and, in `bundle::watch_file`, the bundle).
    if let Some(path) = source {
        tokio::spawn(reload::watch_config(gw.clone(), shared, path));
    }

    let mut servers = vec![tokio::spawn(admin::serve(admin, gw.clone(), rx.clone(), drain, header_timeout))];
    if let Some(l) = listener {
        servers.push(tokio::spawn(http1::serve(l, gw.clone(), rx.clone(), drain)));
    }
    if let Some(l) = authz_http {
        servers.push(tokio::spawn(authz::http::serve(l, gw.clone(), rx.clone(), drain)));
    }
    if let Some(l) = authz_grpc {
        servers.push(tokio::spawn(authz::grpc::serve(l, gw.clone(), rx.clone(), drain)));
    }

    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    let _ = tx.send(true);
    for s in servers {
        let _ = s.await;
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn seed() -> [u8; 16] {
    gatehouse_bundler::random::random_bytes()
}
