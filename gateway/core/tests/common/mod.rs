//! Shared fixture for the engine tests: keys, a policy, token makers.
#![allow(dead_code)]

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
}

impl Harness {
    pub fn new(engine: Engine) -> Harness {
        Harness { engine: Arc::new(engine), rates: MemoryRateStore::new(10_000, [3; 16]) }
    }
    pub fn decide_at(&self, r: &Req, now_secs: u64) -> Decision {
        let pairs = r.pairs();
        let head = r.head(&pairs);
        self.engine
            .decide(&head, &Env { now: now_secs * 1_000_000_000, rates: &self.rates, countries: &NoCountryLookup })
    }
    pub fn decide(&self, r: &Req) -> Decision {
        self.decide_at(r, NOW)
    }
    pub fn reason(&self, r: &Req) -> String {
        match self.decide(r) {
            Decision::Allow(_) => "allow".into(),
            d => d.reason().unwrap().as_str().into(),
        }
    }
}
