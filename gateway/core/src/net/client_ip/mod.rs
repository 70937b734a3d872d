//! Which address is the client? The peer, unless the peer is a trusted proxy, in which case
//! the configured forwarding header is read right to left and the first address that is not
//! a trusted proxy is the client ("right-most untrusted hop").
//!
//! Forwarding headers from untrusted peers are ignored entirely: a client cannot choose its
//! own address by sending `X-Forwarded-For`.

use std::net::IpAddr;

use super::cidr::{normalize_ip, IpMatcher};
use crate::reason::ReasonCode;
use crate::request::RequestHead;

pub mod config;

pub use config::{ClientIpConfig, ClientIpSource};

/// Compiled client-IP resolver.
#[derive(Debug, Clone)]
pub struct ClientIpResolver {
    source: ClientIpSource,
    trusted: IpMatcher,
    max_hops: usize,
}

impl ClientIpResolver {
    /// Compile a config.
    pub fn new(cfg: &ClientIpConfig) -> Self {
        ClientIpResolver {
            source: cfg.source.clone(),
            trusted: IpMatcher::set(&cfg.trusted_proxies),
            max_hops: cfg.max_hops,
        }
    }

    /// Where the client address comes from.
    pub fn source(&self) -> &ClientIpSource {
        &self.source
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.contains(ip)
    }

    /// The client address of `req`, normalised (IPv4-mapped IPv6 becomes IPv4).
    pub fn resolve(&self, req: &RequestHead<'_>) -> Result<IpAddr, ReasonCode> {
        let peer = normalize_ip(req.peer);
        if self.source == ClientIpSource::Peer || !self.trusted.contains(peer) {
            return Ok(peer);
        }
        match &self.source {
            ClientIpSource::Peer => Ok(peer),
            ClientIpSource::Header(name) => {
                let mut values = req.header_values(name);
                match (values.next(), values.next()) {
                    (None, _) => Ok(peer),
                    (Some(v), None) => parse_hop(v.trim()).map(normalize_ip).ok_or(ReasonCode::ClientIpMalformed),
                    (Some(_), Some(_)) => Err(ReasonCode::ClientIpMalformed),
                }
            }
            ClientIpSource::XForwardedFor => {
                let mut hops: Vec<Option<IpAddr>> = Vec::new();
                for v in req.header_values("x-forwarded-for") {
                    for part in v.split(',') {
                        if hops.len() == self.max_hops {
                            return Err(ReasonCode::ClientIpTooManyHops);
                        }
                        let ip = parse_hop(part.trim()).ok_or(ReasonCode::ClientIpMalformed)?;
                        hops.push(Some(ip));
                    }
                }
                self.pick(peer, &hops)
            }
            ClientIpSource::Forwarded => {
                let mut hops: Vec<Option<IpAddr>> = Vec::new();
                for v in req.header_values("forwarded") {
                    // An unclosed quote would swallow the hops appended after it: a client
                    // sending `for=1.2.3.4;x="` would hide the proxy's own `for=` inside
                    // its parameter, and choose its address.
                    for element in split_quoted(v, b',').ok_or(ReasonCode::ClientIpMalformed)? {
                        if hops.len() == self.max_hops {
                            return Err(ReasonCode::ClientIpTooManyHops);
                        }
                        hops.push(parse_forwarded_element(element)?);
                    }
                }
                self.pick(peer, &hops)
            }
        }
    }

    /// Walk hops right to left, skipping trusted proxies. `None` hops are `unknown` or
    /// obfuscated identifiers: if one is where the client should be, fail closed.
    fn pick(&self, peer: IpAddr, hops: &[Option<IpAddr>]) -> Result<IpAddr, ReasonCode> {
        if hops.is_empty() {
            return Ok(peer);
        }
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) => {
                    let ip = normalize_ip(*ip);
                    if !self.trusted.contains(ip) {
                        return Ok(ip);
                    }
                }
                None => return Err(ReasonCode::ClientIpMalformed),
            }
        }
        // Every hop is a trusted proxy: the left-most is the best we know.
        hops[0].map(normalize_ip).ok_or(ReasonCode::ClientIpMalformed)
    }
}

/// Parse one hop: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !(after.is_empty() || valid_port(after.strip_prefix(':')?)) {
            return None;
        }
        return inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let (a, port) = s.rsplit_once(':')?;
    if !valid_port(port) {
        return None;
    }
    a.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

/// Split on `sep` outside double quotes; `None` when a quote is left open (or the text
/// ends in an escape).
fn split_quoted(s: &str, sep: u8) -> Option<impl Iterator<Item = &str>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_q = false;
    let mut esc = false;
    for (i, b) in s.bytes().enumerate() {
        if esc {
            esc = false;
            continue;
        }
        match b {
            b'\\' if in_q => esc = true,
            b'"' => in_q = !in_q,
            _ if b == sep && !in_q => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_q || esc {
        return None;
    }
    parts.push(&s[start..]);
    Some(parts.into_iter())
}

/// One `Forwarded` element: returns the `for=` address (`None` for `unknown` or an
/// obfuscated identifier). An element without `for=`, or a malformed one, is refused.
fn parse_forwarded_element(element: &str) -> Result<Option<IpAddr>, ReasonCode> {
    let mut found: Option<Option<IpAddr>> = None;
    for pair in split_quoted(element, b';').ok_or(ReasonCode::ClientIpMalformed)? {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').ok_or(ReasonCode::ClientIpMalformed)?;
        if !k.trim().eq_ignore_ascii_case("for") {
            continue;
        }
        if found.is_some() {
            return Err(ReasonCode::ClientIpMalformed); // two for= in one element
        }
        let v = v.trim();
        let v = match v.strip_prefix('"') {
            Some(q) => q.strip_suffix('"').ok_or(ReasonCode::ClientIpMalformed)?,
            None => v,
        };
        if v.eq_ignore_ascii_case("unknown") || v.starts_with('_') {
            found = Some(None);
        } else {
            found = Some(Some(parse_hop(v).ok_or(ReasonCode::ClientIpMalformed)?));
        }
    }
    found.ok_or(ReasonCode::ClientIpMalformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(peer: &str, headers: &'a [(&'a str, &'a str)]) -> RequestHead<'a> {
        RequestHead {
            method: "GET",
            scheme: "https",
            host: "a.test",
            path: "/",
            query: None,
            headers,
            peer: peer.parse().unwrap(),
            platform_country: None,
        }
    }

    fn resolver(source: ClientIpSource) -> ClientIpResolver {
        ClientIpResolver::new(&ClientIpConfig {
            source,
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
            max_hops: 4,
        })
    }

    fn ok(r: &ClientIpResolver, peer: &str, h: &[(&str, &str)]) -> String {
        r.resolve(&req(peer, h)).unwrap().to_string()
    }

    #[test]
    fn xff_spoofing_cases() {
        let r = resolver(ClientIpSource::XForwardedFor);
        // Untrusted peer: header ignored entirely.
        assert_eq!(ok(&r, "203.0.113.9", &[("X-Forwarded-For", "10.1.1.1")]), "203.0.113.9");
        // Trusted peer: right-most untrusted hop.
        assert_eq!(ok(&r, "10.0.0.2", &[("x-forwarded-for", "1.1.1.1, 198.51.100.7")]), "198.51.100.7");
        // Client prepends a fake address: still the right-most untrusted one.
        assert_eq!(ok(&r, "10.0.0.2", &[("x-forwarded-for", "10.9.9.9, 198.51.100.7, 10.0.0.3")]), "198.51.100.7");
        // Multiple header fields are one list, in order.
        assert_eq!(
            ok(&r, "10.0.0.2", &[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "198.51.100.8")]),
            "198.51.100.8"
        );
        // All trusted: left-most.
        assert_eq!(ok(&r, "10.0.0.2", &[("x-forwarded-for", "10.0.0.5, 10.0.0.6")]), "10.0.0.5");
        // Ports and brackets.
        assert_eq!(ok(&r, "10.0.0.2", &[("x-forwarded-for", "198.51.100.7:4711")]), "198.51.100.7");
        assert_eq!(ok(&r, "10.0.0.2", &[("x-forwarded-for", "[2001:db8::1]:443")]), "2001:db8::1");
        // IPv4-mapped peer and hop normalised.
        assert_eq!(ok(&r, "::ffff:10.0.0.2", &[("x-forwarded-for", "::ffff:198.51.100.7")]), "198.51.100.7");
        // No header from a trusted peer: the peer.
        assert_eq!(ok(&r, "10.0.0.2", &[]), "10.0.0.2");
    }

    #[test]
    fn xff_malformed_is_refused() {
        let r = resolver(ClientIpSource::XForwardedFor);
        for bad in [
            "",
            "1.1.1.1,,2.2.2.2",
            "nope",
            "1.1.1.1;2.2.2.2",
            "999.1.1.1",
            "1.1.1.1:99999",
            "[::1",
            "::1]:80",
            "1.1.1.1 2.2.2.2",
        ] {
            assert_eq!(
                r.resolve(&req("10.0.0.2", &[("x-forwarded-for", bad)])),
                Err(ReasonCode::ClientIpMalformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            r.resolve(&req("10.0.0.2", &[("x-forwarded-for", "1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,1.1.1.5")])),
            Err(ReasonCode::ClientIpTooManyHops)
        );
        let long = "1.1.1.1,".repeat(5000);
        assert_eq!(r.resolve(&req("10.0.0.2", &[("x-forwarded-for", &long)])), Err(ReasonCode::ClientIpTooManyHops));
    }

    #[test]
    fn forwarded_header() {
        let r = resolver(ClientIpSource::Forwarded);
        assert_eq!(ok(&r, "10.0.0.2", &[("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43")]), "192.0.2.60");
        assert_eq!(ok(&r, "10.0.0.2", &[("forwarded", "for=\"[2001:db8:cafe::17]:4711\"")]), "2001:db8:cafe::17");
        assert_eq!(
            ok(&r, "10.0.0.2", &[("forwarded", "for=192.0.2.43, for=198.51.100.17;by=10.0.0.1")]),
            "198.51.100.17"
        );
        assert_eq!(ok(&r, "203.0.113.1", &[("forwarded", "for=10.0.0.1")]), "203.0.113.1");
        for bad in ["for=unknown", "for=_hidden", "proto=https", "for=1.1.1.1;for=2.2.2.2", "for=\"1.1.1.1", "garbage"]
        {
            assert_eq!(r.resolve(&req("10.0.0.2", &[("forwarded", bad)])), Err(ReasonCode::ClientIpMalformed), "{bad}");
        }
        // A trusted hop that is unknown is skipped only if trusted: unknown is never trusted.
        assert_eq!(ok(&r, "10.0.0.2", &[("forwarded", "for=unknown, for=198.51.100.1")]), "198.51.100.1");
    }

    /// Found by fuzzing (fuzz/fuzz_targets/client_ip.rs): an unclosed quote in the client's
    /// part of `Forwarded` (or an escaped quote outside quotes, which opens one) swallowed
    /// the hop the trusted proxy appended after it, so the client chose its address.
    #[test]
    fn forwarded_unclosed_quote_cannot_hide_the_proxy_hop() {
        let r = resolver(ClientIpSource::Forwarded);
        for spoof in [
            r#"for=203.0.113.66;x=", for=198.51.100.7"#,
            r#"for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https\"0.0.0.1, for=198.51.100.7"#,
            r#"for="1.1.1.1\", for=198.51.100.7"#,
            r#"for=203.0.113.66;x="a\"#,
        ] {
            assert_eq!(
                r.resolve(&req("10.0.0.2", &[("forwarded", spoof)])),
                Err(ReasonCode::ClientIpMalformed),
                "{spoof}"
            );
        }
        // In a field of its own the unclosed quote refuses the request too (fail closed).
        let fields = [("forwarded", r#"for=203.0.113.66;x=""#), ("forwarded", "for=198.51.100.7")];
        assert_eq!(r.resolve(&req("10.0.0.2", &fields)), Err(ReasonCode::ClientIpMalformed));
        // Closed quotes and escapes inside them are fine.
        assert_eq!(ok(&r, "10.0.0.2", &[("forwarded", r#"for=198.51.100.7;x="a\"b,c""#)]), "198.51.100.7");
    }

    #[test]
    fn platform_header() {
        let r = resolver(ClientIpSource::Header("CF-Connecting-IP".into()));
        assert_eq!(ok(&r, "10.0.0.2", &[("cf-connecting-ip", "2001:db8::9")]), "2001:db8::9");
        assert_eq!(ok(&r, "198.51.100.1", &[("cf-connecting-ip", "1.2.3.4")]), "198.51.100.1");
        assert_eq!(
            r.resolve(&req("10.0.0.2", &[("cf-connecting-ip", "1.2.3.4"), ("cf-connecting-ip", "5.6.7.8")])),
            Err(ReasonCode::ClientIpMalformed)
        );
        assert_eq!(
            r.resolve(&req("10.0.0.2", &[("cf-connecting-ip", "1.2.3.4, 5.6.7.8")])),
            Err(ReasonCode::ClientIpMalformed)
        );
        // Peer source ignores every header even from a trusted peer.
        let p = resolver(ClientIpSource::Peer);
        assert_eq!(ok(&p, "10.0.0.2", &[("x-forwarded-for", "1.2.3.4")]), "10.0.0.2");
    }
}
