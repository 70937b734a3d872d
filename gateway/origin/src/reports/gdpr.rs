//! The GDPR record (Art. 30) of the period: exports and erasures of personal data (and
//! erasures refused), legal holds placed and released, retention changes and purges; the
//! categories of personal data the organisation's tenant holds, and its retention setting.

use std::collections::BTreeMap;

use libsql::Connection;
use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::Record;
use crate::error::ApiResult;
use crate::store::orgs;

use super::source::{self, after, Listed, MAX_ROWS};
use super::{figure, Body, Options, Table};

/// The processing activities the record lists: (action, what it is).
const ACTIVITIES: &[(&str, &str)] = &[
    ("privacy.export", "export of a person's data (Art. 15, 20)"),
    ("privacy.erase", "erasure of a person's data (Art. 17)"),
    ("privacy.erase_refused", "erasure refused"),
    ("audit.hold", "legal hold placed"),
    ("audit.hold_release", "legal hold released"),
    ("audit.retention", "retention changed"),
    ("retention.run", "retention applied by the scheduler"),
    ("audit.purge", "records purged past retention"),
];

/// The personal data a tenant holds: (category, what, where).
const DATA_CATEGORIES: &[(&str, &str)] = &[
    ("account", "email address, display name, password hash (argon2id), account state"),
    ("second factors", "factor metadata; TOTP secrets sealed, passkey public keys; recovery codes hashed"),
    ("sessions", "IP address and user agent at sign-in, times, authentication methods"),
    ("SSO links", "the identity provider's subject identifier"),
    ("invitations", "invited email address"),
    ("audit log", "actor and target ids; personal fields sealed under a per-person key"),
];

#[derive(Debug, Serialize)]
struct Activity {
    #[serde(flatten)]
    record: Listed,
    reason: Option<String>,
}

/// A refusal's or hold's stable reason, when the record carries one as a code (never
/// free text, which may hold personal data).
fn reason_code(a: &Value) -> Option<String> {
    ["code", "reason_code"].iter().find_map(|k| a[*k].as_str()).filter(|c| is_code(c)).map(String::from)
}

fn is_code(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Build the GDPR record of the period.
pub(super) async fn build(conn: &Connection, o: &Options) -> ApiResult<Body> {
    let mut listed: Vec<Activity> = Vec::new();
    let mut counts: BTreeMap<&'static str, u64> = ACTIVITIES.iter().map(|(a, _)| (*a, 0)).collect();
    let visit = |r: &Record| {
        let Some((action, _)) = ACTIVITIES.iter().find(|(a, _)| *a == r.action) else { return };
        *counts.entry(action).or_default() += 1;
        if listed.len() < MAX_ROWS {
            listed.push(Activity { record: Listed::of(r), reason: reason_code(&after(r)) });
        }
    };
    let read = source::in_period(conn, &o.period, visit).await?;
    let retention_days = orgs::get(conn).await?.and_then(|r| r.retention_days);
    let n = |a: &str| counts.get(a).copied().unwrap_or(0);
    let summary = vec![
        figure("exports", "Exports of a person's data", n("privacy.export")),
        figure("erasures", "Erasures", n("privacy.erase")),
        figure("erasures_refused", "Erasures refused", n("privacy.erase_refused")),
        figure("holds_placed", "Legal holds placed", n("audit.hold")),
        figure("holds_released", "Legal holds released", n("audit.hold_release")),
        figure("retention_changes", "Retention changes", n("audit.retention")),
        figure("purges", "Purges and scheduled retention runs", n("audit.purge") + n("retention.run")),
        figure("retention_days", "Audit retention in days now (null: kept)", retention_days),
        figure("records_read", "Audit records read for the period", read),
    ];
    let total: u64 = counts.values().sum();
    let mut notes = vec!["Subjects are ids: a person's email and name are not repeated in this record.".to_string()];
    if total as usize > listed.len() {
        notes.push(format!("The list shows the first {MAX_ROWS} activities; the figures count all {total}."));
    }
    let rows = listed.iter().map(|a| a.record.cells(a.reason.as_deref().unwrap_or_default())).collect();
    let categories: Vec<Value> = DATA_CATEGORIES.iter().map(|(c, w)| json!({ "category": c, "data": w })).collect();
    Ok(Body {
        summary,
        details: json!({ "activities": listed, "counts": counts, "data_categories": categories,
            "retention_days": retention_days }),
        tables: vec![
            Table {
                name: "activities",
                title: "Exports, erasures, holds and retention",
                columns: [&Listed::COLUMNS[..], &["reason"]].concat(),
                rows,
            },
            Table {
                name: "data_categories",
                title: "Categories of personal data held",
                columns: vec!["category", "data"],
                rows: DATA_CATEGORIES.iter().map(|(c, w)| vec![c.to_string(), w.to_string()]).collect(),
            },
        ],
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::source::testing::put;
    use crate::store::test_tenant;

    #[tokio::test]
    async fn counts_and_lists_the_activities_of_the_period_only() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        let refused = json!({ "code": "legal_hold", "note": "Jane Doe <jane@x.test>" });
        let records = [
            ("privacy.export", "user:u_1", None, 50),
            ("privacy.export", "user:u_1", None, 150),
            ("privacy.erase", "user:u_2", None, 160),
            ("privacy.erase_refused", "user:u_3", Some(refused), 170),
            ("audit.hold", "hold:h_1", Some(json!({ "reason": "case 7" })), 180),
            ("audit.hold_release", "hold:h_1", None, 190),
            ("signin.success", "user:u_1", None, 195),
            ("privacy.erase", "user:u_4", None, 300),
        ];
        for (action, target, after, at) in records {
            put(&h, ("user:u_admin", action, target), after, at, "r", None).await;
        }
        let o = Options::new(Some(100), Some(200), None, 1_000).unwrap();
        let b = build(&h, &o).await.unwrap();
        let fig = |k: &str| b.summary.iter().find(|f| f.key == k).unwrap().value.clone();
        assert_eq!(fig("exports"), json!(1));
        assert_eq!(fig("erasures"), json!(1));
        assert_eq!(fig("erasures_refused"), json!(1));
        assert_eq!(fig("holds_placed"), json!(1));
        assert_eq!(fig("holds_released"), json!(1));
        assert_eq!(fig("records_read"), json!(6));
        let acts = b.details["activities"].as_array().unwrap();
        assert_eq!(acts.len(), 5);
        assert_eq!(acts[2]["reason"], "legal_hold");
        assert_eq!(acts[2]["target"], "user:u_3");
        assert!(!b.details.to_string().contains("jane@x.test"), "free text of a record is not repeated");
        assert!(acts[3]["reason"].is_null(), "a free-text reason is not a code");
        assert_eq!(b.tables[0].rows.len(), 5);
    }
}
