//! A software WebAuthn authenticator for the end-to-end tests: P-256 (ES256) keys made
//! and used with OpenSSL, CBOR (attestation object, COSE key) with `serde_cbor_2`, the
//! client data a browser would send. It keeps discoverable (resident) credentials with
//! their user handles, so it can do the passwordless ceremony, and claims user
//! verification (a PIN or biometric a real one would ask for).
//!
//! Why not `webauthn-authenticator-rs`'s soft passkey: it refuses resident keys and never
//! returns a user handle, so the discoverable (passwordless) ceremony cannot run on it.

use std::collections::BTreeMap;

use base64::Engine as _;
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use serde_cbor_2::Value as Cbor;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).expect("base64url")
}

struct Credential {
    id: Vec<u8>,
    rp_id: String,
    user_handle: Vec<u8>,
    key: PKey<Private>,
    counter: u32,
}

/// The authenticator: its credentials and the web origin it runs for.
pub struct Authenticator {
    origin: String,
    creds: Vec<Credential>,
    /// Whether assertions claim user verification (a real one asks for a PIN or a
    /// biometric); off, to see the relying party refuse a presence-only assertion.
    pub uv: bool,
    /// Whether its credentials are synchronised passkeys (backup eligible and backed up),
    /// like a platform password manager's.
    pub synced: bool,
}

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const BE: u8 = 0x08;
const BS: u8 = 0x10;
const AT: u8 = 0x40;

impl Authenticator {
    /// An authenticator used from pages of `origin` (`http://localhost:port`).
    pub fn new(origin: &str) -> Authenticator {
        Authenticator { origin: origin.to_string(), creds: Vec::new(), uv: true, synced: false }
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        json!({ "type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false })
            .to_string()
            .into_bytes()
    }

    /// `navigator.credentials.create` with the server's options (`{publicKey: …}`): the
    /// `RegisterPublicKeyCredential` JSON.
    pub fn create(&mut self, options: &Value) -> Value {
        let pk = &options["publicKey"];
        let rp_id = pk["rp"]["id"].as_str().expect("rp.id").to_string();
        let challenge = pk["challenge"].as_str().expect("challenge");
        let user_handle = unb64(pk["user"]["id"].as_str().expect("user.id"));
        let excluded: Vec<Vec<u8>> = pk["excludeCredentials"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["id"].as_str()).map(unb64).collect())
            .unwrap_or_default();
        assert!(!self.creds.iter().any(|c| excluded.contains(&c.id)), "an excluded credential is here");
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = EcKey::generate(&group).unwrap();
        let mut ctx = BigNumContext::new().unwrap();
        let point = ec.public_key().to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut ctx).unwrap();
        let (x, y) = (point[1..33].to_vec(), point[33..65].to_vec());
        let id: Vec<u8> = (0..32).map(|_| rand_byte()).collect();
        let mut cose = BTreeMap::new();
        cose.insert(Cbor::Integer(1), Cbor::Integer(2));
        cose.insert(Cbor::Integer(3), Cbor::Integer(-7));
        cose.insert(Cbor::Integer(-1), Cbor::Integer(1));
        cose.insert(Cbor::Integer(-2), Cbor::Bytes(x));
        cose.insert(Cbor::Integer(-3), Cbor::Bytes(y));
        let cose = serde_cbor_2::to_vec(&Cbor::Map(cose)).unwrap();
        let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
        auth_data.push(UP | UV | AT | if self.synced { BE | BS } else { 0 });
        auth_data.extend_from_slice(&0u32.to_be_bytes());
        auth_data.extend_from_slice(&[0u8; 16]);
        auth_data.extend_from_slice(&(id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&id);
        auth_data.extend_from_slice(&cose);
        let mut att = BTreeMap::new();
        att.insert(Cbor::Text("fmt".into()), Cbor::Text("none".into()));
        att.insert(Cbor::Text("attStmt".into()), Cbor::Map(BTreeMap::new()));
        att.insert(Cbor::Text("authData".into()), Cbor::Bytes(auth_data));
        let att = serde_cbor_2::to_vec(&Cbor::Map(att)).unwrap();
        let cdj = self.client_data("webauthn.create", challenge);
        let key = PKey::from_ec_key(ec).unwrap();
        self.creds.push(Credential { id: id.clone(), rp_id, user_handle, key, counter: 0 });
        json!({
            "id": b64(&id),
            "rawId": b64(&id),
            "type": "public-key",
            "response": { "attestationObject": b64(&att), "clientDataJSON": b64(&cdj), "transports": ["internal"] },
            "clientExtensionResults": {}
        })
    }

    /// `navigator.credentials.get` with the server's options: an assertion by the first
    /// credential the options allow (any of this RP's when the list is empty: a
    /// discoverable sign-in, answered with the user handle).
    pub fn get(&mut self, options: &Value) -> Value {
        let pk = &options["publicKey"];
        let rp_id = pk["rpId"].as_str().expect("rpId").to_string();
        let challenge = pk["challenge"].as_str().expect("challenge").to_string();
        let allowed: Vec<Vec<u8>> = pk["allowCredentials"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["id"].as_str()).map(unb64).collect())
            .unwrap_or_default();
        let cdj = self.client_data("webauthn.get", &challenge);
        let cred = self
            .creds
            .iter_mut()
            .find(|c| c.rp_id == rp_id && (allowed.is_empty() || allowed.contains(&c.id)))
            .expect("a credential for this relying party");
        cred.counter += 1;
        let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
        let backup = if self.synced { BE | BS } else { 0 };
        auth_data.push(if self.uv { UP | UV | backup } else { UP | backup });
        auth_data.extend_from_slice(&cred.counter.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&cdj));
        let mut signer = Signer::new(MessageDigest::sha256(), &cred.key).unwrap();
        signer.update(&signed).unwrap();
        let sig = signer.sign_to_vec().unwrap();
        json!({
            "id": b64(&cred.id),
            "rawId": b64(&cred.id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&cdj),
                "signature": b64(&sig),
                "userHandle": b64(&cred.user_handle)
            },
            "clientExtensionResults": {}
        })
    }
}

fn rand_byte() -> u8 {
    let mut b = [0u8; 1];
    openssl::rand::rand_bytes(&mut b).unwrap();
    b[0]
}
