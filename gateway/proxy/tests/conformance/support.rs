//! Reading the conformance corpus and comparing a host's outcome with it; shared by the
//! runners of every host.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// Where the corpus lives.
pub fn dir() -> PathBuf {
    PathBuf::from(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
        .join("../../tests/conformance")
}

/// One case: a request and what every host must decide.
#[derive(Debug, Deserialize)]
pub struct Case {
    pub name: String,
    pub method: String,
    pub host: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub peer: String,
    pub expect: Expect,
    /// For hosts whose platform resolves `.`/`..` path segments before the gateway sees
    /// the request (and forwards the resolved path): what they must decide instead.
    #[serde(default)]
    pub expect_if_platform_resolves_dots: Option<Expect>,
}

/// The decision a case must get.
#[derive(Debug, Deserialize)]
pub struct Expect {
    pub status: u16,
    pub reason: Option<String>,
    #[serde(default)]
    pub identity: BTreeMap<String, String>,
    #[serde(default)]
    pub location_prefix: Option<String>,
    /// The whole `Location`, where `{scheme}` stands for the scheme the host saw the
    /// request with (`https`, or `http` where the test talks plain HTTP to the host), as
    /// it is and percent-encoded in `return_to`.
    #[serde(default)]
    pub location: Option<String>,
}

/// What a host decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: u16,
    pub reason: Option<String>,
    pub identity: BTreeMap<String, String>,
    pub location: Option<String>,
}

impl Outcome {
    pub fn allow(headers: Vec<(String, String)>) -> Outcome {
        Outcome { status: 200, reason: None, identity: headers.into_iter().collect(), location: None }
    }
    pub fn deny(status: u16, reason: &str) -> Outcome {
        Outcome { status, reason: Some(reason.to_string()), identity: BTreeMap::new(), location: None }
    }
    pub fn redirect(location: &str) -> Outcome {
        Outcome { status: 302, reason: None, identity: BTreeMap::new(), location: Some(location.to_string()) }
    }
}

/// Every case, in file order (rate-limit cases depend on it).
pub fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(dir().join("cases.jsonl")).expect("cases.jsonl");
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("case")).collect()
}

/// Why `got` does not satisfy the case, if it does not.
pub fn mismatch(c: &Case, got: &Outcome, resolves_dots: bool) -> Option<String> {
    let e = match (&c.expect_if_platform_resolves_dots, resolves_dots) {
        (Some(e), true) => e,
        _ => &c.expect,
    };
    let mut why = Vec::new();
    if got.status != e.status {
        why.push(format!("status {} (expected {})", got.status, e.status));
    }
    if got.reason != e.reason {
        why.push(format!("reason {:?} (expected {:?})", got.reason, e.reason));
    }
    for (k, v) in &e.identity {
        if got.identity.get(k) != Some(v) {
            why.push(format!("{k} = {:?} (expected {v:?})", got.identity.get(k)));
        }
    }
    if let Some(prefix) = &e.location_prefix {
        if !got.location.as_deref().is_some_and(|l| l.starts_with(prefix.as_str())) {
            why.push(format!("location {:?} (expected {prefix}…)", got.location));
        }
    }
    if let Some(template) = &e.location {
        let exact = ["https", "http"].map(|scheme| template.replace("{scheme}", scheme));
        if !got.location.as_deref().is_some_and(|l| exact.iter().any(|e| e == l)) {
            why.push(format!("location {:?} (expected {template:?})", got.location));
        }
    }
    (!why.is_empty()).then(|| format!("{}: {}", c.name, why.join(", ")))
}

/// Run every case through `decide` and require all of them to match. `resolves_dots`:
/// the host's platform resolves dot segments before the gateway sees the path.
pub fn check_all(host: &str, resolves_dots: bool, mut decide: impl FnMut(&Case) -> Outcome) {
    let cases = cases();
    assert!(cases.len() >= 150, "the corpus has {} cases", cases.len());
    let failures: Vec<String> = cases.iter().filter_map(|c| mismatch(c, &decide(c), resolves_dots)).collect();
    assert!(
        failures.is_empty(),
        "{host}: {} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{host}: {} of {} cases as the corpus says", cases.len(), cases.len());
}

/// The corpus's bundle, compiled now from policy.toml with the corpus's test key.
pub struct Bundle {
    pub bytes: Vec<u8>,
    pub public_key: [u8; 32],
    pub secrets: gatehouse_core::EdgeSecrets,
    /// The edge secrets as JSON, as hosts hand them to filter components.
    pub secrets_json: Vec<u8>,
}

pub fn bundle() -> Bundle {
    let d = dir();
    let policy = gatehouse_bundler::load_policy(&d.join("policy.toml")).expect("corpus policy");
    let key = gatehouse_bundler::keys::read_signing_key(&d.join("keys/bundle-signing.pem")).expect("key");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let stamp =
        gatehouse_bundler::BundleStamp { revision: 1, region: "corpus".into(), issued_at: now, ttl_secs: 86_400 };
    Bundle {
        bytes: gatehouse_bundler::compile(policy, &stamp, &key).expect("compile"),
        public_key: gatehouse_bundler::keys::read_public_key(&d.join("keys/bundle-signing.pub.pem"))
            .expect("public key"),
        secrets: gatehouse_bundler::load_secrets(&d.join("keys/edge-secrets.toml")).expect("secrets"),
        secrets_json: {
            let text = std::fs::read_to_string(d.join("keys/edge-secrets.toml")).unwrap();
            serde_json::to_vec(&toml::from_str::<toml::Value>(&text).unwrap()).unwrap()
        },
    }
}

/// Where scripts/build-components put the filter components.
pub fn component_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GATEHOUSE_FILTER_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().join("wasm32-wasip2/release")
}

/// One case of the HTTP contract (`wire.jsonl`): a request, and what the upstream and the
/// client must see on every host — not only the decision.
#[derive(Debug, Deserialize)]
pub struct WireCase {
    pub name: String,
    pub method: String,
    pub host: String,
    pub path: String,
    pub query: Option<String>,
    pub peer: String,
    /// The name of a corpus case whose headers (its credential) come first.
    #[serde(default)]
    pub credential_of: Option<String>,
    pub headers: Vec<(String, String)>,
    pub expect: WireExpect,
}

impl WireCase {
    /// Path and query, as a request target.
    pub fn target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }
}

/// What a wire case must get.
#[derive(Debug, Deserialize)]
pub struct WireExpect {
    pub status: u16,
    /// The upstream request's headers (`None`: the upstream is never reached).
    pub upstream: Option<FieldsExpect>,
    /// The client response's headers.
    pub response: FieldsExpect,
    /// The client response's body, when the gateway wrote it.
    #[serde(default)]
    pub body: Option<String>,
}

/// Header fields that must be there (with these values, or starting with these) and
/// that must not.
#[derive(Debug, Default, Deserialize)]
pub struct FieldsExpect {
    #[serde(default)]
    pub has: BTreeMap<String, String>,
    #[serde(default)]
    pub has_prefix: BTreeMap<String, String>,
    #[serde(default)]
    pub lacks: Vec<String>,
}

/// What a host did with a wire case.
#[derive(Debug, Clone, Default)]
pub struct WireSeen {
    pub status: u16,
    /// The headers the upstream received, if it was reached.
    pub upstream: Option<Vec<(String, String)>>,
    /// The client response's headers.
    pub response: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The headers the test upstreams answer a wire case with (query `wire=1`): one the
/// client must get, one the gateway's `RateLimit-*` must replace, and a `Connection`-named
/// one the client must not get.
pub const WIRE_UPSTREAM_RESPONSE: &[(&str, &str)] =
    &[("x-app", "kept"), ("ratelimit-limit", "999"), ("connection", "x-upstream-hop"), ("x-upstream-hop", "1")];

/// Every wire case, credentials filled in.
pub fn wire_cases() -> Vec<WireCase> {
    let corpus = cases();
    let text = std::fs::read_to_string(dir().join("wire.jsonl")).expect("wire.jsonl");
    let mut out: Vec<WireCase> =
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("wire case")).collect();
    for w in &mut out {
        if let Some(name) = &w.credential_of {
            let c = corpus.iter().find(|c| &c.name == name).unwrap_or_else(|| panic!("no corpus case {name}"));
            let mut headers = c.headers.clone();
            headers.append(&mut w.headers);
            w.headers = headers;
        }
    }
    out
}

fn fields_mismatch(what: &str, e: &FieldsExpect, got: &[(String, String)], why: &mut Vec<String>) {
    let values = |name: &str| -> Vec<&str> {
        got.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    };
    for (k, v) in &e.has {
        let seen = values(k);
        if seen != [v.as_str()] {
            why.push(format!("{what} {k} = {seen:?} (expected [{v:?}])"));
        }
    }
    for (k, p) in &e.has_prefix {
        let seen = values(k);
        if seen.len() != 1 || !seen[0].starts_with(p.as_str()) {
            why.push(format!("{what} {k} = {seen:?} (expected one {p:?}…)"));
        }
    }
    for k in &e.lacks {
        if !values(k).is_empty() {
            why.push(format!("{what} has {k} (must not)"));
        }
    }
}

/// The header names a message's `Connection` fields list.
fn connection_named<'a>(fields: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    fields
        .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Why `got` does not satisfy the wire case, if it does not. `platform_hides_connection`:
/// the host's platform removes `Connection` fields before the gateway sees a message (the
/// WASI HTTP host does, in both directions), so the headers they name cannot be told
/// from others there: only the platform could drop them, and the case does not require
/// their absence on such a host.
pub fn wire_mismatch(c: &WireCase, got: &WireSeen, platform_hides_connection: bool) -> Option<String> {
    let mut e_upstream = c.expect.upstream.as_ref().map(|u| FieldsExpect {
        has: u.has.clone(),
        has_prefix: u.has_prefix.clone(),
        lacks: u.lacks.clone(),
    });
    let mut e_response = FieldsExpect {
        has: c.expect.response.has.clone(),
        has_prefix: c.expect.response.has_prefix.clone(),
        lacks: c.expect.response.lacks.clone(),
    };
    if platform_hides_connection {
        let named = connection_named(c.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(u) = &mut e_upstream {
            u.lacks.retain(|k| !named.contains(&k.to_ascii_lowercase()));
        }
        let named = connection_named(WIRE_UPSTREAM_RESPONSE.iter().copied());
        e_response.lacks.retain(|k| !named.contains(&k.to_ascii_lowercase()));
    }
    let e =
        WireExpect { status: c.expect.status, upstream: e_upstream, response: e_response, body: c.expect.body.clone() };
    let mut why = Vec::new();
    if got.status != e.status {
        why.push(format!("status {} (expected {})", got.status, e.status));
    }
    match (&e.upstream, &got.upstream) {
        (None, Some(_)) => why.push("the upstream was reached (must not be)".into()),
        (Some(_), None) => why.push("the upstream was not reached".into()),
        (Some(exp), Some(seen)) => fields_mismatch("upstream", exp, seen, &mut why),
        (None, None) => {}
    }
    fields_mismatch("response", &e.response, &got.response, &mut why);
    if let Some(body) = &e.body {
        if got.body != body.as_bytes() {
            why.push(format!("body {:?} (expected {body:?})", String::from_utf8_lossy(&got.body)));
        }
    }
    (!why.is_empty()).then(|| format!("{}: {}", c.name, why.join(", ")))
}

/// Run every wire case through `run` and require all of them to match (see
/// [`wire_mismatch`] for `platform_hides_connection`).
pub fn check_wire(host: &str, platform_hides_connection: bool, mut run: impl FnMut(&WireCase) -> WireSeen) {
    let cases = wire_cases();
    assert!(cases.len() >= 5, "the wire corpus has {} cases", cases.len());
    let failures: Vec<String> =
        cases.iter().filter_map(|c| wire_mismatch(c, &run(c), platform_hides_connection)).collect();
    assert!(
        failures.is_empty(),
        "{host}: {} of {} wire cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{host}: {} of {} wire cases as the corpus says", cases.len(), cases.len());
}
