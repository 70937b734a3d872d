//! Origin benchmarks on loopback, one run, bounded: bundle build time and size for 1,000
//! and 10,000 tenants, and the rebuild after one tenant's change; latency and memory with 10,000 tenant databases (more than the
//! open-database LRU holds); token refreshes per second; password sign-in latency with
//! the default argon2id parameters.
//!
//! Usage: `cargo run --release -p gatehouse-bench --bin origin_bench [TENANTS]` (default
//! 10000; the 1,000-tenant figure is taken on the way).

use std::time::{Duration, Instant};

use gatehouse_bench::origin_harness::{argon, call, config, conn, pct, start, Sender, EDGE, OPERATOR};
use serde_json::{json, Value};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
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

/// One bundle pull: milliseconds and bytes.
async fn timed_pull(s: &mut Sender) -> (f64, usize) {
    let t = Instant::now();
    let (st, b) = call(s, "GET", "/v1/bundles/bench", Some(EDGE), None).await;
    assert_eq!(st, 200);
    (t.elapsed().as_secs_f64() * 1e3, b.len())
}

fn report_rebuilds(after: &str, tenants: usize, mut ms: Vec<f64>) {
    let max = ms.iter().cloned().fold(0.0, f64::max);
    println!(
        "| bundle rebuild {after}, {tenants} tenants | {:.0} ms (median of {}) | max {max:.0} ms |",
        pct(&mut ms, 0.5),
        ms.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let tmp = tempfile::tempdir().unwrap();
    println!("| measurement | result | detail |\n|---|---|---|");

    // Bulk tenants: owners get a cheap argon2 setting so that creating 10,000 is quick;
    // sign-in cost is measured separately with the defaults.
    let addr = start(config(&tmp.path().join("bulk"), &argon(8, 1))).await;
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
    // The bundle is assembled from per-tenant fragments: after one tenant's change only
    // that tenant's database is read again; after a region-wide change (key rotation)
    // none is.
    let mut ms = Vec::new();
    for k in 0..5 {
        let slug = format!("t{:05}", (total / 2 + k * 997) % total);
        let hosts = [format!("{slug}.example.test"), format!("www.{slug}.example.test")];
        let body = json!({ "policy": { "hosts": hosts } });
        let (st, b) = call(&mut s, "PUT", &format!("/v1/orgs/{slug}/policy"), Some(OPERATOR), Some(body)).await;
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
        ms.push(timed_pull(&mut s).await.0);
    }
    report_rebuilds("after one tenant's policy changed", total, ms);
    let mut ms = Vec::new();
    for _ in 0..5 {
        let (st, _) = call(&mut s, "POST", "/v1/keys/rotate", Some(OPERATOR), None).await;
        assert_eq!(st, 200);
        ms.push(timed_pull(&mut s).await.0);
    }
    report_rebuilds("after a region-wide change (signing key rotated)", total, ms);
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
    let addr =
        start(config(&tmp.path().join("signin"), &argon(defaults.argon2_memory_kib, defaults.argon2_iterations))).await;
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
