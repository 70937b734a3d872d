//! Fuzz the SAML pre-checks (`gatehouse-saml-guard`) with arbitrary bytes.
//!
//! Invariants (a panic here is a finding):
//! - no check panics, on any input;
//! - every refusal's reason starts with `sso_saml_` and its detail is bounded
//!   (200 bytes plus the `…` marker);
//! - `precheck(x)` accepting implies `refuse_wrapping(x)` and
//!   `refuse_signature_constructs(x)` accepting;
//! - `decode_response(base64(x))` returns `Ok(x)` exactly when `x` is UTF-8, `precheck(x)`
//!   accepts and the base64 fits in `MAX_RESPONSE_B64`; over the limit it is refused with
//!   `sso_saml_too_large`.
#![no_main]

use base64::Engine as _;
use gatehouse_saml_guard::{
    decode_response, precheck, refuse_dangerous_xml, refuse_signature_constructs, refuse_wrapping, Refused,
    MAX_RESPONSE_B64,
};
use libfuzzer_sys::fuzz_target;

/// 200 bytes of detail and the 3-byte `…` appended when it was cut.
const MAX_DETAIL_BYTES: usize = 200 + '…'.len_utf8();

fn check<T>(what: &str, r: &Result<T, Refused>) {
    if let Err(e) = r {
        assert!(e.reason.starts_with("sso_saml_"), "{what}: reason {:?} without the sso_saml_ prefix", e.reason);
        assert!(
            e.detail.len() <= MAX_DETAIL_BYTES,
            "{what}: detail of {} bytes (at most {MAX_DETAIL_BYTES}): {:?}",
            e.detail.len(),
            e.detail
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let text = std::str::from_utf8(data).ok();
    let mut pre = None;
    if let Some(xml) = text {
        let p = precheck(xml);
        check("precheck", &p);
        let dangerous = refuse_dangerous_xml(xml);
        check("refuse_dangerous_xml", &dangerous);
        let wrapping = refuse_wrapping(xml);
        check("refuse_wrapping", &wrapping);
        let signature = refuse_signature_constructs(xml);
        check("refuse_signature_constructs", &signature);
        if p.is_ok() {
            assert!(dangerous.is_ok(), "precheck accepted what refuse_dangerous_xml refuses: {dangerous:?}");
            assert!(wrapping.is_ok(), "precheck accepted what refuse_wrapping refuses: {wrapping:?}");
            assert!(signature.is_ok(), "precheck accepted what refuse_signature_constructs refuses: {signature:?}");
        }
        // The raw text as a SAMLResponse (mostly not base64: the decode error path).
        let raw = decode_response(xml);
        check("decode_response(raw)", &raw);
        if let Ok(decoded) = &raw {
            assert!(precheck(decoded).is_ok(), "decode_response returned a document precheck refuses");
        }
        pre = Some(p);
    }

    // The bytes as the IdP would post them: base64, so the XML checks are reached.
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let decoded = decode_response(&b64);
    check("decode_response(base64)", &decoded);
    if b64.len() > MAX_RESPONSE_B64 {
        let e = decoded.expect_err("a response over MAX_RESPONSE_B64 was accepted");
        assert_eq!(e.reason, "sso_saml_too_large", "over the limit: {e:?}");
        return;
    }
    match (text, pre) {
        (Some(xml), Some(Ok(()))) => {
            let got = decoded.unwrap_or_else(|e| panic!("precheck accepts, decode_response(base64) refuses: {e:?}"));
            assert_eq!(got, xml, "decode_response did not return the posted document");
        }
        (Some(_), Some(Err(p))) => {
            let e = decoded.expect_err("precheck refuses, decode_response(base64) accepts");
            assert_eq!(e, p, "decode_response(base64) refused for another reason than precheck");
        }
        _ => {
            let e = decoded.expect_err("decode_response(base64) accepted bytes that are not UTF-8");
            assert_eq!(e.reason, "sso_saml_malformed", "not UTF-8: {e:?}");
        }
    }
});
