//! The SSO tests' harness (tests/sso.rs, tests/sso_mfa.rs): the `gatehouse demo` stack,
//! the real OpenID Provider `tests/idp/oidc-provider.mjs` (npm `oidc-provider`), and a
//! browser played by a cookie-keeping HTTP client that follows redirects by hand.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{spawn_demo, Killed};

pub const CLIENT_ID: &str = "gatehouse-acme";
pub const CLIENT_SECRET: &str = "acme-client-secret-3f9a1c7e5b";

/// `gatehouse demo` on free ports; the origin URL, gateway address, operator token.
pub struct Demo {
    _child: Killed,
    /// The demo's directory (keys, data).
    pub dir: tempfile::TempDir,
    /// The origin's base URL.
    pub origin: String,
    /// The gateway's address.
    pub gateway: SocketAddr,
    /// The operator token.
    pub operator: String,
}

pub fn start_demo() -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let (child, ports, rx) = spawn_demo(dir.path());
    let (listen, origin) = (ports.listen, ports.origin);
    let child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "the demo did not come up");
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
            if line.contains("Ctrl-C stops everything") {
                break;
            }
        }
    }
    let operator = std::fs::read_to_string(dir.path().join("keys/operator.token")).unwrap().trim().to_string();
    Demo {
        _child: child,
        dir,
        origin: format!("http://127.0.0.1:{origin}"),
        gateway: format!("127.0.0.1:{listen}").parse().unwrap(),
        operator,
    }
}

pub fn idp_dir() -> PathBuf {
    let cache = std::env::var_os("GATEHOUSE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/gatehouse"));
    let dir = cache.join("idp");
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "oidc-provider is not installed in {}: run scripts/test, or `npm install oidc-provider@9` there",
        dir.display()
    );
    dir
}

/// A free port in 4000–4099 (node's fetch refuses some ports; these are safe), never the
/// same one twice in this process (the tests run in parallel).
pub fn idp_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(4000);
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(p < 4100, "no free port in 4000-4099");
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// The provider process; `rotate` puts a new signing key in front of the stored ones.
pub fn start_idp(port: u16, keys: &Path, redirects: &[String], rotate: bool) -> Killed {
    let dir = idp_dir();
    let script = dir.join("gatehouse-oidc-provider.mjs");
    std::fs::copy(
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
            .join("../../tests/idp/oidc-provider.mjs"),
        &script,
    )
    .unwrap();
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir).arg(&script).arg(port.to_string()).arg(keys).arg(CLIENT_ID).arg(CLIENT_SECRET);
    cmd.arg(redirects.join(","));
    if rotate {
        cmd.arg("--rotate");
    }
    let child = Killed(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("run node"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "oidc-provider did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// A browser: cookies kept, redirects followed by hand.
pub struct Browser {
    /// The HTTP client (cookie store, no redirects followed).
    pub c: reqwest::Client,
    /// The origin's base URL.
    pub origin: String,
}

pub fn location(base: &str, r: &reqwest::Response) -> Option<String> {
    let loc = r.headers().get("location")?.to_str().ok()?;
    Some(reqwest::Url::parse(base).unwrap().join(loc).unwrap().to_string())
}

pub fn attr<'a>(html: &'a str, before: &str) -> &'a str {
    let i = html.find(before).unwrap_or_else(|| panic!("`{before}` not in page: {html}"));
    let rest = &html[i + before.len()..];
    &rest[..rest.find('"').unwrap()]
}

impl Browser {
    pub fn new(origin: &str) -> Browser {
        let c = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Browser { c, origin: origin.to_string() }
    }

    /// From a start URL through the provider's login (as `login`) and consent to the
    /// origin's callback URL, which is returned unvisited. `edit` may change the
    /// authorization request the origin sends the browser to.
    pub async fn to_callback(&self, start: &str, login: &str, edit: impl Fn(String) -> String) -> String {
        let r = self.c.get(start).send().await.unwrap();
        assert_eq!(r.status(), 302, "start: {}", r.text().await.unwrap());
        let mut url = edit(location(start, &r).unwrap());
        for _ in 0..20 {
            if url.starts_with(&self.origin) && url.contains("/callback?") {
                return url;
            }
            let r = self.c.get(&url).send().await.unwrap();
            if r.status().is_redirection() {
                url = location(&url, &r).unwrap();
                continue;
            }
            assert_eq!(r.status(), 200, "{url}");
            let page = r.text().await.unwrap();
            let action = reqwest::Url::parse(&url).unwrap().join(attr(&page, "action=\"")).unwrap().to_string();
            let prompt = attr(&page, "name=\"prompt\" value=\"").to_string();
            let form: Vec<(&str, &str)> = match prompt.as_str() {
                "login" => vec![("prompt", "login"), ("login", login), ("password", "any")],
                _ => vec![("prompt", "consent")],
            };
            let body = form.iter().map(|(k, v)| format!("{k}={}", v.replace('@', "%40"))).collect::<Vec<_>>().join("&");
            let r = self
                .c
                .post(&action)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_redirection(), "{action}: {}", r.status());
            url = location(&action, &r).unwrap();
        }
        panic!("no callback reached");
    }

    pub async fn get(&self, url: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let r = self.c.get(url).send().await.unwrap();
        let (s, h) = (r.status().as_u16(), r.headers().clone());
        (s, h, r.text().await.unwrap())
    }
}

pub fn reason(h: &reqwest::header::HeaderMap) -> &str {
    h.get("x-gatehouse-reason").map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// The access token in the session cookie a sign-in set.
pub fn session_token(h: &reqwest::header::HeaderMap) -> Option<String> {
    h.get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("gh_session=").map(|r| r.split(';').next().unwrap().to_string()))
}

pub async fn api(demo: &Demo, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut b = c
        .request(method.parse().unwrap(), format!("{}{path}", demo.origin))
        .header("authorization", format!("Bearer {}", demo.operator));
    if let Some(v) = body {
        b = b.header("content-type", "application/json").body(v.to_string());
    }
    let r = b.send().await.unwrap();
    let s = r.status().as_u16();
    (s, serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null))
}

pub async fn password_sign_in(demo: &Demo, email: &str, password: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/t/acme/token", demo.origin))
        .header("content-type", "application/json")
        .body(json!({ "grant_type": "password", "email": email, "password": password }).to_string())
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null))
}

// ---------------------------------------------------------------------------------------
// SAML 2.0 against pysaml2 acting as the IdP (tests/idp/saml-idp.py).

/// The Python of the venv holding pysaml2.
pub fn saml_venv_python() -> PathBuf {
    let py = idp_dir().parent().unwrap().join("saml-venv/bin/python");
    assert!(py.exists(), "pysaml2 is not installed in {}: run scripts/test", py.display());
    py
}

/// The test SAML IdP's signing key pair, made with openssl in `dir` (`idp-key.pem`,
/// `idp-cert.pem`): the certificate's PEM, for the connection to trust.
pub fn saml_idp_keys(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=test-idp"])
        .arg("-keyout")
        .arg(dir.join("idp-key.pem"))
        .arg("-out")
        .arg(dir.join("idp-cert.pem"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    std::fs::read_to_string(dir.join("idp-cert.pem")).unwrap()
}

/// pysaml2's IdP on `port`, trusting the SP metadata `files`.
pub fn start_saml_idp(port: u16, dir: &Path, files: &[PathBuf]) -> Killed {
    let script = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
        .join("../../tests/idp/saml-idp.py");
    let list = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(",");
    let child = Command::new(saml_venv_python())
        .arg(script)
        .args(["--port", &port.to_string(), "--dir"])
        .arg(dir)
        .args(["--sp-metadata", &list])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run python");
    let child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the SAML IdP did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// HTML's escapes undone.
pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&#x27;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// `value="…"` of the input named `name`.
pub fn input(page: &str, name: &str) -> String {
    unescape(attr(page, &format!("name=\"{name}\" value=\"")))
}

/// A SAML response the IdP posts back: (ACS URL, SAMLResponse, RelayState).
pub struct Posted {
    /// Where the IdP's form posts.
    pub acs: String,
    /// The base64 SAMLResponse.
    pub response: String,
    /// The RelayState.
    pub relay: String,
}

impl Posted {
    /// The response's XML.
    pub fn xml(&self) -> String {
        use base64::Engine as _;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&self.response).unwrap()).unwrap()
    }

    /// The same post with `xml` as the response.
    pub fn with_xml(&self, xml: &str) -> Posted {
        use base64::Engine as _;
        Posted {
            acs: self.acs.clone(),
            response: base64::engine::general_purpose::STANDARD.encode(xml),
            relay: self.relay.clone(),
        }
    }
}

/// `application/x-www-form-urlencoded` of `fields`.
pub fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl Browser {
    /// Start at the origin, sign in at the IdP as `user` (with test knobs), and return
    /// what the IdP's auto-submit form would post to the ACS.
    pub async fn saml_response(&self, start: &str, user: &str, knobs: &[(&str, &str)]) -> Posted {
        let r = self.c.get(start).send().await.unwrap();
        assert_eq!(r.status(), 302, "start: {}", r.text().await.unwrap());
        let to_idp = location(start, &r).unwrap();
        let (s, _, page) = self.get(&to_idp).await;
        assert_eq!(s, 200, "IdP refused the AuthnRequest: {page}");
        let key = input(&page, "key");
        let action = reqwest::Url::parse(&to_idp).unwrap().join("/login").unwrap().to_string();
        let mut fields = vec![("key", key.as_str()), ("user", user)];
        fields.extend_from_slice(knobs);
        let r = self
            .c
            .post(&action)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&fields))
            .send()
            .await
            .unwrap();
        let page = r.text().await.unwrap();
        Posted {
            acs: unescape(attr(&page, "<form method=\"post\" action=\"")),
            response: input(&page, "SAMLResponse"),
            relay: input(&page, "RelayState"),
        }
    }

    /// Post `p` to the ACS as the IdP's auto-submit form would.
    pub async fn post_acs(&self, p: &Posted) -> (u16, reqwest::header::HeaderMap, String) {
        let mut fields = vec![("SAMLResponse", p.response.as_str())];
        if !p.relay.is_empty() {
            fields.push(("RelayState", p.relay.as_str()));
        }
        let r = self
            .c
            .post(&p.acs)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&fields))
            .send()
            .await
            .unwrap();
        let (s, h) = (r.status().as_u16(), r.headers().clone());
        (s, h, r.text().await.unwrap())
    }
}
