//! The upstream of the wire cases, for the hosts that forward over real HTTP (the native
//! gateway, the Worker under workerd, the Spin component): it answers every request with
//! the headers it received as JSON (`{"headers": [[name, value], …]}`), and adds the
//! given response headers when the query says `wire=1`. Shared by those hosts' tests.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;

/// A running echo upstream.
pub struct Echo {
    pub addr: SocketAddr,
    /// Requests it received.
    pub hits: Arc<AtomicUsize>,
}

/// Start an echo upstream on loopback; `respond` are the headers a `wire=1` answer gets.
pub async fn echo_upstream(respond: &'static [(&'static str, &'static str)]) -> Echo {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = l.accept().await else { continue };
            let hits = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let seen: Vec<(String, String)> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                        .collect();
                    let wire = req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "wire=1"));
                    let body = serde_json::json!({ "headers": seen }).to_string();
                    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
                    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
                    if wire {
                        for (k, v) in respond {
                            r.headers_mut().append(*k, hyper::header::HeaderValue::from_static(v));
                        }
                    }
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Echo { addr, hits }
}

/// The request headers an echo answer's body reports.
pub fn echoed_headers(body: &[u8]) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).expect("an echo answer");
    serde_json::from_value(v["headers"].clone()).expect("echoed headers")
}
