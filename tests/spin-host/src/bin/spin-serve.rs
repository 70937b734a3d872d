//! Serve the Spin component over HTTP/1.1 the way Spin's HTTP trigger does: every request
//! gets a fresh instance (from one pre-instantiated component), an absolute URI from the
//! `Host` header, and `spin-client-addr` naming the TCP peer. For the load harness
//! (`bench/load/edge.sh`), on loopback.
//!
//!   spin-serve COMPONENT.wasm ADDR VARIABLES.json [THREADS]
//!
//! VARIABLES.json is an object of Spin application variables (strings). THREADS is the
//! number of tokio worker threads (default 1, the harness pins the process to one CPU).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use gatehouse_spin_test_host::SpinHost;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

/// Largest request body forwarded (the harness sends none).
const MAX_BODY: usize = 1024 * 1024;

async fn handle(host: Arc<SpinHost>, peer: SocketAddr, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let answer = |status: u16, text: &str| {
        hyper::Response::builder().status(status).body(Full::new(Bytes::from(text.to_string()))).expect("response")
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = Limited::new(body, MAX_BODY).collect().await.map(|b| b.to_bytes()) else {
        return answer(413, "body too large\n");
    };
    let Some(authority) = parts.headers.get("host").and_then(|h| h.to_str().ok()).map(str::to_string) else {
        return answer(400, "no Host\n");
    };
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut b = http::Request::builder().method(parts.method.clone()).uri(format!("http://{authority}{path}"));
    for (k, v) in &parts.headers {
        b = b.header(k, v);
    }
    let Ok(request) = b.header("spin-client-addr", peer.to_string()).body(Full::new(body)) else {
        return answer(400, "bad request\n");
    };
    match host.call(request).await {
        Ok(reply) => {
            let mut r = hyper::Response::builder().status(reply.status);
            for (k, v) in &reply.headers {
                r = r.header(k.as_str(), v.as_str());
            }
            r.body(Full::new(reply.body)).unwrap_or_else(|_| answer(500, "bad reply\n"))
        }
        Err(e) => {
            eprintln!("spin-serve: component failed: {e:#}");
            answer(500, "component failed\n")
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        bail!("usage: spin-serve COMPONENT.wasm ADDR VARIABLES.json [THREADS]");
    }
    let threads: usize = args.get(4).map(|t| t.parse()).transpose().context("THREADS")?.unwrap_or(1);
    let addr: SocketAddr = args[2].parse().context("ADDR")?;
    let vars: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&args[3]).with_context(|| args[3].clone())?).context("VARIABLES.json")?;
    let mut host = SpinHost::new(std::path::Path::new(&args[1]))?;
    for (k, v) in vars {
        host.vars.insert(k, v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
    }
    let host = Arc::new(host);
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!("spin-serve listening on http://{addr}");
        loop {
            let (stream, peer) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let host = host.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let host = host.clone();
                    async move { Ok::<_, Infallible>(handle(host, peer, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}
