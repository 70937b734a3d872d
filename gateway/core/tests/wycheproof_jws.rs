//! Wycheproof JSON Web Signature vectors through the engine's own verification. No
//! `invalid` case may verify. `valid` cases often carry payloads that are not JWT claims,
//! so they may still be refused at the claims stage — but never for a bad signature when
//! the key and algorithm are supported.

mod common;

#[test]
fn no_invalid_vector_verifies() {
    common::wycheproof::check_wycheproof(None);
}
