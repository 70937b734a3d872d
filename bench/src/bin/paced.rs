//! An open-loop, constant-rate HTTP/1.1 load generator for latency at a fixed rate (in
//! the manner of wrk2): request `i` is due at `start + i / rate`, whatever happened to
//! earlier ones, and its latency is counted from when it was due, so queueing behind a
//! slow answer is measured (no coordinated omission). Requests are spread evenly in
//! time, not released in bursts, unlike wrk's per-connection `delay()`.
//!
//! Usage: `paced URL RATE SECONDS CONNECTIONS TOKENS_FILE [HOST]` — each request carries
//! `Authorization: Bearer <next token>` from the file (round robin) and `Host: HOST`.
//! Prints one line: `requests=N errors=E rate=R p50_us=.. p90_us=.. p99_us=.. max_us=..`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: paced URL RATE SECONDS CONNECTIONS TOKENS_FILE [HOST]");
        std::process::exit(2);
    }
    let url: hyper::Uri = args[1].parse().expect("URL");
    let rate: f64 = args[2].parse().expect("RATE");
    let secs: f64 = args[3].parse().expect("SECONDS");
    let conns: usize = args[4].parse().expect("CONNECTIONS");
    let tokens: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(&args[5])
            .expect("TOKENS_FILE")
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
    );
    let host = args.get(6).cloned().unwrap_or_else(|| url.authority().map(|a| a.to_string()).unwrap_or_default());
    let total = (rate * secs) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let start = Instant::now() + Duration::from_millis(200);
    // The clock: one thread that wakes when each request is due and hands it over.
    std::thread::spawn(move || {
        for i in 0..total {
            let due = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if tx.send((i, due)).is_err() {
                return;
            }
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let lat = rt.block_on(async move {
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let out = Arc::new(Mutex::new((Vec::with_capacity(total as usize), 0u64)));
        let addr = format!("{}:{}", url.host().unwrap_or("127.0.0.1"), url.port_u16().unwrap_or(80));
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (rx, out, tokens, url, host, addr) =
                (rx.clone(), out.clone(), tokens.clone(), url.clone(), host.clone(), addr.clone());
            tasks.push(tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
                stream.set_nodelay(true).ok();
                let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                    .await
                    .expect("handshake");
                tokio::spawn(conn);
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some((i, due)) = next else { break };
                    let tok = &tokens[(i as usize) % tokens.len()];
                    let req = hyper::Request::get(url.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
                        .header("host", &host)
                        .header("authorization", format!("Bearer {tok}"))
                        .body(Empty::new())
                        .expect("request");
                    let ok = match send.send_request(req).await {
                        Ok(resp) => {
                            let status = resp.status();
                            resp.into_body().collect().await.is_ok() && status.is_success()
                        }
                        Err(_) => false,
                    };
                    let us = due.elapsed().as_micros() as u32;
                    let mut o = out.lock().unwrap();
                    o.0.push(us);
                    if !ok {
                        o.1 += 1;
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let o = out.lock().unwrap();
        (o.0.clone(), o.1)
    });
    let (mut v, errors) = lat;
    v.sort_unstable();
    let p = |q: f64| v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or(0);
    let elapsed = secs;
    println!(
        "requests={} errors={} rate={:.0} p50_us={} p90_us={} p99_us={} max_us={}",
        v.len(),
        errors,
        v.len() as f64 / elapsed,
        p(0.50),
        p(0.90),
        p(0.99),
        v.last().copied().unwrap_or(0)
    );
}
