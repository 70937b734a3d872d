//! Connections to upstreams.
//!
//! Each upstream connection is one of hyper's HTTP/1.1 client connections, driven by a
//! task of its own. A client connection keeps the upstream connection its last request
//! used ([`Affinity`]): HTTP/1.1 carries one request at a time, so the next request from
//! that client goes down the same upstream connection with no pool lookup, no lock held
//! across the request and no new task. Connections a client is not holding wait in a
//! bounded idle pool per upstream, for the next client. A pooled connection that turns out
//! to be closed before the request was sent is replaced by a new one, once.

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
    authority: String,
    idle: Mutex<Vec<(SendRequest<Body>, Instant)>>,
}

/// Every upstream's idle pool, by route index.
pub struct Upstreams {
    pools: Vec<Pool>,
}

/// The upstream connection a client connection holds between its requests.
pub struct Affinity {
    upstreams: Arc<Upstreams>,
    held: Mutex<Option<(usize, SendRequest<Body>)>>,
}

impl Affinity {
    /// A client connection's (empty) hold on upstream connections.
    pub fn new(upstreams: Arc<Upstreams>) -> Affinity {
        Affinity { upstreams, held: Mutex::new(None) }
    }

    /// The connection held for `route` (one held for another route goes to its pool).
    fn take(&self, route: usize) -> Option<SendRequest<Body>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match held.take() {
            Some((r, s)) if r == route && !s.is_closed() => Some(s),
            Some((r, s)) => {
                self.upstreams.park(r, s);
                None
            }
            None => None,
        }
    }

    /// Keep `sender` for this client's next request, or pool it if one is held already
    /// (an HTTP/2 client runs several requests at once).
    fn keep(&self, route: usize, sender: SendRequest<Body>) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_none() {
            *held = Some((route, sender));
        } else {
            drop(held);
            self.upstreams.park(route, sender);
        }
    }
}

impl Drop for Affinity {
    /// The client has gone: its upstream connection goes back to the pool.
    fn drop(&mut self) {
        if let Some((r, s)) = self.held.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            self.upstreams.park(r, s);
        }
    }
}

impl Upstreams {
    /// Pools for the routes' upstreams (`host:port` each, in route order).
    pub fn new(authorities: impl IntoIterator<Item = String>) -> Upstreams {
        Upstreams {
            pools: authorities.into_iter().map(|authority| Pool { authority, idle: Mutex::new(Vec::new()) }).collect(),
        }
    }

    fn park(&self, route: usize, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.pools[route].idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }

    fn pooled(&self, route: usize) -> Option<SendRequest<Body>> {
        let mut idle = self.pools[route].idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((s, since)) = idle.pop() {
            if s.is_ready() && since.elapsed() < IDLE_FOR {
                return Some(s);
            }
        }
        None
    }

    async fn connect(&self, route: usize) -> Result<SendRequest<Body>, UpstreamError> {
        let authority = &self.pools[route].authority;
        let fail = |reason: String| UpstreamError::Connect { authority: authority.clone(), reason };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(authority)).await {
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
        let held = match affinity.take(route) {
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
            affinity.keep(route, sender);
        }
        result
    }
}
