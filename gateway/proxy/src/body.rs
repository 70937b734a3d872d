//! Time bounds of a request body on its way to the upstream, shared by both front ends.
//!
//! [`BodyClock`] is the rule: each read (or write) must make progress within
//! `limits.body_timeout_secs`, and the body as a whole must keep an average of at least
//! [`MIN_BODY_RATE`] bytes per second beyond that first allowance (as Apache's
//! `mod_reqtimeout` `MinRate`), so a slow upload that keeps moving passes and a trickle
//! cannot hold a connection for ever.
//!
//! [`WatchedBody`] applies it for the HTTP/2 front end, where hyper streams the body from
//! its own connection task: the body errors when the client is too slow, whoever polls
//! it, and reports its progress ([`BodyProgress`]) so that the exchange can tell an
//! upstream that stopped reading, and start the upstream's response-head timeout only
//! once the request has been passed on. The HTTP/1.1 front end applies the clock inline.
//!
//! [`Body`] is the body type of the hyper side (the HTTP/2 front end, its upstream
//! connections and the admin listener).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type of the HTTP/2 front end, its upstream connections and the admin listener.
pub type Body = BoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Lowest average rate a request body must keep, in bytes per second, once the first
/// body timeout has passed.
pub const MIN_BODY_RATE: u64 = 500;

/// The time bound of a request body's next read or write.
#[derive(Debug, Clone)]
pub struct BodyClock {
    start: Instant,
    idle: Duration,
    bytes: u64,
}

impl BodyClock {
    /// A clock for a body starting now, with `idle` as the body timeout.
    pub fn new(idle: Duration) -> BodyClock {
        BodyClock { start: Instant::now(), idle, bytes: 0 }
    }

    /// `n` more bytes of the body arrived.
    pub fn moved(&mut self, n: usize) {
        self.bytes += n as u64;
    }

    /// How long the next step may take: at most the body timeout, and no longer than the
    /// body's allowance (the body timeout plus one second per [`MIN_BODY_RATE`] bytes so
    /// far) leaves. Zero once the allowance is spent.
    pub fn bound(&self) -> Duration {
        let allowance = self.idle + Duration::from_millis(self.bytes.saturating_mul(1000) / MIN_BODY_RATE);
        allowance.saturating_sub(self.start.elapsed()).min(self.idle)
    }
}

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
    /// The body gave up on a client that was too slow.
    client_timed_out: AtomicBool,
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
            client_timed_out: AtomicBool::new(false),
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

    /// Whether the body failed because the client was too slow (answer 408).
    pub fn client_timed_out(&self) -> bool {
        self.client_timed_out.load(Ordering::Acquire)
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

/// A body bounded by a [`BodyClock`] that reports its progress to a [`BodyProgress`].
pub struct WatchedBody<B> {
    inner: B,
    progress: Arc<BodyProgress>,
    clock: BodyClock,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<B: HttpBody<Data = Bytes> + Unpin> WatchedBody<B> {
    /// Watch `inner`, with `idle` as the body timeout (needs the tokio runtime).
    pub fn new(inner: B, idle: Duration) -> (WatchedBody<B>, Arc<BodyProgress>) {
        let progress = BodyProgress::new(inner.is_end_stream());
        let clock = BodyClock::new(idle);
        let timer = Box::pin(tokio::time::sleep(clock.bound()));
        (WatchedBody { inner, progress: progress.clone(), clock, timer }, progress)
    }
}

impl<B> HttpBody for WatchedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: From<&'static str>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let p = &this.progress;
        match &polled {
            Poll::Pending => {
                p.waiting_for_client.store(true, Ordering::Release);
                if this.timer.as_mut().poll(cx).is_ready() {
                    p.client_timed_out.store(true, Ordering::Release);
                    p.end();
                    return Poll::Ready(Some(Err(B::Error::from("request body too slow"))));
                }
            }
            Poll::Ready(Some(Ok(frame))) => {
                p.waiting_for_client.store(false, Ordering::Release);
                p.moved();
                if let Some(d) = frame.data_ref() {
                    this.clock.moved(d.len());
                }
                let next = tokio::time::Instant::now() + this.clock.bound();
                this.timer.as_mut().reset(next);
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

    /// A body fed by a channel: pending until the test sends a chunk, ended when the
    /// sender is dropped.
    struct ChanBody(tokio::sync::mpsc::Receiver<Bytes>);

    impl HttpBody for ChanBody {
        type Data = Bytes;
        type Error = Box<dyn std::error::Error + Send + Sync>;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
        }
    }

    /// Whether one poll of `b` finds nothing ready.
    fn pending_once<B: HttpBody + Unpin>(b: &mut B) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(b).poll_frame(&mut cx).is_pending()
    }

    #[tokio::test]
    async fn records_frames_waiting_and_the_end() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let (mut body, progress) = WatchedBody::new(ChanBody(rx), Duration::from_secs(5));
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
        let (_body, progress) =
            WatchedBody::new(Full::new(Bytes::new()).map_err(|e| match e {}), Duration::from_secs(5));
        assert!(progress.ended());
        let (body, progress) =
            WatchedBody::new(Full::new(Bytes::from_static(b"x")).map_err(|e| match e {}), Duration::from_secs(5));
        assert!(!progress.ended());
        drop(body);
        progress.wait_ended().await;
    }

    #[tokio::test]
    async fn still_for_grows_while_nothing_moves() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let (_body, progress) = WatchedBody::new(ChanBody(rx), Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(30));
        assert!(progress.still_for() >= Duration::from_millis(30));
        drop(tx);
    }

    #[tokio::test]
    async fn a_silent_client_gets_an_error_after_the_bound() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let (mut body, progress) = WatchedBody::new(ChanBody(rx), Duration::from_millis(200));
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let t0 = Instant::now();
        let r = body.frame().await.unwrap();
        assert!(r.is_err());
        assert!(progress.client_timed_out() && progress.ended());
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(150) && waited < Duration::from_secs(2), "{waited:?}");
        drop(tx);
    }

    #[test]
    fn the_clock_bounds_each_step_and_the_average_rate() {
        let mut c = BodyClock::new(Duration::from_secs(60));
        assert!(c.bound() > Duration::from_secs(59) && c.bound() <= Duration::from_secs(60));
        // Bytes earn time at MIN_BODY_RATE, but one step never gets more than the timeout.
        c.moved(1_000_000);
        assert_eq!(c.bound(), Duration::from_secs(60));
        // A clock whose allowance is spent: no time left.
        let mut old =
            BodyClock { start: Instant::now() - Duration::from_secs(100), idle: Duration::from_secs(60), bytes: 0 };
        assert_eq!(old.bound(), Duration::ZERO);
        // 500 bytes earned one second: 60 + 1 - 100 < 0, still nothing.
        old.moved(500);
        assert_eq!(old.bound(), Duration::ZERO);
        // 25,000 bytes earn 50 s: 60 + 50 - 100 = 10 s left.
        old.moved(24_500);
        let left = old.bound();
        assert!(left > Duration::from_secs(9) && left <= Duration::from_secs(10), "{left:?}");
    }
}
