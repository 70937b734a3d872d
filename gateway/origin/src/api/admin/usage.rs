//! Usage of an organisation: what it holds now (users, live sessions, active API keys,
//! against its tier's caps) and, per day or hour, its sign-ins, failed sign-ins and the
//! requests its edges denied — counted from the audit log and the edges' decision events.

use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{bad, ApiResult};
use crate::store::{api_keys, orgs, sessions, usage, users};

use crate::api::app::App;
use crate::api::caps::{limit, Cap};
use crate::api::extract::{Authed, QueryParams};

/// The most buckets one answer holds (a year of days, a month of hours).
const MAX_BUCKETS: i64 = 744;

/// Sign-ins that succeeded.
const SIGNIN_SUCCESS: &[&str] = &["signin.success", "sso.success"];
/// Sign-ins that were refused: wrong credentials, lockouts, deactivated accounts, an
/// unverified email where verification is required, SSO required or failed, a wrong or
/// disallowed second factor. (A password step that asks for the second factor,
/// `signin.mfa_challenge`, is neither: its sign-in ends in one of the others.)
const SIGNIN_FAILURE: &[&str] = &[
    "signin.failure",
    "signin.lockout",
    "signin.locked",
    "signin.disabled",
    "signin.email_unverified",
    "signin.sso_required",
    "sso.failure",
    "mfa.failure",
    "mfa.lockout",
    "mfa.locked",
    "mfa.method_not_allowed",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageQuery {
    /// Unix seconds, inclusive (default: 30 buckets before `to`).
    #[serde(default)]
    from: Option<i64>,
    /// Unix seconds, exclusive (default: now).
    #[serde(default)]
    to: Option<i64>,
    /// `day` (default) or `hour`.
    #[serde(default)]
    bucket: Option<String>,
}

/// The period and bucket width a query asks for, aligned to whole buckets (UTC).
pub(crate) fn period(q: &UsageQuery, now: i64) -> ApiResult<(i64, i64, i64)> {
    let width = match q.bucket.as_deref().unwrap_or("day") {
        "day" => 86_400,
        "hour" => 3_600,
        _ => return Err(bad("invalid_query", "bucket: day or hour")),
    };
    let to = q.to.unwrap_or(now);
    let from = q.from.unwrap_or((to - 30 * width).max(0));
    if from < 0 || to <= from {
        return Err(bad("invalid_query", "from must be before to (Unix seconds)"));
    }
    let (start, end) = (from.div_euclid(width) * width, (to + width - 1).div_euclid(width) * width);
    if (end - start) / width > MAX_BUCKETS {
        return Err(bad("invalid_query", format!("at most {MAX_BUCKETS} buckets per answer")));
    }
    Ok((start, end, width))
}

/// `GET /v1/orgs/{slug}/usage?from&to&bucket=day`.
pub(crate) async fn get_usage(
    axum::extract::State(app): crate::api::extract::AppState,
    authed: Authed,
    QueryParams(q): QueryParams<UsageQuery>,
) -> ApiResult<Json<Value>> {
    let now = crate::now();
    let (from, to, width) = period(&q, now)?;
    let h = authed.t.db.lock().await;
    let tier = orgs::get(&h).await?.map(|o| o.tier).unwrap_or_default();
    let (all_users, disabled) = users::counts(&h).await?;
    let live = sessions::count_live(&h, now).await?;
    let keys = api_keys::count_active(&h, now).await?;
    let actions = usage::signin_actions(&h, from, to, width).await?;
    let denies = usage::edge_denies(&h, from, to, width).await?;
    drop(h);
    let series = buckets(from, to, width, &actions, &denies);
    let sum = |k: &str| series.iter().map(|b| b[k].as_i64().unwrap_or(0)).sum::<i64>();
    Ok(Json(json!({
        "from": from, "to": to, "bucket": if width == 86_400 { "day" } else { "hour" },
        "now": {
            "users": all_users - disabled, "users_disabled": disabled, "active_sessions": live, "api_keys": keys,
        },
        "limits": limits(&app, &tier),
        "tier": tier,
        "totals": { "signins": sum("signins"), "signin_failures": sum("signin_failures"), "edge_denies": sum("edge_denies") },
        "series": series,
    })))
}

fn limits(app: &App, tier: &str) -> Value {
    json!({
        "max_users": limit(app, tier, Cap::Users),
        "max_custom_roles": limit(app, tier, Cap::CustomRoles),
        "max_api_keys": limit(app, tier, Cap::ApiKeys),
    })
}

/// Every bucket of `[from, to)`, zeros included.
fn buckets(from: i64, to: i64, width: i64, actions: &[(i64, String, i64)], denies: &[(i64, i64)]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut start = from;
    while start < to {
        let of = |set: &[&str]| {
            actions.iter().filter(|(b, a, _)| *b == start && set.contains(&a.as_str())).map(|(_, _, n)| n).sum::<i64>()
        };
        let denied = denies.iter().filter(|(b, _)| *b == start).map(|(_, n)| n).sum::<i64>();
        out.push(json!({ "start": start, "signins": of(SIGNIN_SUCCESS), "signin_failures": of(SIGNIN_FAILURE),
            "edge_denies": denied }));
        start += width;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(from: Option<i64>, to: Option<i64>, bucket: Option<&str>) -> UsageQuery {
        UsageQuery { from, to, bucket: bucket.map(String::from) }
    }

    #[test]
    fn periods_align_to_whole_buckets_and_are_bounded() {
        assert_eq!(period(&q(Some(90_000), Some(180_000), None), 0).unwrap(), (86_400, 259_200, 86_400));
        assert_eq!(period(&q(None, Some(7_200), Some("hour")), 0).unwrap(), (0, 7_200, 3_600));
        assert_eq!(period(&q(None, None, None), 30 * 86_400).unwrap(), (0, 30 * 86_400, 86_400));
        for bad in [q(Some(10), Some(5), None), q(Some(0), Some(86_400 * 800), None), q(None, None, Some("week"))] {
            assert_eq!(period(&bad, 100_000).unwrap_err().code(), "invalid_query");
        }
    }

    #[test]
    fn buckets_count_successes_failures_and_denies_and_keep_empty_ones() {
        let actions = vec![
            (0, "signin.success".to_string(), 2),
            (0, "sso.success".to_string(), 1),
            (0, "signin.failure".to_string(), 3),
            (7_200, "signin.disabled".to_string(), 1),
            (7_200, "signin.sso_required".to_string(), 1),
            (7_200, "sso.link".to_string(), 5),
        ];
        let b = buckets(0, 10_800, 3_600, &actions, &[(3_600, 4)]);
        let row = |i: usize| (b[i]["signins"].as_i64(), b[i]["signin_failures"].as_i64(), b[i]["edge_denies"].as_i64());
        assert_eq!(b.len(), 3);
        assert_eq!(row(0), (Some(3), Some(3), Some(0)));
        assert_eq!(row(1), (Some(0), Some(0), Some(4)));
        assert_eq!(row(2), (Some(0), Some(2), Some(0)), "sso.link is neither");
    }
}
