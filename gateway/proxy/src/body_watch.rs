//! Progress of a request body on its way to the upstream, for the HTTP/2 front end (hyper
//! streams the body from its own connection task): when the body last moved, whether the
//! upstream side is waiting for the client, and whether the body has ended. The exchange
//! uses it to bound a body that stops moving (`limits.body_timeout_secs`) and to start the
//! upstream's response-head timeout only once the request has been passed on — the same
//! rules the HTTP/1.1 front end applies inline.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// What the exchange can read of a [`WatchedBody`].
#[derive(Debug)]
pub struct BodyProgress {
    start: Instant,
    /// Milliseconds since `start` at the last frame (or at the start).
    last_ms: AtomicU64,
    /// The body was asked for data and the client had none yet.
    waiting_for_client: AtomicBool,
    /// The body has ended (or there was none).
    ended: AtomicBool,
    ended_signal: tokio::sync::Notify,
}

/// Why a body stopped moving, once it has been still for longer than the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// The upstream side asked for more and the client sent nothing.
    Client,
    /// The upstream side did not ask for more (the upstream is not reading).
    Upstream,
}

impl BodyProgress {
    fn new(ended: bool) -> Arc<BodyProgress> {
        Arc::new(BodyProgress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            waiting_for_client: AtomicBool::new(false),
            ended: AtomicBool::new(ended),
            ended_signal: tokio::sync::Notify::new(),
        })
    }

    /// Whether the whole body has gone on its way.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Resolves once the body has ended.
    pub async fn wait_ended(&self) {
        loop {
            let notified = self.ended_signal.notified();
            if self.ended() {
                return;
            }
            notified.await;
        }
    }

    /// How long the body has not moved.
    pub fn still_for(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Acquire)))
    }

    /// Which side a stall is on.
    pub fn stall(&self) -> Stall {
        if self.waiting_for_client.load(Ordering::Acquire) {
            Stall::Client
        } else {
            Stall::Upstream
        }
    }

    fn moved(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Release);
    }

    fn end(&self) {
        self.ended.store(true, Ordering::Release);
        self.ended_signal.notify_waiters();
    }
}

/// A body that reports its progress to a [`BodyProgress`].
pub struct WatchedBody<B> {
    inner: B,
    progress: Arc<BodyProgress>,
}

impl<B: Body<Data = Bytes> + Unpin> WatchedBody<B> {
    /// Watch `inner`.
    pub fn new(inner: B) -> (WatchedBody<B>, Arc<BodyProgress>) {
        let progress = BodyProgress::new(inner.is_end_stream());
        (WatchedBody { inner, progress: progress.clone() }, progress)
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for WatchedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let p = &this.progress;
        match &polled {
            Poll::Pending => p.waiting_for_client.store(true, Ordering::Release),
            Poll::Ready(Some(Ok(_))) => {
                p.waiting_for_client.store(false, Ordering::Release);
                p.moved();
                if this.inner.is_end_stream() {
                    p.end();
                }
            }
            Poll::Ready(None) => p.end(),
            Poll::Ready(Some(Err(_))) => p.waiting_for_client.store(false, Ordering::Release),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for WatchedBody<B> {
    fn drop(&mut self) {
        // A body dropped unfinished (the upstream answered early, or the exchange ended)
        // is no longer on its way: nothing more to wait for.
        self.progress.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    /// A body fed by a channel: pending until the test sends a chunk, ended when the
    /// sender is dropped.
    struct ChanBody(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for ChanBody {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
        }
    }

    /// Whether one poll of `b` finds nothing ready.
    fn pending_once<B: Body + Unpin>(b: &mut B) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(b).poll_frame(&mut cx).is_pending()
    }

    #[tokio::test]
    async fn records_frames_waiting_and_the_end() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let (mut body, progress) = WatchedBody::new(ChanBody(rx));
        assert!(!progress.ended());
        // Asked for data, none there yet: the stall would be the client's.
        assert!(pending_once(&mut body));
        assert_eq!(progress.stall(), Stall::Client);
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), Bytes::from_static(b"abc"));
        // A frame went on and nobody asked for more: a stall now is the upstream's.
        assert_eq!(progress.stall(), Stall::Upstream);
        assert!(progress.still_for() < Duration::from_secs(1));
        drop(tx);
        assert!(body.frame().await.is_none());
        assert!(progress.ended());
        progress.wait_ended().await;
    }

    #[tokio::test]
    async fn an_empty_body_has_ended_and_a_dropped_one_ends() {
        let (_body, progress) = WatchedBody::new(Full::new(Bytes::new()));
        assert!(progress.ended());
        let (body, progress) = WatchedBody::new(Full::new(Bytes::from_static(b"x")));
        assert!(!progress.ended());
        drop(body);
        progress.wait_ended().await;
    }

    #[tokio::test]
    async fn still_for_grows_while_nothing_moves() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let (_body, progress) = WatchedBody::new(ChanBody(rx));
        std::thread::sleep(Duration::from_millis(30));
        assert!(progress.still_for() >= Duration::from_millis(30));
        drop(tx);
    }
}
