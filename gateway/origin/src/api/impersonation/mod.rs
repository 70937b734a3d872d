//! Impersonation, audited and time-boxed (issue 15 §1). The platform operator — or, where
//! the organisation allows it, a member holding `users:impersonate` — opens a session of
//! a user with a reason and a duration: `POST /v1/orgs/{slug}/impersonations`. Its tokens
//! carry RFC 8693 `act` (`{"sub": "<actor>"}`), its access tokens never outlive it, its
//! refresh tokens stop at its end (the session's end). It can be listed (active and
//! past), ended early (`DELETE …/impersonations/{id}`: the session is revoked, so edges
//! refuse its tokens with the next bundle), and ends by itself when its time is up
//! (`impersonation.expired`, noted by [`sweep`] at the next start, list or end).
//!
//! The impersonated user ends it too, by ending the session in their own session list
//! (`DELETE /t/{slug}/me/sessions/{id}`); [`sweep`] then notes `impersonation.end` with
//! `by: "session_revoked"`. The hosted hand-off and the user's own audit view are in
//! [`pages`].

pub(crate) mod pages;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::{Event, RequestMeta};
use crate::error::{bad, ApiError, ApiResult};
use crate::identity::new_id;
use crate::store::impersonations::{self, Impersonation, NewImpersonation};
use crate::store::{memberships, sessions, users};
use crate::tokens;

use crate::api::app::App;
use crate::api::extract::{
    cursor, next_cursor, page_limit, refuse_if_suspended, AppState, Authed, Caller, JsonBody, Page, QueryParams, Tenant,
};
use crate::api::session::{issue, Session};
use crate::api::transaction::{begin, commit, ev};

/// Longest reason, in bytes.
const MAX_REASON: usize = 500;
/// The duration of an impersonation that names none, in minutes (or the limit, if lower).
const DEFAULT_MINUTES: u64 = 30;
/// Most impersonations [`sweep`] notes ended in one call (the rest: at the next).
const SWEEP_BATCH: i64 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRequest {
    user_id: String,
    reason: String,
    #[serde(default)]
    minutes: Option<u64>,
}

/// The organisation's policy: whether members holding `users:impersonate` may
/// impersonate, and for how long at most (never more than the region's limit).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Policy {
    allow_admins: bool,
    max_minutes: u64,
}

/// The policy in force: (admins allowed, longest in minutes). Unset: operator only, the
/// region's limit. An organisation limit above a lowered region limit yields to it.
async fn policy_of(app: &App, h: &libsql::Connection) -> ApiResult<(bool, u64)> {
    let region = app.cfg.impersonation.max_minutes;
    Ok(match impersonations::policy(h).await? {
        Some((allow, max)) => (allow, (max.max(1) as u64).min(region)),
        None => (false, region),
    })
}

/// A reason as accepted: trimmed, 1–500 bytes, no control characters.
fn reason_of(s: &str) -> ApiResult<&str> {
    let r = s.trim();
    if r.is_empty() || r.len() > MAX_REASON || r.chars().any(char::is_control) {
        return Err(bad("invalid_reason", "reason: 1–500 bytes, no control characters"));
    }
    Ok(r)
}

/// The impersonation as the API shows it.
fn view(i: &Impersonation, now: i64) -> Value {
    let mut v = serde_json::to_value(i).unwrap_or_default();
    v["active"] = i.active(now).into();
    v
}

/// Note every impersonation of `t` that is over but not yet noted: its time ran out
/// (`impersonation.expired`, actor `system`), or its session was ended some other way —
/// by its user, a deactivation, a sign-out everywhere (`impersonation.end`, `by:
/// "session_revoked"`). Bounded work per call.
pub(crate) async fn sweep(app: &App, t: &Tenant, m: &RequestMeta) -> ApiResult<()> {
    let now = crate::now();
    let h = begin(t).await?;
    let mut events = Vec::new();
    for i in impersonations::expired_unnoted(&h, now, SWEEP_BATCH).await? {
        impersonations::end(&h, &i.id, i.ends_at, "system").await?;
        let after = Some(json!({ "id": i.id, "session": i.session_id, "actor": i.actor, "ends_at": i.ends_at }));
        events.push(ev("system", "impersonation.expired", format!("user:{}", i.user_id), None, after));
    }
    for i in impersonations::revoked_unnoted(&h, SWEEP_BATCH).await? {
        impersonations::end(&h, &i.id, now, "session_revoked").await?;
        let after = Some(json!({ "id": i.id, "session": i.session_id, "actor": i.actor, "by": "session_revoked" }));
        events.push(ev("system", "impersonation.end", format!("user:{}", i.user_id), None, after));
    }
    if events.is_empty() {
        return Ok(()); // dropping `h` rolls the empty transaction back
    }
    commit(app, t, h, m, events).await
}

/// Refuse what no caller may start: a nested impersonation, oneself, a user who does not
/// exist or is deactivated, an owner (except for the operator).
async fn refuse_target(h: &libsql::Connection, caller: &Caller, user: &str, now: i64) -> ApiResult<()> {
    if caller.act().is_some() {
        return Err(ApiError::forbidden("impersonation_nested", "an impersonation cannot start another one"));
    }
    if let Caller::User { user: me, .. } = caller {
        if me == user {
            return Err(ApiError::forbidden("impersonation_self", "one cannot impersonate oneself"));
        }
    }
    match users::disabled(h, user).await? {
        None => return Err(ApiError::not_found("user_not_found", "no such user")),
        Some(true) => return Err(ApiError::forbidden("user_disabled", "this account is deactivated")),
        Some(false) => {}
    }
    let owner = memberships::live_role(h, user, now).await?.as_deref() == Some("owner");
    if owner && !matches!(caller, Caller::Operator) {
        return Err(ApiError::forbidden("impersonation_owner", "only the platform operator may impersonate an owner"));
    }
    Ok(())
}

/// `POST /v1/orgs/{slug}/impersonations` `{user_id, reason, minutes}`: the tokens of a new
/// session of the user (access with `act`, refresh), its end, and a single-use hand-off
/// URL for a browser.
pub(crate) async fn start(
    State(app): AppState,
    authed: Authed,
    JsonBody(req): JsonBody<StartRequest>,
) -> ApiResult<Response> {
    sweep(&app, &authed.t, &authed.meta).await?;
    let reason = reason_of(&req.reason)?;
    let now = crate::now();
    let h = begin(&authed.t).await?;
    refuse_if_suspended(&h).await?;
    let (allow_admins, max) = policy_of(&app, &h).await?;
    let max = if matches!(authed.caller, Caller::Operator) { app.cfg.impersonation.max_minutes } else { max };
    if !allow_admins && !matches!(authed.caller, Caller::Operator) {
        return Err(ApiError::forbidden(
            "impersonation_not_allowed",
            "this organisation lets only the platform operator impersonate",
        ));
    }
    let minutes = req.minutes.unwrap_or(DEFAULT_MINUTES.min(max));
    if minutes == 0 || minutes > max {
        return Err(bad("invalid_duration", format!("minutes: 1–{max}")));
    }
    refuse_target(&h, &authed.caller, &req.user_id, now).await?;
    let (id, sid, actor) = (new_id("im_"), new_id("s_"), authed.caller.actor());
    let ends_at = now + minutes as i64 * 60;
    sessions::insert(
        &h,
        &sessions::NewSession {
            id: &sid,
            user_id: &req.user_id,
            amr: "[]",
            idp: None,
            created_at: now,
            expires_at: ends_at,
        },
    )
    .await?;
    let handoff = tokens::opaque("ghi_");
    let row = NewImpersonation {
        id: &id,
        session_id: &sid,
        user_id: &req.user_id,
        actor: &actor,
        reason,
        started_at: now,
        ends_at,
        handoff_hash: &tokens::secret_hash(&handoff),
        handoff_expires_at: now + app.cfg.impersonation.handoff_ttl_secs as i64,
    };
    impersonations::insert(&h, &row).await?;
    let target = format!("user:{}", req.user_id);
    let after = json!({ "id": id, "session": sid, "reason": reason, "minutes": minutes, "ends_at": ends_at });
    let mut created =
        ev(target.clone(), "session.create", format!("session:{sid}"), None, Some(json!({ "impersonation": id })));
    created.act = Some(actor.clone());
    let events: Vec<Event> = vec![ev(actor, "impersonation.start", target, None, Some(after)), created];
    let s = Session { held: h, user: req.user_id.clone(), sid, family: new_id("f_"), amr: Vec::new(), events };
    let mut answer = issue(&app, &authed.t, &authed.meta, s, None).await?;
    let i =
        impersonations::by_id(&*authed.t.db.lock().await, &id).await?.ok_or_else(|| anyhow::anyhow!("lost {id}"))?;
    answer["impersonation"] = view(&i, now);
    answer["ends_at"] = ends_at.into();
    answer["handoff_url"] = format!("{}/t/{}/impersonate?token={handoff}", app.cfg.public_url, authed.t.slug).into();
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /v1/orgs/{slug}/impersonations`: active and past, by id (paginated).
pub(crate) async fn list(
    State(app): AppState,
    authed: Authed,
    QueryParams(p): QueryParams<Page>,
) -> ApiResult<Json<Value>> {
    sweep(&app, &authed.t, &authed.meta).await?;
    let now = crate::now();
    let rows = impersonations::page(&*authed.t.db.lock().await, cursor(&p), page_limit(&p)).await?;
    let items: Vec<Value> = rows.iter().map(|i| view(i, now)).collect();
    let next = next_cursor(&items, &p, "id");
    Ok(Json(json!({ "items": items, "next": next })))
}

/// `DELETE /v1/orgs/{slug}/impersonations/{id}`: end it now (its session revoked, its
/// refresh tokens spent; edges refuse its tokens from the next bundle).
pub(crate) async fn end(
    State(app): AppState,
    Path((_, id)): Path<(String, String)>,
    authed: Authed,
) -> ApiResult<StatusCode> {
    sweep(&app, &authed.t, &authed.meta).await?;
    let now = crate::now();
    let h = begin(&authed.t).await?;
    let i = impersonations::by_id(&h, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("impersonation_not_found", "no such impersonation"))?;
    let by = authed.caller.actor();
    if !impersonations::end(&h, &id, now, &by).await? {
        return Err(ApiError::conflict("impersonation_ended", "this impersonation has ended"));
    }
    crate::api::session::end_session(&h, &i.session_id, now).await?;
    let after = json!({ "id": id, "session": i.session_id, "actor": i.actor, "by": by });
    authed.commit(&app, h, "impersonation.end", format!("user:{}", i.user_id), None, Some(after)).await?;
    app.changed(&authed.t.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/orgs/{slug}/impersonation-policy`.
pub(crate) async fn get_policy(State(app): AppState, authed: Authed) -> ApiResult<Json<Value>> {
    let (allow_admins, max_minutes) = policy_of(&app, &*authed.t.db.lock().await).await?;
    Ok(Json(json!({ "allow_admins": allow_admins, "max_minutes": max_minutes,
        "region_max_minutes": app.cfg.impersonation.max_minutes })))
}

/// `PUT /v1/orgs/{slug}/impersonation-policy` `{allow_admins, max_minutes}`.
pub(crate) async fn put_policy(
    State(app): AppState,
    authed: Authed,
    JsonBody(p): JsonBody<Policy>,
) -> ApiResult<Json<Value>> {
    let region = app.cfg.impersonation.max_minutes;
    if p.max_minutes == 0 || p.max_minutes > region {
        return Err(bad("invalid_duration", format!("max_minutes: 1–{region} (the region's limit)")));
    }
    let h = begin(&authed.t).await?;
    let before = impersonations::policy(&h).await?.map(|(a, m)| json!({ "allow_admins": a, "max_minutes": m }));
    impersonations::set_policy(&h, p.allow_admins, p.max_minutes as i64, crate::now()).await?;
    let after = json!({ "allow_admins": p.allow_admins, "max_minutes": p.max_minutes });
    authed
        .commit(&app, h, "impersonation.policy", format!("org:{}", authed.t.slug), before, Some(after.clone()))
        .await?;
    Ok(Json(after))
}
