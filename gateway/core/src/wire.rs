//! The HTTP contract of a Gatehouse edge, written once for every host (native gateway,
//! Spin, Workers): how a refusal looks on the wire, which client headers reach the
//! upstream and which are added, and which upstream response headers reach the client.
//!
//! Hosts only move bytes: they hand their platform's header fields in as `(name, value)`
//! pairs and write out what the functions here emit. Nothing here allocates per header.
//!
//! The rules, for an allowed request:
//! - **Never from the client**: identity headers (the engine's prefix, `x-gatehouse-` by
//!   default; the gateway sets them from the verified identity), `Expect` (the gateway
//!   answers it), hop-by-hop headers ([`HOP_BY_HOP`]) and every header the client's
//!   `Connection` names — except `Upgrade` and `Connection` themselves when the host
//!   relays an upgrade.
//! - **Made by the gateway**: `X-Forwarded-For` (the client's values, then the peer, in
//!   one field) and `X-Forwarded-Host` (the host the request was decided under; a client's
//!   own value is dropped, so an application never builds URLs or picks a tenant from a
//!   host the gateway did not check).
//! - **Back to the client**: the upstream's headers minus hop-by-hop ones and those its
//!   `Connection` names, with the decision's own (`RateLimit-*`) replacing any upstream
//!   header of the same name.

use crate::decision::Decision;
use crate::reason::ReasonCode;

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the proxy-era ones and HTTP/2's upgrade
/// settings): never passed on, in either direction.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// The header the gateway writes with the client's address chain.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// The header the gateway writes with the host the request was decided under.
pub const X_FORWARDED_HOST: &str = "x-forwarded-host";
/// The header that carries a refusal's reason code.
pub const REASON_HEADER: &str = "x-gatehouse-reason";
/// The reason code a filter's unusable reason text becomes.
pub const FILTER_DENIED: &str = "filter_denied";

/// A header value as text: visible ASCII, spaces and tabs (the `http` crate's
/// `HeaderValue::to_str`). Anything else is not a value a decision reads.
pub fn header_text(v: &[u8]) -> Option<&str> {
    if v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// Whether `name` is a valid header field name (an RFC 9110 token).
pub fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `name` is one of [`HOP_BY_HOP`] (any case).
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// A reason as it may appear on the wire and in metric labels: a stable snake_case code
/// of at most 64 bytes, or [`FILTER_DENIED`] for anything else (a third-party filter
/// cannot inject header text or blow up metric cardinality).
pub fn reason_text(reason: &str) -> &str {
    let ok = !reason.is_empty()
        && reason.len() <= 64
        && reason.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        reason
    } else {
        FILTER_DENIED
    }
}

/// The header names a message's `Connection` fields list: hop-by-hop for that message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionTokens<'a> {
    tokens: Vec<&'a str>,
}

impl<'a> ConnectionTokens<'a> {
    /// The tokens of every `Connection` field among `fields`.
    pub fn of(fields: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> ConnectionTokens<'a> {
        let mut t = ConnectionTokens::default();
        for (name, value) in fields {
            if name.eq_ignore_ascii_case("connection") {
                t.add(value);
            }
        }
        t
    }

    /// Add the tokens of one `Connection` field value (comma-separated; empty and
    /// non-text tokens are ignored).
    pub fn add(&mut self, value: &'a [u8]) {
        for t in value.split(|&b| b == b',') {
            if let Ok(t) = std::str::from_utf8(t.trim_ascii()) {
                if !t.is_empty() {
                    self.tokens.push(t);
                }
            }
        }
    }

    /// Whether the fields name `header` (any case).
    pub fn names(&self, header: &str) -> bool {
        self.tokens.iter().any(|t| t.eq_ignore_ascii_case(header))
    }

    /// Whether `token` is among them (`close`, `upgrade`, …; any case).
    pub fn contains(&self, token: &str) -> bool {
        self.names(token)
    }
}

/// Whether a header of a message is hop-by-hop for it: in [`HOP_BY_HOP`] or named by its
/// `Connection` fields.
pub fn is_hop(name: &str, connection: &ConnectionTokens<'_>) -> bool {
    is_hop_by_hop(name) || connection.names(name)
}

/// An answer the gateway gives itself instead of going upstream: a refusal or a sign-in
/// redirect, the same bytes on every host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status (a refusal is always 4xx or 5xx).
    pub status: u16,
    /// Header fields: lower-case valid names, header-safe values.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A refusal: `status` (one outside 400–599 becomes 403: a refusal never looks like
    /// success), `content-type: application/json`, [`REASON_HEADER`] with the reason
    /// (through [`reason_text`]), then those of `headers` that are valid fields, and the
    /// body `{"error":"<reason>"}`.
    pub fn deny(status: u16, reason: &str, headers: &[(String, String)]) -> Reply {
        let reason = reason_text(reason);
        let mut h = Vec::with_capacity(2 + headers.len());
        h.push(("content-type".to_string(), "application/json".to_string()));
        h.push((REASON_HEADER.to_string(), reason.to_string()));
        for (k, v) in headers {
            if is_field_name(k) && header_text(v.as_bytes()).is_some() {
                h.push((k.to_ascii_lowercase(), v.clone()));
            }
        }
        let status = if (400..600).contains(&status) { status } else { 403 };
        let mut body = Vec::with_capacity(reason.len() + 13);
        body.extend_from_slice(b"{\"error\":\"");
        body.extend_from_slice(reason.as_bytes());
        body.extend_from_slice(b"\"}\n");
        Reply { status, headers: h, body }
    }

    /// A refusal with the reason code's own status.
    pub fn refusal(reason: ReasonCode) -> Reply {
        Reply::deny(reason.status(), reason.as_str(), &[])
    }

    /// A browser sign-in redirect: `302` to `location` (left out when it is not a valid
    /// header value), no body.
    pub fn redirect(location: &str) -> Reply {
        let headers = match header_text(location.as_bytes()) {
            Some(l) if !l.is_empty() => vec![("location".to_string(), l.to_string())],
            _ => Vec::new(),
        };
        Reply { status: 302, headers, body: Vec::new() }
    }

    /// The reply for a decision that does not go upstream; `None` for an allow.
    pub fn for_decision(d: &Decision) -> Option<Reply> {
        match d {
            Decision::Allow(_) => None,
            Decision::Deny(d) => Some(Reply::deny(d.status, d.reason.as_str(), &d.headers)),
            Decision::Redirect(r) => Some(Reply::redirect(&r.location)),
        }
    }
}

/// How an allowed request goes upstream: the facts the header rules need.
#[derive(Debug, Clone)]
pub struct UpstreamRequest<'a> {
    /// The engine's identity-header prefix (client headers under it never pass).
    pub identity_prefix: &'a str,
    /// The client's `Connection` tokens.
    pub connection: &'a ConnectionTokens<'a>,
    /// Whether the host relays this request's upgrade (then `Upgrade` and `Connection` go
    /// on): only hosts that can splice the upgraded connection set it.
    pub relay_upgrade: bool,
    /// The host the request was decided under (`X-Forwarded-Host`; empty: none).
    pub host: &'a str,
    /// The TCP peer's address as text (the last `X-Forwarded-For` hop).
    pub peer: &'a str,
    /// The verified identity's headers.
    pub identity: &'a [(String, String)],
}

impl UpstreamRequest<'_> {
    /// Whether the client's header `name` goes on to the upstream as the client sent it.
    /// `X-Forwarded-For` does not: its values go into the gateway's own field.
    pub fn passes(&self, name: &str) -> bool {
        let p = self.identity_prefix;
        let identity = name.len() >= p.len() && name.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes());
        if identity
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case(X_FORWARDED_FOR)
            || name.eq_ignore_ascii_case(X_FORWARDED_HOST)
        {
            return false;
        }
        if !is_hop(name, self.connection) {
            return true;
        }
        self.relay_upgrade && (name.eq_ignore_ascii_case("upgrade") || name.eq_ignore_ascii_case("connection"))
    }

    /// The upstream request's headers, in order: the client's that pass, the identity's,
    /// `X-Forwarded-For` and `X-Forwarded-Host`. `emit` gets each field; a host drops
    /// only what its platform itself refuses or frames (for example `Host` on an outbound
    /// fetch, `Content-Length` when it re-frames the body).
    pub fn headers<'h>(
        &self,
        client: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        mut emit: impl FnMut(&str, &[u8]),
    ) {
        let mut xff: Vec<u8> = Vec::new();
        for (name, value) in client {
            if name.eq_ignore_ascii_case(X_FORWARDED_FOR) {
                let v = value.trim_ascii();
                if !v.is_empty() {
                    xff.extend_from_slice(v);
                    xff.extend_from_slice(b", ");
                }
            } else if self.passes(name) {
                emit(name, value);
            }
        }
        for (k, v) in self.identity {
            emit(k, v.as_bytes());
        }
        xff.extend_from_slice(self.peer.as_bytes());
        emit(X_FORWARDED_FOR, &xff);
        if !self.host.is_empty() {
            emit(X_FORWARDED_HOST, self.host.as_bytes());
        }
    }
}

/// The client response's headers from the upstream's: hop-by-hop ones and those the
/// upstream's `Connection` names dropped, any that `ours` (the decision's `RateLimit-*`)
/// also sets dropped, then `ours`. `emit` gets each field.
pub fn response_headers<'h, I>(upstream: I, ours: &[(String, String)], mut emit: impl FnMut(&str, &[u8]))
where
    I: IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
{
    let connection = ConnectionTokens::of(upstream.clone());
    for (name, value) in upstream {
        if !is_hop(name, &connection) && !ours.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
            emit(name, value);
        }
    }
    for (k, v) in ours {
        emit(k, v.as_bytes());
    }
}

#[cfg(test)]
mod tests;
