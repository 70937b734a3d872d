//! The `[telemetry.otlp]` section: where traces go, how, how many, and whose incoming
//! trace context is believed. Checked at load, naming the field.

use std::collections::BTreeMap;

use gatehouse_core::net::cidr::Cidr;
use gatehouse_settings::{at_most, one_of, within, FieldError};
use serde::Deserialize;

/// Traces over OTLP: the `[telemetry.otlp]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector: `http://host:4318` (HTTP; `/v1/traces` is added when the URL has no
    /// path) or `http://host:4317` (gRPC).
    pub endpoint: String,
    /// `http/protobuf` (the default) or `grpc`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Share of new traces recorded, 0.0 to 1.0 (default 1.0). A request that continues a
    /// trusted client's trace follows that trace's sampled flag instead.
    #[serde(default = "default_ratio")]
    pub sample_ratio: f64,
    /// Clients (CIDRs or addresses, by the TCP peer) whose W3C `traceparent` and
    /// `tracestate` are continued; from anyone else a request starts a new trace.
    #[serde(default)]
    pub trusted_clients: Vec<String>,
    /// The `service.name` resource attribute, instead of the server's own name
    /// (`gatehouse-gateway`, `gatehouse-authz`, `gatehouse-origin`).
    #[serde(default)]
    pub service_name: Option<String>,
    /// How long one export may take, in milliseconds (default 10000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Headers sent with every export (a vendor's API key, for example). Their values
    /// are never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The two OTLP transports.
pub const PROTOCOLS: &[&str] = &["http/protobuf", "grpc"];

fn default_protocol() -> String {
    "http/protobuf".to_string()
}

fn default_ratio() -> f64 {
    1.0
}

fn default_timeout() -> u64 {
    10_000
}

impl OtlpConfig {
    /// Field checks, naming the field (`telemetry.otlp.sample_ratio: must be between 0 and 1`).
    pub fn validate(&self) -> Result<(), String> {
        self.check().map_err(String::from)
    }

    fn check(&self) -> Result<(), FieldError> {
        one_of("telemetry.otlp.protocol", &self.protocol, PROTOCOLS)?;
        self.check_endpoint()?;
        if !self.sample_ratio.is_finite() {
            return Err(FieldError::new("telemetry.otlp.sample_ratio", "must be between 0 and 1"));
        }
        within("telemetry.otlp.sample_ratio", self.sample_ratio, 0.0..=1.0)
            .map_err(|_| FieldError::new("telemetry.otlp.sample_ratio", "must be between 0 and 1"))?;
        self.trusted()?;
        if let Some(name) = &self.service_name {
            if name.trim().is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
                return Err(FieldError::new("telemetry.otlp.service_name", "must be 1 to 255 characters of text"));
            }
        }
        within("telemetry.otlp.timeout_ms", self.timeout_ms, 1..=120_000)?;
        at_most("telemetry.otlp.headers", self.headers.len(), 32)?;
        for (name, value) in &self.headers {
            let token = !name.is_empty()
                && name.len() <= 128
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return Err(FieldError::new(format!("telemetry.otlp.headers.{name}"), "must be a header name"));
            }
            // The value may be a credential: it is described, never echoed.
            if value.len() > 4096 || !value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
                return Err(FieldError::new(
                    format!("telemetry.otlp.headers.{name}"),
                    "must be at most 4096 characters of visible ASCII",
                ));
            }
        }
        Ok(())
    }

    fn check_endpoint(&self) -> Result<(), FieldError> {
        let field = "telemetry.otlp.endpoint";
        let rest = if let Some(r) = self.endpoint.strip_prefix("http://") {
            r
        } else if let Some(r) = self.endpoint.strip_prefix("https://") {
            if self.protocol == "grpc" {
                return Err(FieldError::new(
                    field,
                    "gRPC over TLS is not built in: use http:// (a local collector) or protocol = \"http/protobuf\"",
                ));
            }
            r
        } else {
            return Err(FieldError::new(field, "must be an http:// or https:// URL"));
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let bad = host.is_empty()
            || host.contains('@')
            || self.endpoint.len() > 2048
            || self.endpoint.bytes().any(|b| b <= b' ' || b == 0x7f);
        if bad {
            return Err(FieldError::new(field, "must be an http:// or https:// URL with a host (no user info)"));
        }
        Ok(())
    }

    /// The trusted clients, parsed.
    pub fn trusted(&self) -> Result<Vec<Cidr>, FieldError> {
        at_most("telemetry.otlp.trusted_clients", self.trusted_clients.len(), 1024)?;
        self.trusted_clients
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.parse::<Cidr>().map_err(|_| {
                    FieldError::new(format!("telemetry.otlp.trusted_clients[{i}]"), "must be a CIDR or an IP address")
                })
            })
            .collect()
    }

    /// The URL the exporter posts to: for HTTP, `/v1/traces` under an endpoint given
    /// without a path.
    pub fn export_url(&self) -> String {
        let e = self.endpoint.trim_end_matches('/');
        let path_given = e.split_once("://").is_some_and(|(_, rest)| rest.contains('/'));
        if self.protocol == "grpc" || path_given {
            e.to_string()
        } else {
            format!("{e}/v1/traces")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> OtlpConfig {
        toml::from_str(&format!("endpoint = \"http://127.0.0.1:4318\"\n{extra}")).expect("parses")
    }

    fn refusal(extra: &str) -> String {
        parse(extra).validate().expect_err("refused")
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse("");
        c.validate().expect("valid");
        assert_eq!(c.protocol, "http/protobuf");
        assert_eq!(c.sample_ratio, 1.0);
        assert_eq!(c.timeout_ms, 10_000);
        assert_eq!(c.export_url(), "http://127.0.0.1:4318/v1/traces");
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(refusal("sample_ratio = 1.5"), "telemetry.otlp.sample_ratio: must be between 0 and 1");
        assert_eq!(refusal("sample_ratio = -0.1"), "telemetry.otlp.sample_ratio: must be between 0 and 1");
        assert_eq!(refusal("sample_ratio = nan"), "telemetry.otlp.sample_ratio: must be between 0 and 1");
        assert_eq!(refusal("protocol = \"http/json\""), "telemetry.otlp.protocol: must be `http/protobuf` or `grpc`");
        assert!(
            refusal("trusted_clients = [\"10.0.0.0/8\", \"nope\"]").starts_with("telemetry.otlp.trusted_clients[1]: ")
        );
        assert!(refusal("timeout_ms = 0").starts_with("telemetry.otlp.timeout_ms: "));
        assert!(refusal("service_name = \"  \"").starts_with("telemetry.otlp.service_name: "));
        assert!(refusal("headers = { \"bad name\" = \"x\" }").starts_with("telemetry.otlp.headers.bad name: "));
        let secret = refusal("headers = { \"x-api-key\" = \"s3cret\\n\" }");
        assert!(secret.starts_with("telemetry.otlp.headers.x-api-key: "), "{secret}");
        assert!(!secret.contains("s3cret"), "a header value is never echoed: {secret}");
        for bad in ["ftp://collector", "http://", "collector:4318", "http://user:pw@collector:4318"] {
            let c: OtlpConfig = toml::from_str(&format!("endpoint = \"{bad}\"")).expect("parses");
            assert!(c.validate().expect_err(bad).starts_with("telemetry.otlp.endpoint: "), "{bad}");
        }
        let c: OtlpConfig =
            toml::from_str("endpoint = \"https://collector:4317\"\nprotocol = \"grpc\"").expect("parses");
        assert!(c.validate().expect_err("tls").starts_with("telemetry.otlp.endpoint: gRPC over TLS"));
    }

    #[test]
    fn export_urls() {
        let grpc = parse("protocol = \"grpc\"");
        assert_eq!(grpc.export_url(), "http://127.0.0.1:4318");
        let c: OtlpConfig = toml::from_str("endpoint = \"https://otlp.example/api/v1/traces\"").expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.export_url(), "https://otlp.example/api/v1/traces");
        let c: OtlpConfig = toml::from_str("endpoint = \"http://collector:4318/\"").expect("parses");
        assert_eq!(c.export_url(), "http://collector:4318/v1/traces");
    }

    #[test]
    fn trusted_clients_parse() {
        let c = parse("trusted_clients = [\"10.0.0.0/8\", \"::1\", \"192.168.1.7\"]");
        c.validate().expect("valid");
        let t = c.trusted().expect("parsed");
        assert!(t[0].contains("10.1.2.3".parse().expect("ip")));
        assert!(t[1].contains("::1".parse().expect("ip")));
        assert!(!t[2].contains("192.168.1.8".parse().expect("ip")));
    }
}
