//! The idle upstream connections of the HTTP/1.1 front end: a client connection keeps
//! the upstream connection it last used, and hands it to a small pool per upstream when it
//! closes. A connection knows its upstream (`host:port`), not a route: after a reload
//! swaps the routes, one held by a client serves the new routes to the same upstream.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::io::Buf;

/// Idle upstream connections kept per upstream.
const MAX_IDLE: usize = 256;
/// How long an idle pooled upstream connection may be reused.
const IDLE_FOR: Duration = Duration::from_secs(30);
/// An upstream connection idle longer than this is checked for a close before reuse.
pub(super) const CHECK_AFTER: Duration = Duration::from_secs(1);
/// Bound on establishing an upstream connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An upstream connection and what it has read past the last response.
pub(super) struct UpConn {
    pub(super) authority: Arc<str>,
    pub(super) stream: TcpStream,
    pub(super) buf: Buf,
    pub(super) used: Instant,
}

/// The idle upstream connections of the HTTP/1.1 front end: one pool per upstream, and
/// which pool serves each route.
pub struct RawUpstreams {
    pools: Vec<(Arc<str>, Mutex<Vec<UpConn>>)>,
    by_route: Vec<usize>,
}

impl RawUpstreams {
    /// Pools for the routes' upstreams (`host:port`, in route order; routes to the same
    /// upstream share its pool).
    pub fn new(authorities: Vec<String>) -> RawUpstreams {
        let mut pools: Vec<(Arc<str>, Mutex<Vec<UpConn>>)> = Vec::new();
        let mut by_route = Vec::with_capacity(authorities.len());
        for a in authorities {
            let i = pools.iter().position(|(p, _)| **p == *a).unwrap_or_else(|| {
                pools.push((Arc::from(a), Mutex::new(Vec::new())));
                pools.len() - 1
            });
            by_route.push(i);
        }
        RawUpstreams { pools, by_route }
    }

    /// Whether `c` goes to route `route`'s upstream.
    pub(super) fn serves(&self, c: &UpConn, route: usize) -> bool {
        *self.pools[self.by_route[route]].0 == *c.authority
    }

    /// Keep `c` for a later request to its upstream (dropped, closing it, when these
    /// routes no longer go there or the pool is full).
    pub(super) fn park(&self, c: UpConn) {
        let Some((_, pool)) = self.pools.iter().find(|(a, _)| **a == *c.authority) else { return };
        let mut idle = pool.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    pub(super) fn pooled(&self, route: usize) -> Option<UpConn> {
        let mut idle = self.pools[self.by_route[route]].1.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if c.used.elapsed() < IDLE_FOR && still_open(&c.stream) {
                return Some(c);
            }
        }
        None
    }

    pub(super) async fn connect(&self, route: usize) -> io::Result<UpConn> {
        let authority = &self.pools[self.by_route[route]].0;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&**authority))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timeout"))??;
        stream.set_nodelay(true)?;
        Ok(UpConn { authority: authority.clone(), stream, buf: Buf::new(), used: Instant::now() })
    }
}

/// Whether an idle connection is still open: nothing to read yet (a closed one reads as
/// end of file; one with unexpected bytes is not reusable either).
pub(super) fn still_open(s: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
