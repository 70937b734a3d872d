//! Mail the origin sends for a tenant, and the routes around it:
//! - [`templates`]: the organisation's own templates (`/v1/orgs/{slug}/mail/templates/{kind}`);
//! - [`verify`]: email verification (`/t/{slug}/email/verify`, `…/verify-request`) and the
//!   sign-in check under `email_verification = "required"`;
//! - [`invitations`]: inviting by email (`/v1/orgs/{slug}/invitations`, bulk from CSV or
//!   JSON lines), and [`invite`]: the invitee's page, acceptance, and SSO acceptance.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::mailer::templates::{Kind, Template};
use crate::mailer::Message;
use crate::store::{orgs, templates as template_store};

use crate::api::app::App;
use crate::api::extract::{residency, tenant, Tenant};

pub mod bulk;
pub mod invitations;
pub mod invite;
pub mod templates;
pub mod verify;

/// The organisation's template of `kind`, or the built-in one.
pub(crate) async fn template_of(h: &libsql::Connection, kind: Kind) -> ApiResult<Template> {
    Ok(template_store::get(h, kind).await?.unwrap_or_else(|| kind.default_template()))
}

/// The organisation's display name.
pub(crate) async fn org_name(h: &libsql::Connection) -> ApiResult<String> {
    Ok(orgs::get(h).await?.map(|o| o.name).unwrap_or_default())
}

/// A message of `kind` to `to`, rendered from the organisation's template with `values`
/// (`org` and `email` are added).
pub(crate) async fn compose(
    h: &libsql::Connection,
    kind: Kind,
    to: &str,
    values: &[(&str, &str)],
) -> ApiResult<Message> {
    let org = org_name(h).await?;
    let mut all: Vec<(&str, &str)> = vec![("org", org.as_str()), ("email", to)];
    all.extend_from_slice(values);
    let r = template_of(h, kind).await?.render(&all);
    Ok(Message { purpose: kind.as_str(), to: to.to_string(), subject: r.subject, text: r.text, html: r.html })
}

/// Send `m` after the transaction committed; `"sent"` or `"failed"` (the failure is
/// logged by the mailer, without the body).
pub(crate) async fn deliver(app: &App, m: &Message) -> &'static str {
    match app.mailer.send(m).await {
        Ok(()) => "sent",
        Err(_) => "failed",
    }
}

/// The tenant `slug` of a mailed link's page at `path`, or the answer to give instead
/// (a tenant homed elsewhere: a redirect or 421 `wrong_region`).
pub(crate) async fn link_tenant(app: &App, slug: &str, path: &str, headers: &HeaderMap) -> Result<Tenant, Response> {
    tenant(app, slug, path).await.map_err(|e| residency(e, headers))
}

/// The answer of a mailed link's page to a refused link `e`: the reason on the page
/// `error_page` draws; a storage or internal failure as the generic JSON error.
pub(crate) fn link_refused(e: ApiError, error_page: fn(&ApiError) -> Response) -> Response {
    match e {
        e @ (ApiError::Storage(_) | ApiError::Internal(_)) => e.into_response(),
        e => error_page(&e),
    }
}

/// 429 `rate_limited` with `Retry-After`.
pub(crate) fn rate_limited(retry_after: i64, message: &str) -> Response {
    let mut r =
        (StatusCode::TOO_MANY_REQUESTS, Json(json!({ "error": "rate_limited", "message": message }))).into_response();
    if let Ok(v) = HeaderValue::from_str(&retry_after.max(1).to_string()) {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

/// 502 `mail_failed`: the message could not be handed to the mailer (the state change it
/// carries was kept; the request can be repeated).
pub(crate) fn mail_failed() -> Response {
    (
        StatusCode::BAD_GATEWAY,
        Json(json!({ "error": "mail_failed", "message": "the message could not be sent; try again later" })),
    )
        .into_response()
}

/// The password-reset mail carrying `token` (valid until `expires`).
pub(crate) async fn reset_message(
    app: &App,
    h: &libsql::Connection,
    slug: &str,
    email: &str,
    token: &str,
    expires: i64,
) -> ApiResult<Message> {
    let link = format!("{}/password/reset", app.cfg.issuer(slug));
    let expires = crate::mailer::templates::human_time(expires);
    compose(h, Kind::PasswordReset, email, &[("link", &link), ("token", token), ("expires", &expires)]).await
}
