//! The test upstream of the hosts that forward over real HTTP (the native gateway, the
//! Worker under workerd, the Spin component): it counts requests, reads each body, and
//! answers with the headers it received as JSON (`{"headers": [[name, value], …]}`), the
//! identity headers again as `x-echo-gatehouse-*` response headers, the body's size as
//! `x-echo-body-bytes`, and the given extra headers when the query says `wire=1`.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

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
                    answer(req, respond)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Echo { addr, hits }
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    respond: &'static [(&'static str, &'static str)],
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let seen: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let wire = req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "wire=1"));
    let mut r = hyper::Response::new(Full::new(Bytes::new()));
    let h = r.headers_mut();
    for (k, v) in req.headers() {
        if let Some(rest) = k.as_str().strip_prefix("x-gatehouse-") {
            h.insert(
                hyper::header::HeaderName::from_bytes(format!("x-echo-gatehouse-{rest}").as_bytes()).unwrap(),
                v.clone(),
            );
        }
    }
    if wire {
        for (k, v) in respond {
            h.append(*k, hyper::header::HeaderValue::from_static(v));
        }
    }
    h.insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    let n = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
    r.headers_mut().insert("x-echo-body-bytes", n.into());
    *r.body_mut() = Full::new(Bytes::from(serde_json::json!({ "headers": seen }).to_string()));
    Ok(r)
}

/// The request headers an echo answer's body reports.
pub fn echoed_headers(body: &[u8]) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).expect("an echo answer");
    serde_json::from_value(v["headers"].clone()).expect("echoed headers")
}
