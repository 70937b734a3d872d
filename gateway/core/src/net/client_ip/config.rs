//! Client-IP settings as the policy writes them (`[client_ip]`): the source of the address
//! behind trusted proxies, the proxies, the hop bound. Types only, so the policy schema can
//! hold them without reaching the resolver.

use serde::{Deserialize, Serialize};

use crate::net::cidr::Cidr;

/// Where the client address comes from when the peer is a trusted proxy.
///
/// Written in the policy as `"peer"`, `"x-forwarded-for"`, `"forwarded"` or
/// `"header:CF-Connecting-IP"`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClientIpSource {
    /// Only the TCP peer; headers are never read.
    #[default]
    Peer,
    /// `X-Forwarded-For` (all fields, in order).
    XForwardedFor,
    /// RFC 7239 `Forwarded` (`for=` parameters).
    Forwarded,
    /// A single-address platform header such as `CF-Connecting-IP` or `Fly-Client-IP`.
    Header(String),
}

impl std::fmt::Display for ClientIpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientIpSource::Peer => f.write_str("peer"),
            ClientIpSource::XForwardedFor => f.write_str("x-forwarded-for"),
            ClientIpSource::Forwarded => f.write_str("forwarded"),
            ClientIpSource::Header(h) => write!(f, "header:{h}"),
        }
    }
}

impl std::str::FromStr for ClientIpSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "peer" => Ok(ClientIpSource::Peer),
            "x-forwarded-for" => Ok(ClientIpSource::XForwardedFor),
            "forwarded" => Ok(ClientIpSource::Forwarded),
            _ => match s.strip_prefix("header:") {
                Some(h) if !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => {
                    Ok(ClientIpSource::Header(h.to_string()))
                }
                _ => Err(format!(
                    "`{s}` is not a client IP source: use \"peer\", \"x-forwarded-for\", \"forwarded\" or \"header:NAME\""
                )),
            },
        }
    }
}

impl Serialize for ClientIpSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClientIpSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Client IP settings, as written in the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIpConfig {
    /// Where the client address comes from behind trusted proxies.
    #[serde(default)]
    pub source: ClientIpSource,
    /// Peers (and hops) whose forwarding headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
    /// Most hops read from a forwarding header; more is refused.
    #[serde(default = "default_max_hops")]
    pub max_hops: usize,
}

fn default_max_hops() -> usize {
    16
}

impl Default for ClientIpConfig {
    fn default() -> Self {
        ClientIpConfig { source: ClientIpSource::Peer, trusted_proxies: Vec::new(), max_hops: default_max_hops() }
    }
}
