//! `kill -9` of the origin while it writes loses nothing it acknowledged: every user whose
//! creation was answered 201 is there after a restart, and the audit chain still
//! verifies (`gatehouse audit verify`).

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Request;
use serde_json::{json, Value};
use support::*;

const OPERATOR: &str = ORIGIN_OPERATOR;

fn start(dir: &std::path::Path, addr: SocketAddr) -> Child {
    let child = bin()
        .args(["origin", "--config", dir.join("origin.toml").to_str().unwrap()])
        .env("GATEHOUSE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(t.elapsed() < Duration::from_secs(30), "origin did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// POST as the operator; `None` once the origin is gone (connection refused or cut).
async fn post(addr: SocketAddr, path: &str, body: Value) -> Option<(u16, Value)> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut s, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    let req = Request::post(path)
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {OPERATOR}"))
        .header("content-type", "application/json")
        .body(support::body(Bytes::from(body.to_string())))
        .unwrap();
    let resp = s.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let b = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, serde_json::from_slice(&b).unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    write_origin_config(dir, addr.port(), "");
    let mut origin = start(dir, addr);
    let body = json!({ "slug": "acme", "name": "Acme", "tier": "team", "owner_email": "o@acme.test", "owner_password": "owner password 1" });
    assert_eq!(post(addr, "/v1/orgs", body).await.unwrap().0, 201);

    // Four writers create users as fast as they can; the origin is killed mid-stream.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let email = format!("w{w}-{i}@acme.test");
                i += 1;
                match post(addr, "/v1/orgs/acme/users", json!({ "email": email, "role": "viewer" })).await {
                    Some((201, _)) => acknowledged.lock().unwrap().push(email),
                    Some((s, v)) => panic!("unexpected answer {s}: {v}"),
                    None => break, // the origin is gone
                }
            }
        }));
    }
    // Let a good number of writes land, then kill without warning.
    let t = Instant::now();
    while acknowledged.lock().unwrap().len() < 60 {
        assert!(t.elapsed() < Duration::from_secs(60), "writes too slow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(Command::new("kill").args(["-9", &origin.id().to_string()]).status().unwrap().success());
    let _ = origin.wait();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acknowledged.lock().unwrap().clone();

    // Restart on the same files: every acknowledged user is there.
    let mut origin = start(dir, addr);
    let mut found = std::collections::HashSet::new();
    let mut after = String::new();
    loop {
        let req = Request::get(format!("/v1/orgs/acme/users?limit=500&after={after}"))
            .header("host", addr.to_string())
            .header("authorization", format!("Bearer {OPERATOR}"))
            .body(support::body(Bytes::new()))
            .unwrap();
        let (s, _, b) = send(addr, req, None).await;
        assert_eq!(s, 200, "{b}");
        let v: Value = serde_json::from_str(&b).unwrap();
        for u in v["items"].as_array().unwrap() {
            found.insert(u["email"].as_str().unwrap().to_string());
        }
        match v["next"].as_str() {
            Some(n) => after = n.to_string(),
            None => break,
        }
    }
    eprintln!("acknowledged before kill -9: {}, users after restart: {}", acked.len(), found.len());
    let lost: Vec<&String> = acked.iter().filter(|e| !found.contains(*e)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged users lost: {lost:?}", lost.len(), acked.len());
    let _ = origin.kill();
    let _ = origin.wait();
    // The audit chain survived the crash intact.
    let out = run(&["audit", "verify", "--config", dir.join("origin.toml").to_str().unwrap(), "--tenant", "acme"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("intact"), "{stdout}");
}
