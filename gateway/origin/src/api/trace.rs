//! The origin's span per request, when the process exports traces (`[telemetry.otlp]`):
//! `gatehouse.request`, named `{method} {route}` by its route template (so tenant slugs
//! and ids do not make span names), with the status and the tenant. A caller's W3C
//! trace context is continued only from the configured trusted clients (a gateway, a
//! proxy); anyone else's request starts a new trace. The storage and identity-provider
//! spans (`gatehouse.storage`, `gatehouse.idp`) are its children.
//!
//! Tracing off: one branch on a flag, no span.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use gatehouse_telemetry::otel;
use tracing::field::Empty;
use tracing::Instrument;

/// Longest path kept as `url.path`.
const MAX_PATH: usize = 256;

/// Middleware (`axum::middleware::from_fn`) running the request in its span.
pub async fn request_span(req: Request, next: Next) -> Response {
    if otel::active().is_none() {
        return next.run(req).await;
    }
    let method = req.method().as_str().to_string();
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let path = req.uri().path();
    let path = &path[..floor_boundary(path, MAX_PATH)];
    let name = match &route {
        Some(r) => format!("{method} {r}"),
        None => method.clone(),
    };
    let span = tracing::debug_span!(
        "gatehouse.request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = route.as_deref().unwrap_or(""),
        url.path = path,
        http.response.status_code = Empty,
        gatehouse.org = Empty,
    );
    if let Some(org) = route.as_deref().and_then(|r| tenant_of(r, req.uri().path())) {
        span.record("gatehouse.org", org);
    }
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        let h = |n: &str| req.headers().get(n).map(|v| v.as_bytes());
        otel::adopt(&span, peer.ip(), h("traceparent"), h("tracestate"));
    }
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    response
}

/// The tenant slug of a path whose route template names one (`/t/{slug}/…`,
/// `/v1/orgs/{slug}/…`).
fn tenant_of<'p>(route: &str, path: &'p str) -> Option<&'p str> {
    let at = route.split('/').position(|s| s == "{slug}")?;
    path.split('/').nth(at).filter(|s| !s.is_empty() && s.len() <= 64)
}

fn floor_boundary(s: &str, max: usize) -> usize {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenant_comes_from_the_templates_slug() {
        assert_eq!(tenant_of("/t/{slug}/token", "/t/acme/token"), Some("acme"));
        assert_eq!(tenant_of("/v1/orgs/{slug}/audit", "/v1/orgs/acme/audit"), Some("acme"));
        assert_eq!(tenant_of("/healthz", "/healthz"), None);
        assert_eq!(floor_boundary("ééé", 3), 2);
    }
}
