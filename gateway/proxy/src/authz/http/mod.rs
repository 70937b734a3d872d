//! The HTTP authorization endpoint (`[authz] http`): one hyper listener answering nginx
//! `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth` and Envoy's HTTP
//! `ext_authz`. [`convention`] reads the original request from the caller's fields,
//! [`crate::authz::check`] decides (the route's filter chain: the one engine, which also
//! counts the decision once), and [`answer`] puts the decision on the caller's wire.
//! Heads are bounded like the gateway's (64 KiB, 100 fields, `limits.header_timeout_secs`);
//! check requests' bodies are never read.

pub mod answer;
pub mod convention;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::ReasonCode;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

use self::convention::{Caller, Check};
use crate::authz::{check, CheckAnswer, CheckInput};
use crate::body::{full, Body};
use crate::gateway::Gateway;
use crate::h2::hyper_service;

/// Answer one check request from `peer` (the asking proxy).
pub async fn handle<B>(gateway: &Gateway, req: &Request<B>, peer: SocketAddr) -> Response<Body> {
    let uri = req.uri();
    let read = convention::read(
        req.method().as_str(),
        uri.path(),
        uri.query(),
        uri.authority().map(|a| a.as_str()),
        req.headers(),
        &gateway.config.authz.envoy_path_prefix,
    );
    let original = match read {
        Ok(Check::Ask(o)) => o,
        Ok(Check::Replay(text)) => {
            return match answer::decode_reply(&text) {
                Ok(reply) => answer::replay(reply),
                Err(e) => {
                    tracing::warn!(error = %e, "authz: refused a reply to replay");
                    answer::replay(gateway.refuse("deny", ReasonCode::RequestMalformed))
                }
            }
        }
        Ok(Check::Health) => {
            let mut r = Response::new(full("ok\n"));
            r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("text/plain"));
            return r;
        }
        Err(e) => {
            tracing::info!(error = %e, "authz: malformed check request");
            let reply = gateway.refuse("deny", ReasonCode::RequestMalformed);
            // nginx is known by its field even when the rest of its convention is bad.
            let caller =
                if req.headers().contains_key("x-original-uri") && e != convention::ConventionError::Conflicting {
                    Caller::Nginx
                } else {
                    Caller::Forwarded
                };
            return answer::refuse(caller, reply);
        }
    };
    let fields: Vec<(&str, &[u8])> = original.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    let input = CheckInput {
        scheme: original.scheme,
        method: &original.method,
        authority: &original.authority,
        path: &original.path,
        query: original.query.as_deref(),
        headers: &fields,
        peer,
    };
    match check(gateway, &input).await {
        CheckAnswer::Allow { upstream_headers, remove_headers, response_headers } => {
            tracing::debug!(caller = original.caller.as_str(), "authz: allow");
            answer::allow(original.caller, &upstream_headers, &remove_headers, &response_headers)
        }
        CheckAnswer::Refuse(reply) => {
            tracing::debug!(caller = original.caller.as_str(), status = reply.status, "authz: refuse");
            answer::refuse(original.caller, reply)
        }
    }
}

/// Serve checks on `listener` until `shutdown` turns true, then drain for at most `drain`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = shutdown;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let header_timeout = Duration::from_secs(gateway.config.limits.header_timeout_secs);
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(crate::http1::MAX_HEAD)
        .max_headers(crate::http1::MAX_HEADERS);
    builder.http2().timer(hyper_util::rt::TokioTimer::new()).max_header_list_size(crate::http1::MAX_HEAD as u32);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Some((stream, peer)) = crate::listen::accepted(accepted).await else { continue };
                let g = gateway.clone();
                let service = hyper_service(move |req: Request<Incoming>| {
                    let g = g.clone();
                    async move { handle(&g, &req, peer).await }
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
        _ = tokio::time::sleep(drain) => tracing::warn!("authz http drain timeout"),
    }
}
