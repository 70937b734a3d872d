//! Audit streaming end to end: an origin on loopback with `[[sinks]]` pointing at real
//! receivers on loopback (tests/sinks_support): a webhook that checks the HMAC signature
//! and fails when told to, syslog over TCP and over TLS (a certificate made by the test)
//! parsed as RFC 5424 octet-counted frames, and an OTLP/HTTP logs collector. Each
//! receiver checks continuity (every hash recomputed, record n+1's `prev_hash` is record
//! n's `hash`); retries with backoff, dead letters in `GET /metrics`, the replay, and
//! at-least-once across a restart of the origin with the same data directory.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::origin::{create_org, free_port, js, Origin, OPERATOR};

#[path = "sinks_support/receivers.rs"]
mod receivers;
use receivers::{parse_5424, verify_chain, Http, Syslog};

#[path = "mail_support/smtp.rs"]
#[allow(dead_code)]
mod smtp;

const KEY: &str = "siem-hmac-key-0123456789abcdef";

/// Start an origin in `dir` on a new port with `sinks` (TOML of `[[sinks]]` tables).
async fn start(dir: &Path, sinks: &str) -> Origin {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("siem.key"), format!("{KEY}\n")).unwrap();
    let port = free_port();
    let toml = format!("{}\n{sinks}\n", support::origin::config("eu-west", port, "localhost", &[]));
    support::origin::launch(dir, port, format!("http://127.0.0.1:{port}"), &toml).await
}

/// A webhook sink to `port` (`extra`: more settings).
fn webhook(port: u16, extra: &str) -> String {
    format!(
        "[[sinks]]\nname = \"siem\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\
         secret_file = \"siem.key\"\nallow_http_loopback = true\n{extra}\n"
    )
}

/// `GET /v1/sinks`' entry of sink `name`.
async fn sink(o: &Origin, name: &str) -> Value {
    let (s, v) = js("GET", &format!("{}/v1/sinks", o.url), Some(OPERATOR), None).await;
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().unwrap().iter().find(|i| i["name"] == name).cloned().unwrap()
}

/// Wait (at most 20 s) until `done` holds for sink `name`'s entry; the entry.
async fn wait_for(o: &Origin, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = sink(o, name).await;
        if done(&v) {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{what}: {v:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The tenant's cursor entry in a sink's entry: (tenant id, cursor, head).
fn position(entry: &Value, org: &str) -> (String, i64, i64) {
    let t = entry["tenants"].as_array().unwrap().iter().find(|t| t["org"] == org).unwrap();
    (t["tenant"].as_str().unwrap().to_string(), t["cursor"].as_i64().unwrap(), t["head"].as_i64().unwrap())
}

/// Make a few audit records in `slug` (users created by the operator).
async fn write_records(o: &Origin, slug: &str, n: usize) {
    for i in 0..n {
        let body = json!({ "email": format!("u{i}-{}@{slug}.test", free_port()), "password": "user password 123",
            "role": "viewer" });
        let (s, v) = js("POST", &format!("{}/v1/orgs/{slug}/users", o.url), Some(OPERATOR), Some(body)).await;
        assert_eq!(s, 201, "{v}");
    }
}

async fn metrics(o: &Origin) -> String {
    let (s, _, b) = support::origin::call("GET", &format!("{}/metrics", o.url), Some(OPERATOR), None, &[]).await;
    assert_eq!(s, 200);
    String::from_utf8(b).unwrap()
}

/// Every wire record in the webhook bodies accepted.
fn webhook_records(bodies: &[Value]) -> Vec<Value> {
    bodies.iter().flat_map(|b| b["records"].as_array().unwrap().clone()).collect()
}

#[tokio::test]
async fn the_webhook_gets_signed_batches_in_chain_order_and_failures_are_retried_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Http::start(Some(KEY.as_bytes()), 2).await;
    let o = start(dir.path(), &webhook(hook.port, "batch_size = 3\nretry_base_ms = 300\nretry_max_ms = 500")).await;
    create_org(&o, "acme", "Acme", "free").await;
    write_records(&o, "acme", 4).await;
    let entry =
        wait_for(&o, "siem", "everything delivered", |v| v["lag"] == 0 && v["delivered"].as_i64() > Some(0)).await;
    let (tenant, cursor, head) = position(&entry, "acme");
    assert!(head >= 5, "{entry}");
    assert_eq!(cursor, head);

    let requests = hook.requests();
    assert_eq!(hook.bad_signatures(), 0, "every request carries a valid HMAC");
    assert_eq!(requests.iter().filter(|r| r.status == 503).count(), 2, "{requests:?}");
    // The first batch failed twice: retried after 300 ms, then after 500 ms (600 capped).
    let first = &requests[0].body["records"];
    assert_eq!(requests[1].body["records"], *first, "the same batch is retried");
    assert_eq!(requests[2].body["records"], *first);
    let gaps: Vec<Duration> = requests.windows(2).take(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(300) && gaps[1] >= Duration::from_millis(500), "{gaps:?}");
    assert!(gaps[1] < Duration::from_millis(3000), "{gaps:?}");
    let bodies = hook.accepted();
    assert!(bodies.iter().all(|b| b["sink"] == "siem" && b["records"].as_array().unwrap().len() <= 3));
    let records = webhook_records(&bodies);
    assert_eq!(verify_chain(&tenant, &records), head, "every record arrived, in a verifiable chain");
    assert!(records.iter().all(|r| r["org"] == "acme" && r["region"] == "eu-west"));
    assert!(records.iter().any(|r| r["record"]["action"] == "user.create"), "{records:?}");
    // Records are sent in chain order.
    let seqs: Vec<i64> = records.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    assert_eq!((entry["failures"].as_i64(), entry["dead_letters"].as_i64()), (Some(2), Some(0)), "{entry}");
    assert_eq!(entry["kind"], "webhook");
    assert_eq!(entry["destination"], format!("http://127.0.0.1:{}/hook", hook.port));
    let m = metrics(&o).await;
    assert!(m.contains(&format!("gatehouse_origin_audit_sink_delivered_total{{sink=\"siem\"}} {head}")), "{m}");
    assert!(m.contains("gatehouse_origin_audit_sink_failures_total{sink=\"siem\"} 2"), "{m}");
    assert!(!m.contains(KEY), "the key is never shown");
    let shown = serde_json::to_string(&sink(&o, "siem").await).unwrap();
    assert!(!shown.contains(KEY));

    // New records are pushed as they are written (a commit wakes the sink; the sweep is
    // 30 s away).
    let t0 = Instant::now();
    write_records(&o, "acme", 1).await;
    let entry = wait_for(&o, "siem", "the new records", |v| v["lag"] == 0 && position(v, "acme").2 > head).await;
    let arrived = hook.requests().last().unwrap().at;
    // From the request that wrote the records to the receiver's answer (measured: a few
    // milliseconds on loopback).
    eprintln!("write to webhook receipt: {:?}", arrived - t0);
    assert!(arrived - t0 < Duration::from_secs(2), "{:?}", arrived - t0);
    assert_eq!(verify_chain(&tenant, &webhook_records(&hook.accepted())), position(&entry, "acme").2);

    let (_, api) = js("GET", &format!("{}/openapi.json", o.url), None, None).await;
    assert!(
        api["paths"]["/v1/sinks"]["get"].is_object() && api["paths"]["/v1/sinks/{name}/replay"]["post"].is_object()
    );

    // Only the operator sees the sinks.
    let (s, v) = js("GET", &format!("{}/v1/sinks", o.url), None, None).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("credential_missing")));
    let (s, v) = js("GET", &format!("{}/v1/sinks", o.url), Some("not-the-operator-token"), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("operator_only")));
    let (s, v) = js("POST", &format!("{}/v1/sinks/siem/replay", o.url), Some("not-the-operator-token"), None).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("operator_only")));
}

#[test]
fn the_receiver_refuses_a_forged_or_replayed_signature() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let sign = |key: &[u8], t: u64, body: &[u8]| {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    };
    let body = br#"{"records":[]}"#;
    assert!(receivers::signature_ok(KEY.as_bytes(), &sign(KEY.as_bytes(), now, body), body));
    assert!(!receivers::signature_ok(KEY.as_bytes(), &sign(b"another key of sixteen", now, body), body));
    assert!(!receivers::signature_ok(KEY.as_bytes(), &sign(KEY.as_bytes(), now, body), br#"{"records":[1]}"#));
    assert!(!receivers::signature_ok(KEY.as_bytes(), &sign(KEY.as_bytes(), now - 3600, body), body), "stale");
    assert!(!receivers::signature_ok(KEY.as_bytes(), "t=1,v1=zz", body));
    assert!(!receivers::signature_ok(KEY.as_bytes(), "", body));
}

#[tokio::test]
async fn a_receiver_that_always_fails_gets_dead_letters_the_stream_goes_on_and_a_replay_sends_them() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Http::start(Some(KEY.as_bytes()), 0).await;
    hook.always_fail(true);
    let o = start(dir.path(), &webhook(hook.port, "max_attempts = 2\nretry_base_ms = 20\nbatch_size = 2")).await;
    create_org(&o, "acme", "Acme", "free").await;
    write_records(&o, "acme", 2).await;
    let entry = wait_for(&o, "siem", "all dead-lettered", |v| {
        v["lag"] == 0 && v["dead_letters"].as_i64() > Some(0) && v["dead_letters"] == v["tenants"][0]["head"]
    })
    .await;
    let (tenant, _, head) = position(&entry, "acme");
    assert_eq!(entry["delivered"], 0);
    // Each batch (of at most 2) was tried twice.
    let failures = entry["failures"].as_i64().unwrap();
    assert!(failures % 2 == 0 && failures >= 2 * ((head + 1) / 2), "{entry}");
    assert!(entry["last_error"].as_str().unwrap().contains("503"), "{entry}");
    let ids: Vec<&str> =
        entry["dead_letter_ids"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len() as i64, head);
    assert_eq!(ids[0], format!("{tenant}:1"));
    assert_eq!(entry["dead_letter_ids"][0]["attempts"], 2);
    let m = metrics(&o).await;
    assert!(m.contains(&format!("gatehouse_origin_audit_sink_dead_letters_total{{sink=\"siem\"}} {head}")), "{m}");

    // The receiver heals: new records flow again (the cursor moved past the dead ones).
    hook.always_fail(false);
    write_records(&o, "acme", 1).await;
    let entry =
        wait_for(&o, "siem", "the stream goes on", |v| v["lag"] == 0 && v["delivered"].as_i64() > Some(0)).await;
    let (_, _, head2) = position(&entry, "acme");
    let live = webhook_records(&hook.accepted());
    assert!(live.iter().all(|r| r["seq"].as_i64().unwrap() > head), "only the new ones: {live:?}");

    // The replay sends the dead letters; the receiver then has the whole chain.
    let (s, v) = js("POST", &format!("{}/v1/sinks/siem/replay", o.url), Some(OPERATOR), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["delivered"].as_i64(), v["failed"].as_i64(), v["remaining"].as_i64()),
        (Some(head), Some(0), Some(0))
    );
    let all = webhook_records(&hook.accepted());
    assert_eq!(verify_chain(&tenant, &all), head2);
    assert_eq!(sink(&o, "siem").await["dead_letters"], 0);
    let (s, v) = js("GET", &format!("{}/v1/operator/audit", o.url), Some(OPERATOR), None).await;
    assert_eq!(s, 200);
    let replay = v["items"].as_array().unwrap().iter().find(|r| r["action"] == "sink.replay").cloned().unwrap();
    assert_eq!((replay["target"].as_str(), replay["after"]["delivered"].as_i64()), (Some("sink:siem"), Some(head)));

    // A failing replay keeps them, with the attempt counted; an unknown sink is a 404.
    hook.always_fail(true);
    write_records(&o, "acme", 1).await;
    let entry =
        wait_for(&o, "siem", "more dead letters", |v| v["dead_letters"].as_i64() > Some(0) && v["lag"] == 0).await;
    let n = entry["dead_letters"].as_i64();
    assert_eq!(n, Some(position(&entry, "acme").2 - head2));
    let (s, v) = js("POST", &format!("{}/v1/sinks/siem/replay", o.url), Some(OPERATOR), None).await;
    assert_eq!((s, v["delivered"].as_i64(), v["failed"].as_i64(), v["remaining"].as_i64()), (200, Some(0), n, n));
    assert_eq!(sink(&o, "siem").await["dead_letter_ids"][0]["attempts"], 3);
    let (s, v) = js("POST", &format!("{}/v1/sinks/nope/replay", o.url), Some(OPERATOR), None).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("sink_not_found")));
}

#[tokio::test]
async fn records_undelivered_when_the_origin_stops_arrive_after_it_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Http::start(Some(KEY.as_bytes()), 0).await;
    // A long backoff: after a failure, only a restart sends again.
    let sinks = webhook(hook.port, "max_attempts = 100\nretry_base_ms = 60000\nretry_max_ms = 60000");
    let o = start(dir.path(), &sinks).await;
    create_org(&o, "acme", "Acme", "free").await;
    let entry = wait_for(&o, "siem", "the first records", |v| v["lag"] == 0 && v["delivered"].as_i64() > Some(0)).await;
    let (tenant, delivered, _) = position(&entry, "acme");
    hook.always_fail(true);
    write_records(&o, "acme", 3).await;
    let entry = wait_for(&o, "siem", "a failure", |v| v["failures"] == 1).await;
    let (_, cursor, head) = position(&entry, "acme");
    assert_eq!(cursor, delivered, "nothing accepted, the cursor stays");
    assert!(head > delivered);
    drop(o);
    tokio::time::sleep(Duration::from_millis(300)).await;
    hook.always_fail(false);
    assert!(webhook_records(&hook.accepted()).iter().all(|r| r["seq"].as_i64().unwrap() <= delivered));

    // The same data directory: the cursor was kept, the rest goes out.
    let o = start(dir.path(), &sinks).await;
    let entry = wait_for(&o, "siem", "the rest after the restart", |v| v["lag"] == 0).await;
    assert_eq!(position(&entry, "acme").1, head);
    assert_eq!(entry["delivered"].as_i64(), Some(head - delivered), "only what was not accepted before");
    assert_eq!(verify_chain(&tenant, &webhook_records(&hook.accepted())), head);
}

#[tokio::test]
async fn syslog_over_tcp_and_tls_sends_rfc_5424_frames_that_chain() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    let (cert, key) = smtp::make_cert(dir.path());
    // The TCP receiver starts late; the untrusted one presents a certificate its sink
    // does not trust.
    let (tcp_port, tls_port, untrusted_port) = (free_port(), free_port(), free_port());
    let tls = Syslog::start(tls_port, Some(receivers::tls_server(&cert, &key))).await;
    let untrusted = Syslog::start(untrusted_port, Some(receivers::tls_server(&cert, &key))).await;
    let sinks = format!(
        "[[sinks]]\nname = \"plain\"\nkind = \"syslog\"\naddress = \"127.0.0.1:{tcp_port}\"\ntransport = \"tcp\"\n\
         retry_base_ms = 100\nretry_max_ms = 200\nmax_attempts = 100\n\
         [[sinks]]\nname = \"secure\"\nkind = \"syslog\"\naddress = \"127.0.0.1:{tls_port}\"\n\
         server_name = \"localhost\"\nca_file = \"cert.pem\"\nfacility = 10\nhostname = \"origin-1.example\"\nbatch_size = 2\n\
         [[sinks]]\nname = \"untrusted\"\nkind = \"syslog\"\naddress = \"127.0.0.1:{untrusted_port}\"\n\
         server_name = \"localhost\"\nmax_attempts = 1\n"
    );
    let o = start(dir.path(), &sinks).await;
    create_org(&o, "acme", "Acme", "free").await;
    write_records(&o, "acme", 3).await;
    let secure = wait_for(&o, "secure", "TLS delivery", |v| v["lag"] == 0).await;
    let (tenant, _, head) = position(&secure, "acme");
    // Nobody listens on the TCP port yet: attempts fail and are retried.
    wait_for(&o, "plain", "failed attempts", |v| v["failures"].as_i64() >= Some(2)).await;
    let plain_receiver = Syslog::start(tcp_port, None).await;
    wait_for(&o, "plain", "TCP delivery once the receiver listens", |v| v["lag"] == 0).await;

    for (r, pri, host) in [(&tls, 10 * 8 + 6, "origin-1.example"), (&plain_receiver, 13 * 8 + 6, "localhost")] {
        assert!(r.errors().is_empty(), "{:?}", r.errors());
        let parsed: Vec<_> = r.messages().iter().map(|m| parse_5424(m).unwrap()).collect();
        assert!(!parsed.is_empty());
        for m in &parsed {
            assert_eq!((m.pri, m.hostname.as_str(), m.app.as_str()), (pri, host, "gatehouse"));
            assert_eq!(m.sd_id, "gatehouse@32473");
            assert_eq!(m.msgid, m.json["record"]["action"].as_str().unwrap());
            // The structured data and the JSON agree on the chain position.
            for k in ["id", "seq", "prev_hash", "hash", "tenant"] {
                let j = &m.json[k];
                assert_eq!(m.params[k], j.as_str().map(str::to_string).unwrap_or(j.to_string()), "{k}");
            }
            assert_eq!(m.params["actor"], m.json["record"]["actor"].as_str().unwrap());
            assert!(m.timestamp.ends_with('Z'));
        }
        let wires: Vec<Value> = parsed.into_iter().map(|m| m.json).collect();
        assert_eq!(verify_chain(&tenant, &wires), head);
    }
    // Batches of two: one TLS connection per batch.
    assert!(tls.connections.load(std::sync::atomic::Ordering::SeqCst) as i64 >= (head + 1) / 2);
    // A receiver whose certificate is not trusted gets nothing: dead letters instead.
    let bad = wait_for(&o, "untrusted", "dead letters", |v| v["lag"] == 0).await;
    assert_eq!((bad["delivered"].as_i64(), bad["dead_letters"].as_i64()), (Some(0), Some(head)), "{bad}");
    assert!(untrusted.messages().is_empty());
    assert!(bad["last_error"].as_str().unwrap().contains("TLS"), "{bad}");
}

#[tokio::test]
async fn otlp_logs_arrive_as_export_logs_service_requests() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Http::start(None, 0).await;
    let sinks = format!(
        "[[sinks]]\nname = \"otel\"\nkind = \"otlp\"\nurl = \"http://127.0.0.1:{}\"\nallow_http_loopback = true\n",
        collector.port
    );
    let o = start(dir.path(), &sinks).await;
    create_org(&o, "acme", "Acme", "free").await;
    write_records(&o, "acme", 2).await;
    let entry = wait_for(&o, "otel", "delivery", |v| v["lag"] == 0 && v["delivered"].as_i64() > Some(0)).await;
    let (tenant, _, head) = position(&entry, "acme");
    let mut wires = Vec::new();
    for r in collector.requests() {
        assert_eq!(r.path, "/v1/logs");
        let rl = &r.body["resourceLogs"][0];
        let attrs: Vec<(&str, &Value)> = rl["resource"]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["key"].as_str().unwrap(), &a["value"]["stringValue"]))
            .collect();
        assert!(attrs.contains(&("service.name", &json!("gatehouse-origin"))), "{attrs:?}");
        assert!(attrs.contains(&("gatehouse.tenant", &json!(tenant))));
        assert_eq!(rl["scopeLogs"][0]["scope"]["name"], "gatehouse.audit");
        for lr in rl["scopeLogs"][0]["logRecords"].as_array().unwrap() {
            let body: Value = serde_json::from_str(lr["body"]["stringValue"].as_str().unwrap()).unwrap();
            let attr = |k: &str| {
                lr["attributes"].as_array().unwrap().iter().find(|a| a["key"] == k).map(|a| a["value"].clone()).unwrap()
            };
            assert_eq!(attr("gatehouse.audit.seq")["intValue"], body["seq"].to_string(), "int64 as a string");
            assert_eq!(attr("gatehouse.audit.hash")["stringValue"], body["hash"]);
            assert_eq!(attr("gatehouse.audit.prev_hash")["stringValue"], body["prev_hash"]);
            assert_eq!(attr("gatehouse.audit.action")["stringValue"], body["record"]["action"]);
            assert_eq!(attr("gatehouse.audit.id")["stringValue"], body["id"]);
            assert_eq!(lr["eventName"], body["record"]["action"]);
            let nanos: u128 = lr["timeUnixNano"].as_str().unwrap().parse().unwrap();
            assert_eq!(nanos, body["record"]["at"].as_u64().unwrap() as u128 * 1_000_000_000);
            assert_eq!((lr["severityNumber"].as_i64(), lr["severityText"].as_str()), (Some(9), Some("INFO")));
            wires.push(body);
        }
    }
    assert_eq!(verify_chain(&tenant, &wires), head);
}

#[tokio::test]
async fn a_configuration_with_a_bad_sink_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    let base = support::origin::config("eu-west", free_port(), "localhost", &[]);
    for (sink, field) in [
        (
            "[[sinks]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://siem.example/in\"\nsecret_file = \"k\"\n",
            "sinks.a.url",
        ),
        (
            "[[sinks]]\nname = \"a\"\nkind = \"syslog\"\naddress = \"siem.example:514\"\ntransport = \"tcp\"\n",
            "sinks.a.transport",
        ),
    ] {
        std::fs::write(dir.path().join("origin.toml"), format!("{base}\n{sink}")).unwrap();
        let e = gatehouse_origin::OriginConfig::load(&dir.path().join("origin.toml")).unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    }
    // A webhook's key file must exist and hold a real secret.
    let sink =
        "[[sinks]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://siem.example/in\"\nsecret_file = \"short.key\"\n";
    std::fs::write(dir.path().join("short.key"), "short").unwrap();
    std::fs::write(dir.path().join("origin.toml"), format!("{base}\n{sink}")).unwrap();
    let cfg = gatehouse_origin::OriginConfig::load(&dir.path().join("origin.toml")).unwrap();
    let e = gatehouse_origin::sinks::Sinks::open(&cfg).err().unwrap().to_string();
    assert!(e.contains("sinks.a.secret_file") && e.contains("16"), "{e}");
}

#[tokio::test]
async fn personal_data_leaves_the_region_only_for_a_sink_that_includes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (sealed_only, opened) =
        (Http::start(Some(KEY.as_bytes()), 0).await, Http::start(Some(KEY.as_bytes()), 0).await);
    let sinks = format!(
        "{}{}",
        webhook(sealed_only.port, ""),
        webhook(opened.port, "include_personal = true").replace("name = \"siem\"", "name = \"full\"")
    );
    let o = start(dir.path(), &sinks).await;
    create_org(&o, "acme", "Acme", "free").await;
    let body = json!({ "email": "pat.person@acme.test", "password": "user password 123", "role": "viewer" });
    let (s, v) = js("POST", &format!("{}/v1/orgs/acme/users", o.url), Some(OPERATOR), Some(body)).await;
    assert_eq!(s, 201, "{v}");
    let a = wait_for(&o, "siem", "delivery", |v| v["lag"] == 0 && v["delivered"].as_i64() > Some(0)).await;
    let b = wait_for(&o, "full", "delivery", |v| v["lag"] == 0 && v["delivered"].as_i64() > Some(0)).await;
    let (tenant, _, head) = position(&a, "acme");
    assert_eq!(position(&b, "acme").2, head);

    // Sealed only: no byte of the addresses, and the chain verifies.
    let plain = webhook_records(&sealed_only.accepted());
    let text = serde_json::to_string(&plain).unwrap();
    assert!(!text.contains("pat.person") && !text.contains("owner@acme.test"), "{text}");
    assert!(plain.iter().all(|r| r.get("personal").is_none()));
    assert!(plain.iter().any(|r| r["record"]["sealed"].is_string()), "the stored form carries it sealed");
    assert_eq!(verify_chain(&tenant, &plain), head);

    // Included: opened beside the stored record, which still verifies.
    let full = webhook_records(&opened.accepted());
    assert_eq!(verify_chain(&tenant, &full), head);
    let with_pat: Vec<&Value> =
        full.iter().filter(|r| r["personal"].to_string().contains("pat.person@acme.test")).collect();
    assert!(!with_pat.is_empty(), "{full:?}");
    assert!(with_pat.iter().all(|r| !r["record"].to_string().contains("pat.person")), "the stored form stays sealed");
}

#[tokio::test]
async fn https_receivers_are_checked_against_the_sinks_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    let (cert, key) = smtp::make_cert(dir.path());
    let tls = receivers::tls_server(&cert, &key);
    let (hook, collector) = (
        Http::start_with(Some(KEY.as_bytes()), 0, Some(tls.clone())).await,
        Http::start_with(None, 0, Some(tls)).await,
    );
    let sinks = format!(
        "[[sinks]]\nname = \"siem\"\nkind = \"webhook\"\nurl = \"https://localhost:{}/hook\"\nsecret_file = \"siem.key\"\n\
         ca_file = \"cert.pem\"\n\
         [[sinks]]\nname = \"untrusted\"\nkind = \"otlp\"\nurl = \"https://localhost:{}\"\nmax_attempts = 1\n",
        hook.port, collector.port
    );
    let o = start(dir.path(), &sinks).await;
    create_org(&o, "acme", "Acme", "free").await;
    let ok = wait_for(&o, "siem", "delivery over https", |v| v["lag"] == 0 && v["delivered"].as_i64() > Some(0)).await;
    let (tenant, _, head) = position(&ok, "acme");
    assert_eq!(verify_chain(&tenant, &webhook_records(&hook.accepted())), head);
    // Without the CA file the receiver's certificate is refused: nothing is sent.
    let bad = wait_for(&o, "untrusted", "refused certificate", |v| v["lag"] == 0).await;
    assert_eq!((bad["delivered"].as_i64(), bad["dead_letters"].as_i64()), (Some(0), Some(head)), "{bad}");
    assert!(bad["last_error"].as_str().unwrap().contains("certificate"), "{bad}");
    assert!(collector.requests().is_empty());
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts connections and reads nothing, answers nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let o = start(dir.path(), &webhook(port, "timeout_secs = 1\nmax_attempts = 1")).await;
    let t0 = Instant::now();
    create_org(&o, "acme", "Acme", "free").await;
    let entry = wait_for(&o, "siem", "timed out", |v| v["lag"] == 0 && v["dead_letters"].as_i64() > Some(0)).await;
    assert!(entry["last_error"].as_str().unwrap().contains("timed out"), "{entry}");
    assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(entry["delivered"], 0);
}
