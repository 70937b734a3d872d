//! The connection task of the HTTP/1.1 front end: read a head, run the chain, answer or
//! forward, stream the bodies, and keep the upstream connection for the next request.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_core::ReasonCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::Instrument;

use crate::body::BodyClock;
use crate::gateway::{Forward, Gateway, HeadView, Outcome, RouteSet};
use gatehouse_core::wire::{self, ConnectionTokens, Reply};
use gatehouse_http1::{
    analyse, body_framing, find_request_head, find_response_head, ChunkState, ChunkStep, Framing, HeadError,
    RequestInfo, MAX_HEAD, MAX_HEADERS,
};

use super::io::{copy_exact, within, Buf, CopyFail, IO_CHUNK};
use super::pool::{still_open, UpConn, CHECK_AFTER};
use super::write::{chunk_header, field, is_framing, reply_bytes, request_head, status_line};

/// A refused request's body up to this size is read and dropped to keep the connection;
/// beyond it the connection is closed instead.
const DISCARD_MAX: u64 = 64 * 1024;

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
                let Some((stream, peer)) = crate::listen::accepted(accepted).await else { continue };
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
                crate::h2::serve(c.gw.clone(), c.client, read, peer, shutdown).await;
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
                let fields = parsed.headers.iter().map(|h| (h.name, h.value));
                match crate::trace::request_span(info.method, info.authority, info.path, peer.ip(), fields) {
                    None => c.exchange(&info, parsed.headers, stopping).await,
                    Some(span) => c.exchange(&info, parsed.headers, stopping).instrument(span).await,
                }
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
        c.gw.routes().raw_upstreams.park(up);
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
            match find_request_head(data) {
                Ok(Some(n)) => return Ok(HeadRead::Complete(n)),
                Ok(None) => {}
                Err(e) => return Ok(HeadRead::Refused(e)),
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
        crate::trace::responded(r.status);
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
            scheme: "http",
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
        let forward = match self.gw.run_chain(&view).await {
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

    /// An upstream connection for route `route` of `set`: the one this client holds, a
    /// pooled one, or a new one; whether it was reused.
    async fn upstream(&mut self, set: &RouteSet, route: usize) -> io::Result<(UpConn, bool)> {
        let pools = &set.raw_upstreams;
        if let Some(up) = self.up.take() {
            let same = pools.serves(&up, route);
            if same && (up.used.elapsed() < CHECK_AFTER || still_open(&up.stream)) {
                return Ok((up, true));
            }
            if !same {
                pools.park(up);
            }
        }
        if let Some(up) = pools.pooled(route) {
            return Ok((up, true));
        }
        Ok((pools.connect(route).await?, false))
    }

    async fn forward(
        &mut self,
        info: &RequestInfo<'_>,
        fields: &[httparse::Header<'_>],
        f: &Forward,
        keep_client: bool,
        timeout: Duration,
    ) -> Result<End, UpFail> {
        request_head(&mut self.out, info, fields, f, &self.peer_text);
        // Traced: the upstream's parent is the gateway's upstream span, never the client's.
        let traced = crate::trace::upstream_span(info.method, None);
        if let Some((_, outgoing)) = &traced {
            crate::trace::rewrite_head(&mut self.out, outgoing.as_ref());
        }
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
                let (mut up, reused) = self.upstream(&f.routes, f.route).await.map_err(|e| {
                    let request_id = crate::gateway::request_id(fields.iter().map(|h| (h.name, h.value)));
                    tracing::error!(error = %e, route = f.route, request_id, "upstream connect failed");
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
                Err((fail, _)) => {
                    crate::trace::upstream_failed(traced.as_ref().map(|(s, _)| s));
                    return Err(fail);
                }
            }
        };
        let _ = status;
        if let Some((span, _)) = &traced {
            crate::trace::upstream_answered(span, up.stream.peer_addr().ok(), up.buf.filled());
        }
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
            let fields = || resp.headers.iter().map(|h| (h.name, h.value));
            let connection = ConnectionTokens::of(fields());
            // Informational answers (103 Early Hints, ...) go on as they are; the final one follows.
            if (100..200).contains(&status) && status != 101 {
                self.out.clear();
                status_line(&mut self.out, status, resp.reason.unwrap_or(""));
                let out = &mut self.out;
                wire::response_headers(fields(), &[], |name, value| {
                    if !is_framing(name) {
                        field(out, name.as_bytes(), value);
                    }
                });
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
            crate::trace::responded(status);
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
                && !connection.contains("close")
                && (version == 1 || connection.contains("keep-alive"));
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
            let out = &mut self.out;
            wire::response_headers(fields(), &f.response_headers, |name, value| {
                if !is_framing(name) {
                    field(out, name.as_bytes(), value);
                }
            });
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

/// Read until a complete response head is buffered. `Ok(None)`: the connection closed
/// before any byte of it (a stale connection); `Err`: a malformed or oversized head, or
/// a close in the middle of one.
async fn read_response_head(up: &mut UpConn) -> Result<Option<usize>, ()> {
    loop {
        match find_response_head(up.buf.filled()).map_err(|_| ())? {
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
