//! The bytes the HTTP/1.1 front end writes: status lines, fields, the gateway's own
//! answers, chunk headers and the upstream request head.

use crate::gateway::Forward;
use gatehouse_core::wire::{Reply, UpstreamRequest};
use gatehouse_http1::{Framing, RequestInfo};

pub(super) fn status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub(super) fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn canonical_reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("")
}

/// The bytes of one of the gateway's own answers.
pub(super) fn reply_bytes(out: &mut Vec<u8>, r: &Reply, close: bool, head_only: bool) {
    status_line(out, r.status, canonical_reason(r.status));
    for (k, v) in &r.headers {
        field(out, k.as_bytes(), v.as_bytes());
    }
    field(out, b"content-length", itoa::Buffer::new().format(r.body.len()).as_bytes());
    crate::date::with_now(|d| field(out, b"date", d.as_bytes()));
    if close {
        field(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&r.body);
    }
}

pub(super) fn chunk_header(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
}

/// Whether a field is framing that is not passed on (`Content-Length`; `Transfer-Encoding`
/// is hop-by-hop): the gateway frames what it sends.
pub(super) fn is_framing(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length")
}

/// The upstream request head for `info` into `out`, by the edge's contract
/// (`wire::UpstreamRequest`: `Host` as decided, the client's fields that go on, the
/// identity's, `X-Forwarded-For` ending in `peer`, `X-Forwarded-Host`), then the gateway's
/// own framing.
pub(super) fn request_head(
    out: &mut Vec<u8>,
    info: &RequestInfo<'_>,
    fields: &[httparse::Header<'_>],
    f: &Forward,
    peer: &str,
) {
    out.clear();
    out.extend_from_slice(info.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(info.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let rules = UpstreamRequest {
        identity_prefix: f.bundle.engine.identity_header_prefix(),
        connection: &info.connection,
        relay_upgrade: info.upgrade,
        host: info.authority,
        peer,
        identity: &f.identity_headers,
    };
    rules.headers(fields.iter().map(|h| (h.name, h.value)), |name, value| {
        if !is_framing(name) {
            field(out, name.as_bytes(), value);
        }
    });
    match info.body {
        Framing::Length(n) => field(out, b"content-length", itoa::Buffer::new().format(n).as_bytes()),
        Framing::Chunked => field(out, b"transfer-encoding", b"chunked"),
        Framing::None | Framing::Close => {}
    }
    out.extend_from_slice(b"\r\n");
}
