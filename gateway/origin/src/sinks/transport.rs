//! How sinks reach their receivers: one rustls client configuration (ring, the Mozilla
//! roots plus the sink's `ca_file`) for syslog over TLS and for HTTPS, and an HTTP client
//! on the origin's hyper stack (hyper-util, hyper-rustls) with a timeout per request.
//!
//! Unlike the SSO client ([`crate::sso::http`]), whose URLs tenant admins choose, a
//! sink's destination is the operator's configuration, so private addresses (a SIEM in
//! the same network) are allowed; the scheme rule is the same (`https://`, `http://` on
//! loopback only when allowed).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

use crate::config::sinks::SinkSettings;

/// The TLS client configuration of sink `s`.
pub fn tls_config(s: &SinkSettings) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(ca) = &s.ca_file {
        let field = format!("sinks.{}.ca_file", s.name);
        let pem = std::fs::read(ca).with_context(|| format!("{field}: cannot read {}", ca.display()))?;
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| anyhow!("{field}: {} is not PEM: {e}", ca.display()))?;
            roots.add(cert).map_err(|e| anyhow!("{field}: {}: {e}", ca.display()))?;
            n += 1;
        }
        if n == 0 {
            return Err(anyhow!("{field}: {} holds no certificate", ca.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An HTTP(S) client for one sink.
#[derive(Clone)]
pub struct SinkHttp {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<bytes::Bytes>>,
    timeout: Duration,
}

impl SinkHttp {
    /// A client trusting what [`tls_config`] trusts, `timeout` per request.
    pub fn new(s: &SinkSettings) -> Result<SinkHttp> {
        let timeout = Duration::from_secs(s.timeout_secs);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        // HTTP/1.1 over TLS for `https://`, plain for (loopback) `http://`.
        let https = hyper_rustls::HttpsConnector::from((http, tls_config(s)?));
        let mut builder = Client::builder(hyper_util::rt::TokioExecutor::new());
        Ok(SinkHttp { client: builder.pool_idle_timeout(timeout * 3).build(https), timeout })
    }

    /// POST `body` (JSON) to `url` with `headers`; `Ok` when the receiver answered 2xx
    /// (its body is not read), else a short reason.
    pub async fn post_json(&self, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Result<(), String> {
        let mut b = http::Request::post(url)
            .header("content-type", "application/json")
            .header("user-agent", "gatehouse-origin");
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        let req = b.body(Full::new(bytes::Bytes::from(body))).map_err(|e| e.to_string())?;
        let call = async {
            let status = self.client.request(req).await.map_err(|e| crate::sso::http::chain(&e))?.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the receiver answered {}", status.as_u16()))
            }
        };
        tokio::time::timeout(self.timeout, call).await.map_err(|_| format!("timed out after {:?}", self.timeout))?
    }
}
