//! The admin listener: health (`/healthz`), readiness (`/readyz`: a fresh bundle) and
//! metrics (`/metrics`), served by hyper on an address of its own.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::body::{full, Body};
use crate::gateway::Gateway;
use crate::h2::hyper_service;

/// The admin listener's answer to a request for `path`.
pub fn answer(gateway: &Gateway, path: &str) -> Response<Body> {
    let now = crate::filters::now_nanos() / 1_000_000_000;
    let (status, body, ctype) = match path {
        "/healthz" => (StatusCode::OK, "ok\n".to_string(), "text/plain"),
        "/readyz" => match gateway.bundles.current() {
            Some(b) if b.engine.is_fresh(now) => (StatusCode::OK, "ready\n".into(), "text/plain"),
            Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "bundle expired\n".into(), "text/plain"),
            None => (StatusCode::SERVICE_UNAVAILABLE, "no bundle\n".into(), "text/plain"),
        },
        "/metrics" => (StatusCode::OK, gateway.metrics.render(now), "text/plain; version=0.0.4"),
        _ => (StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
    };
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", HeaderValue::from_static(ctype));
    r
}

/// Serve the admin listener until `shutdown` resolves, then drain for at most `drain`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
    header_timeout: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = shutdown;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Some((stream, _)) = crate::listen::accepted(accepted).await else { continue };
                let g = gateway.clone();
                let service = hyper_service(move |req: Request<Incoming>| {
                    let g = g.clone();
                    async move { answer(&g, req.uri().path()) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(drain) => tracing::warn!("admin drain timeout"),
    }
}
