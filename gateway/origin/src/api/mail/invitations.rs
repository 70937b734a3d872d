//! Invitations, the administrators' side (`users:invite`): invite an email with a role
//! (and a team), list them, resend (a new link; the old one stops working) and revoke.
//!
//! Nobody invites to a role above their own ([`may_grant`]). The link is only mailed,
//! never returned: accepting it proves the invitee reads that mailbox, so the account it
//! creates has a verified email. Every change is audited.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{bad, ApiError, ApiResult};
use crate::identity::{self, new_id};
use crate::mailer::templates::{human_time, Kind};
use crate::mailer::Message;
use crate::store::invitations::{self as store, Invitation, NewInvitation};
use crate::store::users;
use crate::tokens;

use crate::api::admin::roles::{may_grant, role_exists};
use crate::api::app::App;
use crate::api::extract::{AppState, Authed, Caller, JsonBody, QueryParams};
use crate::api::mail::{compose, deliver, rate_limited};
use crate::api::transaction::begin;

/// One invitation to create (also a row of a bulk invitation).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateInvitation {
    pub(crate) email: String,
    pub(crate) role: String,
    /// Team id or name.
    #[serde(default)]
    pub(crate) team: Option<String>,
}

/// How the inviter is named in the mail: their name, else their email; the operator is
/// "The administrators of {org}".
async fn inviter_name(h: &libsql::Connection, c: &Caller, org: &str) -> ApiResult<String> {
    Ok(match c {
        Caller::Operator => format!("The administrators of {org}"),
        Caller::User { user, .. } => {
            let u = users::by_id(h, user, crate::now()).await?;
            u.map(|u| if u.name.trim().is_empty() { u.email } else { u.name }).unwrap_or_else(|| org.to_string())
        }
    })
}

/// The invitation mail for `inv` carrying `token`.
async fn message(
    app: &App,
    h: &libsql::Connection,
    authed: &Authed,
    inv: &Invitation,
    token: &str,
) -> ApiResult<Message> {
    let org = crate::api::mail::org_name(h).await?;
    let inviter = inviter_name(h, &authed.caller, &org).await?;
    let link = format!("{}/invite?token={token}", app.cfg.issuer(&authed.t.slug));
    let expires = human_time(inv.expires_at);
    compose(
        h,
        Kind::Invitation,
        &inv.email,
        &[("link", &link), ("expires", &expires), ("inviter", &inviter), ("role", &inv.role)],
    )
    .await
}

/// Create one invitation (its own transaction, audited) and its mail, not yet sent.
pub(crate) async fn invite_one(app: &App, authed: &Authed, req: &CreateInvitation) -> ApiResult<(Invitation, Message)> {
    let email = identity::normalise_email(&req.email).ok_or_else(|| bad("invalid_email", "not an email address"))?;
    if !may_grant(&authed.caller, &req.role) {
        return Err(ApiError::forbidden("role_too_high", "you cannot invite to a role above your own"));
    }
    let now = crate::now();
    let h = begin(&authed.t).await?;
    if !role_exists(app, &h, &req.role).await? {
        return Err(bad("unknown_role", format!("no role `{}`", req.role)));
    }
    let team = match req.team.as_deref().filter(|t| !t.is_empty()) {
        Some(t) if t.len() > 64 => return Err(bad("unknown_team", "team: at most 64 bytes")),
        Some(t) => Some(store::team_id(&h, t).await?.ok_or_else(|| bad("unknown_team", format!("no team `{t}`")))?),
        None => None,
    };
    if users::id_by_email(&h, &email).await?.is_some() {
        return Err(ApiError::conflict("already_member", "a user with this email is already a member"));
    }
    // Refused now rather than at acceptance: the organisation has no room for a member.
    crate::api::caps::check_org_cap(app, &h, crate::api::caps::Cap::Users).await?;
    for open in store::open_for_email(&h, &email, now).await? {
        if open.status == "pending" {
            return Err(ApiError::conflict(
                "invitation_pending",
                format!("{} is already invited ({}); resend or revoke that invitation", email, open.id),
            ));
        }
        // An expired one is replaced by this one.
        store::revoke(&h, &open.id, now).await?;
    }
    let id = new_id("inv_");
    let token = tokens::opaque("ghi_");
    let actor = authed.caller.actor();
    let row = NewInvitation {
        id: &id,
        email: &email,
        role: &req.role,
        team_id: team.as_deref(),
        inviter: &actor,
        token_hash: &tokens::secret_hash(&token),
        now,
        expires_at: now + app.cfg.mail.invite_ttl_secs as i64,
    };
    store::insert(&h, &row).await?;
    let inv = store::by_id(&h, &id, now).await?.ok_or_else(|| anyhow::anyhow!("invitation {id} vanished"))?;
    let msg = message(app, &h, authed, &inv, &token).await?;
    let after = json!({ "email": email, "role": req.role, "team": team, "expires_at": inv.expires_at });
    authed.commit(app, h, "invitation.create", format!("invitation:{id}"), None, Some(after)).await?;
    Ok((inv, msg))
}

/// An invitation and how its mail went.
fn with_mail(inv: &Invitation, mail: &str) -> Value {
    let mut v = json!(inv);
    v["mail"] = mail.into();
    v
}

/// `POST /v1/orgs/{slug}/invitations`: 201 with the invitation and `mail` (`sent` or
/// `failed`: the invitation stands and can be resent).
pub(crate) async fn create_invitation(
    State(app): AppState,
    authed: Authed,
    JsonBody(req): JsonBody<CreateInvitation>,
) -> ApiResult<Response> {
    let (inv, msg) = invite_one(&app, &authed, &req).await?;
    let mail = deliver(&app, &msg).await;
    Ok((StatusCode::CREATED, Json(with_mail(&inv, mail))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    status: Option<String>,
}

/// `GET /v1/orgs/{slug}/invitations?status=&after=&limit=`.
pub(crate) async fn list_invitations(authed: Authed, QueryParams(q): QueryParams<ListQuery>) -> ApiResult<Json<Value>> {
    if let Some(s) = q.status.as_deref() {
        if !["pending", "accepted", "revoked", "expired"].contains(&s) {
            return Err(bad("invalid_query", "status: pending, accepted, revoked or expired"));
        }
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 500) as i64;
    let h = authed.t.db.lock().await;
    let items =
        store::page(&h, q.after.as_deref().unwrap_or_default(), q.status.as_deref(), limit, crate::now()).await?;
    let next = if items.len() as i64 == limit { items.last().map(|i| i.id.clone()) } else { None };
    Ok(Json(json!({ "items": items, "next": next })))
}

/// The invitation `id` if the caller may act on it (its role not above theirs).
async fn actionable(h: &libsql::Connection, authed: &Authed, id: &str, now: i64) -> ApiResult<Invitation> {
    let inv = store::by_id(h, id, now)
        .await?
        .ok_or_else(|| ApiError::not_found("invitation_not_found", "no such invitation"))?;
    if !may_grant(&authed.caller, &inv.role) {
        return Err(ApiError::forbidden("role_too_high", "this invitation is for a role above your own"));
    }
    Ok(inv)
}

/// `POST /v1/orgs/{slug}/invitations/{id}/resend`: a new link (the old one stops
/// working), valid for `mail.invite_ttl_secs` from now; at most one mail per
/// `mail.invite_resend_secs` (429 `rate_limited` with `Retry-After`).
pub(crate) async fn resend_invitation(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let now = crate::now();
    let h = begin(&authed.t).await?;
    let inv = actionable(&h, &authed, &id, now).await?;
    match inv.status {
        "accepted" => return Err(ApiError::conflict("invitation_used", "this invitation was accepted")),
        "revoked" => return Err(ApiError::conflict("invitation_revoked", "this invitation was revoked")),
        _ => {}
    }
    let wait = inv.sent_at + app.cfg.mail.invite_resend_secs as i64 - now;
    if wait > 0 {
        return Ok(rate_limited(wait, "this invitation was just sent; try again later"));
    }
    let token = tokens::opaque("ghi_");
    let expires = now + app.cfg.mail.invite_ttl_secs as i64;
    store::replace_token(&h, &id, &tokens::secret_hash(&token), now, expires).await?;
    let inv = store::by_id(&h, &id, now).await?.ok_or_else(|| anyhow::anyhow!("invitation {id} vanished"))?;
    let msg = message(&app, &h, &authed, &inv, &token).await?;
    let after = json!({ "expires_at": expires, "sends": inv.sends });
    authed.commit(&app, h, "invitation.resend", format!("invitation:{id}"), None, Some(after)).await?;
    let mail = deliver(&app, &msg).await;
    Ok(Json(with_mail(&inv, mail)).into_response())
}

/// `DELETE /v1/orgs/{slug}/invitations/{id}`: revoke (its link stops working).
pub(crate) async fn revoke_invitation(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let now = crate::now();
    let h = begin(&authed.t).await?;
    let inv = actionable(&h, &authed, &id, now).await?;
    match inv.status {
        "accepted" => return Err(ApiError::conflict("invitation_used", "this invitation was accepted")),
        "revoked" => return Ok(StatusCode::NO_CONTENT),
        _ => {}
    }
    store::revoke(&h, &id, now).await?;
    let before = json!({ "email": inv.email, "role": inv.role, "status": inv.status });
    authed.commit(&app, h, "invitation.revoke", format!("invitation:{id}"), Some(before), None).await?;
    Ok(StatusCode::NO_CONTENT)
}
