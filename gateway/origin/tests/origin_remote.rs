//! The origin on a libSQL server (sqld) through embedded replicas, for real: each test
//! starts its own sqld (`support::sqld`: free loopback ports, a temporary data directory)
//! with one namespace per tenant, which the origin creates and deletes through sqld's
//! admin API. Without the sqld binary, or in a build without `--features remote-replica`
//! (the libSQL server client), each test prints `SKIPPED` (`support::skip`).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use gatehouse_origin::store::{self, server, Backend, Store};
use serde_json::{json, Value};
use support::origin::{free_port, js, Origin, EDGE, OPERATOR, OWNER_PASSWORD};
use support::sqld::Sqld;

/// The sqld binary, or `None` after saying why `test` cannot run.
fn sqld_or_skip(test: &str) -> Option<PathBuf> {
    if !cfg!(feature = "remote-replica") {
        support::skip(test, "built without --features remote-replica (the libSQL server client)");
        return None;
    }
    match Sqld::binary() {
        Ok(p) => Some(p),
        Err(why) => {
            support::skip(test, &why);
            None
        }
    }
}

fn backend(s: &Sqld) -> Backend {
    Backend::Remote {
        url: s.url(),
        token: String::new(),
        sync: Duration::from_secs(1),
        admin: Some(server::Admin::new(&s.admin_url(), None, Duration::from_secs(5))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_data_through_a_libsql_server() {
    let Some(bin) = sqld_or_skip("tenant_data_through_a_libsql_server") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&bin, &tmp.path().join("sqld")).await;
    let id = "t_0123456789abcdef01234567";
    let ns = server::namespace(id);
    {
        let store = Store::open(&tmp.path().join("host-a"), backend(&sqld), 4).await.unwrap();
        assert!(sqld.has_namespace("directory").await, "the directory's namespace is made at the first start");
        assert!(!sqld.has_namespace(&ns).await);
        let db = store.tenant(id, true).await.unwrap();
        assert!(sqld.has_namespace(&ns).await, "creating the tenant made its namespace");
        let h = db.lock().await;
        h.execute("INSERT INTO users (id, email, created_at) VALUES ('u_1', 'ada@example.test', 1)", ()).await.unwrap();
    }
    assert_eq!(sqld.namespaces(), vec!["directory".to_string(), ns.clone()]);
    // A second origin host with an empty replica directory reads the write from the server.
    let store = Store::open(&tmp.path().join("host-b"), backend(&sqld), 4).await.unwrap();
    let db = store.tenant(id, false).await.unwrap();
    db.sync().await.unwrap();
    let email: Option<String> =
        store::one(&*db.lock().await, "SELECT email FROM users WHERE id = 'u_1'", ()).await.unwrap();
    assert_eq!(email.as_deref(), Some("ada@example.test"));
    drop(db);
    let deleted = store.delete_tenant(id).await.unwrap();
    assert_eq!(deleted.namespace.as_deref(), Some(ns.as_str()));
    assert!(deleted.files >= 1, "{deleted:?}");
    assert!(!store.tenant_path(id).exists());
    assert!(!sqld.has_namespace(&ns).await, "deleting the tenant deleted its namespace");
    assert_eq!(sqld.namespaces(), vec!["directory".to_string()]);
    let left: Vec<_> =
        std::fs::read_dir(tmp.path().join("host-b/tenants")).unwrap().map(|f| f.unwrap().path()).collect();
    assert!(left.is_empty(), "the replica and its metadata are removed: {left:?}");
}

/// An origin for `region` (of `regions`, name → port) whose databases are on `sqld`.
async fn origin_on(sqld: &Sqld, root: &std::path::Path, region: &str, port: u16, regions: &[(&str, u16)]) -> Origin {
    let mut toml = support::origin::config(region, port, "127.0.0.1", regions);
    toml.push_str(&sqld.storage_toml());
    support::origin::launch(&root.join(region), port, format!("http://127.0.0.1:{port}"), &toml).await
}

/// The namespace of the tenant `org` (a created organisation) is on the server.
fn ns_of(org: &Value) -> String {
    server::namespace(org["id"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_on_sqld_end_to_end() {
    let Some(bin) = sqld_or_skip("origin_on_sqld_end_to_end") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&bin, &tmp.path().join("sqld")).await;
    let port = free_port();
    let o = origin_on(&sqld, tmp.path(), "eu-west", port, &[]).await;
    assert!(!o.app.store.is_local());
    let acme = support::origin::create_org(&o, "acme", "acme", "team").await;
    let globex = support::origin::create_org(&o, "globex", "globex", "team").await;
    assert!(sqld.has_namespace(&ns_of(&acme)).await && sqld.has_namespace(&ns_of(&globex)).await);
    let mut want = vec!["directory".to_string(), ns_of(&acme), ns_of(&globex)];
    want.sort();
    assert_eq!(sqld.namespaces(), want, "one namespace per tenant and the directory, nothing else");

    // Sign-in, refresh (a write each: the session, the rotated token, the audit records).
    let (s, tok) = support::origin::sign_in(&o, "acme", "owner@acme.test", OWNER_PASSWORD, &[]).await;
    assert_eq!(s, 200, "{tok}");
    let body = json!({ "grant_type": "refresh_token", "refresh_token": tok["refresh_token"] });
    let (s, refreshed) = js("POST", &format!("{}/t/acme/token", o.url), None, Some(body.clone())).await;
    assert_eq!(s, 200, "{refreshed}");
    let (s, v) = js("POST", &format!("{}/t/acme/token", o.url), None, Some(body)).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "a spent refresh token is refused");
    // The bundle holds both tenants.
    let (s, _, bundle) =
        support::origin::call("GET", &format!("{}/v1/bundles/eu-west", o.url), Some(EDGE), None, &[]).await;
    assert_eq!(s, 200);
    let text = String::from_utf8_lossy(&bundle);
    assert!(text.contains("/t/acme") && text.contains("/t/globex"), "issuers of both tenants in the bundle");
    let (s, v) = js("GET", &format!("{}/v1/orgs/acme/audit/verify", o.url), Some(OPERATOR), None).await;
    assert_eq!((s, v["intact"].clone()), (200, json!(true)), "{v}");

    // The primary holds the data: a second origin host of the region (the same public URL
    // and secrets), with an empty data directory, signs the owner in from its replicas.
    let port2 = free_port();
    let mut toml = support::origin::config("eu-west", port2, "127.0.0.1", &[]);
    toml = toml.replace(&format!("public_url = \"http://127.0.0.1:{port2}\""), &format!("public_url = \"{}\"", o.url));
    for secret in ["bundle.pem", "edge.tokens", "operator.token", "peer.token", "apikey.secret"] {
        toml = toml.replace(&format!("\"{secret}\""), &format!("\"{}\"", o.dir.join(secret).display()));
    }
    toml.push_str(&sqld.storage_toml());
    let o2 =
        support::origin::launch(&tmp.path().join("host-2"), port2, format!("http://127.0.0.1:{port2}"), &toml).await;
    let (s, tok2) = support::origin::sign_in(&o2, "acme", "owner@acme.test", OWNER_PASSWORD, &[]).await;
    assert_eq!(s, 200, "{tok2}");
    drop(o2);

    // Deleting the tenant deletes its namespace on the server.
    let (s, c) = js("POST", &format!("{}/v1/orgs/globex/deletion", o.url), Some(OPERATOR), None).await;
    assert_eq!(s, 201, "{c}");
    let (s, v) =
        js("DELETE", &format!("{}/v1/orgs/globex", o.url), Some(OPERATOR), Some(json!({ "confirm": c["confirm"] })))
            .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["namespace_deleted"].as_str(), Some(ns_of(&globex).as_str()), "{v}");
    assert!(!sqld.has_namespace(&ns_of(&globex)).await);
    let mut want = vec!["directory".to_string(), ns_of(&acme)];
    want.sort();
    assert_eq!(sqld.namespaces(), want);
    let (s, _) = support::origin::sign_in(&o, "globex", "owner@globex.test", OWNER_PASSWORD, &[]).await;
    assert_eq!(s, 404, "a deleted tenant's routes are gone");
    assert!(!o.app.store.tenant_path(globex["id"].as_str().unwrap()).exists(), "its replica file too");

    // A namespace whose deletion did not reach the server (made again here) is deleted
    // when an origin of the region starts.
    let admin = server::Admin::new(&sqld.admin_url(), None, Duration::from_secs(5));
    admin.create(&ns_of(&globex)).await.unwrap();
    let port3 = free_port();
    let mut toml = support::origin::config("eu-west", port3, "127.0.0.1", &[]);
    toml.push_str(&sqld.storage_toml());
    let _o3 =
        support::origin::launch(&tmp.path().join("host-3"), port3, format!("http://127.0.0.1:{port3}"), &toml).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sqld.has_namespace(&ns_of(&globex)).await {
        assert!(std::time::Instant::now() < deadline, "the deleted tenant's namespace is swept at start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sqld.has_namespace(&ns_of(&acme)).await, "a live tenant's namespace stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residency_two_regions_each_on_its_own_sqld() {
    let Some(bin) = sqld_or_skip("residency_two_regions_each_on_its_own_sqld") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (eu_db, us_db) =
        (Sqld::start(&bin, &tmp.path().join("sqld-eu")).await, Sqld::start(&bin, &tmp.path().join("sqld-us")).await);
    let (pe, pu) = (free_port(), free_port());
    let regions = [("eu-west", pe), ("us-east", pu)];
    let eu = origin_on(&eu_db, tmp.path(), "eu-west", pe, &regions).await;
    let us = origin_on(&us_db, tmp.path(), "us-east", pu, &regions).await;
    let acme = support::origin::create_org(&eu, "acme", "acme", "team").await;
    let globex = support::origin::create_org(&eu, "globex", "globex", "team").await;
    let initech = support::origin::create_org(&us, "initech", "initech", "team").await;
    // Created in the wrong region: refused there, nothing made on either server.
    let body = json!({ "slug": "umbrella", "name": "u", "tier": "team", "home_region": "us-east",
        "owner_email": "o@u.test", "owner_password": OWNER_PASSWORD });
    let (s, v) = js("POST", &format!("{}/v1/orgs", eu.url), Some(OPERATOR), Some(body)).await;
    assert_eq!(s, 421, "{v}");

    // Each tenant's namespace exists on exactly one server: its home region's.
    for (org, home, other) in [(&acme, &eu_db, &us_db), (&globex, &eu_db, &us_db), (&initech, &us_db, &eu_db)] {
        let ns = ns_of(org);
        assert!(home.has_namespace(&ns).await, "{ns} on its home region's server");
        assert!(!other.has_namespace(&ns).await, "{ns} not on the other region's server");
    }
    let listed = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(eu_db.namespaces(), listed(vec!["directory".into(), ns_of(&acme), ns_of(&globex)]));
    assert_eq!(us_db.namespaces(), listed(vec!["directory".into(), ns_of(&initech)]));

    // The directory (no personal data) is known to both; a tenant is served only at home.
    let (s, v) = support::origin::sign_in(&eu, "initech", "owner@initech.test", OWNER_PASSWORD, &[]).await;
    assert_eq!((s, v["error"].as_str()), (421, Some("wrong_region")), "{v}");
    let (s, v) = support::origin::sign_in(&us, "initech", "owner@initech.test", OWNER_PASSWORD, &[]).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = support::origin::sign_in(&us, "acme", "owner@acme.test", OWNER_PASSWORD, &[]).await;
    assert_eq!((s, v["error"].as_str()), (421, Some("wrong_region")), "{v}");
    // us's directory (replicated, no personal data) has acme's entry; acme's data is only
    // on eu's server (above).
    let d = us.app.store.directory.lock().await;
    let n: Option<i64> = store::one(&d, "SELECT COUNT(*) FROM tenants WHERE slug = 'acme'", ()).await.unwrap();
    assert_eq!(n, Some(1), "us knows acme's directory entry");
}

/// One user created through the API: its email and the answer (status, body).
async fn create_user(url: &str, token: &str, n: usize) -> (String, u16, Value) {
    let email = format!("user{n}@acme.test");
    let body = json!({ "email": email, "password": "user password 12", "role": "viewer" });
    let (s, v) = js("POST", &format!("{url}/v1/orgs/acme/users"), Some(token), Some(body)).await;
    (email, s, v)
}

/// The emails of the users in `db` (a tenant database, read locally).
async fn emails(db: &store::Db) -> std::collections::BTreeSet<String> {
    let h = db.lock().await;
    let mut rows = h.query("SELECT email FROM users", ()).await.unwrap();
    let mut out = std::collections::BTreeSet::new();
    while let Some(r) = rows.next().await.unwrap() {
        out.insert(r.get::<String>(0).unwrap());
    }
    out
}

/// What the writers saw: every answer (email, status, body), in order.
type Answers = std::sync::Arc<std::sync::Mutex<Vec<(String, u16, Value)>>>;

/// Wait until the writers have `n` more acknowledged writes than `since`, at most 60 s.
async fn acks_beyond(answers: &Answers, since: usize, n: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let acks = answers.lock().unwrap().iter().filter(|a| a.1 == 201).count();
        if acks >= since + n {
            return acks;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {acks} writes acknowledged in 60 s (waiting for {})",
            since + n
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqld_killed_during_writes_loses_no_acknowledged_write() {
    let Some(bin) = sqld_or_skip("sqld_killed_during_writes_loses_no_acknowledged_write") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut sqld = Sqld::start(&bin, &tmp.path().join("sqld")).await;
    let o = origin_on(&sqld, tmp.path(), "eu-west", free_port(), &[]).await;
    let acme = support::origin::create_org(&o, "acme", "acme", "team").await;
    let (s, tok) = support::origin::sign_in(&o, "acme", "owner@acme.test", OWNER_PASSWORD, &[]).await;
    assert_eq!(s, 200, "{tok}");
    let token = tok["access_token"].as_str().unwrap().to_string();

    // Two writers create users without pause (each a transaction on the server: the user,
    // its membership, an audit record); sqld is killed with SIGKILL under them and started
    // again on the same port and data.
    let answers: Answers = Default::default();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (url, token, answers, stop) = (o.url.clone(), token.clone(), answers.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = w * 100_000;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let a = create_user(&url, &token, n).await;
                    n += 1;
                    let failed = a.1 != 201;
                    answers.lock().unwrap().push(a);
                    if failed {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    let before = acks_beyond(&answers, 0, 10).await;
    sqld.kill9();
    let at_kill = answers.lock().unwrap().len();
    // While it is down: writes fail with a clear error; reads come from the replica.
    for n in 0..3 {
        let (email, s, v) = create_user(&o.url, &token, 900_000 + n).await;
        assert_eq!((s, v["error"].as_str()), (503, Some("storage_unavailable")), "{email}: {v}");
        assert!(v["message"].as_str().unwrap().contains("libSQL server"), "{v}");
    }
    let (s, v) = js("GET", &format!("{}/v1/orgs/acme", o.url), Some(&token), None).await;
    assert_eq!(s, 200, "reads come from the local replica during the outage: {v}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = acks_beyond(&answers, 0, 0).await;
    // Back on the same port and data: the origin writes again without a restart of its own.
    sqld.restart().await;
    acks_beyond(&answers, during, 10).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    for (email, s, v) in &answers {
        match s {
            201 => {}
            503 => assert_eq!(v["error"], "storage_unavailable", "{email}: {v}"),
            other => panic!("{email}: {other} {v}"),
        }
    }
    let refused = answers.iter().filter(|a| a.1 == 503).count();
    assert!(refused > 0 && answers[at_kill..].iter().any(|a| a.1 == 503), "the writers saw the outage");

    // Every acknowledged write is on the server: in the origin's own replica, and in a
    // fresh replica on another host that has never seen the tenant.
    let id = acme["id"].as_str().unwrap();
    let mine = o.app.store.tenant(id, false).await.unwrap();
    mine.sync().await.unwrap();
    let other = Store::open(&tmp.path().join("host-b"), backend(&sqld), 4).await.unwrap();
    let theirs = other.tenant(id, false).await.unwrap();
    theirs.sync().await.unwrap();
    let (mine, theirs) = (emails(&mine).await, emails(&theirs).await);
    let acknowledged: Vec<&String> = answers.iter().filter(|a| a.1 == 201).map(|a| &a.0).collect();
    for email in &acknowledged {
        assert!(mine.contains(*email), "{email} acknowledged, missing from the origin's replica");
        assert!(theirs.contains(*email), "{email} acknowledged, missing from a fresh replica");
    }
    assert_eq!(mine, theirs, "both replicas caught up with the primary");
    let (s, v) = js("GET", &format!("{}/v1/orgs/acme/audit/verify", o.url), Some(OPERATOR), None).await;
    assert_eq!((s, v["intact"].clone()), (200, json!(true)), "the audit chain survived the crash: {v}");
    eprintln!(
        "{} writes acknowledged ({before} before the kill), {refused} refused with 503 during the outage, {} users on the server",
        acknowledged.len(),
        theirs.len()
    );
}
