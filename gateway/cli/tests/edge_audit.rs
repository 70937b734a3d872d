//! Edge decision events: the native gateway sends its decisions, in batches, to the
//! origin's `/v1/audit/edge`; when the origin goes away mid-stream the gateway keeps the
//! batch and sends it again, and the origin stores every event exactly once.

mod in_process_origin;
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Request;
use in_process_origin::{origin_config, start_origin, EDGE, OPERATOR};
use serde_json::{json, Value};
use support::*;

async fn origin_json(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {OPERATOR}"))
        .header("content-type", "application/json")
        .body(support::body(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
        .unwrap();
    let (s, _, b) = send(addr, req, None).await;
    (s, serde_json::from_str(&b).unwrap_or(Value::Null))
}

async fn edge_events(addr: SocketAddr) -> Vec<Value> {
    let (s, v) = origin_json(addr, "GET", "/v1/orgs/acme/audit/edge?limit=500", None).await;
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_reach_the_origin_once_across_an_origin_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let origin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = origin_config(dir, origin.port(), None);
    let stop = start_origin(cfg.clone()).await;
    let org = json!({ "slug": "acme", "name": "Acme", "tier": "team", "owner_email": "o@acme.test",
        "owner_password": "owner password 1", "policy": { "hosts": ["acme.test"] } });
    assert_eq!(origin_json(origin, "POST", "/v1/orgs", Some(org)).await.0, 201);

    let up: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut upstream =
        bin().args(["upstream", "--listen", &up.to_string()]).stdout(std::process::Stdio::null()).spawn().unwrap();
    let (addr, admin) = (free_port(), free_port());
    let config = format!(
        r#"[listen]
addr = "127.0.0.1:{addr}"
admin = "127.0.0.1:{admin}"
[bundle]
origin_url = "http://{origin}/v1/bundles/eu-west"
origin_token = "{EDGE}"
public_key = "keys/bundle.pub.pem"
poll_secs = 1
[audit]
url = "http://{origin}/v1/audit/edge"
token = "{EDGE}"
flush_ms = 100
[filters]
builtin_dir = "{builtins}"
cache_dir = "{cache}"
[[routes]]
upstream = "http://{up}"
filters = ["gatehouse"]
"#,
        builtins = component_dir().display(),
        cache = component_dir().parent().unwrap().parent().unwrap().join("gatehouse-test-cwasm").display()
    );
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    let gw_addr: SocketAddr = format!("127.0.0.1:{addr}").parse().unwrap();
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let _gw = GatewayProc::start(&dir.join("gateway.toml"), gw_addr, admin_addr, &dir.join("gateway.log"));
    let t = Instant::now();
    while !matches!(admin_get(admin_addr, "/readyz"), Ok((200, _))) {
        assert!(t.elapsed() < Duration::from_secs(60), "gateway not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Three refused requests: filed under acme, with their reason.
    for i in 0..3 {
        let id = format!("req-{i}");
        let (s, _, _) = send(gw_addr, get("acme.test", "/x", &[("x-request-id", &id)]), None).await;
        assert_eq!(s, 401);
    }
    let wait_for = |n: usize| async move {
        let t = Instant::now();
        loop {
            let got = edge_events(origin).await;
            if got.len() >= n {
                return got;
            }
            assert!(t.elapsed() < Duration::from_secs(15), "{} of {n} events arrived", got.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let got = wait_for(3).await;
    assert!(got.iter().all(|e| e["decision"] == "deny" && e["reason"] == "credential_missing"), "{got:?}");
    let ids: Vec<&str> = got.iter().filter_map(|e| e["request_id"].as_str()).collect();
    assert_eq!(ids.len(), 3, "{got:?}");

    // The origin goes away; the gateway keeps deciding (from its bundle) and keeps the events.
    drop(stop);
    let t = Instant::now();
    while tokio::net::TcpStream::connect(origin).await.is_ok() {
        assert!(t.elapsed() < Duration::from_secs(10), "origin did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 3..5 {
        let id = format!("req-{i}");
        assert_eq!(send(gw_addr, get("acme.test", "/x", &[("x-request-id", &id)]), None).await.0, 401);
    }
    tokio::time::sleep(Duration::from_millis(600)).await; // a few failed sends
    let _stop = start_origin(cfg).await;
    let got = wait_for(5).await;
    tokio::time::sleep(Duration::from_millis(600)).await; // more sends would show as duplicates
    let got_again = edge_events(origin).await;
    assert_eq!(got_again.len(), 5, "every event once: {got:?}");
    let mut ids: Vec<String> = got_again.iter().filter_map(|e| e["request_id"].as_str().map(String::from)).collect();
    ids.sort();
    assert_eq!(ids, ["req-0", "req-1", "req-2", "req-3", "req-4"]);
    let metrics = admin_get(admin_addr, "/metrics").unwrap().1;
    assert!(metrics.contains("gatehouse_audit_events_sent_total 5"), "{metrics}");
    let _ = upstream.kill();
    let _ = upstream.wait();
}
