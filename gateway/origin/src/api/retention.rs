//! Retention and legal holds of an organisation: the periods per data type (`GET/PUT
//! …/retention`, and `PUT …/audit/retention` for the audit log alone), a run of every
//! data type now (`POST …/retention/run`), the audit log's purge (`POST …/audit/purge`),
//! and legal holds with scope (`POST/GET …/audit/holds`, `POST …/holds/{id}/release`).
//! The scheduler that applies retention by itself is [`crate::retention`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};

use crate::config::retention::PerKind;
use crate::error::{bad, ApiError, ApiResult};
use crate::identity::new_id;
use crate::retention::{effective, purge_all, Rule};
use crate::store::holds::{self, NewHold, MAX_LIVE};
use crate::store::retention::{self as rules, Kind};
use crate::store::Held;

use crate::api::app::App;
use crate::api::extract::{cursor, page_limit, AppState, Authed, JsonBody, Page, QueryParams};
use crate::api::transaction::begin;

/// The periods in force as an answer: each field, and whose choice it is.
fn rules_json(rules: &[Rule]) -> Value {
    let mut out = Map::new();
    let mut source = Map::new();
    for r in rules {
        out.insert(r.kind.field().into(), json!(r.days));
        source.insert(r.kind.field().into(), json!(if r.own { "org" } else { "region" }));
    }
    out.insert("source".into(), Value::Object(source));
    Value::Object(out)
}

/// A write transaction on the caller's organisation, and the periods in force in it.
async fn begin_with_rules<'a>(app: &App, authed: &'a Authed) -> ApiResult<(Held<'a>, Vec<Rule>)> {
    let h = begin(&authed.t).await?;
    let rules = effective(&h, &app.cfg.retention.defaults).await?;
    Ok((h, rules))
}

/// `GET /v1/orgs/{slug}/retention`.
pub(crate) async fn get_retention(State(app): AppState, authed: Authed) -> ApiResult<Json<Value>> {
    let rules = effective(&*authed.t.db.lock().await, &app.cfg.retention.defaults).await?;
    Ok(Json(rules_json(&rules)))
}

/// What a request chooses for one data type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Choice {
    /// The field is absent: the region default applies.
    #[default]
    Region,
    /// `null`: keep everything.
    Keep,
    /// A number of days.
    Days(i64),
}

impl<'de> Deserialize<'de> for Choice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Choice, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.map_or(Choice::Keep, Choice::Days))
    }
}

/// Set the organisation's rule for `kind`. The audit period is also kept where organisations
/// show it (`audit_retention_days`).
async fn set_rule(app: &App, h: &libsql::Connection, kind: Kind, choice: Choice) -> ApiResult<()> {
    let days = match choice {
        Choice::Region => {
            rules::clear_rule(h, kind).await?;
            app.cfg.retention.defaults.get(kind)
        }
        Choice::Keep => None,
        Choice::Days(d) => Some(d),
    };
    if choice != Choice::Region {
        rules::set_rule(h, kind, days).await?;
    }
    if kind == Kind::Audit {
        crate::store::orgs::set_retention(h, days).await?;
    }
    Ok(())
}

/// `PUT /v1/orgs/{slug}/retention`: every data type's period (a field absent: the region
/// default; null: keep everything). Audited as `audit.retention`.
pub(crate) async fn put_retention(
    State(app): AppState,
    authed: Authed,
    Path(slug): Path<String>,
    JsonBody(req): JsonBody<PerKind<Choice>>,
) -> ApiResult<Json<Value>> {
    for kind in Kind::ALL {
        if let Choice::Days(days) = req.of(kind) {
            kind.check("", *days).map_err(|m| bad("invalid_retention", m))?;
        }
    }
    let (h, rules) = begin_with_rules(&app, &authed).await?;
    let before = rules_json(&rules);
    for kind in Kind::ALL {
        set_rule(&app, &h, kind, *req.of(kind)).await?;
    }
    let after = rules_json(&effective(&h, &app.cfg.retention.defaults).await?);
    authed.commit(&app, h, "audit.retention", format!("org:{slug}"), Some(before), Some(after.clone())).await?;
    Ok(Json(after))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditRetention {
    days: Option<i64>,
}

/// `PUT /v1/orgs/{slug}/audit/retention`: the audit log's period alone (`days`, null:
/// keep everything).
pub(crate) async fn set_audit_retention(
    State(app): AppState,
    authed: Authed,
    Path(slug): Path<String>,
    JsonBody(req): JsonBody<AuditRetention>,
) -> ApiResult<Json<Value>> {
    if let Some(days) = req.days {
        Kind::Audit
            .check("", days)
            .map_err(|_| bad("invalid_retention", "days: 1–3650, or null to keep everything"))?;
    }
    let h = begin(&authed.t).await?;
    set_rule(&app, &h, Kind::Audit, req.days.map_or(Choice::Keep, Choice::Days)).await?;
    authed.commit(&app, h, "audit.retention", format!("org:{slug}"), None, Some(json!({ "days": req.days }))).await?;
    Ok(Json(json!({ "days": req.days })))
}

/// `POST /v1/orgs/{slug}/retention/run`: purge every data type now (at most `[retention]
/// batch` rows each; `more` lists the types with more to do). Audited as `retention.run`.
pub(crate) async fn run_retention(
    State(app): AppState,
    authed: Authed,
    Path(slug): Path<String>,
) -> ApiResult<Json<Value>> {
    let (h, rules) = begin_with_rules(&app, &authed).await?;
    let out = purge_all(&h, &rules, crate::now(), app.cfg.retention.batch).await?;
    let answer = out.to_json();
    authed.commit(&app, h, "retention.run", format!("org:{slug}"), None, Some(answer.clone())).await?;
    out.count(&app.metrics);
    Ok(Json(answer))
}

/// `POST /v1/orgs/{slug}/audit/purge`: purge the audit log past its period now (at most
/// `[retention] batch` records; never a held one or any after it). Audited as
/// `audit.purge`.
pub(crate) async fn purge_audit(
    State(app): AppState,
    authed: Authed,
    Path(slug): Path<String>,
) -> ApiResult<Json<Value>> {
    let (h, rules) = begin_with_rules(&app, &authed).await?;
    let days = rules.iter().find(|r| r.kind == Kind::Audit).and_then(|r| r.days);
    let Some(days) = days else { return Err(bad("no_retention", "no retention period is set")) };
    let p = crate::audit::purge(&h, crate::now() - days * 86_400, app.cfg.retention.batch).await?;
    let held = p.held.as_ref().map(|(seq, hold)| json!({ "seq": seq, "hold": hold }));
    let answer = json!({ "purged": p.removed, "more": p.more, "held": held });
    authed.commit(&app, h, "audit.purge", format!("org:{slug}"), None, Some(answer.clone())).await?;
    app.metrics.retention_purged.with_label_values(&[Kind::Audit.name()]).inc_by(p.removed);
    Ok(Json(answer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HoldBody {
    reason: String,
    from: i64,
    until: i64,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    actions: Vec<String>,
}

/// Most users and actions one hold names.
const MAX_SCOPE: usize = 100;

/// A hold's scope, checked: the field is named in the error.
fn check_hold(req: &HoldBody) -> ApiResult<()> {
    let invalid = |m: &str| Err(bad("invalid_hold", m.to_string()));
    if req.reason.trim().is_empty() || req.reason.len() > 500 {
        return invalid("reason: 1–500 bytes");
    }
    if req.from < 0 || req.from >= req.until {
        return invalid("from, until: Unix seconds, from < until");
    }
    let id_ok = |u: &String| {
        !u.is_empty() && u.len() <= 64 && u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if req.users.len() > MAX_SCOPE || !req.users.iter().all(id_ok) {
        return invalid("users: at most 100 user ids (a-z, A-Z, 0-9, _, -; up to 64 each)");
    }
    let action_ok = |a: &String| {
        a.len() <= 64
            && a.bytes().any(|b| b != b'.')
            && !a.starts_with('.')
            && a.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    };
    if req.actions.len() > MAX_SCOPE || !req.actions.iter().all(action_ok) {
        return invalid("actions: at most 100 actions (`signin.success`) or prefixes ending in `.` (`signin.`)");
    }
    Ok(())
}

/// `POST /v1/orgs/{slug}/audit/holds`: place a legal hold on a time range, optionally on
/// some users and actions only. Audited as `audit.hold`.
pub(crate) async fn add_hold(
    State(app): AppState,
    authed: Authed,
    JsonBody(mut req): JsonBody<HoldBody>,
) -> ApiResult<Response> {
    check_hold(&req)?;
    req.users.sort();
    req.users.dedup();
    req.actions.sort();
    req.actions.dedup();
    let id = new_id("h_");
    let h = begin(&authed.t).await?;
    if holds::count_live(&h).await? >= MAX_LIVE {
        return Err(ApiError::conflict("too_many_holds", "at most 100 live holds; release one first"));
    }
    let by = authed.caller.actor();
    let hold = NewHold {
        id: &id,
        reason: &req.reason,
        from_at: req.from,
        until_at: req.until,
        users: &req.users,
        actions: &req.actions,
        created_by: &by,
        created_at: crate::now(),
    };
    holds::insert(&h, &hold).await?;
    let stored = holds::get(&h, &id).await?.ok_or_else(|| anyhow::anyhow!("the hold just placed is missing"))?;
    let after = serde_json::to_value(&stored)?;
    authed.commit(&app, h, "audit.hold", format!("hold:{id}"), None, Some(after.clone())).await?;
    Ok((StatusCode::CREATED, Json(after)).into_response())
}

/// `GET /v1/orgs/{slug}/audit/holds`: every hold, live and released (by id, paginated).
pub(crate) async fn list_holds(authed: Authed, QueryParams(p): QueryParams<Page>) -> ApiResult<Json<Value>> {
    let limit = page_limit(&p);
    let items = holds::page(&*authed.t.db.lock().await, cursor(&p), limit).await?;
    let next = if items.len() as i64 == limit { items.last().map(|h| h.id.clone()) } else { None };
    Ok(Json(json!({ "items": items, "next": next })))
}

/// `POST /v1/orgs/{slug}/audit/holds/{id}/release`: release a live hold (what it kept
/// becomes subject to retention again). Audited as `audit.hold_release`.
pub(crate) async fn release_hold(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let h = begin(&authed.t).await?;
    let Some(before) = holds::get(&h, &id).await? else {
        return Err(ApiError::not_found("hold_not_found", "no such legal hold"));
    };
    if !holds::release(&h, &id, &authed.caller.actor(), crate::now()).await? {
        return Err(ApiError::conflict("hold_released", "this legal hold was released already"));
    }
    let after = holds::get(&h, &id).await?.ok_or_else(|| anyhow::anyhow!("the hold just released is missing"))?;
    let after = serde_json::to_value(&after)?;
    let before = serde_json::to_value(&before)?;
    authed.commit(&app, h, "audit.hold_release", format!("hold:{id}"), Some(before), Some(after.clone())).await?;
    Ok(Json(after))
}
