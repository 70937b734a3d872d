//! Mail templates: built-in defaults and each tenant's own (subject, text and HTML), with
//! strict `{{placeholder}}` substitution.
//!
//! No template engine: a tenant's template is data an admin types, so it gets no logic,
//! loops, includes or filters — only the placeholders its kind defines, each checked when
//! the template is saved (an unknown or unterminated one is refused with its name). Values
//! are inserted as they are into the text body, HTML-escaped into the HTML body, and with
//! control characters removed into the subject (one header line).

use serde::{Deserialize, Serialize};

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The link that verifies a user's email address.
    VerifyEmail,
    /// An invitation to join the organisation.
    Invitation,
    /// A password-reset token.
    PasswordReset,
}

/// Every kind, for listings.
pub const KINDS: [Kind; 3] = [Kind::VerifyEmail, Kind::Invitation, Kind::PasswordReset];

/// Largest subject, text body and HTML body accepted (bytes).
pub const MAX_SUBJECT: usize = 200;
/// Largest text body accepted (bytes).
pub const MAX_TEXT: usize = 16 * 1024;
/// Largest HTML body accepted (bytes).
pub const MAX_HTML: usize = 32 * 1024;

impl Kind {
    /// Its name in paths and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VerifyEmail => "verify_email",
            Kind::Invitation => "invitation",
            Kind::PasswordReset => "password_reset",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Kind> {
        KINDS.into_iter().find(|k| k.as_str() == s)
    }

    /// The placeholders a template of this kind may use.
    pub fn placeholders(self) -> &'static [&'static str] {
        match self {
            Kind::VerifyEmail => &["org", "email", "link", "expires"],
            Kind::Invitation => &["org", "email", "link", "expires", "inviter", "role"],
            Kind::PasswordReset => &["org", "email", "link", "expires", "token"],
        }
    }

    /// The placeholder both bodies must contain (the mail is useless without it).
    fn essential(self) -> &'static str {
        match self {
            Kind::VerifyEmail | Kind::Invitation => "link",
            Kind::PasswordReset => "token",
        }
    }

    /// The built-in template.
    pub fn default_template(self) -> Template {
        let (subject, text, html) = match self {
            Kind::VerifyEmail => (
                "Verify your email address for {{org}}",
                "Hello,\n\nPlease confirm that {{email}} is your address at {{org}}:\n\n{{link}}\n\nThe link works once, until {{expires}}. If you did not expect this message, ignore it.\n",
                "<!doctype html><html><body><p>Hello,</p><p>Please confirm that <b>{{email}}</b> is your address at {{org}}.</p><p><a href=\"{{link}}\">Verify my email address</a></p><p>The link works once, until {{expires}}. If you did not expect this message, ignore it.</p></body></html>\n",
            ),
            Kind::Invitation => (
                "{{inviter}} invited you to {{org}}",
                "Hello,\n\n{{inviter}} invited {{email}} to join {{org}} as {{role}}.\n\nAccept the invitation:\n\n{{link}}\n\nThe link works once, until {{expires}}.\n",
                "<!doctype html><html><body><p>Hello,</p><p>{{inviter}} invited <b>{{email}}</b> to join <b>{{org}}</b> as {{role}}.</p><p><a href=\"{{link}}\">Accept the invitation</a></p><p>The link works once, until {{expires}}.</p></body></html>\n",
            ),
            Kind::PasswordReset => (
                "Reset your password",
                "Someone asked to reset the password of {{email}} at {{org}}.\n\nReset token (single use, valid until {{expires}}):\n{{token}}\n\nPOST it to {{link}} with your new password. If you did not ask, ignore this message.\n",
                "<!doctype html><html><body><p>Someone asked to reset the password of <b>{{email}}</b> at {{org}}.</p><p>Reset token (single use, valid until {{expires}}):</p><pre>{{token}}</pre><p>POST it to {{link}} with your new password. If you did not ask, ignore this message.</p></body></html>\n",
            ),
        };
        Template { subject: subject.into(), text: text.into(), html: html.into() }
    }
}

/// A template: subject, plain-text body and HTML body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

/// A rendered message's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Subject.
    pub subject: String,
    /// Plain text.
    pub text: String,
    /// HTML.
    pub html: String,
}

/// The pieces of a template: literal text and placeholder names.
enum Piece<'a> {
    Lit(&'a str),
    Var(&'a str),
}

/// Split `s` into pieces; an unterminated `{{` or an empty name is an error.
fn parse(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        out.push(Piece::Lit(&rest[..i]));
        let after = &rest[i + 2..];
        let end = after.find("}}").ok_or_else(|| "a `{{` without its `}}`".to_string())?;
        let name = after[..end].trim();
        if name.is_empty() || name.contains("{{") {
            return Err("an empty or nested placeholder".into());
        }
        out.push(Piece::Var(name));
        rest = &after[end + 2..];
    }
    out.push(Piece::Lit(rest));
    Ok(out)
}

/// HTML-escape a value for element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl Template {
    /// Check the template for `kind`; the error names the field and the problem.
    pub fn validate(&self, kind: Kind) -> Result<(), String> {
        if self.subject.trim().is_empty() || self.subject.len() > MAX_SUBJECT {
            return Err(format!("subject: 1-{MAX_SUBJECT} bytes"));
        }
        if self.subject.chars().any(char::is_control) {
            return Err("subject: one line, no control characters".into());
        }
        if self.text.trim().is_empty() || self.text.len() > MAX_TEXT {
            return Err(format!("text: 1-{MAX_TEXT} bytes"));
        }
        if self.html.trim().is_empty() || self.html.len() > MAX_HTML {
            return Err(format!("html: 1-{MAX_HTML} bytes"));
        }
        for (field, s) in [("subject", &self.subject), ("text", &self.text), ("html", &self.html)] {
            let pieces = parse(s).map_err(|e| format!("{field}: {e}"))?;
            let mut has_essential = false;
            for p in &pieces {
                if let Piece::Var(name) = p {
                    if !kind.placeholders().contains(name) {
                        return Err(format!(
                            "{field}: unknown placeholder `{{{{{name}}}}}` (a {} template may use {})",
                            kind.as_str(),
                            kind.placeholders().join(", ")
                        ));
                    }
                    has_essential |= *name == kind.essential();
                }
            }
            if field != "subject" && !has_essential {
                return Err(format!("{field}: must contain `{{{{{}}}}}`", kind.essential()));
            }
        }
        Ok(())
    }

    /// Fill in `values` (`(name, value)`; a placeholder without a value becomes empty).
    pub fn render(&self, values: &[(&str, &str)]) -> Rendered {
        let fill = |s: &str, enc: &dyn Fn(&str) -> String| -> String {
            // A stored template was validated; a broken one renders its text as it is.
            let Ok(pieces) = parse(s) else { return s.to_string() };
            let mut out = String::with_capacity(s.len() + 64);
            for p in pieces {
                match p {
                    Piece::Lit(l) => out.push_str(l),
                    Piece::Var(n) => {
                        out.push_str(&enc(values.iter().find(|(k, _)| *k == n).map(|(_, v)| *v).unwrap_or("")))
                    }
                }
            }
            out
        };
        let one_line = |v: &str| v.chars().filter(|c| !c.is_control()).collect::<String>();
        Rendered {
            subject: one_line(&fill(&self.subject, &one_line)),
            text: fill(&self.text, &|v| v.to_string()),
            html: fill(&self.html, &escape_html),
        }
    }
}

/// Unix seconds as `2026-12-03 11:55 UTC`.
pub fn human_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_render_every_value() {
        for k in KINDS {
            let t = k.default_template();
            t.validate(k).unwrap_or_else(|e| panic!("{}: {e}", k.as_str()));
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            let vals: Vec<(&str, &str)> = k.placeholders().iter().map(|p| (*p, "VALUE")).collect();
            let r = t.render(&vals);
            assert!(!r.text.contains("{{") && !r.html.contains("{{") && !r.subject.contains("{{"), "{r:?}");
            assert!(r.text.contains("VALUE") && r.html.contains("VALUE"));
        }
        assert_eq!(Kind::parse("welcome"), None);
    }

    #[test]
    fn values_are_escaped_in_html_and_kept_on_one_line_in_the_subject() {
        let t = Kind::Invitation.default_template();
        let r = t.render(&[
            ("inviter", "<script>alert(1)</script>\r\nBcc: x@evil.example"),
            ("org", "Acme & \"Sons\""),
            ("link", "https://o.example/t/acme/invite?token=a\"onmouseover=\"x"),
        ]);
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(r.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", r.html);
        assert!(r.html.contains("Acme &amp; &quot;Sons&quot;"), "{}", r.html);
        assert!(r.html.contains("token=a&quot;onmouseover=&quot;x\""), "the link cannot leave its attribute");
        assert!(r.text.contains("<script>alert(1)</script>"), "the text body is text");
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'), "{}", r.subject);
        assert!(r.subject.starts_with("<script>alert(1)</script>Bcc: x@evil.example invited you to Acme"));
    }

    #[test]
    fn a_template_is_refused_with_the_field_and_the_problem() {
        let ok = Kind::VerifyEmail.default_template();
        let cases = [
            (Template { subject: String::new(), ..ok.clone() }, "subject: 1-"),
            (Template { subject: "a\nb".into(), ..ok.clone() }, "subject: one line"),
            (Template { subject: "x".repeat(MAX_SUBJECT + 1), ..ok.clone() }, "subject: 1-"),
            (Template { text: "x".repeat(MAX_TEXT + 1), ..ok.clone() }, "text: 1-"),
            (Template { html: "{{link}} {{inviter}}".into(), ..ok.clone() }, "html: unknown placeholder `{{inviter}}`"),
            (Template { text: "{{link".into(), ..ok.clone() }, "text: a `{{` without"),
            (Template { text: "no link here".into(), ..ok.clone() }, "text: must contain `{{link}}`"),
            (Template { subject: "{{ }}".into(), ..ok.clone() }, "subject: an empty"),
        ];
        for (t, want) in cases {
            let e = t.validate(Kind::VerifyEmail).unwrap_err();
            assert!(e.starts_with(want), "{want}: {e}");
        }
        let reset = Template { text: "{{ token }}".into(), html: "<p>{{token}}</p>".into(), ..ok };
        reset.validate(Kind::PasswordReset).unwrap();
        assert_eq!(reset.render(&[("token", "T")]).text, "T", "spaces inside the braces are allowed");
        assert_eq!(human_time(0), "1970-01-01 00:00 UTC");
    }
}
