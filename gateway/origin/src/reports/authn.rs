//! The authentication report: in the period, completed sign-ins by method (password,
//! passkey, SSO) and with a second factor, refused sign-ins by reason, lockouts, step-ups;
//! and, as of now, MFA adoption.
//!
//! A completed sign-in is a `session.create` record: every way of signing in opens one
//! session, once (an SSO sign-in with a second step writes `sso.success` and later
//! `signin.success`, but one session). Its method comes from the records of the same
//! request: the session's `idp` (SSO), `signin.success` with `passwordless` (passkey),
//! else a password; a second factor from the `amr` those records carry. The session an
//! impersonation opens (its record carries `act`) is counted apart, not as a sign-in.

use std::collections::{BTreeMap, HashSet};

use libsql::Connection;
use serde::Serialize;
use serde_json::json;

use crate::audit::Record;
use crate::error::ApiResult;

use super::source::{self, after, user_id};
use super::{figure, Body, Options, Table};

/// Refused sign-ins, each with what it means.
const REFUSALS: &[(&str, &str)] = &[
    ("signin.failure", "wrong password or unknown account"),
    ("signin.lockout", "the failure that locked the account"),
    ("signin.locked", "refused: account locked"),
    ("signin.disabled", "refused: account deactivated"),
    ("signin.email_unverified", "refused: email not verified"),
    ("signin.sso_required", "refused: the organisation requires SSO"),
    ("sso.failure", "SSO response refused"),
    ("mfa.failure", "wrong second factor"),
    ("mfa.lockout", "the second-factor failure that locked the account"),
    ("mfa.locked", "refused: second factor locked"),
    ("mfa.method_not_allowed", "refused: second-factor method not allowed"),
];
/// The refusals that lock an account.
const LOCKOUTS: &[&str] = &["signin.lockout", "mfa.lockout"];
/// Authentication methods (RFC 8176) that are a second factor or a phishing-resistant
/// first one.
const SECOND_FACTORS: &[&str] = &["otp", "hwk", "swk", "mfa"];

#[derive(Debug, Default, Serialize)]
struct Methods {
    password: u64,
    passkey: u64,
    sso: u64,
}

/// What the records of the request being read said so far.
#[derive(Debug, Default)]
struct Pending {
    request: Option<String>,
    amr: Vec<String>,
    passwordless: bool,
}

#[derive(Debug, Default)]
struct Tally {
    pending: Pending,
    signins: u64,
    methods: Methods,
    with_second_factor: u64,
    users: HashSet<String>,
    refusals: BTreeMap<&'static str, u64>,
    step_ups: u64,
    impersonations: u64,
}

impl Tally {
    fn visit(&mut self, r: &Record) {
        if self.pending.request != r.request_id {
            self.pending = Pending { request: r.request_id.clone(), ..Default::default() };
        }
        let a = after(r);
        match r.action.as_str() {
            "signin.success" | "sso.success" => {
                if let Some(list) = a["amr"].as_array() {
                    self.pending.amr.extend(list.iter().filter_map(|m| m.as_str().map(String::from)));
                }
                self.pending.passwordless |= a["passwordless"].as_bool().unwrap_or(false);
            }
            // An impersonation's session is no sign-in of its user.
            "session.create" if r.act.is_some() || a["impersonation"].is_string() => self.impersonations += 1,
            "session.create" => {
                self.signins += 1;
                if a["idp"].is_string() {
                    self.methods.sso += 1;
                } else if self.pending.passwordless {
                    self.methods.passkey += 1;
                } else {
                    self.methods.password += 1;
                }
                if self.pending.amr.iter().any(|m| SECOND_FACTORS.contains(&m.as_str())) {
                    self.with_second_factor += 1;
                }
                if let Some(u) = user_id(&r.actor) {
                    self.users.insert(u.to_string());
                }
            }
            "session.step_up" => self.step_ups += 1,
            other => {
                if let Some((action, _)) = REFUSALS.iter().find(|(a, _)| *a == other) {
                    *self.refusals.entry(action).or_default() += 1;
                }
            }
        }
    }
}

/// Build the authentication report of the period; MFA adoption as of `now`.
pub(super) async fn build(conn: &Connection, o: &Options, now: i64) -> ApiResult<Body> {
    let mut t = Tally::default();
    let read = source::in_period(conn, &o.period, |r| t.visit(r)).await?;
    let (mut enabled, mut with_mfa) = (0u64, 0u64);
    for u in source::all_users(conn, now).await?.iter().filter(|u| !u.disabled) {
        enabled += 1;
        if !source::confirmed_factors(conn, &u.id).await?.is_empty() {
            with_mfa += 1;
        }
    }
    let refused: u64 = t.refusals.values().sum();
    let lockouts: u64 = LOCKOUTS.iter().map(|a| t.refusals.get(a).copied().unwrap_or(0)).sum();
    let summary = vec![
        figure("signins", "Completed sign-ins (sessions opened)", t.signins),
        figure("signins_password", "… with a password", t.methods.password),
        figure("signins_passkey", "… with a passkey (passwordless)", t.methods.passkey),
        figure("signins_sso", "… through SSO", t.methods.sso),
        figure("signins_with_second_factor", "… with a second factor", t.with_second_factor),
        figure("users_signed_in", "Distinct users who signed in", t.users.len() as u64),
        figure("failures", "Refused sign-ins (every reason)", refused),
        figure("lockouts", "Accounts locked by failures", lockouts),
        figure("step_ups", "Step-ups (re-authentication of a session)", t.step_ups),
        figure(
            "impersonation_sessions",
            "Sessions opened by an impersonation (not counted as sign-ins)",
            t.impersonations,
        ),
        figure("users_enabled", "Enabled users now", enabled),
        figure("users_with_mfa", "Enabled users with a confirmed second factor now", with_mfa),
        figure("mfa_adoption", "Share of enabled users with a second factor", source::ratio(with_mfa, enabled)),
        figure("records_read", "Audit records read for the period", read),
    ];
    let rows = REFUSALS
        .iter()
        .map(|(a, meaning)| {
            vec![a.to_string(), meaning.to_string(), t.refusals.get(a).copied().unwrap_or(0).to_string()]
        })
        .collect();
    let failures: BTreeMap<&str, u64> = t.refusals.clone();
    Ok(Body {
        summary,
        details: json!({ "methods": t.methods, "failures_by_action": failures }),
        tables: vec![Table {
            name: "failures",
            title: "Refused sign-ins by reason",
            columns: vec!["action", "meaning", "count"],
            rows,
        }],
        notes: vec!["MFA adoption is the state at generation time, not at the end of the period.".into()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: i64, request: &str, actor: &str, action: &str, after: Option<serde_json::Value>) -> Record {
        Record {
            seq,
            at: seq,
            actor: actor.into(),
            action: action.into(),
            target: actor.into(),
            before: None,
            after: after.map(|v| v.to_string()),
            ip: None,
            user_agent: None,
            request_id: Some(request.into()),
            act: None,
            sealed: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn methods_and_second_factors_come_from_the_records_of_the_same_request() {
        let mut t = Tally::default();
        let recs = [
            // A password sign-in.
            rec(1, "r1", "user:a", "signin.success", None),
            rec(2, "r1", "user:a", "session.create", None),
            // SSO with a second step: sso.success in one request, the session in the next.
            rec(3, "r2", "user:b", "sso.success", Some(json!({ "amr": ["pwd"] }))),
            rec(4, "r3", "user:b", "signin.success", Some(json!({ "amr": ["pwd", "otp", "mfa"] }))),
            rec(5, "r3", "user:b", "session.create", Some(json!({ "idp": "sso_1" }))),
            // A passkey, passwordless.
            rec(6, "r4", "user:a", "signin.success", Some(json!({ "amr": ["hwk", "mfa"], "passwordless": true }))),
            rec(7, "r4", "user:a", "session.create", None),
            // The amr of one request does not leak into the next.
            rec(8, "r5", "user:c", "session.create", None),
            rec(9, "r6", "anonymous", "signin.failure", None),
            rec(10, "r7", "user:c", "signin.lockout", None),
            rec(11, "r8", "user:c", "session.step_up", None),
            rec(12, "r9", "user:c", "sso.link", None),
            // An impersonation's session.
            rec(13, "r10", "user:c", "session.create", Some(json!({ "impersonation": "im_1" }))),
        ];
        for r in &recs {
            t.visit(r);
        }
        assert_eq!(t.signins, 4);
        assert_eq!((t.methods.password, t.methods.passkey, t.methods.sso), (2, 1, 1));
        assert_eq!(t.with_second_factor, 2);
        assert_eq!(t.users.len(), 3);
        assert_eq!(t.refusals.get("signin.failure"), Some(&1));
        assert_eq!(t.refusals.get("signin.lockout"), Some(&1));
        assert_eq!(t.refusals.values().sum::<u64>(), 2, "sso.link is no refusal");
        assert_eq!(t.step_ups, 1);
        assert_eq!(t.impersonations, 1);
    }
}
