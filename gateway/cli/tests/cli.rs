//! End-to-end tests of the `gatehouse` binary: generate keys, compile the example policy,
//! inspect and tamper with bundles, mint tokens and decide on requests — as a user would.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::{ok, run, text};

const NOW: &str = "2027-03-01T12:00:00Z";
const LATER: &str = "2027-03-03T12:00:00Z";

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Setup {
    fn p(&self, name: &str) -> String {
        self.root.join(name).to_string_lossy().into_owned()
    }
}

fn example_policy() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
        .join("../../examples/policy.toml")
}

/// Keys, the example policy plus one API key, and a bundle valid from NOW for 24h.
fn setup() -> (Setup, String) {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup { root: dir.path().to_path_buf(), _dir: dir };
    ok(&["keys", "generate", "--out-dir", &s.p("keys")]);
    let mut policy = std::fs::read_to_string(example_policy()).unwrap();
    let out = ok(&[
        "apikey",
        "create",
        "--secrets",
        &s.p("keys/edge-secrets.toml"),
        "--subject",
        "deploy-bot",
        "--scopes",
        "invoices:read",
    ]);
    let key = out.lines().next().unwrap().trim_start_matches("API key (shown once): ").to_string();
    let entry: String = out.lines().skip_while(|l| !l.starts_with("[[orgs")).collect::<Vec<_>>().join("\n");
    policy.push('\n');
    policy.push_str(&entry.replace("<org>", "acme"));
    std::fs::write(s.p("policy.toml"), policy).unwrap();
    ok(&[
        "policy",
        "compile",
        "--policy",
        &s.p("policy.toml"),
        "--signing-key",
        &s.p("keys/bundle-signing.pem"),
        "--out",
        &s.p("bundle.ghb"),
        "--now",
        NOW,
        "--ttl",
        "24h",
        "--region",
        "eu-west",
    ]);
    (s, key)
}

fn mint(s: &Setup, extra: &[&str]) -> String {
    let key = s.p("keys/token-signing.pem");
    let mut args = vec!["token", "mint", "--key", &key, "--kid", "k1"];
    args.extend(["--iss", "https://login.example.test", "--aud", "gatehouse", "--now", NOW]);
    args.extend(extra);
    ok(&args).trim().to_string()
}

/// `gatehouse decide` on a request file, with the setup's bundle, key and secrets.
fn decide_file(s: &Setup, request: &str, now: &str) -> std::process::Output {
    let (bundle, key, secrets) = (s.p("bundle.ghb"), s.p("keys/bundle-signing.pub.pem"), s.p("keys/edge-secrets.toml"));
    run(&[
        "decide",
        "--bundle",
        &bundle,
        "--public-key",
        &key,
        "--request",
        request,
        "--now",
        now,
        "--secrets",
        &secrets,
    ])
}

fn decide(s: &Setup, req: Value, now: &str) -> (i32, Value, String) {
    let path = s.root.join(format!("req-{}.json", rand_name()));
    std::fs::write(&path, req.to_string()).unwrap();
    let o = decide_file(s, path.to_str().unwrap(), now);
    let (out, err) = text(&o);
    let v = serde_json::from_str(&out).unwrap_or(Value::Null);
    (o.status.code().unwrap(), v, err)
}

fn rand_name() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["keys", "--help"],
        vec!["keys", "generate", "--help"],
        vec!["policy", "--help"],
        vec!["policy", "check", "--help"],
        vec!["policy", "compile", "--help"],
        vec!["bundle", "inspect", "--help"],
        vec!["token", "mint", "--help"],
        vec!["apikey", "create", "--help"],
        vec!["decide", "--help"],
    ] {
        let o = run(&args);
        assert!(o.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&o.stdout).contains("Usage"), "{args:?}");
    }
}

#[test]
fn keys_are_private_and_never_overwritten_silently() {
    let (s, _) = setup();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["bundle-signing.pem", "token-signing.pem", "edge-secrets.toml"] {
            let mode = std::fs::metadata(s.root.join("keys").join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
    }
    let o = run(&["keys", "generate", "--out-dir", &s.p("keys")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("already exists"));
}

#[test]
fn compile_inspect_and_refuse_tampering() {
    let (s, _) = setup();
    let human = ok(&["bundle", "inspect", &s.p("bundle.ghb"), "--public-key", &s.p("keys/bundle-signing.pub.pem")]);
    assert!(human.contains("signature ok"), "{human}");
    assert!(human.contains("region      eu-west"), "{human}");
    assert!(human.contains("acme"), "{human}");
    let j: Value = serde_json::from_str(&ok(&[
        "bundle",
        "inspect",
        &s.p("bundle.ghb"),
        "--public-key",
        &s.p("keys/bundle-signing.pub.pem"),
        "--json",
    ]))
    .unwrap();
    assert_eq!(j["expires_at"].as_u64().unwrap() - j["issued_at"].as_u64().unwrap(), 86_400);
    assert_eq!(j["policy"]["orgs"]["acme"]["tier"], "team");
    let bundle_text = serde_json::to_string(&j).unwrap();
    assert!(!bundle_text.contains("api_key_secret"), "secrets must never be in a bundle");

    // Tampered: flip a byte in the middle.
    let mut bytes = std::fs::read(s.p("bundle.ghb")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(s.p("bundle.ghb"), &bytes).unwrap();
    let o = run(&["bundle", "inspect", &s.p("bundle.ghb"), "--public-key", &s.p("keys/bundle-signing.pub.pem")]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o).1;
    assert!(err.contains("signature does not verify") || err.contains("not a Gatehouse bundle"), "{err}");
    let (code, _, err) = decide(&s, json!({"url": "https://acme.example.test/healthz", "peer": "203.0.113.1"}), NOW);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn wrong_key_and_expired_bundles_are_refused() {
    let (s, _) = setup();
    ok(&["keys", "generate", "--out-dir", &s.p("other")]);
    let o = run(&["bundle", "inspect", &s.p("bundle.ghb"), "--public-key", &s.p("other/bundle-signing.pub.pem")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("but this edge pins key"), "{}", text(&o).1);
    let (code, _, err) = decide(&s, json!({"url": "https://acme.example.test/healthz", "peer": "203.0.113.1"}), LATER);
    assert_eq!(code, 2);
    assert!(err.contains("expired"), "{err}");
}

#[test]
fn invalid_policies_name_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, "[orgs.acme]\ntier = \"gold\"\ngeo = { allow = [\"Germany\"] }\n").unwrap();
    let o = run(&["policy", "check", "--policy", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o).1;
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("orgs.acme.tier: names unknown tier `gold`"), "{err}");
    assert!(err.contains("orgs.acme.geo.allow[0]"), "{err}");
}

#[test]
fn decisions_end_to_end() {
    let (s, api_key) = setup();
    let viewer = mint(&s, &["--sub", "alice", "--org", "acme", "--roles", "viewer"]);
    let billing = mint(&s, &["--sub", "bob", "--org", "acme", "--roles", "billing-manager"]);
    let auth = |t: &str| format!("Bearer {t}");

    // Allowed, with identity headers for the upstream.
    let (code, v, err) = decide(
        &s,
        json!({"method": "GET", "url": "https://acme.example.test/api/invoices", "headers": [["authorization", auth(&viewer)]], "peer": "203.0.113.7"}),
        NOW,
    );
    assert_eq!(code, 0, "{err} {v}");
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["identity"]["subject"], "alice");
    assert!(v["upstream_headers"].as_array().unwrap().contains(&json!(["x-gatehouse-org", "acme"])));

    let cases = vec![
        // (description, request, expected decision, expected status, expected reason)
        (
            "no credential",
            json!({"url": "https://acme.example.test/api/invoices", "peer": "203.0.113.7"}),
            "deny",
            401,
            "credential_missing",
        ),
        (
            "browser without session",
            json!({"url": "https://acme.example.test/api/invoices", "headers": {"accept": "text/html"}, "peer": "203.0.113.7"}),
            "redirect",
            302,
            "credential_missing",
        ),
        (
            "permission",
            json!({"method": "POST", "url": "https://acme.example.test/api/invoices/7/pay", "headers": {"authorization": auth(&viewer)}, "peer": "203.0.113.7"}),
            "deny",
            403,
            "permission_denied",
        ),
        (
            "denied IP range",
            json!({"url": "https://acme.example.test/api/invoices", "headers": {"authorization": auth(&viewer)}, "peer": "192.0.2.9"}),
            "deny",
            403,
            "ip_denied",
        ),
        (
            "XFF spoof from untrusted peer",
            json!({"url": "https://x.test/t/globex/api", "headers": {"x-forwarded-for": "198.51.100.1", "cf-ipcountry": "DE"}, "peer": "203.0.113.7"}),
            "deny",
            403,
            "ip_not_allowed",
        ),
        (
            "blocked country",
            json!({"url": "https://acme.example.test/api/invoices", "headers": {"authorization": auth(&viewer)}, "peer": "203.0.113.7", "country": "KP"}),
            "deny",
            403,
            "geo_denied",
        ),
        (
            "unknown tenant",
            json!({"url": "https://nobody.test/", "peer": "203.0.113.7"}),
            "deny",
            404,
            "tenant_unknown",
        ),
        (
            "tampered token",
            json!({"url": "https://acme.example.test/api/invoices", "headers": {"authorization": auth(&format!("{viewer}x"))}, "peer": "203.0.113.7"}),
            "deny",
            401,
            "token_malformed",
        ),
        (
            "role admin + mfa",
            json!({"url": "https://acme.example.test/admin/users", "headers": {"authorization": auth(&viewer)}, "peer": "203.0.113.7"}),
            "deny",
            403,
            "role_required",
        ),
        (
            "path traversal",
            json!({"url": "https://acme.example.test/healthz/../admin", "peer": "203.0.113.7"}),
            "deny",
            400,
            "request_malformed",
        ),
    ];
    for (what, req, decision, status, reason) in cases {
        let (code, v, err) = decide(&s, req, NOW);
        assert_eq!(code, 1, "{what}: {err} {v}");
        assert_eq!(
            (v["decision"].as_str().unwrap(), v["status"].as_u64().unwrap(), v["reason_code"].as_str().unwrap()),
            (decision, status, reason),
            "{what}: {v}"
        );
    }
    let (_, v, _) = decide(
        &s,
        json!({"url": "https://acme.example.test/api/invoices", "headers": {"accept": "text/html"}, "peer": "203.0.113.7"}),
        NOW,
    );
    assert!(v["headers"][0][1]
        .as_str()
        .unwrap()
        .starts_with("https://login.example.test/t/acme/login?return_to=https%3A%2F%2Facme"));

    // Custom role grants the pay permission; trusted proxy + XFF; API key.
    let (code, _, err) = decide(
        &s,
        json!({"method": "POST", "url": "https://acme.example.test/api/invoices/7/pay", "headers": {"authorization": auth(&billing), "x-forwarded-for": "203.0.113.50"}, "peer": "10.0.0.3"}),
        NOW,
    );
    assert_eq!(code, 0, "{err}");
    let (code, v, err) = decide(
        &s,
        json!({"url": "https://acme.example.test/api/invoices", "headers": {"x-api-key": api_key}, "peer": "203.0.113.7"}),
        NOW,
    );
    assert_eq!(code, 0, "{err} {v}");
    assert_eq!(v["identity"]["kind"], "api_key");
    // Expired token: decided later than its 10 minutes, bundle still valid.
    let (code, v, _) = decide(
        &s,
        json!({"url": "https://acme.example.test/api/invoices", "headers": {"authorization": auth(&viewer)}, "peer": "203.0.113.7"}),
        "2027-03-01T12:30:00Z",
    );
    assert_eq!((code, v["reason_code"].as_str()), (1, Some("token_expired")));
}

#[test]
fn token_mint_refuses_a_lifetime_it_cannot_represent() {
    let (s, _) = setup();
    let key = s.p("keys/token-signing.pem");
    let o = run(&["token", "mint", "--key", &key, "--iss", "i", "--sub", "u", "--org", "acme", "--ttl", "876000h"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "a clear error, not a panic: {err}");
    assert!(err.contains("--ttl: at most 50 years"), "{err}");
}

#[test]
fn token_mint_count_gives_distinct_verifiable_tokens() {
    let (s, _) = setup();
    let out = mint(&s, &["--sub", "u", "--org", "acme", "--count", "5"]);
    let tokens: Vec<&str> = out.lines().collect();
    assert_eq!(tokens.len(), 5);
    let distinct: std::collections::HashSet<&&str> = tokens.iter().collect();
    assert_eq!(distinct.len(), 5);
    for t in tokens {
        let (code, v, err) = decide(
            &s,
            json!({"url": "https://acme.example.test/api", "headers": {"authorization": format!("Bearer {t}")}, "peer": "203.0.113.7"}),
            NOW,
        );
        assert_eq!(code, 0, "{err} {v}");
    }
}

#[test]
fn bad_input_exits_2() {
    let (s, _) = setup();
    std::fs::write(s.p("junk.json"), "{not json").unwrap();
    let o = decide_file(&s, &s.p("junk.json"), NOW);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("not a request description"));
    let (code, _, err) = decide(&s, json!({"url": "ftp://x/", "peer": "1.2.3.4"}), NOW);
    assert_eq!(code, 2, "{err}");
    let o = decide_file(&s, &s.p("junk.json"), "yesterday");
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["policy", "compile", "--policy", "/nonexistent.toml", "--signing-key", "x", "--out", "y"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("/nonexistent.toml"));
}
