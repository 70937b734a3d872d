//! The audit sinks' receivers, real servers on loopback: an HTTP receiver (webhook and
//! OTLP/HTTP) that checks the HMAC signature and can fail the first N requests or all of
//! them, and a syslog receiver over TCP or TLS that reads octet-counted frames (RFC
//! 6587 / RFC 5425) and parses RFC 5424 messages. And the receiver's side of continuity:
//! every record's hash recomputed, every link checked.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

// ---------------------------------------------------------------------------------------
// HTTP (webhook, OTLP)

/// One request the HTTP receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// When.
    pub at: Instant,
    /// What it answered.
    pub status: u16,
    /// The path.
    pub path: String,
    /// The body, parsed.
    pub body: Value,
}

#[derive(Default)]
struct HttpState {
    key: Option<Vec<u8>>,
    fail_first: AtomicUsize,
    always_fail: AtomicBool,
    bad_signatures: AtomicUsize,
    log: Mutex<Vec<Received>>,
}

/// A running HTTP receiver.
#[derive(Clone)]
pub struct Http {
    state: Arc<HttpState>,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// Whether `header` (`t=<t>,v1=<hex>`) signs `body` under `key` (constant time).
pub fn signature_ok(key: &[u8], header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = hex::decode(x).ok(),
            _ => return false,
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    // A receiver refuses stale signatures (replays).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    if (now - t).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

async fn receive(State(s): State<Arc<HttpState>>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    if let Some(key) = &s.key {
        let sig = headers.get("x-gatehouse-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !signature_ok(key, sig, &body) {
            s.bad_signatures.fetch_add(1, Ordering::SeqCst);
            return StatusCode::UNAUTHORIZED;
        }
    }
    let failing = s.always_fail.load(Ordering::SeqCst)
        || s.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    let status = if failing { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let r = Received { at: Instant::now(), status: status.as_u16(), path: uri.path().to_string(), body };
    s.log.lock().unwrap().push(r);
    status
}

/// A TLS listener for axum: TCP accepted, then the TLS handshake (failed ones dropped).
struct TlsListener(tokio::net::TcpListener, tokio_rustls::TlsAcceptor);

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.0.accept().await else { continue };
            if let Ok(tls) = self.1.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl Http {
    /// Start on a free port; `key`: check signatures; fail the first `fail_first`.
    pub async fn start(key: Option<&[u8]>, fail_first: usize) -> Http {
        Http::start_with(key, fail_first, None).await
    }

    /// [`Http::start`] over HTTPS with `tls`.
    pub async fn start_with(key: Option<&[u8]>, fail_first: usize, tls: Option<Arc<rustls::ServerConfig>>) -> Http {
        let state = Arc::new(HttpState {
            key: key.map(<[u8]>::to_vec),
            fail_first: AtomicUsize::new(fail_first),
            ..HttpState::default()
        });
        let router = axum::Router::new().fallback(axum::routing::post(receive)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        match tls {
            None => tokio::spawn(async move { axum::serve(listener, router).await.unwrap() }),
            Some(cfg) => {
                let tls = TlsListener(listener, tokio_rustls::TlsAcceptor::from(cfg));
                tokio::spawn(async move { axum::serve(tls, router).await.unwrap() })
            }
        };
        Http { state, port }
    }

    /// Answer 503 to everything from now on (`true`) or accept again (`false`).
    pub fn always_fail(&self, on: bool) {
        self.state.always_fail.store(on, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.state.log.lock().unwrap().clone()
    }

    /// The bodies it accepted (2xx).
    pub fn accepted(&self) -> Vec<Value> {
        self.requests().into_iter().filter(|r| r.status == 200).map(|r| r.body).collect()
    }

    /// Requests refused for their signature.
    pub fn bad_signatures(&self) -> usize {
        self.state.bad_signatures.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------
// Syslog (TCP, TLS)

/// A running syslog receiver.
#[derive(Clone)]
pub struct Syslog {
    messages: Arc<Mutex<Vec<String>>>,
    errors: Arc<Mutex<Vec<String>>>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
}

/// Split octet-counted frames: `<len> <msg>` repeated.
pub fn frames(mut data: &[u8]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let sp = data.iter().position(|b| *b == b' ').ok_or("no length")?;
        let len: usize =
            std::str::from_utf8(&data[..sp]).map_err(|e| e.to_string())?.parse().map_err(|_| "bad length")?;
        if data[0] == b'0' || sp > 10 {
            return Err("a frame length has no leading zero and at most 10 digits".into());
        }
        let msg = data.get(sp + 1..sp + 1 + len).ok_or("frame cut short")?;
        out.push(String::from_utf8(msg.to_vec()).map_err(|e| e.to_string())?);
        data = &data[sp + 1 + len..];
    }
    Ok(out)
}

async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    messages: &Mutex<Vec<String>>,
    errors: &Mutex<Vec<String>>,
) {
    let mut data = Vec::new();
    // Read to the sender's end (bounded), then close our side.
    let read = (&mut s).take(16 << 20).read_to_end(&mut data).await;
    match read.map_err(|e| e.to_string()).and_then(|_| frames(&data)) {
        Ok(f) => messages.lock().unwrap().extend(f),
        Err(e) => errors.lock().unwrap().push(e),
    }
    let _ = s.shutdown().await;
}

impl Syslog {
    /// Listen on `port` of 127.0.0.1, with TLS when `tls` is given.
    pub async fn start(port: u16, tls: Option<Arc<rustls::ServerConfig>>) -> Syslog {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let r = Syslog { messages: Arc::default(), errors: Arc::default(), connections: Arc::default() };
        let me = r.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                me.connections.fetch_add(1, Ordering::SeqCst);
                let (messages, errors) = (me.messages.clone(), me.errors.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_one(tcp, &messages, &errors).await,
                        Some(cfg) => match tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                            Ok(s) => serve_one(s, &messages, &errors).await,
                            Err(e) => errors.lock().unwrap().push(format!("TLS: {e}")),
                        },
                    }
                });
            }
        });
        r
    }

    /// The messages so far.
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// Framing and TLS errors so far.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }
}

/// A TLS server configuration from PEM files.
pub fn tls_server(cert: &std::path::Path, key: &std::path::Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(cfg)
}

/// An RFC 5424 message, parsed.
#[derive(Debug)]
pub struct Message {
    /// PRI.
    pub pri: u8,
    /// TIMESTAMP.
    pub timestamp: String,
    /// HOSTNAME.
    pub hostname: String,
    /// APP-NAME.
    pub app: String,
    /// MSGID.
    pub msgid: String,
    /// SD-ID of the one structured-data element.
    pub sd_id: String,
    /// Its parameters, unescaped.
    pub params: BTreeMap<String, String>,
    /// MSG: the JSON after the BOM.
    pub json: Value,
}

/// Parse `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] BOM MSG`, checking the
/// shape RFC 5424 sets (version 1, header fields printable ASCII without spaces, the SD
/// element's escaping).
pub fn parse_5424(m: &str) -> Result<Message, String> {
    let rest = m.strip_prefix('<').ok_or("no PRI")?;
    let (pri, rest) = rest.split_once('>').ok_or("PRI not closed")?;
    let pri: u8 = pri.parse().map_err(|_| "PRI not a number")?;
    if pri > 191 {
        return Err("PRI out of range".into());
    }
    let mut head = rest.splitn(7, ' ');
    let mut field = || head.next().ok_or("header cut short");
    if field()? != "1" {
        return Err("VERSION is not 1".into());
    }
    let (timestamp, hostname, app, _procid, msgid) = (field()?, field()?, field()?, field()?, field()?);
    let sd = field()?;
    for f in [timestamp, hostname, app, msgid] {
        if f.is_empty() || !f.bytes().all(|b| (33..=126).contains(&b)) {
            return Err(format!("header field `{f}` is not PRINTUSASCII"));
        }
    }
    chrono::DateTime::parse_from_rfc3339(timestamp).map_err(|e| format!("TIMESTAMP: {e}"))?;
    // The SD element: `[ID name="value" …]`, values escaping `"`, `\`, `]`.
    let sd = sd.strip_prefix('[').ok_or("no structured data")?;
    let (sd_id, mut rest) = sd.split_once(' ').ok_or("SD-ID alone")?;
    let mut params = BTreeMap::new();
    loop {
        let (name, after) = rest.split_once("=\"").ok_or("SD-PARAM without a value")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().ok_or("SD-PARAM not closed")? {
                (_, '\\') => value.push(chars.next().ok_or("dangling escape")?.1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        params.insert(name.to_string(), value);
        rest = &after[end + 1..];
        if let Some(r) = rest.strip_prefix(' ') {
            rest = r;
        } else {
            rest = rest.strip_prefix(']').ok_or("SD element not closed")?;
            break;
        }
    }
    let msg = rest.strip_prefix(" \u{feff}").ok_or("MSG without a BOM")?;
    let json = serde_json::from_str(msg).map_err(|e| format!("MSG is not JSON: {e}"))?;
    Ok(Message {
        pri,
        timestamp: timestamp.into(),
        hostname: hostname.into(),
        app: app.into(),
        msgid: msgid.into(),
        sd_id: sd_id.into(),
        params,
        json,
    })
}

// ---------------------------------------------------------------------------------------
// Continuity

/// The hash of a streamed record, recomputed as a receiver does from `record`.
pub fn rehash(record: &Value) -> String {
    let names = ["seq", "at", "actor", "action", "target", "before", "after", "ip", "user_agent", "request_id"];
    let mut a: Vec<Value> = names.iter().map(|n| record[*n].clone()).collect();
    a.push(record["prev_hash"].clone());
    if !record["act"].is_null() || !record["sealed"].is_null() {
        a.push(record["act"].clone());
        a.push(record["sealed"].clone());
    }
    hex::encode(Sha256::digest(Value::Array(a).to_string().as_bytes()))
}

/// Check one tenant's streamed wire records (duplicates allowed: at least once): ids are
/// `<tenant>:<seq>`, every hash recomputes, seq runs 1..=n without a gap and each
/// `prev_hash` is the previous `hash` (the first is the genesis hash). Returns n.
pub fn verify_chain(tenant: &str, records: &[Value]) -> i64 {
    let mut by_seq: BTreeMap<i64, &Value> = BTreeMap::new();
    for w in records {
        assert_eq!(w["tenant"], tenant, "{w}");
        let seq = w["seq"].as_i64().unwrap();
        assert_eq!(w["id"].as_str().unwrap(), format!("{tenant}:{seq}"));
        assert_eq!(w["hash"], w["record"]["hash"]);
        assert_eq!(w["prev_hash"], w["record"]["prev_hash"]);
        assert_eq!(rehash(&w["record"]), w["hash"].as_str().unwrap(), "the record as stored, hash-verifiable: {w}");
        if let Some(prev) = by_seq.insert(seq, w) {
            assert_eq!(prev["hash"], w["hash"], "a duplicate is the same record");
        }
    }
    let mut prev = "0".repeat(64);
    for (i, (seq, w)) in by_seq.iter().enumerate() {
        assert_eq!(*seq, i as i64 + 1, "no gap");
        assert_eq!(w["prev_hash"].as_str().unwrap(), prev, "record {seq} links to record {}", seq - 1);
        prev = w["hash"].as_str().unwrap().to_string();
    }
    by_seq.len() as i64
}
