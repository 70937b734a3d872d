//! The gateway's request path, shared by both HTTP front ends: route, bundle, the filter
//! chain and what follows from its verdict ([`Gateway::decide`]); then the HTTP/2 front
//! end (hyper, for h2c clients) and the admin listener. The HTTP/1.1 front end, which
//! carries almost all traffic, is [`crate::http1`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_core::identity::{CredentialKind, Identity};
use gatehouse_core::request::HOP_BY_HOP;
use gatehouse_core::Engine;
use gatehouse_core::ReasonCode;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::body_watch::{Stall, WatchedBody};
use crate::bundle::{BundleStore, LoadedBundle};
use crate::config::{GatewayConfig, RouteConfig};
use crate::filters::{FilterHost, PolicyInput, Verdict, WitContext, WitRequest};
use crate::metrics::Metrics;
use crate::upstream::{Affinity, UpstreamError, Upstreams};
use std::borrow::Cow;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type of the HTTP/2 front end.
pub type Body = BoxBody<Bytes, BoxError>;

/// The lower-case tokens of a comma-separated header value (`Connection`,
/// `Transfer-Encoding`), appended to `out`.
pub(crate) fn list_tokens(value: &[u8], out: &mut Vec<String>) {
    for t in value.split(|&b| b == b',') {
        let t = t.trim_ascii();
        if !t.is_empty() {
            if let Ok(t) = std::str::from_utf8(t) {
                out.push(t.to_ascii_lowercase());
            }
        }
    }
}

/// Whether a client's request header goes on to the upstream, for both front ends: not an
/// identity header (the gateway sets those from the verdict; a client must never be able
/// to), not `Expect` (the gateway answers it), not hop-by-hop or named by `Connection` —
/// except `Upgrade` and `Connection` themselves on an upgrade.
pub(crate) fn passes_on(engine: &Engine, name: &str, connection_tokens: &[String], upgrade: bool) -> bool {
    if name.eq_ignore_ascii_case("expect") || engine.is_identity_header(name) {
        return false;
    }
    let hop = HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
        || connection_tokens.iter().any(|t| t.eq_ignore_ascii_case(name));
    !hop || (upgrade && (name.eq_ignore_ascii_case("upgrade") || name.eq_ignore_ascii_case("connection")))
}

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
    /// Upstream connections of the HTTP/2 front end, by route.
    pub upstreams: Arc<Upstreams>,
    /// Upstream connections of the HTTP/1.1 front end, by route.
    pub raw_upstreams: crate::http1::RawUpstreams,
    filter_hist: std::collections::HashMap<String, prometheus::Histogram>,
    allow_chain: prometheus::Histogram,
    allow_count: prometheus::IntCounter,
}

/// A complete answer the gateway gives itself (a deny, a redirect, an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status.
    pub status: u16,
    /// Headers (lower-case names, header-safe values).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// A deny: `status` (always 4xx/5xx), a JSON body naming the reason,
    /// `x-gatehouse-reason`, then `headers` (those that are valid header fields).
    pub fn deny(status: u16, reason: &str, headers: &[(String, String)]) -> Reply {
        let mut h = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("x-gatehouse-reason".to_string(), reason.to_string()),
        ];
        for (k, v) in headers {
            if HeaderName::from_bytes(k.as_bytes()).is_ok() && HeaderValue::from_str(v).is_ok() {
                h.push((k.to_ascii_lowercase(), v.clone()));
            }
        }
        let status = if (400..600).contains(&status) { status } else { 403 };
        Reply { status, headers: h, body: Bytes::from(format!("{{\"error\":\"{reason}\"}}\n")) }
    }

    /// A deny with a reason code's own status.
    pub fn reason(reason: ReasonCode) -> Reply {
        Reply::deny(reason.status(), reason.as_str(), &[])
    }

    /// A browser sign-in redirect (302).
    pub fn redirect(location: &str) -> Reply {
        let headers = match HeaderValue::from_str(location) {
            Ok(_) => vec![("location".to_string(), location.to_string())],
            Err(_) => Vec::new(),
        };
        Reply { status: 302, headers, body: Bytes::new() }
    }

    fn into_response(self) -> Response<Body> {
        let mut resp = Response::new(full(self.body));
        *resp.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::FORBIDDEN);
        for (k, v) in self.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                resp.headers_mut().append(k, v);
            }
        }
        resp
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
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

/// The request head as the gateway decides on it, from either front end.
pub struct HeadView<'a> {
    /// Method.
    pub method: &'a str,
    /// The host the client addressed (`Host`, else the target's authority), maybe with a port.
    pub authority: &'a str,
    /// Path, as sent.
    pub path: &'a str,
    /// Query, without `?`.
    pub query: Option<&'a str>,
    /// Header fields (names in any case).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// `Content-Length`, when the client gave one.
    pub content_length: Option<u64>,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The peer's address as text.
    pub peer_text: &'a str,
}

/// What to do with a request the chain admitted.
pub struct Forward {
    /// The route it matched.
    pub route: usize,
    /// The bundle it was decided under.
    pub bundle: Arc<LoadedBundle>,
    /// The identity's headers for the upstream (under the bundle's prefix).
    pub identity_headers: Vec<(String, String)>,
    /// Headers for the response to the client (`RateLimit-*`).
    pub response_headers: Vec<(String, String)>,
}

/// The outcome of [`Gateway::decide`].
pub enum Outcome {
    /// Forward upstream.
    Forward(Forward),
    /// Answer the client with this, without going upstream.
    Reply(Reply),
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
        let upstreams = Arc::new(Upstreams::new(authorities.clone()));
        let raw_upstreams = crate::http1::RawUpstreams::new(authorities);
        Ok(Gateway {
            config,
            bundles,
            filters,
            metrics,
            events,
            upstreams,
            raw_upstreams,
            filter_hist,
            allow_chain,
            allow_count,
        })
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

    /// Count a request under `decision` and `reason`.
    pub fn count(&self, decision: &str, reason: &str) {
        self.metrics.requests.with_label_values(&[decision, reason]).inc();
    }

    /// A reply for `reason`, counted.
    pub fn refuse(&self, decision: &str, reason: ReasonCode) -> Reply {
        self.count(decision, reason.as_str());
        Reply::reason(reason)
    }

    /// Queue a decision event for the origin (only decisions attributed to an org).
    fn record(
        &self,
        org: Option<&str>,
        decision: &'static str,
        reason: &str,
        route: Option<&str>,
        ip: Option<String>,
        view: &HeadView<'_>,
    ) {
        let (Some(events), Some(org)) = (&self.events, org) else { return };
        let request_id = view
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-request-id"))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
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

    /// Route, bundle, body size and the route's filter chain: whether `view` goes
    /// upstream, and with which headers, or what to answer instead. Every decision is
    /// the filters' (thin shells over `gatehouse-core`); this only moves their inputs and
    /// verdicts.
    pub fn decide(&self, view: &HeadView<'_>) -> Outcome {
        let Some(route_index) = self.route(view.authority, view.path) else {
            return Outcome::Reply(self.refuse("deny", ReasonCode::NoRoute));
        };
        let route: &RouteConfig = &self.config.routes[route_index];
        let Some(bundle) = self.bundles.current() else {
            return Outcome::Reply(self.refuse("deny", ReasonCode::BundleMissing));
        };
        if view.content_length.is_some_and(|len| len > self.config.limits.max_body_bytes) {
            return Outcome::Reply(self.refuse("deny", ReasonCode::BodyTooLarge));
        }
        // The request head as filters see it: only the headers they read (all, until every
        // filter of the chain has said). Header values must be text.
        let mut wanted: [Option<Arc<Vec<String>>>; 4] = Default::default();
        let mut all = route.filters.len() > wanted.len();
        for (slot, f) in wanted.iter_mut().zip(&route.filters) {
            *slot = self.filters.interest(f, bundle.generation);
            all |= slot.is_none();
        }
        let mut names: Vec<(Cow<'_, str>, &str)> = Vec::with_capacity(if all { view.headers.len() } else { 4 });
        for &(k, v) in view.headers {
            let read = all || wanted.iter().flatten().any(|names| names.iter().any(|n| n.eq_ignore_ascii_case(k)));
            if !read {
                continue;
            }
            let name = if k.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(k.to_ascii_lowercase())
            } else {
                Cow::Borrowed(k)
            };
            match header_text(v) {
                Some(v) => names.push((name, v)),
                None => return Outcome::Reply(self.refuse("deny", ReasonCode::RequestMalformed)),
            }
        }
        let headers: Vec<(&str, &str)> = names.iter().map(|(k, v)| (k.as_ref(), *v)).collect();
        let wreq = WitRequest {
            method: view.method,
            scheme: "http",
            authority: view.authority,
            path: view.path,
            query: view.query,
            headers: &headers,
            peer: view.peer_text,
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
        let mut ctx: Option<WitContext> = None;
        for name in &route.filters {
            let t = Instant::now();
            let verdict = match &ctx {
                None => self.filters.check(name, &policy, &wreq, &crate::filters::empty_context()),
                Some(c) => crate::filters::with_context(c, |c| self.filters.check(name, &policy, &wreq, c)),
            };
            if let Some(h) = self.filter_hist.get(name) {
                h.observe(t.elapsed().as_secs_f64());
            }
            match verdict {
                Ok(Verdict::Allow(next)) => ctx = Some(next),
                Ok(Verdict::Deny(d)) => {
                    self.metrics.chain_seconds.with_label_values(&["deny"]).observe(started.elapsed().as_secs_f64());
                    // A filter's own code and status are passed on; a deny can never look
                    // like success, so a status outside 4xx/5xx becomes 403.
                    let reason = filter_reason(&d.reason);
                    self.count("deny", reason);
                    let c = ctx.as_ref();
                    let org = d.org.as_deref().or(c.and_then(|c| c.org.as_deref()));
                    let ip = c.and_then(|c| c.client_ip.clone()).or_else(|| Some(view.peer_text.to_string()));
                    self.record(org, "deny", reason, c.and_then(|c| c.route.as_deref()), ip, view);
                    return Outcome::Reply(Reply::deny(d.status, reason, &d.headers));
                }
                Ok(Verdict::Redirect(location)) => {
                    self.metrics
                        .chain_seconds
                        .with_label_values(&["redirect"])
                        .observe(started.elapsed().as_secs_f64());
                    self.count("redirect", ReasonCode::CredentialMissing.as_str());
                    return Outcome::Reply(Reply::redirect(&location));
                }
                Err(e) => {
                    tracing::error!(error = %e, "filter failed; request denied");
                    return Outcome::Reply(self.refuse("deny", ReasonCode::FilterFailed));
                }
            }
        }
        self.allow_chain.observe(started.elapsed().as_secs_f64());
        self.allow_count.inc();
        let mut ctx = ctx.unwrap_or(WitContext {
            org: None,
            route: None,
            client_ip: None,
            identity: None,
            response_headers: Vec::new(),
        });
        self.record(ctx.org.as_deref(), "allow", "allow", ctx.route.as_deref(), ctx.client_ip.clone(), view);
        let identity_headers = ctx
            .identity
            .take()
            .and_then(|id| to_identity(id, bundle.engine.identity_header_prefix()))
            .map(|i| i.upstream_headers().to_vec())
            .unwrap_or_default();
        Outcome::Forward(Forward {
            route: route_index,
            bundle,
            identity_headers,
            response_headers: std::mem::take(&mut ctx.response_headers),
        })
    }

    /// Handle one request of an HTTP/2 client from `peer`, on the client connection that
    /// holds `affinity`.
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
        let content_length =
            req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let fields: Vec<(&str, &[u8])> = req.headers().iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect();
        let peer_text = peer.ip().to_string();
        let view = HeadView {
            method: req.method().as_str(),
            authority: &authority,
            path: req.uri().path(),
            query: req.uri().query(),
            headers: &fields,
            content_length,
            peer,
            peer_text: &peer_text,
        };
        let forward = match self.decide(&view) {
            Outcome::Reply(r) => return r.into_response(),
            Outcome::Forward(f) => f,
        };
        drop(fields);
        let route = &self.config.routes[forward.route];

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
        let mut connection_tokens = Vec::new();
        for v in parts.headers.get_all("connection") {
            list_tokens(v.as_bytes(), &mut connection_tokens);
        }
        {
            let h = up.headers_mut().expect("builder");
            for (k, v) in &parts.headers {
                if passes_on(&forward.bundle.engine, k.as_str(), &connection_tokens, upgrade) {
                    h.append(k.clone(), v.clone());
                }
            }
            for (k, v) in &forward.identity_headers {
                if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                    h.insert(k, v);
                }
            }
            // Every hop the client's fields list, then the peer, in one field (as the
            // HTTP/1.1 front end writes it).
            let mut xff = String::new();
            for v in parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()) {
                if !v.trim().is_empty() {
                    xff.push_str(v.trim());
                    xff.push_str(", ");
                }
            }
            xff.push_str(&peer.ip().to_string());
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
        let timeout = Duration::from_secs(self.config.limits.upstream_timeout_secs);
        let idle = Duration::from_secs(self.config.limits.body_timeout_secs);
        // A request with a body is watched (its clock, and whether it has gone on); one
        // without goes straight to the upstream timeout.
        let (body, progress): (Body, _) = if hyper::body::Body::is_end_stream(&body) {
            (Limited::new(body, limit).boxed(), None)
        } else {
            let (b, p) = WatchedBody::new(Limited::new(body, limit), idle);
            (b.boxed(), Some(p))
        };
        let up = match up.body(body) {
            Ok(r) => r,
            Err(_) => return self.refuse("deny", ReasonCode::RequestMalformed).into_response(),
        };
        let send = self.upstreams.send(&affinity, forward.route, up);
        tokio::pin!(send);
        // While the request body is on its way, the body bounds the client (it errors
        // when the client is too slow) and this loop the upstream (it must keep taking the
        // body); once the body has gone, the response head must come within the upstream
        // timeout. The HTTP/1.1 front end applies the same rules.
        let mut early = None;
        if let Some(progress) = &progress {
            early = loop {
                tokio::select! {
                    biased;
                    r = &mut send => break Some(r),
                    _ = progress.wait_ended() => break None,
                    _ = tokio::time::sleep(idle.saturating_sub(progress.still_for()).max(Duration::from_millis(10))) => {
                        let stalled = !progress.ended() && progress.still_for() >= idle;
                        if stalled && progress.stall() == Stall::Upstream {
                            return self.refuse("error", ReasonCode::UpstreamTimeout).into_response();
                        }
                    }
                }
            };
        }
        let answer = match early {
            Some(r) => Ok(r),
            None => tokio::time::timeout(timeout, &mut send).await,
        };
        if progress.as_ref().is_some_and(|p| p.client_timed_out()) {
            return self.refuse("error", ReasonCode::RequestTimeout).into_response();
        }
        let mut resp = match answer {
            Err(_) => return self.refuse("error", ReasonCode::UpstreamTimeout).into_response(),
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
                return self.refuse("error", reason).into_response();
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
        for (k, v) in &forward.response_headers {
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

/// A header value as text: visible ASCII, spaces and tabs (as `http`'s `HeaderValue::to_str`).
pub fn header_text(v: &[u8]) -> Option<&str> {
    if v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        std::str::from_utf8(v).ok()
    } else {
        None
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

/// A hyper connection of either front end, under the graceful-shutdown watch.
pub(crate) fn hyper_service<H, Fut>(
    h: H,
) -> impl hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone
where
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    hyper::service::service_fn(move |req| {
        let response = h(req);
        async move { Ok::<_, Infallible>(response.await) }
    })
}

/// Serve the admin listener until `shutdown` resolves, then drain for at most `drain`.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
    header_timeout: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = shutdown;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let g = gateway.clone();
                let service = hyper_service(move |req: Request<Incoming>| {
                    let g = g.clone();
                    async move { g.admin(req.uri().path()) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
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
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(drain) => tracing::warn!("admin drain timeout"),
    }
}

/// Serve one HTTP/2 (prior knowledge) client connection whose first bytes, already read,
/// are `read`.
pub(crate) async fn serve_h2(
    gateway: Arc<Gateway>,
    stream: tokio::net::TcpStream,
    read: Vec<u8>,
    peer: SocketAddr,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let affinity = Arc::new(Affinity::new(gateway.upstreams.clone()));
    let g = gateway.clone();
    let service = hyper_service(move |req| g.clone().handle(req, peer, affinity.clone()));
    let io = TokioIo::new(crate::http1::Rewind::new(read, stream));
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = shutdown.changed() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
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
        let r = Reply::deny(403, "demo_key_missing", &[("www-authenticate".into(), "Bearer".into())]);
        assert_eq!(r.status, 403);
        assert!(r.headers.contains(&("x-gatehouse-reason".into(), "demo_key_missing".into())));
        assert!(r.headers.contains(&("www-authenticate".into(), "Bearer".into())));
        // Header fields a filter cannot smuggle in, and statuses that are not denials.
        let r = Reply::deny(200, "x", &[("a\r\nb".into(), "v".into()), ("k".into(), "v\r\nx: y".into())]);
        assert_eq!(r.status, 403);
        assert_eq!(r.headers.len(), 2);
    }
}
