//! The gRPC protocol of the authorization service: Envoy's external authorization API v3
//! (`envoy.service.auth.v3.Authorization/Check`, the protos of `envoy-types`), served with
//! tonic on `[authz] grpc`. Envoy (`envoy.filters.http.ext_authz` with a `grpc_service`),
//! Istio (`envoyExtAuthzGrpc` extension providers) and Envoy Gateway (`SecurityPolicy`
//! `extAuth.grpc`) call it once per request.
//!
//! A check is the original request as Envoy saw it ([`request::read`]): method, host,
//! path and query, header fields, and the downstream peer (`attributes.source.address`),
//! which the engine treats as the TCP peer — client IPs from `X-Forwarded-For` are
//! believed only when that peer is a trusted proxy of the policy, as everywhere. The
//! decision is the route's filter chain ([`crate::authz::check`], one engine); its answer
//! on the wire is [`response::check_response`]. A check that cannot be read (no HTTP
//! attributes, no IP source, an oversized head) is refused (`request_malformed` 400 or
//! `headers_too_large` 431), never allowed.
//!
//! The listener trusts whoever reaches it to report the downstream peer honestly: bind
//! it where only the proxies reach it (loopback, the pod network, a mesh port).

pub mod request;
pub mod response;

use std::sync::Arc;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{Authorization, AuthorizationServer, CheckRequest, CheckResponse};

use crate::authz::{self, CheckAnswer, CheckInput};
use crate::gateway::Gateway;

/// Largest `CheckRequest` decoded, in bytes: a request head at the HTTP front end's bound
/// ([`request::MAX_HEAD_BYTES`]) and room for Envoy's other attributes. A larger message
/// is refused by tonic (`RESOURCE_EXHAUSTED`): Envoy then denies the request unless
/// `failure_mode_allow` is set (the shipped configs never set it).
pub const MAX_MESSAGE_BYTES: usize = 2 * request::MAX_HEAD_BYTES;
/// Largest gRPC metadata (HTTP/2 header list) of a call, in bytes.
pub const MAX_METADATA_BYTES: u32 = 16 * 1024;
/// Concurrent calls per HTTP/2 connection (Envoy multiplexes its checks on few
/// connections).
pub const MAX_STREAMS: u32 = 1024;

/// The `Authorization` service over the gateway's engine.
pub struct CheckService {
    gateway: Arc<Gateway>,
}

impl CheckService {
    /// The service answering with `gateway`'s routes, bundle and filters.
    pub fn new(gateway: Arc<Gateway>) -> CheckService {
        CheckService { gateway }
    }

    /// Decide on one check (the whole work of a call, without the transport).
    pub async fn decide(&self, req: &CheckRequest) -> CheckResponse {
        let answer = match request::read(req) {
            Ok(o) => {
                let input = CheckInput {
                    scheme: o.scheme,
                    method: o.method,
                    authority: o.authority,
                    path: o.path,
                    query: o.query,
                    headers: &o.headers,
                    peer: o.peer,
                };
                authz::check(&self.gateway, &input).await
            }
            Err(m) => {
                tracing::info!(problem = m.code(), "unreadable check request refused");
                CheckAnswer::Refuse(self.gateway.refuse("deny", m.reason()))
            }
        };
        let bundle = match &answer {
            CheckAnswer::Allow { .. } => self.gateway.bundles.current(),
            CheckAnswer::Refuse(_) => None,
        };
        response::check_response(answer, bundle.as_ref().map(|b| b.engine.identity_header_prefix()))
    }
}

#[tonic::async_trait]
impl Authorization for CheckService {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.decide(request.get_ref()).await))
    }
}

/// Serve checks on `listener` until `shutdown` turns true, then let calls in flight
/// finish for at most `drain` (connections get an HTTP/2 GOAWAY).
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) {
    let service = AuthorizationServer::new(CheckService::new(gateway))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut stop = shutdown.clone();
    let signal = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let server = tonic::transport::Server::builder()
        .http2_max_header_list_size(MAX_METADATA_BYTES)
        .max_concurrent_streams(MAX_STREAMS)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, signal);
    let mut stop = shutdown;
    let deadline = async move {
        let _ = stop.wait_for(|s| *s).await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        r = server => {
            if let Err(e) = r {
                tracing::error!(error = %e, "the grpc authorization listener failed");
            }
        }
        _ = deadline => tracing::warn!(secs = drain.as_secs(), "grpc authorization calls still open after the drain; closing"),
    }
}
