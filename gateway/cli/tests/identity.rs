//! The identity plane end to end: a real origin, and a real gateway polling its bundle.
//! Step-up (RFC 9470) from the gateway's 401 through the origin's API step-up to a fresh
//! token the gateway accepts, and a browser sent through the origin's step-up page back
//! with a fresh session cookie the gateway accepts; a
//! deactivated user and a suspended tenant refused by the running gateway after its next
//! poll, and served again after reactivation and resumption.

mod in_process_origin;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Request;
use in_process_origin::{origin_config, start_origin, EDGE, OPERATOR};
use serde_json::{json, Value};
use support::*;

const OWNER_PASSWORD: &str = "owner password 1";

/// The region's template: a step-up route (an MFA sign-in at most 15 minutes old) and a
/// catch-all that needs any credential.
const TEMPLATE: &str = r#"
[tiers.team]
features = []

[[routes]]
name = "stepup"
path = "/stepup"
require_mfa = { max_age = "15m" }

[[routes]]
name = "api"
path = "/"
"#;

/// A JSON call to the origin with `bearer` (the operator's token, or a user's).
async fn call(addr: SocketAddr, method: &str, path: &str, bearer: &str, body: Option<Value>) -> (u16, Value) {
    let mut b = Request::builder().method(method).uri(path).header("host", addr.to_string());
    if !bearer.is_empty() {
        b = b.header("authorization", format!("Bearer {bearer}"));
    }
    let req = b
        .header("content-type", "application/json")
        .body(support::body(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
        .unwrap();
    let (s, _, b) = send(addr, req, None).await;
    (s, serde_json::from_str(&b).unwrap_or(Value::Null))
}

/// Password sign-in: the token response.
async fn sign_in(origin: SocketAddr, email: &str, password: &str) -> Value {
    let body = json!({ "grant_type": "password", "email": email, "password": password });
    let (s, v) = call(origin, "POST", "/t/acme/token", "", Some(body)).await;
    assert_eq!(s, 200, "sign-in of {email}: {v}");
    v
}

/// The claims of a JWT (its signature is the gateway's business).
fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// RFC 4648 base32 (no padding), as authenticator apps read a TOTP secret.
fn base32_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u64, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {s}"),
        };
        buf = (buf << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

/// What the gateway answers `token` on `path` (status and reason code).
async fn through(gw: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, hyper::HeaderMap) {
    let (s, h, _) = send(gw, get("acme.test", path, headers), None).await;
    let reason = h.get("x-gatehouse-reason").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (s, reason, h)
}

/// Poll the gateway until `path` with `headers` gets `status` and `reason` (a bundle
/// poll away), or fail after 15 seconds.
async fn until(gw: SocketAddr, path: &str, headers: &[(&str, &str)], status: u16, reason: &str, what: &str) {
    let t = Instant::now();
    loop {
        let (s, r, _) = through(gw, path, headers).await;
        if s == status && r == reason {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "{what}: still {s} {r:?} (expected {status} {reason:?})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Running {
    origin: SocketAddr,
    gateway: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _gw: GatewayProc,
    _upstream: Killed,
}

/// An origin with tenant `acme` (host `acme.test`, owner `o@acme.test`), an upstream, and
/// a gateway that polls the origin's bundle every second (its route runs the `gatehouse`
/// filter component: the whole engine in WebAssembly).
async fn start(dir: &Path) -> Running {
    let origin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let stop = start_origin(origin_config(dir, origin.port(), Some(TEMPLATE))).await;
    let org = json!({ "slug": "acme", "name": "Acme", "tier": "team", "owner_email": "o@acme.test",
        "owner_password": OWNER_PASSWORD, "policy": { "hosts": ["acme.test"] } });
    let (s, v) = call(origin, "POST", "/v1/orgs", OPERATOR, Some(org)).await;
    assert_eq!(s, 201, "{v}");

    let up: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let upstream = Killed(
        bin().args(["upstream", "--listen", &up.to_string()]).stdout(std::process::Stdio::null()).spawn().unwrap(),
    );
    let (addr, admin) = (free_port(), free_port());
    let config = format!(
        "[listen]\naddr = \"127.0.0.1:{addr}\"\nadmin = \"127.0.0.1:{admin}\"\n[bundle]\n\
         origin_url = \"http://{origin}/v1/bundles/eu-west\"\norigin_token = \"{EDGE}\"\n\
         public_key = \"keys/bundle.pub.pem\"\npoll_secs = 1\n[filters]\nbuiltin_dir = \"{builtins}\"\n\
         cache_dir = \"{cache}\"\n[[routes]]\nupstream = \"http://{up}\"\n",
        builtins = component_dir().display(),
        cache = component_dir().parent().unwrap().parent().unwrap().join("gatehouse-test-cwasm").display()
    );
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    let gateway: SocketAddr = format!("127.0.0.1:{addr}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let gw = GatewayProc::start(&dir.join("gateway.toml"), gateway, admin, &dir.join("gateway.log"));
    let t = Instant::now();
    while !matches!(admin_get(admin, "/readyz"), Ok((200, _))) {
        assert!(t.elapsed() < Duration::from_secs(60), "gateway not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // While the upstream starts.
    let t = Instant::now();
    while tokio::net::TcpStream::connect(up).await.is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "upstream not listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Running { origin, gateway, _stop: stop, _gw: gw, _upstream: upstream }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_up_from_the_gateways_401_to_a_fresh_token_it_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let r = start(tmp.path()).await;
    let signed_in = sign_in(r.origin, "o@acme.test", OWNER_PASSWORD).await;
    let first = signed_in["access_token"].as_str().unwrap().to_string();
    let c = claims(&first);
    assert!(c["amr"].as_array().is_some_and(|a| a.iter().any(|m| m == "pwd")), "{c}");
    assert!(c["auth_time"].as_u64().is_some(), "{c}");
    let bearer = |t: &str| format!("Bearer {t}");

    // A password sign-in is enough for the catch-all, not for the step-up route.
    assert_eq!(through(r.gateway, "/items", &[("authorization", &bearer(&first))]).await.0, 200);
    let (s, reason, h) = through(r.gateway, "/stepup", &[("authorization", &bearer(&first))]).await;
    assert_eq!((s, reason.as_str()), (401, "step_up_required"));
    let challenge = h.get("www-authenticate").unwrap().to_str().unwrap();
    for part in ["error=\"insufficient_user_authentication\"", "max_age=\"900\"", "acr_values=\"urn:gatehouse:mfa\""] {
        assert!(challenge.contains(part), "{challenge}");
    }

    // The user enrols TOTP (a first code confirms it, recovery codes come with it)...
    let (s, enrol) = call(r.origin, "POST", "/t/acme/mfa/totp", &first, None).await;
    assert_eq!(s, 201, "{enrol}");
    let secret = base32_decode(enrol["secret"].as_str().unwrap());
    let totp = gatehouse_origin::mfa::totp::generator(&secret, "Gatehouse acme", "o@acme.test").unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let code = gatehouse_origin::mfa::totp::code_at(&totp, now);
    let path = format!("/t/acme/mfa/totp/{}/confirm", enrol["id"].as_str().unwrap());
    let (s, confirmed) = call(r.origin, "POST", &path, &first, Some(json!({ "code": code }))).await;
    assert_eq!(s, 200, "{confirmed}");
    let recovery = confirmed["recovery_codes"][0].as_str().unwrap().to_string();
    // ...and steps up its session from the API 401: fresh tokens of the same session.
    tokio::time::sleep(Duration::from_secs(1)).await; // a later auth_time than the sign-in's
    let (s, stepped) =
        call(r.origin, "POST", "/t/acme/mfa/step-up", &first, Some(json!({ "recovery_code": recovery }))).await;
    assert_eq!(s, 200, "{stepped}");
    let fresh = stepped["access_token"].as_str().unwrap().to_string();
    let f = claims(&fresh);
    assert!(f["amr"].as_array().is_some_and(|a| a.iter().any(|m| m == "mfa")), "{f}");
    assert_eq!(f["acr"], "urn:gatehouse:mfa", "{f}");
    assert!(f["auth_time"].as_u64().unwrap() > c["auth_time"].as_u64().unwrap(), "{f} after {c}");
    assert_eq!(f["sid"], c["sid"], "the same session");
    // The gateway accepts it on the step-up route, and the upstream sees who it is.
    let (s, h, _) = send(r.gateway, get("acme.test", "/stepup", &[("authorization", &bearer(&fresh))]), None).await;
    assert_eq!(s, 200, "{h:?}");
    // The old token still is what it was: a password sign-in.
    assert_eq!(through(r.gateway, "/stepup", &[("authorization", &bearer(&first))]).await.1, "step_up_required");

    // A browser (its session cookie carrying the password-only sign-in) is sent to the
    // origin's step-up page for the tenant, with where it was and the age asked for.
    let cookie = format!("gh_session={first}");
    let browser = [("accept", "text/html,application/xhtml+xml"), ("cookie", cookie.as_str())];
    let (s, _, h) = through(r.gateway, "/stepup?tab=keys", &browser).await;
    assert_eq!(s, 302);
    let location = h.get("location").unwrap().to_str().unwrap().to_string();
    assert_eq!(
        location,
        format!(
            "http://{}/t/acme/stepup?return_to=http%3A%2F%2Facme%2Etest%2Fstepup%3Ftab%3Dkeys&max_age=900",
            r.origin
        )
    );
    // The origin's step-up page, for the session in the cookie: a CSRF-protected form for
    // the second factor.
    let path = location.split_once(&r.origin.to_string()).unwrap().1.to_string();
    let (s, h, page) = browse(r.origin, "GET", &path, &cookie, None).await;
    assert_eq!(s, 200, "the step-up page: {h:?} {page}");
    let field = |name: &str| {
        let v = page.split(&format!("name=\"{name}\" value=\"")).nth(1).unwrap_or_else(|| panic!("{name}: {page}"));
        v.split('"').next().unwrap().replace("&amp;", "&")
    };
    let (csrf, mfa_token, return_to) = (field("csrf"), field("mfa_token"), field("return_to"));
    assert_eq!(return_to, "http://acme.test/stepup?tab=keys");
    let csrf_cookie = h.get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_string();
    let form = format!(
        "csrf={}&mfa_token={}&return_to={}&code={}",
        form_encode(&csrf),
        form_encode(&mfa_token),
        form_encode(&return_to),
        form_encode(confirmed["recovery_codes"][1].as_str().unwrap())
    );
    let cookies = format!("{cookie}; {csrf_cookie}");
    let (s, h, page) = browse(r.origin, "POST", "/t/acme/stepup", &cookies, Some(form)).await;
    // Back where it was, with a fresh session cookie...
    assert_eq!(s, 303, "{h:?} {page}");
    assert_eq!(h.get("location").unwrap(), "http://acme.test/stepup?tab=keys");
    let session = h
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next()?.strip_prefix("gh_session="))
        .next()
        .unwrap_or_else(|| panic!("no session cookie: {h:?}"))
        .to_string();
    let b = claims(&session);
    assert!(b["amr"].as_array().is_some_and(|a| a.iter().any(|m| m == "mfa")), "{b}");
    assert!(b["auth_time"].as_u64().unwrap() > c["auth_time"].as_u64().unwrap(), "{b}");
    // ...that the gateway accepts on the step-up route.
    let cookie = format!("gh_session={session}");
    let browser = [("accept", "text/html,application/xhtml+xml"), ("cookie", cookie.as_str())];
    let (s, reason, _) = through(r.gateway, "/stepup?tab=keys", &browser).await;
    assert_eq!((s, reason.as_str()), (200, ""));
}

/// A browser's request to the origin: `cookie`, and a form body for a POST.
async fn browse(
    origin: SocketAddr,
    method: &str,
    path: &str,
    cookie: &str,
    form: Option<String>,
) -> (u16, hyper::HeaderMap, String) {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", origin.to_string())
        .header("accept", "text/html")
        .header("cookie", cookie);
    if form.is_some() {
        b = b.header("content-type", "application/x-www-form-urlencoded");
    }
    let req = b.body(support::body(Bytes::from(form.unwrap_or_default()))).unwrap();
    send(origin, req, None).await
}

/// `application/x-www-form-urlencoded` text of one value.
fn form_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_user_and_a_suspended_tenant_are_refused_after_the_next_poll() {
    let tmp = tempfile::tempdir().unwrap();
    let r = start(tmp.path()).await;
    let body = json!({ "email": "bob@acme.test", "password": "bob password 12", "role": "viewer" });
    let (s, bob) = call(r.origin, "POST", "/v1/orgs/acme/users", OPERATOR, Some(body)).await;
    assert_eq!(s, 201, "{bob}");
    let bob_id = bob["id"].as_str().unwrap().to_string();
    let bob_token =
        sign_in(r.origin, "bob@acme.test", "bob password 12").await["access_token"].as_str().unwrap().to_string();
    let bob_auth = format!("Bearer {bob_token}");
    let owner = sign_in(r.origin, "o@acme.test", OWNER_PASSWORD).await["access_token"].as_str().unwrap().to_string();
    let owner_auth = format!("Bearer {owner}");
    assert_eq!(through(r.gateway, "/items", &[("authorization", &bob_auth)]).await.0, 200);

    // Deactivated: the running gateway refuses bob's token after its next poll, and says why.
    let (s, v) = call(r.origin, "POST", &format!("/v1/orgs/acme/users/{bob_id}/deactivate"), OPERATOR, None).await;
    assert_eq!(s, 200, "{v}");
    until(r.gateway, "/items", &[("authorization", &bob_auth)], 401, "user_disabled", "deactivated user").await;
    assert_eq!(through(r.gateway, "/items", &[("authorization", &owner_auth)]).await.0, 200, "others unaffected");
    // Reactivated: bob signs in again and is served. The old token's session ended with
    // the deactivation, and stays ended.
    let (s, v) = call(r.origin, "POST", &format!("/v1/orgs/acme/users/{bob_id}/reactivate"), OPERATOR, None).await;
    assert_eq!(s, 200, "{v}");
    until(r.gateway, "/items", &[("authorization", &bob_auth)], 401, "session_revoked", "reactivated, old session")
        .await;
    let again =
        sign_in(r.origin, "bob@acme.test", "bob password 12").await["access_token"].as_str().unwrap().to_string();
    assert_eq!(through(r.gateway, "/items", &[("authorization", &format!("Bearer {again}"))]).await.0, 200);

    // Suspended: every request of the tenant is refused, a browser is not sent to sign in.
    let (s, v) = call(r.origin, "POST", "/v1/orgs/acme/suspend", OPERATOR, None).await;
    assert_eq!(s, 200, "{v}");
    until(r.gateway, "/items", &[("authorization", &owner_auth)], 403, "tenant_suspended", "suspended tenant").await;
    let (s, reason, h) = through(r.gateway, "/items", &[("accept", "text/html")]).await;
    assert_eq!((s, reason.as_str(), h.get("location")), (403, "tenant_suspended", None));
    // Resumed: served again after the next poll.
    let (s, v) = call(r.origin, "POST", "/v1/orgs/acme/resume", OPERATOR, None).await;
    assert_eq!(s, 200, "{v}");
    let fresh = sign_in(r.origin, "o@acme.test", OWNER_PASSWORD).await["access_token"].as_str().unwrap().to_string();
    until(r.gateway, "/items", &[("authorization", &format!("Bearer {fresh}"))], 200, "", "resumed tenant").await;
    let (s, _, h) = through(r.gateway, "/items", &[("accept", "text/html")]).await;
    assert_eq!(s, 302, "an anonymous browser goes to sign in again");
    assert!(h.get("location").unwrap().to_str().unwrap().contains("/t/acme/login?return_to="));
}
