//! The mail tests' SMTP server: Python `aiosmtpd` running `tests/smtp/server.py` on
//! loopback (STARTTLS or implicit TLS with AUTH, or plain), a self-signed certificate for
//! it, the messages it writes as JSON, and the origin's `[mail]` section that points at it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::origin::free_port;

pub const SMTP_USER: &str = "gatehouse";
pub const SMTP_PASSWORD: &str = "smtp-password-4d1c9e";

// ---------------------------------------------------------------------------------------
// The SMTP server

/// The Python with aiosmtpd: `GATEHOUSE_SMTP_PYTHON`, else the venv in the cache (made
/// here when absent); `None` when it cannot be made.
pub fn smtp_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GATEHOUSE_SMTP_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let cache = std::env::var_os("GATEHOUSE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/gatehouse"));
    let venv = cache.join("smtp-venv");
    let py = venv.join("bin/python");
    let works = |py: &Path| Command::new(py).args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success());
    if works(&py) {
        return Some(py);
    }
    // One test makes it; the others wait for the lock.
    static MAKE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = MAKE.lock().unwrap_or_else(|p| p.into_inner());
    if !works(&py) {
        let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "aiosmtpd==1.4.6"])
                .status()
                .is_ok_and(|s| s.success());
        if !made {
            return None;
        }
    }
    works(&py).then_some(py)
}

/// Kills the child when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running server and the folder its messages land in.
pub struct Smtp {
    _child: Killed,
    pub port: u16,
    pub out: PathBuf,
}

/// How the server speaks.
#[derive(Clone, Copy)]
pub enum Mode {
    StartTls,
    Tls,
    Plain,
}

/// A self-signed certificate for `localhost` and `127.0.0.1` (not a CA: the client trusts
/// it as a root through `mail.smtp.ca_file`); PEM files `cert.pem`, `key.pem` in `dir`.
pub fn make_cert(dir: &Path) -> (PathBuf, PathBuf) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
    use openssl::x509::{X509NameBuilder, X509};
    let key =
        PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "localhost").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap()).unwrap();
    b.append_extension(BasicConstraints::new().critical().build().unwrap()).unwrap();
    b.append_extension(KeyUsage::new().critical().digital_signature().build().unwrap()).unwrap();
    b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap()).unwrap();
    let san = SubjectAlternativeName::new().dns("localhost").ip("127.0.0.1").build(&b.x509v3_context(None, None));
    b.append_extension(san.unwrap()).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let (cert, keyf) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, b.build().to_pem().unwrap()).unwrap();
    std::fs::write(&keyf, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert, keyf)
}

/// Start the server in `dir` (`auth`: require AUTH with [`SMTP_USER`] / [`SMTP_PASSWORD`]).
pub fn start_smtp(py: &Path, dir: &Path, mode: Mode, auth: bool) -> Smtp {
    let port = free_port();
    let out = dir.join("received");
    let script = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
        .join("tests/smtp/server.py");
    let mut cmd = Command::new(py);
    cmd.arg(&script).args(["--port", &port.to_string()]).arg("--out").arg(&out);
    cmd.args([
        "--mode",
        match mode {
            Mode::StartTls => "starttls",
            Mode::Tls => "tls",
            Mode::Plain => "plain",
        },
    ]);
    if !matches!(mode, Mode::Plain) {
        let (cert, key) = make_cert(dir);
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    if auth {
        cmd.args(["--user", SMTP_USER, "--password", SMTP_PASSWORD]);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("run the SMTP server");
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).expect("the SMTP server did not start");
    assert_eq!(line, format!("READY {port}"));
    Smtp { _child: child, port, out }
}

impl Smtp {
    /// The messages received so far, in order.
    pub fn messages(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .map(|d| d.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect())
            .unwrap_or_default();
        files.sort();
        files.iter().map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()).collect()
    }

    /// Wait until `n` messages arrived; all of them.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(Instant::now() < deadline, "{} of {n} messages arrived: {m:?}", m.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The newest message to `to` (waiting for the `n`th message overall).
    pub async fn last_to(&self, n: usize, to: &str) -> Value {
        let all = self.wait_for(n).await;
        all.iter().rev().find(|m| m["rcpt_tos"][0] == to).cloned().unwrap_or_else(|| panic!("no mail to {to}: {all:?}"))
    }
}

/// The link in a message's text body that contains `path`.
pub fn link(msg: &Value, path: &str) -> String {
    let text = msg["text"].as_str().unwrap();
    text.split_whitespace().find(|w| w.contains(path)).unwrap_or_else(|| panic!("no {path} link in {text}")).to_string()
}

pub fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_string()
}

/// `[mail]` for the SMTP server `s` (STARTTLS or TLS with AUTH from `pw_file`, or plain).
pub fn smtp_config(s: &Smtp, tls: &str, dir: &Path, extra: &str) -> String {
    let auth = if tls == "none" {
        String::new()
    } else {
        let pw = dir.join("smtp.password");
        std::fs::write(&pw, format!("{SMTP_PASSWORD}\n")).unwrap();
        format!(
            "username = \"{SMTP_USER}\"\npassword_file = \"{}\"\nca_file = \"{}\"\n",
            pw.display(),
            dir.join("cert.pem").display()
        )
    };
    format!(
        "[mail]\nkind = \"smtp\"\nfrom = \"Acme Sign-in <no-reply@acme.test>\"\ntimeout_secs = 5\n{extra}\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"{tls}\"\n{auth}",
        s.port
    )
}
