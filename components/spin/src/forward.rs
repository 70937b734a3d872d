//! Pure helpers of the Spin host: the peer address, what Spin and wasi-http add to or
//! refuse on a message, configuration values and rate-limit storage keys. No I/O and no
//! Spin types, so they are unit-tested natively. None of them decides anything about a
//! request, and the HTTP contract (which headers pass, what is added) is
//! `gatehouse_core::wire`'s: this only applies it to Spin's header lists.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use gatehouse_core::wire::{self, ConnectionTokens, UpstreamRequest};

/// The header in which Spin passes the client's address (`ip:port`).
pub const CLIENT_ADDR_HEADER: &str = "spin-client-addr";

/// A header field as WASI HTTP carries it: lower-case name, raw value.
pub type Field = (String, Vec<u8>);

/// Header names in lower case (WASI hosts deliver them so already; this makes sure).
pub fn lowercase_names(mut fields: Vec<Field>) -> Vec<Field> {
    for (name, _) in &mut fields {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            name.make_ascii_lowercase();
        }
    }
    fields
}

/// Whether wasi-http refuses a header from a guest beyond the hop-by-hop ones the contract
/// already drops: `host` (the authority travels separately) and `proxy-*`.
pub fn is_platform_refused(name: &str) -> bool {
    name.eq_ignore_ascii_case("host") || name.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("proxy-"))
}

/// Whether a header is one the Spin runtime adds to the incoming request (`spin-full-url`,
/// `spin-client-addr`, `spin-path-info`, ...): runtime detail, not the client's.
pub fn is_spin_header(name: &str) -> bool {
    name.starts_with("spin-")
}

/// The client address from the `spin-client-addr` values. Spin appends its own value to
/// whatever the client sent under that name, so exactly one value is required: none (a
/// host that does not set it) or several (a client trying to spoof it) fail closed.
pub fn peer_from_client_addr<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Option<IpAddr> {
    let (Some(v), None) = (values.next(), values.next()) else {
        return None;
    };
    let v = std::str::from_utf8(v).ok()?.trim();
    v.parse::<SocketAddr>().map(|s| s.ip()).or_else(|_| v.parse::<IpAddr>()).ok()
}

/// The headers of the upstream request, by the edge's contract (`wire::UpstreamRequest`):
/// the client's that pass, the identity's, `x-forwarded-for` and `x-forwarded-host`;
/// minus what wasi-http refuses from a guest, and minus Spin's `spin-*` headers when
/// `strip_spin` (a standalone gateway; a middleware hands them to the next component).
pub fn upstream_request_headers<'a>(
    client: &[(&'a str, &'a [u8])],
    identity_prefix: &str,
    strip_spin: bool,
    identity: &[(String, String)],
    peer: IpAddr,
    host: &str,
) -> Vec<Field> {
    let connection = ConnectionTokens::of(client.iter().copied());
    let peer = peer.to_string();
    let rules =
        UpstreamRequest { identity_prefix, connection: &connection, relay_upgrade: false, host, peer: &peer, identity };
    let mut out: Vec<Field> = Vec::with_capacity(client.len() + identity.len() + 2);
    rules.headers(client.iter().copied(), |name, value| {
        let dropped = is_platform_refused(name) || (strip_spin && is_spin_header(name));
        if !dropped {
            out.push((name.to_string(), value.to_vec()));
        }
    });
    out
}

/// The headers of the response to the client, by the edge's contract
/// (`wire::response_headers`), minus what wasi-http refuses.
pub fn client_response_headers(upstream: &[Field], ours: &[(String, String)]) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::with_capacity(upstream.len() + ours.len());
    let fields = upstream.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
    wire::response_headers(fields, ours, |name, value| {
        if !is_platform_refused(name) {
            out.push((name.to_string(), value.to_vec()));
        }
    });
    out
}

/// Where allowed requests go, from the `upstream` variable: `http(s)://host[:port]`,
/// nothing after the authority but an optional `/`.
#[cfg_attr(feature = "middleware", allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `https` (else `http`).
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
}

/// Parse the `upstream` variable; `None` when it is not a bare `http(s)://authority`.
#[cfg_attr(feature = "middleware", allow(dead_code))]
pub fn parse_upstream(s: &str) -> Option<Upstream> {
    let s = s.trim();
    let (https, rest) = if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else {
        return None;
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let ok = !authority.is_empty()
        && authority.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b))
        && !authority.starts_with(':');
    ok.then(|| Upstream { https, authority: authority.to_string() })
}

/// Decode a base64 configuration value (standard alphabet, or URL-safe without padding);
/// whitespace anywhere (a value pasted over several lines) is ignored.
pub fn decode_b64(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return None;
    }
    STANDARD.decode(&compact).or_else(|_| URL_SAFE_NO_PAD.decode(compact.trim_end_matches('='))).ok()
}

/// Longest key stored as is; Spin guarantees keys of up to 256 bytes.
pub const MAX_KV_KEY: usize = 250;

/// The key-value key for a rendered rate key (`rl:...`): the key itself, or, when longer
/// than [`MAX_KV_KEY`], `rl#` and the hex SHA-256 of it (which no rendered key can equal).
pub fn kv_key(rendered: &str) -> Cow<'_, str> {
    if rendered.len() <= MAX_KV_KEY {
        return Cow::Borrowed(rendered);
    }
    let digest = Sha256::digest(rendered.as_bytes());
    let mut k = String::with_capacity(3 + 64);
    k.push_str("rl#");
    for b in digest {
        k.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        k.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    Cow::Owned(k)
}

/// A stored TAT (ASCII decimal nanoseconds); `None` when the value is not one.
pub fn parse_tat(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// How a TAT is stored.
pub fn format_tat(tat: u64) -> Vec<u8> {
    tat.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(fields: &[Field]) -> Vec<&str> {
        fields.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn value<'a>(fields: &'a [Field], name: &str) -> Option<&'a str> {
        fields.iter().find(|(n, _)| n == name).map(|(_, v)| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn peer_requires_exactly_one_value() {
        let one: [&[u8]; 1] = [b"203.0.113.9:53152"];
        assert_eq!(peer_from_client_addr(one.into_iter()), Some("203.0.113.9".parse().unwrap()));
        let v6: [&[u8]; 1] = [b"[2001:db8::1]:443"];
        assert_eq!(peer_from_client_addr(v6.into_iter()), Some("2001:db8::1".parse().unwrap()));
        let bare: [&[u8]; 1] = [b"10.0.0.1"];
        assert_eq!(peer_from_client_addr(bare.into_iter()), Some("10.0.0.1".parse().unwrap()));
        // A client-sent value next to Spin's: refused, whichever comes first.
        let two: [&[u8]; 2] = [b"1.2.3.4:1", b"203.0.113.9:53152"];
        assert_eq!(peer_from_client_addr(two.into_iter()), None);
        assert_eq!(peer_from_client_addr(std::iter::empty()), None);
        let junk: [&[u8]; 1] = [b"localhost:80"];
        assert_eq!(peer_from_client_addr(junk.into_iter()), None);
    }

    #[test]
    fn upstream_request_drops_hop_identity_and_spin_headers() {
        let client: Vec<(&str, &[u8])> = vec![
            ("host", b"api.acme.test"),
            ("accept", b"*/*"),
            ("connection", b"keep-alive, x-secret-hop"),
            ("x-secret-hop", b"1"),
            ("keep-alive", b"timeout=5"),
            ("transfer-encoding", b"chunked"),
            ("proxy-authorization", b"Basic x"),
            ("x-gatehouse-subject", b"admin"),
            ("X-Gatehouse-Org", b"other"),
            ("spin-client-addr", b"1.2.3.4:5"),
            ("spin-full-url", b"http://api.acme.test/"),
            ("x-forwarded-for", b"198.51.100.7"),
            ("x-forwarded-host", b"evil.test"),
            ("authorization", b"Bearer t"),
        ];
        let identity = vec![
            ("x-gatehouse-subject".to_string(), "u1".to_string()),
            ("x-gatehouse-org".to_string(), "acme".to_string()),
        ];
        let out = upstream_request_headers(
            &client,
            "x-gatehouse-",
            true,
            &identity,
            "203.0.113.9".parse().unwrap(),
            "api.acme.test",
        );
        assert_eq!(
            names(&out),
            [
                "accept",
                "authorization",
                "x-gatehouse-subject",
                "x-gatehouse-org",
                "x-forwarded-for",
                "x-forwarded-host"
            ]
        );
        assert_eq!(value(&out, "x-gatehouse-subject"), Some("u1"));
        assert_eq!(value(&out, "x-forwarded-for"), Some("198.51.100.7, 203.0.113.9"));
        assert_eq!(value(&out, "x-forwarded-host"), Some("api.acme.test"));

        // Middleware mode keeps Spin's headers for the next component.
        let out = upstream_request_headers(&client, "x-gatehouse-", false, &[], "::1".parse().unwrap(), "");
        assert!(names(&out).contains(&"spin-full-url"));
        assert_eq!(value(&out, "x-forwarded-for"), Some("198.51.100.7, ::1"));
        assert_eq!(value(&out, "x-forwarded-host"), None);
    }

    #[test]
    fn response_headers_replace_rate_headers_and_drop_hop_headers() {
        let upstream: Vec<Field> = vec![
            ("content-type".into(), b"text/plain".to_vec()),
            ("connection".into(), b"close, x-internal".to_vec()),
            ("x-internal".into(), b"1".to_vec()),
            ("transfer-encoding".into(), b"chunked".to_vec()),
            ("ratelimit-limit".into(), b"999".to_vec()),
            ("set-cookie".into(), b"a=1".to_vec()),
            ("set-cookie".into(), b"b=2".to_vec()),
        ];
        let ours = vec![("ratelimit-limit".to_string(), "10".to_string())];
        let out = client_response_headers(&upstream, &ours);
        assert_eq!(names(&out), ["content-type", "set-cookie", "set-cookie", "ratelimit-limit"]);
        assert_eq!(value(&out, "ratelimit-limit"), Some("10"));
    }

    #[test]
    fn header_names_are_lowered_and_platform_fields_known() {
        let f = lowercase_names(vec![("X-Api-Key".into(), b"k".to_vec()), ("accept".into(), b"*/*".to_vec())]);
        assert_eq!(names(&f), ["x-api-key", "accept"]);
        assert!(is_platform_refused("Host") && is_platform_refused("proxy-x") && !is_platform_refused("proxy"));
        assert!(is_spin_header("spin-full-url") && !is_spin_header("x-spin"));
    }

    #[test]
    fn upstream_variable() {
        assert_eq!(
            parse_upstream("http://127.0.0.1:3000"),
            Some(Upstream { https: false, authority: "127.0.0.1:3000".into() })
        );
        assert_eq!(
            parse_upstream(" https://app.internal/ "),
            Some(Upstream { https: true, authority: "app.internal".into() })
        );
        assert_eq!(parse_upstream("http://[::1]:8080").map(|u| u.authority), Some("[::1]:8080".into()));
        for bad in ["", "127.0.0.1:3000", "ftp://x", "http://", "http://a/b", "http://u@a", "http://a?x", "http://:80"]
        {
            assert_eq!(parse_upstream(bad), None, "{bad}");
        }
    }

    #[test]
    fn base64_values() {
        assert_eq!(decode_b64("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_b64("aGVs\nbG8=\n"), Some(b"hello".to_vec()));
        assert_eq!(decode_b64("aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(decode_b64("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_b64(""), None);
        assert_eq!(decode_b64("not base64!"), None);
    }

    #[test]
    fn kv_keys_are_bounded_and_distinct() {
        assert_eq!(kv_key("rl:org:4:acme:"), "rl:org:4:acme:");
        let long = format!("rl:user:4:acme:{}", "u".repeat(300));
        let k = kv_key(&long);
        assert!(k.starts_with("rl#") && k.len() == 67, "{k}");
        let other = format!("rl:user:4:acme:{}v", "u".repeat(299));
        assert_ne!(k, kv_key(&other));
        assert_eq!(kv_key(&"k".repeat(MAX_KV_KEY)).len(), MAX_KV_KEY);
    }

    #[test]
    fn tat_round_trip() {
        assert_eq!(parse_tat(&format_tat(1_700_000_000_123_456_789)), Some(1_700_000_000_123_456_789));
        assert_eq!(parse_tat(&format_tat(u64::MAX)), Some(u64::MAX));
        for bad in [&b""[..], b"-1", b"12a", b" 1", b"99999999999999999999"] {
            assert_eq!(parse_tat(bad), None, "{bad:?}");
        }
    }
}
