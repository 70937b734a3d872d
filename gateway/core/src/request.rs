//! The request head as the decision engine sees it.
//!
//! Hosts build a [`RequestHead`] from whatever their platform delivers (a hyper request,
//! a Spin request, a Workers request, a JSON file). It borrows everything: building one
//! costs no copies of header values.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Bounds on the request head; a request beyond them is denied with `request_malformed`.
pub mod limits {
    /// Most header fields the engine looks at.
    pub const MAX_HEADERS: usize = 128;
    /// Longest single header value.
    pub const MAX_HEADER_VALUE: usize = 16 * 1024;
    /// Longest host.
    pub const MAX_HOST: usize = 255;
    /// Longest path (without the query).
    pub const MAX_PATH: usize = 8 * 1024;
}

/// A borrowed view of a request head.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// HTTP method, e.g. `GET`.
    pub method: &'a str,
    /// `http` or `https` as seen by the client (hosts behind TLS terminators pass `https`).
    pub scheme: &'a str,
    /// Host (authority without userinfo); a port suffix is ignored.
    pub host: &'a str,
    /// Path, starting with `/`, without the query.
    pub path: &'a str,
    /// Raw query string without `?`, if any.
    pub query: Option<&'a str>,
    /// Header fields in arrival order; names are matched case-insensitively.
    pub headers: &'a [(&'a str, &'a str)],
    /// The address of the TCP peer.
    pub peer: IpAddr,
    /// Country code that the platform itself determined (e.g. Workers `cf.country`).
    pub platform_country: Option<&'a str>,
}

impl<'a> RequestHead<'a> {
    /// All values of header `name`, in order.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.header_values(name).next()
    }

    /// The host without a port, lower-cased comparisons are done by callers.
    pub fn host_without_port(&self) -> &'a str {
        strip_port(self.host)
    }

    /// Whether the client prefers HTML (a browser navigation).
    pub fn accepts_html(&self) -> bool {
        self.header_values("accept").any(|v| v.split(',').any(|m| m.trim().starts_with("text/html")))
    }

    /// Structural checks: sizes and characters. Returns a description of the first problem.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.headers.len() > limits::MAX_HEADERS {
            return Err("too many header fields");
        }
        if self.headers.iter().any(|(n, v)| n.is_empty() || v.len() > limits::MAX_HEADER_VALUE) {
            return Err("header field too large or unnamed");
        }
        if self.host.len() > limits::MAX_HOST
            || !self.host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        {
            return Err("bad host");
        }
        if !self.path.starts_with('/')
            || self.path.len() > limits::MAX_PATH
            || self.path.bytes().any(|b| b.is_ascii_control() || b == b' ')
        {
            return Err("bad path");
        }
        // Paths must be in normal form: a rule for `/public` must not admit
        // `/public/../admin`, whatever the upstream later makes of it.
        if self.path.contains("//")
            || self.path.contains('\\')
            || self.path.split('/').any(|seg| seg == "." || seg == "..")
            || (self.path.contains('%')
                && (contains_ci(self.path, "%2e")
                    || contains_ci(self.path, "%2f")
                    || contains_ci(self.path, "%5c")
                    || contains_ci(self.path, "%00")))
        {
            return Err("path not in normal form");
        }
        if self.method.is_empty() || self.method.len() > 32 || !self.method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err("bad method");
        }
        Ok(())
    }
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Remove a `:port` suffix from a host (IPv6 literals keep their brackets).
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.find(']') {
            Some(i) => &host[..i + 2],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

/// An owned request description: the JSON format the CLI's `decide` and the
/// conformance corpus use. Convert with [`OwnedRequest::view`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedRequest {
    /// HTTP method.
    #[serde(default = "default_method")]
    pub method: String,
    /// Full URL, e.g. `https://api.acme.test/v1/things?x=1`.
    pub url: String,
    /// Header fields as `[name, value]` pairs, or a map.
    #[serde(default)]
    pub headers: Headers,
    /// Peer address.
    pub peer: IpAddr,
    /// Country from the platform, if any.
    #[serde(default)]
    pub country: Option<String>,
}

fn default_method() -> String {
    "GET".into()
}

/// Header list accepted as a JSON list of pairs or a JSON object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Headers {
    /// `[["name", "value"], ...]` (repeats allowed).
    List(Vec<(String, String)>),
    /// `{"name": "value"}`.
    Map(std::collections::BTreeMap<String, String>),
}

impl Default for Headers {
    fn default() -> Self {
        Headers::List(Vec::new())
    }
}

impl Headers {
    /// Pairs in order.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        match self {
            Headers::List(l) => l.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect(),
            Headers::Map(m) => m.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect(),
        }
    }
}

/// The parts of a URL the engine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Host, with port if given.
    pub host: &'a str,
    /// Path (at least `/`).
    pub path: &'a str,
    /// Query without `?`.
    pub query: Option<&'a str>,
}

/// Split an absolute `http(s)://host/path?query` URL. Fragments are dropped.
pub fn split_url(url: &str) -> Option<UrlParts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let rest = rest.split('#').next().unwrap_or("");
    let (authority, path_q) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (path, query) = match path_q.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_q, None),
    };
    Some(UrlParts { scheme, host: authority, path, query })
}

impl OwnedRequest {
    /// Borrow this request as a [`RequestHead`]; `pairs` must come from `self.headers.pairs()`.
    pub fn view<'a>(&'a self, pairs: &'a [(&'a str, &'a str)]) -> Option<RequestHead<'a>> {
        let u = split_url(&self.url)?;
        Some(RequestHead {
            method: &self.method,
            scheme: u.scheme,
            host: u.host,
            path: u.path,
            query: u.query,
            headers: pairs,
            peer: self.peer,
            platform_country: self.country.as_deref(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_split() {
        let u = split_url("https://a.test:8443/x/y?q=1#frag").unwrap();
        assert_eq!(u.host, "a.test:8443");
        assert_eq!(u.path, "/x/y");
        assert_eq!(u.query, Some("q=1"));
        assert_eq!(split_url("https://a.test").unwrap().path, "/");
        assert!(split_url("ftp://a.test/").is_none());
        assert!(split_url("https://user@a.test/").is_none());
        assert!(split_url("nonsense").is_none());
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("a.test:80"), "a.test");
        assert_eq!(strip_port("a.test"), "a.test");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }

    #[test]
    fn headers_case_insensitive_and_validation() {
        let h = [("Accept", "text/html,application/xhtml+xml"), ("X-A", "1")];
        let r = RequestHead {
            method: "GET",
            scheme: "https",
            host: "a.test",
            path: "/",
            query: None,
            headers: &h,
            peer: "127.0.0.1".parse().unwrap(),
            platform_country: None,
        };
        assert!(r.accepts_html());
        assert_eq!(r.header("x-a"), Some("1"));
        assert!(r.validate().is_ok());
        let bad = RequestHead { path: "no-slash", ..r };
        assert!(bad.validate().is_err());
        let bad = RequestHead { host: "a b", ..r };
        assert!(bad.validate().is_err());
        let bad = RequestHead { method: "G\nET", ..r };
        assert!(bad.validate().is_err());
        for p in ["/public/../admin", "/a/./b", "/a//b", "/a/%2e%2e/b", "/a%2Fb", "/a\\b", "/a/..", "/x%00"] {
            let bad = RequestHead { path: p, ..r };
            assert!(bad.validate().is_err(), "{p}");
        }
    }
}
