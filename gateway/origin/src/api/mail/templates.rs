//! `GET/PUT/DELETE /v1/orgs/{slug}/mail/templates/{kind}`: the organisation's mail
//! templates (`settings:read` / `settings:write`). A `PUT` is validated (bounded sizes,
//! one-line subject, only the kind's placeholders, the link or token present) and audited
//! with the template before and after; a `DELETE` goes back to the built-in template.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::error::{bad, ApiError, ApiResult};
use crate::mailer::templates::{Kind, Template};
use crate::store::templates as store;

use crate::api::extract::{AppState, Authed, JsonBody};
use crate::api::transaction::begin;

fn kind_of(s: &str) -> ApiResult<Kind> {
    Kind::parse(s).ok_or_else(|| {
        ApiError::not_found("template_kind_unknown", "template kinds: verify_email, invitation, password_reset")
    })
}

fn view(kind: Kind, t: &Template, custom: bool) -> Value {
    json!({
        "kind": kind.as_str(),
        "subject": t.subject,
        "text": t.text,
        "html": t.html,
        "custom": custom,
        "placeholders": kind.placeholders(),
    })
}

pub(crate) async fn get_template(authed: Authed, Path((_, kind)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let kind = kind_of(&kind)?;
    let stored = store::get(&*authed.t.db.lock().await, kind).await?;
    Ok(Json(match stored {
        Some(t) => view(kind, &t, true),
        None => view(kind, &kind.default_template(), false),
    }))
}

pub(crate) async fn put_template(
    State(app): AppState,
    authed: Authed,
    Path((_, kind)): Path<(String, String)>,
    JsonBody(req): JsonBody<Template>,
) -> ApiResult<Json<Value>> {
    let kind = kind_of(&kind)?;
    req.validate(kind).map_err(|m| bad("invalid_template", m))?;
    let h = begin(&authed.t).await?;
    let before = store::get(&h, kind).await?;
    store::put(&h, kind, &req, crate::now()).await?;
    let target = format!("mail_template:{}", kind.as_str());
    authed.commit(&app, h, "mail_template.put", target, before.map(|b| json!(b)), Some(json!(req))).await?;
    Ok(Json(view(kind, &req, true)))
}

pub(crate) async fn delete_template(
    State(app): AppState,
    authed: Authed,
    Path((_, kind)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let kind = kind_of(&kind)?;
    let h = begin(&authed.t).await?;
    let before = store::get(&h, kind).await?;
    if before.is_none() {
        // Nothing to reset: already the built-in template.
        return Ok(StatusCode::NO_CONTENT);
    }
    store::delete(&h, kind).await?;
    let target = format!("mail_template:{}", kind.as_str());
    authed.commit(&app, h, "mail_template.delete", target, before.map(|b| json!(b)), None).await?;
    Ok(StatusCode::NO_CONTENT)
}
