//! The `[authz]` section: where the authorization service listens, and how its HTTP
//! endpoint recognises Envoy's check requests.

use std::net::SocketAddr;

use serde::Deserialize;

/// The authorization-service listeners. Either, both or neither may be set; with neither
/// the process is a reverse proxy only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzSettings {
    /// The HTTP check endpoint (nginx `auth_request`, Traefik `forwardAuth`, Caddy
    /// `forward_auth`, Envoy's HTTP `ext_authz`).
    #[serde(default)]
    pub http: Option<SocketAddr>,
    /// The gRPC Envoy `ext_authz` v3 service (`envoy.service.auth.v3.Authorization`).
    #[serde(default)]
    pub grpc: Option<SocketAddr>,
    /// The `path_prefix` of Envoy's HTTP `ext_authz` filter: a check request under it is
    /// the original request with this prefix prepended to its path (and carries none of
    /// the nginx, Traefik or Caddy conventions). Not `/`, and never empty: a prefix is
    /// what tells Envoy's checks from the other proxies' (default `/envoy`).
    #[serde(default = "default_envoy_path_prefix")]
    pub envoy_path_prefix: String,
}

fn default_envoy_path_prefix() -> String {
    "/envoy".into()
}

impl Default for AuthzSettings {
    fn default() -> Self {
        AuthzSettings { http: None, grpc: None, envoy_path_prefix: default_envoy_path_prefix() }
    }
}

impl AuthzSettings {
    /// Whether any authorization listener is configured.
    pub fn enabled(&self) -> bool {
        self.http.is_some() || self.grpc.is_some()
    }

    /// Field checks: listeners distinct from each other and from the gateway's; the Envoy
    /// path prefix a plain path of at least one segment.
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
        let p = &self.envoy_path_prefix;
        let plain = p.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b));
        if !p.starts_with('/') || p.len() < 2 || p.len() > 128 || p.ends_with('/') || p.contains("//") || !plain {
            return Err(format!(
                "authz.envoy_path_prefix: `{p}` must be a path like `/envoy` (starts with `/`, no trailing `/`, \
                 at most 128 characters of letters, digits, `-._~/`)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envoy_prefix_is_checked() {
        let admin: SocketAddr = "127.0.0.1:2".parse().unwrap();
        for good in ["/envoy", "/a/b", "/_ext-authz.v3"] {
            let s = AuthzSettings { envoy_path_prefix: good.into(), ..Default::default() };
            assert!(s.validate(None, admin).is_ok(), "{good}");
        }
        for bad in ["", "/", "envoy", "/envoy/", "/a//b", "/a b", "/a?b", &format!("/{}", "x".repeat(200))] {
            let s = AuthzSettings { envoy_path_prefix: bad.into(), ..Default::default() };
            let e = s.validate(None, admin).unwrap_err();
            assert!(e.starts_with("authz.envoy_path_prefix: "), "{bad}: {e}");
        }
        let same = AuthzSettings { http: Some(admin), ..Default::default() };
        assert!(same.validate(None, admin).unwrap_err().starts_with("authz.http: "));
    }
}
