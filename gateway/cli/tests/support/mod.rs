//! Helpers shared by the end-to-end tests: run the `gatehouse` binary, make keys and
//! bundles, start an upstream, start a gateway, speak HTTP from a chosen source address.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

pub mod saml_attacks;
mod skip;
pub mod sso;
#[allow(unused_imports)] // only some test binaries can skip
pub use skip::skip;

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run gatehouse")
}

/// (stdout, stderr) as text.
pub fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

pub fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "gatehouse {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Where the WASM components were built (`scripts/build-components`).
pub fn component_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GATEHOUSE_FILTER_DIR") {
        return PathBuf::from(d);
    }
    // target/debug/deps/<test> → target/wasm32-wasip2/release
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("wasm32-wasip2/release");
    assert!(
        dir.join("gatehouse_filter_token.wasm").exists(),
        "filter components not found in {}: run scripts/build-components first",
        dir.display()
    );
    dir
}

/// A child process killed (and reaped) when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Ports of a `gatehouse demo`.
pub struct DemoPorts {
    pub listen: u16,
    pub admin: u16,
    pub upstream: u16,
    pub origin: u16,
}

/// Where [`spawn_demo`] writes the demo's stderr (its logs, and whatever libxml2,
/// libxmlsec1 and libxslt print), in its directory.
pub const DEMO_STDERR: &str = "demo.stderr";

/// `gatehouse demo --dir DIR` on free loopback ports, logs quiet; its stdout lines (the
/// walkthrough, printed once seeded) arrive on the receiver, its stderr goes to
/// [`DEMO_STDERR`].
pub fn spawn_demo(dir: &Path) -> (Child, DemoPorts, std::sync::mpsc::Receiver<String>) {
    let p = DemoPorts { listen: free_port(), admin: free_port(), upstream: free_port(), origin: free_port() };
    let child = bin()
        .args(["demo", "--dir", dir.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{}", p.listen), "--admin", &format!("127.0.0.1:{}", p.admin)])
        .args(["--upstream", &format!("127.0.0.1:{}", p.upstream), "--origin", &format!("127.0.0.1:{}", p.origin)])
        .env("GATEHOUSE_FILTER_DIR", component_dir())
        .env("GATEHOUSE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(DEMO_STDERR)).unwrap())
        .spawn()
        .unwrap();
    let mut child = child;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, p, rx)
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Keys in `dir/keys`, then `policy_toml` (written to `dir/policy.toml`) compiled to
/// `dir/bundle.ghb` with `revision`.
pub fn compile_bundle(dir: &Path, policy_toml: &str, revision: u64, out: &Path) {
    compile_bundle_ttl(dir, policy_toml, revision, out, "24h")
}

/// [`compile_bundle`] with a lifetime (`4s`, `24h`, ...).
pub fn compile_bundle_ttl(dir: &Path, policy_toml: &str, revision: u64, out: &Path, ttl: &str) {
    if !dir.join("keys/bundle-signing.pem").exists() {
        ok(&["keys", "generate", "--out-dir", dir.join("keys").to_str().unwrap()]);
    }
    std::fs::write(dir.join("policy.toml"), policy_toml).unwrap();
    let tmp = out.with_extension("tmp");
    ok(&[
        "policy",
        "compile",
        "--policy",
        dir.join("policy.toml").to_str().unwrap(),
        "--signing-key",
        dir.join("keys/bundle-signing.pem").to_str().unwrap(),
        "--out",
        tmp.to_str().unwrap(),
        "--revision",
        &revision.to_string(),
        "--region",
        "test",
        "--ttl",
        ttl,
    ]);
    std::fs::rename(&tmp, out).unwrap();
}

pub fn mint(dir: &Path, sub: &str, org: &str, roles: &str) -> String {
    let key = dir.join("keys/token-signing.pem");
    ok(&[
        "token",
        "mint",
        "--key",
        key.to_str().unwrap(),
        "--kid",
        "k1",
        "--iss",
        "https://login.test",
        "--aud",
        "gatehouse",
        "--sub",
        sub,
        "--org",
        org,
        "--roles",
        roles,
    ])
    .trim()
    .to_string()
}

/// A running gateway process, killed on drop.
pub struct GatewayProc {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl GatewayProc {
    /// Start `gatehouse gateway --config` and wait until `/readyz` answers 200.
    pub fn start(config: &Path, addr: SocketAddr, admin: SocketAddr, log: &Path) -> GatewayProc {
        Self::start_with_env(config, addr, admin, log, &[])
    }

    /// [`GatewayProc::start`] with extra environment variables.
    pub fn start_with_env(
        config: &Path,
        addr: SocketAddr,
        admin: SocketAddr,
        log: &Path,
        env: &[(&str, &str)],
    ) -> GatewayProc {
        let child = bin()
            .args(["gateway", "--config", config.to_str().unwrap()])
            .env("GATEHOUSE_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut g = GatewayProc { child, addr, admin, log: log.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(Some(status)) = g.child.try_wait() {
                panic!("gateway exited with {status}: {}", std::fs::read_to_string(log).unwrap_or_default());
            }
            if admin_get(admin, "/readyz").map(|(s, _)| s == 200).unwrap_or(false) {
                return g;
            }
            assert!(
                Instant::now() < deadline,
                "gateway not ready: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kilobytes from /proc/<pid>/status (`VmRSS`, `VmHWM`).
    pub fn mem_kb(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking GET on the admin listener.
pub fn admin_get(admin: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&admin, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf.get(9..12).and_then(|x| x.parse().ok()).unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default();
    Ok((status, body))
}

pub type TestBody = http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn body(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A streamed body of `total` bytes in 64 KiB chunks, generated on the fly.
pub struct Generated {
    pub left: usize,
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(64 * 1024);
        self.left -= n;
        std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; n])))))
    }
}

/// An HTTP/1.1 connection to `addr` from source address `from` (any 127/8 address).
pub async fn connect(addr: SocketAddr, from: Option<IpAddr>) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(ip) = from {
        sock.bind(SocketAddr::new(ip, 0)).unwrap();
    }
    let stream = sock.connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender
}

/// Send one request on a new connection; returns status, headers and body text.
pub async fn send(addr: SocketAddr, req: Request<TestBody>, from: Option<IpAddr>) -> (u16, hyper::HeaderMap, String) {
    let mut s = connect(addr, from).await;
    let resp: Response<Incoming> = s.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// GET `path` for `host` with extra headers.
pub fn get(host: &str, path: &str, headers: &[(&str, &str)]) -> Request<TestBody> {
    let mut b = Request::builder().method("GET").uri(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body(Bytes::new())).unwrap()
}

/// Like [`send`], but returns transport errors.
pub async fn try_send(
    addr: SocketAddr,
    req: Request<TestBody>,
) -> Result<(u16, hyper::HeaderMap, String), hyper::Error> {
    let mut s = connect(addr, None).await;
    let resp: Response<Incoming> = s.send_request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

/// The operator token of [`write_origin_config`]'s origin.
#[allow(dead_code)]
pub const ORIGIN_OPERATOR: &str = "operator-token-0123456789";

/// An origin's keys and `origin.toml` in `dir` (region `eu-west` on `127.0.0.1:port`, fast
/// argon2), with `extra` TOML appended (sections of the test's own).
#[allow(dead_code)]
pub fn write_origin_config(dir: &Path, port: u16, extra: &str) {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (pem, _) = gatehouse_bundler::keys::generate_bundle_keys();
    std::fs::write(keys.join("bundle.pem"), pem).unwrap();
    std::fs::write(keys.join("edge.tokens"), "edge edge-token-0123456789abcdef\n").unwrap();
    std::fs::write(keys.join("operator.token"), ORIGIN_OPERATOR).unwrap();
    std::fs::write(keys.join("peer.token"), "peer-token-0123456789abcdef").unwrap();
    std::fs::write(keys.join("apikey.secret"), "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0NQ==").unwrap();
    std::fs::write(
        dir.join("origin.toml"),
        format!(
            r#"region = "eu-west"
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
data_dir = "data"
[secrets]
bundle_signing_key = "keys/bundle.pem"
edge_tokens = "keys/edge.tokens"
operator_token = "keys/operator.token"
peer_token = "keys/peer.token"
api_key_secret = "keys/apikey.secret"
[signin]
argon2_memory_kib = 64
argon2_iterations = 1
{extra}"#
        ),
    )
    .unwrap();
}
