//! The `[authz]` section: where the authorization service listens.

use std::net::SocketAddr;

use serde::Deserialize;

/// The authorization-service listeners. Either, both or neither may be set; with neither
/// the process is a reverse proxy only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzSettings {
    /// The HTTP check endpoint (nginx `auth_request`, Traefik `forwardAuth`, Caddy
    /// `forward_auth`, Envoy's HTTP `ext_authz`).
    #[serde(default)]
    pub http: Option<SocketAddr>,
    /// The gRPC Envoy `ext_authz` v3 service (`envoy.service.auth.v3.Authorization`).
    #[serde(default)]
    pub grpc: Option<SocketAddr>,
}

impl AuthzSettings {
    /// Whether any authorization listener is configured.
    pub fn enabled(&self) -> bool {
        self.http.is_some() || self.grpc.is_some()
    }

    /// Field checks: listeners distinct from each other and from the gateway's.
    pub fn validate(&self, proxy: Option<SocketAddr>, admin: SocketAddr) -> Result<(), String> {
        let mine = [("authz.http", self.http), ("authz.grpc", self.grpc)];
        for (i, (name, addr)) in mine.iter().enumerate() {
            let Some(addr) = addr else { continue };
            if Some(*addr) == proxy || *addr == admin {
                return Err(format!("{name}: must differ from listen.addr and listen.admin"));
            }
            if mine[..i].iter().any(|(_, other)| other == &Some(*addr)) {
                return Err(format!("{name}: must differ from authz.http"));
            }
        }
        Ok(())
    }
}
