//! Buffered IO of the HTTP/1.1 front end: the read buffer heads and bodies are parsed
//! from, copies bounded by the body clock, and [`Rewind`] (sniffed bytes put back in
//! front of a socket).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::body::BodyClock;

/// Size of the buffer bodies stream through.
pub(super) const IO_CHUNK: usize = 64 * 1024;

/// Why [`copy_exact`] stopped.
pub(super) enum CopyFail {
    /// Reading failed, the stream ended early, or nothing came within the idle bound.
    Read(io::Error),
    /// Writing failed or made no progress within the idle bound.
    Write(io::Error),
}

/// `f`, bounded by `bound` when there is one (`TimedOut` past it). `f` is polled once
/// first: a step that completes at once (most writes) arms no timer.
pub(super) async fn within<T>(
    bound: Option<Duration>,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
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
pub(super) async fn copy_exact<R, W>(
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

/// A read buffer: bytes read but not yet consumed are `data[start..end]`.
pub(super) struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    pub(super) fn new() -> Buf {
        Buf { data: Vec::new(), start: 0, end: 0 }
    }

    pub(super) fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Read once more from `s`, keeping at most `max` unconsumed bytes; `Ok(0)` at end of
    /// file, an error when `max` bytes are buffered already.
    pub(super) async fn fill<S: AsyncRead + Unpin>(&mut self, s: &mut S, max: usize) -> io::Result<usize> {
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
