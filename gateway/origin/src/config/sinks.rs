//! `[[sinks]]`: where the audit log is streamed (a SIEM's webhook, syslog over TCP or
//! TLS, an OTLP logs endpoint), and how hard the origin tries before a record becomes a
//! dead letter. Delivery itself is [`crate::sinks`]'s.

use std::collections::BTreeSet;
use std::path::PathBuf;

use gatehouse_settings::{one_of, within};
use serde::Deserialize;

use super::mail::is_loopback;

/// One audit sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSettings {
    /// Name in metrics, `GET /v1/sinks` and the cursors table: 1–32 of a-z, 0-9, `-`.
    /// Renaming a sink starts its cursors over (every record is sent again).
    pub name: String,
    /// `webhook`, `syslog` or `otlp`.
    pub kind: String,
    /// `webhook`: the URL records are POSTed to; `otlp`: the collector's base URL
    /// (records go to `{url}/v1/logs`). `https://`, or `http://` on loopback with
    /// `allow_http_loopback`.
    #[serde(default)]
    pub url: Option<String>,
    /// `syslog`: the receiver's `host:port`.
    #[serde(default)]
    pub address: Option<String>,
    /// `syslog`: `tls` (RFC 5425, default) or `tcp` (RFC 6587, loopback receivers only:
    /// records are not sent in clear text over a network).
    #[serde(default = "default_transport")]
    pub transport: String,
    /// `syslog` over TLS: the name the receiver's certificate must carry (default: the
    /// host of `address`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// A PEM file of CA certificates trusted for the receiver (in addition to the
    /// Mozilla roots), for `https://` and syslog over TLS.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `webhook`: the file holding the HMAC-SHA256 key of `x-gatehouse-signature` (at
    /// least 16 characters, trimmed).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Accept `http://` URLs on loopback hosts (tests, a local collector).
    #[serde(default)]
    pub allow_http_loopback: bool,
    /// Send the personal data of records opened (emails, names, addresses). Off by
    /// default: the stored record carries it sealed only. Personal data sent out is
    /// beyond the reach of erasure.
    #[serde(default)]
    pub include_personal: bool,
    /// Records per delivery (one request, one syslog connection), 1–1000.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Largest delivery in bytes (a batch is cut before it grows past this; a single
    /// record larger than this is a dead letter at once), 4 KiB – 16 MiB.
    #[serde(default = "default_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Timeout of one delivery (connect, send, answer), 1–60 s.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// First retry delay; each further retry waits twice as long, up to `retry_max_ms`.
    #[serde(default = "default_retry_base")]
    pub retry_base_ms: u64,
    /// Longest retry delay.
    #[serde(default = "default_retry_max")]
    pub retry_max_ms: u64,
    /// Attempts of one delivery before its records become dead letters, 1–100.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Seconds between sweeps for records written without a wake-up (1–3600). Every
    /// commit of an audit record also wakes the sinks.
    #[serde(default = "default_sweep")]
    pub sweep_secs: u64,
    /// `syslog`: the facility of PRI (0–23; default 13, "log audit").
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// `syslog`: HOSTNAME (default: the host of the origin's `public_url`).
    #[serde(default)]
    pub hostname: Option<String>,
    /// `syslog`: the SD-ID of the structured-data element, `name@<private enterprise
    /// number>` (default `gatehouse@32473`, the documentation number of RFC 5612: set
    /// your own).
    #[serde(default = "default_sd_id")]
    pub sd_id: String,
}

fn default_transport() -> String {
    "tls".into()
}
fn default_batch() -> usize {
    100
}
fn default_batch_bytes() -> usize {
    1 << 20
}
fn default_timeout() -> u64 {
    10
}
fn default_retry_base() -> u64 {
    500
}
fn default_retry_max() -> u64 {
    60_000
}
fn default_attempts() -> u32 {
    8
}
fn default_sweep() -> u64 {
    30
}
fn default_facility() -> u8 {
    13
}
fn default_sd_id() -> String {
    "gatehouse@32473".into()
}

/// Whether `s` is 1–`max` printable US-ASCII characters other than space, `=`, `]`, `"`
/// (RFC 5424's SD-NAME and, with `@` allowed, SD-ID).
fn printusascii(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b) && !b"=]\"".contains(&b))
}

impl SinkSettings {
    /// Paths to resolve against the configuration file's folder.
    pub(crate) fn paths(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        [self.ca_file.as_mut(), self.secret_file.as_mut()].into_iter().flatten()
    }

    /// Check one sink; the error names the field (`sinks.<name>.<field>`).
    fn validate(&self) -> Result<(), String> {
        let f = |field: &str| format!("sinks.{}.{field}", self.name);
        one_of(&f("kind"), &self.kind, &["webhook", "syslog", "otlp"]).map_err(|e| e.to_string())?;
        let http = self.kind != "syslog";
        match (&self.url, http) {
            (Some(u), true) => {
                if u.len() > 2048 || !crate::sso::http::url_allowed(u, self.allow_http_loopback) || u.ends_with('/') {
                    return Err(format!(
                        "{}: `{u}` must be an https URL without a trailing slash (http only on loopback with \
                         allow_http_loopback)",
                        f("url")
                    ));
                }
            }
            (None, true) => return Err(format!("{}: a {} sink needs a URL", f("url"), self.kind)),
            (Some(_), false) => return Err(format!("{}: a syslog sink takes `address`, not a URL", f("url"))),
            (None, false) => {}
        }
        match (&self.address, http) {
            (Some(_), true) => return Err(format!("{}: only syslog sinks take an address", f("address"))),
            (None, false) => return Err(format!("{}: a syslog sink needs `host:port`", f("address"))),
            (Some(a), false) => {
                let Some((host, port)) = split_address(a) else {
                    return Err(format!("{}: `{a}` must be `host:port`", f("address")));
                };
                one_of(&f("transport"), &self.transport, &["tls", "tcp"]).map_err(|e| e.to_string())?;
                if self.transport == "tcp" && !is_loopback(host) {
                    return Err(format!("{}: plain tcp only to a loopback receiver; use tls", f("transport")));
                }
                if port == 0 {
                    return Err(format!("{}: port 0", f("address")));
                }
            }
            (None, true) => {}
        }
        if self.kind == "webhook" && self.secret_file.is_none() {
            return Err(format!("{}: a webhook sink needs the file of its HMAC key", f("secret_file")));
        }
        if self.kind != "webhook" && self.secret_file.is_some() {
            return Err(format!("{}: only webhook sinks sign their requests", f("secret_file")));
        }
        if let Some(n) = &self.server_name {
            if !printusascii(n, 253) {
                return Err(format!("{}: `{n}` is not a host name", f("server_name")));
            }
        }
        if let Some(h) = &self.hostname {
            if !printusascii(h, 255) {
                return Err(format!("{}: 1–255 printable ASCII characters without spaces", f("hostname")));
            }
        }
        let sd_ok = printusascii(&self.sd_id, 32)
            && self.sd_id.split_once('@').is_some_and(|(n, pen)| {
                !n.is_empty() && !pen.is_empty() && pen.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            });
        if !sd_ok {
            return Err(format!("{}: `{}` must be `name@<enterprise number>`", f("sd_id"), self.sd_id));
        }
        within(&f("batch_size"), self.batch_size, 1..=1000).map_err(|e| e.to_string())?;
        within(&f("max_batch_bytes"), self.max_batch_bytes, 4096..=16 << 20).map_err(|e| e.to_string())?;
        within(&f("timeout_secs"), self.timeout_secs, 1..=60).map_err(|e| e.to_string())?;
        within(&f("retry_base_ms"), self.retry_base_ms, 10..=60_000).map_err(|e| e.to_string())?;
        within(&f("retry_max_ms"), self.retry_max_ms, self.retry_base_ms..=3_600_000).map_err(|e| e.to_string())?;
        within(&f("max_attempts"), self.max_attempts, 1..=100).map_err(|e| e.to_string())?;
        within(&f("sweep_secs"), self.sweep_secs, 1..=3600).map_err(|e| e.to_string())?;
        within(&f("facility"), self.facility, 0..=23).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// `host:port` (`[v6]:port` too): the host and the port.
pub(crate) fn split_address(a: &str) -> Option<(&str, u16)> {
    let (host, port) = a.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
        && (!host.contains(':') || a.starts_with('['));
    Some((host, port.parse().ok()?)).filter(|_| ok)
}

/// Check every sink and that their names are unique.
pub fn validate(sinks: &[SinkSettings]) -> Result<(), String> {
    let mut names = BTreeSet::new();
    for s in sinks {
        let ok = !s.name.is_empty()
            && s.name.len() <= 32
            && s.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(format!("sinks.{}: a sink name is 1–32 of a-z, 0-9, -", s.name));
        }
        if !names.insert(s.name.as_str()) {
            return Err(format!("sinks.{}: two sinks have this name", s.name));
        }
        s.validate()?;
    }
    if sinks.len() > 16 {
        return Err("sinks: at most 16 sinks".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(extra: &str) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Doc {
            sinks: Vec<SinkSettings>,
        }
        let doc: Doc = toml::from_str(&format!("[[sinks]]\n{extra}")).map_err(|e| e.to_string())?;
        validate(&doc.sinks)
    }

    #[test]
    fn each_kind_needs_its_fields_and_refusals_name_them() {
        let hook = "name = \"siem\"\nkind = \"webhook\"\nurl = \"https://siem.example.com/in\"\nsecret_file = \"k\"\n";
        sink(hook).unwrap();
        sink("name = \"s\"\nkind = \"syslog\"\naddress = \"logs.example.com:6514\"\n").unwrap();
        sink("name = \"s\"\nkind = \"syslog\"\naddress = \"127.0.0.1:514\"\ntransport = \"tcp\"\n").unwrap();
        sink("name = \"o\"\nkind = \"otlp\"\nurl = \"http://[::1]:4318\"\nallow_http_loopback = true\n").unwrap();
        for (doc, field) in [
            ("name = \"Bad\"\nkind = \"otlp\"\nurl = \"https://x.example\"\n", "sinks.Bad"),
            ("name = \"a\"\nkind = \"kafka\"\n", "sinks.a.kind"),
            ("name = \"a\"\nkind = \"otlp\"\n", "sinks.a.url"),
            ("name = \"a\"\nkind = \"otlp\"\nurl = \"http://collector.example\"\n", "sinks.a.url"),
            ("name = \"a\"\nkind = \"otlp\"\nurl = \"http://127.0.0.1:4318\"\n", "sinks.a.url"),
            ("name = \"a\"\nkind = \"otlp\"\nurl = \"https://x.example/\"\n", "sinks.a.url"),
            ("name = \"a\"\nkind = \"webhook\"\nurl = \"https://x.example\"\n", "sinks.a.secret_file"),
            ("name = \"a\"\nkind = \"syslog\"\n", "sinks.a.address"),
            ("name = \"a\"\nkind = \"syslog\"\naddress = \"logs.example.com\"\n", "sinks.a.address"),
            ("name = \"a\"\nkind = \"syslog\"\naddress = \"10.0.0.9:514\"\ntransport = \"tcp\"\n", "sinks.a.transport"),
            ("name = \"a\"\nkind = \"syslog\"\naddress = \"h.example:1\"\ntransport = \"udp\"\n", "sinks.a.transport"),
            ("name = \"a\"\nkind = \"syslog\"\naddress = \"h.example:1\"\nsd_id = \"gatehouse\"\n", "sinks.a.sd_id"),
            ("name = \"a\"\nkind = \"syslog\"\naddress = \"h.example:1\"\nfacility = 24\n", "sinks.a.facility"),
            ("name = \"a\"\nkind = \"syslog\"\naddress = \"h.example:1\"\nhostname = \"a b\"\n", "sinks.a.hostname"),
            ("name = \"a\"\nkind = \"otlp\"\nurl = \"https://x.example\"\nbatch_size = 0\n", "sinks.a.batch_size"),
            ("name = \"a\"\nkind = \"otlp\"\nurl = \"https://x.example\"\nretry_max_ms = 5\n", "sinks.a.retry_max_ms"),
            ("name = \"a\"\nkind = \"otlp\"\nurl = \"https://x.example\"\nmax_attempts = 0\n", "sinks.a.max_attempts"),
            (
                "name = \"a\"\nkind = \"otlp\"\nurl = \"https://x.example\"\nsecret_file = \"k\"\n",
                "sinks.a.secret_file",
            ),
            ("name = \"a\"\nkind = \"otlp\"\nurl = \"https://x.example\"\nwhatever = 1\n", "unknown field"),
        ] {
            let e = sink(doc).unwrap_err();
            assert!(e.contains(field), "{doc}: {e}");
        }
        let twice = format!("{hook}[[sinks]]\n{hook}");
        assert!(sink(&twice).unwrap_err().contains("two sinks"));
    }

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(split_address("logs.example.com:6514"), Some(("logs.example.com", 6514)));
        assert_eq!(split_address("[::1]:514"), Some(("::1", 514)));
        assert_eq!(split_address("::1:514"), None, "a bare v6 address is ambiguous");
        assert_eq!(split_address("host:x"), None);
        assert_eq!(split_address("ho st:1"), None);
        assert_eq!(split_address(":1"), None);
    }
}
