//! The HTTP contract of the native gateway on the wire: the wire cases of the conformance
//! corpus (tests/conformance/wire.jsonl) through the `gatehouse gateway` process, over
//! HTTP/1.1 and over h2c, to a real upstream on loopback that reports what it received.
//! The core (gateway/proxy/tests/conformance.rs), the Spin component (tests/spin-host) and
//! the Worker (worker.rs) run the same cases.

mod support;

#[path = "../../proxy/tests/conformance/support.rs"]
mod corpus;
#[path = "../../proxy/tests/conformance/echo.rs"]
mod echo;

use std::sync::atomic::Ordering;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use support::*;

/// The gateway in front of `up`, deciding with the corpus's bundle.
fn gateway(dir: &std::path::Path, up: std::net::SocketAddr) -> GatewayProc {
    let b = corpus::bundle();
    std::fs::write(dir.join("bundle.ghb"), &b.bytes).unwrap();
    let keys = corpus::dir().join("keys");
    let (addr, admin) = (free_port(), free_port());
    let config = format!(
        "[listen]\naddr = \"127.0.0.1:{addr}\"\nadmin = \"127.0.0.1:{admin}\"\n\
         [bundle]\nfile = \"bundle.ghb\"\npublic_key = \"{pk}\"\nsecrets = \"{secrets}\"\n\
         [filters]\nbuiltin_dir = \"{builtin}\"\ncache_dir = \"{cache}\"\n\
         [[routes]]\nupstream = \"http://{up}\"\n",
        pk = keys.join("bundle-signing.pub.pem").display(),
        secrets = keys.join("edge-secrets.toml").display(),
        builtin = component_dir().display(),
        cache = dir.join("cache").display(),
    );
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    GatewayProc::start(
        &dir.join("gateway.toml"),
        format!("127.0.0.1:{addr}").parse().unwrap(),
        format!("127.0.0.1:{admin}").parse().unwrap(),
        &dir.join("gateway.log"),
    )
}

fn request(c: &corpus::WireCase, with_host_header: bool) -> hyper::Request<TestBody> {
    let uri = if with_host_header { c.target() } else { format!("http://{}{}", c.host, c.target()) };
    let mut b = hyper::Request::builder().method(c.method.as_str()).uri(uri);
    if with_host_header {
        b = b.header("host", &c.host);
    }
    for (k, v) in &c.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(body(bytes::Bytes::new())).unwrap()
}

async fn seen(resp: hyper::Response<hyper::body::Incoming>, hits_before: usize, up: &echo::Echo) -> corpus::WireSeen {
    let status = resp.status().as_u16();
    let response =
        resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("?").to_string())).collect();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    let upstream = (up.hits.load(Ordering::SeqCst) > hits_before).then(|| echo::echoed_headers(&body));
    corpus::WireSeen { status, upstream, response, body }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_wire_contract_over_http1_and_h2c() {
    let tmp = tempfile::tempdir().unwrap();
    let up = echo::echo_upstream(corpus::WIRE_UPSTREAM_RESPONSE).await;
    let gw = gateway(tmp.path(), up.addr);

    let mut outcomes = Vec::new();
    for c in corpus::wire_cases() {
        let before = up.hits.load(Ordering::SeqCst);
        let mut s = connect(gw.addr, None).await;
        let resp = s.send_request(request(&c, true)).await.unwrap();
        outcomes.push(seen(resp, before, &up).await);
    }
    let mut it = outcomes.into_iter();
    corpus::check_wire("gateway (HTTP/1.1)", false, |_| it.next().unwrap());

    // HTTP/2 has no connection-specific fields: a case that sends `Connection` is an
    // HTTP/1.1 case. Every other case must come out the same over h2c.
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let cases: Vec<corpus::WireCase> = corpus::wire_cases()
        .into_iter()
        .filter(|c| !c.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("connection")))
        .collect();
    assert!(cases.len() >= 4);
    let mut failures = Vec::new();
    for c in &cases {
        let before = up.hits.load(Ordering::SeqCst);
        let resp = h2.send_request(request(c, false)).await.unwrap();
        let got = seen(resp, before, &up).await;
        failures.extend(corpus::wire_mismatch(c, &got, false));
    }
    assert!(failures.is_empty(), "gateway (h2c): {}", failures.join("\n"));

    // An absolute-form target names the host the request is decided under; a `Host` that
    // disagrees never reaches the upstream (RFC 9112 §3.2.2), nor does a client's
    // underscore spelling of an identity header.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    raw.write_all(
        b"GET http://acme.corpus.test/public?wire=1 HTTP/1.1\r\nHost: globex.corpus.test\r\n\
          X_Gatehouse_Org: globex\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    raw.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = &answer[text.find("\r\n\r\n").unwrap() + 4..];
    let got = echo::echoed_headers(body);
    let values = |name: &str| got.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    assert_eq!(values("host"), ["acme.corpus.test"], "{got:?}");
    assert_eq!(values("x-forwarded-host"), ["acme.corpus.test"]);
    assert!(got.iter().all(|(k, _)| !k.eq_ignore_ascii_case("x_gatehouse_org")), "{got:?}");
    drop(gw);
}
