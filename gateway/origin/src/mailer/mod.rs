//! Outgoing mail: password resets, email verification and invitations.
//!
//! A [`Message`] has a plain-text and an HTML body and goes out as `multipart/alternative`.
//! Three transports ([`crate::config::mail::MailKind`]):
//! - the file mailer writes one RFC 5322 `.eml` file per message (development, the demo's
//!   default, or a local MTA's pickup directory);
//! - the SMTP mailer submits to a relay with `lettre` (STARTTLS, implicit TLS, or plain
//!   text to a loopback host only; AUTH with a password read from the environment or a
//!   file) — see [`smtp`];
//! - the log mailer notes that a message was due, never its body (it holds a secret).
//!
//! Every send is bounded by `mail.timeout_secs`, so a slow relay cannot hold a request
//! longer. A failure is logged with the message's purpose and the recipient's domain only
//! (no body, no address) and returned to the caller, whose route documents what it does
//! with it. The bodies come from the tenant's templates ([`templates`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Result};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};

use crate::config::mail::MailKind;
use crate::config::OriginConfig;

pub mod smtp;
pub mod templates;

/// One message to one recipient.
#[derive(Debug, Clone)]
pub struct Message {
    /// What it is for (`verify_email`, `invitation`, `password_reset`), for the log.
    pub purpose: &'static str,
    /// The recipient's address.
    pub to: String,
    /// Subject (one line).
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body (its values already escaped).
    pub html: String,
}

/// Why a message was not handed over.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The recipient or sender is not a mailbox.
    #[error("address: {0}")]
    Address(String),
    /// The message could not be assembled.
    #[error("message: {0}")]
    Build(String),
    /// The transport did not finish within `mail.timeout_secs`.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The relay refused or the connection failed.
    #[error("smtp: {0}")]
    Smtp(String),
    /// The file could not be written.
    #[error("file: {0}")]
    File(String),
}

enum Transport {
    File(PathBuf),
    Smtp(smtp::Smtp),
    Log,
}

/// The configured mailer.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    timeout: Duration,
}

/// The domain of an address (what the log shows of a recipient).
fn domain_of(to: &str) -> &str {
    to.rsplit_once('@').map(|(_, d)| d).unwrap_or("?")
}

impl Mailer {
    /// The mailer `cfg.mail` (or the legacy `signin.mail_dir`) selects; reads the SMTP
    /// password and extra roots.
    pub fn from_config(cfg: &OriginConfig) -> Result<Mailer> {
        let m = &cfg.mail;
        let from: Mailbox = m.from.parse().map_err(|e| anyhow!("mail.from: {e}"))?;
        let transport = match m.effective(cfg.signin.mail_dir.as_ref()).map_err(|e| anyhow!(e))? {
            MailKind::File(dir) => Transport::File(dir),
            MailKind::Smtp(s) => Transport::Smtp(smtp::Smtp::new(&s, Duration::from_secs(m.timeout_secs))?),
            MailKind::Log => Transport::Log,
        };
        Ok(Mailer { transport, from, timeout: Duration::from_secs(m.timeout_secs) })
    }

    /// A file mailer writing into `dir` (tests and tools).
    pub fn file(dir: &Path, from: &str) -> Result<Mailer> {
        let from = from.parse().map_err(|e| anyhow!("from: {e}"))?;
        Ok(Mailer { transport: Transport::File(dir.to_path_buf()), from, timeout: Duration::from_secs(10) })
    }

    /// `file`, `smtp` or `log`.
    pub fn kind(&self) -> &'static str {
        match self.transport {
            Transport::File(_) => "file",
            Transport::Smtp(_) => "smtp",
            Transport::Log => "log",
        }
    }

    /// The RFC 5322 message: `To`, `From`, `Subject`, then `multipart/alternative` (text,
    /// then HTML). `eight_bit`: bodies kept readable as 8bit (files) instead of the
    /// encoding SMTP without 8BITMIME needs.
    pub fn build(&self, m: &Message, eight_bit: bool) -> Result<lettre::Message, MailError> {
        let to: Mailbox = m.to.parse().map_err(|e| MailError::Address(format!("to: {e}")))?;
        // One line: a tenant's template cannot add headers.
        let subject: String = m.subject.chars().filter(|c| !c.is_control()).collect();
        let body = |s: &str| match eight_bit.then(|| eight_bit_lines(s)).flatten() {
            Some(crlf) => Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::EightBit),
            None => Body::new(s.to_string()),
        };
        let part = |ct: ContentType, s: &str| SinglePart::builder().header(ct).body(body(s));
        lettre::Message::builder()
            .to(to)
            .from(self.from.clone())
            .subject(subject)
            .multipart(
                MultiPart::alternative()
                    .singlepart(part(ContentType::TEXT_PLAIN, &m.text))
                    .singlepart(part(ContentType::TEXT_HTML, &m.html)),
            )
            .map_err(|e| MailError::Build(e.to_string()))
    }

    /// Hand `m` over, within `mail.timeout_secs`. A failure is logged (purpose and the
    /// recipient's domain, never the body) and returned.
    pub async fn send(&self, m: &Message) -> Result<(), MailError> {
        let r = match tokio::time::timeout(self.timeout, self.deliver(m)).await {
            Ok(r) => r,
            Err(_) => Err(MailError::Timeout(self.timeout)),
        };
        match &r {
            Ok(()) => {
                tracing::info!(purpose = m.purpose, to_domain = domain_of(&m.to), mailer = self.kind(), "mail sent")
            }
            Err(e) => tracing::error!(
                purpose = m.purpose,
                to_domain = domain_of(&m.to),
                mailer = self.kind(),
                error = %e,
                "mail not sent"
            ),
        }
        r
    }

    async fn deliver(&self, m: &Message) -> Result<(), MailError> {
        match &self.transport {
            Transport::Log => {
                tracing::warn!(
                    purpose = m.purpose,
                    to_domain = domain_of(&m.to),
                    "mail not delivered: the log mailer is configured (set [mail] kind = \"file\" or \"smtp\"); the body holds a secret and is not logged"
                );
                Ok(())
            }
            Transport::File(dir) => {
                let bytes = self.build(m, true)?.formatted();
                write_file(dir, &bytes).await
            }
            Transport::Smtp(s) => s.send(self.build(m, false)?).await,
        }
    }
}

/// `s` with CRLF line ends if it can travel as 8bit (RFC 2045: lines of at most 998
/// bytes, no NUL, no bare CR).
fn eight_bit_lines(s: &str) -> Option<String> {
    let ok = !s.contains('\0') && s.split('\n').all(|l| l.len() <= 998 && !l.trim_end_matches('\r').contains('\r'));
    ok.then(|| s.split('\n').map(|l| l.trim_end_matches('\r')).collect::<Vec<_>>().join("\r\n"))
}

/// Write one message into `dir`: a temporary name first, then renamed, so a pickup
/// process never reads half a message.
async fn write_file(dir: &Path, bytes: &[u8]) -> Result<(), MailError> {
    let err = |what: &str, p: &Path, e: std::io::Error| MailError::File(format!("{what} {}: {e}", p.display()));
    tokio::fs::create_dir_all(dir).await.map_err(|e| err("create", dir, e))?;
    let name = format!("{}-{}", crate::now(), crate::identity::new_id("m_"));
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(format!("{name}.eml"));
    tokio::fs::write(&tmp, bytes).await.map_err(|e| err("write", &tmp, e))?;
    tokio::fs::rename(&tmp, &path).await.map_err(|e| err("rename", &path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            purpose: "verify_email",
            to: "ada@example.com".into(),
            subject: "Verify\r\nBcc: evil@example.com".into(),
            text: "Hello Ada, ünïcode\nhttps://example.com/t/acme/email/verify?token=ghv_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH\n".into(),
            html: "<p>Hello &lt;Ada&gt;</p>".into(),
        }
    }

    #[tokio::test]
    async fn the_file_mailer_writes_one_readable_multipart_message() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mailer::file(dir.path(), "Acme <no-reply@acme.example>").unwrap();
        m.send(&message()).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "no temporary file left: {files:?}");
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.starts_with("To: ada@example.com\r\n"), "{text}");
        assert!(text.contains("From: Acme <no-reply@acme.example>\r\n"), "{text}");
        assert!(text.contains("Content-Type: multipart/alternative;"), "{text}");
        assert!(text.contains("Content-Type: text/plain; charset=utf-8"), "{text}");
        assert!(text.contains("Content-Type: text/html; charset=utf-8"), "{text}");
        // Readable: the link stays whole, non-ASCII stays as is.
        assert!(text.contains("token=ghv_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH\r\n"), "{text}");
        assert!(text.contains("ünïcode"), "{text}");
        // The subject cannot smuggle a header.
        assert!(!text.contains("\r\nBcc:"), "{text}");
    }

    #[tokio::test]
    async fn a_bad_recipient_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mailer::file(dir.path(), "no-reply@acme.example").unwrap();
        let bad = Message { to: "not an address".into(), ..message() };
        assert!(matches!(m.send(&bad).await, Err(MailError::Address(_))));
        assert_eq!(std::fs::read_dir(dir.path()).map(|d| d.count()).unwrap_or(0), 0);
    }

    #[test]
    fn smtp_bodies_are_encoded_for_seven_bit_transport() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mailer::file(dir.path(), "no-reply@acme.example").unwrap();
        let raw = String::from_utf8(m.build(&message(), false).unwrap().formatted()).unwrap();
        assert!(raw.is_ascii(), "{raw}");
        assert_eq!(domain_of("ada@example.com"), "example.com");
    }
}
