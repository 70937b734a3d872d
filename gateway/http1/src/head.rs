//! Request-head analysis and message framing (RFC 9112), refusing what request smuggling
//! relies on.

use gatehouse_core::wire::ConnectionTokens;

/// Largest request or response head.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a head.
pub const MAX_HEADERS: usize = 100;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// Why a request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP/1.x, a bad field, a bad target, conflicting framing: 400.
    Malformed,
    /// Larger than [`MAX_HEAD`] or more than [`MAX_HEADERS`] fields: 431.
    TooLarge,
}

/// What the gateway needs to know about a request head.
#[derive(Debug)]
pub struct RequestInfo<'h> {
    /// Method.
    pub method: &'h str,
    /// HTTP/1.0 (0) or HTTP/1.1 (1).
    pub version: u8,
    /// The target as sent (origin-form, or the path of an absolute-form target).
    pub target: &'h str,
    /// Path part of the target.
    pub path: &'h str,
    /// Query part, without `?`.
    pub query: Option<&'h str>,
    /// The addressed host: the absolute-form target's authority, else `Host`.
    pub authority: &'h str,
    /// Body framing.
    pub body: Framing,
    /// Whether the client keeps the connection open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// An upgrade (`Connection: upgrade` and `Upgrade`) is asked for.
    pub upgrade: bool,
    /// The header names the `Connection` fields list (hop-by-hop for this message).
    pub connection: ConnectionTokens<'h>,
}

/// A `Content-Length` value: digits only.
fn content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Whether `a` is a host with an optional port: an authority without userinfo whose
/// port, if any, is a number of at most 65535.
fn valid_authority(a: &str) -> bool {
    if a.is_empty() || a.contains('@') || a.parse::<http::uri::Authority>().is_err() {
        return false;
    }
    // The port follows the last `:` after an IPv6 literal's `]`.
    let after_host = a.rsplit_once(']').map_or(a, |(_, rest)| rest);
    match after_host.rsplit_once(':') {
        Some((_, "")) | None => true,
        Some((_, port)) => port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok(),
    }
}

/// Framing from `Transfer-Encoding` / `Content-Length` fields, shared by requests and
/// responses. `Ok(None)`: neither present.
pub fn body_framing(headers: &[httparse::Header<'_>]) -> Result<Option<Framing>, HeadError> {
    let mut length: Option<u64> = None;
    let mut codings = 0usize;
    let mut chunked_last = false;
    let mut te = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value).ok_or(HeadError::Malformed)?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
            for c in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|c| !c.is_empty()) {
                codings += 1;
                chunked_last = c.eq_ignore_ascii_case(b"chunked");
            }
        }
    }
    if te {
        // Only `chunked`, once, as the last (only) coding; never together with a length.
        if length.is_some() || codings != 1 || !chunked_last {
            return Err(HeadError::Malformed);
        }
        return Ok(Some(Framing::Chunked));
    }
    Ok(length.map(|n| if n == 0 { Framing::None } else { Framing::Length(n) }))
}

/// Check a parsed request head and read what the gateway needs from it.
pub fn analyse<'h>(req: &httparse::Request<'h, '_>) -> Result<RequestInfo<'h>, HeadError> {
    let method = req.method.ok_or(HeadError::Malformed)?;
    let version = req.version.ok_or(HeadError::Malformed)?;
    let target = req.path.ok_or(HeadError::Malformed)?;
    if method == "CONNECT" {
        return Err(HeadError::Malformed); // no tunnels
    }
    let mut host: Option<&'h str> = None;
    let mut connection = ConnectionTokens::default();
    let mut upgrade_field = false;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Err(HeadError::Malformed);
            }
            let value = std::str::from_utf8(h.value).map_err(|_| HeadError::Malformed)?.trim();
            // RFC 9112 §3.2: a Host that is not `uri-host [":" port]` is a 400 (no userinfo,
            // nothing an authority cannot hold); empty is allowed.
            if !value.is_empty() && !valid_authority(value) {
                return Err(HeadError::Malformed);
            }
            host = Some(value);
        } else if name.eq_ignore_ascii_case("connection") {
            connection.add(h.value);
        } else if name.eq_ignore_ascii_case("upgrade") {
            // Only a WebSocket upgrade is relayed; any other goes on as a plain request.
            upgrade_field |= gatehouse_core::wire::is_relayable_upgrade(h.value);
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    let body = match body_framing(req.headers)? {
        Some(Framing::Chunked) if version == 0 => return Err(HeadError::Malformed),
        Some(f) => f,
        None => Framing::None,
    };
    // The target: origin-form, absolute-form (its authority is the host), or `*`.
    let (authority, path_and_query) = if target.starts_with('/') || (target == "*" && method == "OPTIONS") {
        match host {
            Some(h) => (h, target),
            // HTTP/1.1 requires `Host` (RFC 9112 §3.2); an HTTP/1.0 client may leave it out.
            None if version == 0 => ("", target),
            None => return Err(HeadError::Malformed),
        }
    } else {
        let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return Err(HeadError::Malformed);
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, pq) = rest.split_at(end);
        if !valid_authority(authority) {
            return Err(HeadError::Malformed);
        }
        (authority, if pq.is_empty() { "/" } else { pq })
    };
    if path_and_query.starts_with('?') {
        return Err(HeadError::Malformed);
    }
    if path_and_query != "*" {
        // The same check hyper applies to a target (visible ASCII, no spaces).
        path_and_query.parse::<http::uri::PathAndQuery>().map_err(|_| HeadError::Malformed)?;
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    // Bounds the work of checking every field against the tokens.
    if connection.count() > gatehouse_core::wire::MAX_CONNECTION_TOKENS {
        return Err(HeadError::Malformed);
    }
    let keep_alive = if version == 1 { !connection.contains("close") } else { connection.contains("keep-alive") };
    let upgrade = version == 1 && upgrade_field && connection.contains("upgrade");
    Ok(RequestInfo {
        method,
        version,
        target: path_and_query,
        path,
        query,
        authority,
        body,
        keep_alive,
        expect_continue,
        upgrade,
        connection,
    })
}

/// Where a complete request head ends in `data` (`Ok(None)`: not complete yet). Refused as
/// too large when [`MAX_HEAD`] bytes hold no complete head or it has more than
/// [`MAX_HEADERS`] fields, as malformed when `data` cannot start a request head.
pub fn find_request_head(data: &[u8]) -> Result<Option<usize>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(data) {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if data.len() >= MAX_HEAD => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(_) => Err(HeadError::Malformed),
    }
}

/// Where a complete response head ends in `data`, if it is there; malformed when `data`
/// is not the start of a response head (or one longer than [`MAX_HEAD`]).
pub fn find_response_head(data: &[u8]) -> Result<Option<usize>, HeadError> {
    if data.is_empty() {
        return Ok(None);
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    match resp.parse(data) {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if data.len() < MAX_HEAD => Ok(None),
        _ => Err(HeadError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<(Framing, bool, String, Option<String>, String), HeadError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut fields);
        match req.parse(raw.as_bytes()) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(HeadError::Malformed),
        }
        let i = analyse(&req)?;
        Ok((i.body, i.keep_alive, i.path.to_string(), i.query.map(str::to_string), i.authority.to_string()))
    }

    #[test]
    fn request_heads() {
        let (f, keep, path, query, host) = parse("GET /a/b?x=1 HTTP/1.1\r\nHost: acme.test\r\n\r\n").unwrap();
        assert_eq!(
            (f, keep, path.as_str(), query.as_deref(), host.as_str()),
            (Framing::None, true, "/a/b", Some("x=1"), "acme.test")
        );
        let (f, keep, ..) =
            parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!((f, keep), (Framing::Length(5), false));
        let (f, ..) = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(f, Framing::Chunked);
        // HTTP/1.0: close unless asked to keep alive; Host optional.
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().1);
        assert!(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().1);
        // Absolute-form: the target's authority is the host.
        let (_, _, path, _, host) = parse("GET http://acme.test:8080/x?y HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
        assert_eq!((path.as_str(), host.as_str()), ("/x", "acme.test:8080"));
        // Identical repeated lengths are one length.
        assert_eq!(
            parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n").unwrap().0,
            Framing::Length(3)
        );
    }

    /// Request smuggling and other framing attacks: each refused.
    #[test]
    fn framing_attacks_are_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET ?x HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
        ] {
            assert!(parse(raw).is_err(), "accepted: {raw:?}");
        }
    }

    /// Found by fuzzing (fuzz/fuzz_targets/http1_head.rs): the `Host` of an origin-form
    /// request was taken as sent, userinfo and all (`Host: acme.test:8@43`); a Host that
    /// is not a host and port is refused (RFC 9112 §3.2), also beside an absolute target.
    #[test]
    fn invalid_host_fields_are_refused() {
        for raw in [
            "GET / HTTP/1.1\r\nHost: acme.test:8@43\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: user@acme.test\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: acme test\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: acme.test/x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: acme.test:port\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: acme.test:99999\r\n\r\n",
            "GET http://acme.test:x/ HTTP/1.1\r\nHost: acme.test\r\n\r\n",
            "GET http://acme.test/ HTTP/1.1\r\nHost: a@b\r\n\r\n",
        ] {
            assert_eq!(parse(raw).map(|_| ()), Err(HeadError::Malformed), "accepted: {raw:?}");
        }
        for (raw, host) in [
            ("GET / HTTP/1.1\r\nHost: acme.test:8443\r\n\r\n", "acme.test:8443"),
            ("GET / HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n", "[2001:db8::1]:443"),
            ("GET / HTTP/1.1\r\nHost:  a_b.test \r\n\r\n", "a_b.test"),
            ("GET / HTTP/1.1\r\nHost:\r\n\r\n", ""),
        ] {
            assert_eq!(parse(raw).unwrap().4, host, "{raw:?}");
        }
    }

    #[test]
    fn request_head_boundaries() {
        assert_eq!(find_request_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest"), Ok(Some(27)));
        assert_eq!(find_request_head(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(find_request_head(b""), Ok(None));
        assert_eq!(find_request_head(b"GET /\x01 HTTP/1.1\r\n\r\n"), Err(HeadError::Malformed));
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert_eq!(find_request_head(&long), Err(HeadError::TooLarge));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(find_request_head(many.as_bytes()), Err(HeadError::TooLarge));
    }

    #[test]
    fn response_heads() {
        assert_eq!(find_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), Ok(Some(38)));
        assert_eq!(find_response_head(b"HTTP/1.1 200 OK\r\nContent-"), Ok(None));
        assert!(find_response_head(b"HTTP/1.1 2x0 OK\r\n\r\n").is_err());
        let mut fields = [httparse::EMPTY_HEADER; 4];
        let mut r = httparse::Response::new(&mut fields);
        r.parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(body_framing(r.headers), Err(HeadError::Malformed));
    }
}
