use super::*;
use crate::bundle::tests::{kp, pk};
use crate::bundle::{sign, FORMAT_VERSION};
use crate::policy::Policy;

fn body(expires_at: u64) -> BundleBody {
    BundleBody {
        format: FORMAT_VERSION,
        revision: 7,
        region: "eu".into(),
        issued_at: 1_000,
        expires_at,
        policy: Policy::default(),
    }
}
fn sealer(k: u8) -> Sealer {
    Sealer::new(&[k; 32]).unwrap()
}
fn identity() -> Identity {
    let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (kind, sub, org) = (CredentialKind::Jwt, "user-1".to_string(), "acme".to_string());
    let (roles, scopes, teams, amr) = (list(&["admin"]), Some(list(&["read"])), list(&["core"]), list(&["pwd", "otp"]));
    let (sid, jti) = (Some("sess-1".to_string()), Some("jti-1".to_string()));
    Identity::new(kind, sub, org, roles, scopes, teams, amr, sid, jti, Some(1_900), "x-gatehouse-")
        .with_authentication(Some(1_100), Some("mfa".into()))
        .with_actor(Some("operator".into()))
}

#[test]
fn short_keys_are_refused() {
    assert_eq!(Sealer::new(&[1; 31]).unwrap_err(), KeyTooShort);
    assert!(Sealer::new(&[1; 32]).is_ok());
    assert_eq!(format!("{:?}", sealer(1)), "Sealer(<redacted>)");
}

#[test]
fn a_bundle_is_verified_once_then_known_by_its_entry() {
    let b = sign(&body(2_000), &kp(1)).unwrap();
    let s = sealer(9);
    let first = s.open_bundle(&b, &pk(1), 1_500, None).unwrap();
    let entry = first.store.clone().expect("an entry to store after the signature check");
    let again = s.open_bundle(&b, &pk(1), 1_500, Some(&entry)).unwrap();
    assert!(again.store.is_none(), "a known bundle writes nothing");
    assert_eq!(again.body, first.body);
    assert_eq!(again.tag, first.tag);
    // The entry binds the pinned key: under another key the check runs (and fails).
    assert!(matches!(s.open_bundle(&b, &pk(2), 1_500, Some(&entry)), Err(BundleError::WrongKey { .. })));
}

#[test]
fn a_known_bundle_is_still_refused_when_expired_or_not_yet_valid() {
    let b = sign(&body(2_000), &kp(1)).unwrap();
    let s = sealer(9);
    let entry = s.open_bundle(&b, &pk(1), 1_500, None).unwrap().store.unwrap();
    assert!(matches!(s.open_bundle(&b, &pk(1), 2_001, Some(&entry)), Err(BundleError::Expired { .. })));
    assert!(matches!(s.open_bundle(&b, &pk(1), 600, Some(&entry)), Err(BundleError::NotYetValid { .. })));
}

#[test]
fn a_forged_bundle_with_a_forged_entry_is_refused() {
    // The attacker writes the store but does not hold the sealing key.
    let b = sign(&body(2_000), &kp(1)).unwrap();
    let mut env: crate::bundle::Envelope = rmp_serde::from_slice(&b).unwrap();
    env.body = rmp_serde::to_vec_named(&body(u64::MAX)).unwrap();
    let forged = rmp_serde::to_vec_named(&env).unwrap();
    let s = sealer(9);
    let attacker = sealer(8).open_bundle(&b, &pk(1), 1_500, None).unwrap().store.unwrap();
    for entry in [attacker, vec![0; 32], vec![], s.open_bundle(&b, &pk(1), 1_500, None).unwrap().store.unwrap()] {
        assert_eq!(
            s.open_bundle(&forged, &pk(1), 1_500, Some(&entry)).err(),
            Some(BundleError::BadSignature),
            "entry {entry:?}"
        );
    }
}

#[test]
fn a_token_entry_round_trips_with_every_field() {
    let s = sealer(9);
    let e = s.token_entry(&[7; 32], "header.payload.signature");
    let stored = s.seal_token(&e, &identity(), 1_930);
    let (id, until) = s.open_token(&e, &stored, 1_500, "x-gatehouse-").unwrap();
    assert_eq!(id, identity());
    assert_eq!(until, 1_930);
    assert_eq!(id.upstream_headers(), identity().upstream_headers());
    // Valid through its last second, not after.
    assert!(s.open_token(&e, &stored, 1_930, "x-gatehouse-").is_some());
    assert!(s.open_token(&e, &stored, 1_931, "x-gatehouse-").is_none());
}

#[test]
fn a_token_entry_opens_for_exactly_its_token_bundle_and_key() {
    let s = sealer(9);
    let e = s.token_entry(&[7; 32], "token-a");
    let stored = s.seal_token(&e, &identity(), 1_930);
    // Another token, another bundle, another key: misses, even in the same slot.
    for other in [s.token_entry(&[7; 32], "token-b"), s.token_entry(&[6; 32], "token-a")] {
        let same_slot = TokenEntry { key: e.key.clone(), tag: other.tag };
        assert!(s.open_token(&same_slot, &stored, 1_500, "p-").is_none());
    }
    assert!(sealer(8).open_token(&sealer(8).token_entry(&[7; 32], "token-a"), &stored, 1_500, "p-").is_none());
    // Moved to another slot key: the MAC covers the key.
    let moved = TokenEntry { key: "gatehouse:token:99999".into(), tag: e.tag };
    assert!(s.open_token(&moved, &stored, 1_500, "p-").is_none());
}

#[test]
fn a_changed_truncated_or_oversized_entry_is_a_miss() {
    let s = sealer(9);
    let e = s.token_entry(&[7; 32], "token-a");
    let stored = s.seal_token(&e, &identity(), 1_930);
    for i in 0..stored.len() {
        let mut t = stored.clone();
        t[i] ^= 0x20;
        assert!(s.open_token(&e, &t, 1_500, "p-").is_none(), "flip at {i} opened");
    }
    for n in [0, 1, 31, 63, stored.len() - 1] {
        assert!(s.open_token(&e, &stored[..n], 1_500, "p-").is_none(), "{n} bytes opened");
    }
    let mut long = stored.clone();
    long.resize(MAX_ENTRY_BYTES + 1, 0);
    assert!(s.open_token(&e, &long, 1_500, "p-").is_none());
}

#[test]
fn token_entries_stay_in_a_bounded_set_of_slots() {
    let s = sealer(9);
    let mut slots = std::collections::HashSet::new();
    for i in 0..20_000 {
        let key = s.token_entry(&[1; 32], &format!("token-{i}")).key;
        let n: u32 = key.strip_prefix("gatehouse:token:").unwrap().parse().unwrap();
        assert!(n < TOKEN_SLOTS);
        slots.insert(n);
    }
    assert!(slots.len() > (TOKEN_SLOTS as usize) * 9 / 10, "tokens spread over the slots: {}", slots.len());
}

#[test]
fn the_identity_reader_refuses_every_malformed_form() {
    // Entries are read only under their MAC; the reader is bounded anyway.
    let mut w = Writer::default();
    write_identity(&mut w, &identity(), 1_930);
    let good = w.0;
    assert_eq!(read_identity(&good, "x-gatehouse-"), Some((identity(), 1_930)));
    for n in 0..good.len() {
        assert!(read_identity(&good[..n], "p-").is_none(), "{n} bytes read");
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(read_identity(&trailing, "p-").is_none());
    // A list claiming four billion entries: refused before allocating.
    let mut huge = Writer::default();
    huge.str("jwt");
    huge.str("s");
    huge.str("o");
    huge.0.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(read_identity(&huge.0, "p-").is_none());
    // A presence byte other than 0 or 1, an unknown kind, text that is not UTF-8.
    let mut bad_flag = Writer::default();
    write_identity(&mut bad_flag, &identity(), 9);
    // kind "jwt", subject "user-1", org "acme", roles ["admin"]: then the scopes flag.
    let at = (4 + 3) + (4 + 6) + (4 + 4) + (4 + 4 + 5);
    assert_eq!(bad_flag.0[at], 1);
    bad_flag.0[at] = 2;
    assert!(read_identity(&bad_flag.0, "p-").is_none());
    let mut kind = Writer::default();
    kind.str("password");
    assert!(read_identity(&kind.0, "p-").is_none());
    let mut utf8 = good.clone();
    utf8[4] = 0xff;
    assert!(read_identity(&utf8, "p-").is_none());
}
