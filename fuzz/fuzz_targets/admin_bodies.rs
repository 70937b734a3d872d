//! Fuzz the origin admin API's JSON bodies (`gatehouse-admin-bodies`): each body type
//! as `serde_json` reads it (what axum's `Json` extractor does), then the checks its
//! handler runs before the caller or the database are looked at.
//!
//! The first byte picks the body type (and, for a role, the first line is the role's
//! name from the path); the rest is the JSON body.
//!
//! Invariants (a panic here is a finding):
//! - no body panics;
//! - a body that parses, written back as JSON, parses to the same value;
//! - every refusal's code is one of `REFUSAL_CODES` (and the one its field calls for),
//!   with a message;
//! - what the checks accept meets what they promise: slugs of 2–40 of `a-z0-9-`,
//!   normalised email addresses that normalise to themselves, passwords of 10 characters
//!   and at most 256 bytes, names within their bounds, `resource:action` permissions,
//!   sign-in policies whose lifetimes are ordered and methods unique;
//! - a tenant policy the checks accept, composed with the default template, is a bundle
//!   every edge loads: it validates, signs, opens to the same body and compiles into an
//!   engine; a template that is acceptable compiles too.
#![no_main]

use std::fmt::Debug;

use gatehouse_admin_bodies::auth_policy::AuthPolicy;
use gatehouse_admin_bodies::bodies::{
    ConfirmDeletion, CreateKey, CreateOrg, CreateTeam, CreateUser, PatchOrg, PutPolicy, PutRole, PutTemplate, SetRole,
    MAX_CONFIRMATION, MAX_DISPLAY_NAME, MAX_KEY_NAME, MAX_KEY_SCOPES, MAX_ROLE_PERMISSIONS,
};
use gatehouse_admin_bodies::names::{normalise_email, MAX_PASSWORD, MIN_PASSWORD};
use gatehouse_admin_bodies::tenant_policy::{check_tenant_policy, default_template, template_acceptable, TenantPolicy};
use gatehouse_admin_bodies::{Refusal, REFUSAL_CODES};
use gatehouse_core::bundle::{self, BundleBody, FORMAT_VERSION};
use gatehouse_core::policy::valid_permission;
use gatehouse_core::{BundleInfo, Engine};
use gatehouse_fuzz::fixtures::{self, NOW};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn parse<T: DeserializeOwned + Serialize + PartialEq + Debug>(json: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(json).ok()?;
    let text = serde_json::to_vec(&v).expect("a parsed body encodes");
    let again: T = serde_json::from_slice(&text).unwrap_or_else(|e| panic!("a body written back is refused: {e}"));
    assert_eq!(again, v, "a body written back parses differently");
    Some(v)
}

/// A refusal is one of the stable codes, and one of those `allowed` here.
fn refusal<T>(r: &Result<T, Refusal>, allowed: &[&str]) {
    if let Err(e) = r {
        assert!(REFUSAL_CODES.contains(&e.code), "unlisted refusal code {:?}", e.code);
        assert!(allowed.contains(&e.code), "refused with {:?}, expected one of {allowed:?}", e.code);
        assert!(!e.message.is_empty(), "refusal {:?} without a message", e.code);
    }
}

fn slug_ok(s: &str) {
    assert!((2..=40).contains(&s.len()) && !s.starts_with('-') && !s.ends_with('-'), "slug {s:?}");
    assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "slug {s:?}");
}

fn email_ok(e: &str) {
    assert_eq!(normalise_email(e).as_deref(), Some(e), "normalised address {e:?} does not normalise to itself");
    assert!(e.len() <= 254 && e.contains('@') && e == e.to_ascii_lowercase(), "address {e:?}");
}

fn password_ok(p: &str) {
    assert!(p.chars().count() >= MIN_PASSWORD && p.len() <= MAX_PASSWORD, "password of {} bytes", p.len());
}

fn display_name_ok(n: &str, max: usize) {
    assert!(!n.trim().is_empty() && n.len() <= max, "name of {} bytes", n.len());
}

/// The template plus `tp` as organisation `slug` on `tier`, published as a bundle.
fn publishes(slug: &str, tier: &str, tp: &TenantPolicy) {
    let template = default_template();
    let r = check_tenant_policy(&template, slug, tier, tp);
    refusal(&r, &["invalid_policy"]);
    if r.is_err() {
        return;
    }
    let mut policy = template;
    policy.orgs.insert(slug.to_string(), tp.clone().into_org(tier.to_string(), Default::default(), Vec::new(), None));
    assert!(policy.validate().is_ok(), "an accepted tenant policy does not validate");
    let body = BundleBody {
        format: FORMAT_VERSION,
        revision: 1,
        region: "fuzz".into(),
        issued_at: NOW,
        expires_at: NOW + 3600,
        policy,
    };
    let signed = bundle::sign(&body, &fixtures::bundle_keypair()).expect("signs");
    let opened = bundle::open(&signed, &fixtures::bundle_public_key(), NOW)
        .unwrap_or_else(|e| panic!("the edges refuse an accepted tenant policy's bundle: {e}"));
    assert_eq!(opened, body, "the bundle opens to another body");
    Engine::from_body(opened, &fixtures::secrets())
        .unwrap_or_else(|e| panic!("an accepted tenant policy does not compile: {e}"));
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, json)) = data.split_first() else { return };
    match sel % 11 {
        0 => {
            let Some(b) = parse::<CreateOrg>(json) else { return };
            let names = b.check_names();
            refusal(&names, &["invalid_slug", "invalid_name"]);
            if names.is_ok() {
                slug_ok(&b.slug);
                display_name_ok(&b.name, MAX_DISPLAY_NAME);
                publishes(&b.slug, &b.tier, &b.policy);
            }
            let owner = b.check_owner();
            refusal(&owner, &["invalid_email", "weak_password"]);
            if let Ok(email) = owner {
                email_ok(&email);
                password_ok(&b.owner_password);
            }
        }
        1 => {
            let Some(b) = parse::<PutPolicy>(json) else { return };
            publishes("acme", b.tier.as_deref().unwrap_or("free"), &b.policy);
        }
        2 => {
            let Some(p) = parse::<PutTemplate>(json) else { return };
            let r = template_acceptable(&p);
            if r.is_ok() {
                assert!(p.orgs.is_empty() && p.issuers.is_empty(), "a template with organisations or issuers");
                let info = BundleInfo { revision: 1, region: "fuzz".into(), issued_at: NOW, expires_at: NOW + 3600 };
                Engine::new(&p, info, &fixtures::secrets())
                    .unwrap_or_else(|e| panic!("an acceptable template does not compile: {e}"));
            }
        }
        3 => {
            let Some(b) = parse::<PatchOrg>(json) else { return };
            let r = b.check();
            refusal(&r, &["invalid_name"]);
            if let (Ok(()), Some(n)) = (&r, &b.name) {
                display_name_ok(n, MAX_DISPLAY_NAME);
                assert!(!n.chars().any(char::is_control), "control character in {n:?}");
            }
        }
        4 => {
            let Some(b) = parse::<ConfirmDeletion>(json) else { return };
            let r = b.check();
            refusal(&r, &["confirmation_invalid"]);
            assert_eq!(r.is_ok(), b.confirm.len() <= MAX_CONFIRMATION);
        }
        5 => {
            let Some(b) = parse::<CreateKey>(json) else { return };
            let now = NOW as i64;
            let r = b.check(now);
            refusal(&r, &["invalid_name", "invalid_scope", "invalid_expiry"]);
            if r.is_ok() {
                display_name_ok(&b.name, MAX_KEY_NAME);
                assert!(b.scopes.len() <= MAX_KEY_SCOPES && b.scopes.iter().all(|s| valid_permission(s)));
                assert!(b.expires_at.is_none_or(|e| e > now), "expired key accepted");
            }
        }
        6 => {
            let (name, body) = match json.iter().position(|&b| b == b'\n') {
                Some(i) => (&json[..i], &json[i + 1..]),
                None => (&b"auditor"[..], json),
            };
            let Ok(name) = std::str::from_utf8(name) else { return };
            let Some(b) = parse::<PutRole>(body) else { return };
            let r = b.check(name);
            refusal(&r, &["invalid_role", "invalid_permission"]);
            if r.is_ok() {
                slug_ok(name);
                assert!(gatehouse_admin_bodies::bodies::role_rank(name).is_none(), "built-in role {name} redefined");
                assert!((1..=MAX_ROLE_PERMISSIONS).contains(&b.permissions.len()));
                assert!(b.permissions.iter().all(|p| valid_permission(p)));
            }
        }
        7 => {
            let Some(b) = parse::<CreateTeam>(json) else { return };
            let r = b.check();
            refusal(&r, &["invalid_name"]);
            if r.is_ok() {
                slug_ok(&b.name);
            }
        }
        8 => {
            let Some(b) = parse::<CreateUser>(json) else { return };
            let r = b.check();
            refusal(&r, &["invalid_email", "invalid_name", "weak_password"]);
            if let Ok(email) = r {
                email_ok(&email);
                assert!(b.name.len() <= MAX_DISPLAY_NAME);
                if let Some(p) = &b.password {
                    password_ok(p);
                }
            }
        }
        9 => {
            let _ = parse::<SetRole>(json);
        }
        _ => {
            let Some(p) = parse::<AuthPolicy>(json) else { return };
            let r = p.validate();
            if let Err(m) = &r {
                assert!(m.contains(": "), "a sign-in policy refusal without its field: {m}");
            } else {
                assert!(!p.mfa_required || !p.mfa_methods.is_empty(), "MFA required without methods");
                let mut m = p.mfa_methods.clone();
                m.sort();
                m.dedup();
                assert_eq!(m.len(), p.mfa_methods.len(), "a method listed twice");
                if let (Some(i), Some(l)) = (p.session_idle_timeout_secs, p.session_max_lifetime_secs) {
                    assert!(i <= l, "idle timeout longer than the lifetime");
                }
                let stored = serde_json::to_string(&p).expect("encodes");
                assert_eq!(AuthPolicy::from_stored(&stored).ok(), Some(p), "the stored policy reads differently");
            }
        }
    }
});
