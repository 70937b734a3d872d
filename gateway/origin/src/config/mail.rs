//! The `[mail]` section: which mailer delivers the origin's messages (file, SMTP or log),
//! the sender, and the lifetimes and limits of the links it mails (email verification,
//! invitations).
//!
//! Without a `[mail]` section the origin keeps its earlier behaviour: the file mailer when
//! `signin.mail_dir` is set (that key still works and means `mail.kind = "file"`,
//! `mail.dir = …`), the log mailer otherwise.

use std::path::PathBuf;

use gatehouse_settings::{one_of, within};
use serde::Deserialize;

/// Outgoing mail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    /// `file` (one `.eml` per message in `dir`), `smtp` (the `[mail.smtp]` relay) or `log`
    /// (only that a message was due; never its body). Unset: `file` when a directory is
    /// configured (`dir` or `signin.mail_dir`), else `log`.
    pub kind: Option<String>,
    /// The `From` of every message, e.g. `Acme Sign-in <no-reply@acme.example>`.
    pub from: String,
    /// Where the file mailer writes (relative to the configuration file).
    pub dir: Option<PathBuf>,
    /// Longest a request waits for one message to be handed over (SMTP dialogue or file
    /// write); past it the send counts as failed.
    pub timeout_secs: u64,
    /// Lifetime of an email-verification link.
    pub verify_ttl_secs: u64,
    /// Verification mails a user can be sent per hour (the first one included).
    pub verify_per_hour: u32,
    /// Lifetime of an invitation link (renewed when it is resent).
    pub invite_ttl_secs: u64,
    /// Shortest time between two mails of one invitation (a resend sooner is
    /// `rate_limited`): an invitee's mailbox is not flooded.
    pub invite_resend_secs: u64,
    /// Most rows a bulk invitation takes.
    pub bulk_max_rows: usize,
    /// The SMTP relay (`kind = "smtp"`).
    pub smtp: Option<SmtpSettings>,
}

impl Default for MailSettings {
    fn default() -> Self {
        MailSettings {
            kind: None,
            from: "Gatehouse <no-reply@localhost>".into(),
            dir: None,
            timeout_secs: 10,
            verify_ttl_secs: 24 * 3600,
            verify_per_hour: 3,
            invite_ttl_secs: 7 * 86_400,
            invite_resend_secs: 60,
            bulk_max_rows: 200,
            smtp: None,
        }
    }
}

/// An SMTP submission server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// Host name (also the name its certificate must carry).
    pub host: String,
    /// Port; unset: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (upgrade required, default), `tls` (implicit TLS, e.g. port 465) or
    /// `none` (plain text: only to a loopback host).
    #[serde(default = "default_tls")]
    pub tls: String,
    /// AUTH user name; set it together with `password_env` or `password_file`.
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the AUTH password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the AUTH password (relative to the configuration file).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Extra trusted root certificate(s), PEM, for a relay with a private CA (the Mozilla
    /// roots are trusted either way).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_tls() -> String {
    "starttls".into()
}

/// Which mailer runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailKind {
    /// Files in a directory.
    File(PathBuf),
    /// An SMTP relay.
    Smtp(SmtpSettings),
    /// The log (no delivery).
    Log,
}

impl MailSettings {
    /// The mailer in force, with `signin.mail_dir` (`legacy_dir`) as the file mailer's
    /// directory when `dir` is unset.
    pub fn effective(&self, legacy_dir: Option<&PathBuf>) -> Result<MailKind, String> {
        let dir = self.dir.as_ref().or(legacy_dir).cloned();
        let kind = self.kind.as_deref().unwrap_or(if dir.is_some() { "file" } else { "log" });
        match kind {
            "file" => dir.map(MailKind::File).ok_or_else(|| "mail.dir: the file mailer needs a directory".to_string()),
            "smtp" => self
                .smtp
                .clone()
                .map(MailKind::Smtp)
                .ok_or_else(|| "mail.smtp: kind = \"smtp\" needs a [mail.smtp] section".to_string()),
            "log" => Ok(MailKind::Log),
            other => Err(format!("mail.kind: `{other}` must be one of file, smtp, log")),
        }
    }

    /// Paths to resolve against the configuration file's folder.
    pub(crate) fn paths(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        let smtp = self.smtp.as_mut();
        let (pw, ca) = match smtp {
            Some(s) => (s.password_file.as_mut(), s.ca_file.as_mut()),
            None => (None, None),
        };
        [self.dir.as_mut(), pw, ca].into_iter().flatten()
    }

    /// Check the section; the error names the field.
    pub fn validate(&self, legacy_dir: Option<&PathBuf>) -> Result<(), String> {
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(format!("mail.from: `{}` is not a mailbox (`Name <address>` or `address`)", self.from));
        }
        within("mail.timeout_secs", self.timeout_secs, 1..=120)?;
        within("mail.verify_ttl_secs", self.verify_ttl_secs, 300..=30 * 86_400)?;
        within("mail.verify_per_hour", self.verify_per_hour, 1..=100)?;
        within("mail.invite_ttl_secs", self.invite_ttl_secs, 300..=90 * 86_400)?;
        within("mail.invite_resend_secs", self.invite_resend_secs, 0..=86_400)?;
        within("mail.bulk_max_rows", self.bulk_max_rows, 1..=1000)?;
        if let MailKind::Smtp(s) = self.effective(legacy_dir)? {
            let host_ok = !s.host.is_empty()
                && s.host.len() <= 253
                && s.host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
            if !host_ok {
                return Err(format!("mail.smtp.host: `{}` is not a host name or address", s.host));
            }
            one_of("mail.smtp.tls", &s.tls, &["starttls", "tls", "none"])?;
            if s.tls == "none" && !is_loopback(&s.host) {
                return Err(format!(
                    "mail.smtp.tls: \"none\" sends the password and the links in clear; allowed only to a loopback host, not `{}`",
                    s.host
                ));
            }
            if s.port == Some(0) {
                return Err("mail.smtp.port: must be 1-65535".into());
            }
            match (&s.username, &s.password_env, &s.password_file) {
                (None, None, None) => {}
                (Some(u), Some(_), None) | (Some(u), None, Some(_)) if !u.is_empty() && u.len() <= 256 => {}
                (Some(_), Some(_), Some(_)) => {
                    return Err("mail.smtp.password_env: set password_env or password_file, not both".into())
                }
                (Some(_), None, None) => {
                    return Err("mail.smtp.password_env: a username needs password_env or password_file".into())
                }
                (None, _, _) => return Err("mail.smtp.username: a password needs a username".into()),
                _ => return Err("mail.smtp.username: 1-256 bytes".into()),
            }
        }
        Ok(())
    }
}

impl SmtpSettings {
    /// The port in force.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls.as_str() {
            "tls" => 465,
            "none" => 25,
            _ => 587,
        })
    }
}

/// `127.0.0.1`, `::1`, `localhost` (and the rest of 127/8).
pub(crate) fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(tls: &str, host: &str) -> SmtpSettings {
        SmtpSettings {
            host: host.into(),
            port: None,
            tls: tls.into(),
            username: None,
            password_env: None,
            password_file: None,
            ca_file: None,
        }
    }

    #[test]
    fn the_legacy_mail_dir_still_selects_the_file_mailer() {
        let m = MailSettings::default();
        assert_eq!(m.effective(None).unwrap(), MailKind::Log);
        let legacy = PathBuf::from("/x/mail");
        assert_eq!(m.effective(Some(&legacy)).unwrap(), MailKind::File(legacy.clone()));
        let own = MailSettings { dir: Some("/y".into()), ..Default::default() };
        assert_eq!(own.effective(Some(&legacy)).unwrap(), MailKind::File("/y".into()), "mail.dir wins");
        let log = MailSettings { kind: Some("log".into()), ..Default::default() };
        assert_eq!(log.effective(Some(&legacy)).unwrap(), MailKind::Log);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: Vec<(MailSettings, &str)> = vec![
            (MailSettings { from: "not a mailbox".into(), ..Default::default() }, "mail.from"),
            (MailSettings { kind: Some("pigeon".into()), ..Default::default() }, "mail.kind"),
            (MailSettings { kind: Some("file".into()), ..Default::default() }, "mail.dir"),
            (MailSettings { kind: Some("smtp".into()), ..Default::default() }, "mail.smtp"),
            (MailSettings { timeout_secs: 0, ..Default::default() }, "mail.timeout_secs"),
            (MailSettings { invite_ttl_secs: 10, ..Default::default() }, "mail.invite_ttl_secs"),
            (
                MailSettings {
                    kind: Some("smtp".into()),
                    smtp: Some(smtp("none", "smtp.example.com")),
                    ..Default::default()
                },
                "mail.smtp.tls",
            ),
            (
                MailSettings {
                    kind: Some("smtp".into()),
                    smtp: Some(smtp("ssl", "smtp.example.com")),
                    ..Default::default()
                },
                "mail.smtp.tls",
            ),
            (
                MailSettings {
                    kind: Some("smtp".into()),
                    smtp: Some(SmtpSettings { username: Some("u".into()), ..smtp("starttls", "smtp.example.com") }),
                    ..Default::default()
                },
                "mail.smtp.password_env",
            ),
            (
                MailSettings {
                    kind: Some("smtp".into()),
                    smtp: Some(SmtpSettings { password_env: Some("P".into()), ..smtp("starttls", "smtp.example.com") }),
                    ..Default::default()
                },
                "mail.smtp.username",
            ),
        ];
        for (m, field) in cases {
            let e = m.validate(None).unwrap_err();
            assert!(e.starts_with(field), "{field}: {e}");
        }
        let ok =
            MailSettings { kind: Some("smtp".into()), smtp: Some(smtp("none", "127.0.0.1")), ..Default::default() };
        ok.validate(None).unwrap();
        assert_eq!(smtp("none", "::1").port(), 25);
        assert_eq!(smtp("tls", "x").port(), 465);
        assert_eq!(smtp("starttls", "x").port(), 587);
        assert!(is_loopback("[::1]") && is_loopback("localhost") && !is_loopback("mail.example.com"));
    }
}
