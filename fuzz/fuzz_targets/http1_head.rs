//! Fuzz the HTTP/1.1 front end's head handling (`gatehouse-http1`): finding a request
//! head in the buffered bytes, analysing it (framing, target, host, connection options),
//! and the upstream head the gateway writes from it; also response heads.
//!
//! Invariants (a panic here is a finding):
//! - no input panics;
//! - a head is found the same however it arrives: every shorter prefix of a complete
//!   head is "not yet complete", never refused, and the found length is the one the
//!   connection task's own parse gives;
//! - an accepted request's framing is what RFC 9112 says of its fields (a final,
//!   only `chunked`, never with `Content-Length`; equal lengths; none from HTTP/1.0), it
//!   has at most one `Host`, its target is origin-form (or `*` for `OPTIONS`) with `path`
//!   and `query` splitting it, and an upgrade is a WebSocket one on HTTP/1.1;
//! - the upstream head the gateway writes (`wire::UpstreamRequest` and its own framing)
//!   is one complete head that reads back to the same method, target, host and framing,
//!   with no hop-by-hop or client identity fields, and `X-Forwarded-For` ending in the
//!   peer: what the upstream reads is what the gateway read;
//! - a response head found is the length `httparse` reads, and its framing follows the
//!   same rules.
#![no_main]

use gatehouse_core::wire::UpstreamRequest;
use gatehouse_http1::{
    analyse, body_framing, find_request_head, find_response_head, Framing, HeadError, RequestInfo, MAX_HEAD,
    MAX_HEADERS,
};
use libfuzzer_sys::fuzz_target;

const PEER: &str = "203.0.113.9";

/// RFC 9112 §6 framing of a field list, independently of `body_framing`: `Err` for what
/// the gateway refuses.
fn expected_framing(fields: &[httparse::Header<'_>]) -> Result<Option<Framing>, ()> {
    let te: Vec<&[u8]> =
        fields.iter().filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding")).map(|h| h.value).collect();
    let cl: Vec<&[u8]> =
        fields.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length")).map(|h| h.value).collect();
    if !te.is_empty() {
        let codings: Vec<&[u8]> =
            te.iter().flat_map(|v| v.split(|&b| b == b',')).map(<[u8]>::trim_ascii).filter(|c| !c.is_empty()).collect();
        return match (cl.is_empty(), codings.as_slice()) {
            (true, [only]) if only.eq_ignore_ascii_case(b"chunked") => Ok(Some(Framing::Chunked)),
            _ => Err(()),
        };
    }
    let mut length = None;
    for v in cl {
        if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let n: u64 = std::str::from_utf8(v).map_err(|_| ())?.parse().map_err(|_| ())?;
        if length.is_some_and(|l| l != n) {
            return Err(());
        }
        length = Some(n);
    }
    Ok(length.map(|n| if n == 0 { Framing::None } else { Framing::Length(n) }))
}

fn check_request(info: &RequestInfo<'_>, fields: &[httparse::Header<'_>]) {
    assert_ne!(info.method, "CONNECT");
    assert!(info.version <= 1);
    let framing = expected_framing(fields).expect("a head the gateway accepts has valid framing");
    assert_eq!(info.body, framing.unwrap_or(Framing::None), "framing differs from RFC 9112's");
    if info.version == 0 {
        assert_ne!(info.body, Framing::Chunked, "chunked from an HTTP/1.0 client");
    }
    let hosts: Vec<&[u8]> = fields.iter().filter(|h| h.name.eq_ignore_ascii_case("host")).map(|h| h.value).collect();
    assert!(hosts.len() <= 1, "{} Host fields accepted", hosts.len());
    assert!(info.target == "*" || info.target.starts_with('/'), "target {:?}", info.target);
    if info.target == "*" {
        assert_eq!(info.method, "OPTIONS");
    }
    match info.query {
        Some(q) => assert_eq!(format!("{}?{q}", info.path), info.target),
        None => assert_eq!(info.path, info.target),
    }
    assert!(!info.path.contains('?'));
    assert!(!info.authority.contains('@'), "authority with userinfo: {:?}", info.authority);
    if info.version == 1 {
        assert!(!info.authority.is_empty() || hosts.len() == 1, "HTTP/1.1 request without a Host");
    }
    if let Some((_, port)) = info.authority.rsplit_once(']').map_or(info.authority, |(_, r)| r).rsplit_once(':') {
        assert!(port.is_empty() || port.parse::<u16>().is_ok(), "port {port:?} accepted");
    }
    if info.upgrade {
        assert_eq!(info.version, 1);
        assert!(info.connection.contains("upgrade"));
        assert!(
            fields
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("upgrade")
                    && h.value.trim_ascii().eq_ignore_ascii_case(b"websocket"))
        );
    }
    assert!(info.connection.count() <= gatehouse_core::wire::MAX_CONNECTION_TOKENS);
}

/// The upstream head, as `gatehouse-proxy`'s `http1::write::request_head` writes it.
fn upstream_head(info: &RequestInfo<'_>, fields: &[httparse::Header<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(info.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(info.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut field = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    let rules = UpstreamRequest {
        identity_prefix: "x-gatehouse-",
        connection: &info.connection,
        relay_upgrade: info.upgrade,
        host: info.authority,
        peer: PEER,
        identity: &[],
    };
    rules.headers(fields.iter().map(|h| (h.name, h.value)), |name, value| {
        if !name.eq_ignore_ascii_case("content-length") {
            field(name.as_bytes(), value);
        }
    });
    match info.body {
        Framing::Length(n) => field(b"content-length", n.to_string().as_bytes()),
        Framing::Chunked => field(b"transfer-encoding", b"chunked"),
        Framing::None | Framing::Close => {}
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn check_upstream(info: &RequestInfo<'_>, fields: &[httparse::Header<'_>]) {
    if info.authority.is_empty() {
        return; // an HTTP/1.0 request without a host: nothing to compare the host with
    }
    let up = upstream_head(info, fields);
    // The gateway adds up to five fields (`Host`, `X-Forwarded-*`, framing, `Connection`).
    let mut upf = [httparse::EMPTY_HEADER; MAX_HEADERS + 8];
    let mut parsed = httparse::Request::new(&mut upf);
    assert_eq!(
        parsed.parse(&up),
        Ok(httparse::Status::Complete(up.len())),
        "the upstream head is not one complete head"
    );
    let got = analyse(&parsed).unwrap_or_else(|e| panic!("the upstream refuses the head the gateway wrote: {e:?}"));
    assert_eq!(
        (got.method, got.target, got.authority, got.body, got.upgrade),
        (info.method, info.target, info.authority, info.body, info.upgrade),
        "the upstream reads another request"
    );
    assert!(got.keep_alive, "the upstream head closes the connection");
    for h in parsed.headers.iter() {
        let n = h.name.to_ascii_lowercase();
        assert!(!n.starts_with("x-gatehouse-"), "a client identity field reached the upstream: {n}");
        let gateways = ["host", "x-forwarded-for", "x-forwarded-host", "content-length"].contains(&n.as_str())
            || (n == "transfer-encoding" && info.body == Framing::Chunked)
            || (info.upgrade && (n == "upgrade" || n == "connection"));
        if !gateways {
            assert!(!gatehouse_core::wire::is_hop_by_hop(&n), "hop-by-hop field {n} reached the upstream");
            assert!(!info.connection.names(&n), "a field the client's Connection names reached the upstream: {n}");
        }
    }
    let xff: Vec<&[u8]> =
        parsed.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for")).map(|h| h.value).collect();
    assert_eq!(xff.len(), 1, "X-Forwarded-For written {} times", xff.len());
    assert!(xff[0].ends_with(PEER.as_bytes()), "X-Forwarded-For does not end in the peer");
}

fn request(data: &[u8]) {
    let found = find_request_head(data);
    match found {
        Ok(None) => assert!(data.len() < MAX_HEAD, "{} bytes without a head, still waiting", data.len()),
        Err(HeadError::TooLarge) | Err(HeadError::Malformed) => {}
        Ok(Some(n)) => {
            assert!(n <= data.len());
            // Arriving in pieces changes nothing.
            for cut in [n - 1, n / 2, 1] {
                if cut < n {
                    assert_eq!(find_request_head(&data[..cut]), Ok(None), "a prefix of {cut} of a {n}-byte head");
                }
            }
            let head = &data[..n];
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut fields);
            assert_eq!(req.parse(head), Ok(httparse::Status::Complete(n)), "the head reads to another length");
            if let Ok(info) = analyse(&req) {
                check_request(&info, req.headers);
                check_upstream(&info, req.headers);
            }
        }
    }
}

fn response(data: &[u8]) {
    if let Ok(Some(n)) = find_response_head(data) {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut fields);
        assert_eq!(resp.parse(data), Ok(httparse::Status::Complete(n)));
        let framing = body_framing(resp.headers);
        assert_eq!(framing.ok(), expected_framing(resp.headers).ok(), "response framing differs from RFC 9112's");
    }
}

fuzz_target!(|data: &[u8]| {
    request(data);
    response(data);
});
