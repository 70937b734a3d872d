//! Closed-loop load on one way of asking Gatehouse for a decision, for the authorization
//! service benchmark (bench/load/authz.sh): `IN_FLIGHT` requests are kept outstanding
//! for `SECONDS`, each with the next bearer token of `TOKENS_FILE` (round robin), and
//! every answer must be an allow.
//!
//! Targets (all on the same gateway process, routes and bundle):
//! - `inline`: the reverse proxy, `GET /api/items` (the upstream answers);
//! - `http`: the HTTP authorization endpoint as nginx `auth_request` asks it
//!   (`GET /auth`, `X-Original-URI: /api/items`, `X-Original-Method: GET`);
//! - `grpc`: Envoy `ext_authz` v3 `Check` (the envoy-types client; Envoy's request for
//!   `GET /api/items` from 127.0.0.1), on one HTTP/2 connection per 16 calls in flight.
//!
//! HTTP targets use one keep-alive HTTP/1.1 connection per request in flight.
//!
//! Usage: `authz_load TARGET ADDR SECONDS IN_FLIGHT TOKENS_FILE HOST PID`. CPU per
//! decision is the `PID` process's utime+stime (`/proc/PID/stat`, all threads, 100 ticks
//! a second) over the run divided by the decisions. Prints one line:
//! `target=.. decisions=N errors=E rate=R p50_us=.. p99_us=.. cpu_us=..`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Address, SocketAddress};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// Calls in flight per gRPC connection (Envoy multiplexes its checks on few connections).
const CALLS_PER_CHANNEL: usize = 16;

/// What one worker saw: each request's latency in µs, and the answers that were not an
/// allow.
type Seen = Arc<Mutex<(Vec<u32>, u64)>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 8 {
        eprintln!("usage: authz_load inline|http|grpc ADDR SECONDS IN_FLIGHT TOKENS_FILE HOST PID");
        std::process::exit(2);
    }
    let target = args[1].clone();
    let addr = args[2].clone();
    let secs: f64 = args[3].parse().expect("SECONDS");
    let in_flight: usize = args[4].parse().expect("IN_FLIGHT");
    let tokens: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(&args[5])
            .expect("TOKENS_FILE")
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
    );
    let host = args[6].clone();
    let pid: u32 = args[7].parse().expect("PID");
    assert!(!tokens.is_empty(), "no tokens");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let seen: Seen = Arc::new(Mutex::new((Vec::new(), 0)));
    let (elapsed, ticks) = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let mut workers = Vec::new();
        let t0 = ticks(pid);
        let started = Instant::now();
        match target.as_str() {
            "inline" | "http" => {
                for w in 0..in_flight {
                    let (addr, host, tokens, seen, nginx) =
                        (addr.clone(), host.clone(), tokens.clone(), seen.clone(), target == "http");
                    workers.push(tokio::spawn(http_worker(addr, host, tokens, w, nginx, deadline, seen)));
                }
            }
            "grpc" => {
                let checks: Arc<Vec<CheckRequest>> = Arc::new(tokens.iter().map(|t| check_request(&host, t)).collect());
                let channels = in_flight.div_ceil(CALLS_PER_CHANNEL);
                let mut clients = Vec::new();
                for _ in 0..channels {
                    let c = AuthorizationClient::connect(format!("http://{addr}")).await.expect("connect");
                    clients.push(c);
                }
                for w in 0..in_flight {
                    let client = clients[w % channels].clone();
                    workers.push(tokio::spawn(grpc_worker(client, checks.clone(), w, deadline, seen.clone())));
                }
            }
            other => panic!("unknown target {other}"),
        }
        for w in workers {
            w.await.expect("worker");
        }
        (started.elapsed().as_secs_f64(), ticks(pid) - t0)
    });
    let (mut lat, errors) = seen.lock().unwrap().clone();
    lat.sort_unstable();
    let p = |q: f64| lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
    let decisions = lat.len() as u64;
    println!(
        "target={target} decisions={decisions} errors={errors} rate={:.0} p50_us={} p99_us={} cpu_us={:.1}",
        decisions as f64 / elapsed,
        p(0.50),
        p(0.99),
        ticks as f64 * 10_000.0 / decisions.max(1) as f64
    );
}

/// CPU ticks (utime + stime) of process `pid`, all its threads.
fn ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces): state is field 3, utime 14,
    // stime 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

async fn http_worker(
    addr: String,
    host: String,
    tokens: Arc<Vec<String>>,
    first: usize,
    nginx: bool,
    deadline: Instant,
    seen: Seen,
) {
    let stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    stream.set_nodelay(true).ok();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, first);
    while Instant::now() < deadline {
        let tok = &tokens[i % tokens.len()];
        i += 1;
        let req = if nginx {
            hyper::Request::get("/auth").header("x-original-uri", "/api/items").header("x-original-method", "GET")
        } else {
            hyper::Request::get("/api/items")
        };
        let req = req
            .header("host", &host)
            .header("authorization", format!("Bearer {tok}"))
            .body(Empty::new())
            .expect("request");
        let t = Instant::now();
        let ok = match send.send_request(req).await {
            Ok(resp) => {
                let status = resp.status();
                resp.into_body().collect().await.is_ok() && status.is_success()
            }
            Err(_) => false,
        };
        lat.push(t.elapsed().as_micros() as u32);
        if !ok {
            errors += 1;
            if send.ready().await.is_err() {
                break;
            }
        }
    }
    let mut s = seen.lock().unwrap();
    s.0.extend(lat);
    s.1 += errors;
}

async fn grpc_worker(
    mut client: AuthorizationClient<tonic::transport::Channel>,
    checks: Arc<Vec<CheckRequest>>,
    first: usize,
    deadline: Instant,
    seen: Seen,
) {
    let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, first);
    while Instant::now() < deadline {
        let req = checks[i % checks.len()].clone();
        i += 1;
        let t = Instant::now();
        let ok = match client.check(req).await {
            Ok(r) => matches!(r.into_inner().http_response, Some(HttpResponse::OkResponse(_))),
            Err(_) => false,
        };
        lat.push(t.elapsed().as_micros() as u32);
        errors += u64::from(!ok);
    }
    let mut s = seen.lock().unwrap();
    s.0.extend(lat);
    s.1 += errors;
}

/// The check Envoy sends for `GET /api/items` with `token`, from a loopback client.
fn check_request(host: &str, token: &str) -> CheckRequest {
    let peer = |ip: &str, port: u32| Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.to_string(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    let headers = [
        (":authority", host.to_string()),
        (":method", "GET".to_string()),
        (":path", "/api/items".to_string()),
        (":scheme", "http".to_string()),
        ("authorization", format!("Bearer {token}")),
        ("user-agent", "authz_load".to_string()),
        ("x-request-id", "0b7a4c1e-5d2f-4a8e-9c3b-1f6e2d7a8b90".to_string()),
    ];
    let http = HttpRequest {
        id: "1".into(),
        method: "GET".into(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        path: "/api/items".into(),
        host: host.to_string(),
        scheme: "http".into(),
        protocol: "HTTP/1.1".into(),
        size: -1,
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer("127.0.0.1", 40_000)),
            destination: Some(peer("127.0.0.1", 8080)),
            request: Some(Request { http: Some(http), ..Default::default() }),
            ..Default::default()
        }),
    }
}
