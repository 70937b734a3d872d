//! The SMTP mailer: `lettre`'s async tokio transport with rustls.
//!
//! `tls = "starttls"` requires the upgrade (a server that does not offer it fails the
//! send; nothing goes out in clear), `tls = "tls"` is implicit TLS (port 465), `tls =
//! "none"` is plain text and only accepted for a loopback host (config validation). The
//! certificate is checked against the Mozilla roots plus `ca_file`. The AUTH password is
//! read once at start from the variable `password_env` names or from `password_file`; it
//! is never logged.

use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::MailError;
use crate::config::mail::SmtpSettings;

/// A relay to submit to.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// The AUTH password `s` names (variable or file), if any.
fn password(s: &SmtpSettings) -> Result<Option<String>> {
    if let Some(var) = &s.password_env {
        let v = std::env::var(var)
            .map_err(|_| anyhow!("mail.smtp.password_env: the environment variable `{var}` is not set"))?;
        return Ok(Some(v));
    }
    if let Some(p) = &s.password_file {
        let v = std::fs::read_to_string(p)
            .with_context(|| format!("mail.smtp.password_file: cannot read {}", p.display()))?;
        let v = v.trim_end_matches(['\r', '\n']).to_string();
        if v.is_empty() {
            return Err(anyhow!("mail.smtp.password_file: {} is empty", p.display()));
        }
        return Ok(Some(v));
    }
    Ok(None)
}

impl Smtp {
    /// The transport `s` describes; `timeout` bounds each SMTP command.
    pub fn new(s: &SmtpSettings, timeout: Duration) -> Result<Smtp> {
        let tls_params = || -> Result<TlsParameters> {
            let host = s.host.trim_start_matches('[').trim_end_matches(']').to_string();
            let mut b = TlsParameters::builder(host);
            if let Some(ca) = &s.ca_file {
                let pem =
                    std::fs::read(ca).with_context(|| format!("mail.smtp.ca_file: cannot read {}", ca.display()))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| anyhow!("mail.smtp.ca_file: {} is not a PEM certificate: {e}", ca.display()))?;
                b = b.add_root_certificate(cert);
            }
            b.build().map_err(|e| anyhow!("mail.smtp: TLS setup: {e}"))
        };
        let tls = match s.tls.as_str() {
            "starttls" => Tls::Required(tls_params()?),
            "tls" => Tls::Wrapper(tls_params()?),
            _ => Tls::None,
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str())
            .port(s.port())
            .tls(tls)
            .timeout(Some(timeout));
        if let (Some(user), Some(pw)) = (&s.username, password(s)?) {
            b = b.credentials(Credentials::new(user.clone(), pw));
        }
        Ok(Smtp { transport: b.build() })
    }

    /// Submit one message.
    pub async fn send(&self, m: lettre::Message) -> Result<(), MailError> {
        self.transport.send(m).await.map(|_| ()).map_err(|e| MailError::Smtp(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".into(),
            port: Some(1),
            tls: "starttls".into(),
            username: Some("u".into()),
            password_env: Some("GATEHOUSE_TEST_SMTP_PASSWORD_UNSET_VARIABLE".into()),
            password_file: None,
            ca_file: None,
        }
    }

    #[test]
    fn a_missing_password_is_named_at_start() {
        let e = Smtp::new(&settings(), Duration::from_secs(1)).err().unwrap().to_string();
        assert!(e.starts_with("mail.smtp.password_env"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        let s = SmtpSettings { password_env: None, password_file: Some(p), ..settings() };
        assert_eq!(password(&s).unwrap().as_deref(), Some("s3cret"));
        let bad_ca = SmtpSettings { ca_file: Some(dir.path().join("missing.pem")), password_env: None, ..settings() };
        let e = Smtp::new(&bad_ca, Duration::from_secs(1)).err().unwrap().to_string();
        assert!(e.starts_with("mail.smtp.ca_file"), "{e}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_send_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let s = SmtpSettings { tls: "none".into(), port: Some(port), username: None, password_env: None, ..settings() };
        let smtp = Smtp::new(&s, Duration::from_secs(2)).unwrap();
        let m = lettre::Message::builder()
            .to("a@example.com".parse().unwrap())
            .from("b@example.com".parse().unwrap())
            .subject("x")
            .body(String::from("y"))
            .unwrap();
        assert!(matches!(smtp.send(m).await, Err(MailError::Smtp(_))));
    }
}
