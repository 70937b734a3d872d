//! Shared fixture for the engine tests: keys, a policy, token makers.
#![allow(dead_code)]

pub mod wycheproof;

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gatehouse_core::engine::{BundleInfo, Engine, Env};
use gatehouse_core::policy::*;
use gatehouse_core::request::RequestHead;
use gatehouse_core::{Decision, EdgeSecrets, MemoryRateStore, NoCountryLookup};
use jwt_simple::prelude::*;
use serde_json::{json, Value};

pub const NOW: u64 = 1_800_000_000;
pub const ISS: &str = "https://id.acme.test";
pub const AUD: &str = "gatehouse";
pub const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-legacy";
pub const API_KEY_SECRET: &[u8] = b"api-key-secret-api-key-secret-0123456789";

pub struct Keys {
    pub ed1: Ed25519KeyPair,
    pub ed2: Ed25519KeyPair,
    pub es1: ES256KeyPair,
    pub rs1: RS256KeyPair,
    pub ps1: PS256KeyPair,
    pub attacker: Ed25519KeyPair,
    pub rsa_public_pem: String,
}

pub fn keys() -> &'static Keys {
    static K: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    K.get_or_init(|| {
        let ed = |seed: u8| {
            let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]));
            Ed25519KeyPair::from_bytes(&kp[..]).unwrap()
        };
        let pem = include_str!("../keys/rsa2048.pem");
        let rs1 = RS256KeyPair::from_pem(pem).unwrap().with_key_id("rs1");
        let rsa_public_pem = rs1.public_key().to_pem().unwrap();
        Keys {
            ed1: ed(1).with_key_id("ed1"),
            ed2: ed(2).with_key_id("ed2"),
            es1: ES256KeyPair::from_bytes(&[7u8; 32]).unwrap().with_key_id("es1"),
            ps1: PS256KeyPair::from_pem(pem).unwrap().with_key_id("ps1"),
            rs1,
            attacker: ed(99).with_key_id("ed1"),
            rsa_public_pem,
        }
    })
}

fn jwk(text: String, kid: &str, alg: &str) -> Value {
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["kid"] = json!(kid);
    v["alg"] = json!(alg);
    v["use"] = json!("sig");
    v
}

pub fn jwks() -> String {
    let k = keys();
    json!({"keys": [
        jwk(k.ed1.public_key().to_jwk(), "ed1", "EdDSA"),
        jwk(k.ed2.public_key().to_jwk(), "ed2", "EdDSA"),
        jwk(k.es1.public_key().to_jwk(), "es1", "ES256"),
        jwk(k.rs1.public_key().to_jwk(), "rs1", "RS256"),
        jwk(k.ps1.public_key().to_jwk(), "ps1", "PS256"),
    ]})
    .to_string()
}

pub fn policy() -> Policy {
    let toml_text = format!(
        r#"
[settings]
login_url = "https://login.test/t/{{org}}/login"
leeway_secs = 30

[client_ip]
source = "x-forwarded-for"
trusted_proxies = ["10.0.0.0/8"]

[geo]
country_header = "cf-ipcountry"

[tiers.free]
features = []
limits.org = {{ requests = 5, per_secs = 60 }}

[tiers.team]
features = ["audit"]
limits.user = {{ requests = 1000, per_secs = 1 }}

[tiers.enterprise]
features = ["audit", "billing"]

[roles.accountant]
permissions = ["invoices:*"]

[[issuers]]
issuer = "{ISS}"
audiences = ["{AUD}"]
jwks = '''{jwks}'''

[[issuers]]
issuer = "https://legacy.test"
hmac_secret = "legacy"
hmac_kid = "hs1"
orgs = ["acme"]

[orgs.acme]
tier = "team"
hosts = ["acme.app.test", "*.acme.test"]
ip = {{ allow = ["203.0.113.0/24", "2001:db8::/32", "10.0.0.0/8"], deny = ["203.0.113.66"] }}
geo = {{ deny = ["KP"] }}
features = [{{ feature = "billing", enabled = true, expires_at = "2027-01-01T00:00:00Z" }}]

[orgs.globex]
tier = "free"
path_prefix = "/t/globex"
api_keys = []

[orgs.initech]
tier = "enterprise"
hosts = ["initech.test"]
geo = {{ allow = ["DE", "FR"] }}

[[routes]]
name = "health"
path = "/healthz"
auth = "public"

[[routes]]
name = "docs"
path = "/docs"
auth = "optional"

[[routes]]
name = "admin"
path = "/admin/**"
role = "admin"

[[routes]]
name = "pay"
path = "/invoices/*/pay"
permission = "invoices:pay"

[[routes]]
name = "invoices"
path = "/invoices"
methods = ["GET"]
permission = "invoices:read"

[[routes]]
name = "billing"
path = "/billing"
feature = "billing"

[[routes]]
name = "mfa"
path = "/secure"
require_mfa = true

[[routes]]
name = "ops"
path = "/ops"
team = "sre"

[[routes]]
name = "office"
path = "/office"
ip = {{ allow = ["203.0.113.0/28"] }}
limit = {{ requests = 2, per_secs = 60 }}
"#,
        jwks = jwks()
    );
    toml::from_str(&toml_text).unwrap_or_else(|e| panic!("{e}"))
}

pub fn secrets() -> EdgeSecrets {
    let mut s = EdgeSecrets::default();
    s.hmac.insert("legacy".into(), HMAC_SECRET.to_vec());
    s.api_key_secret = Some(API_KEY_SECRET.to_vec());
    s
}

pub fn info() -> BundleInfo {
    BundleInfo { revision: 1, region: "test".into(), issued_at: NOW - 10, expires_at: NOW + 86_400 }
}

pub fn engine_with(p: &Policy) -> Engine {
    Engine::new(p, info(), &secrets()).unwrap_or_else(|e| panic!("{e}"))
}

pub fn engine() -> Engine {
    engine_with(&policy())
}

/// Standard claims for acme.
pub fn claims(sub: &str, roles: &[&str]) -> JWTClaims<Value> {
    let custom = json!({"org": "acme", "roles": roles, "sid": "sess-1", "teams": ["core"]});
    let mut c = Claims::with_custom_claims(custom, Duration::from_secs(600))
        .with_issuer(ISS)
        .with_audience(AUD)
        .with_subject(sub)
        .with_jwt_id(format!("jti-{sub}"));
    c.issued_at = Some(Duration::from_secs(NOW));
    c.invalid_before = Some(Duration::from_secs(NOW));
    c.expires_at = Some(Duration::from_secs(NOW + 600));
    c
}

pub fn ed_token(c: JWTClaims<Value>) -> String {
    keys().ed1.sign(c).unwrap()
}

/// A token with a hand-written header and payload, signed by an Ed25519 key.
pub fn raw_ed(kp: &Ed25519KeyPair, header: Value, payload: Value) -> String {
    let signing =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(payload.to_string()));
    let sk = ed25519_compact::KeyPair::from_slice(&kp.to_bytes()).unwrap();
    let sig = sk.sk.sign(signing.as_bytes(), None);
    format!("{signing}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// A token signed with HMAC-SHA256 under an arbitrary secret.
pub fn raw_hs(secret: &[u8], header: Value, payload: Value) -> String {
    use hmac::{Hmac, Mac};
    let signing =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(payload.to_string()));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(signing.as_bytes());
    format!("{signing}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

pub fn payload(sub: &str) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": sub, "org": "acme", "roles": ["viewer"], "iat": NOW, "exp": NOW + 600, "jti": format!("jti-{sub}")})
}

pub struct Req {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub peer: String,
    pub country: Option<String>,
}

pub fn get(url: &str) -> Req {
    Req { method: "GET", url: url.into(), headers: vec![], peer: "203.0.113.10".into(), country: None }
}

impl Req {
    /// Header pairs borrowed for a [`RequestHead`].
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
    }
    /// The request head, borrowing `pairs` from [`Req::pairs`].
    pub fn head<'a>(&'a self, pairs: &'a [(&'a str, &'a str)]) -> RequestHead<'a> {
        let u = gatehouse_core::request::split_url(&self.url).unwrap();
        RequestHead {
            method: self.method,
            scheme: u.scheme,
            host: u.host,
            path: u.path,
            query: u.query,
            headers: pairs,
            peer: self.peer.parse().unwrap(),
            platform_country: self.country.as_deref(),
        }
    }
    pub fn bearer(self, t: &str) -> Req {
        self.header("authorization", &format!("Bearer {t}"))
    }
    pub fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn peer(mut self, p: &str) -> Req {
        self.peer = p.into();
        self
    }
    pub fn method(mut self, m: &'static str) -> Req {
        self.method = m;
        self
    }
    pub fn country(mut self, c: &str) -> Req {
        self.country = Some(c.into());
        self
    }
}

pub struct Harness {
    pub engine: Arc<Engine>,
    pub rates: MemoryRateStore,
    /// A native signature primitive to hand the engine, if any.
    pub signatures: Option<Box<dyn gatehouse_core::jwt::SignatureVerifier + Send + Sync>>,
}

impl Harness {
    pub fn new(engine: Engine) -> Harness {
        Harness { engine: Arc::new(engine), rates: MemoryRateStore::new(10_000, [3; 16]), signatures: None }
    }
    pub fn decide_at(&self, r: &Req, now_secs: u64) -> Decision {
        let pairs = r.pairs();
        let head = r.head(&pairs);
        self.engine.decide(
            &head,
            &Env {
                now: now_secs * 1_000_000_000,
                rates: &self.rates,
                countries: &NoCountryLookup,
                signatures: self.signatures.as_deref().map(|s| s as &dyn gatehouse_core::jwt::SignatureVerifier),
            },
        )
    }
    pub fn decide(&self, r: &Req) -> Decision {
        self.decide_at(r, NOW)
    }
    /// The same decision the way a host with an asynchronous rate store takes it:
    /// `Engine::begin`, the pending steps run in order against the store (stopping at the
    /// first refusal), then `PendingRates::finish`.
    pub fn decide_with_rate_steps(&self, r: &Req) -> Decision {
        match self.begin(r) {
            gatehouse_core::Begun::Done(d) => d,
            gatehouse_core::Begun::Pending(p) => {
                let mut answers = Vec::new();
                for s in p.steps() {
                    let d = self.rates.check_rendered(&s.key, &s.gcra, NOW * 1_000_000_000);
                    answers.push(d);
                    if !d.allowed {
                        break;
                    }
                }
                p.finish(&self.engine, &answers)
            }
        }
    }
    /// `Engine::begin` on `r` (the rate store is never asked).
    pub fn begin(&self, r: &Req) -> gatehouse_core::Begun {
        let pairs = r.pairs();
        self.engine.begin(&r.head(&pairs), &Env::deferred(NOW * 1_000_000_000, &NoCountryLookup))
    }
    pub fn reason(&self, r: &Req) -> String {
        match self.decide(r) {
            Decision::Allow(_) => "allow".into(),
            d => d.reason().unwrap().as_str().into(),
        }
    }
}

/// The JWT attack table: (what, token, expected reason code or "allow").
pub fn attack_cases() -> Vec<(&'static str, String, &'static str)> {
    use base64::engine::general_purpose::STANDARD;
    let k = keys();
    // Signatures are hedged (randomised): take one whose base64url text uses `-` or `_`,
    // so that re-encoding it in the standard alphabet really changes it.
    let good = (0..1000)
        .map(|_| ed_token(claims("alice", &["viewer"])))
        .find(|t| t.rsplit('.').next().is_some_and(|s| s.contains(['-', '_'])))
        .expect("a signature with - or _");
    let parts: Vec<&str> = good.split('.').collect();
    let hdr = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let p = payload("alice");
    let signed_payload = parts[1];

    let mut cases: Vec<(&'static str, String, &'static str)> = Vec::new();
    // alg none, in every spelling, with and without a signature.
    for none in ["none", "None", "NONE", "nOnE"] {
        cases.push((
            "alg none, empty signature",
            format!("{}.{}.", hdr(json!({"alg": none, "kid": "ed1"})), signed_payload),
            "token_malformed",
        ));
        cases.push((
            "alg none, junk signature",
            format!("{}.{}.{}", hdr(json!({"alg": none, "kid": "ed1"})), signed_payload, parts[2]),
            "token_algorithm_mismatch",
        ));
        cases.push((
            "alg none, no kid",
            format!("{}.{}.AAAA", hdr(json!({"alg": none})), signed_payload),
            "token_unknown_key",
        ));
    }
    // HS256 signed with a public key as the HMAC secret (key confusion).
    cases.push((
        "HS256 with RSA public key PEM",
        raw_hs(k.rsa_public_pem.as_bytes(), json!({"alg": "HS256", "kid": "rs1"}), p.clone()),
        "token_algorithm_mismatch",
    ));
    cases.push((
        "HS256 with EC public key bytes",
        raw_hs(&k.es1.public_key().to_bytes(), json!({"alg": "HS256", "kid": "es1"}), p.clone()),
        "token_algorithm_mismatch",
    ));
    cases.push((
        "HS256 with Ed25519 public key",
        raw_hs(&k.ed1.public_key().to_bytes(), json!({"alg": "HS256", "kid": "ed1"}), p.clone()),
        "token_algorithm_mismatch",
    ));
    // RS256 token presented under the PS256 kid of the same RSA key.
    let rs = k.rs1.sign(claims("alice", &["viewer"])).unwrap();
    let rs_parts: Vec<&str> = rs.split('.').collect();
    cases.push((
        "RS256 signature under a PS256 key",
        format!("{}.{}.{}", hdr(json!({"alg": "PS256", "kid": "ps1"})), rs_parts[1], rs_parts[2]),
        "token_bad_signature",
    ));
    // Signatures: empty, truncated, from another key, zeroed ECDSA.
    cases.push(("empty signature", format!("{}.{}.", parts[0], parts[1]), "token_malformed"));
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    cases.push((
        "truncated signature",
        format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig[..61])),
        "token_bad_signature",
    ));
    cases.push((
        // 85 characters: a length no base64 encoding has.
        "truncated signature text",
        format!("{}.{}.{}", parts[0], parts[1], &parts[2][..parts[2].len() - 1]),
        "token_malformed",
    ));
    cases.push((
        "signature of another key under ed1",
        raw_ed(&k.attacker, json!({"alg": "EdDSA", "kid": "ed1"}), p.clone()),
        "token_bad_signature",
    ));
    cases.push((
        "ed1 token under kid ed2",
        raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "ed2"}), p.clone()),
        "token_bad_signature",
    ));
    cases.push((
        "wrong kid, other algorithm",
        raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "es1"}), p.clone()),
        "token_algorithm_mismatch",
    ));
    cases.push(("unknown kid", raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "nope"}), p.clone()), "token_unknown_key"));
    let es = k.es1.sign(claims("alice", &["viewer"])).unwrap();
    let es_parts: Vec<&str> = es.split('.').collect();
    cases.push((
        "ECDSA r=s=0",
        format!("{}.{}.{}", es_parts[0], es_parts[1], URL_SAFE_NO_PAD.encode([0u8; 64])),
        "token_bad_signature",
    ));
    cases.push((
        "ECDSA r=s=n (group order)",
        format!("{}.{}.{}", es_parts[0], es_parts[1], URL_SAFE_NO_PAD.encode([&P256_N[..], &P256_N[..]].concat())),
        "token_bad_signature",
    ));
    cases.push((
        "payload swapped under a valid signature",
        format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(payload("mallory").to_string()), parts[2]),
        "token_bad_signature",
    ));
    // Embedded keys and key URLs are ignored: the attacker's key never verifies.
    let attacker_jwk: serde_json::Value = serde_json::from_str(&k.attacker.public_key().to_jwk()).unwrap();
    // A `jwk` member that is a JSON object is refused outright (jwt-simple types it as a
    // string, and the engine parses the header the same way so every verifier agrees).
    cases.push((
        "embedded jwk header",
        raw_ed(&k.attacker, json!({"alg": "EdDSA", "kid": "ed1", "jwk": attacker_jwk}), p.clone()),
        "token_malformed",
    ));
    cases.push((
        "jku header",
        raw_ed(&k.attacker, json!({"alg": "EdDSA", "kid": "ed1", "jku": "https://evil.test/jwks"}), p.clone()),
        "token_bad_signature",
    ));
    cases.push((
        "x5u header",
        raw_ed(&k.attacker, json!({"alg": "EdDSA", "kid": "ed1", "x5u": "https://evil.test/cert"}), p.clone()),
        "token_bad_signature",
    ));
    cases.push((
        "embedded jwk, no kid",
        raw_ed(&k.attacker, json!({"alg": "EdDSA", "jwk": attacker_jwk}), p.clone()),
        "token_malformed",
    ));
    // crit: no extension is understood.
    cases.push((
        "crit header",
        raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "ed1", "crit": ["b64"]}), p.clone()),
        "token_critical_header",
    ));
    cases.push((
        "empty crit",
        raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "ed1", "crit": []}), p.clone()),
        "token_critical_header",
    ));
    // Header oddities.
    cases.push((
        "unknown header member",
        raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "ed1", "b64": false}), p.clone()),
        "token_malformed",
    ));
    cases.push((
        "typ is not JWT",
        raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "ed1", "typ": "JWE"}), p.clone()),
        "token_malformed",
    ));
    cases.push((
        "nested JWT (cty)",
        raw_ed(&k.ed1, json!({"alg": "EdDSA", "kid": "ed1", "cty": "JWT"}), p.clone()),
        "token_malformed",
    ));
    let dup_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","kid":"ed1","alg":"none"}"#);
    cases.push(("duplicate alg member", format!("{dup_header}.{}.{}", parts[1], parts[2]), "token_malformed"));
    cases.push((
        "header not JSON",
        format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("nope"), parts[1], parts[2]),
        "token_malformed",
    ));
    // Time.
    let mut c = claims("alice", &["viewer"]);
    c.expires_at = Some(Duration::from_secs(NOW - 31));
    cases.push(("expired beyond leeway", ed_token(c), "token_expired"));
    let mut c = claims("alice", &["viewer"]);
    c.invalid_before = Some(Duration::from_secs(NOW + 31));
    cases.push(("not yet valid (nbf)", ed_token(c), "token_not_yet_valid"));
    let mut c = claims("alice", &["viewer"]);
    c.issued_at = Some(Duration::from_secs(NOW + 3600));
    cases.push(("issued in the future (iat)", ed_token(c), "token_not_yet_valid"));
    let mut c = claims("alice", &["viewer"]);
    c.expires_at = None;
    cases.push(("no exp", ed_token(c), "token_claim_missing"));
    // Issuer and audience.
    cases.push((
        "wrong iss",
        ed_token(claims("alice", &["viewer"]).with_issuer("https://evil.test")),
        "token_wrong_issuer",
    ));
    let mut c = claims("alice", &["viewer"]);
    c.issuer = None;
    cases.push(("no iss", ed_token(c), "token_claim_missing"));
    cases.push((
        "wrong aud",
        ed_token(claims("alice", &["viewer"]).with_audience("someone-else")),
        "token_wrong_audience",
    ));
    let mut c = claims("alice", &["viewer"]);
    c.audiences = None;
    cases.push(("no aud", ed_token(c), "token_wrong_audience"));
    let mut c = claims("alice", &["viewer"]);
    c.subject = None;
    cases.push(("no sub", ed_token(c), "token_claim_missing"));
    // Header injection through claims.
    cases.push((
        "CRLF in sub",
        raw_ed(
            &k.ed1,
            json!({"alg": "EdDSA", "kid": "ed1"}),
            json!({"iss": ISS, "aud": AUD, "sub": "a\r\nx-gatehouse-org: globex", "org": "acme", "exp": NOW + 60}),
        ),
        "token_malformed",
    ));
    cases.push((
        "roles not strings",
        raw_ed(
            &k.ed1,
            json!({"alg": "EdDSA", "kid": "ed1"}),
            json!({"iss": ISS, "aud": AUD, "sub": "a", "org": "acme", "roles": [1], "exp": NOW + 60}),
        ),
        "token_malformed",
    ));
    // Non-canonical base64url.
    cases.push(("padding in signature", format!("{good}="), "token_malformed"));
    cases.push(("padding in header", format!("{}=.{}.{}", parts[0], parts[1], parts[2]), "token_malformed"));
    cases.push((
        "standard alphabet",
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            STANDARD.encode(URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).trim_end_matches('=')
        ),
        "token_malformed",
    ));
    cases.push((
        "non-zero trailing bits",
        format!("{}.{}.{}", parts[0], parts[1], flip_trailing_bits(parts[2])),
        "token_malformed",
    ));
    cases.push(("whitespace inside", format!("{}.{} .{}", parts[0], parts[1], parts[2]), "credential_malformed"));
    // Structure and size.
    cases.push(("two parts", format!("{}.{}", parts[0], parts[1]), "token_malformed"));
    cases.push(("four parts", format!("{good}.AAAA"), "token_malformed"));
    cases.push(("oversized", format!("{}.{}.{}", parts[0], "A".repeat(10_000), parts[2]), "token_too_large"));
    cases.push(("garbage", "not-a-token".into(), "token_malformed"));

    cases
}

/// Run the attack table through `h` at `/docs` of acme; returns the wrong cases.
pub fn run_attack_table(h: &Harness) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, token, want) in attack_cases() {
        let got = h.reason(&get("https://acme.app.test/docs").bearer(&token));
        if got != want {
            failures.push(format!("{name}: expected {want}, got {got}"));
        }
    }
    failures
}

const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Re-encode so the final character carries non-zero padding bits (same bytes decoded
/// by a lax decoder).
fn flip_trailing_bits(s: &str) -> String {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_ne!(s.len() % 4, 0, "needs a partial final quantum");
    let last = s.as_bytes()[s.len() - 1];
    let idx = ALPHA.iter().position(|c| *c == last).unwrap();
    format!("{}{}", &s[..s.len() - 1], ALPHA[idx | 1] as char)
}
