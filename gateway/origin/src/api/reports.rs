//! `GET /v1/orgs/{slug}/reports/{kind}`: a compliance report of the organisation over a
//! period, as JSON, CSV or PDF ([`crate::reports`]). Read-only: it writes no record, so
//! the chain head it states is the log it was built from.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::error::ApiResult;
use crate::reports::{self, Format, Kind, Options, Org, Request};
use crate::store;

use crate::api::extract::{AppState, Authed, QueryParams};

/// The query of a report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportQuery {
    /// Unix seconds, inclusive (default: 30 days before `until`).
    #[serde(default)]
    from: Option<i64>,
    /// Unix seconds, exclusive (default: now).
    #[serde(default)]
    until: Option<i64>,
    /// `json` (default), `csv` or `pdf`.
    #[serde(default)]
    format: Option<String>,
    /// Access review: days without a sign-in that make an account dormant (default 90).
    #[serde(default)]
    dormant_days: Option<i64>,
}

/// `GET /v1/orgs/{slug}/reports/{kind}?from&until&format&dormant_days`.
pub(crate) async fn get_report(
    State(app): AppState,
    authed: Authed,
    Path((slug, kind)): Path<(String, String)>,
    QueryParams(q): QueryParams<ReportQuery>,
) -> ApiResult<Response> {
    let kind = Kind::parse(&kind)?;
    let format = Format::parse(q.format.as_deref())?;
    let now = crate::now();
    let options = Options::new(q.from, q.until, q.dormant_days, now)?;
    let t = &authed.t;
    // The directory's head first: the tenant's, read with the data, is then at or past it.
    let directory_head = store::audit::head_of(&*app.store.directory.lock().await, &t.id).await?;
    let h = t.db.lock().await;
    let name = store::orgs::get(&h).await?.map(|o| o.name).unwrap_or_default();
    // Under an impersonation, the report names who really asked for it too.
    let generated_by = match authed.caller.act() {
        Some(act) => format!("{} (acting: {act})", authed.caller.actor()),
        None => authed.caller.actor(),
    };
    let req = Request {
        org: Org { id: t.id.clone(), slug: t.slug.clone(), name },
        generated_by,
        directory_head,
        kind,
        options,
    };
    let report = reports::build(&h, req, now).await?;
    drop(h);
    tracing::info!(org = %slug, kind = kind.name(), format = format.extension(), "compliance report");
    let file = format!(
        "attachment; filename=\"{slug}-{}-{}-{}.{}\"",
        kind.name(),
        options.period.from,
        options.period.until,
        format.extension()
    );
    let headers = [(header::CONTENT_TYPE, format.content_type().to_string()), (header::CONTENT_DISPOSITION, file)];
    Ok(match format {
        Format::Json => (headers, Json(report)).into_response(),
        Format::Csv => (headers, reports::csv::render(&report)).into_response(),
        Format::Pdf => (headers, reports::pdf::render(&report)).into_response(),
    })
}
