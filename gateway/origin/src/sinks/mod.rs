//! Audit streaming: every audit record a tenant writes is pushed, in chain order, to each
//! configured sink (`[[sinks]]`: a webhook, syslog over TCP/TLS, an OTLP logs endpoint).
//!
//! - **As written**: committing audit records wakes the sinks ([`Sinks::wake`]); a sweep
//!   every `sweep_secs` catches anything else.
//! - **At least once, in order per tenant**: each (sink, tenant) has a cursor in the
//!   directory database (`sink_cursors`), the last sequence number the receiver
//!   accepted; it moves only after the receiver accepted a batch, so records a stopped
//!   origin did not deliver go out after its restart. Receivers de-duplicate on the
//!   record id `<tenant id>:<seq>`. Records are read from the tenant's audit log, nothing
//!   is queued in memory.
//! - **Retries, then a dead letter**: a failed delivery is retried after `retry_base_ms`,
//!   doubling up to `retry_max_ms`; after `max_attempts` its records' ids go to
//!   `sink_dead_letters`, `gatehouse_origin_audit_sink_dead_letters_total{sink}` counts
//!   them and the cursor moves on, so one poison record does not stop the stream.
//!   `POST /v1/sinks/{name}/replay` sends them again ([`routes`]).
//! - Each record carries its chain position ([`record`]), so the receiver verifies
//!   continuity (record n+1's `prev_hash` is record n's `hash`).
//!
//! The worker ([`worker`]) runs one task per sink; [`routes`] serves `GET /v1/sinks` and
//! the replay.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio::sync::Notify;

use crate::config::sinks::{split_address, SinkSettings};
use crate::config::OriginConfig;
use crate::store::audit::Record;

pub mod cursors;
pub mod otlp;
pub mod record;
pub mod routes;
pub mod syslog;
pub mod transport;
pub mod webhook;
pub mod worker;

use record::{TenantName, Wire};

/// How a sink reaches its receiver.
pub enum Receiver {
    /// Signed JSON POSTs.
    Webhook(webhook::Webhook),
    /// RFC 5424 over TCP or TLS.
    Syslog(syslog::Syslog),
    /// OTLP/HTTP JSON.
    Otlp(otlp::Otlp),
}

/// What a sink last saw (for `GET /v1/sinks`; in memory, since the start).
#[derive(Debug, Default, Clone)]
pub struct Status {
    /// The last failure's reason (no secrets), cleared by the next success.
    pub last_error: Option<String>,
    /// Unix seconds of the last accepted delivery.
    pub last_success_at: Option<i64>,
}

/// One configured sink.
pub struct Sink {
    /// Its configuration.
    pub settings: SinkSettings,
    receiver: Receiver,
    wake: Notify,
    /// One delivery at a time (the worker and a replay).
    busy: tokio::sync::Mutex<()>,
    status: Mutex<Status>,
}

/// The origin's sinks.
pub struct Sinks {
    list: Vec<Arc<Sink>>,
}

/// The syslog HOSTNAME of an origin: the sink's, or the host of `public_url`.
fn hostname(cfg: &OriginConfig, s: &SinkSettings) -> String {
    s.hostname.clone().unwrap_or_else(|| {
        url::Url::parse(&cfg.public_url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or("-".into())
    })
}

impl Sink {
    fn open(cfg: &OriginConfig, s: &SinkSettings) -> Result<Sink> {
        let receiver = match s.kind.as_str() {
            "webhook" => {
                let path = s.secret_file.as_ref().ok_or_else(|| anyhow!("sinks.{}.secret_file: missing", s.name))?;
                let key = crate::config::secrets::read_secret(path, &format!("sinks.{}.secret_file", s.name))?;
                Receiver::Webhook(webhook::Webhook {
                    name: s.name.clone(),
                    url: s.url.clone().unwrap_or_default(),
                    key: key.into_bytes(),
                    http: transport::SinkHttp::new(s)?,
                })
            }
            "otlp" => Receiver::Otlp(otlp::Otlp {
                endpoint: format!("{}/v1/logs", s.url.as_deref().unwrap_or_default()),
                http: transport::SinkHttp::new(s)?,
            }),
            _ => {
                let address = s.address.clone().unwrap_or_default();
                let tls = if s.transport == "tls" {
                    let host = s.server_name.clone().or_else(|| split_address(&address).map(|(h, _)| h.to_string()));
                    let name = rustls::pki_types::ServerName::try_from(host.unwrap_or_default())
                        .map_err(|e| anyhow!("sinks.{}.server_name: {e}", s.name))?;
                    Some((transport::tls_config(s)?, name))
                } else {
                    None
                };
                Receiver::Syslog(syslog::Syslog {
                    address,
                    tls,
                    pri: s.facility * 8 + 6,
                    hostname: hostname(cfg, s),
                    sd_id: s.sd_id.clone(),
                    timeout: Duration::from_secs(s.timeout_secs),
                })
            }
        };
        Ok(Sink {
            settings: s.clone(),
            receiver,
            wake: Notify::new(),
            busy: tokio::sync::Mutex::new(()),
            status: Mutex::new(Status::default()),
        })
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Where it sends (URL without its query, or `host:port`).
    pub fn destination(&self) -> String {
        let s = &self.settings;
        match (&s.url, &s.address) {
            (Some(u), _) => u.split(['?', '#']).next().unwrap_or_default().to_string(),
            (None, Some(a)) => format!("{}://{a}", if s.transport == "tls" { "syslog+tls" } else { "syslog+tcp" }),
            (None, None) => String::new(),
        }
    }

    /// What it last saw.
    pub fn status(&self) -> Status {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn note(&self, outcome: &Result<(), String>) {
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(()) => {
                st.last_error = None;
                st.last_success_at = Some(crate::now());
            }
            Err(e) => st.last_error = Some(e.chars().take(300).collect()),
        }
    }

    /// One record as this sink's receiver takes it: the wire JSON (webhook), an RFC 5424
    /// message (syslog), an OTLP `logRecord` (JSON text); `opened`: the record with its
    /// personal data opened (sinks with `include_personal`).
    fn encode(&self, t: &TenantName, region: &str, r: &Record, opened: Option<&Record>) -> String {
        let mut w = Wire::new(t, region, r);
        w.personal = opened.map(record::personal);
        match &self.receiver {
            Receiver::Webhook(_) => w.to_json(),
            Receiver::Syslog(s) => s.message(&w),
            Receiver::Otlp(_) => otlp::log_record(&w).to_string(),
        }
    }

    /// The records at the front of `records` that form one delivery (at most
    /// `max_batch_bytes` encoded), encoded; `opened`: the same records opened (see
    /// [`Sink::encode`]). Empty when the first alone is too large.
    fn batch(&self, t: &TenantName, region: &str, records: &[Record], opened: Option<&[Record]>) -> Vec<String> {
        let mut out = Vec::new();
        let mut size = 0;
        for (i, r) in records.iter().enumerate().take(self.settings.batch_size) {
            let e = self.encode(t, region, r, opened.and_then(|o| o.get(i)));
            if size + e.len() > self.settings.max_batch_bytes {
                break;
            }
            size += e.len();
            out.push(e);
        }
        out
    }

    /// One attempt to deliver `encoded` (from [`Sink::batch`]); `Err` with a short
    /// reason. The outcome is noted for the status.
    async fn attempt(&self, t: &TenantName, region: &str, encoded: &[String]) -> Result<(), String> {
        let _one = self.busy.lock().await;
        let outcome = match &self.receiver {
            Receiver::Webhook(w) => w.deliver(encoded).await,
            Receiver::Syslog(s) => s.deliver(encoded).await,
            Receiver::Otlp(o) => {
                let records = encoded.iter().filter_map(|e| serde_json::from_str(e).ok()).collect();
                o.deliver(otlp::request(t, region, records).to_string().into_bytes()).await
            }
        };
        self.note(&outcome);
        outcome
    }

    /// The wait before retry `attempt` (1-based): `retry_base_ms` doubled per attempt,
    /// at most `retry_max_ms`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let s = &self.settings;
        let ms = s.retry_base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
        Duration::from_millis(ms.min(s.retry_max_ms))
    }
}

impl Sinks {
    /// The sinks `cfg` configures (their secret and CA files read now).
    pub fn open(cfg: &OriginConfig) -> Result<Sinks> {
        let list = cfg.sinks.iter().map(|s| Sink::open(cfg, s).map(Arc::new)).collect::<Result<_>>()?;
        Ok(Sinks { list })
    }

    /// Audit records were committed: every sink looks for them now.
    pub fn wake(&self) {
        for s in &self.list {
            s.wake.notify_one();
        }
    }

    /// Every sink.
    pub fn all(&self) -> &[Arc<Sink>] {
        &self.list
    }

    /// Sink `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Sink>> {
        self.list.iter().find(|s| s.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let toml = "name = \"s\"\nkind = \"syslog\"\naddress = \"127.0.0.1:1\"\ntransport = \"tcp\"\nretry_base_ms = 100\nretry_max_ms = 1000\n";
        let settings: SinkSettings = toml::from_str(toml).unwrap();
        let cfg: OriginConfig = toml::from_str(include_str!("../../../../examples/origin.toml")).unwrap();
        let s = Sink::open(&cfg, &settings).unwrap();
        let ms: Vec<u128> = (1..=6).map(|a| s.backoff(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(s.backoff(200).as_millis(), 1000, "no overflow");
        assert_eq!(s.destination(), "syslog+tcp://127.0.0.1:1");
    }
}
