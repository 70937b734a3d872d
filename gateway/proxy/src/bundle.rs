//! The bundle in force, and how new ones arrive: a watched file, SIGHUP, or an origin URL
//! polled with ETag. A new bundle is verified (signature against the pinned key, format,
//! expiry, policy) before it replaces the old one; a bad one is refused, logged and
//! counted, and the old one stays in force. Requests in flight keep the bundle they
//! started with (an `Arc`), so a swap never fails a request.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gatehouse_core::{EdgeSecrets, Engine};

use crate::metrics::Metrics;

/// A verified bundle.
pub struct LoadedBundle {
    /// Signed bytes, handed to filter instances.
    pub bytes: Vec<u8>,
    /// Increases with every accepted load (instances reload when it changes).
    pub generation: u64,
    /// The policy compiled natively: the built-in checks on the native engine, freshness,
    /// identity-header names.
    pub engine: Engine,
    /// The request headers a decision may read under it ([`Engine::headers_read`]).
    pub headers_read: Arc<Vec<String>>,
}

/// The bundle holder.
pub struct BundleStore {
    current: RwLock<Option<Arc<LoadedBundle>>>,
    generation: AtomicU64,
    /// The pinned origin key.
    pub public_key: [u8; 32],
    secrets: EdgeSecrets,
    /// The edge secrets as JSON for filters.
    pub secrets_json: Vec<u8>,
    metrics: Arc<Metrics>,
}

impl BundleStore {
    /// An empty store.
    pub fn new(
        public_key: [u8; 32],
        secrets: EdgeSecrets,
        secrets_json: Vec<u8>,
        metrics: Arc<Metrics>,
    ) -> BundleStore {
        BundleStore {
            current: RwLock::new(None),
            generation: AtomicU64::new(0),
            public_key,
            secrets,
            secrets_json,
            metrics,
        }
    }

    /// The bundle in force.
    pub fn current(&self) -> Option<Arc<LoadedBundle>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Verify and, if good, install `bytes`. Returns the revision.
    pub fn install(&self, bytes: Vec<u8>) -> Result<u64, String> {
        let now = crate::filters::now_nanos() / 1_000_000_000;
        let (started, bytes_len) = (std::time::Instant::now(), bytes.len());
        match Engine::from_bundle(&bytes, &self.public_key, now, &self.secrets) {
            Ok(engine) => {
                let info = engine.info().clone();
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                let headers_read = Arc::new(engine.headers_read());
                *self.current.write().unwrap_or_else(|p| p.into_inner()) =
                    Some(Arc::new(LoadedBundle { bytes, generation, engine, headers_read }));
                self.metrics.bundle_loads.with_label_values(&["ok"]).inc();
                self.metrics.bundle_revision.set(info.revision as i64);
                self.metrics.bundle_issued_at.set(info.issued_at as i64);
                self.metrics.bundle_expires_at.set(info.expires_at as i64);
                tracing::info!(
                    revision = info.revision,
                    expires_at = info.expires_at,
                    bytes = bytes_len,
                    verify_and_decode_ms = started.elapsed().as_millis() as u64,
                    "bundle loaded"
                );
                Ok(info.revision)
            }
            Err(e) => {
                self.metrics.bundle_loads.with_label_values(&["refused"]).inc();
                tracing::error!(error = %e, "bundle refused; keeping the bundle in force");
                Err(e.to_string())
            }
        }
    }

    /// [`BundleStore::install`] off the request threads, on a thread of its own at the
    /// low CPU priority (Linux: `nice` 10 for that thread): verifying and decoding a
    /// bundle of thousands of tenants takes tens of milliseconds of CPU that requests on
    /// the same core must not wait behind. The bundle it replaces is freed on that thread
    /// too, once the requests still holding it are done. `bytes` runs on that thread as
    /// well, so that joining a downloaded body's chunks (megabytes) is not done on a
    /// request thread either.
    pub async fn install_in_background<F>(self: &Arc<Self>, bytes: F) -> Result<u64, String>
    where
        F: FnOnce() -> Vec<u8> + Send + 'static,
    {
        let store = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new().name("bundle-install".into()).spawn(move || {
            low_priority();
            let before = store.current();
            let result = store.install(bytes());
            let replaced = result.is_ok();
            let _ = tx.send(result);
            if let (true, Some(old)) = (replaced, before) {
                // Requests in flight hold an `Arc` of it for microseconds; wait them out
                // (bounded) so that the last drop, a large free, happens here.
                let until = std::time::Instant::now() + Duration::from_secs(5);
                while Arc::strong_count(&old) > 1 && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
                drop(old);
            }
        });
        if let Err(e) = spawned {
            return Err(format!("cannot start the bundle install thread: {e}"));
        }
        rx.await.unwrap_or_else(|_| Err("bundle install thread failed".into()))
    }
}

/// Lower the calling thread's CPU priority (Linux keeps `nice` per thread) to 10: a
/// tenth of a request thread's share when the core is busy. Not 19: at 19 (a seventieth)
/// a gateway under load took 12 s to install a 10,000-tenant bundle (`bench/load/swap.sh`),
/// and a fully loaded one could go on serving a bundle until it expires.
fn low_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only changes the scheduling priority of the calling thread
    // (`who` 0 with PRIO_PROCESS is the calling thread on Linux); no memory is involved.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// Watch a bundle file: reload when its contents change, or on SIGHUP.
pub async fn watch_file(store: Arc<BundleStore>, path: PathBuf, every: Duration, initial: Option<Vec<u8>>) {
    let mut last: Option<Vec<u8>> = initial;
    // Only reread when size or modification time moved (or on SIGHUP).
    let stamp = |p: &PathBuf| std::fs::metadata(p).ok().map(|m| (m.len(), m.modified().ok()));
    let mut seen = stamp(&path);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut forced = false;
    loop {
        let now_stamp = stamp(&path);
        if forced || now_stamp != seen || last.is_none() {
            seen = now_stamp;
            match tokio::fs::read(&path).await {
                Ok(bytes) if forced || last.as_ref() != Some(&bytes) => {
                    let _ = store
                        .install_in_background({
                            let bytes = bytes.clone();
                            move || bytes
                        })
                        .await;
                    last = Some(bytes);
                }
                Ok(_) => {}
                Err(e) => tracing::error!(file = %path.display(), error = %e, "cannot read bundle file"),
            }
            forced = false;
        }
        #[cfg(unix)]
        {
            let hup_fut = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = hup_fut => {
                    tracing::info!("SIGHUP: rereading the bundle");
                    forced = true;
                }
            }
        }
        #[cfg(not(unix))]
        tokio::time::sleep(every).await;
    }
}

/// Poll an origin for the bundle with `If-None-Match`; install what changed. Plain HTTP
/// only (the bundle is signed, so integrity does not depend on the transport; put a
/// TLS-terminating hop in front for confidentiality).
pub async fn poll_origin(store: Arc<BundleStore>, url: String, token: Option<String>, every: Duration) {
    use http_body_util::{BodyExt, Empty, Limited};
    let client: hyper_util::client::legacy::Client<_, Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let mut etag: Option<String> = None;
    loop {
        let mut req = hyper::Request::get(url.as_str());
        if let Some(e) = &etag {
            req = req.header("if-none-match", e);
        }
        if let Some(t) = &token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        match req.body(Empty::new()) {
            Err(e) => tracing::error!(url = %url, error = %e, "bad bundle URL"),
            Ok(req) => match tokio::time::timeout(Duration::from_secs(30), client.request(req)).await {
                Err(_) => tracing::warn!(url = %url, "bundle poll timed out"),
                Ok(Err(e)) => tracing::warn!(url = %url, error = %e, "bundle poll failed; keeping the bundle in force"),
                Ok(Ok(resp)) if resp.status() == hyper::StatusCode::NOT_MODIFIED => {}
                Ok(Ok(resp)) if resp.status().is_success() => {
                    let new_etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
                    let limit = gatehouse_core::bundle::MAX_BUNDLE_BYTES;
                    match Limited::new(resp.into_body(), limit).collect().await {
                        Ok(body) => {
                            if store.install_in_background(move || body.to_bytes().to_vec()).await.is_ok() {
                                etag = new_etag;
                            }
                        }
                        Err(e) => tracing::warn!(url = %url, error = %e, "bundle download failed"),
                    }
                }
                Ok(Ok(resp)) => tracing::warn!(url = %url, status = %resp.status(), "origin refused the bundle poll"),
            },
        }
        tokio::time::sleep(every).await;
    }
}
