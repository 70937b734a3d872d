use super::*;

const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

/// A signature of the element with ID `id`: `signed_info_inner` replaces the standard
/// `SignedInfo` content when given, `key_info` the standard `KeyInfo`.
fn signature(id: &str, signed_info_inner: Option<&str>, key_info: Option<&str>) -> String {
    let standard = format!(
        r##"<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"/><ds:SignatureMethod Algorithm="{RSA_SHA256}"/><ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="{ENVELOPED}"/><ds:Transform Algorithm="{EXC_C14N}"><ec:InclusiveNamespaces xmlns:ec="{EXC_C14N}" PrefixList="xs"/></ds:Transform></ds:Transforms><ds:DigestMethod Algorithm="{SHA256}"/><ds:DigestValue>abc=</ds:DigestValue></ds:Reference>"##
    );
    let key = key_info.map(str::to_string).unwrap_or_else(|| {
        "<ds:KeyInfo><ds:X509Data><ds:X509Certificate>MIIB</ds:X509Certificate></ds:X509Data></ds:KeyInfo>".into()
    });
    format!(
        r#"<ds:Signature xmlns:ds="{DSIG}"><ds:SignedInfo>{}</ds:SignedInfo><ds:SignatureValue>c2ln</ds:SignatureValue>{key}</ds:Signature>"#,
        signed_info_inner.unwrap_or(&standard)
    )
}

fn response(response_sig: &str, assertion_sig: &str) -> String {
    format!(
        r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="r1"><saml:Issuer>idp</saml:Issuer>{response_sig}<samlp:Status/><saml:Assertion ID="a1"><saml:Issuer>idp</saml:Issuer>{assertion_sig}<saml:Subject/></saml:Assertion></samlp:Response>"#
    )
}

/// The standard signature of `a1` with `from` replaced by `to`.
fn assertion_with(from: &str, to: &str) -> String {
    let sig = signature("a1", None, None);
    assert!(sig.contains(from), "{from} not in {sig}");
    response(&signature("r1", None, None), &sig.replacen(from, to, 1))
}

fn reason(xml: &str) -> &'static str {
    match refuse_signature_constructs(xml) {
        Ok(()) => "accepted",
        Err(e) => e.reason,
    }
}

#[test]
fn genuine_shapes_are_accepted() {
    assert_eq!(reason(&response(&signature("r1", None, None), &signature("a1", None, None))), "accepted");
    assert_eq!(reason(&response("", &signature("a1", None, None))), "accepted");
    assert_eq!(reason(&response(&signature("r1", None, None), "")), "accepted");
    // Every accepted algorithm, with comments, issuer-serial key data, key name and value.
    for alg in SIGNATURE_METHODS {
        assert_eq!(reason(&assertion_with(RSA_SHA256, alg)), "accepted", "{alg}");
    }
    for alg in DIGEST_METHODS {
        assert_eq!(reason(&assertion_with(SHA256, alg)), "accepted", "{alg}");
    }
    let with_comments = format!("{EXC_C14N}WithComments\"");
    assert_eq!(
        reason(&assertion_with(&format!("{EXC_C14N}\"/><ds:Sig"), &format!("{with_comments}/><ds:Sig"))),
        "accepted"
    );
    let key = "<ds:KeyInfo><ds:KeyName>idp</ds:KeyName><ds:X509Data><ds:X509IssuerSerial><ds:X509IssuerName>CN=x</ds:X509IssuerName><ds:X509SerialNumber>1</ds:X509SerialNumber></ds:X509IssuerSerial><ds:X509SubjectName>CN=x</ds:X509SubjectName></ds:X509Data><ds:KeyValue><ds:RSAKeyValue><ds:Modulus>AQ==</ds:Modulus><ds:Exponent>AQAB</ds:Exponent></ds:RSAKeyValue></ds:KeyValue></ds:KeyInfo>";
    assert_eq!(reason(&response("", &signature("a1", None, Some(key)))), "accepted");
    // Character references in the URI are resolved before comparing.
    assert_eq!(reason(&assertion_with("URI=\"#a1\"", "URI=\"&#x23;a1\"")), "accepted");
}

#[test]
fn transforms_outside_the_list_are_refused() {
    let xslt = format!(
        r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"><xsl:template match="/"><xsl:copy-of select="document('http://127.0.0.1:9/x')"/></xsl:template></xsl:stylesheet></ds:Transform><ds:Transform Algorithm="{ENVELOPED}"/>"#
    );
    let xpath = r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><ds:XPath>count(//. | //@* | //namespace::*) &gt; 0</ds:XPath></ds:Transform>"#;
    let xpath2 = r#"<ds:Transform Algorithm="http://www.w3.org/2002/06/xmldsig-filter2"><dsig-xpath:XPath xmlns:dsig-xpath="http://www.w3.org/2002/06/xmldsig-filter2" Filter="intersect">/</dsig-xpath:XPath></ds:Transform>"#;
    let xinclude = r#"<ds:Transform Algorithm="http://www.w3.org/2001/XInclude"/>"#;
    let xpointer = r#"<ds:Transform Algorithm="http://www.w3.org/2001/04/xmldsig-more#xptr"><dsig-xptr:XPointer xmlns:dsig-xptr="http://www.w3.org/2001/04/xmldsig-more/xptr">xpointer(/)</dsig-xptr:XPointer></ds:Transform>"#;
    let inclusive_comments =
        r#"<ds:Transform Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"/>"#;
    let inclusive = r#"<ds:Transform Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"/>"#;
    let base64 = r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#base64"/>"#;
    let enveloped = format!(r#"<ds:Transform Algorithm="{ENVELOPED}"/>"#);
    let too_many = enveloped.repeat(MAX_TRANSFORMS + 1);
    let with_child = format!(r#"<ds:Transform Algorithm="{ENVELOPED}"><x/></ds:Transform>"#);
    for (what, transform) in [
        ("XSLT", xslt.as_str()),
        ("XPath", xpath),
        ("XPath filter 2", xpath2),
        ("XInclude", xinclude),
        ("XPointer", xpointer),
        ("inclusive C14N with comments", inclusive_comments),
        ("inclusive C14N", inclusive),
        ("base64", base64),
        ("too many", too_many.as_str()),
        ("enveloped with a child", with_child.as_str()),
    ] {
        let xml = assertion_with(&format!(r#"<ds:Transform Algorithm="{ENVELOPED}"/>"#), transform);
        assert_eq!(reason(&xml), "sso_saml_transform_refused", "{what}");
    }
    // The same rule for the canonicalization of SignedInfo.
    let c14n = format!(r#"<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"/>"#);
    for alg in
        ["http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments", "http://www.w3.org/TR/1999/REC-xslt-19991116"]
    {
        let xml = assertion_with(&c14n, &format!(r#"<ds:CanonicalizationMethod Algorithm="{alg}"/>"#));
        assert_eq!(reason(&xml), "sso_saml_transform_refused", "{alg}");
    }
    let stylesheet_inside = format!(
        r#"<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform"/></ds:CanonicalizationMethod>"#
    );
    assert_eq!(reason(&assertion_with(&c14n, &stylesheet_inside)), "sso_saml_transform_refused");
    // XInclude and XSLT elements anywhere, even outside a signature.
    let xi = response("", "").replace(
        "<saml:Subject/>",
        r#"<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" parse="text"/>"#,
    );
    assert_eq!(reason(&xi), "sso_saml_transform_refused");
    let xsl =
        response("", "").replace("<saml:Subject/>", r#"<x:template xmlns:x="http://www.w3.org/1999/XSL/Transform"/>"#);
    assert_eq!(reason(&xsl), "sso_saml_transform_refused");
}

#[test]
fn algorithms_outside_the_list_are_refused() {
    for (from, to) in [
        (RSA_SHA256, "http://www.w3.org/2000/09/xmldsig#rsa-sha1"),
        (RSA_SHA256, "http://www.w3.org/2000/09/xmldsig#dsa-sha1"),
        (RSA_SHA256, "http://www.w3.org/2000/09/xmldsig#hmac-sha1"),
        (RSA_SHA256, "http://www.w3.org/2001/04/xmldsig-more#rsa-md5"),
        (SHA256, "http://www.w3.org/2000/09/xmldsig#sha1"),
        (SHA256, "http://www.w3.org/2001/04/xmldsig-more#md5"),
    ] {
        assert_eq!(reason(&assertion_with(from, to)), "sso_saml_algorithm_refused", "{to}");
    }
    let hmac = format!(
        r#"<ds:SignatureMethod Algorithm="{RSA_SHA256}"><ds:HMACOutputLength>8</ds:HMACOutputLength></ds:SignatureMethod>"#
    );
    assert_eq!(
        reason(&assertion_with(&format!(r#"<ds:SignatureMethod Algorithm="{RSA_SHA256}"/>"#), &hmac)),
        "sso_saml_algorithm_refused"
    );
}

#[test]
fn references_other_than_the_holders_id_are_refused() {
    let reference = signature("a1", None, None);
    let start = reference.find("<ds:Reference").unwrap();
    let end = reference.find("</ds:Reference>").unwrap() + "</ds:Reference>".len();
    let one = &reference[start..end];
    for (what, xml) in [
        ("two references", assertion_with(one, &format!("{one}{}", one.replace("#a1", "#r1")))),
        ("a foreign ID", assertion_with("URI=\"#a1\"", "URI=\"#r1\"")),
        ("an unknown ID", assertion_with("URI=\"#a1\"", "URI=\"#nobody\"")),
        ("the whole document", assertion_with("URI=\"#a1\"", "URI=\"\"")),
        ("no URI", assertion_with(" URI=\"#a1\"", "")),
        ("an XPointer", assertion_with("URI=\"#a1\"", "URI=\"#xpointer(/)\"")),
        ("an XPointer to the ID", assertion_with("URI=\"#a1\"", "URI=\"#xpointer(id('a1'))\"")),
        ("a URL", assertion_with("URI=\"#a1\"", "URI=\"http://127.0.0.1:9/a\"")),
        ("a file", assertion_with("URI=\"#a1\"", "URI=\"file:///etc/passwd\"")),
        ("no reference", assertion_with(one, "")),
    ] {
        assert_eq!(reason(&xml), "sso_saml_reference_refused", "{what}");
    }
    // A signature whose holder has no ID references nothing it may.
    let holderless = response("", "")
        .replace("<saml:Subject/>", &format!("<saml:Subject>{}</saml:Subject>", signature("a1", None, None)));
    assert_eq!(reason(&holderless), "sso_saml_reference_refused");
}

#[test]
fn key_info_holds_certificate_data_only() {
    for key in [
        r#"<ds:KeyInfo><ds:RetrievalMethod URI="http://127.0.0.1:9/key" Type="http://www.w3.org/2000/09/xmldsig#X509Data"/></ds:KeyInfo>"#,
        r#"<ds:KeyInfo><xenc:EncryptedKey xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"/></ds:KeyInfo>"#,
        r#"<ds:KeyInfo><ds:X509Data><ds:X509CRL>AA==</ds:X509CRL></ds:X509Data></ds:KeyInfo>"#,
        r#"<ds:KeyInfo><ds:X509Data><ds:X509IssuerSerial><ds:X509Certificate>A</ds:X509Certificate></ds:X509IssuerSerial></ds:X509Data></ds:KeyInfo>"#,
        r#"<ds:KeyInfo><ds:PGPData/></ds:KeyInfo>"#,
    ] {
        assert_eq!(reason(&response("", &signature("a1", None, Some(key)))), "sso_saml_keyinfo_refused", "{key}");
    }
}

#[test]
fn other_structure_inside_a_signature_is_malformed() {
    for inner in [
        // No canonicalization, two methods, an unknown element in SignedInfo.
        format!(
            r##"<ds:SignatureMethod Algorithm="{RSA_SHA256}"/><ds:Reference URI="#a1"><ds:DigestMethod Algorithm="{SHA256}"/><ds:DigestValue>a</ds:DigestValue></ds:Reference>"##
        ),
        format!(
            r##"<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"/><ds:SignatureMethod Algorithm="{RSA_SHA256}"/><ds:SignatureMethod Algorithm="{RSA_SHA256}"/><ds:Reference URI="#a1"/>"##
        ),
        format!(
            r##"<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"/><ds:SignatureMethod Algorithm="{RSA_SHA256}"/><ds:Reference URI="#a1"/><ds:Object/>"##
        ),
    ] {
        assert_eq!(reason(&response("", &signature("a1", Some(&inner), None))), "sso_saml_malformed", "{inner}");
    }
    // A nested signature inside the structure, an element inside a value, no algorithm.
    for (from, to) in [
        ("<ds:SignatureValue>c2ln</ds:SignatureValue>", "<ds:SignatureValue><ds:Signature/></ds:SignatureValue>"),
        ("<ds:DigestValue>abc=</ds:DigestValue>", "<ds:DigestValue><x/></ds:DigestValue>"),
        (&format!(r#"<ds:DigestMethod Algorithm="{SHA256}"/>"#), "<ds:DigestMethod/>"),
    ] {
        assert_eq!(reason(&assertion_with(from, to)), "sso_saml_malformed", "{to}");
    }
}

#[test]
fn signatures_in_objects_are_checked_too() {
    let inner = signature("o1", None, None).replace(RSA_SHA256, "http://www.w3.org/2000/09/xmldsig#rsa-sha1");
    let outer = signature("a1", None, None)
        .replace("</ds:Signature>", &format!("<ds:Object><x ID=\"o1\">{inner}</x></ds:Object></ds:Signature>"));
    assert_eq!(reason(&response("", &outer)), "sso_saml_algorithm_refused");
}

#[test]
fn any_input_is_answered() {
    // Truncations of a genuine response: every prefix is accepted or refused, none panics.
    let xml = response(&signature("r1", None, None), &signature("a1", None, None));
    for end in 0..xml.len() {
        if xml.is_char_boundary(end) {
            let _ = refuse_signature_constructs(&xml[..end]);
        }
    }
}

/// The differentials a review found between quick-xml and what libxml2 and libxmlsec1
/// make of the same bytes (each once let XSLT, XPath or a URL fetch through).
#[test]
fn what_libxml2_would_read_differently_is_refused() {
    let base = response("", &signature("a1", None, None));
    let hidden = base.replace(
        "<saml:Subject/>",
        r#"<saml:Subject a="<ds:Signature><ds:SignedInfo><ds:Reference URI='http://127.0.0.1:9/x'/></ds:SignedInfo></ds:Signature>"/>"#,
    );
    assert_eq!(reason(&hidden), "sso_saml_malformed", "a signature inside an attribute value");
    let manifest = signature("a1", None, None).replace(
        "</ds:Signature>",
        &format!(r#"<ds:Object><ds:Manifest><ds:Reference URI="http://127.0.0.1:9/m"><ds:DigestMethod Algorithm="{SHA256}"/><ds:DigestValue>a</ds:DigestValue></ds:Reference></ds:Manifest></ds:Object></ds:Signature>"#),
    );
    assert_eq!(reason(&response("", &manifest)), "sso_saml_reference_refused", "a Manifest in an Object");
    let in_signed_info = assertion_with("</ds:SignedInfo>", "<ds:Manifest/></ds:SignedInfo>");
    assert_eq!(reason(&in_signed_info), "sso_saml_reference_refused", "a Manifest in SignedInfo");
    let enveloped = format!("Algorithm=\"{ENVELOPED}\"");
    let xslt_too = format!("x:Algorithm=\"http://www.w3.org/TR/1999/REC-xslt-19991116\" xmlns:x=\"x\" {enveloped}");
    let dsig = "xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"";
    for (what, from, to) in [
        ("prefixed URI", "URI=\"#a1\"", "x:URI=\"http://127.0.0.1:9/x\" xmlns:x=\"x\" URI=\"#a1\""),
        ("xml:URI", "URI=\"#a1\"", "xml:URI=\"http://127.0.0.1:9/x\" URI=\"#a1\""),
        ("prefixed Algorithm", enveloped.as_str(), xslt_too.as_str()),
        ("a reference in the DSIG namespace", dsig, "xmlns:ds=\"http://www.w3.org/2000/09/xmldsig&#x23;\""),
        ("a space in a namespace", dsig, "xmlns:ds=\"http://www.w3.org/2000/09/xmldsig# \""),
    ] {
        assert_eq!(reason(&assertion_with(from, to)), "sso_saml_malformed", "{what}");
    }
    let xsl = response("", "")
        .replace("<saml:Subject/>", r#"<x:template xmlns:x="http://www.w3.org/1999/XSL/Transfor&#x6d;"/>"#);
    assert_eq!(reason(&xsl), "sso_saml_malformed", "an XSLT namespace spelled with a reference");
    let prefixed_id =
        base.replace("<saml:Assertion ID=\"a1\">", "<saml:Assertion x:ID=\"zz\" xmlns:x=\"x\" ID=\"a1\">");
    assert_eq!(reason(&prefixed_id), "sso_saml_malformed", "a prefixed ID");
    let xml_id = base.replace("<saml:Subject/>", "<saml:Subject xml:id=\"a1\"/>");
    assert_eq!(reason(&xml_id), "sso_saml_malformed", "xml:id");
    let undeclared = base.replace("<saml:Subject/>", "<u:Subject/>");
    assert_eq!(reason(&undeclared), "sso_saml_malformed", "an undeclared prefix");
    let duplicate = base.replace("<saml:Subject/>", "<saml:Subject ID=\"a1\"/>");
    assert_eq!(reason(&duplicate), "sso_saml_wrapping_refused", "two elements with one ID");
}
