//! The webhook sink: a batch of records (one tenant's, in chain order) POSTed as JSON
//! `{"sink": "<name>", "records": [<wire record>, …]}`, signed with
//! `x-gatehouse-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`
//! (the key: the trimmed text of the sink's `secret_file`, as UTF-8 bytes, read at start).
//! Each attempt is signed afresh (a new `t`). A 2xx answer accepts the whole batch;
//! anything else (redirects included), or no answer within the timeout, is a failed
//! attempt.
//!
//! A receiver checks the signature in constant time over the raw body, refuses a `t`
//! too far from its clock (replays), and de-duplicates on each record's `id`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::transport::SinkHttp;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-gatehouse-signature";

/// `t=<t>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`.
pub fn signature(key: &[u8], t: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The body of one delivery: `records` are wire records' JSON texts.
pub fn body(sink: &str, records: &[String]) -> Vec<u8> {
    let mut out = String::with_capacity(records.iter().map(|r| r.len() + 1).sum::<usize>() + 64);
    out.push_str("{\"sink\":");
    out.push_str(&serde_json::Value::from(sink).to_string());
    out.push_str(",\"records\":[");
    out.push_str(&records.join(","));
    out.push_str("]}");
    out.into_bytes()
}

/// A webhook receiver.
pub struct Webhook {
    /// Sink name.
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// The HMAC key (never logged).
    pub key: Vec<u8>,
    /// The client.
    pub http: SinkHttp,
}

impl Webhook {
    /// Deliver one batch; `Err` with a short reason (no secrets) when not accepted.
    pub async fn deliver(&self, records: &[String]) -> Result<(), String> {
        let body = body(&self.name, records);
        let sig = signature(&self.key, crate::now(), &body);
        self.http.post_json(&self.url, &[(SIGNATURE_HEADER, sig)], body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_time_and_the_body() {
        // As the receiver computes it: HMAC over "<t>.<body>".
        let s = signature(b"Jefe", 1, b"what do ya want for nothing?");
        assert!(s.starts_with("t=1,v1="), "{s}");
        assert_eq!(s.len(), "t=1,v1=".len() + 64);
        assert_ne!(s, signature(b"Jefe", 2, b"what do ya want for nothing?"), "time is signed");
        assert_ne!(s, signature(b"Jefe", 1, b"what do ya want for nothing!"), "body is signed");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1.what do ya want for nothing?");
        assert_eq!(&s[7..], hex::encode(mac.finalize().into_bytes()));
    }

    #[test]
    fn the_body_is_json_with_the_records_in_order() {
        let b = body("si\"em", &["{\"seq\":1}".into(), "{\"seq\":2}".into()]);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["sink"], "si\"em");
        assert_eq!(v["records"][1]["seq"], 2);
        let empty: serde_json::Value = serde_json::from_slice(&body("x", &[])).unwrap();
        assert_eq!(empty["records"].as_array().map(Vec::len), Some(0));
    }
}
