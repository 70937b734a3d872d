//! The origin's storage backends side by side, one run each, bounded: embedded libSQL
//! files, and embedded replicas of a libSQL server (sqld on loopback, one namespace per
//! tenant created through its admin API, writes forwarded to it). For each: tenant
//! creation, bundle build, password sign-in (default argon2id), token refresh (one
//! client: latency; four clients: throughput).
//!
//! Usage: `cargo run --release -p gatehouse-bench --features remote-replica --bin
//! origin_server_bench [TENANTS]` (default 200). sqld: `GATEHOUSE_SQLD`, else
//! `<repository>/../shared/bin/sqld`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gatehouse_bench::origin_harness::{call, config, conn, create_org, pct, sign_in, start, Sender, EDGE};
use serde_json::{json, Value};

#[allow(dead_code)]
#[path = "../../../gateway/origin/tests/support/sqld.rs"]
mod sqld;

async fn refresh(s: &mut Sender, rt: &str) -> String {
    let body = json!({ "grant_type": "refresh_token", "refresh_token": rt });
    let (st, b) = call(s, "POST", "/t/t00000/token", None, Some(body)).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    serde_json::from_slice::<Value>(&b).unwrap()["refresh_token"].as_str().unwrap().to_string()
}

/// One backend's rows of the table.
async fn run(backend: &str, addr: SocketAddr, tenants: usize) {
    let mut s = conn(addr).await;
    let t = Instant::now();
    for i in 0..tenants {
        create_org(&mut s, i).await;
    }
    let per = t.elapsed().as_secs_f64() * 1e3 / tenants as f64;
    println!(
        "| {backend} | create a tenant (owner with default argon2id) | {per:.1} ms each | {tenants} in {:.1} s |",
        t.elapsed().as_secs_f64()
    );

    // Bundle build: each pull after a change rebuilds (one more tenant each time).
    let mut builds = Vec::new();
    for i in 0..3 {
        create_org(&mut s, tenants + i).await;
        let t0 = Instant::now();
        let (st, b) = call(&mut s, "GET", "/v1/bundles/bench", Some(EDGE), None).await;
        assert_eq!(st, 200);
        builds.push((t0.elapsed().as_secs_f64() * 1e3, b.len()));
    }
    let size = builds[0].1;
    let mut ms: Vec<f64> = builds.iter().map(|b| b.0).collect();
    println!(
        "| {backend} | bundle build, {} tenants | median {:.0} ms of 3 | {size} bytes |",
        tenants + 1,
        pct(&mut ms, 0.5)
    );

    let mut lat = Vec::new();
    for _ in 0..20 {
        let t0 = Instant::now();
        sign_in(&mut s).await;
        lat.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "| {backend} | password sign-in (argon2id m=19,456 KiB t=2; session, refresh token, audit) | p50 {:.1} ms | p99 {:.1} ms of 20 |",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );

    let mut rt = sign_in(&mut s).await["refresh_token"].as_str().unwrap().to_string();
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        rt = refresh(&mut s, &rt).await;
        lat.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "| {backend} | token refresh, 1 client (rotate + reuse check + sign + audit) | p50 {:.2} ms | p99 {:.2} ms of 200 |",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );

    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut s = conn(addr).await;
        let rt = sign_in(&mut s).await["refresh_token"].as_str().unwrap().to_string();
        clients.push((s, rt));
    }
    let secs = Duration::from_secs(5);
    let t = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(mut s, mut rt)| {
            tokio::spawn(async move {
                let mut n = 0u64;
                while t.elapsed() < secs {
                    rt = refresh(&mut s, &rt).await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut done = 0;
    for task in tasks {
        done += task.await.unwrap();
    }
    let el = t.elapsed().as_secs_f64();
    println!(
        "| {backend} | token refresh, 4 clients, 1 tenant | {:.0} refreshes/s | {done} in {el:.1} s |",
        done as f64 / el
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let tenants: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let bin = sqld::Sqld::binary().unwrap_or_else(|why| panic!("{why}"));
    let tmp = tempfile::tempdir().unwrap();
    println!("| backend | measurement | result | detail |\n|---|---|---|---|");
    let addr = start(config(&tmp.path().join("embedded"), "")).await;
    run("embedded files", addr, tenants).await;
    let server = sqld::Sqld::start(&bin, &tmp.path().join("sqld")).await;
    // The default background sync (5 s); writes are read back at once (read-your-writes).
    let storage = format!("[storage.remote]\nurl = \"{}\"\nadmin_url = \"{}\"\n", server.url(), server.admin_url());
    let addr = start(config(&tmp.path().join("server"), &storage)).await;
    run("sqld replicas", addr, tenants).await;
}
