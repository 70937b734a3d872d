//! `gatehouse config check` and the environment overlay, through the real binary: the
//! shipped examples check `ok`, `GATEHOUSE_GATEWAY__…` / `GATEHOUSE_ORIGIN__…` variables
//! override the file and their mistakes are named, `--print` redacts secrets; and
//! `gatehouse completions` prints scripts a shell accepts.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::*;

fn examples() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR")).join("../../examples")
}

/// `gatehouse args…` with `env` set (and no other `GATEHOUSE_GATEWAY__`/`ORIGIN__`
/// variable inherited).
fn with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = bin();
    for (k, _) in std::env::vars() {
        if k.starts_with("GATEHOUSE_GATEWAY") || k.starts_with("GATEHOUSE_ORIGIN") {
            c.env_remove(k);
        }
    }
    c.args(args).envs(env.iter().copied()).output().expect("run gatehouse")
}

fn check_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let o = with_env(args, env);
    let (out, err) = text(&o);
    assert!(o.status.success(), "gatehouse {args:?} failed: {err}");
    out
}

fn check_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let o = with_env(args, env);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "gatehouse {args:?}: expected exit 1, got {:?}: {out}{err}", o.status);
    err
}

#[test]
fn the_examples_check_ok_with_a_summary() {
    let gw = examples().join("gateway.toml");
    let out = check_ok(&["config", "check", "--gateway", gw.to_str().unwrap()], &[]);
    assert!(out.contains("gateway.toml: ok (gateway: listen 127.0.0.1:8080, admin 127.0.0.1:9090"), "{out}");
    assert!(out.contains("2 route(s)") && out.contains("filters gatehouse geo ip rate token"), "{out}");
    // Told apart by content.
    let out = check_ok(&["config", "check", gw.to_str().unwrap()], &[]);
    assert!(out.contains("ok (gateway:"), "{out}");
    let origin = examples().join("origin.toml");
    let out = check_ok(&["config", "check", "--origin", origin.to_str().unwrap()], &[]);
    assert!(out.contains("origin.toml: ok (origin: region "), "{out}");
    let out = check_ok(&["config", "check", origin.to_str().unwrap()], &[]);
    assert!(out.contains("ok (origin:"), "{out}");
    // The gateway example has no [authz] listener: not a configuration for `gatehouse authz`.
    let err = check_fails(&["config", "check", "--authz", gw.to_str().unwrap()], &[]);
    assert!(err.contains("authz: set `http` or `grpc`"), "{err}");
}

#[test]
fn variables_override_the_file_and_are_named_in_errors() {
    let gw = examples().join("gateway.toml");
    let gw = gw.to_str().unwrap();
    let out = check_ok(
        &["config", "check", "--gateway", gw, "--print"],
        &[
            ("GATEHOUSE_GATEWAY__LISTEN__ADMIN", "127.0.0.1:9"),
            ("GATEHOUSE_GATEWAY__LIMITS__MAX_BODY_BYTES", "1000"),
            ("GATEHOUSE_GATEWAY__ROUTES__1__FILTERS", r#"["ip","token"]"#),
            ("GATEHOUSE_GATEWAY__ROUTES__2__UPSTREAM", "http://127.0.0.1:3002"),
            ("GATEHOUSE_GATEWAY__ROUTES__2__PATH_PREFIX", "/new"),
            ("GATEHOUSE_GATEWAY__AUDIT__URL", "http://127.0.0.1:7400/v1/audit/edge"),
            ("GATEHOUSE_GATEWAY__AUDIT__TOKEN", "edge-token-0123456789"),
            // Not settings: left alone.
            ("GATEHOUSE_LOG", "debug"),
            ("GATEHOUSE_THREADS", "1"),
        ],
    );
    assert!(out.contains("admin 127.0.0.1:9,") && out.contains("3 route(s)"), "{out}");
    assert!(out.contains("7 setting(s) from the environment"), "{out}");
    let doc: toml::Table = toml::from_str(&out).unwrap_or_else(|e| panic!("--print is not TOML: {e}\n{out}"));
    assert_eq!(doc["listen"]["admin"].as_str(), Some("127.0.0.1:9"));
    assert_eq!(doc["limits"]["max_body_bytes"].as_integer(), Some(1000));
    assert_eq!(doc["routes"][1]["filters"].as_array().unwrap().len(), 2);
    assert_eq!(doc["routes"][2]["path_prefix"].as_str(), Some("/new"));
    assert_eq!(doc["audit"]["token"].as_str(), Some("<redacted>"));
    assert!(!out.contains("edge-token-0123456789"), "{out}");

    for (var, value, want) in [
        ("GATEHOUSE_GATEWAY__LIMITS__MAX_BODDY", "1", "GATEHOUSE_GATEWAY__LIMITS__MAX_BODDY: unknown field `max_boddy`"),
        (
            "GATEHOUSE_GATEWAY__LIMITS__HEADER_TIMEOUT_SECS",
            "0",
            "limits.header_timeout_secs (from GATEHOUSE_GATEWAY__LIMITS__HEADER_TIMEOUT_SECS): must be between 1 and 3600",
        ),
        ("GATEHOUSE_GATEWAY__ROUTES__5__UPSTREAM", "http://x:1", "GATEHOUSE_GATEWAY__ROUTES__5__UPSTREAM: `routes` has 2 item(s)"),
        ("GATEHOUSE_GATEWAY_LISTEN__ADMIN", "127.0.0.1:9", "GATEHOUSE_GATEWAY_LISTEN__ADMIN: settings are named GATEHOUSE_GATEWAY__"),
        ("GATEHOUSE_GATEWAY__LISTEN__ADMIN", "nowhere", "GATEHOUSE_GATEWAY__LISTEN__ADMIN: "),
    ] {
        let err = check_fails(&["config", "check", "--gateway", gw], &[(var, value)]);
        assert!(err.contains("gateway.toml: ") && err.contains(want), "{var}: expected `{want}` in: {err}");
    }

    let origin = examples().join("origin.toml");
    let origin = origin.to_str().unwrap();
    let out = check_ok(&["config", "check", "--origin", origin], &[("GATEHOUSE_ORIGIN__REGION", "us-east")]);
    assert!(out.contains("region us-east") && out.contains("1 setting(s) from the environment"), "{out}");
    // The gateway's variables are not the origin's.
    let out = check_ok(&["config", "check", "--origin", origin], &[("GATEHOUSE_GATEWAY__LIMITS__MAX_BODDY", "1")]);
    assert!(!out.contains("from the environment"), "{out}");
    let err =
        check_fails(&["config", "check", "--origin", origin], &[("GATEHOUSE_ORIGIN__TOKENS__ACCESS_TTL_SECS", "60")]);
    assert!(err.contains("tokens.access_ttl_secs (from GATEHOUSE_ORIGIN__TOKENS__ACCESS_TTL_SECS)"), "{err}");
    let err = check_fails(&["config", "check", "--origin", origin], &[("GATEHOUSE_ORIGIN__COLOUR", "blue")]);
    assert!(err.contains("GATEHOUSE_ORIGIN__COLOUR: unknown field `colour`"), "{err}");
}

#[test]
fn file_errors_keep_their_line_and_relative_paths_from_variables_resolve_against_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[listen]\naddr = \"127.0.0.1:1\"\nadmin = \"127.0.0.1:2\"\n[bundle]\nfile = \"b.ghb\"\npublic_key = \"k.pem\"\n[[routes]]\nupstream = \"http://x:1\"\n";
    let f = dir.path().join("gw.toml");
    std::fs::write(&f, format!("{base}colour = 1\n")).unwrap();
    let err = check_fails(&["config", "check", "--gateway", f.to_str().unwrap()], &[]);
    assert!(err.contains("line 9") && err.contains("unknown field `colour`"), "{err}");
    std::fs::write(&f, base).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut c = bin();
    c.current_dir(cwd.path()).env("GATEHOUSE_GATEWAY__BUNDLE__FILE", "here/b.ghb");
    let o = c.args(["config", "check", "--gateway", f.to_str().unwrap()]).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let want = cwd.path().canonicalize().unwrap().join("here/b.ghb");
    assert!(out.contains(&format!("bundle file {}", want.display())), "{out}");
    // The file's own relative path resolves against its folder.
    let out = check_ok(&["config", "check", "--gateway", f.to_str().unwrap()], &[]);
    assert!(out.contains(&format!("bundle file {}", dir.path().join("b.ghb").display())), "{out}");
}

#[test]
fn completions_are_scripts_the_shell_accepts() {
    let out = ok(&["completions", "bash"]);
    for sub in ["gateway", "authz", "origin", "config", "completions", "policy", "--gateway", "--print"] {
        assert!(out.contains(sub), "bash completion lacks `{sub}`");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("gatehouse.bash");
    std::fs::write(&script, &out).unwrap();
    match std::process::Command::new("bash").arg("-n").arg(&script).output() {
        Ok(o) => assert!(o.status.success(), "bash -n: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => skip("completions_are_scripts_the_shell_accepts", &format!("no bash to check the script: {e}")),
    }
    // Loaded into bash, the function completes the subcommands.
    let probe = format!(
        "source {}\nCOMP_WORDS=(gatehouse con); COMP_CWORD=1; COMP_LINE='gatehouse con'; COMP_POINT=13\n_gatehouse gatehouse con gatehouse\necho \"${{COMPREPLY[@]}}\"\n",
        script.display()
    );
    if let Ok(o) = std::process::Command::new("bash").arg("-c").arg(&probe).output() {
        let got = String::from_utf8_lossy(&o.stdout);
        assert!(
            got.split_whitespace().any(|w| w == "config"),
            "completing `gatehouse con`: {got:?} {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = ok(&["completions", shell]);
        assert!(out.contains("gatehouse") && out.contains("config"), "{shell}: {out}");
    }
    let o = run(&["completions", "tcsh"]);
    assert!(!o.status.success());
}
