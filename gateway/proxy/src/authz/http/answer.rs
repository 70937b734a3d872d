//! The check's answer in the caller's protocol. An allow is `200` with the identity
//! headers for the upstream and the `RateLimit-*` fields for the client; a refusal or a
//! sign-in redirect is the gateway's own [`Reply`], as it is, for the proxies that return
//! a non-2xx answer to the client verbatim (Traefik, Caddy, Envoy).
//!
//! nginx's `auth_request` passes only 2xx, 401 and 403 (anything else becomes a 500), so
//! for nginx a refusal travels inside a 401 (when it is one) or a 403 (without the
//! `WWW-Authenticate` nginx would copy to the client beside the reply's), carrying the real
//! status (`x-gatehouse-status`), the redirect's target (`x-gatehouse-location`) and the
//! whole reply (`x-gatehouse-reply`, hex of its JSON). The shipped nginx configuration
//! hands that field back to this endpoint from its `error_page` location, which answers
//! with the reply exactly ([`decode_reply`]): status, every header, body — nothing of the
//! contract is rebuilt in nginx's configuration.

use gatehouse_core::wire::{self, Reply};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use super::convention::Caller;
use crate::body::{full, Body};

/// The field nginx hands back from its `error_page` location.
pub const REPLY_HEADER: &str = "x-gatehouse-reply";
/// The real status of a refusal answered to nginx as 401 or 403.
pub const STATUS_HEADER: &str = "x-gatehouse-status";
/// A redirect's target, answered to nginx inside a 401 or 403.
pub const LOCATION_HEADER: &str = "x-gatehouse-location";
/// Envoy's field listing request headers to remove before going upstream.
pub const ENVOY_REMOVE_HEADER: &str = "x-envoy-auth-headers-to-remove";

/// Longest encoded reply accepted back.
const MAX_ENCODED: usize = 16 * 1024;

/// Why an `x-gatehouse-reply` was not a reply this endpoint would give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Not hex of the reply's JSON, or longer than the bound.
    #[error("the reply field is not an encoded reply")]
    Encoding,
    /// A status outside 300–599 (a replayed reply never admits), or a header that is not a
    /// valid field.
    #[error("the encoded reply is not a refusal or redirect")]
    NotARefusal,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Encoded {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

/// The reply as nginx carries it: hex of `{"status", "headers", "body"}`.
pub fn encode_reply(reply: &Reply) -> String {
    let e = Encoded {
        status: reply.status,
        headers: reply.headers.clone(),
        body: String::from_utf8_lossy(&reply.body).into_owned(),
    };
    let json = serde_json::to_vec(&e).expect("a reply serializes");
    let mut out = String::with_capacity(json.len() * 2);
    for b in json {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// The reply an [`encode_reply`] value stands for; only refusals and redirects.
pub fn decode_reply(text: &str) -> Result<Reply, ReplayError> {
    if text.len() > MAX_ENCODED || !text.len().is_multiple_of(2) {
        return Err(ReplayError::Encoding);
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes: Option<Vec<u8>> = text.as_bytes().chunks(2).map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?)).collect();
    let e: Encoded = serde_json::from_slice(&bytes.ok_or(ReplayError::Encoding)?).map_err(|_| ReplayError::Encoding)?;
    let valid = |(k, v): &(String, String)| wire::is_field_name(k) && wire::header_text(v.as_bytes()).is_some();
    if !(300..600).contains(&e.status) || !e.headers.iter().all(valid) {
        return Err(ReplayError::NotARefusal);
    }
    Ok(Reply { status: e.status, headers: e.headers, body: e.body.into_bytes() })
}

fn append(r: &mut Response<Body>, name: &str, value: &str) {
    if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
        r.headers_mut().append(k, v);
    }
}

/// A response of `status` with `headers` and `body`.
fn response(status: u16, headers: &[(String, String)], body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    for (k, v) in headers {
        append(&mut r, k, v);
    }
    r
}

/// Let the request through: `200`, no body, the identity headers for the upstream and
/// the client response's `RateLimit-*`; for Envoy also the client's own headers under
/// the identity prefix to remove (the other proxies' configurations strip the prefix).
pub fn allow(
    caller: Caller,
    upstream_headers: &[(String, String)],
    remove_headers: &[String],
    response_headers: &[(String, String)],
) -> Response<Body> {
    let mut r = response(200, upstream_headers, Vec::new());
    for (k, v) in response_headers {
        append(&mut r, k, v);
    }
    let removed: Vec<&str> = remove_headers
        .iter()
        .filter(|name| !upstream_headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)))
        .map(String::as_str)
        .collect();
    if caller == Caller::Envoy && !removed.is_empty() {
        append(&mut r, ENVOY_REMOVE_HEADER, &removed.join(","));
    }
    r
}

/// Refuse (or redirect) with `reply`: as it is, except to nginx (see the module's doc).
pub fn refuse(caller: Caller, reply: Reply) -> Response<Body> {
    if caller != Caller::Nginx {
        return response(reply.status, &reply.headers, reply.body);
    }
    replay_wrapper(&reply)
}

/// A reply inside the 401 or 403 that nginx's `auth_request` passes.
pub fn replay_wrapper(reply: &Reply) -> Response<Body> {
    let status = if reply.status == 401 { 401 } else { 403 };
    // nginx copies a 401's `WWW-Authenticate` to the client itself: only the reply
    // handed back carries it (once).
    let mut headers: Vec<(String, String)> =
        reply.headers.iter().filter(|(k, _)| k != "location" && k != "www-authenticate").cloned().collect();
    headers.push((STATUS_HEADER.into(), reply.status.to_string()));
    if let Some((_, l)) = reply.headers.iter().find(|(k, _)| k == "location") {
        headers.push((LOCATION_HEADER.into(), l.clone()));
    }
    headers.push((REPLY_HEADER.into(), encode_reply(reply)));
    response(status, &headers, reply.body.clone())
}

/// The reply nginx handed back, as the client must get it.
pub fn replay(reply: Reply) -> Response<Body> {
    response(reply.status, &reply.headers, reply.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::ReasonCode;

    fn header<'r>(r: &'r Response<Body>, name: &str) -> Option<&'r str> {
        r.headers().get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn replies_round_trip_and_only_refusals_replay() {
        let rate = Reply::deny(
            429,
            "rate_limited",
            &[("retry-after".into(), "30".into()), ("ratelimit-remaining".into(), "0".into())],
        );
        for reply in [rate, Reply::refusal(ReasonCode::CredentialMissing), Reply::redirect("https://l/x?return_to=a")] {
            assert_eq!(decode_reply(&encode_reply(&reply)), Ok(reply));
        }
        let forged = Reply { status: 200, headers: vec![("x-gatehouse-subject".into(), "root".into())], body: vec![] };
        assert_eq!(decode_reply(&encode_reply(&forged)), Err(ReplayError::NotARefusal));
        let bad_field = Reply { status: 403, headers: vec![("a b".into(), "x".into())], body: vec![] };
        assert_eq!(decode_reply(&encode_reply(&bad_field)), Err(ReplayError::NotARefusal));
        for junk in ["zz", "0", "7b7d", &"00".repeat(MAX_ENCODED)] {
            assert!(decode_reply(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn nginx_gets_refusals_inside_401_or_403() {
        let r = refuse(Caller::Nginx, Reply::deny(429, "rate_limited", &[("retry-after".into(), "30".into())]));
        assert_eq!(r.status(), 403);
        assert_eq!(header(&r, STATUS_HEADER), Some("429"));
        assert_eq!(header(&r, "retry-after"), Some("30"));
        assert_eq!(decode_reply(header(&r, REPLY_HEADER).unwrap()).unwrap().status, 429);
        let r = refuse(Caller::Nginx, Reply::refusal(ReasonCode::CredentialMissing));
        assert_eq!((r.status().as_u16(), header(&r, STATUS_HEADER)), (401, Some("401")));
        let r = refuse(Caller::Nginx, Reply::redirect("https://login/x"));
        assert_eq!(
            (r.status().as_u16(), header(&r, LOCATION_HEADER), header(&r, "location")),
            (403, Some("https://login/x"), None)
        );
        // The others get the reply as it is.
        let r = refuse(Caller::Forwarded, Reply::redirect("https://login/x"));
        assert_eq!((r.status().as_u16(), header(&r, "location")), (302, Some("https://login/x")));
    }

    #[test]
    fn envoy_is_told_what_to_remove() {
        let id = vec![("x-gatehouse-subject".to_string(), "alice".to_string())];
        let spoofed = vec!["x-gatehouse-subject".to_string(), "x-gatehouse-roles".to_string()];
        let r = allow(Caller::Envoy, &id, &spoofed, &[("ratelimit-remaining".into(), "9".into())]);
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-gatehouse-subject"), Some("alice"));
        assert_eq!(header(&r, ENVOY_REMOVE_HEADER), Some("x-gatehouse-roles"));
        assert_eq!(header(&r, "ratelimit-remaining"), Some("9"));
        assert_eq!(header(&allow(Caller::Forwarded, &id, &spoofed, &[]), ENVOY_REMOVE_HEADER), None);
    }
}
