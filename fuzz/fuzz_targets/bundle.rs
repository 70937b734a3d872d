//! Fuzz bundle loading (`gatehouse_core::bundle::open`): envelope parse, format and key
//! checks, the Ed25519 signature, the body and the policy's validation.
//!
//! The first byte picks how the rest is used:
//! - even: the rest is a bundle file (the committed seeds are bundles signed with the
//!   fixed test key, so mutations reach the body until they touch the signed bytes);
//! - odd: the rest is a bundle *body*, which the target signs with the fixed key, so
//!   every mutation of the body gets past the signature.
//!
//! Invariants (a panic here is a finding):
//! - no input panics;
//! - an accepted bundle's policy validates, the body is within its validity window, and
//!   re-signing the body gives a bundle that opens to the same body;
//! - a refusal fits the input: `TooLarge` only past `MAX_BUNDLE_BYTES`, `Expired` /
//!   `NotYetValid` only when the signed body says so, and a correctly signed body is
//!   never refused for its signature or key;
//! - for a signed body, `open` answers exactly what decoding the body directly
//!   (`msgpack::from_slice::<BundleBody>`), checking its format and validating its policy
//!   answer;
//! - an accepted body compiles into an engine, or is refused with `EngineError::Keys`.
#![no_main]

use gatehouse_core::bundle::{self, BundleBody, BundleError, FORMAT_VERSION, MAX_BUNDLE_BYTES};
use gatehouse_core::{msgpack, Engine, EngineError};
use gatehouse_fuzz::fixtures::{self, NOW};
use libfuzzer_sys::fuzz_target;

fn accepted(body: &BundleBody) {
    assert_eq!(body.format, FORMAT_VERSION);
    assert!(body.policy.validate().is_ok(), "an opened bundle's policy does not validate");
    let resigned = bundle::sign(body, &fixtures::bundle_keypair()).expect("an opened body signs");
    let reopened =
        bundle::open_unchecked_time(&resigned, &fixtures::bundle_public_key()).expect("re-signed body refused");
    assert_eq!(&reopened, body, "re-signed body opens differently");
    match Engine::from_body(body.clone(), &fixtures::secrets()) {
        Ok(_) | Err(EngineError::Keys(_)) => {}
        Err(e) => panic!("an opened bundle does not compile: {e}"),
    }
}

/// `open` at `NOW` agrees with `open_unchecked_time` and the validity window.
fn timed(bytes: &[u8]) -> Result<BundleBody, BundleError> {
    let pinned = fixtures::bundle_public_key();
    let untimed = bundle::open_unchecked_time(bytes, &pinned);
    let timed = bundle::open(bytes, &pinned, NOW);
    match (&untimed, &timed) {
        (Ok(b), Ok(t)) => {
            assert_eq!(b, t);
            assert!(NOW <= b.expires_at && b.issued_at <= NOW + 300, "accepted outside its validity window");
        }
        (Ok(b), Err(BundleError::Expired { expires_at, now })) => {
            assert_eq!((*expires_at, *now), (b.expires_at, NOW));
            assert!(NOW > b.expires_at);
        }
        (Ok(b), Err(BundleError::NotYetValid { issued_at, now })) => {
            assert_eq!((*issued_at, *now), (b.issued_at, NOW));
            assert!(b.issued_at > NOW + 300);
        }
        (Ok(_), Err(e)) => panic!("open_unchecked_time accepts, open refuses with {e:?}"),
        (Err(u), t) => assert_eq!(Err(u), t.as_ref(), "open and open_unchecked_time refuse differently"),
    }
    if bytes.len() > MAX_BUNDLE_BYTES {
        assert_eq!(untimed, Err(BundleError::TooLarge));
    } else {
        assert_ne!(untimed, Err(BundleError::TooLarge), "TooLarge under the limit");
    }
    untimed
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        if let Ok(body) = timed(rest) {
            accepted(&body);
        }
        return;
    }
    // A body signed with the pinned key: only the body's content can refuse it.
    let opened = timed(&fixtures::signed_envelope(rest));
    let direct = msgpack::from_slice::<BundleBody>(rest);
    match (&direct, &opened) {
        (Err(_), Err(BundleError::Malformed(_))) => {}
        (Err(e), r) => panic!("the body does not decode ({e}), but open answers {r:?}"),
        (Ok(b), r) if b.format != FORMAT_VERSION => {
            assert_eq!(r, &Err(BundleError::UnsupportedFormat { found: b.format }))
        }
        (Ok(b), r) => match b.policy.validate() {
            Err(issues) => assert_eq!(r, &Err(BundleError::Policy(issues))),
            Ok(()) => {
                assert_eq!(r.as_ref(), Ok(b), "a valid signed body was refused");
                accepted(b);
            }
        },
    }
    if let Err(e) = &opened {
        assert!(
            !matches!(e, BundleError::BadSignature | BundleError::WrongKey { .. } | BundleError::TooLarge),
            "a correctly signed body was refused with {e:?}"
        );
    }
});
