//! SAML 2.0 service provider, on `samael` with libxmlsec1.
//!
//! - AuthnRequest over the HTTP-Redirect binding (signed with the connection's own SP key
//!   when configured), with a 128-bit random ID kept in the sign-in transaction.
//! - Responses over HTTP-POST: refused before any XML-DSig code runs
//!   ([`gatehouse_saml_guard`]) if they carry a DTD or entity declaration, a comment
//!   (comments are how NameID truncation attacks work), a second Response or Assertion,
//!   or a signature built from anything but exclusive C14N, enveloped-signature, RSA/ECDSA
//!   with SHA-2 and one same-document reference to its holder (no XSLT, XPath, XPointer
//!   or XInclude reaches libxmlsec1);
//!   then samael verifies every XML signature against the connection's IdP certificates
//!   (several, for rollover; algorithms pinned to RSA/ECDSA with SHA-2) and keeps only
//!   the signed content, so the element consumed is the element signed (no signature
//!   wrapping). It checks Destination, InResponseTo, Issuer, Audience, Recipient,
//!   NotBefore/NotOnOrAfter and IssueInstant with bounded skew. Here we add: an assertion
//!   signature when the connection requires one, and the one-time use of assertion IDs
//!   (the caller keeps the replay cache).
//! - IdP-initiated (unsolicited) responses are refused.

use base64::Engine as _;
use samael::crypto::{AllowedSignatureAlgorithm, CertificateDer};
use samael::metadata::EntityDescriptor;
use samael::schema::Assertion;
use samael::service_provider::{Error as SpError, ServiceProvider, ServiceProviderBuilder};

use super::oidc::{Profile, SsoError};
use super::{Connection, SamlIdp};

pub use gatehouse_saml_guard::MAX_RESPONSE_B64;
/// Largest ACS form accepted: the largest response URL-encoded at worst (were every
/// byte a `+`, `/` or `=`, each three bytes), with its RelayState.
pub const MAX_ACS_BODY: usize = MAX_RESPONSE_B64 * 3 + 4096;
/// Clock skew tolerated on SAML timestamps.
const SKEW_SECS: i64 = 120;

const EMAIL_ATTRIBUTES: &[&str] = &[
    "email",
    "mail",
    "urn:oid:0.9.2342.19200300.100.1.3",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
];

fn saml_err(reason: &'static str, detail: impl Into<String>) -> SsoError {
    SsoError::Saml(reason, detail.into())
}

/// The parts of IdP metadata a connection keeps: entity id, HTTP-Redirect SSO URL and
/// signing certificates (base64 DER).
pub fn idp_from_metadata(xml: &str) -> Result<(String, String, Vec<String>), String> {
    gatehouse_saml_guard::refuse_dangerous_xml(xml).map_err(|e| e.to_string())?;
    let ed: EntityDescriptor = xml.parse().map_err(|e| format!("not SAML metadata: {e}"))?;
    let entity_id = ed.entity_id.clone().ok_or("metadata has no entityID")?;
    let idp = ed.idp_sso_descriptors.as_ref().and_then(|d| d.first()).ok_or("metadata has no IDPSSODescriptor")?;
    let sso_url = idp
        .single_sign_on_services
        .iter()
        .find(|e| e.binding == "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect")
        .map(|e| e.location.clone())
        .ok_or("metadata has no HTTP-Redirect SingleSignOnService")?;
    let mut certs = Vec::new();
    for k in &idp.key_descriptors {
        if k.key_use.as_deref().is_none_or(|u| u == "signing" || u.is_empty()) {
            if let Some(x) = &k.key_info.x509_data {
                certs.extend(x.certificates.iter().map(|c| c.split_whitespace().collect::<String>()));
            }
        }
    }
    Ok((entity_id, sso_url, certs))
}

/// A certificate given as PEM or base64 DER, as base64 DER (validated as X.509).
pub fn normalise_certificate(c: &str) -> Result<String, String> {
    let body: String = c.lines().filter(|l| !l.starts_with("-----")).flat_map(|l| l.split_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(&body).map_err(|_| "certificate: not base64 or PEM")?;
    openssl::x509::X509::from_der(&der).map_err(|_| "certificate: not an X.509 certificate")?;
    Ok(base64::engine::general_purpose::STANDARD.encode(der))
}

/// A new SP signing key (RSA 2048, PEM) and its self-signed certificate (base64 DER,
/// ten years), for signed AuthnRequests.
pub fn new_sp_keypair(name: &str) -> Result<(String, String), openssl::error::ErrorStack> {
    use openssl::{asn1::Asn1Time, bn::BigNum, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509};
    let run = || -> Result<(String, String), openssl::error::ErrorStack> {
        let key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let mut subject = x509::X509NameBuilder::new()?;
        subject.append_entry_by_text("CN", name)?;
        let subject = subject.build();
        let mut b = x509::X509Builder::new()?;
        b.set_version(2)?;
        let serial = BigNum::from_slice(&gatehouse_bundler::random::random_bytes::<16>())?.to_asn1_integer()?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&subject)?;
        b.set_issuer_name(&subject)?;
        b.set_pubkey(&key)?;
        b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
        b.set_not_after(&*Asn1Time::days_from_now(3650)?)?;
        b.sign(&key, MessageDigest::sha256())?;
        let pem = String::from_utf8_lossy(&key.private_key_to_pem_pkcs8()?).into_owned();
        Ok((pem, base64::engine::general_purpose::STANDARD.encode(b.build().to_der()?)))
    };
    run()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The samael service provider for a connection.
fn service_provider(idp: &SamlIdp, sp_entity_id: &str, acs: &str) -> Result<ServiceProvider, SsoError> {
    if idp.certificates.is_empty() {
        // samael skips verification without certificates: never build one like that.
        return Err(SsoError::Config("no IdP signing certificate".into()));
    }
    let mut keys = String::new();
    for c in &idp.certificates {
        keys.push_str(&format!(
            r#"<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{c}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#
        ));
    }
    let md = format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{keys}<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{}"/></md:IDPSSODescriptor></md:EntityDescriptor>"#,
        xml_escape(&idp.entity_id),
        xml_escape(&idp.sso_url)
    );
    let idp_metadata: EntityDescriptor = md.parse().map_err(|e| SsoError::Config(format!("IdP metadata: {e}")))?;
    let mut b = ServiceProviderBuilder::default();
    b.entity_id(sp_entity_id.to_string())
        .metadata_url(sp_entity_id.to_string())
        .acs_url(acs.to_string())
        .slo_url(None)
        .idp_metadata(idp_metadata)
        .allow_idp_initiated(false)
        .max_clock_skew(chrono::Duration::seconds(SKEW_SECS))
        .max_issue_delay(chrono::Duration::seconds(300))
        .authn_name_id_format(None)
        .allowed_signature_algorithms(Some(vec![
            AllowedSignatureAlgorithm::RsaSha256,
            AllowedSignatureAlgorithm::RsaSha384,
            AllowedSignatureAlgorithm::RsaSha512,
            AllowedSignatureAlgorithm::EcdsaSha256,
            AllowedSignatureAlgorithm::EcdsaSha384,
            AllowedSignatureAlgorithm::EcdsaSha512,
        ]));
    if let Some(c) = &idp.sp_certificate {
        let der = base64::engine::general_purpose::STANDARD
            .decode(c)
            .map_err(|_| SsoError::Config("SP certificate".into()))?;
        b.certificate(Some(CertificateDer::from(der)));
    }
    b.build().map_err(|e| SsoError::Config(e.to_string()))
}

fn saml_of(c: &Connection) -> Result<&SamlIdp, SsoError> {
    c.saml.as_ref().ok_or_else(|| SsoError::Config("not a SAML connection".into()))
}

/// A SAML connection's IdP settings and its samael service provider.
fn service_provider_of<'c>(
    c: &'c Connection,
    sp_entity_id: &str,
    acs: &str,
) -> Result<(&'c SamlIdp, ServiceProvider), SsoError> {
    let idp = saml_of(c)?;
    Ok((idp, service_provider(idp, sp_entity_id, acs)?))
}

/// SP metadata (XML) of a connection: its entity id, the ACS (HTTP-POST), whether
/// requests are signed and assertions must be, and the request-signing certificate. No
/// encryption key is offered: encrypted assertions are not accepted.
pub fn sp_metadata(c: &Connection, sp_entity_id: &str, acs: &str) -> Result<String, SsoError> {
    let idp = saml_of(c)?;
    let key = match &idp.sp_certificate {
        Some(cert) => format!(
            r#"<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#
        ),
        None => String::new(),
    };
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity}"><md:SPSSODescriptor AuthnRequestsSigned="{signed}" WantAssertionsSigned="{want}" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{key}<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{acs}" index="0" isDefault="true"/></md:SPSSODescriptor></md:EntityDescriptor>
"#,
        entity = xml_escape(sp_entity_id),
        signed = idp.sign_requests,
        want = idp.want_assertions_signed,
        acs = xml_escape(acs),
    ))
}

/// A started SAML sign-in: where to send the browser and the request's ID.
pub struct SamlStart {
    /// The IdP's SSO URL with the (signed) request.
    pub url: String,
    /// The AuthnRequest ID (InResponseTo must equal it).
    pub request_id: String,
}

/// Build the AuthnRequest (HTTP-Redirect binding); `sp_key_pem` signs it.
pub fn start(
    c: &Connection,
    sp_entity_id: &str,
    acs: &str,
    relay_state: &str,
    sp_key_pem: Option<&str>,
) -> Result<SamlStart, SsoError> {
    let (idp, sp) = service_provider_of(c, sp_entity_id, acs)?;
    let mut req = sp.make_authentication_request(&idp.sso_url).map_err(|e| SsoError::Config(e.to_string()))?;
    // samael's IDs carry 32 random bits; ours carry 128 (and start with a letter, as
    // xsd:ID requires).
    req.id = format!("id-{}", hex::encode(gatehouse_bundler::random::random_bytes::<16>()));
    req.force_authn = None;
    let url = if idp.sign_requests {
        let pem = sp_key_pem.ok_or_else(|| SsoError::Config("no SP signing key".into()))?;
        let key = openssl::pkey::PKey::private_key_from_pem(pem.as_bytes())
            .map_err(|_| SsoError::Config("SP signing key unreadable".into()))?;
        req.signed_redirect(relay_state, &key).map_err(|e| SsoError::Config(e.to_string()))?
    } else {
        req.redirect(relay_state).map_err(|e| SsoError::Config(e.to_string()))?
    };
    let url = url.ok_or_else(|| SsoError::Config("no IdP SSO URL".into()))?;
    Ok(SamlStart { url: url.to_string(), request_id: req.id })
}

/// Decode a posted SAMLResponse and run every check that comes before XML-DSig
/// ([`gatehouse_saml_guard`]: size, encoding, DTD, comments, wrapping, and the allowlist of
/// signature algorithms, transforms, references and key data).
pub fn decode_response(b64: &str) -> Result<String, SsoError> {
    let xml = gatehouse_saml_guard::decode_response(b64)?;
    well_formed(&xml)?;
    Ok(xml)
}

/// Parse `xml` with libxml2 strictly (no recovery, no network). samael parses in
/// recovery mode, and what libxml2 recovers a broken document into (an attribute value
/// ended at a `<` and the rest read as elements, say) is not what the pre-checks read:
/// only a well-formed document, which both parsers read alike, goes on.
fn well_formed(xml: &str) -> Result<(), SsoError> {
    let options = libxml::parser::ParserOptions {
        recover: false,
        no_net: true,
        no_error: true,
        no_warning: true,
        ..Default::default()
    };
    match libxml::parser::Parser::default().parse_string_with_options(xml, options) {
        Ok(_) => Ok(()),
        Err(_) => Err(saml_err("sso_saml_malformed", "not well-formed XML")),
    }
}

impl From<gatehouse_saml_guard::Refused> for SsoError {
    fn from(r: gatehouse_saml_guard::Refused) -> SsoError {
        SsoError::Saml(r.reason, r.detail)
    }
}

/// The ID of the first Assertion element, unverified: used only to tell a replayed
/// response from an unsolicited one when refusing.
pub fn unverified_assertion_id(xml: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e)
                if e.local_name().as_ref() == b"Assertion" =>
            {
                let id = e.attributes().flatten().find(|a| a.key.as_ref() == b"ID")?;
                return Some(String::from_utf8_lossy(&id.value).into_owned());
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

/// Whether the Assertion with `id` has its own enveloped signature (a `Signature` child
/// whose Reference is `#id`). samael has verified every signature in the document, so
/// its presence means the assertion itself is signed.
fn assertion_signed(xml: &str, id: &str) -> bool {
    use quick_xml::events::{BytesStart, Event};
    use quick_xml::name::{Namespace, ResolveResult};
    const DSIG: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";
    const SAML: &[u8] = b"urn:oasis:names:tc:SAML:2.0:assertion";
    let is = |ns: &ResolveResult, want: &[u8]| matches!(ns, ResolveResult::Bound(Namespace(n)) if *n == want);
    let has = |e: &BytesStart, key: &[u8], value: &[u8]| {
        e.attributes().flatten().any(|a| a.key.as_ref() == key && a.value.as_ref() == value)
    };
    let reference = format!("#{id}");
    let mut reader = quick_xml::NsReader::from_str(xml);
    // Depth of the matching Assertion, and of its direct (xmldsig) Signature child.
    let mut depth = 0usize;
    let mut assertion_depth: Option<usize> = None;
    let mut signature_depth: Option<usize> = None;
    loop {
        let Ok((ns, event)) = reader.read_resolved_event() else { return false };
        match event {
            Event::Start(e) => {
                depth += 1;
                let name = e.local_name();
                if name.as_ref() == b"Assertion" && is(&ns, SAML) && has(&e, b"ID", id.as_bytes()) {
                    assertion_depth = Some(depth);
                } else if name.as_ref() == b"Signature"
                    && is(&ns, DSIG)
                    && assertion_depth.is_some_and(|d| d + 1 == depth)
                {
                    signature_depth = Some(depth);
                } else if name.as_ref() == b"Reference"
                    && is(&ns, DSIG)
                    && signature_depth.is_some()
                    && has(&e, b"URI", reference.as_bytes())
                {
                    return true;
                }
            }
            Event::Empty(e)
                if e.local_name().as_ref() == b"Reference"
                    && is(&ns, DSIG)
                    && signature_depth.is_some()
                    && has(&e, b"URI", reference.as_bytes()) =>
            {
                return true;
            }
            Event::End(_) => {
                if signature_depth == Some(depth) {
                    signature_depth = None;
                }
                if assertion_depth == Some(depth) {
                    assertion_depth = None;
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => return false,
            _ => {}
        }
    }
}

fn reason_of(e: &SpError) -> &'static str {
    match e {
        SpError::FailedToValidateSignature => "sso_saml_signature_invalid",
        SpError::DestinationValidationError { .. } => "sso_saml_wrong_destination",
        SpError::ResponseInResponseToInvalid { .. } | SpError::AssertionInResponseToInvalid { .. } => {
            "sso_saml_in_response_to"
        }
        SpError::ResponseExpired { .. }
        | SpError::AssertionExpired { .. }
        | SpError::AssertionConditionExpired { .. }
        | SpError::AssertionConditionExpiredBefore { .. }
        | SpError::AssertionSubjectConfirmationExpired { .. }
        | SpError::AssertionSubjectConfirmationExpiredBefore { .. } => "sso_saml_expired",
        SpError::AssertionConditionAudienceRestrictionFailed { .. } => "sso_saml_wrong_audience",
        SpError::AssertionRecipientMismatch { .. } => "sso_saml_wrong_recipient",
        SpError::ResponseIssuerMismatch { .. } | SpError::AssertionIssuerMismatch { .. } => "sso_saml_wrong_issuer",
        SpError::ResponseBadStatusCode { .. } => "sso_idp_error",
        SpError::FailedToParseSamlResponse(_) | SpError::FailedToParseSamlAssertion(_) => "sso_saml_malformed",
        _ => "sso_saml_invalid",
    }
}

/// A verified sign-in: who, and the assertion's ID (for the replay cache).
pub struct SamlSignIn {
    /// Who signed in.
    pub profile: Profile,
    /// Assertion ID (one-time use).
    pub assertion_id: String,
}

/// Verify a decoded response for the request `request_id` (None: no transaction, so
/// the response is unsolicited and refused).
pub fn finish(
    c: &Connection,
    sp_entity_id: &str,
    acs: &str,
    xml: &str,
    request_id: Option<&str>,
) -> Result<SamlSignIn, SsoError> {
    // No caller reaches libxmlsec1 without the pre-checks (transforms, references, …).
    gatehouse_saml_guard::precheck(xml)?;
    well_formed(xml)?;
    let (idp, sp) = service_provider_of(c, sp_entity_id, acs)?;
    let ids: Vec<&str> = request_id.into_iter().collect();
    let assertion = sp.parse_xml_response(xml, Some(&ids)).map_err(|e| {
        let reason = match (request_id, reason_of(&e)) {
            (None, "sso_saml_in_response_to") => "sso_saml_unsolicited",
            (_, r) => r,
        };
        saml_err(reason, e.to_string())
    })?;
    if idp.want_assertions_signed && !assertion_signed(xml, &assertion.id) {
        return Err(saml_err("sso_saml_assertion_unsigned", "the assertion itself is not signed"));
    }
    let profile = profile_of(c, &assertion)?;
    Ok(SamlSignIn { profile, assertion_id: assertion.id })
}

fn profile_of(c: &Connection, a: &Assertion) -> Result<Profile, SsoError> {
    let nid = a.subject.as_ref().and_then(|s| s.name_id.as_ref());
    let name_id = nid
        .map(|n| n.value.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 512)
        .ok_or_else(|| SsoError::Claims("NameID".into()))?;
    let transient =
        nid.and_then(|n| n.format.as_deref()) == Some("urn:oasis:names:tc:SAML:2.0:nameid-format:transient");
    if transient && c.claims.subject == "NameID" {
        // A transient NameID changes every sign-in: it cannot identify a user.
        return Err(SsoError::Claims(
            "NameID is transient: set claims.subject to a persistent attribute of the IdP".into(),
        ));
    }
    let attrs: Vec<&samael::attribute::Attribute> =
        a.attribute_statements.iter().flatten().flat_map(|s| s.attributes.iter()).collect();
    let attr = |name: &str| {
        attrs
            .iter()
            .find(|x| x.name.as_deref() == Some(name) || x.friendly_name.as_deref() == Some(name))
            .and_then(|x| x.values.first())
            .and_then(|v| v.value.clone())
    };
    let subject = if c.claims.subject == "NameID" { Some(name_id.clone()) } else { attr(&c.claims.subject) }
        .ok_or_else(|| SsoError::Claims(c.claims.subject.clone()))?;
    let email = std::iter::once(c.claims.email.as_str())
        .chain(EMAIL_ATTRIBUTES.iter().copied())
        .find_map(attr)
        .or_else(|| name_id.contains('@').then(|| name_id.clone()))
        .map(|e| e.to_ascii_lowercase());
    let classes: Vec<String> = a
        .authn_statements
        .iter()
        .flatten()
        .filter_map(|s| s.authn_context.as_ref()?.value.as_ref()?.value.clone())
        .collect();
    let amr = classes.iter().filter_map(|c| class_amr(c)).map(String::from).collect();
    Ok(Profile {
        subject,
        email,
        // A SAML IdP asserts for its own users; the allowed domains still apply.
        email_verified: true,
        name: attr(&c.claims.name).unwrap_or_default().chars().take(200).collect(),
        amr,
        issuer: a.issuer.value.clone().unwrap_or_default(),
    })
}

/// What an AuthnContextClassRef counts as in `amr`: `pwd` for a password, `mfa` for the
/// multi-factor classes IdPs assert (REFEDS `https://refeds.org/profile/mfa`, Microsoft
/// Entra's `http://schemas.microsoft.com/claims/multipleauthn`, SAML 2.0's
/// `TimeSyncToken` and `MobileTwoFactor*`, any `…MultiFactor…`), nothing otherwise.
fn class_amr(c: &str) -> Option<&'static str> {
    const MFA_SUFFIXES: &[&str] =
        &[":TimeSyncToken", ":MobileTwoFactorContract", ":MobileTwoFactorUnregistered", "/claims/multipleauthn"];
    if c.ends_with(":PasswordProtectedTransport") || c.ends_with(":Password") {
        Some("pwd")
    } else if c.contains("MultiFactor") || c.contains("mfa") || MFA_SUFFIXES.iter().any(|s| c.ends_with(s)) {
        Some("mfa")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authn_context_classes_map_to_amr() {
        let ac = |c: &str| format!("urn:oasis:names:tc:SAML:2.0:ac:classes:{c}");
        assert_eq!(class_amr(&ac("PasswordProtectedTransport")), Some("pwd"));
        assert_eq!(class_amr(&ac("Password")), Some("pwd"));
        for c in [
            "https://refeds.org/profile/mfa".to_string(),
            "http://schemas.microsoft.com/claims/multipleauthn".to_string(),
            ac("TimeSyncToken"),
            ac("MobileTwoFactorContract"),
            ac("MobileTwoFactorUnregistered"),
        ] {
            assert_eq!(class_amr(&c), Some("mfa"), "{c}");
        }
        for c in [ac("unspecified"), ac("Kerberos"), ac("X509"), String::new()] {
            assert_eq!(class_amr(&c), None, "{c}");
        }
    }

    #[test]
    fn only_well_formed_documents_reach_samael() {
        assert!(well_formed(r#"<p:Response xmlns:p="p" ID="r"><a/></p:Response>"#).is_ok());
        for broken in [
            r#"<p:Response xmlns:p="p"><a b="<c/>"/></p:Response>"#,
            r#"<p:Response xmlns:p="p"><1x/></p:Response>"#,
            r#"<p:Response xmlns:p="p"><a></p:Response>"#,
            "",
        ] {
            assert!(matches!(well_formed(broken), Err(SsoError::Saml("sso_saml_malformed", _))), "{broken}");
        }
    }

    #[test]
    fn assertion_signature_must_be_its_own() {
        let ns = r#"xmlns:A="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:ds="http://www.w3.org/2000/09/xmldsig#""#;
        let signed = format!(
            r##"<R {ns}><A:Assertion ID="x1"><ds:Signature><ds:SignedInfo><ds:Reference URI="#x1"/></ds:SignedInfo></ds:Signature></A:Assertion></R>"##
        );
        assert!(assertion_signed(&signed, "x1"));
        assert!(!assertion_signed(&signed, "x2"));
        // A response-level signature does not count as the assertion's.
        let response_only = format!(
            r##"<R {ns} ID="r1"><ds:Signature><ds:SignedInfo><ds:Reference URI="#r1"/></ds:SignedInfo></ds:Signature><A:Assertion ID="x1"/></R>"##
        );
        assert!(!assertion_signed(&response_only, "x1"));
        // A signature nested deeper inside the assertion does not count either.
        let nested = format!(
            r##"<R {ns}><A:Assertion ID="x1"><E><ds:Signature><ds:Reference URI="#x1"/></ds:Signature></E></A:Assertion></R>"##
        );
        assert!(!assertion_signed(&nested, "x1"));
        // Nor a look-alike `Signature` in another namespace (samael verifies only xmldsig).
        let fake = r##"<R xmlns:A="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:x="urn:y"><A:Assertion ID="x1"><x:Signature><x:Reference URI="#x1"/></x:Signature></A:Assertion></R>"##;
        assert!(!assertion_signed(fake, "x1"));
    }

    fn assertion(format: &str) -> Assertion {
        format!(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="a1" IssueInstant="2026-01-01T00:00:00Z" Version="2.0"><saml:Issuer>idp</saml:Issuer><saml:Subject><saml:NameID Format="{format}">x-7</saml:NameID></saml:Subject><saml:AttributeStatement><saml:Attribute Name="urn:oid:0.9.2342.19200300.100.1.1" FriendlyName="uid"><saml:AttributeValue>erin</saml:AttributeValue></saml:Attribute><saml:Attribute Name="mail"><saml:AttributeValue>Erin@Example.com</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion>"#
        )
        .parse()
        .unwrap()
    }

    #[test]
    fn profiles_from_assertions() {
        let mut c = Connection::from_input(
            "c".into(),
            serde_json::from_value(serde_json::json!({"name": "S", "protocol": "saml", "idp_entity_id": "idp",
                "idp_sso_url": "https://idp.example.com/sso", "idp_certificates": [new_sp_keypair("idp").unwrap().1],
                "allowed_domains": ["example.com"], "default_role": "viewer"}))
            .unwrap(),
            false,
        )
        .unwrap();
        let p = profile_of(&c, &assertion("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent")).unwrap();
        assert_eq!((p.subject.as_str(), p.email.as_deref()), ("x-7", Some("erin@example.com")));
        let transient = assertion("urn:oasis:names:tc:SAML:2.0:nameid-format:transient");
        assert!(matches!(profile_of(&c, &transient), Err(SsoError::Claims(m)) if m.contains("transient")));
        c.claims.subject = "uid".into();
        assert_eq!(profile_of(&c, &transient).unwrap().subject, "erin", "a persistent attribute instead");
    }

    #[test]
    fn sp_keypair_and_certificates() {
        let (pem, cert) = new_sp_keypair("gatehouse test").unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(normalise_certificate(&cert).unwrap(), cert);
        let wrapped = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", cert);
        assert_eq!(normalise_certificate(&wrapped).unwrap(), cert);
        assert!(normalise_certificate("bm90IGEgY2VydA==").is_err());
    }
}
