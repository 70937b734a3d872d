//! Faults around a running gateway: the origin it polls for bundles goes away for longer
//! than the poll interval (the gateway keeps serving on the last verified bundle, stays
//! ready, and takes the next bundle when the origin is back). Upstream resets and stalls
//! are in gateway.rs (`502 upstream_unavailable`, `504 upstream_timeout`), an expired
//! bundle there too (`bundle_expired`), Redis killed under load in rate_store.rs.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use support::*;

const POLICY: &str = r#"
[tiers.free]

[orgs.acme]
tier = "free"
hosts = ["acme.test"]

[[routes]]
name = "open"
path = "/"
auth = "public"
"#;

/// A bundle origin on `listener` serving `bundle` (with its revision as the ETag) until
/// the returned task is aborted: aborting it drops the listener and every connection.
fn origin(listener: tokio::net::TcpListener, bundle: Arc<Mutex<(Vec<u8>, u64)>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let bundle = bundle.clone();
            conns.spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let (bytes, revision) = bundle.lock().unwrap().clone();
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("etag", format!("\"r{revision}\""))
                                .body(body(Bytes::from(bytes)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    })
}

fn revision(admin: SocketAddr) -> String {
    let (_, metrics) = admin_get(admin, "/metrics").unwrap();
    metrics.lines().find(|l| l.starts_with("gatehouse_bundle_revision ")).unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_down_longer_than_the_poll_interval_keeps_the_last_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    compile_bundle(dir, POLICY, 1, &dir.join("b1.ghb"));
    let bundle = Arc::new(Mutex::new((std::fs::read(dir.join("b1.ghb")).unwrap(), 1)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_addr = listener.local_addr().unwrap();
    let serving = origin(listener, bundle.clone());
    let upstream: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _up = Killed(bin().args(["upstream", "--listen", &upstream.to_string()]).spawn().unwrap());
    let (addr, admin) = (free_port(), free_port());
    let config = format!(
        "[listen]\naddr = \"127.0.0.1:{addr}\"\nadmin = \"127.0.0.1:{admin}\"\n[bundle]\n\
         origin_url = \"http://{origin_addr}/v1/bundles/test\"\npublic_key = \"keys/bundle-signing.pub.pem\"\n\
         poll_secs = 1\n[[routes]]\nupstream = \"http://{upstream}\"\n"
    );
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    let gw = GatewayProc::start(
        &dir.join("gateway.toml"),
        format!("127.0.0.1:{addr}").parse().unwrap(),
        format!("127.0.0.1:{admin}").parse().unwrap(),
        &dir.join("gateway.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while send(gw.addr, get("acme.test", "/", &[]), None).await.0 != 200 {
        assert!(Instant::now() < deadline, "the upstream never answered through the gateway");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(revision(gw.admin), "gatehouse_bundle_revision 1");
    // The origin goes away for four poll intervals.
    serving.abort();
    let _ = serving.await;
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(4) {
        let (status, _, _) = send(gw.addr, get("acme.test", "/", &[]), None).await;
        assert_eq!(status, 200, "served on the last bundle while the origin is down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(admin_get(gw.admin, "/readyz").unwrap().0, 200, "still ready: the bundle in force is valid");
    assert!(gw.logs().contains("bundle poll failed"), "the failed polls are logged: {}", gw.logs());
    // Back, with a new revision that moves the org: the gateway takes it within a poll.
    compile_bundle(dir, &POLICY.replace("acme.test", "moved.test"), 2, &dir.join("b2.ghb"));
    *bundle.lock().unwrap() = (std::fs::read(dir.join("b2.ghb")).unwrap(), 2);
    let _serving = origin(tokio::net::TcpListener::bind(origin_addr).await.unwrap(), bundle);
    let back = Instant::now();
    while revision(gw.admin) != "gatehouse_bundle_revision 2" {
        assert!(back.elapsed() < Duration::from_secs(10), "the new bundle did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(send(gw.addr, get("moved.test", "/", &[]), None).await.0, 200);
    let (status, headers, _) = send(gw.addr, get("acme.test", "/", &[]), None).await;
    assert_eq!((status, headers.get("x-gatehouse-reason").unwrap().to_str().unwrap()), (404, "tenant_unknown"));
}
