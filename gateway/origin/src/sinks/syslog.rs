//! The syslog sink: RFC 5424 messages over TCP (RFC 6587) or TLS (RFC 5425), framed by
//! octet counting (`<length> <message>`).
//!
//! One message per record:
//! `<PRI>1 TIMESTAMP HOSTNAME gatehouse - MSGID [SD-ID id=… tenant=… org=… seq=…
//! prev_hash=… hash=… action=… actor=… target=…] BOM{wire record JSON}` — PRI from the
//! sink's facility and severity 6 (informational), TIMESTAMP the record's time (UTC),
//! MSGID the action (at most 32 characters), the chain position as structured data and
//! the whole wire record ([`super::record`]) as the UTF-8 MSG.
//!
//! Syslog has no acknowledgement, so a batch opens its own connection, writes every
//! frame, closes its sending side (TLS: `close_notify`) and counts as accepted once the
//! receiver has read to the end and closed its side too; a receiver that goes away
//! mid-batch fails the attempt, and the batch is sent again.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::record::Wire;

/// What a syslog sink sends from and to.
pub struct Syslog {
    /// `host:port`.
    pub address: String,
    /// TLS (with this configuration and server name), or plain TCP.
    pub tls: Option<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
    /// PRI: facility × 8 + severity 6.
    pub pri: u8,
    /// HOSTNAME.
    pub hostname: String,
    /// SD-ID.
    pub sd_id: String,
    /// Per batch: connect, write, the receiver's close.
    pub timeout: Duration,
}

/// An SD-PARAM value with `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn param(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// RFC 3339 UTC of Unix seconds.
fn timestamp(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into())
}

/// MSGID: the action's printable ASCII, at most 32 characters (`-` when empty).
fn msgid(action: &str) -> String {
    let m: String = action.chars().filter(|c| c.is_ascii_graphic()).take(32).collect();
    if m.is_empty() {
        "-".into()
    } else {
        m
    }
}

impl Syslog {
    /// The RFC 5424 message of one record (without framing).
    pub fn message(&self, w: &Wire<'_>) -> String {
        let r = w.record;
        let sd = format!(
            "[{} id=\"{}\" tenant=\"{}\" org=\"{}\" seq=\"{}\" prev_hash=\"{}\" hash=\"{}\" action=\"{}\" actor=\"{}\" target=\"{}\"]",
            self.sd_id,
            param(&w.id),
            param(w.tenant),
            param(w.org),
            w.seq,
            param(w.prev_hash),
            param(w.hash),
            param(&r.action),
            param(&r.actor),
            param(&r.target)
        );
        format!(
            "<{}>1 {} {} gatehouse - {} {sd} \u{feff}{}",
            self.pri,
            timestamp(r.at),
            self.hostname,
            msgid(&r.action),
            w.to_json()
        )
    }

    /// Deliver already formatted messages over one connection.
    pub async fn deliver(&self, messages: &[String]) -> Result<(), String> {
        let mut framed = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
        for m in messages {
            framed.extend_from_slice(format!("{} ", m.len()).as_bytes());
            framed.extend_from_slice(m.as_bytes());
        }
        let run = async {
            let tcp = TcpStream::connect(&self.address).await.map_err(|e| format!("connect: {e}"))?;
            match &self.tls {
                None => exchange(tcp, &framed).await,
                Some((config, name)) => {
                    let tls = tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| format!("TLS: {e}"))?;
                    exchange(tls, &framed).await
                }
            }
        };
        tokio::time::timeout(self.timeout, run).await.map_err(|_| format!("timed out after {:?}", self.timeout))?
    }
}

/// Write `bytes`, close the sending side, and wait for the receiver to close its side.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, bytes: &[u8]) -> Result<(), String> {
    s.write_all(bytes).await.map_err(|e| format!("write: {e}"))?;
    s.flush().await.map_err(|e| format!("write: {e}"))?;
    s.shutdown().await.map_err(|e| format!("close: {e}"))?;
    // The receiver says nothing; anything it sends is read and dropped (bounded).
    let mut buf = [0u8; 512];
    let mut seen = 0usize;
    loop {
        match s.read(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(n) if seen + n <= 64 * 1024 => seen += n,
            Ok(_) => return Err("the receiver keeps talking".into()),
            // A TLS receiver closing without close_notify still read everything.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(format!("waiting for the receiver to close: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::record::TenantName;

    #[test]
    fn messages_have_the_rfc_5424_shape_with_escaped_parameters() {
        let s = Syslog {
            address: "127.0.0.1:1".into(),
            tls: None,
            pri: 13 * 8 + 6,
            hostname: "origin.example".into(),
            sd_id: "gatehouse@32473".into(),
            timeout: Duration::from_secs(1),
        };
        let mut r = crate::sinks::record::sample(3, "signin.success");
        r.actor = "user:u_\"x]".into();
        let t = TenantName { id: "t_01".into(), slug: "acme".into() };
        let m = s.message(&Wire::new(&t, "eu-west", &r));
        assert!(
            m.starts_with(
                "<110>1 1970-01-01T00:00:00Z origin.example gatehouse - signin.success [gatehouse@32473 id=\"t_01:3\""
            ),
            "{m}"
        );
        assert!(m.contains(r#"actor="user:u_\"x\]""#), "{m}");
        assert!(m.contains("] \u{feff}{\"id\":\"t_01:3\""), "{m}");
        assert_eq!(msgid("a b\u{e9}"), "ab");
        assert_eq!(msgid(""), "-");
        assert_eq!(msgid(&"x".repeat(40)).len(), 32);
    }
}
