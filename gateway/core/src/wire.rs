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
//!   `Connection` names. Names the gateway owns are matched with `_` read as `-` too
//!   (`X_Gatehouse_Subject`): CGI-style upstreams map both to the same variable.
//! - **Made by the gateway**: `Host` and `X-Forwarded-Host` (the host the request was
//!   decided under: an application never routes, builds URLs or picks a tenant from a host
//!   the gateway did not check, even when an absolute-form target and `Host` disagree),
//!   `X-Forwarded-For` (the client's values, then the peer, in one field), and for a
//!   relayed upgrade (WebSocket only, [`is_relayable_upgrade`]) the client's `Upgrade`
//!   with a fresh `Connection: upgrade`.
//! - **Checked on the way out**: the identity's and the decision's own headers must be
//!   valid fields (a third-party filter's output is never written unchecked).
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
/// Most `Connection` tokens a message may carry (an HTTP/1.1 front end refuses more; this
/// bounds the work of checking every field against them).
pub const MAX_CONNECTION_TOKENS: usize = 32;

/// Whether two header names are the same, also when one writes `_` for `-` (any case).
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let norm = |c: u8| if c == b'_' { b'-' } else { c.to_ascii_lowercase() };
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| norm(x) == norm(y))
}

/// Whether header `name` starts with `prefix` (any case, `_` read as `-`): the identity
/// headers under the engine's prefix.
pub fn has_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len() && same_name(&name.as_bytes()[..prefix.len()], prefix.as_bytes())
}

/// Whether an `Upgrade` value is one a host may relay: WebSocket only. Anything else (an
/// `h2c` upgrade above all: a tunnel in which later requests would bypass the gateway)
/// goes upstream as a plain request.
pub fn is_relayable_upgrade(value: &[u8]) -> bool {
    value.trim_ascii().eq_ignore_ascii_case(b"websocket")
}

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
    seen: usize,
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
    /// non-text tokens are ignored, and none beyond [`MAX_CONNECTION_TOKENS`] is kept).
    pub fn add(&mut self, value: &'a [u8]) {
        for t in value.split(|&b| b == b',') {
            if let Ok(t) = std::str::from_utf8(t.trim_ascii()) {
                if !t.is_empty() {
                    self.seen += 1;
                    if self.tokens.len() < MAX_CONNECTION_TOKENS {
                        self.tokens.push(t);
                    }
                }
            }
        }
    }

    /// How many tokens the fields listed (kept or not).
    pub fn count(&self) -> usize {
        self.seen
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
    /// (through [`reason_text`]), then those of `headers` that are valid fields and not
    /// ones the gateway writes itself (framing, hop-by-hop, `content-type`, the reason,
    /// `date`, `location`), and the body `{"error":"<reason>"}`.
    pub fn deny(status: u16, reason: &str, headers: &[(String, String)]) -> Reply {
        let reason = reason_text(reason);
        let mut h = Vec::with_capacity(2 + headers.len());
        h.push(("content-type".to_string(), "application/json".to_string()));
        h.push((REASON_HEADER.to_string(), reason.to_string()));
        for (k, v) in headers {
            let owned = ["content-type", "content-length", REASON_HEADER, "date", "location"]
                .iter()
                .any(|o| o.eq_ignore_ascii_case(k));
            if !owned && !is_hop_by_hop(k) && is_field_name(k) && header_text(v.as_bytes()).is_some() {
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
    /// Whether the host relays this request's upgrade (then the client's `Upgrade` goes on
    /// with `Connection: upgrade`): only hosts that can splice the upgraded connection set
    /// it, and only for [`is_relayable_upgrade`] values.
    pub relay_upgrade: bool,
    /// The host the request was decided under (`Host` and `X-Forwarded-Host`; empty:
    /// neither).
    pub host: &'a str,
    /// The TCP peer's address as text (the last `X-Forwarded-For` hop).
    pub peer: &'a str,
    /// The verified identity's headers.
    pub identity: &'a [(String, String)],
}

impl UpstreamRequest<'_> {
    /// Whether the client's header `name` goes on to the upstream as the client sent it.
    /// `Host`, `X-Forwarded-For` and `X-Forwarded-Host` do not: the gateway writes them.
    pub fn passes(&self, name: &str) -> bool {
        let n = name.as_bytes();
        let owned = [X_FORWARDED_FOR, X_FORWARDED_HOST, "host", "expect"].iter().any(|o| same_name(n, o.as_bytes()));
        if owned || has_prefix(name, self.identity_prefix) {
            return false;
        }
        if !is_hop(name, self.connection) {
            return true;
        }
        self.relay_upgrade && name.eq_ignore_ascii_case("upgrade")
    }

    /// The upstream request's headers, in order: `Host`, the client's that pass, the
    /// identity's (valid fields only), `Connection: upgrade` for a relayed upgrade,
    /// `X-Forwarded-For` and `X-Forwarded-Host`. `emit` gets each field; a host drops only
    /// what its platform itself refuses or frames (for example `Host` on an outbound
    /// fetch, `Content-Length` when it re-frames the body).
    pub fn headers<'h>(
        &self,
        client: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        mut emit: impl FnMut(&str, &[u8]),
    ) {
        if !self.host.is_empty() {
            emit("host", self.host.as_bytes());
        }
        // The client's chain, when it sent one (most requests do not: no allocation).
        let mut xff: Option<Vec<u8>> = None;
        for (name, value) in client {
            if same_name(name.as_bytes(), X_FORWARDED_FOR.as_bytes()) {
                let v = value.trim_ascii();
                if !v.is_empty() {
                    let chain = xff.get_or_insert_with(|| Vec::with_capacity(64));
                    chain.extend_from_slice(v);
                    chain.extend_from_slice(b", ");
                }
            } else if self.passes(name) {
                emit(name, value);
            }
        }
        for (k, v) in self.identity {
            if is_field_name(k) && header_text(v.as_bytes()).is_some() {
                emit(k, v.as_bytes());
            }
        }
        if self.relay_upgrade {
            emit("connection", b"upgrade");
        }
        match xff.as_mut() {
            Some(chain) => {
                chain.extend_from_slice(self.peer.as_bytes());
                emit(X_FORWARDED_FOR, chain);
            }
            None => emit(X_FORWARDED_FOR, self.peer.as_bytes()),
        }
        if !self.host.is_empty() {
            emit(X_FORWARDED_HOST, self.host.as_bytes());
        }
    }
}

/// The client response's headers from the upstream's: hop-by-hop ones and those the
/// upstream's `Connection` names dropped, any that `ours` (the decision's `RateLimit-*`)
/// also sets dropped, then those of `ours` that are valid fields. `emit` gets each field.
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
        if is_field_name(k) && header_text(v.as_bytes()).is_some() {
            emit(k, v.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
