//! The OTLP logs sink: `POST {url}/v1/logs` with an `ExportLogsServiceRequest` in the
//! OTLP/HTTP JSON encoding. One resource per batch (`service.name = gatehouse-origin`,
//! the region, the tenant and organisation), scope `gatehouse.audit`, one log record per
//! audit record: `timeUnixNano` the record's time, severity INFO, `eventName` the
//! action, the body the wire record's JSON ([`super::record`]), and attributes
//! `gatehouse.audit.id`, `.seq`, `.prev_hash`, `.hash`, `.action`, `.actor`, `.target`,
//! `.tenant`. 64-bit integers are strings, as the JSON encoding requires. A 2xx answer
//! accepts the batch (records a collector rejects in a partial success are its own).

use serde_json::{json, Value};

use super::record::{TenantName, Wire};
use super::transport::SinkHttp;

fn attr(key: &str, v: Value) -> Value {
    json!({ "key": key, "value": v })
}

fn text(s: &str) -> Value {
    json!({ "stringValue": s })
}

/// One `logRecord`.
pub fn log_record(w: &Wire<'_>) -> Value {
    let r = w.record;
    let nanos = (r.at.max(0) as u128 * 1_000_000_000).to_string();
    json!({
        "timeUnixNano": nanos,
        "observedTimeUnixNano": nanos,
        "severityNumber": 9,
        "severityText": "INFO",
        "eventName": r.action,
        "body": text(&w.to_json()),
        "attributes": [
            attr("gatehouse.audit.id", text(&w.id)),
            attr("gatehouse.audit.seq", json!({ "intValue": w.seq.to_string() })),
            attr("gatehouse.audit.prev_hash", text(w.prev_hash)),
            attr("gatehouse.audit.hash", text(w.hash)),
            attr("gatehouse.audit.action", text(&r.action)),
            attr("gatehouse.audit.actor", text(&r.actor)),
            attr("gatehouse.audit.target", text(&r.target)),
            attr("gatehouse.audit.tenant", text(w.tenant)),
        ],
    })
}

/// The request of one batch of `t`'s records (`log_records` from [`log_record`]).
pub fn request(t: &TenantName, region: &str, log_records: Vec<Value>) -> Value {
    json!({
        "resourceLogs": [{
            "resource": { "attributes": [
                attr("service.name", text("gatehouse-origin")),
                attr("gatehouse.region", text(region)),
                attr("gatehouse.tenant", text(&t.id)),
                attr("gatehouse.org", text(&t.slug)),
            ] },
            "scopeLogs": [{
                "scope": { "name": "gatehouse.audit", "version": env!("CARGO_PKG_VERSION") },
                "logRecords": log_records,
            }],
        }]
    })
}

/// An OTLP/HTTP collector.
pub struct Otlp {
    /// `{url}/v1/logs`.
    pub endpoint: String,
    /// The client.
    pub http: SinkHttp,
}

impl Otlp {
    /// Deliver one request body.
    pub async fn deliver(&self, body: Vec<u8>) -> Result<(), String> {
        self.http.post_json(&self.endpoint, &[], body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_follows_the_otlp_json_encoding() {
        let mut r = crate::sinks::record::sample(12, "org.create");
        r.at = 2;
        let t = TenantName { id: "t_01".into(), slug: "acme".into() };
        let v = request(&t, "eu-west", vec![log_record(&Wire::new(&t, "eu-west", &r))]);
        let lr = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(lr["timeUnixNano"], "2000000000");
        assert_eq!(lr["attributes"][1], json!({ "key": "gatehouse.audit.seq", "value": { "intValue": "12" } }));
        let body: Value = serde_json::from_str(lr["body"]["stringValue"].as_str().unwrap()).unwrap();
        assert_eq!(body["id"], "t_01:12");
        assert_eq!(v["resourceLogs"][0]["resource"]["attributes"][2]["value"]["stringValue"], "t_01");
    }
}
