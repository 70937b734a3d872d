//! Outgoing mail (password resets). Pluggable: [`Mailer`] is a trait; the origin ships a
//! file mailer (one `.eml` file per message in `signin.mail_dir`, for development and for
//! a local MTA pickup directory) and a log mailer (the default), which never writes the
//! message body — it holds a secret — only that a message was due.

use std::path::PathBuf;

use anyhow::{Context as _, Result};

/// Sends one message.
pub trait Mailer: Send + Sync {
    /// Deliver `body` to `to` with `subject`.
    fn send(&self, to: &str, subject: &str, body: &str) -> Result<()>;
}

/// Writes each message as a file.
pub struct FileMailer {
    /// Where.
    pub dir: PathBuf,
}

impl Mailer for FileMailer {
    fn send(&self, to: &str, subject: &str, body: &str) -> Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("create {}", self.dir.display()))?;
        let name = format!("{}-{}.eml", crate::now(), crate::identity::new_id("m_"));
        let text =
            format!("To: {to}\r\nSubject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n");
        let path = self.dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        tracing::info!(file = %path.display(), "mail written");
        Ok(())
    }
}

/// Notes in the log that a message was due, without its body.
pub struct LogMailer;

impl Mailer for LogMailer {
    fn send(&self, to: &str, subject: &str, _body: &str) -> Result<()> {
        tracing::warn!(
            to = %to,
            subject = %subject,
            "mail not delivered: no mailer configured (set signin.mail_dir); the body holds a secret and is not logged"
        );
        Ok(())
    }
}
