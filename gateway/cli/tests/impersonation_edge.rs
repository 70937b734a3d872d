//! Impersonation at the edge, end to end (issue 15, part B): a real origin and a real
//! native gateway (the `gatehouse` filter component) polling its bundle, with the demo
//! upstream. An impersonation's token goes through; the upstream sees who really acts
//! (`x-gatehouse-actor`, a client's own copy dropped); the decision event reaches the
//! origin with the actor; and once the impersonation is ended, the same token is refused
//! (`session_revoked`) as soon as the gateway has the next bundle.

mod in_process_origin;
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Request;
use in_process_origin::{origin_config, start_origin, EDGE, OPERATOR};
use serde_json::{json, Value};
use support::*;

/// A JSON call to the origin as `bearer`.
async fn call(addr: SocketAddr, method: &str, path: &str, bearer: &str, body: Option<Value>) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {bearer}"))
        .header("content-type", "application/json")
        .body(support::body(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
        .unwrap();
    let (s, _, b) = send(addr, req, None).await;
    (s, serde_json::from_str(&b).unwrap_or(Value::Null))
}

/// Through the gateway to `/items` with `headers`: (status, reason code, upstream echo).
async fn through(gw: SocketAddr, headers: &[(&str, &str)]) -> (u16, String, Value) {
    let (s, h, b) = send(gw, get("acme.test", "/items", headers), None).await;
    let reason = h.get("x-gatehouse-reason").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (s, reason, serde_json::from_str(&b).unwrap_or(Value::Null))
}

/// Poll `f` until it says yes, or fail after 15 seconds saying `what`.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let t = Instant::now();
    while !f().await {
        assert!(t.elapsed() < Duration::from_secs(15), "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impersonation_is_named_upstream_and_in_edge_events_and_refused_once_ended() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let origin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _stop = start_origin(origin_config(dir, origin.port(), None)).await;
    let org = json!({ "slug": "acme", "name": "Acme", "tier": "team", "owner_email": "o@acme.test",
        "owner_password": "owner password 1", "policy": { "hosts": ["acme.test"] } });
    assert_eq!(call(origin, "POST", "/v1/orgs", OPERATOR, Some(org)).await.0, 201);
    let body = json!({ "email": "alice@acme.test", "password": "a long password 1", "role": "viewer" });
    let (s, alice) = call(origin, "POST", "/v1/orgs/acme/users", OPERATOR, Some(body)).await;
    assert_eq!(s, 201, "{alice}");

    let up: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _upstream = Killed(
        bin().args(["upstream", "--listen", &up.to_string()]).stdout(std::process::Stdio::null()).spawn().unwrap(),
    );
    let (addr, admin) = (free_port(), free_port());
    let config = format!(
        "[listen]\naddr = \"127.0.0.1:{addr}\"\nadmin = \"127.0.0.1:{admin}\"\n[bundle]\n\
         origin_url = \"http://{origin}/v1/bundles/eu-west\"\norigin_token = \"{EDGE}\"\n\
         public_key = \"keys/bundle.pub.pem\"\npoll_secs = 1\n[audit]\nurl = \"http://{origin}/v1/audit/edge\"\n\
         token = \"{EDGE}\"\nflush_ms = 100\n[filters]\nbuiltin_dir = \"{builtins}\"\ncache_dir = \"{cache}\"\n\
         [[routes]]\nupstream = \"http://{up}\"\nfilters = [\"gatehouse\"]\n",
        builtins = component_dir().display(),
        cache = component_dir().parent().unwrap().parent().unwrap().join("gatehouse-test-cwasm").display()
    );
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    let gw: SocketAddr = format!("127.0.0.1:{addr}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let _gw = GatewayProc::start(&dir.join("gateway.toml"), gw, admin, &dir.join("gateway.log"));
    until("gateway ready", || async { matches!(admin_get(admin, "/readyz"), Ok((200, _))) }).await;
    until("upstream listening", || async { tokio::net::TcpStream::connect(up).await.is_ok() }).await;

    // The operator impersonates alice.
    let body = json!({ "user_id": alice["id"], "reason": "ticket 7", "minutes": 5 });
    let (s, imp) = call(origin, "POST", "/v1/orgs/acme/impersonations", OPERATOR, Some(body)).await;
    assert_eq!(s, 201, "{imp}");
    let auth = format!("Bearer {}", imp["access_token"].as_str().unwrap());

    // Through the gateway: alice, acted for by the operator; a client's claim is dropped.
    let sent = [("authorization", auth.as_str()), ("x-gatehouse-actor", "user:mallory"), ("x-request-id", "imp-1")];
    let (s, reason, echo) = through(gw, &sent).await;
    assert_eq!((s, reason.as_str()), (200, ""), "{echo}");
    assert_eq!(echo["identity"]["x-gatehouse-subject"], alice["id"], "{echo}");
    assert_eq!(echo["identity"]["x-gatehouse-actor"], "operator", "{echo}");
    assert_eq!(echo["identity"]["x-gatehouse-session"], imp["impersonation"]["session_id"], "{echo}");
    // A session cookie of the same session says the same.
    let cookie = format!("gh_session={}", imp["access_token"].as_str().unwrap());
    let (s, _, echo) = through(gw, &[("cookie", &cookie)]).await;
    assert_eq!((s, &echo["identity"]["x-gatehouse-actor"]), (200, &json!("operator")), "{echo}");
    // The owner's own token carries no actor, whatever the client sends.
    let (s, own) = call(
        origin,
        "POST",
        "/t/acme/token",
        "",
        Some(json!({ "grant_type": "password", "email": "o@acme.test", "password": "owner password 1" })),
    )
    .await;
    assert_eq!(s, 200, "{own}");
    let own_auth = format!("Bearer {}", own["access_token"].as_str().unwrap());
    let (s, _, echo) = through(gw, &[("authorization", &own_auth), ("x-gatehouse-actor", "operator")]).await;
    assert_eq!((s, echo["identity"].get("x-gatehouse-actor")), (200, None), "{echo}");

    // The decision event reaches the origin with the actor.
    let event = |v: &Value| v["request_id"] == "imp-1" && v["decision"] == "allow";
    until("the impersonation's decision event at the origin", || async {
        let (_, v) = call(origin, "GET", "/v1/orgs/acme/audit/edge?limit=500", OPERATOR, None).await;
        v["items"].as_array().is_some_and(|a| a.iter().any(|e| event(e) && e["actor"] == "operator"))
    })
    .await;

    // Ended early: the gateway refuses the same token once it has the next bundle.
    let id = imp["impersonation"]["id"].as_str().unwrap();
    let (s, v) = call(origin, "DELETE", &format!("/v1/orgs/acme/impersonations/{id}"), OPERATOR, None).await;
    assert_eq!(s, 204, "{v}");
    until("the ended impersonation's token refused at the edge", || async {
        let (s, reason, _) = through(gw, &[("authorization", &auth)]).await;
        (s, reason.as_str()) == (401, "session_revoked")
    })
    .await;
    let (s, _, _) = through(gw, &[("authorization", &own_auth)]).await;
    assert_eq!(s, 200, "other sessions are untouched");
}
