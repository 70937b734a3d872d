//! Origin benchmarks on loopback, one run, bounded: bundle build time and size for 1,000
//! and 10,000 tenants; latency and memory with 10,000 tenant databases (more than the
//! open-database LRU holds); token refreshes per second; password sign-in latency with
//! the default argon2id parameters.
//!
//! Usage: `cargo run --release -p gatehouse-bench --bin origin_bench [TENANTS]` (default
//! 10000; the 1,000-tenant figure is taken on the way).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

const OPERATOR: &str = "operator-token-0123456789";
const EDGE: &str = "edge-token-0123456789abcdef";

fn config(dir: &Path, argon_kib: u32, argon_t: u32) -> gatehouse_origin::OriginConfig {
    std::fs::create_dir_all(dir).unwrap();
    let (pem, _) = gatehouse_bundler::keys::generate_bundle_keys();
    std::fs::write(dir.join("bundle.pem"), pem).unwrap();
    std::fs::write(dir.join("edge.tokens"), format!("edge {EDGE}\n")).unwrap();
    std::fs::write(dir.join("operator.token"), OPERATOR).unwrap();
    std::fs::write(dir.join("peer.token"), "peer-token-0123456789abcdef").unwrap();
    std::fs::write(dir.join("apikey.secret"), "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0NQ==").unwrap();
    std::fs::write(
        dir.join("origin.toml"),
        format!(
            r#"region = "bench"
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:1"
data_dir = "data"
[secrets]
bundle_signing_key = "bundle.pem"
edge_tokens = "edge.tokens"
operator_token = "operator.token"
peer_token = "peer.token"
api_key_secret = "apikey.secret"
[signin]
argon2_memory_kib = {argon_kib}
argon2_iterations = {argon_t}
"#
        ),
    )
    .unwrap();
    gatehouse_origin::OriginConfig::load(&dir.join("origin.toml")).unwrap()
}

async fn start(cfg: gatehouse_origin::OriginConfig) -> SocketAddr {
    let app = Arc::new(gatehouse_origin::App::open(cfg).await.unwrap());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(gatehouse_origin::api::serve(app, l, std::future::pending()));
    addr
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn conn(addr: SocketAddr) -> Sender {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, c) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s)).await.unwrap();
    tokio::spawn(c);
    send
}

async fn call(s: &mut Sender, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Bytes) {
    let mut b = hyper::Request::builder().method(method).uri(path).header("host", "bench");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(Full::new(Bytes::from(body.map(|v| v.to_string()).unwrap_or_default()))).unwrap();
    s.ready().await.unwrap();
    let resp = s.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

async fn bundle_build(s: &mut Sender, tenants: usize) {
    // A change makes the next pull rebuild: rotate nothing, just create one more org.
    let t = Instant::now();
    let (st, b) = call(s, "GET", "/v1/bundles/bench", Some(EDGE), None).await;
    assert_eq!(st, 200);
    println!(
        "| bundle build, {tenants} tenants | {:.0} ms | {} bytes ({:.1} KiB, {:.0} bytes per tenant) |",
        t.elapsed().as_secs_f64() * 1e3,
        b.len(),
        b.len() as f64 / 1024.0,
        b.len() as f64 / tenants as f64
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let tmp = tempfile::tempdir().unwrap();
    println!("| measurement | result | detail |\n|---|---|---|");

    // Bulk tenants: owners get a cheap argon2 setting so that creating 10,000 is quick;
    // sign-in cost is measured separately with the defaults.
    let addr = start(config(&tmp.path().join("bulk"), 8, 1)).await;
    let mut s = conn(addr).await;
    let rss0 = rss_kib();
    let t = Instant::now();
    for i in 0..total {
        let slug = format!("t{i:05}");
        let body = json!({ "slug": slug, "name": slug, "tier": "team", "owner_email": format!("o@{slug}.test"),
            "owner_password": "owner password 1", "policy": { "hosts": [format!("{slug}.example.test")] } });
        let (st, b) = call(&mut s, "POST", "/v1/orgs", Some(OPERATOR), Some(body)).await;
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
        if i + 1 == 1_000 || i + 1 == total {
            let per = t.elapsed().as_secs_f64() * 1e3 / (i + 1) as f64;
            println!(
                "| create {} tenants (db file + migrations + owner + audit) | {per:.2} ms each | {:.1} s in all |",
                i + 1,
                t.elapsed().as_secs_f64()
            );
            bundle_build(&mut s, i + 1).await;
        }
    }
    // Latency across every tenant (the LRU holds 256 open databases: most requests open
    // one) and memory.
    let mut lat = Vec::new();
    let t = Instant::now();
    let n = 2_000;
    for i in 0..n {
        let slug = format!("t{:05}", (i * 7919) % total);
        let t0 = Instant::now();
        let (st, _) = call(
            &mut s,
            "POST",
            &format!("/t/{slug}/token"),
            None,
            Some(json!({ "grant_type": "refresh_token", "refresh_token": "ghr_unknown" })),
        )
        .await;
        assert_eq!(st, 400);
        lat.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    println!(
        "| request to a random one of {total} tenants (opens its libSQL file unless in the 256-entry LRU) | p50 {:.0} µs, p99 {:.0} µs | {:.0} req/s sequential |",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        n as f64 / t.elapsed().as_secs_f64()
    );
    println!(
        "| resident memory of the origin process with {total} tenants | {} MiB | {} MiB before creating them |",
        rss_kib() / 1024,
        rss0 / 1024
    );
    let files = std::fs::read_dir(tmp.path().join("bulk/data/tenants")).unwrap().count();
    println!("| files under data/tenants | {files} | one database (+ WAL/SHM while open) per tenant |");

    // Token refresh throughput (rotation, reuse check, new access token, audit), one
    // tenant, 4 concurrent clients each refreshing its own session.
    let mut clients = Vec::new();
    for c in 0..4 {
        let mut s = conn(addr).await;
        let (st, b) = call(
            &mut s,
            "POST",
            "/t/t00000/token",
            None,
            Some(json!({ "grant_type": "password", "email": "o@t00000.test", "password": "owner password 1" })),
        )
        .await;
        assert_eq!(st, 200, "{c}");
        let v: Value = serde_json::from_slice(&b).unwrap();
        clients.push((s, v["refresh_token"].as_str().unwrap().to_string()));
    }
    let secs = Duration::from_secs(5);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (mut s, mut rt) in clients {
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while t.elapsed() < secs {
                let (st, b) = call(
                    &mut s,
                    "POST",
                    "/t/t00000/token",
                    None,
                    Some(json!({ "grant_type": "refresh_token", "refresh_token": rt })),
                )
                .await;
                assert_eq!(st, 200);
                rt = serde_json::from_slice::<Value>(&b).unwrap()["refresh_token"].as_str().unwrap().to_string();
                n += 1;
            }
            n
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await.unwrap();
    }
    println!("| token refresh (rotate + reuse check + sign + audit), 4 clients, 1 tenant | {:.0} refreshes/s | {done} in {:.1} s |", done as f64 / t.elapsed().as_secs_f64(), t.elapsed().as_secs_f64());

    // Sign-in latency with the default argon2id parameters.
    let defaults = gatehouse_origin::config::SigninSettings::default();
    let addr = start(config(&tmp.path().join("signin"), defaults.argon2_memory_kib, defaults.argon2_iterations)).await;
    let mut s = conn(addr).await;
    let body = json!({ "slug": "acme", "name": "acme", "tier": "team", "owner_email": "o@acme.test", "owner_password": "owner password 1" });
    assert_eq!(call(&mut s, "POST", "/v1/orgs", Some(OPERATOR), Some(body)).await.0, 201);
    let mut lat = Vec::new();
    for _ in 0..20 {
        let t0 = Instant::now();
        let (st, _) = call(
            &mut s,
            "POST",
            "/t/acme/token",
            None,
            Some(json!({ "grant_type": "password", "email": "o@acme.test", "password": "owner password 1" })),
        )
        .await;
        assert_eq!(st, 200);
        lat.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let mut wrong = Vec::new();
    for _ in 0..4 {
        let t0 = Instant::now();
        let (st, _) = call(
            &mut s,
            "POST",
            "/t/acme/token",
            None,
            Some(json!({ "grant_type": "password", "email": "nobody@acme.test", "password": "owner password 1" })),
        )
        .await;
        assert_eq!(st, 401);
        wrong.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "| password sign-in, argon2id m={} KiB t={} p=1 | p50 {:.1} ms | unknown user p50 {:.1} ms (same work: dummy hash) |",
        defaults.argon2_memory_kib,
        defaults.argon2_iterations,
        pct(&mut lat, 0.5),
        pct(&mut wrong, 0.5)
    );
}
