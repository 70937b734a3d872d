//! The wire shape of a streamed audit record, the same for every sink:
//!
//! ```json
//! { "id": "t_0a1b…:42", "tenant": "t_0a1b…", "org": "acme", "region": "eu-west",
//!   "seq": 42, "prev_hash": "…", "hash": "…",
//!   "record": { "seq": 42, "at": 1767000000, "actor": "user:u_…", "action": "user.create",
//!               "target": "user:u_…", "before": null, "after": "{\"role\":\"admin\"}",
//!               "ip": "…", "user_agent": "…", "request_id": "r_…", "act": null,
//!               "sealed": null, "prev_hash": "…", "hash": "…" } }
//! ```
//!
//! - `id` is `<tenant id>:<seq>`: unique per region and stable, the receiver's key for
//!   de-duplicating (delivery is at least once).
//! - `seq`, `prev_hash`, `hash` are the record's place in the tenant's chain: record n+1's
//!   `prev_hash` is record n's `hash`, so a receiver sees a gap or a change at once. (A
//!   legitimate gap: retention purged records before the sink delivered them; the origin
//!   logs it, and the next record's `prev_hash` is still the purged one's `hash`.)
//! - `record` is the stored record as it is hashed (`before`/`after` as the stored JSON
//!   text): SHA-256 of the JSON array `[seq, at, actor, action, target, before, after,
//!   ip, user_agent, request_id, prev_hash]` (plus `act, sealed` when either is set) is
//!   `hash` — see [`crate::audit`].
//! - `personal`: only for sinks with `include_personal = true`, the record's fields that
//!   may hold personal data as they read opened — `actor`, `target`, `before`, `after`,
//!   `ip`, `user_agent` (`erased subject` where the person's key was already destroyed).
//!   Without it the receiver gets the stored form only: personal data sealed under the
//!   person's key, which erasure destroys. Personal data sent out of the region is beyond
//!   the reach of erasure.

use serde::Serialize;
use serde_json::Value;

use crate::store::audit::Record;

/// The tenant a batch of records belongs to.
#[derive(Debug, Clone)]
pub struct TenantName {
    /// Id (`t_…`).
    pub id: String,
    /// Slug of the organisation.
    pub slug: String,
}

/// One record as sinks send it.
#[derive(Debug, Clone, Serialize)]
pub struct Wire<'a> {
    /// `<tenant id>:<seq>`.
    pub id: String,
    /// Tenant id.
    pub tenant: &'a str,
    /// Organisation slug.
    pub org: &'a str,
    /// The origin's region.
    pub region: &'a str,
    /// Sequence number in the tenant's chain.
    pub seq: i64,
    /// Hash of the previous record.
    pub prev_hash: &'a str,
    /// This record's hash.
    pub hash: &'a str,
    /// The stored record.
    pub record: &'a Record,
    /// The record's personal data, opened (only with `include_personal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub personal: Option<Value>,
}

/// The personal view of an opened record: the fields that may hold personal data, as
/// they read opened (`erased subject` where the person's key was destroyed).
pub fn personal(opened: &Record) -> Value {
    serde_json::json!({ "actor": opened.actor, "target": opened.target, "before": opened.before,
        "after": opened.after, "ip": opened.ip, "user_agent": opened.user_agent })
}

/// The id a receiver de-duplicates on.
pub fn record_id(tenant_id: &str, seq: i64) -> String {
    format!("{tenant_id}:{seq}")
}

impl<'a> Wire<'a> {
    /// The wire form of `r` of tenant `t` in `region`.
    pub fn new(t: &'a TenantName, region: &'a str, r: &'a Record) -> Wire<'a> {
        Wire {
            id: record_id(&t.id, r.seq),
            tenant: &t.id,
            org: &t.slug,
            region,
            seq: r.seq,
            prev_hash: &r.prev_hash,
            hash: &r.hash,
            record: r,
            personal: None,
        }
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        // Serialising strings, numbers and options cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A record for the sinks' unit tests.
#[cfg(test)]
pub(crate) fn sample(seq: i64, action: &str) -> Record {
    Record {
        seq,
        at: 0,
        actor: "operator".into(),
        action: action.into(),
        target: "user:u_1".into(),
        before: None,
        after: None,
        ip: None,
        user_agent: None,
        request_id: None,
        act: None,
        sealed: None,
        prev_hash: "p".into(),
        hash: "h".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    #[test]
    fn the_wire_record_carries_its_id_and_chain_position() {
        let mut r = sample(7, "user.create");
        r.at = 1_767_000_000;
        r.after = Some("{\"role\":\"admin\"}".into());
        r.request_id = Some("r_1".into());
        r.prev_hash = "aa".repeat(32);
        r.hash = crate::audit::record_hash(&r);
        let t = TenantName { id: "t_01".into(), slug: "acme".into() };
        let v: Value = serde_json::from_str(&Wire::new(&t, "eu-west", &r).to_json()).unwrap();
        assert_eq!(v["id"], "t_01:7");
        assert_eq!((v["seq"].as_i64(), v["prev_hash"].as_str()), (Some(7), Some(r.prev_hash.as_str())));
        assert_eq!(v["record"]["after"], "{\"role\":\"admin\"}", "the stored text, as hashed");
        assert!(v.get("personal").is_none());
        // A receiver recomputes the hash from the documented array of the record's fields.
        let x = &v["record"];
        let fields = ["seq", "at", "actor", "action", "target", "before", "after", "ip", "user_agent"];
        let mut canonical: Vec<Value> = fields.iter().map(|f| x[*f].clone()).collect();
        canonical.extend([x["request_id"].clone(), x["prev_hash"].clone()]);
        let digest = sha2::Sha256::digest(Value::Array(canonical).to_string().as_bytes());
        assert_eq!(hex::encode(digest), v["hash"].as_str().unwrap());
    }
}
