//! A Sentry ingestion endpoint on loopback for tests: takes `POST /api/<project>/envelope/`
//! over HTTP/1.1 (keep-alive, `Content-Length` or chunked bodies), answers 200, and keeps
//! each envelope raw and parsed (header line, then items: a JSON header line with `type`
//! and maybe `length`, then the payload). One copy, included by the Sentry tests of the
//! telemetry crate and of the CLI (`#[path]`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One envelope as received.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The request's path (`/api/1/envelope/`).
    pub path: String,
    /// The request's header fields, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as sent.
    pub raw: Vec<u8>,
    /// The envelope's header line.
    pub header: Value,
    /// Its items: header and payload.
    pub items: Vec<(Value, Vec<u8>)>,
}

impl Envelope {
    /// The payloads of the `event` items, as JSON.
    pub fn events(&self) -> Vec<Value> {
        self.items
            .iter()
            .filter(|(h, _)| h["type"] == "event")
            .filter_map(|(_, p)| serde_json::from_slice(p).ok())
            .collect()
    }
}

/// The endpoint: its address and what it has received.
#[derive(Clone)]
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    got: Arc<(Mutex<Vec<Envelope>>, Condvar)>,
}

impl Receiver {
    /// Listen on 127.0.0.1 (a free port), serving each connection on its own thread.
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<(Mutex<Vec<Envelope>>, Condvar)> = Arc::default();
        let shared = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let got = shared.clone();
                std::thread::spawn(move || serve(stream, &got));
            }
        });
        Receiver { addr, got }
    }

    /// A DSN for project 1 with public key `publickey`.
    pub fn dsn(&self) -> String {
        format!("http://publickey@{}/1", self.addr)
    }

    /// Everything received so far.
    pub fn envelopes(&self) -> Vec<Envelope> {
        self.got.0.lock().unwrap().clone()
    }

    /// Wait (at most `within`) for an event `pick` accepts; the event and its envelope.
    pub fn wait_event(&self, within: Duration, pick: impl Fn(&Value) -> bool) -> Option<(Value, Envelope)> {
        let deadline = Instant::now() + within;
        let (lock, cv) = &*self.got;
        let mut got = lock.lock().unwrap();
        loop {
            for env in got.iter() {
                if let Some(e) = env.events().into_iter().find(|e| pick(e)) {
                    return Some((e, env.clone()));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            got = cv.wait_timeout(got, deadline - now).unwrap().0;
        }
    }
}

fn serve(stream: TcpStream, got: &(Mutex<Vec<Envelope>>, Condvar)) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut out = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let field = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut raw = Vec::new();
        if field("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = field("content-length").and_then(|v| v.parse::<usize>().ok()) {
            raw = vec![0; n];
            r.read_exact(&mut raw).unwrap();
        }
        // The Rust SDK sends envelopes uncompressed; a compressed one would not parse below,
        // so say so plainly instead.
        let encoding = field("content-encoding").unwrap_or_default();
        assert!(encoding.is_empty() || encoding == "identity", "compressed envelope ({encoding}): decode it here");
        let ok = path.starts_with("/api/") && path.ends_with("/envelope/");
        let status = if ok { "200 OK" } else { "404 Not Found" };
        if out.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\n{{}}").as_bytes()).is_err() {
            return;
        }
        if ok {
            let (header, items) = parse(&raw);
            got.0.lock().unwrap().push(Envelope { path, headers, raw, header, items });
            got.1.notify_all();
        }
    }
}

/// Split an envelope into its header and items.
pub fn parse(raw: &[u8]) -> (Value, Vec<(Value, Vec<u8>)>) {
    let line_end = |from: usize| raw[from..].iter().position(|&b| b == b'\n').map_or(raw.len(), |n| from + n);
    let end = line_end(0);
    let header = serde_json::from_slice(&raw[..end]).expect("envelope header");
    let mut items = Vec::new();
    let mut at = end + 1;
    while at < raw.len() {
        let end = line_end(at);
        if end == at {
            at += 1;
            continue;
        }
        let h: Value = serde_json::from_slice(&raw[at..end]).expect("item header");
        at = end + 1;
        let payload_end = match h["length"].as_u64() {
            Some(n) => at + n as usize,
            None => line_end(at),
        };
        let payload_end = payload_end.min(raw.len());
        items.push((h, raw[at..payload_end].to_vec()));
        at = payload_end + 1;
    }
    (header, items)
}
