//! The checks a posted SAML response passes before any XML-DSig code (samael, libxmlsec1,
//! libxslt) sees a byte of it. Pure and small, so it is fuzzed on its own
//! (`fuzz/fuzz_targets/saml_guard.rs`).
//!
//! [`decode_response`] runs them all, in order:
//! 1. size and encoding: base64 of UTF-8, at most [`MAX_RESPONSE_B64`] bytes;
//! 2. [`refuse_dangerous_xml`]: no DTD or entity declaration, no comment, no encoding other
//!    than UTF-8, no stylesheet processing instruction;
//! 3. [`refuse_wrapping`]: a `Response` root, exactly one `Response` and one `Assertion`,
//!    no encrypted assertion;
//! 4. [`refuse_signature_constructs`] ([`signature`]): every `ds:Signature` uses only the
//!    accepted algorithms and transforms, has one same-document reference to the element
//!    that holds it, and a `KeyInfo` of certificate data only; no XInclude anywhere.
//!
//! Each refusal carries a stable reason code ([`Refused::reason`]).

pub mod signature;

use base64::Engine as _;

pub use signature::refuse_signature_constructs;

/// Largest SAMLResponse accepted (base64).
pub const MAX_RESPONSE_B64: usize = 256 * 1024;

/// A response refused before verification: a reason code for the client and the audit
/// log, and a detail for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Refused {
    /// Stable reason code (`sso_saml_*`).
    pub reason: &'static str,
    /// What was found.
    pub detail: String,
}

/// Longest detail kept (details quote the document, which the sender chose).
const MAX_DETAIL: usize = 200;

pub(crate) fn refused(reason: &'static str, detail: impl Into<String>) -> Refused {
    let mut detail = detail.into();
    if detail.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        detail.truncate(end);
        detail.push('…');
    }
    Refused { reason, detail }
}

/// Decode a posted SAMLResponse and run every check that comes before XML-DSig.
pub fn decode_response(b64: &str) -> Result<String, Refused> {
    if b64.len() > MAX_RESPONSE_B64 {
        return Err(refused("sso_saml_too_large", format!("SAMLResponse over {MAX_RESPONSE_B64} bytes")));
    }
    let compact: String = b64.split_whitespace().collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| refused("sso_saml_malformed", "SAMLResponse is not base64"))?;
    let xml = String::from_utf8(bytes).map_err(|_| refused("sso_saml_malformed", "SAMLResponse is not UTF-8"))?;
    precheck(&xml)?;
    Ok(xml)
}

/// The checks of [`decode_response`] on an already decoded document.
pub fn precheck(xml: &str) -> Result<(), Refused> {
    refuse_dangerous_xml(xml)?;
    refuse_wrapping(xml)?;
    refuse_signature_constructs(xml)
}

/// Refuse what no legitimate response carries: a DTD or entity declaration (entity
/// expansion, external entities) and comments (NameID truncation).
pub fn refuse_dangerous_xml(xml: &str) -> Result<(), Refused> {
    let upper = xml.to_ascii_uppercase();
    if upper.contains("<!DOCTYPE") || upper.contains("<!ENTITY") {
        return Err(refused("sso_saml_dtd_refused", "DTD or entity declaration"));
    }
    if xml.contains("<!--") {
        return Err(refused("sso_saml_comment_refused", "XML comment in the response"));
    }
    // Only UTF-8: libxml2 honours an encoding declaration (UTF-7 would hide `<!DOCTYPE`
    // from these checks), so any other one is refused.
    if let Some(decl) = xml.trim_start_matches('\u{feff}').trim_start().strip_prefix("<?xml") {
        let decl = decl.split("?>").next().unwrap_or_default().to_ascii_lowercase();
        if let Some(enc) = decl.split("encoding").nth(1) {
            let value: String = enc.chars().filter(|c| !matches!(c, '=' | '"' | '\'' | ' ')).take(6).collect();
            if !value.starts_with("utf-8") && !value.starts_with("utf8") {
                return Err(refused("sso_saml_malformed", "only UTF-8 responses are accepted"));
            }
        }
    }
    if xml.contains("<?xml-stylesheet") {
        return Err(refused("sso_saml_malformed", "processing instruction"));
    }
    Ok(())
}

/// The shape every response must have: a `Response` root, exactly one `Response` and
/// exactly one `Assertion` element in the whole document (no encrypted ones). Signature
/// wrapping always adds a second copy of the signed element somewhere; this refuses it
/// outright, before samael keeps only the signed content anyway.
pub fn refuse_wrapping(xml: &str) -> Result<(), Refused> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut responses, mut assertions, mut root) = (0usize, 0usize, None::<Vec<u8>>);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let name = e.local_name().as_ref().to_vec();
                if root.is_none() {
                    root = Some(name.clone());
                }
                match name.as_slice() {
                    b"Response" => responses += 1,
                    b"Assertion" => assertions += 1,
                    b"EncryptedAssertion" => {
                        return Err(refused("sso_saml_malformed", "encrypted assertions are not accepted"))
                    }
                    _ => {}
                }
            }
            Ok(Event::Eof) => break,
            Err(e) => return Err(refused("sso_saml_malformed", e.to_string())),
            _ => {}
        }
    }
    if root.as_deref() != Some(b"Response".as_slice()) {
        return Err(refused("sso_saml_malformed", "the root element is not a Response"));
    }
    if responses != 1 || assertions != 1 {
        return Err(refused(
            "sso_saml_wrapping_refused",
            format!("{responses} Response and {assertions} Assertion elements (exactly one of each allowed)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_xml_is_refused_before_parsing() {
        for (xml, want) in [
            (r#"<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#, "sso_saml_dtd_refused"),
            (r#"<!doctype r><r/>"#, "sso_saml_dtd_refused"),
            (r#"<r><NameID>admin@example.com<!---->.evil.test</NameID></r>"#, "sso_saml_comment_refused"),
            (r#"<?xml version="1.0" encoding="UTF-7"?><r>+ADw-!DOCTYPE</r>"#, "sso_saml_malformed"),
            (r#"<?xml-stylesheet href="x.xsl"?><r/>"#, "sso_saml_malformed"),
        ] {
            assert_eq!(refuse_dangerous_xml(xml).unwrap_err().reason, want, "{xml}");
        }
        assert!(refuse_dangerous_xml(r#"<?xml version="1.0" encoding="utf-8"?><r/>"#).is_ok());
        let b64 = base64::engine::general_purpose::STANDARD.encode(r#"<!DOCTYPE r><r/>"#);
        assert_eq!(decode_response(&b64).unwrap_err().reason, "sso_saml_dtd_refused");
        assert_eq!(decode_response("%%%").unwrap_err().reason, "sso_saml_malformed");
        let utf16 = base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe, b'<', 0]);
        assert_eq!(decode_response(&utf16).unwrap_err().reason, "sso_saml_malformed");
    }

    #[test]
    fn details_are_bounded() {
        let long = format!("é{}", "x".repeat(10_000));
        let r = refused("sso_saml_malformed", long);
        assert!(r.detail.len() <= MAX_DETAIL + '…'.len_utf8(), "{}", r.detail.len());
        assert!(r.detail.ends_with('…'));
    }

    #[test]
    fn a_response_over_the_limit_is_too_large() {
        let at = "A".repeat(MAX_RESPONSE_B64);
        assert_ne!(decode_response(&at).unwrap_err().reason, "sso_saml_too_large");
        let over = "A".repeat(MAX_RESPONSE_B64 + 1);
        assert_eq!(decode_response(&over).unwrap_err().reason, "sso_saml_too_large");
    }

    #[test]
    fn one_response_one_assertion() {
        for (xml, want) in [
            (
                r#"<p:Response xmlns:p="p" xmlns:a="a"><a:Assertion ID="x"/><a:Assertion ID="y"/></p:Response>"#,
                "sso_saml_wrapping_refused",
            ),
            (
                r#"<p:Response xmlns:p="p" xmlns:a="a"><p:Extensions><a:Assertion/></p:Extensions><a:Assertion/></p:Response>"#,
                "sso_saml_wrapping_refused",
            ),
            (
                r#"<p:Response xmlns:p="p" xmlns:a="a"><p:Response><a:Assertion/></p:Response></p:Response>"#,
                "sso_saml_wrapping_refused",
            ),
            (r#"<p:Response xmlns:p="p"/>"#, "sso_saml_wrapping_refused"),
            (r#"<a:Assertion xmlns:a="a" ID="x"/>"#, "sso_saml_malformed"),
            (r#"<p:Response xmlns:p="p" xmlns:a="a"><a:EncryptedAssertion/></p:Response>"#, "sso_saml_malformed"),
            (r#"<p:Response xmlns:p="p"><unclosed></p:Response>"#, "sso_saml_malformed"),
        ] {
            assert_eq!(refuse_wrapping(xml).unwrap_err().reason, want, "{xml}");
        }
        assert!(refuse_wrapping(r#"<p:Response xmlns:p="p" xmlns:a="a"><a:Assertion ID="x"/></p:Response>"#).is_ok());
    }
}
