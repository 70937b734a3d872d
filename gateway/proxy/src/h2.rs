//! The HTTP/2 front end: hyper serves clients that open with the HTTP/2 preface (h2c,
//! prior knowledge), handed over by [`crate::http1`] once it has sniffed the preface. Each
//! request runs the same chain as the HTTP/1.1 front end ([`Gateway::run_chain`]) and goes
//! upstream over hyper's HTTP/1.1 client ([`crate::upstream`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::wire::{self, ConnectionTokens, Reply, UpstreamRequest};
use gatehouse_core::ReasonCode;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tracing::Instrument;

use crate::body::{full, Body, Stall, WatchedBody};
use crate::gateway::{Gateway, HeadView, Outcome};
use crate::http1::io::Rewind;
use crate::upstream::{Affinity, UpstreamError};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One of the gateway's own answers as a hyper response.
fn reply_response(r: Reply) -> Response<Body> {
    let mut resp = Response::new(full(r.body));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}

/// Handle one request of an HTTP/2 client from `peer`, on the client connection that
/// holds `affinity` (in the request's span, when tracing is on).
pub async fn handle(
    gateway: Arc<Gateway>,
    req: Request<Incoming>,
    peer: SocketAddr,
    affinity: Arc<Affinity>,
) -> Response<Body> {
    if !crate::trace::enabled() {
        return respond(gateway, req, peer, affinity).await;
    }
    let host = req.headers().get("host").and_then(|h| h.to_str().ok());
    let host = host.or_else(|| req.uri().authority().map(|a| a.as_str())).unwrap_or("");
    let fields = req.headers().iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
    let Some(span) = crate::trace::request_span(req.method().as_str(), host, req.uri().path(), peer.ip(), fields)
    else {
        return respond(gateway, req, peer, affinity).await;
    };
    let resp = respond(gateway, req, peer, affinity).instrument(span.clone()).await;
    crate::trace::status_on(&span, resp.status().as_u16());
    resp
}

async fn respond(
    gateway: Arc<Gateway>,
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
        scheme: "http",
        method: req.method().as_str(),
        authority: &authority,
        path: req.uri().path(),
        query: req.uri().query(),
        headers: &fields,
        content_length,
        peer,
        peer_text: &peer_text,
    };
    let forward = match gateway.run_chain(&view).await {
        Outcome::Reply(r) => return reply_response(r),
        Outcome::Forward(f) => f,
    };
    drop(fields);
    let route = forward.route_config();

    // Upstream request: same method, path and query; headers by the edge's contract.
    let upgrade = req.headers().get("upgrade").is_some_and(|v| wire::is_relayable_upgrade(v.as_bytes()));
    let on_client_upgrade = if upgrade { Some(hyper::upgrade::on(&mut req)) } else { None };
    let (parts, body) = req.into_parts();
    // Origin-form target; the client's host goes on in `Host`.
    let uri = match parts.uri.path_and_query() {
        Some(pq) => hyper::Uri::from(pq.clone()),
        None => hyper::Uri::from_static("/"),
    };
    let mut up = Request::builder().method(parts.method.clone()).uri(uri).version(hyper::Version::HTTP_11);
    // Traced: the upstream's parent is the gateway's upstream span, never the client's.
    let traced = crate::trace::upstream_span(parts.method.as_str(), route.upstream.as_deref());
    {
        let fields = || parts.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
        let connection = ConnectionTokens::of(fields());
        let rules = UpstreamRequest {
            identity_prefix: forward.bundle.engine.identity_header_prefix(),
            connection: &connection,
            relay_upgrade: upgrade,
            host: &authority,
            peer: &peer_text,
            identity: &forward.identity_headers,
        };
        let h = up.headers_mut().expect("builder");
        rules.headers(fields(), |name, value| {
            if traced.is_none() || !crate::trace::is_trace_field(name) {
                append(h, name, value)
            }
        });
        if let Some((_, Some(o))) = &traced {
            append(h, "traceparent", o.traceparent.as_bytes());
            if let Some(state) = &o.tracestate {
                append(h, "tracestate", state.as_bytes());
            }
        }
    }
    let limit = gateway.config.limits.max_body_bytes as usize;
    let timeout = Duration::from_secs(gateway.config.limits.upstream_timeout_secs);
    let idle = Duration::from_secs(gateway.config.limits.body_timeout_secs);
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
        Err(_) => return reply_response(gateway.refuse("deny", ReasonCode::RequestMalformed)),
    };
    let send = forward.routes.upstreams.send(&affinity, forward.route, up);
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
                        return reply_response(gateway.refuse("error", ReasonCode::UpstreamTimeout));
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
        return reply_response(gateway.refuse("error", ReasonCode::RequestTimeout));
    }
    let mut resp = match answer {
        Err(_) => return reply_response(gateway.refuse("error", ReasonCode::UpstreamTimeout)),
        Ok(Err(e)) => {
            let request_id = crate::gateway::request_id(parts.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
            tracing::error!(error = %e, upstream = route.upstream.as_deref().unwrap_or(""), request_id, "upstream error");
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
            return reply_response(gateway.refuse("error", reason));
        }
        Ok(Ok(r)) => r,
    };
    if let Some((span, _)) = &traced {
        crate::trace::status_on(span, resp.status().as_u16());
    }
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
    let upstream = std::mem::take(&mut parts.headers);
    let fields: Vec<(&str, &[u8])> = upstream.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect();
    wire::response_headers(fields.iter().copied(), &forward.response_headers, |name, value| {
        append(&mut parts.headers, name, value)
    });
    Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed())
}

/// Append a field the contract emitted (names and values it passes are valid; one that
/// is not is left out rather than failing the message).
fn append(headers: &mut HeaderMap, name: &str, value: &[u8]) {
    if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) {
        headers.append(k, v);
    }
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

/// Serve one HTTP/2 (prior knowledge) client connection whose first bytes, already read,
/// are `read`.
pub(crate) async fn serve(
    gateway: Arc<Gateway>,
    stream: tokio::net::TcpStream,
    read: Vec<u8>,
    peer: SocketAddr,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let affinity = Arc::new(Affinity::new());
    let (g, held) = (gateway.clone(), affinity.clone());
    let service = hyper_service(move |req| handle(g.clone(), req, peer, held.clone()));
    let io = TokioIo::new(Rewind::new(read, stream));
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    // The upstream connection this client held goes to the pool of the routes in force.
    affinity.release(&gateway.routes().upstreams);
}
