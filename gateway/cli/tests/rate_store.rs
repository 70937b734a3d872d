//! The shared rate store on a real `redis-server` (Debian's, installed by scripts/test;
//! `GATEHOUSE_REDIS_SERVER` names another): the Lua script against the core's GCRA under
//! a fake clock, two `gatehouse gateway` processes sharing one organisation's budget, and
//! Redis killed and restarted under a gateway set to fail closed and one set to fail open.
//! Without the binary each test prints `SKIPPED`.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_core::engine::RateStep;
use gatehouse_core::ratelimit::Gcra;
use support::*;

fn redis_binary(test: &str) -> Option<PathBuf> {
    let bin = std::env::var_os("GATEHOUSE_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"));
    if bin.exists() {
        Some(bin)
    } else {
        skip(test, &format!("no redis-server at {} (scripts/test installs Debian's)", bin.display()));
        None
    }
}

/// A redis-server on loopback, killed when dropped. With `aof`, every write is fsynced
/// before Redis answers (a kill -9 loses nothing it acknowledged).
struct Redis {
    child: Option<Child>,
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
    aof: bool,
}

impl Redis {
    fn start(bin: &Path, dir: &Path, aof: bool) -> Redis {
        let mut r = Redis { child: None, bin: bin.to_path_buf(), port: free_port(), dir: dir.to_path_buf(), aof };
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Start again on the same port and directory.
    fn restart(&mut self) {
        let aof = if self.aof {
            ["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            ["--appendonly", "no", "--appendfsync", "no"]
        };
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--dir"])
            .arg(&self.dir)
            .args(aof)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ping() {
            assert!(Instant::now() < deadline, "redis-server did not answer PING");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// kill -9.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

const POLICY: &str = r#"
[tiers.shared]
limits.org = { requests = 100, per_secs = 3600 }

[tiers.small]
limits.org = { requests = 5, per_secs = 3600 }

[orgs.shared]
tier = "shared"
hosts = ["shared.test"]

[orgs.small]
tier = "small"
hosts = ["small.test"]

[[routes]]
name = "open"
path = "/"
auth = "public"
"#;

/// Keys and the bundle in `dir`, the demo upstream started; returns its address.
fn setup(dir: &Path) -> (SocketAddr, Killed) {
    compile_bundle(dir, POLICY, 1, &dir.join("bundle.ghb"));
    let up: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = bin()
        .args(["upstream", "--listen", &up.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(up).is_err() {
        assert!(Instant::now() < deadline, "upstream not listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    (up, Killed(child))
}

/// A gateway counting in `redis_url`, failing as `on_error` says.
fn gateway(dir: &Path, name: &str, up: SocketAddr, redis_url: &str, on_error: &str) -> GatewayProc {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = format!(
        "[listen]\naddr = \"{addr}\"\nadmin = \"{admin}\"\n[bundle]\nfile = \"bundle.ghb\"\n\
         public_key = \"keys/bundle-signing.pub.pem\"\nsecrets = \"keys/edge-secrets.toml\"\n\
         [rate_store]\nkind = \"redis\"\nurl = \"{redis_url}\"\non_error = \"{on_error}\"\ntimeout_ms = 200\n\
         [[routes]]\nupstream = \"http://{up}\"\n"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    GatewayProc::start(&path, addr, admin, &dir.join(format!("{name}.log")))
}

fn reason(h: &hyper::HeaderMap) -> String {
    h.get("x-gatehouse-reason").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_share_one_budget() {
    let Some(redis_bin) = redis_binary("two_gateways_share_one_budget") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let redis = Redis::start(&redis_bin, d, false);
    let (up, _upstream) = setup(d);
    let gws = [gateway(d, "a", up, &redis.url(), "deny"), gateway(d, "b", up, &redis.url(), "deny")];
    // 200 requests at once, 100 through each gateway, each on its own connection.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let addr = gws[i % 2].addr;
        tasks.push(tokio::spawn(async move { send(addr, get("shared.test", "/", &[]), None).await }));
    }
    let (mut admitted, mut limited) = (0, 0);
    for t in tasks {
        let (status, headers, _) = t.await.unwrap();
        match status {
            200 => admitted += 1,
            429 => {
                assert_eq!(reason(&headers), "rate_limited");
                assert!(headers.contains_key("retry-after"));
                limited += 1;
            }
            other => panic!("status {other} ({})", reason(&headers)),
        }
    }
    assert_eq!((admitted, limited), (100, 100), "one budget of 100 across both gateways");
    // Both counted the same budget: the next request through either is refused.
    for g in &gws {
        let (status, headers, _) = send(g.addr, get("shared.test", "/", &[]), None).await;
        assert_eq!((status, reason(&headers).as_str()), (429, "rate_limited"));
    }
    // Another organisation's budget is its own.
    let (status, headers, _) = send(gws[0].addr, get("small.test", "/", &[]), None).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("ratelimit-remaining").unwrap(), "4");
}

/// Until `addr` answers `small.test` as a gateway counting in Redis does: neither 503
/// (failing closed) nor an uncounted 200 (failing open).
async fn until_reconnected(addr: SocketAddr) -> (u16, hyper::HeaderMap) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, headers, _) = send(addr, get("small.test", "/", &[]), None).await;
        if status != 503 && (status != 200 || headers.contains_key("ratelimit-remaining")) {
            return (status, headers);
        }
        assert!(Instant::now() < deadline, "still {status} {} after Redis came back", reason(&headers));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_fails_as_configured_and_limits_resume() {
    let Some(redis_bin) = redis_binary("redis_outage_fails_as_configured_and_limits_resume") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut redis = Redis::start(&redis_bin, d, true);
    let (up, _upstream) = setup(d);
    let closed = gateway(d, "closed", up, &redis.url(), "deny");
    let open = gateway(d, "open", up, &redis.url(), "allow");
    // Two of the five counted before the outage.
    for remaining in ["4", "3"] {
        let (status, headers, _) = send(closed.addr, get("small.test", "/", &[]), None).await;
        assert_eq!(status, 200);
        assert_eq!(headers.get("ratelimit-remaining").unwrap(), remaining);
    }
    // Load on another organisation through both gateways, from before the outage until
    // after Redis is back: every answer is a decision (never a dropped connection or
    // another 5xx), the closed gateway's refusals during the outage are 503
    // rate_store_unavailable.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for (i, g) in [closed.addr, open.addr].into_iter().cycle().take(8).enumerate() {
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = try_send(g, get("shared.test", "/", &[])).await;
                let (status, headers, _) = r.unwrap_or_else(|e| panic!("load client {i}: {e}"));
                seen.push((status, reason(&headers)));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (i % 2 == 0, seen)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    // Fail closed: 503 rate_store_unavailable, quickly (the call is bounded), every time.
    for _ in 0..20 {
        let started = Instant::now();
        let (status, headers, body) = send(closed.addr, get("small.test", "/", &[]), None).await;
        assert_eq!((status, reason(&headers).as_str()), (503, "rate_store_unavailable"), "{body}");
        assert_eq!(body.trim_end(), r#"{"error":"rate_store_unavailable"}"#);
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }
    // Fail open: admitted, uncounted, without RateLimit headers.
    for _ in 0..20 {
        let (status, headers, _) = send(open.addr, get("small.test", "/", &[]), None).await;
        assert_eq!(status, 200);
        assert!(!headers.contains_key("ratelimit-remaining"));
    }
    for g in [&closed, &open] {
        assert_eq!(admin_get(g.admin, "/healthz").unwrap().0, 200, "the gateway stays up");
        let (_, metrics) = admin_get(g.admin, "/metrics").unwrap();
        assert!(
            metrics.contains("gatehouse_rate_store_errors_total{error=\"rate_store_failed\"}")
                || metrics.contains("gatehouse_rate_store_errors_total{error=\"rate_store_timeout\"}"),
            "{metrics}"
        );
    }
    assert!(!closed.logs().contains("panicked") && !open.logs().contains("panicked"));
    // Redis back (its append-only file kept the two counted): the limit resumes where it
    // was, through either gateway: three more, then 429.
    redis.restart();
    let (status, headers) = until_reconnected(closed.addr).await;
    assert_eq!((status, headers.get("ratelimit-remaining").unwrap().to_str().unwrap()), (200, "2"));
    let (status, headers) = until_reconnected(open.addr).await;
    assert_eq!((status, headers.get("ratelimit-remaining").unwrap().to_str().unwrap()), (200, "1"));
    let (status, _, _) = send(closed.addr, get("small.test", "/", &[]), None).await;
    assert_eq!(status, 200);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut closed_unavailable = 0;
    for task in load {
        let (fails_closed, seen) = task.await.unwrap();
        for (status, why) in seen {
            match (status, why.as_str()) {
                (200, _) | (429, "rate_limited") => {}
                (503, "rate_store_unavailable") if fails_closed => closed_unavailable += 1,
                other => {
                    panic!("under load: {other:?} from the {} gateway", if fails_closed { "closed" } else { "open" })
                }
            }
        }
    }
    assert!(closed_unavailable > 0, "the load saw the outage");
    for g in [&closed, &open] {
        let (status, headers, _) = send(g.addr, get("small.test", "/", &[]), None).await;
        assert_eq!((status, reason(&headers).as_str()), (429, "rate_limited"));
    }
}

/// A small deterministic generator (the sequence is the same on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[tokio::test]
async fn the_script_is_the_cores_gcra() {
    let Some(redis_bin) = redis_binary("the_script_is_the_cores_gcra") else { return };
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(&redis_bin, dir.path(), false);
    let config: gatehouse_proxy::rate_store::RateStoreConfig =
        toml::from_str(&format!("kind = \"redis\"\nurl = \"{}\"\npool_size = 2\ntimeout_ms = 2000\n", redis.url()))
            .unwrap();
    let metrics = gatehouse_proxy::metrics::Metrics::new();
    let store =
        Arc::new(gatehouse_proxy::rate_store::RedisRates::new(&config, metrics.rate_store_errors.clone()).unwrap());
    // Limits in whole microseconds (the script's unit), bursts from 1 up.
    let limits = [
        Gcra { interval: 1_000_000, burst: 1 },
        Gcra { interval: 250_000, burst: 4 },
        Gcra { interval: 10_000, burst: 100 },
        Gcra { interval: 3_000_000_000, burst: 3 },
    ];
    let keys = ["org:x", "route:x:a", "user:x:u1", "user:x:u2"];
    let mut model: std::collections::HashMap<&str, u64> = Default::default();
    let mut rng = Lcg(0x5eed);
    let mut now_us: u64 = 1_800_000_000_000_000;
    let mut refused = 0;
    for round in 0..3_000 {
        now_us += rng.next(400_000);
        // One to three steps on distinct keys, each with its limit.
        let n = 1 + rng.next(3) as usize;
        let start = rng.next(keys.len() as u64) as usize;
        let steps: Vec<(usize, RateStep)> = (0..n)
            .map(|j| {
                let k = (start + j) % keys.len();
                (k, RateStep { key: keys[k].into(), gcra: limits[k] })
            })
            .collect();
        let only: Vec<RateStep> = steps.iter().map(|(_, s)| s.clone()).collect();
        let got = store.run_at("x", &only, now_us).await.unwrap();
        // The reference: the core's Gcra::apply on each step in turn, stopping at a refusal.
        let mut want = Vec::new();
        for (k, s) in &steps {
            let (d, tat) = s.gcra.apply(model.get(keys[*k]).copied(), now_us * 1_000);
            want.push(d);
            if let Some(t) = tat {
                model.insert(keys[*k], t);
            }
            if !d.allowed {
                refused += 1;
                break;
            }
        }
        assert_eq!(got, want, "round {round} at {now_us} µs");
    }
    assert!(refused > 300, "the sequence exercises refusals ({refused})");
    assert_eq!(metrics.rate_store_errors.with_label_values(&["rate_store_failed"]).get(), 0);
}
