//! The gateway's spans, when the process exports traces (`[telemetry.otlp]`;
//! [`gatehouse_telemetry::otel::active`]): one per request (`gatehouse.request`, named
//! by its method as OpenTelemetry's HTTP conventions say) with the decision, reason, org
//! and route as attributes, and children for the filter chain (`gatehouse.filter_chain`)
//! and the upstream call (`gatehouse.upstream`). The upstream gets the gateway's own span
//! as the parent in `traceparent`: a client's trace context is continued only from the
//! trusted clients, and otherwise replaced.
//!
//! With tracing off, every function here is one branch on a flag: no span is built and
//! the client's `traceparent` goes upstream unchanged. Attributes never carry the query
//! (it may hold secrets), credentials or the client's address.

use std::net::IpAddr;

use gatehouse_telemetry::otel::{self, Outgoing};
use tracing::field::Empty;
use tracing::Span;

/// Longest text kept in an attribute taken from the request (a path, a host).
const MAX_ATTRIBUTE: usize = 256;

/// Whether spans are made at all.
#[inline]
pub fn enabled() -> bool {
    otel::active().is_some()
}

/// The span name of a request: its method, or `HTTP` for a method outside RFC 9110's
/// (OpenTelemetry's HTTP conventions; a client cannot invent span names).
fn method_name(method: &str) -> &'static str {
    const KNOWN: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
    KNOWN.iter().find(|m| **m == method).copied().unwrap_or("HTTP")
}

/// At most [`MAX_ATTRIBUTE`] bytes of `text`, cut at a character boundary.
fn bounded(text: &str) -> &str {
    if text.len() <= MAX_ATTRIBUTE {
        return text;
    }
    let mut end = MAX_ATTRIBUTE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The span of one request (`None` when tracing is off): a new trace, or the client's
/// continued when `peer` is a trusted client that sent valid `traceparent`.
pub fn request_span<'h>(
    method: &str,
    authority: &str,
    path: &str,
    peer: IpAddr,
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
) -> Option<Span> {
    if !enabled() {
        return None;
    }
    let span = tracing::debug_span!(
        "gatehouse.request",
        otel.name = method_name(method),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method_name(method),
        url.path = bounded(path),
        server.address = bounded(gatehouse_core::request::strip_port(authority)),
        http.response.status_code = Empty,
        gatehouse.decision = Empty,
        gatehouse.reason = Empty,
        gatehouse.org = Empty,
        gatehouse.route = Empty,
    );
    let (traceparent, tracestate) = trace_context(headers);
    otel::adopt(&span, peer, traceparent, tracestate);
    Some(span)
}

/// The client's `traceparent` and `tracestate` values (the first of each).
fn trace_context<'h>(headers: impl IntoIterator<Item = (&'h str, &'h [u8])>) -> (Option<&'h [u8]>, Option<&'h [u8]>) {
    let (mut parent, mut state) = (None, None);
    for (name, value) in headers {
        if parent.is_none() && name.eq_ignore_ascii_case("traceparent") {
            parent = Some(value);
        } else if state.is_none() && name.eq_ignore_ascii_case("tracestate") {
            state = Some(value);
        }
    }
    (parent, state)
}

/// The filter chain's span, a child of the request's (not entered: it only times the
/// chain, so the decision is recorded on the request's span).
#[inline]
pub fn chain_span() -> Option<Span> {
    enabled().then(|| tracing::debug_span!("gatehouse.filter_chain"))
}

/// Record the decision and its reason on the current request's span.
#[inline]
pub fn decided(decision: &str, reason: &str) {
    if enabled() {
        let span = Span::current();
        span.record("gatehouse.decision", decision);
        span.record("gatehouse.reason", reason);
    }
}

/// Record who the decision was about: the org and the policy route, when known.
#[inline]
pub fn attributed(org: Option<&str>, route: Option<&str>) {
    if enabled() {
        let span = Span::current();
        if let Some(org) = org {
            span.record("gatehouse.org", bounded(org));
        }
        if let Some(route) = route {
            span.record("gatehouse.route", bounded(route));
        }
    }
}

/// Record the status the client is answered with on the current request's span.
#[inline]
pub fn responded(status: u16) {
    if enabled() {
        status_on(&Span::current(), status);
    }
}

/// Record `status` on `span` (and an error status for a 5xx).
pub fn status_on(span: &Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// The upstream call's span, a child of the current request's, and the trace context
/// that names it as the upstream's parent (`None` when tracing is off). `upstream`: the
/// route's upstream, when the caller knows it before connecting.
pub fn upstream_span(method: &str, upstream: Option<&str>) -> Option<(Span, Option<Outgoing>)> {
    if !enabled() {
        return None;
    }
    let span = tracing::debug_span!(
        "gatehouse.upstream",
        otel.name = "gatehouse.upstream",
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = method_name(method),
        server.address = Empty,
        server.port = Empty,
        http.response.status_code = Empty,
    );
    if let Some(u) = upstream {
        span.record("server.address", bounded(u.trim_start_matches("http://")));
    }
    let outgoing = otel::outgoing(&span);
    Some((span, outgoing))
}

/// The upstream answered: its address (when the caller learnt it by connecting) and the
/// status of its response head.
pub fn upstream_answered(span: &Span, peer: Option<std::net::SocketAddr>, head: &[u8]) {
    if let Some(peer) = peer {
        span.record("server.address", tracing::field::display(peer.ip()));
        span.record("server.port", peer.port());
    }
    if let Some(status) = head_status(head) {
        status_on(span, status);
    }
}

/// The upstream call failed before an answer (connect, send, timeout).
pub fn upstream_failed(span: Option<&Span>) {
    if let Some(span) = span {
        span.record("otel.status_code", "ERROR");
    }
}

/// The span of one check of the authorization service (`gatehouse.check`; `None` when
/// tracing is off), with the request span's attributes, continuing the asker's trace
/// when `peer` is a trusted client.
pub fn check_span<'h>(
    method: &str,
    authority: &str,
    path: &str,
    peer: IpAddr,
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
) -> Option<Span> {
    if !enabled() {
        return None;
    }
    let span = tracing::debug_span!(
        "gatehouse.check",
        otel.name = "gatehouse.check",
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method_name(method),
        url.path = bounded(path),
        server.address = bounded(gatehouse_core::request::strip_port(authority)),
        http.response.status_code = Empty,
        gatehouse.decision = Empty,
        gatehouse.reason = Empty,
        gatehouse.org = Empty,
        gatehouse.route = Empty,
    );
    let (traceparent, tracestate) = trace_context(headers);
    otel::adopt(&span, peer, traceparent, tracestate);
    Some(span)
}

/// Whether `name` is a trace-context field the gateway writes itself while tracing.
pub fn is_trace_field(name: &str) -> bool {
    name.eq_ignore_ascii_case("traceparent") || name.eq_ignore_ascii_case("tracestate")
}

/// Rewrite a serialised HTTP/1.1 request head (`out`, ending in the empty line): the
/// client's trace-context fields out, the gateway's (`outgoing`) in.
pub fn rewrite_head(out: &mut Vec<u8>, outgoing: Option<&Outgoing>) {
    let mut head = Vec::with_capacity(out.len() + 128);
    let body = out.strip_suffix(b"\r\n\r\n").unwrap_or(out);
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let name = line.split(|&b| b == b':').next().unwrap_or(line);
        if i > 0 && std::str::from_utf8(name).is_ok_and(is_trace_field) {
            continue;
        }
        head.extend_from_slice(line);
        head.extend_from_slice(b"\r\n");
    }
    if let Some(o) = outgoing {
        head.extend_from_slice(b"traceparent: ");
        head.extend_from_slice(o.traceparent.as_bytes());
        head.extend_from_slice(b"\r\n");
        if let Some(state) = &o.tracestate {
            head.extend_from_slice(b"tracestate: ");
            head.extend_from_slice(state.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
    }
    head.extend_from_slice(b"\r\n");
    *out = head;
}

/// The status code of a buffered HTTP/1.x response head.
pub fn head_status(head: &[u8]) -> Option<u16> {
    let code = head.get(9..12)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_names_are_known_methods() {
        assert_eq!(method_name("GET"), "GET");
        assert_eq!(method_name("PATCH"), "PATCH");
        assert_eq!(method_name("BREW"), "HTTP");
        assert_eq!(method_name("get"), "HTTP");
    }

    #[test]
    fn attributes_are_bounded() {
        let long = "é".repeat(300);
        let b = bounded(&long);
        assert!(b.len() <= MAX_ATTRIBUTE && b.chars().all(|c| c == 'é'));
        assert_eq!(bounded("/a"), "/a");
    }

    #[test]
    fn the_head_carries_only_the_gateways_trace_context() {
        let mut out =
            b"GET /x?q=1 HTTP/1.1\r\nhost: a\r\nTraceParent: 00-client\r\nx-a: 1\r\ntracestate: c=1\r\n\r\n".to_vec();
        let ours = Outgoing { traceparent: "00-ours".into(), tracestate: Some("g=2".into()) };
        rewrite_head(&mut out, Some(&ours));
        assert_eq!(
            String::from_utf8(out).expect("text"),
            "GET /x?q=1 HTTP/1.1\r\nhost: a\r\nx-a: 1\r\ntraceparent: 00-ours\r\ntracestate: g=2\r\n\r\n"
        );
        let mut out = b"GET / HTTP/1.1\r\ntraceparent: 00-client\r\n\r\n".to_vec();
        rewrite_head(&mut out, None);
        assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn trace_context_is_the_first_of_each() {
        let h: [(&str, &[u8]); 3] = [("TraceParent", b"a"), ("traceparent", b"b"), ("tracestate", b"s")];
        assert_eq!(trace_context(h), (Some(&b"a"[..]), Some(&b"s"[..])));
        assert_eq!(head_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(head_status(b"HTTP/1.1"), None);
    }

    #[test]
    fn off_means_no_span() {
        // No `[telemetry.otlp]` in this process: nothing is built, nothing is rewritten.
        assert!(!enabled());
        assert!(request_span("GET", "a", "/", "127.0.0.1".parse().expect("ip"), []).is_none());
        assert!(upstream_span("GET", Some("http://u:80")).is_none());
        assert!(check_span("GET", "a", "/", "127.0.0.1".parse().expect("ip"), []).is_none());
        assert!(chain_span().is_none());
    }
}
