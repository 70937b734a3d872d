//! Connections to upstreams.
//!
//! Each upstream connection is one of hyper's HTTP/1.1 client connections, driven by a
//! task of its own. A client connection keeps the upstream connection its last request
//! used ([`Affinity`]): HTTP/1.1 carries one request at a time, so the next request from
//! that client goes down the same upstream connection with no pool lookup, no lock held
//! across the request and no new task. Connections a client is not holding wait in a
//! bounded idle pool per upstream, for the next client. A pooled connection that turns out
//! to be closed before the request was sent is replaced by a new one, once. Connections
//! belong to an upstream (`host:port`), not to a route, so that they outlive a reload.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::body::Body;

/// Idle connections kept per upstream.
const MAX_IDLE: usize = 256;
/// How long an idle pooled connection may be reused.
const IDLE_FOR: Duration = Duration::from_secs(30);
/// How long a request waits for the connection its client holds to finish the previous
/// exchange (an HTTP/1.1 client sends its next request only after the whole previous
/// response, so this is the connection's task catching up).
const READY_WAIT: Duration = Duration::from_millis(200);
/// Bound on establishing a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made.
    #[error("cannot connect to {authority}: {reason}")]
    Connect {
        /// The upstream.
        authority: String,
        /// Why.
        reason: String,
    },
    /// The exchange failed after the request was handed to a connection.
    #[error("upstream exchange failed: {0}")]
    Exchange(#[source] hyper::Error),
}

struct Pool {
    authority: Arc<str>,
    idle: Mutex<Vec<(SendRequest<Body>, Instant)>>,
}

/// Every upstream's idle pool, and which pool serves each route.
pub struct Upstreams {
    pools: Vec<Pool>,
    by_route: Vec<usize>,
}

/// The upstream connection a client connection holds between its requests, with the
/// upstream (`host:port`) it goes to: after a reload swaps the routes, it serves the new
/// routes to the same upstream.
#[derive(Default)]
pub struct Affinity {
    held: Mutex<Option<(Arc<str>, SendRequest<Body>)>>,
}

impl Affinity {
    /// A client connection's (empty) hold on upstream connections.
    pub fn new() -> Affinity {
        Affinity::default()
    }

    /// The connection held for route `route` of `upstreams` (one held for another
    /// upstream goes to its pool).
    fn take(&self, upstreams: &Upstreams, route: usize) -> Option<SendRequest<Body>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match held.take() {
            Some((a, s)) if a == *upstreams.authority(route) && !s.is_closed() => Some(s),
            Some((a, s)) => {
                upstreams.park(&a, s);
                None
            }
            None => None,
        }
    }

    /// Keep `sender` for this client's next request, or pool it if one is held already
    /// (an HTTP/2 client runs several requests at once).
    fn keep(&self, upstreams: &Upstreams, route: usize, sender: SendRequest<Body>) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_none() {
            *held = Some((upstreams.authority(route).clone(), sender));
        } else {
            drop(held);
            upstreams.park(upstreams.authority(route), sender);
        }
    }

    /// The client has gone: its upstream connection goes to the pool of `upstreams`
    /// (the routes in force), if they still go there.
    pub fn release(&self, upstreams: &Upstreams) {
        if let Some((a, s)) = self.held.lock().unwrap_or_else(|p| p.into_inner()).take() {
            upstreams.park(&a, s);
        }
    }
}

impl Upstreams {
    /// Pools for the routes' upstreams (`host:port` each, in route order; routes to the
    /// same upstream share its pool).
    pub fn new(authorities: impl IntoIterator<Item = String>) -> Upstreams {
        let mut pools: Vec<Pool> = Vec::new();
        let mut by_route = Vec::new();
        for a in authorities {
            let i = pools.iter().position(|p| *p.authority == *a).unwrap_or_else(|| {
                pools.push(Pool { authority: Arc::from(a), idle: Mutex::new(Vec::new()) });
                pools.len() - 1
            });
            by_route.push(i);
        }
        Upstreams { pools, by_route }
    }

    fn authority(&self, route: usize) -> &Arc<str> {
        &self.pools[self.by_route[route]].authority
    }

    fn park(&self, authority: &str, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let Some(pool) = self.pools.iter().find(|p| *p.authority == *authority) else { return };
        let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }

    fn pooled(&self, route: usize) -> Option<SendRequest<Body>> {
        let mut idle = self.pools[self.by_route[route]].idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((s, since)) = idle.pop() {
            if s.is_ready() && since.elapsed() < IDLE_FOR {
                return Some(s);
            }
        }
        None
    }

    async fn connect(&self, route: usize) -> Result<SendRequest<Body>, UpstreamError> {
        let authority = self.authority(route);
        let fail = |reason: String| UpstreamError::Connect { authority: authority.to_string(), reason };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&**authority)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Err(_) => return Err(fail("connect timeout".into())),
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| fail(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    /// Send `req` (origin-form target, `Host` set) to route `route`'s upstream, on the
    /// connection `affinity` holds, a pooled one, or a new one.
    pub async fn send(
        &self,
        affinity: &Affinity,
        route: usize,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let held = match affinity.take(self, route) {
            // The previous response's end may still be on its way through the
            // connection's task: wait for it, briefly.
            Some(mut s) if !s.is_ready() => match tokio::time::timeout(READY_WAIT, s.ready()).await {
                Ok(Ok(())) => Some(s),
                _ => None,
            },
            other => other,
        };
        let reused = held.or_else(|| self.pooled(route));
        let fresh = reused.is_none();
        let mut sender = match reused {
            Some(s) => s,
            None => self.connect(route).await?,
        };
        let result = match sender.try_send_request(req).await {
            Ok(resp) => Ok(resp),
            // A reused connection closed before the request went out: once more, on a new one.
            Err(mut e) if !fresh && e.message().is_some() => {
                let req = e.take_message().expect("checked");
                sender = self.connect(route).await?;
                sender.try_send_request(req).await.map_err(|e| UpstreamError::Exchange(e.into_error()))
            }
            Err(e) => Err(UpstreamError::Exchange(e.into_error())),
        };
        if result.is_ok() {
            affinity.keep(self, route, sender);
        }
        result
    }
}
