//! `GET /metrics`: the origin's Prometheus metrics ([`crate::metrics`]) for the operator.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;

use crate::error::ApiResult;

use crate::api::extract::{require_operator, AppState};

/// The text exposition format (operator token).
pub(crate) async fn metrics(State(app): AppState, headers: HeaderMap) -> ApiResult<impl IntoResponse> {
    require_operator(&app, &headers)?;
    Ok(([("content-type", "text/plain; version=0.0.4")], app.metrics.render()))
}
