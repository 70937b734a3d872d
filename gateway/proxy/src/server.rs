//! The HTTP side: the public listener (HTTP/1.1 and h2c), the filter chain, forwarding to
//! upstreams (connections in [`crate::upstream`]), upgrades, and the admin listener.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_core::identity::{CredentialKind, Identity};
use gatehouse_core::request::HOP_BY_HOP;
use gatehouse_core::ReasonCode;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::bundle::BundleStore;
use crate::config::{GatewayConfig, RouteConfig};
use crate::filters::{FilterHost, PolicyInput, Verdict, WitContext, WitRequest};
use crate::metrics::Metrics;
use crate::upstream::{Affinity, UpstreamError, Upstreams};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type used throughout.
pub type Body = BoxBody<Bytes, BoxError>;

/// Everything a request needs.
pub struct Gateway {
    /// Configuration.
    pub config: GatewayConfig,
    /// Bundle in force.
    pub bundles: Arc<BundleStore>,
    /// Filter components.
    pub filters: Arc<FilterHost>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Decision events for the origin, when configured.
    events: Option<Arc<crate::events::EdgeEvents>>,
    /// Upstream connections, by route.
    pub upstreams: Arc<Upstreams>,
    filter_hist: std::collections::HashMap<String, prometheus::Histogram>,
    allow_chain: prometheus::Histogram,
    allow_count: prometheus::IntCounter,
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn reason_response(reason: ReasonCode, headers: &[(String, String)]) -> Response<Body> {
    deny_response(reason.status(), reason.as_str(), headers)
}

/// A reason from a filter as it may appear in responses and metric labels: a stable
/// snake_case code, or `filter_denied` for anything else (so a filter cannot inject
/// headers or blow up metric cardinality with arbitrary text).
fn filter_reason(reason: &str) -> &str {
    let ok = !reason.is_empty()
        && reason.len() <= 64
        && reason.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        reason
    } else {
        "filter_denied"
    }
}

/// A deny: `status` (always 4xx/5xx), a JSON body naming the reason, `x-gatehouse-reason`.
fn deny_response(status: u16, reason: &str, headers: &[(String, String)]) -> Response<Body> {
    let body = format!("{{\"error\":\"{reason}\"}}\n");
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(reason) {
        h.insert("x-gatehouse-reason", v);
    }
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            h.append(k, v);
        }
    }
    resp
}

impl Gateway {
    /// Assemble the gateway.
    pub fn new(
        config: GatewayConfig,
        bundles: Arc<BundleStore>,
        filters: Arc<FilterHost>,
        metrics: Arc<Metrics>,
        events: Option<Arc<crate::events::EdgeEvents>>,
    ) -> anyhow::Result<Gateway> {
        let filter_hist = config
            .routes
            .iter()
            .flat_map(|r| r.filters.iter())
            .map(|f| (f.clone(), metrics.filter_seconds.with_label_values(&[f.as_str()])))
            .collect();
        let allow_chain = metrics.chain_seconds.with_label_values(&["allow"]);
        let allow_count = metrics.requests.with_label_values(&["allow", ""]);
        let authorities = config
            .routes
            .iter()
            .map(|r| {
                r.upstream
                    .trim_start_matches("http://")
                    .parse::<hyper::http::uri::Authority>()
                    .map(|a| match a.port() {
                        Some(_) => a.to_string(),
                        None => format!("{a}:80"),
                    })
                    .map_err(|_| anyhow::anyhow!("upstream `{}` is not http://host:port", r.upstream))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let upstreams = Arc::new(Upstreams::new(authorities));
        Ok(Gateway { config, bundles, filters, metrics, events, upstreams, filter_hist, allow_chain, allow_count })
    }

    fn route(&self, host: &str, path: &str) -> Option<usize> {
        let host = gatehouse_core::request::strip_port(host);
        self.config.routes.iter().position(|r| {
            let host_ok = match r.host.as_deref() {
                None | Some("*") => true,
                Some(h) => h.eq_ignore_ascii_case(host),
            };
            let p = r.path_prefix.trim_end_matches('/');
            host_ok
                && (p.is_empty()
                    || (path.starts_with(p) && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')))
        })
    }

    fn count(&self, decision: &str, reason: &str) {
        self.metrics.requests.with_label_values(&[decision, reason]).inc();
    }

    /// Queue a decision event for the origin (only decisions attributed to an org).
    fn record(
        &self,
        org: Option<&str>,
        decision: &'static str,
        reason: &str,
        route: Option<&str>,
        ip: Option<String>,
        req_headers: &hyper::HeaderMap,
    ) {
        let (Some(events), Some(org)) = (&self.events, org) else { return };
        let request_id = req_headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map(str::to_string);
        events.push(crate::events::Event {
            org: org.to_string(),
            at: (crate::filters::now_nanos() / 1_000_000_000) as i64,
            decision,
            reason: reason.to_string(),
            route: route.map(str::to_string),
            ip,
            request_id,
        });
    }

    /// Handle one request from `peer`, on the client connection that holds `affinity`.
    pub async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        affinity: Arc<Affinity>,
    ) -> Response<Body> {
        let authority = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let path = req.uri().path().to_string();
        let Some(route_index) = self.route(&authority, &path) else {
            self.count("deny", ReasonCode::NoRoute.as_str());
            return reason_response(ReasonCode::NoRoute, &[]);
        };
        let route: &RouteConfig = &self.config.routes[route_index];
        let Some(bundle) = self.bundles.current() else {
            self.count("deny", ReasonCode::BundleMissing.as_str());
            return reason_response(ReasonCode::BundleMissing, &[]);
        };
        if let Some(len) =
            req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        {
            if len > self.config.limits.max_body_bytes {
                self.count("deny", ReasonCode::BodyTooLarge.as_str());
                return reason_response(ReasonCode::BodyTooLarge, &[]);
            }
        }
        // The request head as filters see it: only the headers they read (all, until every
        // filter of the chain has said). Header values must be text.
        let wanted: Option<Vec<Arc<Vec<String>>>> =
            route.filters.iter().map(|f| self.filters.interest(f, bundle.generation)).collect();
        let mut headers = Vec::with_capacity(req.headers().len());
        for (k, v) in req.headers() {
            if let Some(w) = &wanted {
                if !w.iter().any(|names| names.iter().any(|n| n == k.as_str())) {
                    continue;
                }
            }
            match v.to_str() {
                Ok(v) => headers.push((k.as_str().to_string(), v.to_string())),
                Err(_) => {
                    self.count("deny", ReasonCode::RequestMalformed.as_str());
                    return reason_response(ReasonCode::RequestMalformed, &[]);
                }
            }
        }
        let wreq = WitRequest {
            method: req.method().as_str().to_string(),
            scheme: "http".into(),
            authority,
            path,
            query: req.uri().query().map(str::to_string),
            headers,
            peer: peer.ip().to_string(),
            platform_country: None,
        };
        let policy = PolicyInput {
            revision: bundle.generation,
            bundle: &bundle.bytes,
            public_key: &self.bundles.public_key,
            secrets_json: &self.bundles.secrets_json,
        };
        // The chain: each filter sees the context the previous ones established.
        let started = Instant::now();
        let mut ctx =
            WitContext { org: None, route: None, client_ip: None, identity: None, response_headers: Vec::new() };
        for name in &route.filters {
            let t = Instant::now();
            let verdict = self.filters.check(name, &policy, &wreq, &ctx);
            if let Some(h) = self.filter_hist.get(name) {
                h.observe(t.elapsed().as_secs_f64());
            }
            match verdict {
                Ok(Verdict::Allow(next)) => ctx = next,
                Ok(Verdict::Deny(d)) => {
                    self.metrics.chain_seconds.with_label_values(&["deny"]).observe(started.elapsed().as_secs_f64());
                    // A filter's own code and status are passed on; a deny can never look
                    // like success, so a status outside 4xx/5xx becomes 403.
                    let reason = filter_reason(&d.reason);
                    let status = if (400..600).contains(&d.status) { d.status } else { 403 };
                    self.count("deny", reason);
                    let org = d.org.as_deref().or(ctx.org.as_deref());
                    let ip = ctx.client_ip.clone().or_else(|| Some(peer.ip().to_string()));
                    self.record(org, "deny", reason, ctx.route.as_deref(), ip, req.headers());
                    return deny_response(status, reason, &d.headers);
                }
                Ok(Verdict::Redirect(location)) => {
                    self.metrics
                        .chain_seconds
                        .with_label_values(&["redirect"])
                        .observe(started.elapsed().as_secs_f64());
                    self.count("redirect", ReasonCode::CredentialMissing.as_str());
                    let mut resp = Response::new(full(""));
                    *resp.status_mut() = StatusCode::FOUND;
                    if let Ok(v) = HeaderValue::from_str(&location) {
                        resp.headers_mut().insert("location", v);
                    }
                    return resp;
                }
                Err(e) => {
                    tracing::error!(error = %e, "filter failed; request denied");
                    self.count("deny", ReasonCode::FilterFailed.as_str());
                    return reason_response(ReasonCode::FilterFailed, &[]);
                }
            }
        }
        self.allow_chain.observe(started.elapsed().as_secs_f64());
        self.allow_count.inc();
        self.record(ctx.org.as_deref(), "allow", "allow", ctx.route.as_deref(), ctx.client_ip.clone(), req.headers());

        // Upstream request: same method, path and query, client identity headers removed,
        // ours added, hop-by-hop headers dropped (except for an upgrade).
        let upgrade = req.headers().contains_key("upgrade");
        let on_client_upgrade = if upgrade { Some(hyper::upgrade::on(&mut req)) } else { None };
        let (parts, body) = req.into_parts();
        // Origin-form target; the client's host goes on in `Host`.
        let uri = match parts.uri.path_and_query() {
            Some(pq) => hyper::Uri::from(pq.clone()),
            None => hyper::Uri::from_static("/"),
        };
        let mut up = Request::builder().method(parts.method.clone()).uri(uri).version(hyper::Version::HTTP_11);
        let connection_tokens: Vec<String> = if parts.headers.contains_key("connection") {
            parts
                .headers
                .get_all("connection")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
                .collect()
        } else {
            Vec::new()
        };
        {
            let h = up.headers_mut().expect("builder");
            for (k, v) in &parts.headers {
                let name = k.as_str();
                if bundle.engine.is_identity_header(name) {
                    continue;
                }
                let hop = HOP_BY_HOP.contains(&name) || connection_tokens.iter().any(|t| t == name);
                if hop && !(upgrade && (name == "upgrade" || name == "connection")) {
                    continue;
                }
                h.append(k.clone(), v.clone());
            }
            if let Some(id) = ctx.identity.take() {
                if let Some(identity) = to_identity(id, bundle.engine.identity_header_prefix()) {
                    for (k, v) in identity.upstream_headers() {
                        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                            h.insert(k, v);
                        }
                    }
                }
            }
            let xff = match parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(prev) => format!("{prev}, {}", peer.ip()),
                None => peer.ip().to_string(),
            };
            if let Ok(v) = HeaderValue::from_str(&xff) {
                h.insert("x-forwarded-for", v);
            }
            // An HTTP/2 client names the host in `:authority`, not in a `Host` header.
            if !h.contains_key(hyper::header::HOST) {
                if let Some(a) = parts.uri.authority() {
                    if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                        h.insert(hyper::header::HOST, v);
                    }
                }
            }
        }
        let limit = self.config.limits.max_body_bytes as usize;
        let body: Body = Limited::new(body, limit).boxed();
        let up = match up.body(body) {
            Ok(r) => r,
            Err(_) => return reason_response(ReasonCode::RequestMalformed, &[]),
        };
        let timeout = Duration::from_secs(self.config.limits.upstream_timeout_secs);
        let mut resp = match tokio::time::timeout(timeout, self.upstreams.send(&affinity, route_index, up)).await {
            Err(_) => {
                self.count("error", ReasonCode::UpstreamTimeout.as_str());
                return reason_response(ReasonCode::UpstreamTimeout, &[]);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, upstream = %route.upstream, "upstream error");
                let too_large = match &e {
                    UpstreamError::Exchange(e) => {
                        let mut source = std::error::Error::source(e);
                        let mut found = false;
                        while let Some(s) = source {
                            found |= s.to_string().contains("length limit exceeded");
                            source = s.source();
                        }
                        found
                    }
                    UpstreamError::Connect { .. } => false,
                };
                let reason = if too_large { ReasonCode::BodyTooLarge } else { ReasonCode::UpstreamUnavailable };
                self.count("error", reason.as_str());
                return reason_response(reason, &[]);
            }
            Ok(Ok(r)) => r,
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_up) = on_client_upgrade {
                let upstream_up = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    match (client_up.await, upstream_up.await) {
                        (Ok(c), Ok(u)) => {
                            let mut c = TokioIo::new(c);
                            let mut u = TokioIo::new(u);
                            let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                        }
                        (a, b) => tracing::warn!(client = a.is_ok(), upstream = b.is_ok(), "upgrade failed"),
                    }
                });
            }
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, full(""));
        }
        let (mut parts, body) = resp.into_parts();
        for name in HOP_BY_HOP {
            parts.headers.remove(*name);
        }
        for (k, v) in &ctx.response_headers {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                parts.headers.insert(k, v);
            }
        }
        Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed())
    }

    /// The admin listener's answers.
    pub fn admin(&self, path: &str) -> Response<Body> {
        let now = crate::filters::now_nanos() / 1_000_000_000;
        let (status, body, ctype) = match path {
            "/healthz" => (StatusCode::OK, "ok\n".to_string(), "text/plain"),
            "/readyz" => match self.bundles.current() {
                Some(b) if b.engine.is_fresh(now) => (StatusCode::OK, "ready\n".into(), "text/plain"),
                Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "bundle expired\n".into(), "text/plain"),
                None => (StatusCode::SERVICE_UNAVAILABLE, "no bundle\n".into(), "text/plain"),
            },
            "/metrics" => (StatusCode::OK, self.metrics.render(now), "text/plain; version=0.0.4"),
            _ => (StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
        };
        let mut r = Response::new(full(body));
        *r.status_mut() = status;
        r.headers_mut().insert("content-type", HeaderValue::from_static(ctype));
        r
    }
}

/// The identity a filter chain established, as the core models it (its upstream headers
/// under `prefix`); `None` for an unknown credential kind.
pub fn to_identity(i: crate::filters::WitIdentity, prefix: &str) -> Option<Identity> {
    Some(Identity::new(
        CredentialKind::parse(&i.kind)?,
        i.subject,
        i.org,
        i.roles,
        i.scopes,
        i.teams,
        i.amr,
        i.session_id,
        i.credential_id,
        i.expires_at,
        prefix,
    ))
}

/// Serve connections from `listener` until `shutdown` resolves, then drain for at most
/// `drain`. `connection` makes the handler of each accepted connection from its peer.
pub async fn serve<C, H, Fut>(
    listener: tokio::net::TcpListener,
    connection: C,
    shutdown: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
    header_timeout: Duration,
) where
    C: Fn(SocketAddr) -> H,
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = shutdown;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let h = connection(peer);
                let service = hyper::service::service_fn(move |req| {
                    let response = h(req);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(drain) => tracing::warn!("drain timeout; closing remaining connections"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_reasons_are_sanitised() {
        assert_eq!(filter_reason("demo_key_missing"), "demo_key_missing");
        for bad in ["", "Evil", "a\r\nx-gatehouse-subject: root", &"a".repeat(65), "spaces here", "ünïcode"] {
            assert_eq!(filter_reason(bad), "filter_denied", "{bad:?}");
        }
        let r = deny_response(403, "demo_key_missing", &[("www-authenticate".into(), "Bearer".into())]);
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["x-gatehouse-reason"], "demo_key_missing");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
}
