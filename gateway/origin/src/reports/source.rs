//! What reports read: the audit records of a period or of one action, page by page with a
//! bound on the work, and the current state of users (their roles' permissions, their
//! confirmed second factors).

use gatehouse_core::policy::BUILTIN_ROLES;
use libsql::Connection;
use serde_json::Value;

use crate::audit::{Filter, Record};
use crate::error::{bad, ApiResult};
use crate::store::{factors, roles, users};

use super::Period;

/// The most audit records one report reads (the tenant's database stays locked while it
/// does); a longer period is refused with `report_too_large`.
pub(crate) const MAX_RECORDS: u64 = 200_000;
/// The most rows one table of a report lists; the figures still count every record.
pub(crate) const MAX_ROWS: usize = 5_000;
/// Records read per query.
const PAGE: u32 = 1_000;

/// Visit, in order, every record matching `filter` (its `after` and `limit` are set
/// here); how many there were. 400 `report_too_large` past `max` (checked per page, so
/// never more than a page beyond it is read).
async fn each(conn: &Connection, mut filter: Filter, max: u64, mut visit: impl FnMut(&Record)) -> ApiResult<u64> {
    filter.limit = Some(PAGE);
    let mut n = 0u64;
    loop {
        let page = crate::audit::query(conn, &filter).await?;
        for r in &page {
            visit(r);
        }
        n += page.len() as u64;
        if n > max {
            let msg = format!("more than {max} audit records: shorten the period (or dormant_days)");
            return Err(bad("report_too_large", msg));
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => filter.after = Some(last.seq),
            _ => return Ok(n),
        }
    }
}

/// Visit every record of period `p`, in order.
pub(crate) async fn in_period(conn: &Connection, p: &Period, visit: impl FnMut(&Record)) -> ApiResult<u64> {
    each(conn, Filter { since: Some(p.from), until: Some(p.until), ..Default::default() }, MAX_RECORDS, visit).await
}

/// Visit every record of `action` from `since` (`None`: the whole log), in order.
pub(crate) async fn of_action(
    conn: &Connection,
    action: &str,
    since: Option<i64>,
    visit: impl FnMut(&Record),
) -> ApiResult<u64> {
    each(conn, Filter { action: Some(action.to_string()), since, ..Default::default() }, MAX_RECORDS, visit).await
}

/// The user id of a `user:<id>` actor or target.
pub(crate) fn user_id(subject: &str) -> Option<&str> {
    subject.strip_prefix("user:").filter(|id| !id.is_empty())
}

/// A record's `after` as JSON (`Null` when absent or not JSON).
pub(crate) fn after(r: &Record) -> Value {
    r.after.as_deref().and_then(|a| serde_json::from_str(a).ok()).unwrap_or(Value::Null)
}

/// Who did it: the actor, and who really acted under an impersonation.
pub(crate) fn who(r: &Record) -> String {
    match &r.act {
        Some(act) => format!("{} (acting: {act})", r.actor),
        None => r.actor.clone(),
    }
}

/// A record as a report lists it: where it is in the chain, when, what, who (and who
/// really acted), on what. Ids only: never the record's JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Listed {
    pub(crate) seq: i64,
    pub(crate) at: i64,
    pub(crate) action: String,
    pub(crate) actor: String,
    pub(crate) act: Option<String>,
    pub(crate) target: String,
}

impl Listed {
    /// The columns of [`Listed::cells`].
    pub(crate) const COLUMNS: [&'static str; 6] = ["seq", "at", "action", "actor", "acting", "target"];

    pub(crate) fn of(r: &Record) -> Listed {
        Listed {
            seq: r.seq,
            at: r.at,
            action: r.action.clone(),
            actor: r.actor.clone(),
            act: r.act.clone(),
            target: r.target.clone(),
        }
    }

    /// Its cells, as [`Listed::COLUMNS`] name them, then `extra`.
    pub(crate) fn cells(&self, extra: &str) -> Vec<String> {
        let (seq, at) = (self.seq.to_string(), super::iso(self.at));
        let act = self.act.clone().unwrap_or_default();
        vec![seq, at, self.action.clone(), self.actor.clone(), act, self.target.clone(), extra.to_string()]
    }
}

/// Every user of the tenant (current state, roles expired by `now` shown as none).
pub(crate) async fn all_users(conn: &Connection, now: i64) -> ApiResult<Vec<users::User>> {
    let mut out: Vec<users::User> = Vec::new();
    loop {
        let after = out.last().map(|u| u.id.clone()).unwrap_or_default();
        let page = users::page(conn, &after, None, 500, now).await?;
        let full = page.len() == 500;
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// Every custom role: (name, permissions).
pub(crate) async fn custom_roles(conn: &Connection) -> ApiResult<Vec<(String, Vec<String>)>> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    loop {
        let after = out.last().map(|(n, _)| n.clone()).unwrap_or_default();
        let page = roles::page(conn, &after, 500).await?;
        let full = page.len() == 500;
        out.extend(page.into_iter().map(|r| (r.name, serde_json::from_str(&r.permissions).unwrap_or_default())));
        if !full {
            return Ok(out);
        }
    }
}

/// The permissions role `role` grants: a built-in role's (core `BUILTIN_ROLES`) or a
/// custom role's; none for a role that no longer exists.
pub(crate) fn permissions_of(role: &str, custom: &[(String, Vec<String>)]) -> Vec<String> {
    if let Some((_, perms)) = BUILTIN_ROLES.iter().find(|(b, _)| *b == role) {
        return perms.iter().map(|p| p.to_string()).collect();
    }
    custom.iter().find(|(n, _)| n == role).map(|(_, p)| p.clone()).unwrap_or_default()
}

/// The kinds of `user`'s confirmed second factors (`totp`, `webauthn`), sorted.
pub(crate) async fn confirmed_factors(conn: &Connection, user: &str) -> ApiResult<Vec<String>> {
    let mut kinds: Vec<String> =
        factors::of_user(conn, user).await?.into_iter().filter(|f| f.confirmed_at.is_some()).map(|f| f.kind).collect();
    kinds.sort();
    kinds.dedup();
    Ok(kinds)
}

/// The share `part / whole` rounded to three decimals (0 when `whole` is 0).
pub(crate) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64 * 1000.0).round() / 1000.0
    }
}

/// Records for the reports' unit tests, chained and hashed like the log's own, written to
/// a real tenant database.
#[cfg(test)]
pub(crate) mod testing {
    use libsql::Connection;
    use serde_json::Value;

    use crate::audit::Record;

    /// Append a record: `actor` did `action` on `target` at `at` in request `request`.
    pub(crate) async fn put(
        conn: &Connection,
        (actor, action, target): (&str, &str, &str),
        after: Option<Value>,
        at: i64,
        request: &str,
        act: Option<&str>,
    ) {
        let (seq, prev_hash) = crate::audit::head(conn).await.unwrap();
        let mut r = Record {
            seq: seq + 1,
            at,
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            before: None,
            after: after.map(|v| v.to_string()),
            ip: None,
            user_agent: None,
            request_id: Some(request.into()),
            act: act.map(String::from),
            sealed: None,
            prev_hash,
            hash: String::new(),
        };
        r.hash = crate::audit::record_hash(&r);
        crate::store::audit::insert(conn, &r).await.unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::testing::put;
    use super::*;
    use crate::store::test_tenant;

    #[tokio::test]
    async fn reading_pages_through_the_log_and_refuses_past_the_bound() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        crate::store::begin_immediate(&h).await.unwrap();
        for at in 0..2_500 {
            let action = if at % 2 == 0 { "signin.success" } else { "signin.failure" };
            put(&h, ("user:u_1", action, "user:u_1"), None, at, "r", None).await;
        }
        crate::store::commit(&h).await.unwrap();
        let mut seqs = Vec::new();
        let n = in_period(&h, &Period { from: 100, until: 2_200 }, |r| seqs.push(r.seq)).await.unwrap();
        assert_eq!((n, seqs.len()), (2_100, 2_100), "three pages, none lost");
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1) && seqs[0] == 101, "in order");
        assert_eq!(of_action(&h, "signin.failure", None, |_| {}).await.unwrap(), 1_250);
        assert_eq!(of_action(&h, "signin.failure", Some(2_000), |_| {}).await.unwrap(), 250);
        let f = Filter::default;
        assert_eq!(each(&h, f(), 2_500, |_| {}).await.unwrap(), 2_500);
        let e = each(&h, f(), 1_500, |_| {}).await.unwrap_err();
        assert_eq!(e.code(), "report_too_large");
        assert_eq!((user_id("user:u_1"), user_id("user:"), user_id("apikey:k")), (Some("u_1"), None, None));
        assert_eq!(ratio(1, 6), 0.167);
        assert_eq!(ratio(1, 0), 0.0);
    }
}
