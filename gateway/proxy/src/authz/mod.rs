//! The authorization service: the gateway's decision for a request that another proxy
//! (nginx `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`, Envoy or Istio
//! `ext_authz`) holds, answered in that proxy's protocol. One engine: every check is the
//! route's filter chain through [`Gateway::run_chain`], exactly as the reverse proxy
//! would decide; this module only turns a protocol's request into a [`HeadView`] and the
//! chain's [`Outcome`] into a protocol-neutral [`CheckAnswer`]. The protocols are
//! [`http`] and [`grpc`].

pub mod config;
pub mod grpc;
pub mod http;

use std::net::SocketAddr;

use gatehouse_core::wire::Reply;

use crate::gateway::{Gateway, HeadView, Outcome};

/// The request a proxy asks about, as the protocol adapter read it.
pub struct CheckInput<'a> {
    /// The scheme the client used (`http` or `https`), as the proxy reports it: the
    /// sign-in redirect's `return_to` is built from it.
    pub scheme: &'a str,
    /// Method of the original request.
    pub method: &'a str,
    /// Host the client addressed (maybe with a port).
    pub authority: &'a str,
    /// Path of the original request, as sent (no query).
    pub path: &'a str,
    /// Query, without `?`.
    pub query: Option<&'a str>,
    /// The original request's header fields (names in any case), without the protocol's
    /// own conventions (`X-Original-URI`, `X-Forwarded-Method`, …).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Who the engine sees as the TCP peer: the proxy that asks (HTTP), or the downstream
    /// peer the proxy reports (gRPC `source.address`). Client IPs from forwarding headers
    /// are believed only when this peer is a trusted proxy of the policy, as everywhere.
    pub peer: SocketAddr,
}

/// The decision, for a protocol adapter to put on its wire.
#[derive(Debug)]
pub enum CheckAnswer {
    /// Let the request through.
    Allow {
        /// Identity headers to set on the upstream request (replacing any the client sent).
        upstream_headers: Vec<(String, String)>,
        /// Header names the client sent under the identity prefix, to remove from the
        /// upstream request (a spoofed identity never reaches the application).
        remove_headers: Vec<String>,
        /// Headers for the client's response (`RateLimit-*`).
        response_headers: Vec<(String, String)>,
    },
    /// Answer the client with this instead (a refusal or a sign-in redirect), exactly as
    /// the reverse proxy would.
    Refuse(Reply),
}

/// Decide on `input` with the gateway's engine and the route's filter chain (in a span of
/// its own when tracing is on, continuing the asker's trace when it is a trusted client).
pub async fn check(gateway: &Gateway, input: &CheckInput<'_>) -> CheckAnswer {
    let headers = input.headers.iter().copied();
    let Some(span) = crate::trace::check_span(input.method, input.authority, input.path, input.peer.ip(), headers)
    else {
        return decide(gateway, input).await;
    };
    let answer = tracing::Instrument::instrument(decide(gateway, input), span.clone()).await;
    let status = match &answer {
        CheckAnswer::Allow { .. } => 200,
        CheckAnswer::Refuse(reply) => reply.status,
    };
    crate::trace::status_on(&span, status);
    answer
}

async fn decide(gateway: &Gateway, input: &CheckInput<'_>) -> CheckAnswer {
    let peer_text = input.peer.ip().to_string();
    let content_length = input
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok());
    let view = HeadView {
        scheme: input.scheme,
        method: input.method,
        authority: input.authority,
        path: input.path,
        query: input.query,
        headers: input.headers,
        content_length,
        peer: input.peer,
        peer_text: &peer_text,
    };
    match gateway.run_chain(&view).await {
        Outcome::Reply(reply) => CheckAnswer::Refuse(reply),
        Outcome::Forward(f) => {
            let prefix = f.bundle.engine.identity_header_prefix();
            let mut remove_headers: Vec<String> = input
                .headers
                .iter()
                .filter(|(k, _)| gatehouse_core::wire::has_prefix(k, prefix))
                .map(|(k, _)| k.to_ascii_lowercase())
                .collect();
            remove_headers.sort();
            remove_headers.dedup();
            CheckAnswer::Allow {
                upstream_headers: f.identity_headers,
                remove_headers,
                response_headers: f.response_headers,
            }
        }
    }
}
