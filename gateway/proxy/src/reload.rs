//! Hot reload of the routes and filters: on SIGHUP the gateway rereads its configuration
//! file (with the environment overlay), validates it, builds the new filter components
//! off the request path, and swaps routes, filter components, upstream pools and
//! histograms in as one ([`Gateway::swap_routes`]). Requests in flight finish under the
//! routes they were decided under; no connection is closed.
//!
//! What reloads: `[[routes]]` (hosts, prefixes, upstreams, filter chains, custom
//! components — reread from disk) and `[filters]`. Everything else (`[listen]`, `[bundle]`,
//! `[limits]`, `[geo]`, `[audit]`, `[authz]`, `[telemetry]`) needs a restart: a reload that
//! changes it is refused, like one that fails validation or whose components do not load;
//! the routes in force stay, and `gatehouse_config_reloads_total{result="refused"}` counts
//! it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::config::{is_builtin, ConfigError, GatewayConfig};
use crate::filters::{FilterHost, Shared};
use crate::gateway::{Gateway, RouteSet};

/// Why a reload was refused (the routes in force stay).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file (or a variable) does not validate.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The file changes settings that only a restart applies.
    #[error("{file}: {sections}: cannot change on reload (restart the gateway to apply them); only [[routes]] and [filters] reload")]
    Fixed {
        /// The file.
        file: PathBuf,
        /// The sections that changed, comma-separated.
        sections: String,
    },
    /// The filter components of the new routes do not load.
    #[error("filter components: {0:#}")]
    Filters(anyhow::Error),
    /// The new routes cannot be served.
    #[error("routes: {0:#}")]
    Routes(anyhow::Error),
}

impl ReloadError {
    /// The stable code of the refusal, for logs.
    pub fn code(&self) -> &'static str {
        match self {
            ReloadError::Invalid(_) => "config_invalid",
            ReloadError::Fixed { .. } => "config_fixed_changed",
            ReloadError::Filters(_) => "filters_unloadable",
            ReloadError::Routes(_) => "routes_unusable",
        }
    }
}

/// Every filter the routes of `config` name, with its component file.
pub fn filter_sources(config: &GatewayConfig) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let builtin_dir = config.filters.builtin_dir.clone().or_else(crate::default_builtin_dir);
    let mut sources: Vec<(String, PathBuf)> = Vec::new();
    for f in config.routes.iter().flat_map(|r| r.filters.iter()) {
        // Built-ins on the native engine are no components.
        let native = config.filters.engine == crate::config::FilterEngine::Native && is_builtin(f);
        if native || sources.iter().any(|(n, _)| n == f) {
            continue;
        }
        let path = if is_builtin(f) {
            let dir = builtin_dir.clone().ok_or_else(crate::filters::no_builtin_dir)?;
            crate::filters::builtin_path(&dir, f)
        } else {
            PathBuf::from(f)
        };
        sources.push((f.clone(), path));
    }
    Ok(sources)
}

/// The filter components of `config`'s routes (the expensive part: compiling, or loading
/// cached machine code).
pub fn build_filters(config: &GatewayConfig, shared: Arc<Shared>) -> anyhow::Result<FilterHost> {
    let sources = filter_sources(config)?;
    let started = Instant::now();
    let host = FilterHost::new(&config.filters, &sources, shared)?;
    tracing::info!(filters = sources.len(), ms = started.elapsed().as_millis() as u64, "filter components ready");
    Ok(host)
}

/// Reread `path` and put its routes and filters in force; the new generation. `shared`
/// is the rate-limit state and country database the filters share (kept across
/// reloads: counters do not reset).
pub async fn reload(gw: &Gateway, shared: &Arc<Shared>, path: &Path) -> Result<u64, ReloadError> {
    let file = path.to_path_buf();
    let config = tokio::task::spawn_blocking(move || GatewayConfig::load(&file))
        .await
        .context("the reload task failed")
        .map_err(ReloadError::Routes)??;
    let fixed = gw.config.fixed_changes(&config);
    if !fixed.is_empty() {
        return Err(ReloadError::Fixed { file: path.to_path_buf(), sections: fixed.join(", ") });
    }
    let (shared, for_host) = (shared.clone(), config.clone());
    let host = tokio::task::spawn_blocking(move || build_filters(&for_host, shared))
        .await
        .context("the filter build task failed")
        .map_err(ReloadError::Filters)?
        .map_err(ReloadError::Filters)?;
    let generation = gw.routes().generation + 1;
    let set = RouteSet::new(generation, config.routes, Arc::new(host), &gw.metrics).map_err(ReloadError::Routes)?;
    Ok(gw.swap_routes(set))
}

/// Reload on every SIGHUP until the process ends, counting each result.
pub async fn watch_config(gw: Arc<Gateway>, shared: Arc<Shared>, path: PathBuf) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: the configuration will not reload");
                return;
            }
        };
        while hup.recv().await.is_some() {
            tracing::info!(file = %path.display(), "SIGHUP: rereading the configuration");
            match reload(&gw, &shared, &path).await {
                Ok(generation) => {
                    gw.metrics.config_reloads.with_label_values(&["ok"]).inc();
                    let routes = gw.routes().routes.len();
                    tracing::info!(generation, routes, "configuration reloaded: new routes and filters in force");
                }
                Err(e) => {
                    gw.metrics.config_reloads.with_label_values(&["refused"]).inc();
                    tracing::error!(code = e.code(), "configuration reload refused, the routes in force stay: {e}");
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (gw, shared, path);
}
