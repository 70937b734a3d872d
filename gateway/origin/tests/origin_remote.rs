//! The origin on a libSQL server (sqld or Turso) through embedded replicas: runs when
//! `GATEHOUSE_TEST_LIBSQL_URL` names one database URL template on a server (with `{db}`
//! for the database name, e.g. `http://{db}.db.localhost:8080` for sqld namespaces) and,
//! if the server wants one, `GATEHOUSE_TEST_LIBSQL_TOKEN`; otherwise it prints `SKIPPED`
//! (`support::skip`) and does nothing; so it does in a build without `--features
//! remote-replica` (the libSQL server client), which `scripts/test` passes when the URL is set.

mod support;

use gatehouse_origin::store::{Backend, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_data_through_a_libsql_server() {
    const TEST: &str = "tenant_data_through_a_libsql_server";
    let Ok(url) = std::env::var("GATEHOUSE_TEST_LIBSQL_URL") else {
        return support::skip(TEST, "GATEHOUSE_TEST_LIBSQL_URL is not set (no libSQL server)");
    };
    if !cfg!(feature = "remote-replica") {
        return support::skip(TEST, "built without --features remote-replica (the libSQL server client)");
    }
    let token = std::env::var("GATEHOUSE_TEST_LIBSQL_TOKEN").unwrap_or_default();
    let backend = Backend::Remote { url, token, sync: std::time::Duration::from_secs(1) };
    let dir = tempfile::tempdir().unwrap();
    let id =
        format!("t_{:016x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    {
        let store = Store::open(dir.path(), backend.clone(), 4).await.unwrap();
        let db = store.tenant(&id, true).await.unwrap();
        let h = db.lock().await;
        h.execute("INSERT INTO users (id, email, created_at) VALUES ('u_1', 'ada@example.test', 1)", ()).await.unwrap();
    }
    // A second origin host with an empty replica directory reads the write from the server.
    let other = tempfile::tempdir().unwrap();
    let store = Store::open(other.path(), backend, 4).await.unwrap();
    let db = store.tenant(&id, false).await.unwrap();
    db.sync().await.unwrap();
    let h = db.lock().await;
    let email: Option<String> =
        gatehouse_origin::store::one(&h, "SELECT email FROM users WHERE id = 'u_1'", ()).await.unwrap();
    assert_eq!(email.as_deref(), Some("ada@example.test"));
}
