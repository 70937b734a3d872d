//! Error and panic reports through the real Sentry client and its HTTP transport to a
//! Sentry endpoint on loopback: what arrives, with which tags, and what never does.
//! One test: the subscriber and the client are the process's.

#[path = "sentry_receiver/mod.rs"]
mod sentry_receiver;

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use sentry_receiver::Receiver;
use serde_json::Value;

const JWT: &str =
    "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSIsIm9yZyI6ImFjbWUifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
const API_KEY: &str = "gh_abcdefghijkl_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmU";
const WAIT: Duration = Duration::from_secs(10);

/// Poll `f` once on this thread (enough for a future that finishes or panics at once).
fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
    let mut f = std::pin::pin!(f);
    f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

fn text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

#[test]
fn errors_and_panics_arrive_tagged_and_scrubbed() {
    let rx = Receiver::start();
    let config: gatehouse_telemetry::TelemetryConfig =
        toml::from_str(&format!("[sentry]\ndsn = \"{}\"\nenvironment = \"test\"\nflush_timeout_ms = 2000\n", rx.dsn()))
            .unwrap();
    let guard = gatehouse_telemetry::init(&config, "gatehouse-test", false).unwrap();

    // Breadcrumbs first, then the error they travel with.
    tracing::info!(client_ip = "198.51.100.23", "signed in alice@example.com from 198.51.100.23");
    tracing::warn!("refused token={JWT} and key {API_KEY}");
    tracing::error!(
        request_id = "req-42",
        error = %"no route for bob@example.com",
        authorization = "Bearer abc.def",
        route = "api",
        "filter failed; request denied"
    );
    let (e, env) =
        rx.wait_event(WAIT, |e| e["message"] == "filter failed; request denied").expect("the error event arrives");
    assert_eq!(env.path, "/api/1/envelope/");
    assert!(
        env.headers.iter().any(|(k, v)| k == "x-sentry-auth" && v.contains("sentry_key=publickey")),
        "{:?}",
        env.headers
    );
    eprintln!("{}", serde_json::to_string_pretty(&e).unwrap());
    // The protocol's default level (`error`) goes unsaid.
    assert!(e["level"] == "error" || e["level"].is_null(), "{}", e["level"]);
    assert_eq!(e["tags"]["request_id"], "req-42");
    assert_eq!(e["tags"]["service"], "gatehouse-test");
    assert_eq!(e["environment"], "test");
    assert_eq!(e["release"], format!("gatehouse@{}", env!("CARGO_PKG_VERSION")));
    let fields = &e["contexts"]["Rust Tracing Fields"];
    assert_eq!(fields["route"], "api");
    assert_eq!(fields["authorization"], "[Filtered]");
    assert_eq!(fields["error"], "no route for [email]");
    let crumbs: Vec<&str> =
        e["breadcrumbs"]["values"].as_array().unwrap().iter().filter_map(|b| b["message"].as_str()).collect();
    assert!(crumbs.contains(&"signed in [email] from [ip]"), "{crumbs:?}");
    assert!(crumbs.contains(&"refused token=[Filtered] and key [api-key]"), "{crumbs:?}");
    let raw = text(&env.raw);
    for secret in ["alice@example.com", "bob@example.com", "198.51.100.23", JWT, API_KEY, "abc.def", "ip_address"] {
        assert!(!raw.contains(secret), "`{secret}` was sent: {raw}");
    }

    // A panic while a request is served: reported with the request's id.
    let t = std::thread::spawn(|| {
        poll_once(gatehouse_telemetry::sentry::request_scope("req-panic-1", async {
            panic!("handler gave up on carol@example.com");
        }))
    });
    assert!(t.join().is_err());
    let (e, env) = rx
        .wait_event(WAIT, |e| e["tags"]["request_id"] == "req-panic-1")
        .expect("the panic is reported with the request id");
    assert_eq!(e["level"], "fatal");
    let ex = &e["exception"]["values"][0];
    assert_eq!(ex["mechanism"]["type"], "panic");
    assert_eq!(ex["value"], "handler gave up on [email]");
    assert_eq!(e["tags"]["service"], "gatehouse-test");
    assert!(!text(&env.raw).contains("carol@example.com"));
    // The request's breadcrumbs and tags stayed in its scope: an error after it has none.
    tracing::error!("after the request");
    let (e, _) = rx.wait_event(WAIT, |e| e["message"] == "after the request").expect("arrives");
    assert_eq!(e["tags"].get("request_id"), None, "{e}");

    // Dropping the guard sends what is queued, within the bound.
    tracing::error!("last words");
    let t = Instant::now();
    drop(guard);
    assert!(t.elapsed() < Duration::from_secs(3), "flush took {:?}", t.elapsed());
    assert!(rx.wait_event(Duration::from_secs(1), |e| e["message"] == "last words").is_some());
    // Nothing it received names a person or a secret, in any envelope.
    for env in rx.envelopes() {
        let raw = text(&env.raw);
        for secret in ["@example.com", "198.51.100.23", JWT, API_KEY] {
            assert!(!raw.contains(secret), "`{secret}` was sent: {raw}");
        }
        assert!(env.items.iter().all(|(h, _)| h["type"] != Value::Null));
    }
}
