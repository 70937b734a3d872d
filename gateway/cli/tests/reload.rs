//! Hot reload of gateway.toml on SIGHUP, under load: a real gateway process with two real
//! HTTP upstreams, keep-alive clients sending requests all along while the test rewrites
//! the file (a new route to another upstream, a route's chain changed from `gatehouse`
//! to `ip`, `token`), sends SIGHUP several times, then a broken file and a change only a
//! restart can apply (both refused, the routes in force stay). Zero requests may fail, the
//! clients' connections must survive every reload, and each change must take effect.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use support::*;

/// An upstream that answers every request with its own name.
async fn named_upstream(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(body(format!("upstream {name}"))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}

const POLICY: &str = r#"
[[issuers]]
issuer = "https://login.test"
audiences = ["gatehouse"]
jwks_file = "keys/token-signing.jwks.json"

[tiers.team]
limits.user = { requests = 1000000, per_secs = 1 }

[orgs.acme]
tier = "team"
hosts = ["acme.test"]
ip = { allow = ["127.0.0.0/8"] }

[[routes]]
name = "api"
path = "/"
"#;

/// The gateway's file: `routes` after the fixed sections (the admin listener comes from
/// the environment).
fn config(addr: u16, comps: &Path, cache: &Path, routes: &str) -> String {
    format!(
        "[listen]\naddr = \"127.0.0.1:{addr}\"\n\n[bundle]\nfile = \"bundle.ghb\"\npublic_key = \"keys/bundle-signing.pub.pem\"\nsecrets = \"keys/edge-secrets.toml\"\n\n[filters]\nbuiltin_dir = \"{}\"\ncache_dir = \"{}\"\nmax_memory_mib = 32\npool_size = 8\n{routes}",
        comps.display(),
        cache.display()
    )
}

fn route(prefix: &str, up: SocketAddr, filters: &str) -> String {
    format!("\n[[routes]]\npath_prefix = \"{prefix}\"\nupstream = \"http://{up}\"\nfilters = {filters}\n")
}

fn hup(gw: &GatewayProc) {
    let s = std::process::Command::new("kill").args(["-HUP", &gw.pid().to_string()]).status().unwrap();
    assert!(s.success());
}

fn metric(admin: SocketAddr, line_start: &str) -> u64 {
    let (_, m) = admin_get(admin, "/metrics").unwrap();
    m.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

/// Wait (at most 60 s: a reload compiles the components unless cached) until `until`.
async fn eventually(what: &str, gw: &GatewayProc, mut until: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !until().await {
        assert!(Instant::now() < deadline, "{what}: not in time\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One GET on a new connection: status and body.
async fn once(addr: SocketAddr, path: &str, auth: &str) -> (u16, String) {
    let (s, _, b) = send(addr, get("acme.test", path, &[("authorization", auth)]), None).await;
    (s, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn routes_and_filters_reload_on_sighup_under_load_without_failing_a_request() {
    let (up_a, up_b) = (named_upstream("A").await, named_upstream("B").await);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    compile_bundle(dir, POLICY, 1, &dir.join("bundle.ghb"));
    let comps = component_dir();
    let cache = comps.parent().unwrap().parent().unwrap().join("gatehouse-test-cwasm");
    let (port, admin_port) = (free_port(), free_port());
    let file = dir.join("gateway.toml");
    let write = |routes: &str| {
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, config(port, &comps, &cache, routes)).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    write(&route("/", up_a, r#"["gatehouse"]"#));
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let gw = GatewayProc::start_with_env(
        &file,
        format!("127.0.0.1:{port}").parse().unwrap(),
        admin,
        &dir.join("gateway.log"),
        &[("GATEHOUSE_GATEWAY__LISTEN__ADMIN", &admin.to_string())],
    );
    let a = gw.addr;
    let auth = format!("Bearer {}", mint(dir, "alice", "acme", "viewer"));

    // The load: keep-alive clients, each on one connection for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let (okc, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, okc, bad, auth) = (stop.clone(), okc.clone(), bad.clone(), auth.clone());
        clients.push(tokio::spawn(async move {
            let mut s = connect(a, None).await;
            while !stop.load(Ordering::Relaxed) {
                // A dead connection fails here: the test wants none.
                s.ready().await.expect("the client's connection survives every reload");
                let r = s.send_request(get("acme.test", "/api/x", &[("authorization", &auth)])).await;
                let r = r.expect("the request is answered on the same connection");
                let status = r.status().as_u16();
                let text = r.into_body().collect().await.expect("the whole response").to_bytes();
                if status == 200 && text.as_ref() == b"upstream A" {
                    okc.fetch_add(1, Ordering::Relaxed);
                } else {
                    eprintln!("failed: {status} {}", String::from_utf8_lossy(&text));
                    bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(once(a, "/b/x", &auth).await, (200, "upstream A".into()), "before: /b goes to the catch-all");

    // 1. A new route to another upstream, before the catch-all.
    write(&(route("/b", up_b, r#"["gatehouse"]"#) + &route("/", up_a, r#"["gatehouse"]"#)));
    let t = Instant::now();
    hup(&gw);
    eventually("the new route", &gw, async || once(a, "/b/x", &auth).await == (200, "upstream B".into())).await;
    eprintln!("reload 1 in force after {} ms", t.elapsed().as_millis());
    assert_eq!(metric(admin, r#"gatehouse_config_reloads_total{result="ok"}"#), 1);

    // 2. The catch-all's chain from `gatehouse` to `ip`, `token`.
    let before = metric(admin, r#"gatehouse_filter_call_seconds_count{filter="token"}"#);
    write(&(route("/b", up_b, r#"["gatehouse"]"#) + &route("/", up_a, r#"["ip", "token"]"#)));
    let t = Instant::now();
    hup(&gw);
    eventually("the new chain", &gw, async || {
        metric(admin, r#"gatehouse_filter_call_seconds_count{filter="token"}"#) > before + 10
    })
    .await;
    eprintln!("reload 2 in force after {} ms", t.elapsed().as_millis());
    assert_eq!(metric(admin, r#"gatehouse_config_reloads_total{result="ok"}"#), 2);
    // The chain still decides: no credential, no entry.
    let (status, _, _) = send(a, get("acme.test", "/api/x", &[]), None).await;
    assert_eq!(status, 401);

    // 3. The same file again, twice in a row: both reload, nothing changes.
    hup(&gw);
    tokio::time::sleep(Duration::from_millis(300)).await;
    hup(&gw);
    eventually("two more reloads", &gw, async || metric(admin, r#"gatehouse_config_reloads_total{result="ok"}"#) == 4)
        .await;

    // 4. A broken file: refused, the routes in force stay.
    write("\n[[routes]]\npath_prefix = \"/\"\nupstream = \"https://nowhere:1\"\n");
    hup(&gw);
    eventually("the refusal", &gw, async || metric(admin, r#"gatehouse_config_reloads_total{result="refused"}"#) == 1)
        .await;
    assert_eq!(once(a, "/b/x", &auth).await, (200, "upstream B".into()));
    assert!(gw.logs().contains("routes[0].upstream"), "{}", gw.logs());

    // 5. A change only a restart applies (the public listener): refused too.
    let other = free_port();
    let text = config(other, &comps, &cache, &route("/", up_b, r#"["gatehouse"]"#));
    std::fs::write(&file, text).unwrap();
    hup(&gw);
    eventually("the second refusal", &gw, async || {
        metric(admin, r#"gatehouse_config_reloads_total{result="refused"}"#) == 2
    })
    .await;
    assert!(gw.logs().contains("listen: cannot change on reload"), "{}", gw.logs());
    assert_eq!(once(a, "/b/x", &auth).await, (200, "upstream B".into()));
    assert_eq!(once(a, "/api/x", &auth).await, (200, "upstream A".into()));

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok_n, bad_n) = (okc.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    eprintln!("reloads under load: {ok_n} requests ok, {bad_n} failed, on 4 connections kept throughout");
    assert!(ok_n > 200, "too little load: {ok_n}");
    assert_eq!(bad_n, 0);
}
