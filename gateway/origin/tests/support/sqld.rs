//! A libSQL server (sqld) for the server-mode tests: started on free loopback ports with
//! namespaces on and a data directory of the test's own, killed with SIGKILL and
//! restarted on the same ports and data, and asked through its admin API which
//! namespaces it holds.
//!
//! The binary: `GATEHOUSE_SQLD`, else `<repository>/../shared/bin/sqld`; [`Sqld::binary`]
//! says why there is none (the test then calls `support::skip`). The origin benchmark of
//! the server backend (bench, `origin_server_bench`) starts its sqld with this file too.

// Each test binary uses part of the harness.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running sqld; killed when dropped.
pub struct Sqld {
    /// Its user API port (HTTP, Hrana and the embedded replicas' gRPC).
    pub http: u16,
    /// Its admin API port.
    pub admin: u16,
    /// Its `--db-path`.
    pub db_path: PathBuf,
    binary: PathBuf,
    child: Option<Child>,
}

impl Sqld {
    /// The sqld binary to run, or why there is none.
    pub fn binary() -> Result<PathBuf, String> {
        if let Some(p) = std::env::var_os("GATEHOUSE_SQLD") {
            let p = PathBuf::from(p);
            return if p.is_file() { Ok(p) } else { Err(format!("GATEHOUSE_SQLD={} is not a file", p.display())) };
        }
        let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        // The crate (gateway/origin, or bench) → the repository (its Cargo.lock) → ../shared.
        let manifest = Path::new(&manifest);
        let repo = manifest.ancestors().find(|d| d.join("Cargo.lock").is_file()).unwrap_or(manifest);
        let p = repo.join("../shared/bin/sqld");
        if p.is_file() {
            Ok(p.canonicalize().unwrap_or(p))
        } else {
            Err(format!("no sqld binary (set GATEHOUSE_SQLD, or put one at {})", p.display()))
        }
    }

    /// Start `binary` with its data under `db_path`, on two free loopback ports; returns
    /// once its admin API answers.
    pub async fn start(binary: &Path, db_path: &Path) -> Sqld {
        let mut s = Sqld {
            http: free_port(),
            admin: free_port(),
            db_path: db_path.to_path_buf(),
            binary: binary.to_path_buf(),
            child: None,
        };
        s.launch().await;
        s
    }

    async fn launch(&mut self) {
        std::fs::create_dir_all(&self.db_path).unwrap();
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.db_path.with_extension("log")).unwrap();
        let child = Command::new(&self.binary)
            .args(["--http-listen-addr", &format!("127.0.0.1:{}", self.http)])
            .args(["--admin-listen-addr", &format!("127.0.0.1:{}", self.admin)])
            .args(["--enable-namespaces", "--disable-default-namespace", "--no-welcome"])
            // Above every replica the origins keep open (`storage.max_open_tenants` each):
            // each holds a connection on the server once it has written, and syncs in the
            // background. With sqld's defaults (128 connections, 100 active namespaces) the
            // 128th tenant's writes time out ("Timed out while opening database
            // connection"), and namespaces are evicted and reloaded under the replicas.
            .args(["--max-concurrent-connections", "1024", "--max-active-namespaces", "1024"])
            .arg("--db-path")
            .arg(&self.db_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start sqld");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sqld exited at start ({status}); see {}", self.db_path.with_extension("log").display());
            }
            let admin_up = status(&format!("{}/", self.admin_url()), "GET").await.is_some();
            let user_up = tokio::net::TcpStream::connect(("127.0.0.1", self.http)).await.is_ok();
            if admin_up && user_up {
                return;
            }
            assert!(Instant::now() < deadline, "sqld did not come up in 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The user API URL (no `{db}`: the namespace travels in a header).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// The admin API URL.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin)
    }

    /// `[storage.remote]` for an origin on this server.
    pub fn storage_toml(&self) -> String {
        format!(
            "[storage.remote]\nurl = \"{}\"\nadmin_url = \"{}\"\nsync_secs = 1\nadmin_timeout_secs = 5\n",
            self.url(),
            self.admin_url()
        )
    }

    /// SIGKILL: no shutdown, whatever was in flight is cut off.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Start it again on the same ports and data.
    pub async fn restart(&mut self) {
        self.kill9();
        self.launch().await;
    }

    /// Whether namespace `ns` exists here, by the admin API (`GET /v1/namespaces/{ns}/config`:
    /// 200, or 404 for none).
    pub async fn has_namespace(&self, ns: &str) -> bool {
        match status(&format!("{}/v1/namespaces/{ns}/config", self.admin_url()), "GET").await {
            Some(200) => true,
            Some(404) => false,
            other => panic!("admin API: GET config of {ns}: {other:?}"),
        }
    }

    /// Every namespace this server holds (sqld 0.24 has no listing in its admin API: its
    /// data directory has one folder per namespace).
    pub fn namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = match std::fs::read_dir(self.db_path.join("dbs")) {
            Ok(d) => d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }
}

impl Drop for Sqld {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A port free on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The status of one plain HTTP/1 request to `url`, or `None` when nothing answers.
async fn status(url: &str, method: &str) -> Option<u16> {
    use http_body_util::BodyExt;
    let uri: hyper::Uri = url.parse().unwrap();
    let stream = tokio::net::TcpStream::connect((uri.host().unwrap(), uri.port_u16().unwrap())).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(uri.path())
        .header("host", uri.authority().unwrap().as_str())
        .body(http_body_util::Full::new(hyper::body::Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), send.send_request(req)).await.ok()?.ok()?;
    let s = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Some(s)
}
