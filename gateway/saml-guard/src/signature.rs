//! What an XML signature in a SAML response may be built from, checked before libxmlsec1
//! sees it. libxmlsec1 runs whatever a `ds:Signature` names — XSLT stylesheets (through
//! libxslt), XPath and XPointer expressions, XInclude, references to other elements or
//! to URLs, keys fetched by `RetrievalMethod` — and it does so while verifying, before a
//! bad signature is noticed. None of that needs a valid signature, so each is a CPU,
//! memory or network surface open to anyone who can post to the ACS. A genuine IdP
//! uses a handful of constructs; everything else is refused here.
//!
//! Accepted, for each `ds:Signature` anywhere in the document:
//! - `SignedInfo` with one `CanonicalizationMethod` ([`CANONICALIZATIONS`]: exclusive
//!   C14N, with or without comments, with an optional `InclusiveNamespaces` prefix list),
//!   one `SignatureMethod` ([`SIGNATURE_METHODS`]: RSA or ECDSA with SHA-256/384/512) and
//!   exactly one `Reference`;
//! - the `Reference`'s `URI` is `#id` where `id` is the `ID` of the element holding the
//!   signature (the element being verified), its `Transforms` at most
//!   [`MAX_TRANSFORMS`] of [`TRANSFORMS`] (enveloped-signature and exclusive C14N), its
//!   `DigestMethod` one of [`DIGEST_METHODS`] (SHA-256/384/512);
//! - `KeyInfo` holding only `X509Data` (certificate, subject name, issuer and serial,
//!   SKI), `KeyName` or `KeyValue` — all ignored: the connection's configured IdP
//!   certificates are the only keys a signature is checked with;
//! - `SignatureValue`, and `Object` (never referenced: the reference must be the
//!   holder's ID; a second copy of a signed element is refused by the wrapping check),
//!   with no `Manifest` in it or anywhere (libxmlsec1 processes every Manifest's
//!   references, referenced or not).
//!
//! And nowhere in the document an element of the XInclude or XSLT namespaces, nor
//! anything quick-xml and libxml2 would read differently ([`hygiene`]: `<` in attribute
//! values, references in namespace declarations, prefixed `Algorithm`/`URI`/ID
//! attributes, duplicate IDs). The origin also parses the document strictly with
//! libxml2 before samael's recovering parser sees it, so a document that is not
//! well-formed never reaches recovery.
//!
//! Reason codes: `sso_saml_transform_refused` (a transform or canonicalisation outside
//! the list, XInclude or XSLT content), `sso_saml_algorithm_refused` (a signature or
//! digest algorithm outside the list, SHA-1 included), `sso_saml_reference_refused`
//! (not exactly one reference, or one that is not the holder's `#id`),
//! `sso_saml_keyinfo_refused` (key material other than the above, `RetrievalMethod`
//! first of all) and `sso_saml_malformed` (any other element inside a signature).

use std::collections::HashSet;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::XmlVersion;

use crate::{refused, Refused};

/// The XML-DSig namespace.
pub const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
/// The namespace of exclusive C14N's `InclusiveNamespaces`.
pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// The enveloped-signature transform.
pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
/// Accepted `CanonicalizationMethod` algorithms (and canonicalising transforms).
pub const CANONICALIZATIONS: &[&str] = &[EXC_C14N, "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"];
/// Accepted `Transform` algorithms.
pub const TRANSFORMS: &[&str] = &[ENVELOPED, EXC_C14N, "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"];
/// Accepted `SignatureMethod` algorithms.
pub const SIGNATURE_METHODS: &[&str] = &[
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
];
/// Accepted `DigestMethod` algorithms.
pub const DIGEST_METHODS: &[&str] = &[
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];
/// Most transforms one reference may list (genuine responses have two).
pub const MAX_TRANSFORMS: usize = 3;
/// Namespaces no element of a response may be in.
const FORBIDDEN_NAMESPACES: &[(&str, &str)] = &[
    ("http://www.w3.org/2001/XInclude", "XInclude"),
    ("http://www.w3.org/2003/XInclude", "XInclude"),
    ("http://www.w3.org/1999/XSL/Transform", "XSLT"),
];

/// Where an element sits, as far as the rules care.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Outside any signature (or in an `Object`, `KeyValue`).
    Free,
    Signature,
    SignedInfo,
    Canonicalization,
    SignatureMethod,
    Reference,
    Transforms,
    /// A transform; `true` for exclusive C14N (which may hold `InclusiveNamespaces`).
    Transform(bool),
    DigestMethod,
    InclusiveNamespaces,
    KeyInfo,
    X509Data,
    X509IssuerSerial,
    /// A value (`SignatureValue`, `DigestValue`, `X509Certificate`, …): no children.
    Value,
}

struct Frame {
    kind: Kind,
    /// The element's `ID` attribute (what a signature it holds must reference).
    id: Option<String>,
}

/// The signature being read: what it holds so far.
struct Open {
    depth: usize,
    holder_id: Option<String>,
    references: usize,
    canonicalizations: usize,
    methods: usize,
    transforms: usize,
}

/// Refuse a document whose signatures use anything but the accepted constructs (module
/// docs), or that holds XInclude or XSLT content.
pub fn refuse_signature_constructs(xml: &str) -> Result<(), Refused> {
    let mut reader = quick_xml::NsReader::from_str(xml);
    let mut stack: Vec<Frame> = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    let mut ids: HashSet<String> = HashSet::new();
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(|e| refused("sso_saml_malformed", e.to_string()))?;
        let namespace = match &ns {
            ResolveResult::Bound(Namespace(n)) => std::str::from_utf8(n).unwrap_or_default().to_string(),
            ResolveResult::Unknown(p) => {
                let p = String::from_utf8_lossy(p);
                return Err(refused("sso_saml_malformed", format!("undeclared namespace prefix {p}")));
            }
            ResolveResult::Unbound => String::new(),
        };
        match event {
            Event::Start(e) => {
                hygiene(&e, &mut ids)?;
                let frame = enter(&namespace, &e, &stack, &mut open)?;
                stack.push(frame);
            }
            Event::Empty(e) => {
                hygiene(&e, &mut ids)?;
                let frame = enter(&namespace, &e, &stack, &mut open)?;
                stack.push(frame);
                leave(&mut stack, &mut open)?;
            }
            Event::End(_) => leave(&mut stack, &mut open)?,
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// The frame of element `e` (in `ns`) entered under `stack`, after its checks.
fn enter(ns: &str, e: &BytesStart, stack: &[Frame], open: &mut Vec<Open>) -> Result<Frame, Refused> {
    if let Some((_, what)) = FORBIDDEN_NAMESPACES.iter().find(|(n, _)| *n == ns) {
        return Err(refused("sso_saml_transform_refused", format!("{what} element in the response")));
    }
    let local = e.local_name();
    let local = std::str::from_utf8(local.as_ref()).unwrap_or_default().to_string();
    let id = attribute(e, "ID")?;
    let parent = stack.last().map_or(Kind::Free, |f| f.kind);
    let dsig = ns == DSIG;
    // libxmlsec1 verifies every Manifest's references, referenced or not, with whatever
    // URIs, transforms and digests they name.
    if dsig && local == "Manifest" {
        return Err(refused("sso_saml_reference_refused", "a Manifest (its references would be processed)"));
    }
    if dsig && local == "Signature" && matches!(parent, Kind::Free) {
        open.push(Open {
            depth: stack.len() + 1,
            holder_id: stack.last().and_then(|f| f.id.clone()),
            references: 0,
            canonicalizations: 0,
            methods: 0,
            transforms: 0,
        });
        return Ok(Frame { kind: Kind::Signature, id });
    }
    let malformed = |what: &str| refused("sso_saml_malformed", format!("{what} element `{local}` in a signature"));
    let kind = match parent {
        Kind::Free => Kind::Free,
        Kind::Signature => match (dsig, local.as_str()) {
            (true, "SignedInfo") => Kind::SignedInfo,
            (true, "SignatureValue") => Kind::Value,
            (true, "KeyInfo") => Kind::KeyInfo,
            (true, "Object") => Kind::Free,
            _ => return Err(malformed("unexpected")),
        },
        Kind::SignedInfo => {
            let sig = open.last_mut().ok_or_else(|| malformed("stray"))?;
            match (dsig, local.as_str()) {
                (true, "CanonicalizationMethod") => {
                    sig.canonicalizations += 1;
                    allowed(e, CANONICALIZATIONS, "sso_saml_transform_refused", "canonicalization")?;
                    Kind::Canonicalization
                }
                (true, "SignatureMethod") => {
                    sig.methods += 1;
                    allowed(e, SIGNATURE_METHODS, "sso_saml_algorithm_refused", "signature method")?;
                    Kind::SignatureMethod
                }
                (true, "Reference") => {
                    sig.references += 1;
                    if sig.references > 1 {
                        return Err(refused("sso_saml_reference_refused", "more than one reference in a signature"));
                    }
                    let uri = attribute(e, "URI")?.unwrap_or_default();
                    let target = uri.strip_prefix('#').filter(|id| plain_id(id));
                    match (target, sig.holder_id.as_deref()) {
                        (Some(t), Some(holder)) if t == holder => {}
                        _ => {
                            return Err(refused(
                                "sso_saml_reference_refused",
                                format!("reference `{uri}` is not the ID of the signed element"),
                            ))
                        }
                    }
                    Kind::Reference
                }
                _ => return Err(malformed("unexpected")),
            }
        }
        Kind::Reference => match (dsig, local.as_str()) {
            (true, "Transforms") => Kind::Transforms,
            (true, "DigestMethod") => {
                allowed(e, DIGEST_METHODS, "sso_saml_algorithm_refused", "digest method")?;
                Kind::DigestMethod
            }
            (true, "DigestValue") => Kind::Value,
            _ => return Err(malformed("unexpected")),
        },
        Kind::Transforms => {
            if !(dsig && local == "Transform") {
                return Err(refused("sso_saml_transform_refused", format!("element `{local}` in Transforms")));
            }
            let sig = open.last_mut().ok_or_else(|| malformed("stray"))?;
            sig.transforms += 1;
            if sig.transforms > MAX_TRANSFORMS {
                return Err(refused("sso_saml_transform_refused", format!("more than {MAX_TRANSFORMS} transforms")));
            }
            let alg = allowed(e, TRANSFORMS, "sso_saml_transform_refused", "transform")?;
            Kind::Transform(alg != ENVELOPED)
        }
        Kind::Canonicalization | Kind::Transform(true) if ns == EXC_C14N && local == "InclusiveNamespaces" => {
            Kind::InclusiveNamespaces
        }
        Kind::Canonicalization | Kind::Transform(_) | Kind::InclusiveNamespaces => {
            return Err(refused("sso_saml_transform_refused", format!("`{local}` inside a transform")));
        }
        Kind::SignatureMethod | Kind::DigestMethod => {
            return Err(refused("sso_saml_algorithm_refused", format!("`{local}` inside an algorithm")));
        }
        Kind::KeyInfo => match (dsig, local.as_str()) {
            (true, "X509Data") => Kind::X509Data,
            (true, "KeyName") => Kind::Value,
            // Key values are numbers in elements: nothing in them is processed.
            (true, "KeyValue") => Kind::Free,
            _ => return Err(refused("sso_saml_keyinfo_refused", format!("`{local}` in KeyInfo"))),
        },
        Kind::X509Data => match (dsig, local.as_str()) {
            (true, "X509Certificate" | "X509SubjectName" | "X509SKI") => Kind::Value,
            (true, "X509IssuerSerial") => Kind::X509IssuerSerial,
            _ => return Err(refused("sso_saml_keyinfo_refused", format!("`{local}` in X509Data"))),
        },
        Kind::X509IssuerSerial => match (dsig, local.as_str()) {
            (true, "X509IssuerName" | "X509SerialNumber") => Kind::Value,
            _ => return Err(refused("sso_saml_keyinfo_refused", format!("`{local}` in X509IssuerSerial"))),
        },
        Kind::Value => return Err(malformed("an element inside a value:")),
    };
    Ok(Frame { kind, id })
}

/// Close the innermost element; a signature closing must have had its parts.
fn leave(stack: &mut Vec<Frame>, open: &mut Vec<Open>) -> Result<(), Refused> {
    let depth = stack.len();
    stack.pop();
    if open.last().is_some_and(|s| s.depth == depth) {
        let sig = open.pop().unwrap_or_else(|| unreachable!("checked above"));
        if sig.references != 1 {
            return Err(refused("sso_saml_reference_refused", "a signature without a reference"));
        }
        if sig.canonicalizations != 1 || sig.methods != 1 {
            return Err(refused("sso_saml_malformed", "a signature needs one canonicalization and one method"));
        }
    }
    Ok(())
}

/// What a well-formed response's attributes never hold, and where quick-xml and libxml2
/// (the parser samael uses, in recovery mode) would read the same bytes differently:
/// - `<` in a value (libxml2 recovers by ending the attribute and parsing the rest as
///   elements — a whole signature hidden from this check);
/// - a reference, whitespace or control character in a namespace declaration (libxml2
///   resolves `&#x23;`, quick-xml binds the raw text);
/// - a prefixed `Algorithm`, `URI` or ID attribute, `xml:id` included (libxmlsec1 and
///   samael read these by local name, whatever the prefix);
/// - one ID value on two elements (`wrapping_refused`: a reference must name one element).
fn hygiene(e: &BytesStart, ids: &mut HashSet<String>) -> Result<(), Refused> {
    for a in e.attributes().with_checks(true) {
        let a = a.map_err(|err| refused("sso_saml_malformed", err.to_string()))?;
        let key = std::str::from_utf8(a.key.as_ref()).unwrap_or_default();
        if a.value.contains(&b'<') {
            return Err(refused("sso_saml_malformed", format!("`<` in the value of {key}")));
        }
        let (prefix, local) = key.split_once(':').map_or(("", key), |(p, l)| (p, l));
        if key == "xmlns" || prefix == "xmlns" {
            if a.value.iter().any(|&b| b == b'&' || b <= b' ') {
                return Err(refused("sso_saml_malformed", format!("a reference or space in namespace {key}")));
            }
            continue;
        }
        let sensitive = matches!(local, "Algorithm" | "URI" | "ID" | "Id" | "id" | "AssertionID");
        if !prefix.is_empty() && sensitive {
            return Err(refused("sso_saml_malformed", format!("prefixed attribute {key}")));
        }
        if matches!(local, "ID" | "Id" | "id" | "AssertionID") {
            let v = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| refused("sso_saml_malformed", err.to_string()))?;
            if !ids.insert(v.into_owned()) {
                return Err(refused("sso_saml_wrapping_refused", "two elements with one ID"));
            }
        }
    }
    Ok(())
}

/// Attribute `name` (unprefixed), its entity and character references resolved.
fn attribute(e: &BytesStart, name: &str) -> Result<Option<String>, Refused> {
    for a in e.attributes() {
        let a = a.map_err(|err| refused("sso_saml_malformed", err.to_string()))?;
        if a.key.as_ref() == name.as_bytes() {
            let v = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| refused("sso_saml_malformed", err.to_string()))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// The `Algorithm` of `e` if it is one of `list`; else refused with `reason`.
fn allowed(e: &BytesStart, list: &[&str], reason: &'static str, what: &str) -> Result<String, Refused> {
    let alg = attribute(e, "Algorithm")?
        .ok_or_else(|| refused("sso_saml_malformed", format!("a {what} without Algorithm")))?;
    if !list.contains(&alg.as_str()) {
        return Err(refused(reason, format!("{what} {alg}")));
    }
    Ok(alg)
}

/// An XML ID as IdPs write them (an NCName: no parentheses, so no `xpointer(…)`).
fn plain_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && id.len() <= 256
}

#[cfg(test)]
#[path = "signature_tests.rs"]
mod tests;
