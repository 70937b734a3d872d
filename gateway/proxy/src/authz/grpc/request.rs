//! An Envoy `CheckRequest` read as the original request the engine decides on: method,
//! host, path and query, header fields and the downstream peer Envoy reports. Everything
//! is borrowed from the message; anything missing or out of bounds is a [`Malformed`]
//! (the service refuses it: fail closed).

use std::net::{IpAddr, SocketAddr};

use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use gatehouse_core::ReasonCode;

/// Most header fields a check may carry (the HTTP/1.1 front end's bound).
pub const MAX_HEADERS: usize = crate::http1::MAX_HEADERS;
/// Most bytes of header names and values, path and host together (the HTTP/1.1 front
/// end's head bound).
pub const MAX_HEAD_BYTES: usize = crate::http1::MAX_HEAD;

/// Why a `CheckRequest` cannot be decided on. Each has a stable code for logs; the
/// refusal's reason is [`Malformed::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// `attributes.request.http` is absent: not an HTTP check.
    #[error("the check has no attributes.request.http")]
    NoHttpAttributes,
    /// `attributes.source.address` is absent or not a socket address.
    #[error("the check has no attributes.source.address.socket_address")]
    NoSource,
    /// The source's address is not an IP address, or its port is not a number.
    #[error("attributes.source.address is not an IP address and port")]
    BadSource,
    /// The method is empty or not an HTTP token.
    #[error("the request's method is missing or not a token")]
    BadMethod,
    /// Neither `host` nor an `:authority`/`host` header names the host.
    #[error("the request has no host")]
    NoHost,
    /// The path does not start with `/`.
    #[error("the request's path does not start with /")]
    BadPath,
    /// More than [`MAX_HEADERS`] fields or [`MAX_HEAD_BYTES`] bytes.
    #[error("the request's head is larger than the gateway admits")]
    TooLarge,
    /// A header name is not a token.
    #[error("a header name is not a token")]
    BadHeaderName,
    /// The scheme is neither `http` nor `https` (nor absent).
    #[error("the request's scheme is neither http nor https")]
    BadScheme,
}

impl Malformed {
    /// Stable code of the problem (for logs).
    pub fn code(&self) -> &'static str {
        match self {
            Malformed::NoHttpAttributes => "no_http_attributes",
            Malformed::NoSource => "no_source_address",
            Malformed::BadSource => "bad_source_address",
            Malformed::BadMethod => "bad_method",
            Malformed::NoHost => "no_host",
            Malformed::BadPath => "bad_path",
            Malformed::TooLarge => "head_too_large",
            Malformed::BadHeaderName => "bad_header_name",
            Malformed::BadScheme => "bad_scheme",
        }
    }

    /// The refusal the client gets: `headers_too_large` (431) for an oversized head,
    /// else `request_malformed` (400), as the HTTP front end answers.
    pub fn reason(&self) -> ReasonCode {
        match self {
            Malformed::TooLarge => ReasonCode::HeadersTooLarge,
            _ => ReasonCode::RequestMalformed,
        }
    }
}

/// The original request, borrowed from a `CheckRequest`.
#[derive(Debug, PartialEq, Eq)]
pub struct Original<'a> {
    /// The scheme the client used (`http` when Envoy names none).
    pub scheme: &'static str,
    /// Method.
    pub method: &'a str,
    /// Host the client addressed (`host`, else `:authority`, else `Host`).
    pub authority: &'a str,
    /// Path, without the query.
    pub path: &'a str,
    /// Query, without `?` (`None` when the target has no `?`).
    pub query: Option<&'a str>,
    /// Header fields, pseudo-headers (`:path`, …) left out.
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// The downstream peer, as Envoy saw it.
    pub peer: SocketAddr,
}

/// Read `req`. Headers come from `header_map` when Envoy sends raw headers
/// (`encode_raw_headers`), else from the `headers` map; the fragment is never part of a
/// decision.
pub fn read(req: &CheckRequest) -> Result<Original<'_>, Malformed> {
    let attrs = req.attributes.as_ref().ok_or(Malformed::NoHttpAttributes)?;
    let http = attrs.request.as_ref().and_then(|r| r.http.as_ref()).ok_or(Malformed::NoHttpAttributes)?;
    let peer = source(attrs.source.as_ref().and_then(|s| s.address.as_ref()))?;

    let raw = http.header_map.as_ref().filter(|m| !m.headers.is_empty());
    let all: Vec<(&str, &[u8])> = match raw {
        Some(map) => map
            .headers
            .iter()
            .map(|h| {
                let v = if h.raw_value.is_empty() { h.value.as_bytes() } else { h.raw_value.as_slice() };
                (h.key.as_str(), v)
            })
            .collect(),
        None => http.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect(),
    };
    let pseudo = |name: &str| {
        all.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| std::str::from_utf8(v).ok())
    };
    let mut size = http.path.len() + http.host.len();
    let mut headers = Vec::with_capacity(all.len());
    for &(k, v) in &all {
        size += k.len() + v.len();
        if k.starts_with(':') {
            continue;
        }
        if !gatehouse_core::wire::is_field_name(k) {
            return Err(Malformed::BadHeaderName);
        }
        headers.push((k, v));
    }
    if headers.len() > MAX_HEADERS || size > MAX_HEAD_BYTES {
        return Err(Malformed::TooLarge);
    }

    let method = Some(http.method.as_str()).filter(|m| !m.is_empty()).or_else(|| pseudo(":method")).unwrap_or("");
    if !gatehouse_core::wire::is_field_name(method) {
        return Err(Malformed::BadMethod);
    }
    let authority = Some(http.host.as_str())
        .filter(|h| !h.is_empty())
        .or_else(|| pseudo(":authority"))
        .or_else(|| pseudo("host"))
        .filter(|h| !h.is_empty())
        .ok_or(Malformed::NoHost)?;
    let target = Some(http.path.as_str()).filter(|p| !p.is_empty()).or_else(|| pseudo(":path")).unwrap_or("");
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if !path.starts_with('/') {
        return Err(Malformed::BadPath);
    }
    let scheme = match http.scheme.as_str() {
        "" | "http" => "http",
        "https" => "https",
        _ => return Err(Malformed::BadScheme),
    };
    Ok(Original { scheme, method, authority, path, query, headers, peer })
}

/// The downstream peer of `address`: an IP socket address (a port of 0 when Envoy gives
/// none).
fn source(address: Option<&envoy_types::pb::envoy::config::core::v3::Address>) -> Result<SocketAddr, Malformed> {
    let Some(address::Address::SocketAddress(sa)) = address.and_then(|a| a.address.as_ref()) else {
        return Err(Malformed::NoSource);
    };
    let ip: IpAddr = sa.address.parse().map_err(|_| Malformed::BadSource)?;
    let port = match &sa.port_specifier {
        None => 0,
        Some(socket_address::PortSpecifier::PortValue(p)) => u16::try_from(*p).map_err(|_| Malformed::BadSource)?,
        Some(socket_address::PortSpecifier::NamedPort(_)) => return Err(Malformed::BadSource),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{Address, HeaderMap, HeaderValue, SocketAddress};
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;

    fn check(http: HttpRequest, source: Option<&str>) -> CheckRequest {
        let source = source.map(|ip| Peer {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: ip.to_string(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(51_000)),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        });
        CheckRequest {
            attributes: Some(AttributeContext {
                source,
                request: Some(Request { http: Some(http), ..Default::default() }),
                ..Default::default()
            }),
        }
    }

    fn http(path: &str, headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            host: "acme.test".into(),
            path: path.into(),
            scheme: "https".into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn reads_path_query_peer_and_headers_without_pseudo_headers() {
        let req =
            check(http("/items?a=1&b=2#frag", &[(":authority", "acme.test"), ("accept", "*/*")]), Some("198.51.100.7"));
        let o = read(&req).unwrap();
        assert_eq!((o.method, o.authority, o.path, o.query), ("GET", "acme.test", "/items", Some("a=1&b=2")));
        assert_eq!(o.headers, vec![("accept", &b"*/*"[..])]);
        assert_eq!(o.peer, "198.51.100.7:51000".parse().unwrap());
    }

    #[test]
    fn the_scheme_is_envoys() {
        let mut h = http("/x", &[]);
        assert_eq!(read(&check(h.clone(), Some("198.51.100.7"))).unwrap().scheme, "https");
        h.scheme = String::new();
        assert_eq!(read(&check(h.clone(), Some("198.51.100.7"))).unwrap().scheme, "http");
        h.scheme = "gopher".into();
        assert_eq!(read(&check(h, Some("198.51.100.7"))), Err(Malformed::BadScheme));
    }

    #[test]
    fn raw_header_map_wins_and_keeps_repeated_fields() {
        let mut h = http("/", &[("cookie", "merged")]);
        h.header_map = Some(HeaderMap {
            headers: ["a=1", "b=2"]
                .iter()
                .map(|v| HeaderValue { key: "cookie".into(), value: String::new(), raw_value: v.as_bytes().to_vec() })
                .collect(),
        });
        let req = check(h, Some("::1"));
        let o = read(&req).unwrap();
        assert_eq!(o.headers, vec![("cookie", &b"a=1"[..]), ("cookie", &b"b=2"[..])]);
        assert_eq!(o.query, None);
    }

    #[test]
    fn host_and_method_fall_back_to_pseudo_headers() {
        let mut h = http("/x", &[(":authority", "b.test"), (":method", "POST")]);
        h.host.clear();
        h.method.clear();
        let req = check(h, Some("10.0.0.1"));
        let o = read(&req).unwrap();
        assert_eq!((o.method, o.authority), ("POST", "b.test"));
    }

    #[test]
    fn refuses_what_it_cannot_decide_on() {
        let no_http = CheckRequest { attributes: Some(AttributeContext::default()) };
        assert_eq!(read(&no_http), Err(Malformed::NoHttpAttributes));
        assert_eq!(read(&CheckRequest::default()), Err(Malformed::NoHttpAttributes));
        assert_eq!(read(&check(http("/", &[]), None)), Err(Malformed::NoSource));
        assert_eq!(read(&check(http("/", &[]), Some("envoy.local"))), Err(Malformed::BadSource));
        assert_eq!(read(&check(http("items", &[]), Some("10.0.0.1"))), Err(Malformed::BadPath));
        let mut bad_method = http("/", &[]);
        bad_method.method = "GE T".into();
        assert_eq!(read(&check(bad_method, Some("10.0.0.1"))), Err(Malformed::BadMethod));
        let mut no_host = http("/", &[]);
        no_host.host.clear();
        assert_eq!(read(&check(no_host, Some("10.0.0.1"))), Err(Malformed::NoHost));
        assert_eq!(read(&check(http("/", &[("bad name", "1")]), Some("10.0.0.1"))), Err(Malformed::BadHeaderName));
        let many: Vec<(String, String)> = (0..=MAX_HEADERS).map(|i| (format!("x-h{i}"), "v".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let err = read(&check(http("/", &many), Some("10.0.0.1"))).unwrap_err();
        assert_eq!((err.reason(), err), (ReasonCode::HeadersTooLarge, Malformed::TooLarge));
        let big = "a".repeat(MAX_HEAD_BYTES);
        assert_eq!(read(&check(http("/", &[("x-big", &big)]), Some("10.0.0.1"))), Err(Malformed::TooLarge));
        assert_eq!(Malformed::NoSource.reason(), ReasonCode::RequestMalformed);
    }
}
