//! The HTTP/1.1 front end: one task per client connection reads each request head
//! (httparse), asks the filter chain ([`Gateway::decide`]), and forwards an allowed
//! request over an upstream connection that the same task owns, streaming bodies both
//! ways through one fixed buffer. No second task, no channel and no pool lookup per
//! request: the client connection keeps its upstream connection between requests, and
//! hands it to a small idle pool per upstream when it closes. Clients that open with the
//! HTTP/2 preface are served by hyper ([`crate::server::serve_h2`]).
//!
//! Framing follows RFC 9112 and refuses what request smuggling relies on: a request with
//! both `Content-Length` and `Transfer-Encoding`, more than one `Content-Length` or
//! `Host`, a transfer coding other than a final `chunked`, `Transfer-Encoding` from an
//! HTTP/1.0 client, or a malformed chunk is answered 400 and the connection closed.
//! Request bodies are re-framed for the upstream (the gateway's own `Content-Length` or
//! chunking), so what the upstream reads is exactly what the gateway read. Heads are
//! bounded (64 KiB, 100 fields) and must arrive within `limits.header_timeout_secs`;
//! request bodies are bounded by `limits.max_body_bytes` in size and by
//! `limits.body_timeout_secs` without progress.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use gatehouse_core::request::HOP_BY_HOP;
use gatehouse_core::ReasonCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::body_watch::BodyClock;
use crate::server::{list_tokens, passes_on, Forward, Gateway, HeadView, Outcome, Reply};

/// Largest request or response head.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a head.
pub const MAX_HEADERS: usize = 100;
/// Size of the buffer bodies stream through.
const IO_CHUNK: usize = 64 * 1024;
/// Longest chunk-size line (size, extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// A refused request's body up to this size is read and dropped to keep the connection;
/// beyond it the connection is closed instead.
const DISCARD_MAX: u64 = 64 * 1024;
/// Idle upstream connections kept per upstream.
const MAX_IDLE: usize = 256;
/// How long an idle pooled upstream connection may be reused.
const IDLE_FOR: Duration = Duration::from_secs(30);
/// An upstream connection idle longer than this is checked for a close before reuse.
const CHECK_AFTER: Duration = Duration::from_secs(1);
/// Bound on establishing an upstream connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why [`copy_exact`] stopped.
enum CopyFail {
    /// Reading failed, the stream ended early, or nothing came within the idle bound.
    Read(io::Error),
    /// Writing failed or made no progress within the idle bound.
    Write(io::Error),
}

/// `f`, bounded by `bound` when there is one (`TimedOut` past it). `f` is polled once
/// first: a step that completes at once (most writes) arms no timer.
async fn within<T>(bound: Option<Duration>, f: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    let Some(d) = bound else { return f.await };
    tokio::pin!(f);
    if let Poll::Ready(r) = std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await {
        return r;
    }
    tokio::time::timeout(d, f).await.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// Copy exactly `left` bytes from `from` to `to` through `buf`, each read and each write
/// within the bound of `clock` when given; the stream ending first is an `UnexpectedEof`
/// read error.
async fn copy_exact<R, W>(
    from: &mut R,
    to: &mut W,
    buf: &mut Vec<u8>,
    mut left: u64,
    mut clock: Option<&mut BodyClock>,
) -> Result<(), CopyFail>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    buf.resize(IO_CHUNK, 0);
    while left > 0 {
        let want = left.min(IO_CHUNK as u64) as usize;
        let bound = clock.as_ref().map(|c| c.bound());
        let got = within(bound, from.read(&mut buf[..want])).await.map_err(CopyFail::Read)?;
        if got == 0 {
            return Err(CopyFail::Read(io::ErrorKind::UnexpectedEof.into()));
        }
        if let Some(c) = clock.as_mut() {
            c.moved(got);
        }
        let bound = clock.as_ref().map(|c| c.bound());
        within(bound, to.write_all(&buf[..got])).await.map_err(CopyFail::Write)?;
        left -= got as u64;
    }
    Ok(())
}

/// A request body that stopped: a client too slow is answered 408, an upstream that
/// takes nothing more 504; a client that went away gets no answer, an upstream that
/// failed 502.
fn body_failure(e: CopyFail) -> SendFail {
    match e {
        CopyFail::Read(e) if e.kind() == io::ErrorKind::TimedOut => SendFail::Body(ReasonCode::RequestTimeout),
        CopyFail::Read(_) => SendFail::ClientGone,
        CopyFail::Write(e) if e.kind() == io::ErrorKind::TimedOut => SendFail::Body(ReasonCode::UpstreamTimeout),
        CopyFail::Write(_) => SendFail::Io,
    }
}

// ---------------------------------------------------------------------------------------
// Upstream connections

/// An upstream connection and what it has read past the last response.
struct UpConn {
    route: usize,
    stream: TcpStream,
    buf: Buf,
    used: Instant,
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

    fn park(&self, c: UpConn) {
        let mut idle = self.pools[c.route].1.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    fn pooled(&self, route: usize) -> Option<UpConn> {
        let mut idle = self.pools[route].1.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if c.used.elapsed() < IDLE_FOR && still_open(&c.stream) {
                return Some(c);
            }
        }
        None
    }

    async fn connect(&self, route: usize) -> io::Result<UpConn> {
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
fn still_open(s: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

// ---------------------------------------------------------------------------------------
// Buffers

/// A read buffer: bytes read but not yet consumed are `data[start..end]`.
struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf { data: Vec::new(), start: 0, end: 0 }
    }

    fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Read once more from `s`, keeping at most `max` unconsumed bytes; `Ok(0)` at end of
    /// file, an error when `max` bytes are buffered already.
    async fn fill<S: AsyncRead + Unpin>(&mut self, s: &mut S, max: usize) -> io::Result<usize> {
        if self.end - self.start >= max {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "buffer full"));
        }
        if self.start > 0 && self.data.len() - self.end < 4096 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.data.len() - self.end < 4096 {
            let want = (self.data.len() * 2).clamp(8192, max.max(8192) + 4096);
            self.data.resize(want.max(self.end + 4096), 0);
        }
        let n = s.read(&mut self.data[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

/// The client's socket with bytes already read put back in front (for handing an HTTP/2
/// connection to hyper after sniffing its preface).
pub struct Rewind {
    pre: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl Rewind {
    /// `pre` is read first, then `inner`.
    pub fn new(pre: Vec<u8>, inner: TcpStream) -> Rewind {
        Rewind { pre, pos: 0, inner }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.pos < self.pre.len() {
            let n = (self.pre.len() - self.pos).min(buf.remaining());
            let pos = self.pos;
            buf.put_slice(&self.pre[pos..pos + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------
// Request heads

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// Why a request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP/1.x, a bad field, a bad target, conflicting framing: 400.
    Malformed,
    /// Larger than [`MAX_HEAD`] or more than [`MAX_HEADERS`] fields: 431.
    TooLarge,
}

/// What the gateway needs to know about a request head.
#[derive(Debug)]
pub struct RequestInfo<'h> {
    /// Method.
    pub method: &'h str,
    /// HTTP/1.0 (0) or HTTP/1.1 (1).
    pub version: u8,
    /// The target as sent (origin-form, or the path of an absolute-form target).
    pub target: &'h str,
    /// Path part of the target.
    pub path: &'h str,
    /// Query part, without `?`.
    pub query: Option<&'h str>,
    /// The addressed host: the absolute-form target's authority, else `Host`.
    pub authority: &'h str,
    /// Body framing.
    pub body: Framing,
    /// Whether the client keeps the connection open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// An upgrade (`Connection: upgrade` and `Upgrade`) is asked for.
    pub upgrade: bool,
    /// Lower-case header names the `Connection` header lists (hop-by-hop for this message).
    pub connection_tokens: Vec<String>,
}

/// A `Content-Length` value: digits only.
fn content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Framing from `Transfer-Encoding` / `Content-Length` fields, shared by requests and
/// responses. `Ok(None)`: neither present.
fn body_framing(headers: &[httparse::Header<'_>]) -> Result<Option<Framing>, HeadError> {
    let mut length: Option<u64> = None;
    let mut codings: Vec<String> = Vec::new();
    let mut te = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value).ok_or(HeadError::Malformed)?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
            list_tokens(h.value, &mut codings);
        }
    }
    if te {
        // Only `chunked`, once, as the last (only) coding; never together with a length.
        if length.is_some() || codings.len() != 1 || codings[0] != "chunked" {
            return Err(HeadError::Malformed);
        }
        return Ok(Some(Framing::Chunked));
    }
    Ok(length.map(|n| if n == 0 { Framing::None } else { Framing::Length(n) }))
}

/// Check a parsed request head and read what the gateway needs from it.
pub fn analyse<'h>(req: &httparse::Request<'h, '_>) -> Result<RequestInfo<'h>, HeadError> {
    let method = req.method.ok_or(HeadError::Malformed)?;
    let version = req.version.ok_or(HeadError::Malformed)?;
    let target = req.path.ok_or(HeadError::Malformed)?;
    if method == "CONNECT" {
        return Err(HeadError::Malformed); // no tunnels
    }
    let mut host: Option<&'h str> = None;
    let mut tokens = Vec::new();
    let mut upgrade_field = false;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Err(HeadError::Malformed);
            }
            host = Some(std::str::from_utf8(h.value).map_err(|_| HeadError::Malformed)?.trim());
        } else if name.eq_ignore_ascii_case("connection") {
            list_tokens(h.value, &mut tokens);
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_field = true;
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    let body = match body_framing(req.headers)? {
        Some(Framing::Chunked) if version == 0 => return Err(HeadError::Malformed),
        Some(f) => f,
        None => Framing::None,
    };
    // The target: origin-form, absolute-form (its authority is the host), or `*`.
    let (authority, path_and_query) = if target.starts_with('/') || (target == "*" && method == "OPTIONS") {
        match host {
            Some(h) => (h, target),
            // HTTP/1.1 requires `Host` (RFC 9112 §3.2); an HTTP/1.0 client may leave it out.
            None if version == 0 => ("", target),
            None => return Err(HeadError::Malformed),
        }
    } else {
        let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return Err(HeadError::Malformed);
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, pq) = rest.split_at(end);
        if authority.is_empty() || authority.contains('@') {
            return Err(HeadError::Malformed);
        }
        authority.parse::<hyper::http::uri::Authority>().map_err(|_| HeadError::Malformed)?;
        (authority, if pq.is_empty() { "/" } else { pq })
    };
    if path_and_query.starts_with('?') {
        return Err(HeadError::Malformed);
    }
    if path_and_query != "*" {
        // The same check hyper applies to a target (visible ASCII, no spaces).
        path_and_query.parse::<hyper::http::uri::PathAndQuery>().map_err(|_| HeadError::Malformed)?;
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let keep_alive =
        if version == 1 { !tokens.iter().any(|t| t == "close") } else { tokens.iter().any(|t| t == "keep-alive") };
    let upgrade = version == 1 && upgrade_field && tokens.iter().any(|t| t == "upgrade");
    Ok(RequestInfo {
        method,
        version,
        target: path_and_query,
        path,
        query,
        authority,
        body,
        keep_alive,
        expect_continue,
        upgrade,
        connection_tokens: tokens,
    })
}

// ---------------------------------------------------------------------------------------
// Chunked bodies

/// Where a chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk's data; this many bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    /// The body is complete.
    Done,
}

/// One step of decoding: data bytes to pass on, or how much framing was consumed.
#[derive(Debug, PartialEq, Eq)]
enum ChunkStep {
    /// `n` bytes of `input` are data.
    Data(usize),
    /// `n` bytes of `input` were framing.
    Framing(usize),
    /// More input is needed.
    NeedMore,
}

/// A chunk-size line, if `line` (without CRLF) is one: hex digits, then optional
/// extensions after `;`.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?.trim_ascii_end();
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// A line ending at the first LF of `input`, which must be preceded by CR: its length
/// without CRLF and the bytes it takes.
fn line(input: &[u8]) -> Result<Option<(usize, usize)>, HeadError> {
    match input.iter().position(|&b| b == b'\n') {
        Some(i) if i >= 1 && input[i - 1] == b'\r' => Ok(Some((i - 1, i + 1))),
        Some(_) => Err(HeadError::Malformed),
        None if input.len() > MAX_CHUNK_LINE => Err(HeadError::Malformed),
        None => Ok(None),
    }
}

impl ChunkState {
    fn step(&mut self, input: &[u8]) -> Result<ChunkStep, HeadError> {
        match *self {
            ChunkState::Done => Ok(ChunkStep::Framing(0)),
            ChunkState::Size => {
                let Some((len, used)) = line(input)? else { return Ok(ChunkStep::NeedMore) };
                let n = chunk_size(&input[..len]).ok_or(HeadError::Malformed)?;
                *self = if n == 0 { ChunkState::Trailers } else { ChunkState::Data(n) };
                Ok(ChunkStep::Framing(used))
            }
            ChunkState::Data(left) => {
                if input.is_empty() {
                    return Ok(ChunkStep::NeedMore);
                }
                let n = (input.len() as u64).min(left) as usize;
                *self = if n as u64 == left { ChunkState::DataEnd } else { ChunkState::Data(left - n as u64) };
                Ok(ChunkStep::Data(n))
            }
            ChunkState::DataEnd => match input {
                [b'\r', b'\n', ..] => {
                    *self = ChunkState::Size;
                    Ok(ChunkStep::Framing(2))
                }
                [] | [b'\r'] => Ok(ChunkStep::NeedMore),
                _ => Err(HeadError::Malformed),
            },
            ChunkState::Trailers => {
                let Some((len, used)) = line(input)? else { return Ok(ChunkStep::NeedMore) };
                if len == 0 {
                    *self = ChunkState::Done;
                }
                Ok(ChunkStep::Framing(used))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Writing

fn status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn canonical_reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("")
}

/// The bytes of one of the gateway's own answers.
fn reply_bytes(out: &mut Vec<u8>, r: &Reply, close: bool, head_only: bool) {
    status_line(out, r.status, canonical_reason(r.status));
    for (k, v) in &r.headers {
        field(out, k.as_bytes(), v.as_bytes());
    }
    field(out, b"content-length", itoa::Buffer::new().format(r.body.len()).as_bytes());
    crate::date::with_now(|d| field(out, b"date", d.as_bytes()));
    if close {
        field(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&r.body);
    }
}

fn chunk_header(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
}

/// Whether a header of a message must not be passed on: hop-by-hop, or named by its
/// `Connection` header, or framing (the gateway frames what it sends).
fn is_hop(name: &str, tokens: &[String]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
        || name.eq_ignore_ascii_case("content-length")
        || tokens.iter().any(|t| t.eq_ignore_ascii_case(name))
}

// ---------------------------------------------------------------------------------------
// The connection

/// Why an exchange ended the connection.
enum End {
    /// Keep serving the client.
    KeepAlive,
    /// Close the client connection.
    Close,
}

struct Conn {
    gw: Arc<Gateway>,
    client: TcpStream,
    peer: SocketAddr,
    peer_text: String,
    inbuf: Buf,
    out: Vec<u8>,
    io: Vec<u8>,
    up: Option<UpConn>,
}

/// Serve the public listener until `shutdown`, then give open connections `drain` to
/// finish their exchanges.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let live = Arc::new(());
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
                let (gw, stop, token) = (gateway.clone(), shutdown.clone(), live.clone());
                tokio::spawn(async move {
                    connection(gw, stream, peer, stop).await;
                    drop(token);
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let deadline = Instant::now() + drain;
    while Arc::strong_count(&live) > 1 {
        if Instant::now() >= deadline {
            tracing::warn!(open = Arc::strong_count(&live) - 1, "drain timeout; closing remaining connections");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!("all connections drained");
}

/// One client connection.
async fn connection(gw: Arc<Gateway>, client: TcpStream, peer: SocketAddr, mut shutdown: watch::Receiver<bool>) {
    let _ = client.set_nodelay(true);
    let mut c = Conn {
        gw,
        client,
        peer,
        peer_text: peer.ip().to_string(),
        inbuf: Buf::new(),
        out: Vec::with_capacity(2048),
        io: Vec::new(),
        up: None,
    };
    let header_timeout = Duration::from_secs(c.gw.config.limits.header_timeout_secs);
    let mut first = true;
    loop {
        // The next request head: within the header timeout; an idle connection closes on
        // shutdown.
        let head_len = {
            let idle = c.inbuf.filled().is_empty();
            let read = read_head(&mut c.client, &mut c.inbuf);
            tokio::pin!(read);
            let timeout = tokio::time::sleep(header_timeout);
            tokio::pin!(timeout);
            tokio::select! {
                r = &mut read => r,
                _ = &mut timeout => Ok(HeadRead::Closed),
                _ = shutdown.changed(), if idle => Ok(HeadRead::Closed),
            }
        };
        let refused = match head_len {
            Ok(HeadRead::Complete(n)) => {
                first = false;
                Ok(n)
            }
            Ok(HeadRead::Closed) | Err(_) => break,
            Ok(HeadRead::Http2) if first => {
                let read = c.inbuf.filled().to_vec();
                crate::server::serve_h2(c.gw.clone(), c.client, read, peer, shutdown).await;
                return;
            }
            Ok(HeadRead::Http2) => Err(HeadError::Malformed),
            Ok(HeadRead::Refused(e)) => Err(e),
        };
        let head_len = match refused {
            Ok(n) => n,
            Err(e) => {
                c.refuse_head(e).await;
                break;
            }
        };
        let head = c.inbuf.filled()[..head_len].to_vec();
        c.inbuf.consume(head_len);
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut fields);
        let info = match parsed.parse(&head) {
            Ok(httparse::Status::Complete(_)) => analyse(&parsed),
            _ => Err(HeadError::Malformed),
        };
        let end = match info {
            Ok(info) => {
                let stopping = *shutdown.borrow();
                c.exchange(&info, parsed.headers, stopping).await
            }
            Err(e) => {
                c.refuse_head(e).await;
                End::Close
            }
        };
        let stopping = *shutdown.borrow();
        if matches!(end, End::Close) || stopping {
            break;
        }
    }
    if let Some(up) = c.up.take() {
        c.gw.raw_upstreams.park(up);
    }
}

/// The result of reading a request head.
enum HeadRead {
    /// A complete head of this many bytes is at the front of the buffer.
    Complete(usize),
    /// The client closed (or nothing arrived in time) between requests.
    Closed,
    /// The HTTP/2 connection preface.
    Http2,
    /// A head that cannot be accepted.
    Refused(HeadError),
}

/// The start of the HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

async fn read_head(client: &mut TcpStream, buf: &mut Buf) -> io::Result<HeadRead> {
    loop {
        let data = buf.filled();
        if !data.is_empty() {
            if data.len() >= 16 && data.starts_with(&H2_PREFACE[..16]) {
                return Ok(HeadRead::Http2);
            }
            if data.len() < 16 && H2_PREFACE.starts_with(data) {
                match buf.fill(client, MAX_HEAD).await {
                    Ok(0) => return Ok(HeadRead::Refused(HeadError::Malformed)),
                    Ok(_) => continue,
                    Err(e) => return Err(e),
                }
            }
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut fields);
            match req.parse(data) {
                Ok(httparse::Status::Complete(n)) => return Ok(HeadRead::Complete(n)),
                Ok(httparse::Status::Partial) if data.len() >= MAX_HEAD => {
                    return Ok(HeadRead::Refused(HeadError::TooLarge))
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => return Ok(HeadRead::Refused(HeadError::TooLarge)),
                Err(_) => return Ok(HeadRead::Refused(HeadError::Malformed)),
            }
        }
        match buf.fill(client, MAX_HEAD).await {
            Ok(0) if buf.filled().is_empty() => return Ok(HeadRead::Closed),
            Ok(0) => return Ok(HeadRead::Refused(HeadError::Malformed)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::OutOfMemory => return Ok(HeadRead::Refused(HeadError::TooLarge)),
            Err(e) => return Err(e),
        }
    }
}

/// Why the upstream part of an exchange failed.
#[derive(Clone, Copy)]
enum UpFail {
    /// Nothing reached the client yet: answer with this.
    Answer(ReasonCode),
    /// The exchange broke after the response started: close the client connection.
    Broken,
}

impl Conn {
    /// Answer a head that cannot be accepted (the connection then closes).
    async fn refuse_head(&mut self, e: HeadError) {
        let reason = match e {
            HeadError::TooLarge => ReasonCode::HeadersTooLarge,
            HeadError::Malformed => ReasonCode::RequestMalformed,
        };
        let r = self.gw.refuse("deny", reason);
        self.send_reply(&r, true, false).await;
    }

    async fn send_reply(&mut self, r: &Reply, close: bool, head_only: bool) -> End {
        self.out.clear();
        reply_bytes(&mut self.out, r, close, head_only);
        match self.client.write_all(&self.out).await {
            Ok(()) if !close => End::KeepAlive,
            _ => End::Close,
        }
    }

    /// Read and drop a refused request's body, if small enough to keep the connection
    /// (and sent quickly enough: the body clock, with the header timeout as its bound).
    async fn discard_body(&mut self, info: &RequestInfo<'_>) -> bool {
        match info.body {
            Framing::None => true,
            Framing::Length(n) if n <= DISCARD_MAX && !info.expect_continue => {
                let mut clock = BodyClock::new(Duration::from_secs(self.gw.config.limits.header_timeout_secs));
                let mut left = n;
                while left > 0 {
                    let have = self.inbuf.filled().len() as u64;
                    if have > 0 {
                        let take = have.min(left);
                        self.inbuf.consume(take as usize);
                        left -= take;
                        continue;
                    }
                    match within(Some(clock.bound()), self.inbuf.fill(&mut self.client, IO_CHUNK)).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => clock.moved(n),
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// One request: decide, then answer or forward.
    async fn exchange(&mut self, info: &RequestInfo<'_>, fields: &[httparse::Header<'_>], stopping: bool) -> End {
        let pairs: Vec<(&str, &[u8])> = fields.iter().map(|h| (h.name, h.value)).collect();
        let view = HeadView {
            method: info.method,
            authority: info.authority,
            path: info.path,
            query: info.query,
            headers: &pairs,
            content_length: match info.body {
                Framing::Length(n) => Some(n),
                _ => None,
            },
            peer: self.peer,
            peer_text: &self.peer_text,
        };
        let head_only = info.method == "HEAD";
        let forward = match self.gw.decide(&view) {
            Outcome::Reply(r) => {
                let keep = info.keep_alive && !stopping && self.discard_body(info).await;
                return self.send_reply(&r, !keep, head_only).await;
            }
            Outcome::Forward(f) => f,
        };
        let keep_client = info.keep_alive && !stopping;
        let timeout = Duration::from_secs(self.gw.config.limits.upstream_timeout_secs);
        match self.forward(info, fields, &forward, keep_client, timeout).await {
            Ok(end) => end,
            Err(UpFail::Answer(reason)) => {
                let r = self.gw.refuse("error", reason);
                self.send_reply(&r, true, head_only).await
            }
            Err(UpFail::Broken) => End::Close,
        }
    }

    /// The upstream request head for `info`.
    fn upstream_head(&mut self, info: &RequestInfo<'_>, fields: &[httparse::Header<'_>], f: &Forward) {
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(info.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(info.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut xff: Vec<&[u8]> = Vec::new();
        let mut host = false;
        for h in fields {
            let name = h.name;
            if name.eq_ignore_ascii_case("x-forwarded-for") {
                let v = h.value.trim_ascii();
                if !v.is_empty() {
                    xff.push(v);
                }
                continue;
            }
            // Content-Length too: the gateway frames what it sends.
            if !passes_on(&f.bundle.engine, name, &info.connection_tokens, info.upgrade)
                || name.eq_ignore_ascii_case("content-length")
            {
                continue;
            }
            host |= name.eq_ignore_ascii_case("host");
            field(out, name.as_bytes(), h.value);
        }
        if !host && !info.authority.is_empty() {
            field(out, b"host", info.authority.as_bytes());
        }
        for (k, v) in &f.identity_headers {
            field(out, k.as_bytes(), v.as_bytes());
        }
        let peer = &self.peer_text;
        out.extend_from_slice(b"x-forwarded-for: ");
        for v in xff {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(peer.as_bytes());
        out.extend_from_slice(b"\r\n");
        match info.body {
            Framing::Length(n) => field(out, b"content-length", itoa::Buffer::new().format(n).as_bytes()),
            Framing::Chunked => field(out, b"transfer-encoding", b"chunked"),
            Framing::None | Framing::Close => {}
        }
        out.extend_from_slice(b"\r\n");
    }

    /// An upstream connection for `route`: the one this client holds, a pooled one, or a
    /// new one; whether it was reused.
    async fn upstream(&mut self, route: usize) -> io::Result<(UpConn, bool)> {
        if let Some(up) = self.up.take() {
            if up.route == route && (up.used.elapsed() < CHECK_AFTER || still_open(&up.stream)) {
                return Ok((up, true));
            }
            if up.route != route {
                self.gw.raw_upstreams.park(up);
            }
        }
        if let Some(up) = self.gw.raw_upstreams.pooled(route) {
            return Ok((up, true));
        }
        Ok((self.gw.raw_upstreams.connect(route).await?, false))
    }

    async fn forward(
        &mut self,
        info: &RequestInfo<'_>,
        fields: &[httparse::Header<'_>],
        f: &Forward,
        keep_client: bool,
        timeout: Duration,
    ) -> Result<End, UpFail> {
        self.upstream_head(info, fields, f);
        // Stream the request, its body bounded by the body clock (each step within the
        // body timeout and an average rate kept: a slow upload that keeps moving passes, a
        // trickle does not); then the response head within the upstream timeout. A reused connection
        // that fails before the response starts, for a request without a body, is replaced
        // once.
        let timed_out = (UpFail::Answer(ReasonCode::UpstreamTimeout), false);
        let mut attempt = 0;
        let (mut up, status) = loop {
            attempt += 1;
            let step = async {
                // (A new connection is bounded by CONNECT_TIMEOUT.)
                let (mut up, reused) = self.upstream(f.route).await.map_err(|e| {
                    tracing::warn!(error = %e, route = f.route, "upstream connect failed");
                    (UpFail::Answer(ReasonCode::UpstreamUnavailable), false)
                })?;
                match self.send_request(info, &mut up).await {
                    Ok(()) => {}
                    Err(SendFail::Body(reason)) => return Err((UpFail::Answer(reason), false)),
                    Err(SendFail::ClientGone) => return Err((UpFail::Broken, false)),
                    Err(SendFail::Io) => return Err((UpFail::Answer(ReasonCode::UpstreamUnavailable), reused)),
                }
                match tokio::time::timeout(timeout, read_response_head(&mut up)).await {
                    Err(_) => Err(timed_out),
                    Ok(Ok(Some(n))) => Ok((up, n)),
                    Ok(Ok(None)) => Err((UpFail::Answer(ReasonCode::UpstreamUnavailable), reused)),
                    Ok(Err(())) => Err((UpFail::Answer(ReasonCode::UpstreamUnavailable), false)),
                }
            }
            .await;
            match step {
                Ok(ok) => break ok,
                Err((_, true)) if attempt == 1 && info.body == Framing::None => continue,
                Err((fail, _)) => return Err(fail),
            }
        };
        let _ = status;
        self.relay_response(info, f, &mut up, keep_client).await.map(|(end, reusable)| {
            if reusable {
                up.used = Instant::now();
                self.up = Some(up);
            }
            end
        })
    }

    /// Write the request head and stream the body to the upstream.
    async fn send_request(&mut self, info: &RequestInfo<'_>, up: &mut UpConn) -> Result<(), SendFail> {
        if info.expect_continue && info.body != Framing::None {
            self.client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.map_err(|_| SendFail::Io)?;
        }
        // Let every other connection with a request ready decide first, so that requests
        // reach the upstream in a burst: one wakeup of the upstream for many requests, not
        // one each (with the upstream on the same CPU, that halves context switches).
        tokio::task::yield_now().await;
        // Every read of the body and every write to the upstream is bounded by the body
        // clock (a write that completes at once arms no timer).
        let mut clock = BodyClock::new(Duration::from_secs(self.gw.config.limits.body_timeout_secs));
        let up_write = |e| body_failure(CopyFail::Write(e));
        match info.body {
            Framing::None | Framing::Close => {
                within(Some(clock.bound()), up.stream.write_all(&self.out)).await.map_err(up_write)
            }
            Framing::Length(n) => {
                // Head and whatever part of the body is here already, in one write.
                let here = (self.inbuf.filled().len() as u64).min(n) as usize;
                self.out.extend_from_slice(&self.inbuf.filled()[..here]);
                self.inbuf.consume(here);
                clock.moved(here);
                within(Some(clock.bound()), up.stream.write_all(&self.out)).await.map_err(up_write)?;
                copy_exact(&mut self.client, &mut up.stream, &mut self.io, n - here as u64, Some(&mut clock))
                    .await
                    .map_err(body_failure)
            }
            Framing::Chunked => {
                within(Some(clock.bound()), up.stream.write_all(&self.out)).await.map_err(up_write)?;
                // Data and framing (chunk lines, extensions, trailers) count against the
                // body limit; the trailer section also against the head limit.
                let limit = self.gw.config.limits.max_body_bytes;
                let mut total: u64 = 0;
                let mut trailers: usize = 0;
                let mut state = ChunkState::Size;
                loop {
                    if state == ChunkState::Done {
                        return within(Some(clock.bound()), up.stream.write_all(b"0\r\n\r\n")).await.map_err(up_write);
                    }
                    let step =
                        state.step(self.inbuf.filled()).map_err(|_| SendFail::Body(ReasonCode::RequestMalformed))?;
                    match step {
                        ChunkStep::Data(n) => {
                            total += n as u64;
                            if total > limit {
                                return Err(SendFail::Body(ReasonCode::BodyTooLarge));
                            }
                            self.out.clear();
                            chunk_header(&mut self.out, n);
                            self.out.extend_from_slice(&self.inbuf.filled()[..n]);
                            self.out.extend_from_slice(b"\r\n");
                            self.inbuf.consume(n);
                            within(Some(clock.bound()), up.stream.write_all(&self.out)).await.map_err(up_write)?;
                        }
                        ChunkStep::Framing(n) => {
                            total += n as u64;
                            if state == ChunkState::Trailers || state == ChunkState::Done {
                                trailers += n;
                                if trailers > MAX_HEAD {
                                    return Err(SendFail::Body(ReasonCode::HeadersTooLarge));
                                }
                            }
                            if total > limit {
                                return Err(SendFail::Body(ReasonCode::BodyTooLarge));
                            }
                            self.inbuf.consume(n)
                        }
                        ChunkStep::NeedMore => {
                            match within(Some(clock.bound()), self.inbuf.fill(&mut self.client, IO_CHUNK)).await {
                                Ok(0) => return Err(SendFail::ClientGone),
                                Err(e) => return Err(body_failure(CopyFail::Read(e))),
                                Ok(n) => clock.moved(n),
                            }
                        }
                    }
                }
            }
        }
    }

    /// Pass the response on to the client. Returns how the client connection goes on and
    /// whether the upstream connection can be reused.
    async fn relay_response(
        &mut self,
        info: &RequestInfo<'_>,
        f: &Forward,
        up: &mut UpConn,
        keep_client: bool,
    ) -> Result<(End, bool), UpFail> {
        loop {
            let head_len = match find_response_head(up.buf.filled()) {
                Ok(Some(n)) => n,
                _ => return Err(UpFail::Answer(ReasonCode::UpstreamUnavailable)),
            };
            let head = up.buf.filled()[..head_len].to_vec();
            up.buf.consume(head_len);
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut fields);
            if !matches!(resp.parse(&head), Ok(httparse::Status::Complete(_))) {
                return Err(UpFail::Answer(ReasonCode::UpstreamUnavailable));
            }
            let status = resp.code.unwrap_or(0);
            let version = resp.version.unwrap_or(0);
            let mut tokens = Vec::new();
            for h in resp.headers.iter() {
                if h.name.eq_ignore_ascii_case("connection") {
                    list_tokens(h.value, &mut tokens);
                }
            }
            // Informational answers (103 Early Hints, ...) go on as they are; the final one follows.
            if (100..200).contains(&status) && status != 101 {
                self.out.clear();
                status_line(&mut self.out, status, resp.reason.unwrap_or(""));
                for h in resp.headers.iter() {
                    if !is_hop(h.name, &tokens) {
                        field(&mut self.out, h.name.as_bytes(), h.value);
                    }
                }
                self.out.extend_from_slice(b"\r\n");
                self.client.write_all(&self.out).await.map_err(|_| UpFail::Broken)?;
                if up.buf.filled().is_empty() || find_response_head(up.buf.filled()) == Ok(None) {
                    match read_response_head(up).await {
                        Ok(Some(_)) => {}
                        _ => return Err(UpFail::Broken),
                    }
                }
                continue;
            }
            if status == 101 {
                if !info.upgrade {
                    return Err(UpFail::Answer(ReasonCode::UpstreamUnavailable));
                }
                self.out.clear();
                status_line(&mut self.out, 101, resp.reason.unwrap_or("Switching Protocols"));
                for h in resp.headers.iter() {
                    field(&mut self.out, h.name.as_bytes(), h.value);
                }
                self.out.extend_from_slice(b"\r\n");
                self.out.extend_from_slice(up.buf.filled());
                self.client.write_all(&self.out).await.map_err(|_| UpFail::Broken)?;
                let early = self.inbuf.filled().to_vec();
                self.inbuf.consume(early.len());
                if up.stream.write_all(&early).await.is_err() {
                    return Err(UpFail::Broken);
                }
                let _ = tokio::io::copy_bidirectional(&mut self.client, &mut up.stream).await;
                return Ok((End::Close, false));
            }
            let no_body = info.method == "HEAD" || status == 204 || status == 304;
            let framing = if no_body {
                Framing::None
            } else {
                match body_framing(resp.headers) {
                    Ok(Some(f)) => f,
                    Ok(None) => Framing::Close,
                    Err(_) => return Err(UpFail::Answer(ReasonCode::UpstreamUnavailable)),
                }
            };
            let upstream_keep = framing != Framing::Close
                && !tokens.iter().any(|t| t == "close")
                && (version == 1 || tokens.iter().any(|t| t == "keep-alive"));
            // To the client: its own framing (chunked to an HTTP/1.1 client when the
            // upstream's body has no length; close-delimited to an HTTP/1.0 one).
            let to_client = match framing {
                Framing::Chunked | Framing::Close if info.version == 1 => Framing::Chunked,
                Framing::Chunked | Framing::Close => Framing::Close,
                other => other,
            };
            let keep = keep_client && to_client != Framing::Close;
            self.out.clear();
            status_line(&mut self.out, status, resp.reason.unwrap_or(""));
            for h in resp.headers.iter() {
                if is_hop(h.name, &tokens) || f.response_headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(h.name)) {
                    continue;
                }
                field(&mut self.out, h.name.as_bytes(), h.value);
            }
            for (k, v) in &f.response_headers {
                field(&mut self.out, k.as_bytes(), v.as_bytes());
            }
            match to_client {
                Framing::Length(n) => field(&mut self.out, b"content-length", itoa::Buffer::new().format(n).as_bytes()),
                Framing::Chunked => field(&mut self.out, b"transfer-encoding", b"chunked"),
                Framing::None => {
                    // A HEAD or 304 answer states the length the full answer would have.
                    if status != 204 {
                        if let Some(h) = resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length")) {
                            field(&mut self.out, b"content-length", h.value);
                        }
                    }
                }
                Framing::Close => {}
            }
            if !keep {
                field(&mut self.out, b"connection", b"close");
            } else if info.version == 0 {
                field(&mut self.out, b"connection", b"keep-alive");
            }
            self.out.extend_from_slice(b"\r\n");
            let reusable = self.relay_body(up, framing, to_client).await?;
            return Ok((if keep { End::KeepAlive } else { End::Close }, reusable && upstream_keep));
        }
    }

    /// Stream the response body (the head is in `self.out`, unsent). Returns whether the
    /// upstream connection ended the body cleanly (and so may be reused).
    async fn relay_body(&mut self, up: &mut UpConn, from: Framing, to: Framing) -> Result<bool, UpFail> {
        match from {
            Framing::None => {
                self.client.write_all(&self.out).await.map_err(|_| UpFail::Broken)?;
                Ok(up.buf.filled().is_empty())
            }
            Framing::Length(n) => {
                // The common case: the whole body came with the head; one write.
                let here = (up.buf.filled().len() as u64).min(n) as usize;
                self.out.extend_from_slice(&up.buf.filled()[..here]);
                up.buf.consume(here);
                self.client.write_all(&self.out).await.map_err(|_| UpFail::Broken)?;
                copy_exact(&mut up.stream, &mut self.client, &mut self.io, n - here as u64, None)
                    .await
                    .map_err(|_| UpFail::Broken)?;
                Ok(up.buf.filled().is_empty())
            }
            Framing::Chunked => {
                let mut state = ChunkState::Size;
                loop {
                    if state == ChunkState::Done {
                        if to == Framing::Chunked {
                            self.out.extend_from_slice(b"0\r\n\r\n");
                        }
                        self.client.write_all(&self.out).await.map_err(|_| UpFail::Broken)?;
                        return Ok(up.buf.filled().is_empty());
                    }
                    match state.step(up.buf.filled()).map_err(|_| UpFail::Broken)? {
                        ChunkStep::Data(n) => {
                            if to == Framing::Chunked {
                                chunk_header(&mut self.out, n);
                            }
                            self.out.extend_from_slice(&up.buf.filled()[..n]);
                            if to == Framing::Chunked {
                                self.out.extend_from_slice(b"\r\n");
                            }
                            up.buf.consume(n);
                        }
                        ChunkStep::Framing(n) => up.buf.consume(n),
                        ChunkStep::NeedMore => {
                            // Send what is gathered before waiting for more.
                            if !self.out.is_empty() {
                                self.client.write_all(&self.out).await.map_err(|_| UpFail::Broken)?;
                                self.out.clear();
                            }
                            match up.buf.fill(&mut up.stream, IO_CHUNK).await {
                                Ok(0) | Err(_) => return Err(UpFail::Broken),
                                Ok(_) => {}
                            }
                        }
                    }
                }
            }
            Framing::Close => {
                loop {
                    let data = up.buf.filled();
                    if !data.is_empty() {
                        if to == Framing::Chunked {
                            chunk_header(&mut self.out, data.len());
                            self.out.extend_from_slice(data);
                            self.out.extend_from_slice(b"\r\n");
                        } else {
                            self.out.extend_from_slice(data);
                        }
                        let n = data.len();
                        up.buf.consume(n);
                    }
                    if !self.out.is_empty() {
                        self.client.write_all(&self.out).await.map_err(|_| UpFail::Broken)?;
                        self.out.clear();
                    }
                    match up.buf.fill(&mut up.stream, IO_CHUNK).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(_) => return Err(UpFail::Broken),
                    }
                }
                if to == Framing::Chunked {
                    self.client.write_all(b"0\r\n\r\n").await.map_err(|_| UpFail::Broken)?;
                }
                Ok(false)
            }
        }
    }
}

/// Why sending the request upstream failed.
enum SendFail {
    /// The upstream connection failed.
    Io,
    /// The client went away in the middle of its body.
    ClientGone,
    /// The client's body was refused (too large, malformed chunks).
    Body(ReasonCode),
}

/// Where a complete response head ends in `data`, if it is there.
fn find_response_head(data: &[u8]) -> Result<Option<usize>, ()> {
    if data.is_empty() {
        return Ok(None);
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    match resp.parse(data) {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if data.len() < MAX_HEAD => Ok(None),
        _ => Err(()),
    }
}

/// Read until a complete response head is buffered. `Ok(None)`: the connection closed
/// before any byte of it (a stale connection); `Err`: a malformed or oversized head, or
/// a close in the middle of one.
async fn read_response_head(up: &mut UpConn) -> Result<Option<usize>, ()> {
    loop {
        match find_response_head(up.buf.filled())? {
            Some(n) => return Ok(Some(n)),
            None => match up.buf.fill(&mut up.stream, MAX_HEAD).await {
                Ok(0) if up.buf.filled().is_empty() => return Ok(None),
                Ok(0) => return Err(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory => return Err(()),
                Err(_) if up.buf.filled().is_empty() => return Ok(None),
                Err(_) => return Err(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<(Framing, bool, String, Option<String>, String), HeadError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut fields);
        match req.parse(raw.as_bytes()) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(HeadError::Malformed),
        }
        let i = analyse(&req)?;
        Ok((i.body, i.keep_alive, i.path.to_string(), i.query.map(str::to_string), i.authority.to_string()))
    }

    #[test]
    fn request_heads() {
        let (f, keep, path, query, host) = parse("GET /a/b?x=1 HTTP/1.1\r\nHost: acme.test\r\n\r\n").unwrap();
        assert_eq!(
            (f, keep, path.as_str(), query.as_deref(), host.as_str()),
            (Framing::None, true, "/a/b", Some("x=1"), "acme.test")
        );
        let (f, keep, ..) =
            parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!((f, keep), (Framing::Length(5), false));
        let (f, ..) = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(f, Framing::Chunked);
        // HTTP/1.0: close unless asked to keep alive; Host optional.
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().1);
        assert!(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().1);
        // Absolute-form: the target's authority is the host.
        let (_, _, path, _, host) = parse("GET http://acme.test:8080/x?y HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
        assert_eq!((path.as_str(), host.as_str()), ("/x", "acme.test:8080"));
        // Identical repeated lengths are one length.
        assert_eq!(
            parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n").unwrap().0,
            Framing::Length(3)
        );
    }

    /// Request smuggling and other framing attacks: each refused.
    #[test]
    fn framing_attacks_are_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET ?x HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
        ] {
            assert!(parse(raw).is_err(), "accepted: {raw:?}");
        }
    }

    fn dechunk(input: &[u8]) -> Result<(Vec<u8>, usize), HeadError> {
        let mut state = ChunkState::Size;
        let mut data = Vec::new();
        let mut pos = 0;
        while state != ChunkState::Done {
            match state.step(&input[pos..])? {
                ChunkStep::Data(n) => {
                    data.extend_from_slice(&input[pos..pos + n]);
                    pos += n;
                }
                ChunkStep::Framing(n) => pos += n,
                ChunkStep::NeedMore => return Err(HeadError::TooLarge),
            }
        }
        Ok((data, pos))
    }

    #[test]
    fn chunked_bodies() {
        let (d, used) = dechunk(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT").unwrap();
        assert_eq!((d.as_slice(), used), (&b"hello world"[..], 44));
        assert_eq!(dechunk(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap().0, b"0123456789");
        // Byte by byte gives the same.
        let input = b"3\r\nabc\r\n0\r\n\r\n";
        let mut state = ChunkState::Size;
        let mut buf = Vec::new();
        let mut data = Vec::new();
        for b in input {
            buf.push(*b);
            loop {
                match state.step(&buf).unwrap() {
                    ChunkStep::Data(n) => {
                        data.extend_from_slice(&buf[..n]);
                        buf.drain(..n);
                    }
                    ChunkStep::Framing(n) if n > 0 => {
                        buf.drain(..n);
                    }
                    _ => break,
                }
            }
        }
        assert_eq!((data.as_slice(), state), (&b"abc"[..], ChunkState::Done));
        for bad in [
            &b"g\r\nx\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"-3\r\nabc\r\n0\r\n\r\n",
            b"+3\r\nabc\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b" 3\r\nabc\r\n0\r\n\r\n",
            b"\r\n",
        ] {
            assert!(matches!(dechunk(bad), Err(HeadError::Malformed)), "accepted {bad:?}");
        }
        // A chunk-size line without end is bounded.
        let long = [b'1'; MAX_CHUNK_LINE + 1];
        assert!(ChunkState::Size.step(&long).is_err());
    }

    #[test]
    fn response_heads() {
        assert_eq!(find_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), Ok(Some(38)));
        assert_eq!(find_response_head(b"HTTP/1.1 200 OK\r\nContent-"), Ok(None));
        assert!(find_response_head(b"HTTP/1.1 2x0 OK\r\n\r\n").is_err());
        let mut fields = [httparse::EMPTY_HEADER; 4];
        let mut r = httparse::Response::new(&mut fields);
        r.parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(body_framing(r.headers), Err(HeadError::Malformed));
    }
}
