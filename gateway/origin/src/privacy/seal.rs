//! Sealing and opening the personal data of audit records (crypto-shredding).
//!
//! [`seal_record`] turns a record about to be appended into its stored form: the plain
//! columns keep no personal data, and what was personal moves into `sealed`, one part per
//! person, each AES-256-GCM under that person's key (`subject_keys`, itself sealed with
//! the region's key). The record hash covers the stored form, so the chain verifies with
//! or without the keys. [`KeyRing::open_record`] restores the data, or puts
//! [`ERASED`] in each place whose key is gone.
//!
//! Stored form of `sealed` (JSON):
//! `[{"subject":"user:u_1","fields":["ip","user_agent","after.email"],"nonce":"<b64>","ct":"<b64>"}]`
//! — `fields` names the places (not personal), `ct` seals the JSON array of their values,
//! bound (associated data) to the tenant, the record's `seq`, the subject and the fields.

use std::collections::{BTreeMap, HashMap};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{anyhow, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use libsql::Connection;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{personal_field, ERASED, UNREADABLE};
use crate::store::audit::Record;
use crate::store::subject_keys;

/// The keys of one tenant's sealing: the region key that seals the per-person keys, and
/// the key of the pseudonyms (`email:<hmac>`, `ip:<hmac>`), both derived from the
/// origin's secret (`secrets.sso_key`, itself derived from the bundle key when unset).
pub struct Sealer {
    wrap: Aes256Gcm,
    pseudonym_key: [u8; 32],
    tenant: String,
}

fn derive(label: &[u8], secret: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    h.update(secret);
    h.finalize().into()
}

impl Sealer {
    /// The sealer of tenant `tenant` with the origin's 32-byte `secret`.
    pub fn new(secret: &[u8; 32], tenant: &str) -> Sealer {
        let wrap = derive(b"gatehouse subject key wrap\0", secret);
        Sealer {
            wrap: Aes256Gcm::new((&wrap).into()),
            pseudonym_key: derive(b"gatehouse subject pseudonym\0", secret),
            tenant: tenant.to_string(),
        }
    }

    fn pseudonym(&self, kind: &str, value: &str) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.pseudonym_key).expect("HMAC takes any key length");
        m.update(format!("{}\0{kind}\0{value}", self.tenant).as_bytes());
        hex::encode(&m.finalize().into_bytes()[..16])
    }

    /// The subject an email address names: `email:<keyed hash>` (lower-cased first).
    pub fn email_subject(&self, email: &str) -> String {
        format!("email:{}", self.pseudonym("email", &email.trim().to_ascii_lowercase()))
    }

    /// The subject a client address names when no person does: `ip:<keyed hash>`.
    pub fn ip_subject(&self, ip: &str) -> String {
        format!("ip:{}", self.pseudonym("ip", ip))
    }

    fn key_aad(&self, subject: &str) -> Vec<u8> {
        format!("gatehouse subject key\0{}\0{subject}", self.tenant).into_bytes()
    }

    fn part_aad(&self, seq: i64, subject: &str, fields: &[String]) -> Vec<u8> {
        format!("gatehouse audit seal\0{}\0{seq}\0{subject}\0{}", self.tenant, fields.join(",")).into_bytes()
    }
}

/// One person's part of `sealed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Part {
    /// Whose key: `user:<id>`, `email:<pseudonym>`, `ip:<pseudonym>`, or the actor.
    pub subject: String,
    /// The places: `ip`, `user_agent`, `actor`, `target`, `before.<key>`, `after.<key>`.
    pub fields: Vec<String>,
    /// 96-bit nonce (base64).
    pub nonce: String,
    /// Ciphertext and tag of the JSON array of the values (base64).
    pub ct: String,
}

/// The parts of a stored `sealed` value (none when unset or malformed).
pub fn parts(sealed: Option<&str>) -> Vec<Part> {
    sealed.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
}

/// Whether `who` names a person (`user:<id>`, `email:…`).
pub fn is_person(who: &str) -> bool {
    who.starts_with("user:") || who.starts_with("email:")
}

/// A subject's key as the key ring found it.
#[derive(Clone)]
pub enum SubjectKey {
    /// The key (boxed: an AES key schedule is large).
    Key(Box<Aes256Gcm>),
    /// Destroyed by an erasure (or never made).
    Gone,
    /// Stored, but it does not open with this region key (fail closed).
    Unreadable,
}

/// Keys of one tenant's subjects, read (and created) in the caller's transaction, with a
/// cache for one request.
pub struct KeyRing<'a> {
    conn: &'a Connection,
    sealer: &'a Sealer,
    cache: HashMap<String, SubjectKey>,
}

impl<'a> KeyRing<'a> {
    /// The key ring of `conn`'s tenant.
    pub fn new(conn: &'a Connection, sealer: &'a Sealer) -> KeyRing<'a> {
        KeyRing { conn, sealer, cache: HashMap::new() }
    }

    /// The key of `subject`.
    pub async fn get(&mut self, subject: &str) -> Result<SubjectKey> {
        if let Some(k) = self.cache.get(subject) {
            return Ok(k.clone());
        }
        let key = match subject_keys::get(self.conn, subject).await? {
            None => SubjectKey::Gone,
            Some(stored) => {
                self.unwrap_key(subject, &stored).map_or(SubjectKey::Unreadable, |k| SubjectKey::Key(Box::new(k)))
            }
        };
        self.cache.insert(subject.to_string(), key.clone());
        Ok(key)
    }

    /// A stored (sealed) subject key opened with the region key.
    fn unwrap_key(&self, subject: &str, sealed: &[u8]) -> Option<Aes256Gcm> {
        if sealed.len() != 12 + 32 + 16 {
            return None;
        }
        let (nonce, ct) = sealed.split_at(12);
        let aad = self.sealer.key_aad(subject);
        let key = self.sealer.wrap.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad }).ok()?;
        Aes256Gcm::new_from_slice(&key).ok()
    }

    /// The key of `subject`, created now if it has none. A stored key that does not open
    /// is an error: nothing is sealed under a key nobody could open.
    async fn get_or_create(&mut self, subject: &str, now: i64) -> Result<Aes256Gcm> {
        if let Some(stored) = subject_keys::get(self.conn, subject).await? {
            return self.unwrap_key(subject, &stored).ok_or_else(|| anyhow!("the key of a subject does not open"));
        }
        let key: [u8; 32] = gatehouse_bundler::random::random_bytes();
        let nonce: [u8; 12] = gatehouse_bundler::random::random_bytes();
        let aad = self.sealer.key_aad(subject);
        let ct = self
            .sealer
            .wrap
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: &key, aad: &aad })
            .map_err(|_| anyhow!("sealing a subject key failed"))?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&ct);
        subject_keys::insert(self.conn, subject, &stored, now).await?;
        let cipher = Aes256Gcm::new((&key).into());
        self.cache.insert(subject.to_string(), SubjectKey::Key(Box::new(cipher.clone())));
        Ok(cipher)
    }

    /// The values of `part` (in the order of its fields): `None` when its key is gone,
    /// `Err` when the key is there but the part does not open (tampered, moved, or
    /// another region key).
    pub async fn open_part(&mut self, seq: i64, part: &Part) -> Result<Option<Vec<Value>>> {
        let key = match self.get(&part.subject).await? {
            SubjectKey::Key(k) => k,
            SubjectKey::Gone => return Ok(None),
            SubjectKey::Unreadable => return Err(anyhow!("the key of a subject does not open")),
        };
        let nonce = B64.decode(&part.nonce).ok().filter(|n| n.len() == 12);
        let ct = B64.decode(&part.ct).ok();
        let (Some(nonce), Some(ct)) = (nonce, ct) else { return Err(anyhow!("malformed sealed part")) };
        let aad = self.sealer.part_aad(seq, &part.subject, &part.fields);
        let pt = key
            .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ct, aad: &aad })
            .map_err(|_| anyhow!("sealed part does not open"))?;
        let values: Vec<Value> = serde_json::from_slice(&pt)?;
        if values.len() != part.fields.len() {
            return Err(anyhow!("sealed part has the wrong number of values"));
        }
        Ok(Some(values))
    }

    /// `r` with its personal data restored; [`ERASED`] where a key is gone,
    /// [`UNREADABLE`] where a part does not open. `sealed` is left out of the result.
    pub async fn open_record(&mut self, r: &Record) -> Result<Record> {
        let mut out = r.clone();
        out.sealed = None;
        let mut before = json_object(r.before.as_deref());
        let mut after = json_object(r.after.as_deref());
        for part in parts(r.sealed.as_deref()) {
            let values = match self.open_part(r.seq, &part).await {
                Ok(Some(v)) => v,
                Ok(None) => vec![Value::from(ERASED); part.fields.len()],
                Err(_) => vec![Value::from(UNREADABLE); part.fields.len()],
            };
            for (field, value) in part.fields.iter().zip(values) {
                let text = || value.as_str().map(String::from).unwrap_or_else(|| value.to_string());
                match field.as_str() {
                    "ip" => out.ip = Some(text()),
                    "user_agent" => out.user_agent = Some(text()),
                    "actor" => out.actor = text(),
                    "target" => out.target = text(),
                    f => {
                        if let Some(k) = f.strip_prefix("before.") {
                            before.get_or_insert_with(Map::new).insert(k.to_string(), value);
                        } else if let Some(k) = f.strip_prefix("after.") {
                            after.get_or_insert_with(Map::new).insert(k.to_string(), value);
                        }
                    }
                }
            }
        }
        if r.before.is_some() {
            out.before = before.map(|m| Value::Object(m).to_string());
        }
        if r.after.is_some() {
            out.after = after.map(|m| Value::Object(m).to_string());
        }
        Ok(out)
    }
}

fn json_object(s: Option<&str>) -> Option<Map<String, Value>> {
    match serde_json::from_str(s?) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// What [`seal_record`] gathers: per subject, the places and their values.
#[derive(Default)]
struct Gathered(BTreeMap<String, Vec<(String, Value)>>);

impl Gathered {
    fn put(&mut self, subject: &str, field: impl Into<String>, value: Value) {
        self.0.entry(subject.to_string()).or_default().push((field.into(), value));
    }
}

/// Turn `r` (its `seq` set, its hash not yet computed) into its stored form: the
/// personal data moved out of the plain columns into `r.sealed`, sealed under each
/// person's key (created in `conn`'s transaction on first use). Who a value belongs to:
///
/// - an address in the actor or target (`email:<address>`): that address's subject; the
///   column keeps `email:<pseudonym>`;
/// - `ip`/`user_agent`: the actor if `user:<id>`, else the target if it is a person,
///   else plain for `operator` and `system` (the platform, not a person), else the
///   address's own subject `ip:<pseudonym>`;
/// - personal fields of `before`/`after` ([`personal_field`]): the target if it is a
///   person, else the person an `email` field names, else the actor.
pub async fn seal_record(conn: &Connection, sealer: &Sealer, r: &mut Record, now: i64) -> Result<()> {
    let mut g = Gathered::default();
    for (field, who) in [("actor", &mut r.actor), ("target", &mut r.target)] {
        if let Some(address) = who.strip_prefix("email:").filter(|a| a.contains('@')) {
            let subject = sealer.email_subject(address);
            g.put(&subject, field, Value::from(who.as_str()));
            *who = subject;
        }
    }
    let net_subject = if r.actor.starts_with("user:") {
        Some(r.actor.clone())
    } else if is_person(&r.target) {
        Some(r.target.clone())
    } else if r.actor == "operator" || r.actor == "system" {
        None
    } else {
        Some(r.ip.as_deref().map(|ip| sealer.ip_subject(ip)).unwrap_or_else(|| r.actor.clone()))
    };
    if let Some(subject) = &net_subject {
        if let Some(ip) = r.ip.take() {
            g.put(subject, "ip", Value::from(ip));
        }
        if let Some(ua) = r.user_agent.take() {
            g.put(subject, "user_agent", Value::from(ua));
        }
    }
    for (name, column) in [("before", &mut r.before), ("after", &mut r.after)] {
        let Some(mut obj) = json_object(column.as_deref()) else { continue };
        let subject = if is_person(&r.target) {
            r.target.clone()
        } else if let Some(e) = obj.get("email").and_then(Value::as_str) {
            sealer.email_subject(e)
        } else {
            r.actor.clone()
        };
        let personal: Vec<String> = obj.keys().filter(|k| personal_field(k, &r.target)).cloned().collect();
        if personal.is_empty() {
            continue;
        }
        for k in personal {
            if let Some(v) = obj.remove(&k) {
                g.put(&subject, format!("{name}.{k}"), v);
            }
        }
        *column = Some(Value::Object(obj).to_string());
    }
    if g.0.is_empty() {
        return Ok(());
    }
    let mut ring = KeyRing::new(conn, sealer);
    let mut out = Vec::with_capacity(g.0.len());
    for (subject, entries) in g.0 {
        let key = ring.get_or_create(&subject, now).await?;
        let (fields, values): (Vec<String>, Vec<Value>) = entries.into_iter().unzip();
        let nonce: [u8; 12] = gatehouse_bundler::random::random_bytes();
        let aad = sealer.part_aad(r.seq, &subject, &fields);
        let pt = serde_json::to_vec(&values)?;
        let ct = key
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: &pt, aad: &aad })
            .map_err(|_| anyhow!("sealing audit data failed"))?;
        out.push(Part { subject, fields, nonce: B64.encode(nonce), ct: B64.encode(ct) });
    }
    r.sealed = Some(serde_json::to_string(&out)?);
    Ok(())
}
