//! The HTTP contract of a decision, shared by both front ends: the gateway's own answers
//! ([`Reply`]: denials, sign-in redirects), which client request headers go upstream,
//! which upstream response headers reach the client and how the chain's headers are merged
//! into them, and the text forms a filter's verdict may take. One module, so that the rule
//! for each exists once.

use bytes::Bytes;
use gatehouse_core::identity::{CredentialKind, Identity};
use gatehouse_core::request::HOP_BY_HOP;
use gatehouse_core::Engine;
use gatehouse_core::ReasonCode;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use crate::filters::WitIdentity;

/// A complete answer the gateway gives itself (a deny, a redirect, an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status.
    pub status: u16,
    /// Headers (lower-case names, header-safe values).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// A deny: `status` (always 4xx/5xx), a JSON body naming the reason,
    /// `x-gatehouse-reason`, then `headers` (those that are valid header fields).
    pub fn deny(status: u16, reason: &str, headers: &[(String, String)]) -> Reply {
        let mut h = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("x-gatehouse-reason".to_string(), reason.to_string()),
        ];
        for (k, v) in headers {
            if HeaderName::from_bytes(k.as_bytes()).is_ok() && HeaderValue::from_str(v).is_ok() {
                h.push((k.to_ascii_lowercase(), v.clone()));
            }
        }
        let status = if (400..600).contains(&status) { status } else { 403 };
        Reply { status, headers: h, body: Bytes::from(format!("{{\"error\":\"{reason}\"}}\n")) }
    }

    /// A deny with a reason code's own status.
    pub fn reason(reason: ReasonCode) -> Reply {
        Reply::deny(reason.status(), reason.as_str(), &[])
    }

    /// A browser sign-in redirect (302).
    pub fn redirect(location: &str) -> Reply {
        let headers = match HeaderValue::from_str(location) {
            Ok(_) => vec![("location".to_string(), location.to_string())],
            Err(_) => Vec::new(),
        };
        Reply { status: 302, headers, body: Bytes::new() }
    }
}

/// A reason from a filter as it may appear in responses and metric labels: a stable
/// snake_case code, or `filter_denied` for anything else (so a filter cannot inject
/// headers or blow up metric cardinality with arbitrary text).
pub(crate) fn filter_reason(reason: &str) -> &str {
    let ok = !reason.is_empty()
        && reason.len() <= 64
        && reason.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        reason
    } else {
        "filter_denied"
    }
}

/// The lower-case tokens of a comma-separated header value (`Connection`,
/// `Transfer-Encoding`), appended to `out`.
pub(crate) fn list_tokens(value: &[u8], out: &mut Vec<String>) {
    for t in value.split(|&b| b == b',') {
        let t = t.trim_ascii();
        if !t.is_empty() {
            if let Ok(t) = std::str::from_utf8(t) {
                out.push(t.to_ascii_lowercase());
            }
        }
    }
}

/// Whether a header is hop-by-hop for its message: a standard hop-by-hop field, or one
/// the message's `Connection` header names (`connection_tokens`, from [`list_tokens`]).
fn hop_by_hop(name: &str, connection_tokens: &[String]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
        || connection_tokens.iter().any(|t| t.eq_ignore_ascii_case(name))
}

/// Whether a client's request header goes on to the upstream, for both front ends: not an
/// identity header (the gateway sets those from the verdict; a client must never be able
/// to), not `Expect` (the gateway answers it), not hop-by-hop or named by `Connection` —
/// except `Upgrade` and `Connection` themselves on an upgrade.
pub(crate) fn upstream_request_header_allowed(
    engine: &Engine,
    name: &str,
    connection_tokens: &[String],
    upgrade: bool,
) -> bool {
    if name.eq_ignore_ascii_case("expect") || engine.is_identity_header(name) {
        return false;
    }
    !hop_by_hop(name, connection_tokens)
        || (upgrade && (name.eq_ignore_ascii_case("upgrade") || name.eq_ignore_ascii_case("connection")))
}

/// Whether an upstream response header reaches the HTTP/1.1 client: not hop-by-hop for
/// the response, and not one the chain sets itself (`chain_headers`, such as
/// `RateLimit-*`, replace the upstream's; the caller adds them after).
pub(crate) fn client_response_header_allowed(
    name: &str,
    connection_tokens: &[String],
    chain_headers: &[(String, String)],
) -> bool {
    !hop_by_hop(name, connection_tokens) && !chain_headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
}

/// Whether an informational (1xx) upstream response header reaches the HTTP/1.1 client:
/// not hop-by-hop for the response.
pub(crate) fn client_interim_header_allowed(name: &str, connection_tokens: &[String]) -> bool {
    !hop_by_hop(name, connection_tokens)
}

/// The HTTP/2 front end's merge of an upstream response's headers: hop-by-hop fields
/// dropped, then the chain's headers (`RateLimit-*`) set in place of the upstream's.
pub(crate) fn merge_response_headers(headers: &mut HeaderMap, chain_headers: &[(String, String)]) {
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    for (k, v) in chain_headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            headers.insert(k, v);
        }
    }
}

/// A header value as text: visible ASCII, spaces and tabs (as `http`'s `HeaderValue::to_str`).
pub fn header_text(v: &[u8]) -> Option<&str> {
    if v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// The identity a filter chain established, as the core models it (its upstream headers
/// under `prefix`); `None` for an unknown credential kind.
pub fn to_identity(i: WitIdentity, prefix: &str) -> Option<Identity> {
    Some(Identity::new(
        CredentialKind::parse(&i.kind)?,
        i.subject,
        i.org,
        i.roles,
        i.scopes,
        i.teams,
        i.amr,
        i.session_id,
        i.credential_id,
        i.expires_at,
        prefix,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_reasons_are_sanitised() {
        assert_eq!(filter_reason("demo_key_missing"), "demo_key_missing");
        for bad in ["", "Evil", "a\r\nx-gatehouse-subject: root", &"a".repeat(65), "spaces here", "ünïcode"] {
            assert_eq!(filter_reason(bad), "filter_denied", "{bad:?}");
        }
        let r = Reply::deny(403, "demo_key_missing", &[("www-authenticate".into(), "Bearer".into())]);
        assert_eq!(r.status, 403);
        assert!(r.headers.contains(&("x-gatehouse-reason".into(), "demo_key_missing".into())));
        assert!(r.headers.contains(&("www-authenticate".into(), "Bearer".into())));
        // Header fields a filter cannot smuggle in, and statuses that are not denials.
        let r = Reply::deny(200, "x", &[("a\r\nb".into(), "v".into()), ("k".into(), "v\r\nx: y".into())]);
        assert_eq!(r.status, 403);
        assert_eq!(r.headers.len(), 2);
    }
}
