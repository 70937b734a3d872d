//! SAML attacks built from a genuine signed response of pysaml2 (`ns0:` protocol, `ns1:`
//! assertion, `ns2:` xmldsig): content edits, signature wrapping, comment injection and
//! DTD payloads ([`attacks_on`]), and signatures built from constructs no IdP uses
//! ([`signature_attacks`]: XSLT, XPath, XPointer, XInclude, extra or foreign references,
//! inclusive C14N, SHA-1, fetched keys), each with the reason it must be refused with.

use super::sso::attr;

/// The first element `<{prefix}:{name} …>…</{prefix}:{name}>` in `xml`.
pub fn element<'a>(xml: &'a str, qname: &str) -> &'a str {
    let start = xml.find(&format!("<{qname}")).unwrap_or_else(|| panic!("no {qname} in {xml}"));
    let close = format!("</{qname}>");
    let end = start + xml[start..].find(&close).unwrap() + close.len();
    &xml[start..end]
}

/// Attacks built from a genuine signed response `xml` (pysaml2's shape: `ns0:` protocol,
/// `ns1:` assertion, `ns2:` xmldsig): content edits, signature wrapping variants, comment
/// injection, DTD payloads.
pub fn attacks_on(xml: &str) -> Vec<(&'static str, String)> {
    let xml = xml.to_string();
    let assertion = element(&xml, "ns1:Assertion").to_string();
    let assertion_sig = element(&assertion, "ns2:Signature").to_string();
    let id = attr(&assertion, " ID=\"").to_string();
    let evil_same_id = assertion.replace("erin@example.com", "admin@example.com").replace(&assertion_sig, "");
    let evil = evil_same_id.replace(&format!(" ID=\"{id}\""), " ID=\"evil-assertion\"");
    let response_sig = element(&xml, "ns2:Signature").to_string();
    let (open_tag_end, close) = (xml.find("<ns0:Status").unwrap(), "</ns0:Response>");
    let mut attacks: Vec<(&'static str, String)> = vec![
        // Content changed under a signature.
        ("signed assertion edited", xml.replace("erin@example.com", "admin@example.com")),
        // XSW: an unsigned evil assertion beside the signed one (before it, same ID or not).
        ("evil assertion before the signed one", xml.replace(&assertion, &format!("{evil}{assertion}"))),
        ("evil assertion with the same ID first", xml.replace(&assertion, &format!("{evil_same_id}{assertion}"))),
        // XSW: the evil assertion wraps the signed one.
        (
            "evil assertion wrapping the signed one",
            xml.replace(&assertion, &evil.replace("</ns1:Assertion>", &format!("{assertion}</ns1:Assertion>"))),
        ),
        // XSW: the signed assertion hidden in Extensions, the evil one in its place.
        (
            "signed assertion moved into Extensions",
            xml.replace(&assertion, &evil).replacen(
                "<ns0:Status",
                &format!("<ns0:Extensions>{assertion}</ns0:Extensions><ns0:Status"),
                1,
            ),
        ),
        // XSW: the signed assertion inside the evil one's Signature Object.
        (
            "signed assertion inside the evil assertion's signature object",
            xml.replace(
                &assertion,
                &evil_same_id.replacen(
                    "<ns1:Subject>",
                    &format!(
                        "{}<ns1:Subject>",
                        assertion_sig.replace(
                            "</ns2:Signature>",
                            &format!("<ns2:Object>{assertion}</ns2:Object></ns2:Signature>")
                        )
                    ),
                    1,
                ),
            ),
        ),
        // XSW on the response: an evil response wrapping the signed original in its
        // Signature.
        (
            "evil response wrapping the signed response",
            format!(
                "{}{}{}",
                &xml[..open_tag_end].replace(
                    &response_sig,
                    &response_sig.replace(
                        "</ns2:Signature>",
                        &format!(
                            "<ns2:Object>{}</ns2:Object></ns2:Signature>",
                            xml.trim_start_matches("<?xml version=\"1.0\"?>").trim()
                        )
                    )
                ),
                &xml[open_tag_end..].replace(&assertion, &evil),
                ""
            ),
        ),
        // Every signature stripped.
        ("signatures removed", xml.replace(&response_sig, "").replace(&assertion_sig, "").replace("erin@", "admin@")),
        // Comment injection: the NameID would read `admin@example.com` to a parser that
        // stops at the comment.
        ("comment in NameID", xml.replacen("erin@example.com", "erin@example.com<!---->.evil.test", 1)),
        // DTD and entity payloads.
        (
            "external entity",
            xml.replacen("<ns0:Response", "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><ns0:Response", 1),
        ),
        (
            "entity expansion",
            xml.replacen(
                "<ns0:Response",
                "<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">]><ns0:Response",
                1,
            ),
        ),
    ];
    assert!(xml.ends_with(close) || xml.trim_end().ends_with(close));
    attacks.retain(|(_, x)| x != &xml);
    attacks
}

/// The assertion's signature in `xml` rebuilt with constructs outside the accepted list,
/// and the reason each must be refused with. The XSLT stylesheet would fetch
/// `http://127.0.0.1:{listener}/xslt` if it ever ran.
pub fn signature_attacks(xml: &str, listener: u16) -> Vec<(&'static str, String, &'static str)> {
    let assertion = element(xml, "ns1:Assertion");
    let sig = element(assertion, "ns2:Signature");
    let id = attr(assertion, " ID=\"");
    let response_id = attr(xml, " ID=\"");
    assert_ne!(id, response_id);
    let reference = element(sig, "ns2:Reference");
    let in_sig = |from: &str, to: &str| {
        assert!(sig.contains(from), "`{from}` not in the assertion's signature: {sig}");
        xml.replacen(sig, &sig.replacen(from, to, 1), 1)
    };
    let transform = |t: &str| in_sig("<ns2:Transforms>", &format!("<ns2:Transforms>{t}"));
    let xslt = format!(
        r#"<ns2:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"><xsl:template match="/"><xsl:copy-of select="document('http://127.0.0.1:{listener}/xslt')"/></xsl:template></xsl:stylesheet></ns2:Transform>"#
    );
    let xpath = r#"<ns2:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><ns2:XPath>count(//. | //@* | //namespace::*)</ns2:XPath></ns2:Transform>"#;
    let xinclude = r#"<ns2:Transform Algorithm="http://www.w3.org/2001/XInclude"/>"#;
    let inclusive = r#"<ns2:Transform Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"/>"#;
    let include_element =
        r#"<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" parse="text"/>"#;
    let retrieval = format!(
        r#"<ns2:KeyInfo><ns2:RetrievalMethod URI="http://127.0.0.1:{listener}/key" Type="http://www.w3.org/2000/09/xmldsig#X509Data"/></ns2:KeyInfo>"#
    );
    let key_info = if sig.contains("<ns2:KeyInfo") { element(sig, "ns2:KeyInfo").to_string() } else { String::new() };
    let mut attacks = vec![
        ("XSLT transform", transform(&xslt), "sso_saml_transform_refused"),
        ("XPath transform", transform(xpath), "sso_saml_transform_refused"),
        ("XInclude transform", transform(xinclude), "sso_saml_transform_refused"),
        ("XInclude element", xml.replacen(sig, &format!("{sig}{include_element}"), 1), "sso_saml_transform_refused"),
        ("inclusive C14N with comments transform", transform(inclusive), "sso_saml_transform_refused"),
        (
            "XPointer reference",
            in_sig(&format!("URI=\"#{id}\""), &format!("URI=\"#xpointer(id('{id}'))\"")),
            "sso_saml_reference_refused",
        ),
        ("two references", in_sig(reference, &format!("{reference}{reference}")), "sso_saml_reference_refused"),
        (
            "reference to a foreign ID",
            in_sig(&format!("URI=\"#{id}\""), &format!("URI=\"#{response_id}\"")),
            "sso_saml_reference_refused",
        ),
        (
            "SHA-1 signature",
            in_sig("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2000/09/xmldsig#rsa-sha1"),
            "sso_saml_algorithm_refused",
        ),
        (
            "SHA-1 digest",
            in_sig("http://www.w3.org/2001/04/xmlenc#sha256", "http://www.w3.org/2000/09/xmldsig#sha1"),
            "sso_saml_algorithm_refused",
        ),
    ];
    // What libxml2 would read differently from the pre-checks (a review found each).
    let manifest = format!(
        r#"<ns2:Object><ns2:Manifest><ns2:Reference URI="http://127.0.0.1:{listener}/manifest"><ns2:DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/><ns2:DigestValue>AA==</ns2:DigestValue></ns2:Reference></ns2:Manifest></ns2:Object></ns2:Signature>"#
    );
    attacks.push(("Manifest in an Object", in_sig("</ns2:Signature>", &manifest), "sso_saml_reference_refused"));
    let hidden = format!(
        r#"{sig}<ns1:Advice a="<ns2:Signature><ns2:SignedInfo><ns2:Reference URI='http://127.0.0.1:{listener}/recover'/></ns2:SignedInfo></ns2:Signature>"/>"#
    );
    attacks.push(("signature inside an attribute value", xml.replacen(sig, &hidden, 1), "sso_saml_malformed"));
    let prefixed = format!("xml:URI=\"http://127.0.0.1:{listener}/prefixed\" URI=\"#{id}\"");
    attacks.push((
        "prefixed URI beside the real one",
        in_sig(&format!("URI=\"#{id}\""), &prefixed),
        "sso_saml_malformed",
    ));
    if !key_info.is_empty() {
        attacks.push(("key fetched by RetrievalMethod", in_sig(&key_info, &retrieval), "sso_saml_keyinfo_refused"));
    }
    for (what, attack, _) in &attacks {
        assert_ne!(attack, xml, "{what} changed nothing");
    }
    attacks
}
