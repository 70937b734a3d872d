//! Prometheus on every server, end to end (issue 16, part D): a real Prometheus server
//! (Debian's `prometheus`, started here on loopback with its own configuration and
//! storage) scrapes a real gateway (its admin listener) and a real origin (its metrics
//! listener, and its API listener with the scrape token). The test signs in (and fails
//! to), refreshes and replays a refresh token, fails two SSO callbacks, streams the audit
//! log to a receiver that accepts and one that is down, and sends requests through the
//! gateway; then it asks Prometheus' HTTP API for each series and checks the values are
//! what it caused. Last, every query of the Grafana dashboard (`deploy/grafana/gatehouse.json`)
//! is run against that Prometheus and names only series it has.

mod in_process_origin;
mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use in_process_origin::{origin_config, start_origin, EDGE, OPERATOR};
use serde_json::{json, Value};
use support::*;

const SCRAPE_TOKEN: &str = "scrape-token-0123456789abcdef";

/// The Prometheus binary: `GATEHOUSE_PROMETHEUS` or Debian's `/usr/bin/prometheus`.
fn prometheus_bin() -> Option<std::path::PathBuf> {
    let p = std::env::var_os("GATEHOUSE_PROMETHEUS").map(Into::into).unwrap_or("/usr/bin/prometheus".into());
    let runs = Command::new(&p).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    runs.is_ok_and(|s| s.success()).then_some(p)
}

/// Poll `f` until it gives a value, or fail after `secs` seconds saying `what`.
async fn until<T, F: std::future::Future<Output = Option<T>>>(what: &str, secs: u64, mut f: impl FnMut() -> F) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap()
}

/// A JSON call to the origin: (status, body).
async fn call(origin: SocketAddr, method: &str, path: &str, bearer: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut r = client().request(method.parse().unwrap(), format!("http://{origin}{path}"));
    if let Some(b) = bearer {
        r = r.bearer_auth(b);
    }
    if let Some(b) = body {
        r = r.header("content-type", "application/json").body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null))
}

/// A password sign-in at the token endpoint.
async fn password(origin: SocketAddr, email: &str, pw: &str) -> (u16, Value) {
    let body = json!({ "grant_type": "password", "email": email, "password": pw });
    call(origin, "POST", "/t/acme/token", None, Some(body)).await
}

/// A Prometheus HTTP API call (`/api/v1/...`) with query parameters; its `data`.
async fn api(prom: SocketAddr, path: &str, params: &[(&str, &str)]) -> Value {
    let resp = client().get(format!("http://{prom}/api/v1/{path}")).query(params).send().await.unwrap();
    let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(v["status"], "success", "{path} {params:?}: {v}");
    v["data"].clone()
}

/// The value of an instant query that yields one sample (`None`: no sample yet).
async fn value(prom: SocketAddr, query: &str) -> Option<f64> {
    let data = api(prom, "query", &[("query", query)]).await;
    let result = data["result"].as_array()?;
    assert!(result.len() <= 1, "{query}: {data}");
    result.first()?["value"][1].as_str()?.parse().ok()
}

/// Wait until Prometheus says `query` is `want`.
async fn expect(prom: SocketAddr, query: &str, want: f64) {
    let t = Instant::now();
    loop {
        let got = value(prom, query).await;
        if got == Some(want) {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{query}: want {want}, Prometheus says {got:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A webhook receiver that accepts every delivery (200); the number of requests it took.
async fn accepting_receiver() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                // Read the head and the body (Content-Length), then answer and close.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                            .unwrap_or(0usize);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    (addr, hits)
}

/// Every metric name an expression names: its identifiers, less label matchers, ranges,
/// groupings, strings, numbers and PromQL's own words.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const PROMQL: &[&str] = &[
        "sum",
        "max",
        "min",
        "avg",
        "count",
        "by",
        "without",
        "rate",
        "increase",
        "irate",
        "histogram_quantile",
        "time",
        "and",
        "or",
        "unless",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "topk",
        "bottomk",
        "abs",
        "clamp_min",
        "clamp_max",
        "offset",
        "bool",
    ];
    let mut out = BTreeSet::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut after_grouping = false;
    let mut group_depth = 0usize;
    let mut paren_depth = 0usize;
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += 1;
                }
            }
            '(' => {
                paren_depth += 1;
                if after_grouping {
                    group_depth = paren_depth;
                    after_grouping = false;
                }
            }
            ')' => {
                if group_depth == paren_depth {
                    group_depth = 0;
                }
                paren_depth -= 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric() || chars[i + 1] == '_' || chars[i + 1] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..=i].iter().collect();
                if depth_brace == 0 && depth_bracket == 0 && group_depth == 0 {
                    if word == "by" || word == "without" {
                        after_grouping = true;
                    } else if !PROMQL.contains(&word.as_str()) {
                        out.insert(word);
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Every query of the dashboard's panels (rows' nested panels too).
fn dashboard_queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dash["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = stack.pop() {
        if let Some(nested) = p["panels"].as_array() {
            stack.extend(nested);
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((p["title"].as_str().unwrap_or_default().to_string(), t["expr"].as_str().unwrap().to_string()));
        }
    }
    out
}

#[test]
fn promql_names_are_read_from_expressions() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, op) (rate(gatehouse_origin_storage_seconds_bucket{job="x"}[$__rate_interval])))"#,
    );
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["gatehouse_origin_storage_seconds_bucket"]);
    let names = metric_names("time() - max(gatehouse_origin_retention_last_run_seconds > 0) + sum by (job) (up)");
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["gatehouse_origin_retention_last_run_seconds", "up"]);
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_on_a_prometheus_data_source() {
    let dash: Value = serde_json::from_str(include_str!("../../../deploy/grafana/gatehouse.json")).unwrap();
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 36, "Grafana 10+ schema");
    let vars = dash["templating"]["list"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["type"] == "datasource" && v["query"] == "prometheus" && v["name"] == "datasource"));
    let queries = dashboard_queries(&dash);
    assert!(queries.len() >= 20, "{}", queries.len());
    let mut ids = BTreeSet::new();
    let mut stack: Vec<&Value> = dash["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = stack.pop() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel ids are unique");
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            }
        }
        stack.extend(p["panels"].as_array().into_iter().flatten());
    }
    for (title, q) in &queries {
        let names = metric_names(q);
        assert!(!names.is_empty(), "{title}: {q} names no series");
        assert!(names.iter().all(|n| n.starts_with("gatehouse_") || n == "up"), "{title}: {names:?}");
    }
}

fn write_prometheus_config(dir: &Path, gateway_admin: SocketAddr, origin_metrics: SocketAddr, origin_api: SocketAddr) {
    let token = dir.join("scrape.token");
    let yaml = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n\
         \x20 - job_name: gateway\n    static_configs:\n      - targets: [\"{gateway_admin}\"]\n\
         \x20 - job_name: origin\n    authorization:\n      type: Bearer\n      credentials_file: {token}\n\
         \x20   static_configs:\n      - targets: [\"{origin_metrics}\"]\n\
         \x20 - job_name: origin-api\n    authorization:\n      type: Bearer\n      credentials_file: {token}\n\
         \x20   static_configs:\n      - targets: [\"{origin_api}\"]\n",
        token = token.display()
    );
    std::fs::write(dir.join("prometheus.yml"), yaml).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_gateway_and_the_origin_and_the_dashboard_queries_its_series() {
    let Some(prometheus) = prometheus_bin() else {
        skip("prometheus", "no prometheus binary (scripts/env.sh ensure_test_prometheus installs Debian's)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The origin: metrics listener + scrape token, one sink that accepts, one that is down.
    let origin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics_listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (receiver, received) = accepting_receiver().await;
    let down = free_port();
    origin_config(dir, origin.port(), None);
    std::fs::write(dir.join("scrape.token"), format!("{SCRAPE_TOKEN}\n")).unwrap();
    std::fs::write(dir.join("sink.key"), "sink-hmac-key-0123456789\n").unwrap();
    let extra = format!(
        "[metrics]\nlisten = \"{metrics_listen}\"\ntoken_file = \"scrape.token\"\n\
         [[sinks]]\nname = \"siem\"\nkind = \"webhook\"\nurl = \"http://{receiver}/audit\"\nsecret_file = \"sink.key\"\nallow_http_loopback = true\nsweep_secs = 1\n\
         [[sinks]]\nname = \"down\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{down}/audit\"\nsecret_file = \"sink.key\"\nallow_http_loopback = true\n\
         timeout_secs = 1\nretry_base_ms = 60000\nretry_max_ms = 600000\nmax_attempts = 100\nsweep_secs = 1\n"
    );
    let toml = std::fs::read_to_string(dir.join("origin.toml")).unwrap() + &extra;
    std::fs::write(dir.join("origin.toml"), toml).unwrap();
    let cfg = gatehouse_origin::OriginConfig::load(&dir.join("origin.toml")).unwrap();
    let _stop = start_origin(cfg).await;
    let m = client();
    until("the origin's metrics listener", 15, || async {
        let r = m.get(format!("http://{metrics_listen}/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    // The metrics listener asks for the scrape token; the API listener takes it too.
    let r = m.get(format!("http://{metrics_listen}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = m.get(format!("http://{origin}/metrics")).bearer_auth(SCRAPE_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = m.get(format!("http://{origin}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"status":"ready"}"#);

    let org = json!({ "slug": "acme", "name": "Acme", "tier": "team", "owner_email": "o@acme.test",
        "owner_password": "owner password 1", "policy": { "hosts": ["acme.test"] } });
    assert_eq!(call(origin, "POST", "/v1/orgs", Some(OPERATOR), Some(org)).await.0, 201);
    let body = json!({ "email": "alice@acme.test", "password": "a long password 1", "role": "viewer" });
    assert_eq!(call(origin, "POST", "/v1/orgs/acme/users", Some(OPERATOR), Some(body)).await.0, 201);

    // Sign-ins: one that works, three wrong passwords and one unknown user.
    let (s, owner) = password(origin, "o@acme.test", "owner password 1").await;
    assert_eq!(s, 200, "{owner}");
    for _ in 0..3 {
        assert_eq!(password(origin, "alice@acme.test", "not the password").await.0, 401);
    }
    assert_eq!(password(origin, "nobody@acme.test", "not the password").await.0, 401);
    // A refresh (the spent token is replayed below).
    let spent = owner["refresh_token"].as_str().unwrap();
    let refresh = json!({ "grant_type": "refresh_token", "refresh_token": spent });
    let (s, refreshed) = call(origin, "POST", "/t/acme/token", None, Some(refresh.clone())).await;
    assert_eq!(s, 200, "{refreshed}");
    // Two SSO returns that are refused: an OIDC callback without state, a SAML post that
    // is not a SAML response.
    let r = m.get(format!("http://{origin}/t/acme/sso/c_0123/callback?code=x")).send().await.unwrap();
    assert_eq!(r.headers()["x-gatehouse-reason"], "sso_state_invalid");
    let r = m
        .post(format!("http://{origin}/t/acme/sso/c_0123/saml/acs"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("RelayState=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-gatehouse-reason"], "sso_saml_malformed");

    // The gateway, pulling its bundle from the origin, in front of the demo upstream.
    let up: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _upstream =
        Killed(bin().args(["upstream", "--listen", &up.to_string()]).stdout(Stdio::null()).spawn().unwrap());
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
    until("upstream listening", 15, || async { tokio::net::TcpStream::connect(up).await.ok().map(|_| ()) }).await;
    let auth = format!("Bearer {}", refreshed["access_token"].as_str().unwrap());
    for _ in 0..3 {
        let (s, _, b) = send(gw, get("acme.test", "/items", &[("authorization", &auth)]), None).await;
        assert_eq!(s, 200, "{b}");
    }
    for _ in 0..2 {
        let (s, _, _) = send(gw, get("acme.test", "/items", &[("authorization", "Bearer not-a-token")]), None).await;
        assert_eq!(s, 401);
    }
    // Now the spent refresh token replayed (which revokes the session the requests used).
    assert_eq!(call(origin, "POST", "/t/acme/token", None, Some(refresh)).await.0, 400);

    // Prometheus, scraping all three every second.
    write_prometheus_config(dir, admin, metrics_listen, origin);
    let prom: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _prometheus = Killed(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address={prom}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    until("Prometheus ready", 30, || async {
        let r = m.get(format!("http://{prom}/-/ready")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let started = Instant::now();
    until("every target up", 30, || async {
        let targets = api(prom, "targets", &[("state", "active")]).await;
        let active = targets["activeTargets"].as_array()?.clone();
        let up = active.iter().filter(|t| t["health"] == "up").count();
        (active.len() == 3 && up == 3).then_some(())
    })
    .await;
    eprintln!("prometheus: all 3 targets up {} ms after start", started.elapsed().as_millis());

    // What the test caused, as Prometheus has it.
    let o = r#"job="origin""#;
    expect(prom, &format!(r#"sum(gatehouse_origin_signins_total{{{o},method="password",result="success"}})"#), 1.0)
        .await;
    let failed = format!(
        r#"sum(gatehouse_origin_signins_total{{{o},method="password",result="failure",reason="invalid_credentials"}})"#
    );
    expect(prom, &failed, 4.0).await;
    expect(prom, &format!(r#"sum(gatehouse_origin_tokens_issued_total{{{o},kind="access"}})"#), 2.0).await;
    expect(prom, &format!(r#"sum(gatehouse_origin_tokens_issued_total{{{o},kind="refresh"}})"#), 2.0).await;
    expect(prom, &format!(r#"sum(gatehouse_origin_token_refreshes_total{{{o},result="success"}})"#), 1.0).await;
    expect(prom, &format!(r#"sum(gatehouse_origin_token_refreshes_total{{{o},result="reused"}})"#), 1.0).await;
    let sso = |p: &str, r: &str| {
        format!(r#"sum(gatehouse_origin_sso_total{{{o},protocol="{p}",result="failure",reason="{r}"}})"#)
    };
    expect(prom, &sso("oidc", "sso_state_invalid"), 1.0).await;
    expect(prom, &sso("saml", "sso_saml_malformed"), 1.0).await;
    expect(prom, &format!(r#"sum(gatehouse_origin_signins_total{{{o},method="sso",result="failure"}})"#), 2.0).await;
    expect(prom, &format!(r#"sum(gatehouse_origin_open_tenant_databases{{{o}}})"#), 1.0).await;
    expect(prom, &format!(r#"count(gatehouse_origin_build_info{{{o},region="eu-west"}} == 1)"#), 1.0).await;
    // The gateway built its bundle at least once; each build timed.
    let builds = until("a bundle build", 20, || async {
        value(prom, &format!(r#"sum(gatehouse_origin_bundle_builds_total{{{o},result="ok"}})"#))
            .await
            .filter(|v| *v >= 1.0)
    })
    .await;
    expect(prom, &format!("sum(gatehouse_origin_bundle_build_seconds_count{{{o}}})"), builds).await;
    // Storage: the tenant database opened once, every write's commit timed, readiness too.
    expect(prom, &format!(r#"sum(gatehouse_origin_storage_seconds_count{{{o},op="open"}})"#), 1.0).await;
    let commits = value(prom, &format!(r#"sum(gatehouse_origin_storage_seconds_count{{{o},op="commit"}})"#)).await;
    assert!(commits.is_some_and(|c| c >= 10.0), "commits: {commits:?}");
    let ready = value(prom, &format!(r#"sum(gatehouse_origin_storage_seconds_count{{{o},op="ready"}})"#)).await;
    assert!(ready.is_some_and(|c| c >= 2.0), "readiness checks: {ready:?}");
    // Sinks: the accepting one delivers and catches up; the one that is down lags.
    until("the siem sink caught up", 20, || async {
        let lag = value(prom, &format!(r#"max(gatehouse_origin_audit_sink_lag_records{{{o},sink="siem"}})"#)).await?;
        let sent =
            value(prom, &format!(r#"sum(gatehouse_origin_audit_sink_delivered_total{{{o},sink="siem"}})"#)).await?;
        (lag == 0.0 && sent >= 5.0).then_some(())
    })
    .await;
    assert!(received.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let lag = value(prom, &format!(r#"max(gatehouse_origin_audit_sink_lag_records{{{o},sink="down"}})"#)).await;
    assert!(lag.is_some_and(|l| l >= 5.0), "the down sink's lag: {lag:?}");
    let failures = value(prom, &format!(r#"sum(gatehouse_origin_audit_sink_failures_total{{{o},sink="down"}})"#)).await;
    assert!(failures.is_some_and(|f| f >= 1.0), "{failures:?}");
    until("the down sink's lag in seconds", 20, || async {
        value(prom, &format!(r#"max(gatehouse_origin_audit_sink_lag_seconds{{{o},sink="down"}})"#))
            .await
            .filter(|s| *s >= 1.0)
    })
    .await;
    // The API listener's /metrics (scrape token) is the same registry.
    expect(prom, r#"sum(gatehouse_origin_signins_total{job="origin-api",method="password",result="failure"})"#, 4.0)
        .await;
    // The gateway: three allowed, two refused, its bundle loaded and fresh.
    expect(prom, r#"sum(gatehouse_requests_total{job="gateway",decision="allow"})"#, 3.0).await;
    expect(prom, r#"sum(gatehouse_requests_total{job="gateway",decision="deny"})"#, 2.0).await;
    let loads = value(prom, r#"sum(gatehouse_bundle_loads_total{job="gateway",result="ok"})"#).await;
    assert!(loads.is_some_and(|l| l >= 1.0), "{loads:?}");
    let age = value(prom, r#"max(gatehouse_bundle_age_seconds{job="gateway"})"#).await;
    assert!(age.is_some_and(|a| (0.0..3600.0).contains(&a)), "{age:?}");
    let chain = value(prom, r#"sum(gatehouse_filter_chain_seconds_count{job="gateway"})"#).await;
    assert!(chain.is_some_and(|c| c >= 5.0), "{chain:?}");

    // Every dashboard query runs on this Prometheus and names only series it has.
    let names: BTreeSet<String> = api(prom, "label/__name__/values", &[])
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let dash: Value = serde_json::from_str(include_str!("../../../deploy/grafana/gatehouse.json")).unwrap();
    let queries = dashboard_queries(&dash);
    for (title, q) in &queries {
        for name in metric_names(q) {
            assert!(names.contains(&name), "panel {title:?}: {name} is not a series Prometheus scraped ({q})");
        }
        let q = q.replace("$__rate_interval", "1m");
        let data = api(prom, "query", &[("query", &q)]).await;
        assert!(data["resultType"].is_string(), "panel {title:?}: {data}");
    }
    eprintln!("dashboard: {} queries checked against {} series names", queries.len(), names.len());
    // What a scrape costs (Prometheus' own measurements) and how long readiness takes.
    for job in ["gateway", "origin", "origin-api"] {
        let secs = value(prom, &format!(r#"max(scrape_duration_seconds{{job="{job}"}})"#)).await.unwrap_or(-1.0);
        let samples = value(prom, &format!(r#"max(scrape_samples_scraped{{job="{job}"}})"#)).await.unwrap_or(-1.0);
        eprintln!("scrape {job}: {:.2} ms, {samples} samples", secs * 1000.0);
    }
    let ready = value(prom, r#"sum(gatehouse_origin_storage_seconds_sum{job="origin",op="ready"}) / sum(gatehouse_origin_storage_seconds_count{job="origin",op="ready"})"#).await;
    eprintln!("readiness query: {:.3} ms on average", ready.unwrap_or(-1.0) * 1000.0);
}
