//! The idle upstream connections of the HTTP/1.1 front end: a client connection keeps
//! the upstream connection it last used, and hands it to a small pool per upstream when it
//! closes.

use std::io;
use std::sync::Mutex;
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
    pub(super) route: usize,
    pub(super) stream: TcpStream,
    pub(super) buf: Buf,
    pub(super) used: Instant,
}

/// The idle upstream connections of the HTTP/1.1 front end, per route.
pub struct RawUpstreams {
    pools: Vec<(String, Mutex<Vec<UpConn>>)>,
}

impl RawUpstreams {
    /// Pools for the routes' upstreams (`host:port`, in route order).
    pub fn new(authorities: Vec<String>) -> RawUpstreams {
        RawUpstreams { pools: authorities.into_iter().map(|a| (a, Mutex::new(Vec::new()))).collect() }
    }

    pub(super) fn park(&self, c: UpConn) {
        let mut idle = self.pools[c.route].1.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    pub(super) fn pooled(&self, route: usize) -> Option<UpConn> {
        let mut idle = self.pools[route].1.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if c.used.elapsed() < IDLE_FOR && still_open(&c.stream) {
                return Some(c);
            }
        }
        None
    }

    pub(super) async fn connect(&self, route: usize) -> io::Result<UpConn> {
        let authority = &self.pools[route].0;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timeout"))??;
        stream.set_nodelay(true)?;
        Ok(UpConn { route, stream, buf: Buf::new(), used: Instant::now() })
    }
}

/// Whether an idle connection is still open: nothing to read yet (a closed one reads as
/// end of file; one with unexpected bytes is not reusable either).
pub(super) fn still_open(s: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
