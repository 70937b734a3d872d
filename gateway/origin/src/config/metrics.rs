//! `[metrics]`: how Prometheus reaches the origin's metrics without the operator's token.
//!
//! - `listen`: a listener of its own serving `GET /metrics`, `/healthz` and `/readyz`
//!   (for a private network or a pod's metrics port; bind it to a private address).
//! - `token_file`: a scrape token (at least 16 characters) that `GET /metrics` accepts
//!   as its bearer token besides the operator's, on the API listener and, when set, on
//!   the metrics listener too (which then asks for it).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The `[metrics]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Address of the metrics listener (`/metrics`, `/healthz`, `/readyz`); none by default.
    pub listen: Option<SocketAddr>,
    /// File holding the scrape bearer token (relative to the configuration file).
    pub token_file: Option<PathBuf>,
}

impl MetricsSettings {
    /// Paths to resolve against the configuration file's folder.
    pub(crate) fn paths(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        self.token_file.as_mut().into_iter()
    }

    /// Check the section against the API's own address `api`.
    pub(crate) fn validate(&self, api: SocketAddr) -> Result<(), String> {
        if let Some(l) = self.listen {
            if l == api && l.port() != 0 {
                return Err(format!("metrics.listen: `{l}` is the API's own address (listen)"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_listener_is_not_the_api_listener() {
        let api: SocketAddr = "127.0.0.1:7400".parse().unwrap();
        let same = MetricsSettings { listen: Some(api), token_file: None };
        assert!(same.validate(api).unwrap_err().starts_with("metrics.listen"));
        let other = MetricsSettings { listen: Some("127.0.0.1:9464".parse().unwrap()), token_file: None };
        assert!(other.validate(api).is_ok());
        assert!(MetricsSettings::default().validate(api).is_ok());
    }
}
