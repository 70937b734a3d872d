//! Privileged activity in the period: every administrative change (members, roles, teams,
//! API keys, SSO, sign-in policy, policy, the organisation's lifecycle, audit settings,
//! governance), impersonations and the requests made under them, API-key rotations.

use std::collections::BTreeMap;

use libsql::Connection;
use serde::Serialize;
use serde_json::json;

use crate::audit::Record;
use crate::error::ApiResult;

use super::source::{self, Listed, MAX_ROWS};
use super::{figure, Body, Options, Table};

/// The privileged actions by category: an exact action, or a prefix ending in `.`.
const CATEGORIES: &[(&str, &str)] = &[
    ("user.create", "members"),
    ("user.provision", "members"),
    ("user.delete", "members"),
    ("user.deactivate", "members"),
    ("user.reactivate", "members"),
    ("user.unlock", "members"),
    ("user.sessions_end", "members"),
    ("session.revoke", "members"),
    ("membership.set", "roles"),
    ("role.put", "roles"),
    ("role_template.", "roles"),
    ("team.roles_set", "roles"),
    ("team.", "teams"),
    ("invitation.create", "invitations"),
    ("invitation.resend", "invitations"),
    ("invitation.revoke", "invitations"),
    ("api_key.", "api_keys"),
    ("sso.connection.", "sso"),
    ("sso.enforcement.", "sso"),
    ("org.auth_policy.", "authentication_policy"),
    ("user.mfa_reset", "authentication_policy"),
    ("org.policy", "access_policy"),
    ("policy.template", "access_policy"),
    ("org.", "organisation"),
    ("mail_template.", "organisation"),
    ("audit.", "audit"),
    ("retention.", "audit"),
    ("sink.", "audit"),
    ("impersonation.", "impersonation"),
];

/// The category of a privileged `action`, if it is one (the first entry that matches).
fn category(action: &str) -> Option<&'static str> {
    CATEGORIES
        .iter()
        .find(|(p, _)| if p.ends_with('.') { action.starts_with(p) } else { action == *p })
        .map(|(_, c)| *c)
}

#[derive(Debug, Serialize)]
struct Change {
    #[serde(flatten)]
    record: Listed,
    category: &'static str,
}

#[derive(Debug, Default)]
struct Tally {
    changes: Vec<Change>,
    total: u64,
    by_category: BTreeMap<&'static str, u64>,
    by_action: BTreeMap<String, u64>,
    under_impersonation: u64,
}

impl Tally {
    fn visit(&mut self, r: &Record) {
        if r.act.is_some() {
            self.under_impersonation += 1;
        }
        let Some(cat) = category(&r.action) else { return };
        self.total += 1;
        *self.by_category.entry(cat).or_default() += 1;
        *self.by_action.entry(r.action.clone()).or_default() += 1;
        if self.changes.len() < MAX_ROWS {
            self.changes.push(Change { record: Listed::of(r), category: cat });
        }
    }

    fn count(&self, action: &str) -> u64 {
        self.by_action.get(action).copied().unwrap_or(0)
    }
}

/// Build the privileged-activity report of the period.
pub(super) async fn build(conn: &Connection, o: &Options) -> ApiResult<Body> {
    let mut t = Tally::default();
    let read = source::in_period(conn, &o.period, |r| t.visit(r)).await?;
    let summary = vec![
        figure("privileged_changes", "Privileged changes", t.total),
        figure("role_changes", "Role grants (members, teams) and role definitions changed", cat(&t, "roles")),
        figure("members_changes", "Account changes (created, removed, deactivated …)", cat(&t, "members")),
        figure("api_key_changes", "API keys created, rotated, revoked", cat(&t, "api_keys")),
        figure("api_key_rotations", "API-key rotations", t.count("api_key.rotate")),
        figure("sso_changes", "SSO connection and enforcement changes", cat(&t, "sso")),
        figure(
            "policy_changes",
            "Access and sign-in policy changes",
            cat(&t, "access_policy") + cat(&t, "authentication_policy"),
        ),
        figure("impersonations_started", "Impersonations started", t.count("impersonation.start")),
        figure("impersonations_ended", "Impersonations ended early or on request", t.count("impersonation.end")),
        figure("impersonations_expired", "Impersonations that ran out of time", t.count("impersonation.expired")),
        figure("records_under_impersonation", "Audit records written under an impersonation", t.under_impersonation),
        figure("records_read", "Audit records read for the period", read),
    ];
    let truncated = t.total as usize > t.changes.len();
    let rows = t.changes.iter().map(|c| c.record.cells(c.category)).collect();
    let mut notes =
        vec!["Rotations of the region's token-signing keys are operator-level: they are in the operator's audit log \
         (GET /v1/operator/audit), not in an organisation's."
            .to_string()];
    if truncated {
        notes.push(format!("The list shows the first {MAX_ROWS} changes; the figures count all {}.", t.total));
    }
    Ok(Body {
        summary,
        details: json!({ "by_category": t.by_category, "by_action": t.by_action, "changes": t.changes,
            "truncated": truncated }),
        tables: vec![Table {
            name: "changes",
            title: "Privileged changes",
            columns: [&Listed::COLUMNS[..], &["category"]].concat(),
            rows,
        }],
        notes,
    })
}

fn cat(t: &Tally, c: &str) -> u64 {
    t.by_category.get(c).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_cover_admin_changes_and_leave_sign_ins_out() {
        assert_eq!(category("membership.set"), Some("roles"));
        assert_eq!((category("team.roles_set"), category("team.create")), (Some("roles"), Some("teams")));
        assert_eq!(category("api_key.rotate"), Some("api_keys"));
        assert_eq!(category("sso.connection.update"), Some("sso"));
        assert_eq!(category("org.auth_policy.set"), Some("authentication_policy"));
        assert_eq!(category("org.policy"), Some("access_policy"));
        assert_eq!(category("org.suspend"), Some("organisation"));
        assert_eq!(category("impersonation.expired"), Some("impersonation"));
        assert_eq!(category("audit.hold_release"), Some("audit"));
        for a in ["signin.success", "sso.success", "session.create", "token.refresh", "privacy.export", "mfa.failure"] {
            assert_eq!(category(a), None, "{a}");
        }
    }

    #[tokio::test]
    async fn impersonations_and_records_under_them_are_counted_in_the_period_only() {
        use crate::reports::source::testing::put;
        let (_dir, _s, db) = crate::store::test_tenant().await;
        let h = db.lock().await;
        let records = [
            (("operator", "impersonation.start", "user:u_1"), None, 100),
            (("user:u_1", "session.create", "session:s_1"), Some("operator"), 100),
            (("user:u_1", "membership.set", "user:u_2"), Some("operator"), 110),
            (("user:u_1", "token.refresh", "session:s_1"), Some("operator"), 115),
            (("system", "impersonation.expired", "user:u_1"), None, 120),
            (("user:u_9", "api_key.rotate", "api_key:k_1"), None, 130),
            (("user:u_9", "signin.success", "user:u_9"), None, 140),
            (("user:u_9", "api_key.rotate", "api_key:k_1"), None, 500),
        ];
        for (i, (who, act, at)) in records.into_iter().enumerate() {
            put(&h, who, None, at, &format!("r{i}"), act).await;
        }
        let o = Options::new(Some(100), Some(200), None, 1_000).unwrap();
        let b = build(&h, &o).await.unwrap();
        let fig = |k: &str| b.summary.iter().find(|f| f.key == k).unwrap().value.clone();
        assert_eq!(fig("impersonations_started"), json!(1));
        assert_eq!(fig("impersonations_expired"), json!(1));
        assert_eq!(fig("records_under_impersonation"), json!(3));
        assert_eq!(fig("api_key_rotations"), json!(1), "the rotation at 500 is outside the period");
        assert_eq!(fig("role_changes"), json!(1));
        assert_eq!(fig("privileged_changes"), json!(4));
        let change = &b.details["changes"][1];
        assert_eq!((change["action"].as_str(), change["act"].as_str()), (Some("membership.set"), Some("operator")));
        assert_eq!(b.tables[0].rows[1][4..], ["operator", "user:u_2", "roles"]);
    }
}
